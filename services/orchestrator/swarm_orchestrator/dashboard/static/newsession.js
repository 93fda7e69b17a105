// "New session": a goal (a Markdown document or a few lines), the repository and base it
// works on, who plans it, and whether its plan runs without review. The session is made as
// a draft with `plan: true`; the page then opens its plan.

import { post } from './api.js';
import { h, fill } from './dom.js';
import { errorLines } from './ui.js';

export const PLANNERS = ['auto', 'heuristic', 'claude', 'codex', 'gemini'];
const PLANNER_TEXT = {
  auto: 'auto (a planning agent an adapter serves, else heuristic)',
  heuristic: 'heuristic (from the goal’s structure, no model)',
};
const REMEMBER_KEY = 'swarm.newSession';
const MAX_TITLE = 200;
const LIST_MARK = /^(?:#{1,6}\s+|[-*+\u2022]\s+|\d+[.)]\s+)/;

/** A session title from a goal: its first line with any heading or list mark taken off. */
export function titleFromGoal(goal) {
  for (const raw of String(goal || '').split(/\r?\n/)) {
    const line = raw.trim().replace(LIST_MARK, '').trim();
    if (line) return line.length > MAX_TITLE ? `${line.slice(0, MAX_TITLE - 1)}…` : line;
  }
  return '';
}

function remembered() {
  try {
    return JSON.parse(localStorage.getItem(REMEMBER_KEY) || '{}') || {};
  } catch {
    return {};
  }
}

function remember(values) {
  try {
    localStorage.setItem(REMEMBER_KEY, JSON.stringify(values));
  } catch {
    // storage refused: the form starts empty next time
  }
}

export class NewSessionDialog {
  /** onCreated(sessionPublic); defaults() -> {repo, base_ref} of the session open now. */
  constructor({ onCreated, defaults }) {
    this.onCreated = onCreated;
    this.defaults = defaults;
    this.build();
  }

  build() {
    const field = (text, input, hint) => h('label', { class: 'field' },
      h('span', { class: 'field-name', text }), input, hint ? h('span', { class: 'muted small', text: hint }) : null);
    this.title = h('input', { type: 'text', maxlength: String(MAX_TITLE), 'data-testid': 'new-session-title', autocomplete: 'off' });
    this.goal = h('textarea', {
      rows: '9', required: true, 'data-testid': 'new-session-goal', spellcheck: 'true',
      placeholder: '# What to build\n\n1. First step\n2. Second step\n\nPhases (## Phase 1: …), numbered lists (in order) and bullets (side by side) shape the plan.',
    });
    this.repo = h('input', { type: 'text', required: true, 'data-testid': 'new-session-repo', spellcheck: 'false', placeholder: '/path/to/repo or https://…/repo.git' });
    this.base = h('input', { type: 'text', 'data-testid': 'new-session-base', spellcheck: 'false', placeholder: 'HEAD' });
    this.planner = h('select', { 'data-testid': 'new-session-planner' },
      PLANNERS.map((p) => h('option', { value: p, text: PLANNER_TEXT[p] || p })));
    this.autoApprove = h('input', { type: 'checkbox', 'data-testid': 'new-session-auto-approve' });
    this.error = h('ul', { class: 'form-errors', 'data-testid': 'new-session-error', hidden: true });
    this.submit = h('button', { type: 'submit', class: 'primary', 'data-testid': 'new-session-submit', text: 'Create and plan' });
    const cancel = h('button', { type: 'button', class: 'ghost', 'data-testid': 'new-session-cancel', text: 'Cancel' });
    this.form = h('form', { class: 'sheet-form', 'data-testid': 'new-session-form', autocomplete: 'off' },
      h('h3', { text: 'New session from a goal' }),
      field('Goal', this.goal),
      field('Title', this.title, 'Optional: the goal’s first line when left empty.'),
      h('div', { class: 'field-row' },
        field('Repository', this.repo),
        field('Base', this.base)),
      h('div', { class: 'field-row' },
        field('Planner', this.planner),
        h('label', { class: 'check' }, this.autoApprove,
          h('span', { text: 'Run the plan at once, without review (auto-approve)' }))),
      this.error,
      h('div', { class: 'confirm-buttons' }, cancel, this.submit));
    this.dialog = h('dialog', { class: 'sheet', 'data-testid': 'new-session-dialog' }, this.form);
    this.goal.addEventListener('input', () => {
      this.title.placeholder = titleFromGoal(this.goal.value) || 'From the goal';
    });
    cancel.addEventListener('click', () => this.dialog.close());
    this.form.addEventListener('submit', (e) => {
      e.preventDefault();
      this.create();
    });
    document.body.append(this.dialog);
  }

  open() {
    const last = remembered();
    const current = (this.defaults && this.defaults()) || {};
    this.repo.value = this.repo.value || current.repo || last.repo || '';
    this.base.value = this.base.value || current.base_ref || last.base_ref || '';
    if (!this.goal.value) this.planner.value = PLANNERS.includes(last.planner) ? last.planner : 'auto';
    this.title.placeholder = titleFromGoal(this.goal.value) || 'From the goal';
    this.showErrors([]);
    this.dialog.showModal();
    this.goal.focus();
  }

  body() {
    const goal = this.goal.value;
    const body = {
      title: this.title.value.trim() || titleFromGoal(goal) || 'New session',
      goal,
      repo: this.repo.value.trim(),
      base_ref: this.base.value.trim() || 'HEAD',
      plan: true,
      auto_approve: this.autoApprove.checked,
    };
    if (this.planner.value !== 'auto') body.settings = { planner: { agent: this.planner.value } };
    return body;
  }

  showErrors(lines) {
    fill(this.error, lines.map((line) => h('li', { text: line })));
    this.error.hidden = !lines.length;
  }

  async create() {
    const body = this.body();
    if (!body.goal.trim()) {
      this.showErrors(['Write the goal to plan.']);
      return;
    }
    this.submit.disabled = true;
    try {
      const session = await post('/v1/sessions', body);
      remember({ repo: body.repo, base_ref: this.base.value.trim(), planner: this.planner.value });
      this.form.reset();
      this.dialog.close();
      this.onCreated(session);
    } catch (err) {
      this.showErrors(errorLines(err));
    } finally {
      this.submit.disabled = false;
    }
  }
}
