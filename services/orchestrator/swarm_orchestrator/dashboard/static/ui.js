// Toasts (API errors and notices), the confirmation dialog asked before any action that
// destroys work, and the dialog that asks which one (a rollback's checkpoint).

import { h, fill } from './dom.js';

const TOAST_MS = { info: 5000, error: 10000 };
const MAX_TOASTS = 5;

export function toast(message, kind = 'info') {
  const box = document.querySelector('.toasts');
  if (!box) return;
  while (box.children.length >= MAX_TOASTS) box.firstElementChild.remove();
  const close = h('button', { type: 'button', class: 'toast-close', 'aria-label': 'Dismiss', text: '×' });
  const el = h('div', { class: `toast ${kind}`, role: kind === 'error' ? 'alert' : 'status', 'data-testid': 'toast', 'data-kind': kind },
    h('span', { class: 'toast-text', text: message }), close);
  close.addEventListener('click', () => el.remove());
  box.append(el);
  setTimeout(() => el.remove(), TOAST_MS[kind] || TOAST_MS.info);
}

/** Toast an error the way the API described it ({code, message}). */
const recent = new Map(); // message -> when it was last shown

export function toastError(err, what = '') {
  if (err && err.name === 'AbortError') return;
  const message = (err && err.message) || String(err);
  const text = what ? `${what}: ${message}` : message;
  const now = Date.now();
  if (now - (recent.get(text) || 0) < 5000) return; // the same failure, again: once is enough
  recent.set(text, now);
  if (recent.size > 50) recent.delete(recent.keys().next().value);
  toast(text, 'error');
}

/**
 * For a view that polls the API: `guarded(step)` runs `step` and toasts its failure
 * ("What: message") only when the run before it did not fail too, so a view refreshed every
 * few seconds does not toast again at each refresh while the server is away.
 */
export function toastFirstFailure(what) {
  let failed = false;
  return async function guarded(step) {
    try {
      await step();
      failed = false;
    } catch (err) {
      if (!failed) toastError(err, what);
      failed = true;
    }
  };
}

let pending = null;

/**
 * Ask before a destructive action. Resolves true only when the user confirms.
 * The dialog is the page's own <dialog> (testable: data-testid="confirm-dialog").
 */
export function confirmAction({ title, text, ok = 'Confirm' }) {
  const dialog = document.querySelector('dialog.confirm');
  if (pending) pending(false);
  dialog.querySelector('.confirm-title').textContent = title;
  dialog.querySelector('.confirm-text').textContent = text || '';
  dialog.querySelector('[data-testid="confirm-ok"]').textContent = ok;
  dialog.returnValue = '';
  return new Promise((resolve) => {
    pending = (answer) => {
      pending = null;
      resolve(answer);
    };
    dialog.addEventListener('close', () => {
      if (pending) pending(dialog.returnValue === 'ok');
    }, { once: true });
    dialog.showModal();
    dialog.querySelector('[data-testid="confirm-cancel"]').focus();
  });
}

/**
 * Run an API action from a button: disabled while in flight, asks first when `confirm` is
 * given, toasts the outcome.
 */
export async function runAction(button, { confirm, run, done }) {
  if (confirm && !(await confirmAction(confirm))) return;
  if (button) button.disabled = true;
  try {
    const result = await run();
    if (done) toast(typeof done === 'function' ? done(result) : done);
    return result;
  } catch (err) {
    toastError(err);
    return undefined;
  } finally {
    if (button) button.disabled = false;
  }
}

/**
 * The button of one API action (found by tests as [data-action]): a click runs `spec` with
 * runAction and hands its result (undefined when it failed or was not confirmed) to `then`.
 */
export function actionButton({ action, text, kind, testid }, spec, then) {
  const b = h('button', { type: 'button', class: kind, 'data-action': action, 'data-testid': testid, text });
  b.addEventListener('click', async () => then(await runAction(b, spec)));
  return b;
}

let choosing = null;

/**
 * Ask the user to pick one of `options` ([{value, label}]) before an action that undoes
 * work (a rollback): resolves to the chosen value, or null when they keep things as they
 * are. The dialog is built once (data-testid="choose-dialog").
 */
export function chooseOption({ title, text, what = 'Choose', options, ok = 'Confirm', kind = 'danger' }) {
  let dialog = document.querySelector('dialog.choose');
  if (!dialog) {
    dialog = h('dialog', { class: 'confirm choose', 'data-testid': 'choose-dialog' },
      h('form', { method: 'dialog' },
        h('h3', { class: 'confirm-title' }),
        h('p', { class: 'confirm-text' }),
        h('label', { class: 'choose-label' }, h('span', { class: 'muted small choose-what' }),
          h('select', { 'data-testid': 'choose-select' })),
        h('div', { class: 'confirm-buttons' },
          h('button', { value: 'cancel', type: 'submit', class: 'ghost', 'data-testid': 'choose-cancel', text: 'Keep' }),
          h('button', { value: 'ok', type: 'submit', 'data-testid': 'choose-ok' }))));
    document.body.append(dialog);
  }
  if (choosing) choosing(null);
  const select = dialog.querySelector('select');
  dialog.querySelector('.confirm-title').textContent = title;
  dialog.querySelector('.confirm-text').textContent = text || '';
  dialog.querySelector('.choose-what').textContent = what;
  fill(select, options.map((o) => h('option', { value: String(o.value), text: o.label })));
  const okButton = dialog.querySelector('[data-testid="choose-ok"]');
  okButton.textContent = ok;
  okButton.className = kind;
  dialog.returnValue = '';
  return new Promise((resolve) => {
    choosing = (answer) => {
      choosing = null;
      resolve(answer);
    };
    dialog.addEventListener('close', () => {
      if (choosing) choosing(dialog.returnValue === 'ok' ? select.value : null);
    }, { once: true });
    dialog.showModal();
    select.focus();
  });
}

/** What an API error says, one line each: a plan's `details.errors`, a request's invalid
 * fields (`details` of a 422 validation_error), else its message. */
export function errorLines(err) {
  const details = err && err.details;
  if (details && Array.isArray(details.errors) && details.errors.length) {
    return details.errors.map(String);
  }
  if (Array.isArray(details) && details.length) {
    return details.map((d) => {
      const where = Array.isArray(d.loc) ? d.loc.filter((p) => p !== 'body').join('.') : '';
      return where ? `${where}: ${d.msg}` : String(d.msg || JSON.stringify(d));
    });
  }
  return [(err && err.message) || String(err)];
}
