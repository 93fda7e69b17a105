// The board: one column per task state, one card per task, keyed by task id. An update
// touches only the cards whose task changed and moves only the cards whose column or place
// changed; long columns show their first COLUMN_CAP cards ("N more" shows more).

import { h, fill, TASK_STATES, ENDED_STATES, label, fmtTokens, fmtCost, cls } from './dom.js';
import { stats } from './stats.js';

const COLUMN_CAP = 200;
const FILTER_DEBOUNCE_MS = 150;
const SHORT = { awaiting_approval: 'approval' };

export class Board {
  constructor(root, { onOpen }) {
    this.root = root;
    this.onOpen = onOpen;
    this.cards = new Map(); // task id -> {el, sig}
    this.filter = '';
    this.selected = null;
    this.tasks = new Map();
    this.columns = new Map();
    this.build();
  }

  build() {
    const filter = h('input', {
      type: 'search', class: 'filter', placeholder: 'Filter by key, title or agent',
      'data-testid': 'board-filter', 'aria-label': 'Filter tasks',
    });
    let timer = null;
    filter.addEventListener('input', () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        this.filter = filter.value.trim().toLowerCase();
        this.render(this.tasks);
      }, FILTER_DEBOUNCE_MS);
    });
    this.summary = h('span', { class: 'muted', 'data-testid': 'board-summary' });
    const grid = h('div', { class: 'board', 'data-testid': 'board' });
    for (const status of TASK_STATES) {
      const count = h('span', { class: 'count', 'data-testid': 'column-count', text: '0' });
      const list = h('div', { class: 'cards' });
      const more = h('button', { type: 'button', class: 'more ghost small', 'data-testid': 'column-more', hidden: true });
      const col = { cap: COLUMN_CAP, count, list, more };
      more.addEventListener('click', () => {
        col.cap += COLUMN_CAP;
        this.render(this.tasks);
      });
      col.el = h('section', { class: `column st-${status}`, 'data-testid': 'board-column', 'data-status': status },
        h('header', null, h('span', { class: 'column-title', title: label(status), text: SHORT[status] || label(status) }), count),
        list, more);
      grid.append(col.el);
      this.columns.set(status, col);
    }
    grid.addEventListener('click', (e) => {
      const card = e.target.closest('[data-testid="task-card"]');
      if (card) this.onOpen(card.dataset.taskId);
    });
    grid.addEventListener('keydown', (e) => {
      if (e.key !== 'Enter' && e.key !== ' ') return;
      const card = e.target.closest('[data-testid="task-card"]');
      if (card) {
        e.preventDefault();
        this.onOpen(card.dataset.taskId);
      }
    });
    this.empty = h('p', { class: 'empty', text: 'No tasks in this session yet.', hidden: true });
    fill(this.root, h('div', { class: 'toolbar' }, filter, this.summary), this.empty, grid);
  }

  matches(task) {
    if (!this.filter) return true;
    const f = this.filter;
    return task.key.toLowerCase().includes(f)
      || String(task.title || '').toLowerCase().includes(f)
      || String(task.agent || '').toLowerCase().includes(f)
      || String(task.role || '').toLowerCase().includes(f);
  }

  /** Bring the board in line with `tasks` (a Map by id); cheap when little changed. */
  render(tasks) {
    const started = performance.now();
    this.tasks = tasks;
    const groups = new Map(TASK_STATES.map((s) => [s, []]));
    let shown = 0;
    for (const task of tasks.values()) {
      if (!this.matches(task)) continue;
      shown += 1;
      (groups.get(task.status) || groups.get('pending')).push(task);
    }
    for (const [status, list] of groups) {
      if (ENDED_STATES.has(status)) {
        list.sort((a, b) => cmp(b.finished_at, a.finished_at) || a._order - b._order);
      } else {
        list.sort((a, b) => a._order - b._order);
      }
      const col = this.columns.get(status);
      col.count.textContent = String(list.length);
      col.el.classList.toggle('empty-column', list.length === 0);
      this.reconcile(col.list, list.length > col.cap ? list.slice(0, col.cap) : list);
      const hidden = list.length - col.cap;
      col.more.hidden = hidden <= 0;
      if (hidden > 0) col.more.textContent = `${hidden} more`;
    }
    for (const id of this.cards.keys()) {
      if (!tasks.has(id)) this.cards.delete(id);
    }
    this.empty.hidden = tasks.size > 0;
    this.summary.textContent = this.filter
      ? `${shown} of ${tasks.size} tasks match`
      : `${tasks.size} tasks`;
    stats.record('board', performance.now() - started);
  }

  reconcile(container, tasks) {
    let child = container.firstChild;
    for (const task of tasks) {
      const el = this.card(task);
      if (child === el) {
        child = child.nextSibling;
        continue;
      }
      container.insertBefore(el, child);
    }
    while (child) {
      const next = child.nextSibling;
      child.remove();
      child = next;
    }
  }

  card(task) {
    const sig = [task.status, task.title, task.agent, task.role, task.attempt, task.max_attempts,
      task.tokens, task.cost_usd, task.reason, task.merge_status].join('\u0001');
    let entry = this.cards.get(task.id);
    if (!entry) {
      const el = h('div', {
        class: 'card', tabindex: '0', role: 'button', 'data-testid': 'task-card',
        'data-task-id': task.id, 'data-task-key': task.key,
      });
      entry = { el, sig: null };
      this.cards.set(task.id, entry);
      stats.seen(task.id);
    }
    if (entry.sig !== sig) {
      entry.sig = sig;
      fillCard(entry.el, task);
    }
    entry.el.classList.toggle('selected', task.id === this.selected);
    return entry.el;
  }

  setEmptyText(text) {
    this.empty.textContent = text;
  }

  select(id) {
    if (this.selected && this.cards.has(this.selected)) {
      this.cards.get(this.selected).el.classList.remove('selected');
    }
    this.selected = id;
    if (id && this.cards.has(id)) this.cards.get(id).el.classList.add('selected');
  }
}

function cmp(a, b) {
  if (a === b) return 0;
  if (a === null || a === undefined) return -1;
  if (b === null || b === undefined) return 1;
  return a < b ? -1 : 1;
}

function fillCard(el, task) {
  el.dataset.status = task.status;
  el.className = `card st-${cls(task.status)}${el.classList.contains('selected') ? ' selected' : ''}`;
  el.title = task.title || task.key;
  const meta = [
    h('span', { class: 'att', title: 'Attempt', text: `#${task.attempt}/${task.max_attempts}` }),
  ];
  if (task.tokens !== null && task.tokens !== undefined) {
    meta.push(h('span', { title: 'Tokens (input + output)', text: `${fmtTokens(task.tokens)} tok` }));
  }
  if (task.cost_usd !== null && task.cost_usd !== undefined) {
    meta.push(h('span', { title: 'Cost', text: fmtCost(task.cost_usd) }));
  }
  if (task.merge_status && task.merge_status !== 'merged') {
    meta.push(h('span', { class: `merge ms-${cls(task.merge_status)}`, text: label(task.merge_status) }));
  }
  fill(el,
    h('div', { class: 'card-top' },
      h('span', { class: 'key', text: task.key }),
      h('span', { class: 'agent', text: task.agent })),
    task.title && task.title !== task.key ? h('div', { class: 'card-title', text: task.title }) : null,
    h('div', { class: 'card-meta' }, meta),
    task.reason && task.status !== 'succeeded' ? h('div', { class: 'card-reason', text: task.reason }) : null);
}
