// Blackboard: the open session's facts (each key's latest value, who wrote it, when; a
// key's history on a click), a form to write one (operators), and the follow-up tasks its
// handoffs proposed, with accept / refuse for operators. Fetched when shown, and again when
// the session's timeline says the board or the proposals changed.

import { api, post } from './api.js';
import { h, fill, badge, fmtAgo } from './dom.js';
import { runAction, toastError, toastFirstFailure } from './ui.js';

const CHANGES = new Set(['blackboard.written', 'task.proposed', 'task.delegated', 'task.proposal_refused']);

function shown(value) {
  const text = JSON.stringify(value);
  return text.length > 300 ? `${text.slice(0, 299)}…` : text;
}

/** A value typed in the form: JSON when it parses as JSON, else the text as it is. */
function parsed(text) {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

export class BlackboardView {
  constructor(root, { canOperate }) {
    this.root = root;
    this.canOperate = canOperate;
    this.sessionId = null;
    this.visible = false;
    this.board = null;
    this.proposals = null;
    this.history = null; // [key, facts] of the key whose history is open
    this.guarded = toastFirstFailure('Blackboard');
    this.info = h('span', { class: 'muted', 'data-testid': 'blackboard-info' });
    this.form = this.buildForm();
    this.facts = h('div', { 'data-testid': 'blackboard-facts' });
    this.past = h('div', { 'data-testid': 'blackboard-history' });
    this.offers = h('div', { 'data-testid': 'proposals' });
    fill(root, h('div', { class: 'toolbar' }, h('h3', { text: 'Blackboard' }), this.info),
      this.form, this.facts, this.past, h('div', { class: 'toolbar' }, h('h3', { text: 'Proposed follow-ups' })), this.offers);
  }

  buildForm() {
    this.keyInput = h('input', { type: 'text', placeholder: 'key (e.g. api.base)', 'data-testid': 'fact-key', maxlength: '120', spellcheck: 'false' });
    this.valueInput = h('input', { type: 'text', placeholder: 'value (JSON or text)', 'data-testid': 'fact-value', spellcheck: 'false' });
    const write = h('button', { type: 'submit', class: 'primary small', text: 'Write', 'data-testid': 'fact-write' });
    const form = h('form', { class: 'toolbar fact-form', 'data-testid': 'fact-form' }, this.keyInput, this.valueInput, write);
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const key = this.keyInput.value.trim();
      if (!key || !this.sessionId) return;
      runAction(write, {
        run: () => post(`/v1/sessions/${this.sessionId}/blackboard`, { key, value: parsed(this.valueInput.value) }),
        done: () => {
          this.keyInput.value = '';
          this.valueInput.value = '';
          this.refresh();
          return `Wrote ${key}`;
        },
      });
    });
    return form;
  }

  setSession(id) {
    this.sessionId = id;
    this.board = null;
    this.proposals = null;
    this.history = null;
    if (this.visible) this.refresh();
    else this.render();
  }

  setVisible(visible) {
    this.visible = visible;
    if (visible) this.refresh();
  }

  onEvent(ev) {
    if (this.visible && ev && CHANGES.has(ev.type)) this.refresh();
  }

  async refresh() {
    const id = this.sessionId;
    if (!id) {
      this.render();
      return;
    }
    await this.guarded(async () => {
      const [board, proposals] = await Promise.all([
        api(`/v1/sessions/${id}/blackboard`),
        api(`/v1/sessions/${id}/proposals`),
      ]);
      if (id !== this.sessionId) return;
      this.board = board;
      this.proposals = proposals;
    });
    this.render();
  }

  async showHistory(key) {
    try {
      const facts = await api(`/v1/sessions/${this.sessionId}/blackboard/${encodeURIComponent(key)}`);
      this.history = [key, facts];
      this.render();
    } catch (err) {
      toastError(err, 'History');
    }
  }

  render() {
    this.form.hidden = !this.canOperate() || !this.sessionId;
    if (!this.sessionId) {
      this.info.textContent = '';
      fill(this.facts, h('p', { class: 'empty', text: 'Pick a session on the left.' }));
      fill(this.past);
      fill(this.offers);
      return;
    }
    if (!this.board) {
      fill(this.facts, h('p', { class: 'muted', text: 'Loading…' }));
      return;
    }
    const now = Date.now();
    this.info.textContent = `${this.board.total} fact(s)`;
    if (!this.board.facts.length) {
      fill(this.facts, h('p', { class: 'empty', text: 'No facts yet: tasks write them through their handoffs, people here.' }));
    } else {
      fill(this.facts, h('table', { class: 'table', 'data-testid': 'facts-table' },
        h('thead', null, h('tr', null, ['Key', 'Value', 'Author', 'Written'].map((t) => h('th', { text: t })))),
        h('tbody', null, this.board.facts.map((f) => {
          const key = h('button', { type: 'button', class: 'chip link', text: f.key, title: 'history' });
          key.addEventListener('click', () => this.showHistory(f.key));
          return h('tr', { 'data-testid': 'fact-row', 'data-key': f.key },
            h('td', null, key), h('td', null, h('code', { text: shown(f.value) })),
            h('td', { text: f.author }), h('td', { title: f.created_at, text: fmtAgo(f.created_at, now) }));
        }))));
    }
    this.renderHistory(now);
    this.renderProposals();
  }

  renderHistory(now) {
    if (!this.history) {
      fill(this.past);
      return;
    }
    const [key, facts] = this.history;
    const close = h('button', { type: 'button', class: 'ghost small', text: 'Close' });
    close.addEventListener('click', () => {
      this.history = null;
      this.render();
    });
    fill(this.past, h('div', { class: 'toolbar' }, h('strong', { text: `History of ${key}` }), close),
      h('table', { class: 'table' }, h('tbody', null, facts.map((f) => h('tr', null,
        h('td', null, h('code', { text: f.value === null ? 'cleared' : shown(f.value) })),
        h('td', { text: f.author }), h('td', { title: f.created_at, text: fmtAgo(f.created_at, now) }))))));
  }

  renderProposals() {
    const list = this.proposals || [];
    if (!list.length) {
      fill(this.offers, h('p', { class: 'empty', text: 'No follow-ups proposed.' }));
      return;
    }
    fill(this.offers, h('table', { class: 'table', 'data-testid': 'proposals-table' },
      h('thead', null, h('tr', null, ['Task', 'Proposed by', 'Depth', 'State', ''].map((t) => h('th', { text: t })))),
      h('tbody', null, list.map((p) => h('tr', { 'data-testid': 'proposal-row', 'data-key': p.key, 'data-status': p.status },
        h('td', null, h('strong', { text: p.key }), h('div', { class: 'muted small', text: p.spec.title })),
        h('td', { text: (p.spec.depends_on || [])[0] || '' }),
        h('td', { text: String(p.depth) }),
        h('td', null, badge(p.status), p.reason ? h('div', { class: 'muted small', text: p.reason }) : null),
        h('td', null, this.decisions(p)))))));
  }

  decisions(p) {
    if (p.status !== 'proposed' || !this.canOperate()) return null;
    const base = `/v1/sessions/${this.sessionId}/proposals/${p.id}`;
    const accept = h('button', { type: 'button', class: 'primary small', text: 'Accept', 'data-testid': 'proposal-accept' });
    const refuse = h('button', { type: 'button', class: 'ghost small', text: 'Refuse', 'data-testid': 'proposal-refuse' });
    const then = (text) => () => {
      this.refresh();
      return text;
    };
    accept.addEventListener('click', () => runAction(accept, { run: () => post(`${base}/accept`), done: then(`${p.key} is a task now`) }));
    refuse.addEventListener('click', () => runAction(refuse, {
      confirm: { title: `Refuse ${p.key}?`, text: 'The proposed task is not made.', ok: 'Refuse' },
      run: () => post(`${base}/refuse`, { reason: 'refused on the dashboard' }),
      done: then(`${p.key} refused`),
    }));
    return h('div', { class: 'tasks' }, accept, refuse);
  }
}
