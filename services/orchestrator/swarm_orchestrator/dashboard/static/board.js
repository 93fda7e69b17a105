// The board: one column per task state, one card per task, keyed by task id. An update
// touches only the cards whose task changed and moves only the cards whose column or place
// changed; long columns show their first COLUMN_CAP cards ("N more" shows more). When the
// tasks carry phases or epics, each column lists them by group under a small heading, and a
// strip above the board says how far each group is.

import { h, fill, TASK_STATES, ENDED_STATES, label, fmtTokens, fmtCost, cls } from './dom.js';
import { stats } from './stats.js';

const COLUMN_CAP = 200;
const FILTER_DEBOUNCE_MS = 150;
const SHORT = { awaiting_approval: 'approval' };
const GROUP_BY = [['auto', 'Group: auto'], ['phase', 'Group: phase'], ['epic', 'Group: epic'], ['none', 'No groups']];

export class Board {
  constructor(root, { onOpen }) {
    this.root = root;
    this.onOpen = onOpen;
    this.cards = new Map(); // task id -> {el, sig}
    this.filter = '';
    this.selected = null;
    this.tasks = new Map();
    this.columns = new Map();
    this.groups = new Map(); // task key -> {phase, epic, estimated_hours}
    this.groupBy = 'auto';
    this.headers = new Map(); // status + group -> heading element
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
    this.groupSelect = h('select', { 'data-testid': 'board-group', 'aria-label': 'Group tasks by', hidden: true },
      GROUP_BY.map(([value, text]) => h('option', { value, text })));
    this.groupSelect.addEventListener('change', () => {
      this.groupBy = this.groupSelect.value;
      this.render(this.tasks);
    });
    this.strip = h('div', { class: 'group-strip', 'data-testid': 'board-groups', hidden: true });
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
    fill(this.root, h('div', { class: 'toolbar' }, filter, this.summary, h('span', { class: 'spacer' }), this.groupSelect),
      this.strip, this.empty, grid);
  }

  matches(task) {
    if (!this.filter) return true;
    const f = this.filter;
    return task.key.toLowerCase().includes(f)
      || String(task.title || '').toLowerCase().includes(f)
      || String(task.agent || '').toLowerCase().includes(f)
      || String(task.role || '').toLowerCase().includes(f);
  }

  /** Phases, epics and estimates by task key (from the session's graph file). */
  setGroups(groups) {
    this.groups = groups || new Map();
    this.groupSelect.hidden = this.groups.size === 0;
    this.render(this.tasks);
  }

  /** The field the board groups by now, or null. */
  groupField() {
    if (!this.groups.size || this.groupBy === 'none') return null;
    if (this.groupBy !== 'auto') return this.groupBy;
    let epic = false;
    for (const g of this.groups.values()) {
      if (g.phase) return 'phase';
      if (g.epic) epic = true;
    }
    return epic ? 'epic' : null;
  }

  groupOf(task, field) {
    const g = this.groups.get(task.key);
    return (g && g[field]) || '';
  }

  /** Bring the board in line with `tasks` (a Map by id); cheap when little changed. */
  render(tasks) {
    const started = performance.now();
    this.tasks = tasks;
    const field = this.groupField();
    const rank = field ? this.renderStrip(tasks, field) : null;
    if (!field) this.strip.hidden = true;
    const byGroup = (a, b) => (rank ? rank.get(this.groupOf(a, field)) - rank.get(this.groupOf(b, field)) : 0);
    const groups = new Map(TASK_STATES.map((s) => [s, []]));
    let shown = 0;
    for (const task of tasks.values()) {
      if (!this.matches(task)) continue;
      shown += 1;
      (groups.get(task.status) || groups.get('pending')).push(task);
    }
    for (const [status, list] of groups) {
      if (ENDED_STATES.has(status)) {
        list.sort((a, b) => byGroup(a, b) || cmp(b.finished_at, a.finished_at) || a._order - b._order);
      } else {
        list.sort((a, b) => byGroup(a, b) || a._order - b._order);
      }
      const col = this.columns.get(status);
      col.count.textContent = String(list.length);
      col.el.classList.toggle('empty-column', list.length === 0);
      const shownTasks = list.length > col.cap ? list.slice(0, col.cap) : list;
      this.reconcile(col.list, field ? this.withHeadings(status, shownTasks, list, field) : shownTasks.map((t) => this.card(t)));
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

  /** The strip of groups (name, ended / total, estimated hours); returns each group's rank
   * (the order its first task came in; no group last). */
  renderStrip(tasks, field) {
    const rank = new Map();
    const sums = new Map();
    for (const task of tasks.values()) {
      const g = this.groupOf(task, field);
      let sum = sums.get(g);
      if (!sum) {
        sum = { total: 0, ended: 0, hours: 0, estimated: false };
        sums.set(g, sum);
        if (g) rank.set(g, rank.size);
      }
      sum.total += 1;
      if (ENDED_STATES.has(task.status)) sum.ended += 1;
      const hours = Number((this.groups.get(task.key) || {}).estimated_hours);
      if (Number.isFinite(hours) && hours > 0) {
        sum.hours += hours;
        sum.estimated = true;
      }
    }
    rank.set('', rank.size);
    const order = [...sums.keys()].sort((a, b) => rank.get(a) - rank.get(b));
    this.strip.hidden = false;
    fill(this.strip, h('span', { class: 'muted small', text: field === 'phase' ? 'Phases' : 'Epics' }),
      order.map((g) => {
        const sum = sums.get(g);
        const complete = sum.ended === sum.total;
        return h('span', {
          class: `group-chip${complete ? ' complete' : ''}`, 'data-testid': 'board-group-chip', 'data-group': g,
          title: `${sum.ended} of ${sum.total} tasks ended${sum.estimated ? `, ${Math.round(sum.hours * 10) / 10} h estimated` : ''}`,
        },
        h('strong', { text: g || `no ${field}` }),
        h('span', { class: 'group-count', text: `${sum.ended}/${sum.total}` }),
        sum.estimated ? h('span', { class: 'muted', text: `${Math.round(sum.hours * 10) / 10} h` }) : null);
      }));
    return rank;
  }

  /** The cards of one column with a heading before each group's first card. */
  withHeadings(status, shown, all, field) {
    const counts = new Map();
    for (const task of all) {
      const g = this.groupOf(task, field);
      counts.set(g, (counts.get(g) || 0) + 1);
    }
    const nodes = [];
    let current = null;
    for (const task of shown) {
      const g = this.groupOf(task, field);
      if (g !== current) {
        current = g;
        nodes.push(this.heading(status, g, field, counts.get(g)));
      }
      nodes.push(this.card(task));
    }
    return nodes;
  }

  heading(status, group, field, count) {
    const id = `${status}\u0001${field}\u0001${group}`;
    let el = this.headers.get(id);
    if (!el) {
      el = h('div', { class: 'card-group', 'data-testid': 'card-group', 'data-group': group });
      this.headers.set(id, el);
    }
    const text = `${group || `no ${field}`} · ${count}`;
    if (el.textContent !== text) el.textContent = text;
    return el;
  }

  reconcile(container, nodes) {
    let child = container.firstChild;
    for (const el of nodes) {
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
  el.dataset.merge = task.merge_status || '';
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
