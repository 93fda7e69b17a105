// The plan of a draft session (GET /v1/sessions/{id}/plan): its status and revisions, the
// tasks as a list grouped by phase and epic (with estimated hours) or as the dependency
// graph, each task editable in place, the conversation with the planner, and approval.
//
// Edits stay in the page until "Save", which sends the whole edited list as one PATCH made
// on the revision shown (`base_revision`): the server refuses it (409 `stale_revision`)
// when someone made a newer revision meanwhile, and checks the graph as a whole (422 with
// every error, shown beside the form). A revision made elsewhere while there are no edits
// simply replaces what is shown.

import { api, post, ApiError } from './api.js';
import { GraphView } from './graph.js';
import { h, fill, badge, cls, fmtClock, fmtDateTime, throttle } from './dom.js';
import { toast, toastError, errorLines } from './ui.js';

export const AGENTS = ['shell', 'claude', 'codex', 'gemini', 'auto'];
/** Plan states in which a person may edit the newest revision. */
const EDITABLE = new Set(['ready', 'failed']);
const PLANNING_POLL_MS = 3000;
const EVENT_LOAD_MS = 250; // plan.* entries in a burst (a replayed history): one load

function clone(value) {
  return JSON.parse(JSON.stringify(value));
}

function hoursOf(task) {
  const v = Number(task.estimated_hours);
  return task.estimated_hours === null || task.estimated_hours === undefined || !Number.isFinite(v) ? null : v;
}

export function fmtHours(hours) {
  if (hours === null || hours === undefined) return '';
  const v = Math.round(hours * 10) / 10;
  return `${v} h`;
}

/** Count and estimated hours of a list of tasks: "3 tasks · 5 h" (hours when any has them). */
export function totals(tasks) {
  let hours = 0;
  let estimated = 0;
  for (const t of tasks) {
    const v = hoursOf(t);
    if (v !== null) { hours += v; estimated += 1; }
  }
  const n = tasks.length;
  let text = `${n} task${n === 1 ? '' : 's'}`;
  if (estimated) {
    text += ` · ${fmtHours(hours)}`;
    if (estimated < n) text += ` (${estimated} estimated)`;
  }
  return { count: n, hours: estimated ? hours : null, text };
}

/** A field's value as an edit compares it: defaults and empties alike are null. */
function norm(name, value) {
  if (value === undefined || value === null || value === '') return null;
  if (Array.isArray(value) && !value.length) return null;
  if (name === 'priority' && Number(value) === 0) return null;
  return JSON.stringify(value);
}

/** An edit in words, the new revision's summary: "changed b (title, prompt); added c". */
export function describeEdit(before, after) {
  const old = new Map(before.map((t) => [t.key, t]));
  const now = new Map(after.map((t) => [t.key, t]));
  const added = [...now.keys()].filter((k) => !old.has(k));
  const removed = [...old.keys()].filter((k) => !now.has(k));
  const changed = [];
  for (const [key, task] of now) {
    const was = old.get(key);
    if (!was) continue;
    const names = [...new Set([...Object.keys(was), ...Object.keys(task)])];
    const fields = names.filter((n) => norm(n, was[n]) !== norm(n, task[n]));
    if (fields.length) changed.push(`${key} (${fields.join(', ')})`);
  }
  const parts = [];
  if (changed.length) parts.push(`changed ${changed.join(', ')}`);
  if (added.length) parts.push(`added ${added.join(', ')}`);
  if (removed.length) parts.push(`removed ${removed.join(', ')}`);
  const text = parts.join('; ');
  return text.length > 4000 ? `${text.slice(0, 3999)}…` : text;
}

/**
 * Items grouped by phase, then by epic, each group in the order its first task appears:
 * [{phase, items, epics: [{epic, items}]}]; `taskOf(item)` gives an item's task.
 */
export function groupByPhaseAndEpic(items, taskOf = (x) => x) {
  const phases = new Map();
  for (const item of items) {
    const t = taskOf(item);
    const phase = t.phase || '';
    const epic = t.epic || '';
    let p = phases.get(phase);
    if (!p) {
      p = { phase, items: [], epics: new Map() };
      phases.set(phase, p);
    }
    p.items.push(item);
    let e = p.epics.get(epic);
    if (!e) {
      e = { epic, items: [] };
      p.epics.set(epic, e);
    }
    e.items.push(item);
  }
  return [...phases.values()].map((p) => ({ ...p, epics: [...p.epics.values()] }));
}

export class PlanView {
  /** ctx: canOperate() -> bool, onSession(sessionPublic), onApproved(sessionPublic) */
  constructor(root, ctx) {
    this.root = root;
    this.ctx = ctx;
    this.session = null;
    this.plan = null; // the PlanPublic shown
    this.viewing = null; // an older revision's number, or null for the newest
    this.rows = []; // [{uid, task, isNew, el, line, editor}]
    this.openKeys = new Set(); // keys whose editor is open
    this.dirty = false;
    this.errors = [];
    this.notice = null; // {kind: 'stale' | 'saved' | 'info', text}
    this.busy = false;
    this.reloadAfter = false;
    this.sub = 'list';
    this.visible = false;
    this.generation = 0;
    this.loads = 0;
    this.uid = 0;
    this.structure = 0;
    this.pollTimer = null;
    this.refresh = throttle(() => this.load(), EVENT_LOAD_MS);
    this.build();
  }

  // --- building ----------------------------------------------------------------------

  build() {
    const button = (text, attrs, fn) => {
      const b = h('button', { type: 'button', text, ...attrs });
      b.addEventListener('click', fn);
      return b;
    };
    this.statusEl = h('span', { 'data-testid': 'plan-status' });
    this.revisionEl = h('span', { class: 'muted', 'data-testid': 'plan-revision' });
    this.revisionSelect = h('select', { 'data-testid': 'plan-revision-select', 'aria-label': 'Revision' });
    this.revisionSelect.addEventListener('change', () => {
      const n = Number(this.revisionSelect.value);
      this.viewing = !n || (this.plan && n === this.plan.latest_revision) ? null : n;
      this.load();
    });
    this.autoEl = h('span', { class: 'chip', 'data-testid': 'plan-auto-approve', text: 'auto-approve', hidden: true });
    this.replan = button('Plan again', { class: 'small', 'data-testid': 'plan-replan', hidden: true }, () => this.planAgain());
    this.approveButton = button('Approve and run', { class: 'primary', 'data-testid': 'plan-approve', hidden: true }, () => this.approve());
    this.head = h('div', { class: 'plan-head', 'data-testid': 'plan-head' },
      h('h3', { text: 'Plan' }), this.statusEl, this.revisionEl, this.revisionSelect, this.autoEl,
      h('span', { class: 'spacer' }), this.replan, this.approveButton);
    this.planningEl = h('div', { class: 'plan-planning', 'data-testid': 'plan-planning', role: 'status', hidden: true },
      h('span', { class: 'spinner', 'aria-hidden': 'true' }), h('span', { class: 'plan-planning-text' }));
    this.noticeEl = h('div', { class: 'plan-notice', 'data-testid': 'plan-notice', role: 'status', hidden: true });
    this.summaryEl = h('p', { class: 'plan-summary', 'data-testid': 'plan-summary' });
    this.errorEl = h('p', { class: 'reason st-failed', 'data-testid': 'plan-error', hidden: true });

    this.subButtons = new Map();
    const subtabs = h('nav', { class: 'subtabs', role: 'tablist' });
    for (const [name, text] of [['list', 'List'], ['graph', 'Graph']]) {
      const b = button(text, { role: 'tab', 'data-testid': `plan-tab-${name}` }, () => this.showSub(name));
      this.subButtons.set(name, b);
      subtabs.append(b);
    }
    this.totalsEl = h('span', { class: 'muted', 'data-testid': 'plan-totals' });
    this.addButton = button('Add task', { class: 'small', 'data-testid': 'plan-add' }, () => this.addTask());
    this.phaseList = h('datalist', { id: 'plan-phases' });
    this.epicList = h('datalist', { id: 'plan-epics' });
    this.list = h('div', { class: 'plan-list', 'data-testid': 'plan-list' });
    this.form = h('fieldset', { class: 'plan-form', 'data-testid': 'plan-form' }, this.list, this.phaseList, this.epicList);
    this.form.addEventListener('input', (e) => this.onInput(e));
    this.form.addEventListener('change', (e) => this.onInput(e));
    this.form.addEventListener('click', (e) => this.onClick(e));

    this.errorList = h('ul', { class: 'form-errors', 'data-testid': 'plan-errors', hidden: true });
    this.saveButton = button('Save', { class: 'primary', 'data-testid': 'plan-save' }, () => this.save());
    this.discardButton = button('Discard', { class: 'ghost', 'data-testid': 'plan-discard' }, () => this.discard());
    this.savebar = h('div', { class: 'plan-savebar', 'data-testid': 'plan-savebar', hidden: true },
      h('div', { class: 'plan-savebar-line' },
        h('span', { class: 'plan-savebar-text', text: 'Unsaved edits' }), h('span', { class: 'spacer' }),
        this.discardButton, this.saveButton),
      this.errorList);

    this.graphBox = h('div', { class: 'plan-graph', 'data-testid': 'plan-graph', hidden: true });
    this.graph = new GraphView(this.graphBox, { onOpen: (key) => this.openTask(key) });
    this.listBox = h('div', { class: 'plan-list-box' }, this.form);

    this.messages = h('ul', { class: 'plan-messages', 'data-testid': 'plan-messages' });
    this.feedbackInput = h('textarea', {
      rows: '3', 'data-testid': 'plan-feedback-input', 'aria-label': 'Feedback to the planner',
      placeholder: 'Tell the planner what to change (a list adds tasks with the heuristic planner).',
    });
    this.feedbackHint = h('p', { class: 'muted small', 'data-testid': 'plan-feedback-hint' });
    this.feedbackSend = h('button', { type: 'submit', class: 'primary small', 'data-testid': 'plan-feedback-send', text: 'Send' });
    this.feedbackForm = h('form', { class: 'plan-feedback', 'data-testid': 'plan-feedback' },
      this.feedbackInput, h('div', { class: 'plan-feedback-line' }, this.feedbackHint, h('span', { class: 'spacer' }), this.feedbackSend));
    this.feedbackForm.addEventListener('submit', (e) => {
      e.preventDefault();
      this.sendFeedback();
    });
    this.feedbackInput.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
        e.preventDefault();
        this.sendFeedback();
      }
    });

    this.emptyEl = h('p', { class: 'empty', 'data-testid': 'plan-empty', text: 'Loading…' });
    this.content = h('div', { class: 'plan', hidden: true },
      this.head, this.planningEl, this.noticeEl, this.summaryEl, this.errorEl,
      h('div', { class: 'plan-body' },
        h('section', { class: 'plan-main' },
          h('div', { class: 'toolbar' }, subtabs, this.totalsEl, h('span', { class: 'spacer' }), this.addButton),
          this.savebar, this.listBox, this.graphBox),
        h('aside', { class: 'plan-chat', 'data-testid': 'plan-chat' },
          h('h4', { text: 'Conversation' }), this.messages, this.feedbackForm)));
    fill(this.root, this.emptyEl, this.content);
    this.showSub(this.sub);
  }

  // --- the session and the plan ------------------------------------------------------

  /** A new session is open (or none): forget everything of the last one. */
  reset() {
    this.generation += 1;
    clearTimeout(this.pollTimer);
    this.pollTimer = null;
    this.session = null;
    this.plan = null;
    this.viewing = null;
    this.rows = [];
    this.openKeys.clear();
    this.dirty = false;
    this.errors = [];
    this.notice = null;
    this.busy = false;
    this.reloadAfter = false;
    this.graph.reset();
    this.content.hidden = true;
    this.emptyEl.hidden = false;
    this.emptyEl.textContent = 'Loading…';
  }

  setVisible(visible) {
    this.visible = visible;
    this.graph.setVisible(visible && this.sub === 'graph');
    if (visible) this.updateGraph();
    this.schedulePoll();
  }

  /** The open session, fresher: load the plan when it has a newer revision or status. */
  setSession(session) {
    if (!session) return;
    this.session = session;
    if (!session.plan_status) {
      this.emptyEl.textContent = 'This session was submitted with its tasks: it has no plan.';
      this.emptyEl.hidden = false;
      this.content.hidden = true;
      return;
    }
    const p = this.plan;
    if (!p || session.plan_revision !== p.latest_revision || session.plan_status !== p.status) {
      this.load();
    } else {
      this.renderState();
    }
  }

  /** An entry of the session's timeline: a plan.* entry means a new state or revision. */
  onEvent(ev) {
    if (ev && typeof ev.type === 'string' && ev.type.startsWith('plan.')) this.refresh();
  }

  get sessionPath() {
    return `/v1/sessions/${encodeURIComponent(this.session.id)}`;
  }

  async load() {
    if (!this.session) return;
    if (this.busy) {
      this.reloadAfter = true; // our own request's answer comes first
      return;
    }
    const gen = this.generation;
    const seq = ++this.loads; // only the newest answer counts: they may arrive out of order
    const query = this.viewing ? { revision: this.viewing } : undefined;
    try {
      const plan = await api(`${this.sessionPath}/plan`, { query });
      if (gen !== this.generation || seq !== this.loads || this.busy) return;
      this.receive(plan);
    } catch (err) {
      if (gen !== this.generation || seq !== this.loads) return;
      if (err instanceof ApiError && err.code === 'revision_not_found') {
        this.viewing = null;
        this.load();
        return;
      }
      toastError(err, 'Plan');
    }
  }

  receive(plan) {
    const shown = this.plan;
    const same = shown && plan.revision === shown.revision && plan.latest_revision === shown.latest_revision
      && plan.status === shown.status;
    if ((this.dirty && shown && !this.viewing) || (same && !this.dirty)) {
      // Keep the edits; say what changed underneath them.
      if (this.dirty && plan.latest_revision !== shown.revision) {
        const newest = (plan.revisions || []).find((r) => r.number === plan.latest_revision);
        this.notice = {
          kind: 'stale',
          text: `Revision ${plan.latest_revision} was made meanwhile${newest ? ` by ${newest.actor}` : ''}: saving your edits of revision ${shown.revision} will be refused. Discard them to see it.`,
        };
      }
      this.plan = {
        ...shown,
        status: plan.status,
        latest_revision: plan.latest_revision,
        revisions: plan.revisions,
        messages: plan.messages,
        runs: plan.runs,
        error: plan.error,
      };
      this.tellSession(plan);
      this.renderHead();
      this.renderChat();
      this.renderNotice();
      this.renderState();
      return;
    }
    this.setPlan(plan);
  }

  setPlan(plan) {
    this.plan = plan;
    this.rows = (plan.tasks || []).map((task) => ({ uid: ++this.uid, task: clone(task), isNew: false }));
    this.dirty = false;
    this.errors = [];
    this.structure += 1;
    this.render();
    this.tellSession(plan);
  }

  /** The session header and list show the plan's state: keep them in step at once. */
  tellSession(plan) {
    const s = this.session;
    if (!s || (s.plan_revision === plan.latest_revision && s.plan_status === plan.status)) return;
    this.ctx.onSession({ ...s, plan_revision: plan.latest_revision, plan_status: plan.status });
  }

  // --- rendering ---------------------------------------------------------------------

  render() {
    if (!this.plan) return;
    this.emptyEl.hidden = true;
    this.content.hidden = false;
    this.renderHead();
    this.renderList();
    this.renderChat();
    this.renderNotice();
    this.renderErrors();
    this.renderState();
    this.updateGraph();
  }

  renderHead() {
    const p = this.plan;
    const status = p.status || 'none';
    fill(this.statusEl, badge(status));
    this.statusEl.dataset.status = status;
    let older = '';
    if (p.revision !== null && p.revision !== p.latest_revision) {
      older = this.viewing ? ` of ${p.latest_revision} (older: read only)` : ` (${p.latest_revision} is newer)`;
    }
    this.revisionEl.dataset.revision = String(p.revision ?? '');
    this.revisionEl.textContent = p.revision === null
      ? 'no revision yet'
      : `revision ${p.revision}${older}${p.source ? ` · ${p.source}` : ''}`;
    const revisions = p.revisions || [];
    fill(this.revisionSelect, [...revisions].reverse().map((r) => h('option', {
      value: String(r.number),
      text: `#${r.number}${r.number === p.latest_revision ? ' (newest)' : ''} · ${r.source} · ${r.actor} · ${r.tasks} tasks · ${fmtClock(r.created_at)}`,
      title: r.summary,
    })));
    this.revisionSelect.value = String(p.revision ?? '');
    this.revisionSelect.hidden = revisions.length < 2;
    this.autoEl.hidden = !p.auto_approve;
    this.summaryEl.textContent = p.summary || '';
    this.summaryEl.hidden = !p.summary;
    this.errorEl.textContent = p.error ? `Planning failed: ${p.error}` : '';
    this.errorEl.hidden = !p.error || p.status !== 'failed';
    const sum = totals(this.rows.map((r) => r.task));
    this.totalsEl.textContent = sum.text;
  }

  renderNotice() {
    const n = this.notice;
    this.noticeEl.hidden = !n;
    if (!n) return;
    this.noticeEl.dataset.kind = n.kind;
    this.noticeEl.className = `plan-notice ${cls(n.kind)}`;
    const close = h('button', { type: 'button', class: 'ghost small', 'aria-label': 'Dismiss', text: '×' });
    close.addEventListener('click', () => {
      this.notice = null;
      this.renderNotice();
    });
    fill(this.noticeEl, h('span', { class: 'plan-notice-text', text: n.text }), close);
  }

  renderErrors() {
    fill(this.errorList, this.errors.map((e) => h('li', { text: e })));
    this.errorList.hidden = !this.errors.length;
  }

  /** Which controls work now: cheap, called after every change of state. */
  renderState() {
    const p = this.plan;
    const s = this.session;
    if (!p || !s) return;
    const operator = this.ctx.canOperate();
    const draft = s.status === 'draft';
    const planning = p.status === 'planning';
    const newest = p.revision === p.latest_revision;
    // Edits made on a revision that is no longer the newest may still be sent: the server
    // refuses them (stale_revision), and the page then shows the newest.
    // A failed first planning leaves no revision: a plan may then be written by hand (on
    // revision 0).
    const editable = operator && draft && !this.viewing && EDITABLE.has(p.status) && !this.busy;
    this.root.dataset.editable = String(editable);
    this.form.disabled = !editable;
    this.addButton.hidden = !(operator && draft);
    this.addButton.disabled = !editable;
    this.revisionSelect.disabled = this.dirty || this.busy;
    this.savebar.hidden = !this.dirty && !this.errors.length;
    this.saveButton.disabled = !editable || !this.dirty;
    this.discardButton.disabled = this.busy || !this.dirty;

    this.approveButton.hidden = !(operator && draft);
    let why = '';
    if (planning) why = 'The planner is at work.';
    else if (p.status !== 'ready') why = 'There is no plan ready to approve.';
    else if (this.dirty) why = 'Save or discard your edits first.';
    else if (!newest) why = 'Show the newest revision to approve it.';
    this.approveButton.disabled = this.busy || Boolean(why);
    this.approveButton.title = why || `Run revision ${p.revision}: its tasks become the session's graph.`;
    this.replan.hidden = !(operator && draft && p.status === 'failed');
    this.replan.disabled = this.busy;
    // Only controls a person may use now count as actions ([data-action]).
    offer(this.approveButton, 'approve-plan');
    offer(this.replan, 'replan');

    this.feedbackForm.hidden = !(operator && draft);
    let hint = 'Ctrl+Enter sends.';
    if (planning) hint = 'The planner is at work…';
    else if (this.dirty) hint = 'Save or discard your edits first.';
    this.feedbackHint.textContent = hint;
    const noFeedback = this.busy || planning || this.dirty || !EDITABLE.has(p.status);
    this.feedbackInput.disabled = noFeedback;
    this.feedbackSend.disabled = noFeedback;

    this.planningEl.hidden = !planning;
    if (planning) {
      const runs = p.runs || [];
      const run = runs[runs.length - 1];
      this.planningEl.querySelector('.plan-planning-text').textContent = run
        ? `The planner (${run.agent}) is at work: ${run.status}${run.attempt > 1 ? `, attempt ${run.attempt}` : ''}…`
        : 'The planner is at work…';
    }
    for (const row of this.rows) {
      if (row.el) row.el.classList.toggle('readonly', !editable);
    }
    this.schedulePoll();
  }

  /** While a planner works, ask now and then too (the stream says so first, normally). */
  schedulePoll() {
    const planning = this.plan && this.plan.status === 'planning';
    if (!planning || !this.visible) {
      clearTimeout(this.pollTimer);
      this.pollTimer = null;
      return;
    }
    if (this.pollTimer !== null) return;
    this.pollTimer = setTimeout(() => {
      this.pollTimer = null;
      this.load();
    }, PLANNING_POLL_MS);
  }

  renderList() {
    const tasks = this.rows.map((r) => r.task);
    const phases = [...new Set(tasks.map((t) => t.phase).filter(Boolean))];
    const epics = [...new Set(tasks.map((t) => t.epic).filter(Boolean))];
    fill(this.phaseList, phases.map((v) => h('option', { value: v })));
    fill(this.epicList, epics.map((v) => h('option', { value: v })));
    if (!this.rows.length) {
      const empty = {
        planning: 'The planner is at work…',
        failed: 'No plan: the planning failed. Plan again, send feedback, or add tasks by hand.',
      }[this.plan.status] || 'No task in this revision.';
      fill(this.list, h('p', { class: 'empty', 'data-testid': 'plan-list-empty', text: empty }));
      return;
    }
    const groups = groupByPhaseAndEpic(this.rows, (r) => r.task);
    const taskList = (rows) => h('ul', { class: 'plan-tasks' }, rows.map((r) => this.rowEl(r)));
    const epicBlock = (e) => {
      if (!epics.length) return taskList(e.items);
      return h('div', { class: 'plan-epic', 'data-testid': 'plan-epic', 'data-epic': e.epic },
        h('div', { class: 'plan-group-head' },
          h('span', { class: 'plan-epic-name', text: e.epic ? `Epic: ${e.epic}` : 'No epic' }),
          h('span', { class: 'muted small', 'data-testid': 'plan-group-totals', text: totals(e.items.map((r) => r.task)).text })),
        taskList(e.items));
    };
    if (!phases.length) {
      fill(this.list, groups.flatMap((g) => g.epics.map(epicBlock)));
      return;
    }
    fill(this.list, groups.map((g) => h('section', { class: 'plan-group', 'data-testid': 'plan-group', 'data-phase': g.phase },
      h('div', { class: 'plan-group-head' },
        h('h3', { class: 'plan-phase-name', text: g.phase ? `Phase: ${g.phase}` : 'No phase' }),
        h('span', { class: 'muted small', 'data-testid': 'plan-group-totals', text: totals(g.items.map((r) => r.task)).text })),
      g.epics.map(epicBlock))));
  }

  rowEl(row) {
    if (!row.el) {
      row.line = h('div', { class: 'plan-task-line' });
      row.el = h('li', { class: 'plan-task', 'data-testid': 'plan-task', 'data-uid': String(row.uid) }, row.line);
    }
    this.fillLine(row);
    const open = this.openKeys.has(row.task.key) || row.isNew;
    if (open && this.mayEdit()) this.openEditor(row);
    return row.el;
  }

  /** Whether this person may edit this session's plan at all (now or once it is ready). */
  mayEdit() {
    return this.ctx.canOperate() && Boolean(this.session) && this.session.status === 'draft';
  }

  fillLine(row) {
    const t = row.task;
    row.el.dataset.key = t.key;
    const deps = t.depends_on || [];
    const hours = hoursOf(t);
    const operator = this.mayEdit();
    fill(row.line,
      h('span', { class: 'key', 'data-testid': 'plan-task-key', text: t.key || '(no key)' }),
      h('span', { class: 'plan-task-title', 'data-testid': 'plan-task-title', text: t.title && t.title !== t.key ? t.title : '' }),
      h('span', { class: 'agent', 'data-testid': 'plan-task-agent', text: t.agent || 'shell' }),
      t.priority ? h('span', { class: 'chip', title: 'Priority', text: `P${t.priority}` }) : null,
      hours !== null ? h('span', { class: 'hours', 'data-testid': 'plan-task-hours', title: 'Estimated hours', text: fmtHours(hours) }) : null,
      deps.length ? h('span', { class: 'muted small plan-deps', 'data-testid': 'plan-task-deps', text: `after ${deps.join(', ')}` }) : null,
      h('span', { class: 'spacer' }),
      operator ? h('button', { type: 'button', class: 'ghost small', 'data-testid': 'plan-task-edit', 'data-do': 'toggle', text: row.editor ? 'Close' : 'Edit' }) : null,
      operator ? h('button', { type: 'button', class: 'ghost small danger-text', 'data-testid': 'plan-task-remove', 'data-do': 'remove', title: 'Remove this task (its dependents wait for what it waited for)', text: 'Remove' }) : null);
  }

  openEditor(row) {
    if (row.editor) return;
    const t = row.task;
    const field = (name, text, input, wide = false) => {
      input.dataset.field = name;
      input.setAttribute('data-testid', `plan-field-${name}`);
      return h('label', { class: `field${wide ? ' wide' : ''}` }, h('span', { class: 'field-name', text }), input);
    };
    const text = (value, attrs = {}) => h('input', { type: 'text', value: value ?? '', spellcheck: 'false', ...attrs });
    const agent = h('select', null, AGENTS.map((a) => h('option', { value: a, text: a, selected: (t.agent || 'shell') === a })));
    const prompt = h('textarea', { rows: '4', spellcheck: 'false' });
    prompt.value = t.prompt || '';
    row.editor = h('div', { class: 'plan-task-edit', 'data-testid': 'plan-task-editor' },
      row.isNew ? field('key', 'Key', text(t.key, { required: true, maxlength: '64' })) : null,
      field('title', 'Title', text(t.title, { maxlength: '500' }), true),
      field('agent', 'Agent', agent),
      field('priority', 'Priority', h('input', { type: 'number', step: '1', min: '-1000', max: '1000', value: t.priority ?? 0 })),
      field('estimated_hours', 'Estimated hours', h('input', { type: 'number', step: '0.5', min: '0', value: t.estimated_hours ?? '' })),
      field('phase', 'Phase', text(t.phase, { list: 'plan-phases', maxlength: '100' })),
      field('epic', 'Epic', text(t.epic, { list: 'plan-epics', maxlength: '100' })),
      field('depends_on', 'Depends on', text((t.depends_on || []).join(', '), { placeholder: 'keys, comma-separated' }), true),
      field('prompt', 'Prompt', prompt, true));
    row.el.append(row.editor);
    row.el.classList.add('editing');
    this.openKeys.add(t.key);
    this.fillLine(row);
  }

  closeEditor(row) {
    if (row.editor) row.editor.remove();
    row.editor = null;
    row.el.classList.remove('editing');
    this.openKeys.delete(row.task.key);
    this.fillLine(row);
  }

  renderChat() {
    const messages = (this.plan && this.plan.messages) || [];
    if (!messages.length) {
      fill(this.messages, h('li', { class: 'muted small', text: 'No message yet.' }));
      return;
    }
    fill(this.messages, messages.map((m) => h('li', {
      class: `plan-message role-${cls(m.role)}`, 'data-testid': 'plan-message', 'data-role': m.role,
    },
    h('div', { class: 'plan-message-head' },
      h('strong', { text: m.role === 'planner' ? `planner · ${m.author}` : m.author }),
      m.revision ? h('span', { class: 'chip', title: m.role === 'planner' ? 'The revision it made' : 'The revision it was about', text: `rev ${m.revision}` }) : null,
      h('span', { class: 'spacer' }),
      h('span', { class: 'muted small', title: fmtDateTime(m.created_at), text: fmtClock(m.created_at) })),
    h('div', { class: 'plan-message-text', text: m.text }))));
    this.messages.scrollTop = this.messages.scrollHeight;
  }

  showSub(name) {
    this.sub = name;
    for (const [n, b] of this.subButtons) b.setAttribute('aria-selected', String(n === name));
    this.listBox.hidden = name !== 'list';
    this.graphBox.hidden = name !== 'graph';
    this.graph.setVisible(this.visible && name === 'graph');
    this.updateGraph();
  }

  updateGraph() {
    if (!this.plan || !this.visible || this.sub !== 'graph') return;
    const tasks = new Map();
    this.rows.forEach((r, i) => {
      const t = r.task;
      tasks.set(t.key, {
        id: t.key, key: t.key, title: t.title, status: 'draft', depends_on: t.depends_on || [], _order: i,
      });
    });
    this.graph.update(tasks, `${this.plan.revision}:${this.structure}`, null);
  }

  /** A node of the graph was clicked: its task in the list, opened for editing. */
  openTask(key) {
    const row = this.rows.find((r) => r.task.key === key);
    if (!row) return;
    this.showSub('list');
    if (this.root.dataset.editable === 'true' && !row.editor) this.openEditor(row);
    row.el.scrollIntoView({ block: 'center' });
    row.el.classList.add('flash');
    setTimeout(() => row.el.classList.remove('flash'), 1200);
  }

  // --- editing -----------------------------------------------------------------------

  rowOf(target) {
    const li = target.closest('[data-testid="plan-task"]');
    if (!li) return null;
    return this.rows.find((r) => String(r.uid) === li.dataset.uid) || null;
  }

  onClick(e) {
    const button = e.target.closest('[data-do]');
    if (!button || this.form.disabled) return;
    const row = this.rowOf(button);
    if (!row) return;
    if (button.dataset.do === 'toggle') {
      if (row.editor) this.closeEditor(row);
      else this.openEditor(row);
    } else if (button.dataset.do === 'remove') {
      this.removeTask(row);
    }
  }

  onInput(e) {
    const name = e.target.dataset && e.target.dataset.field;
    if (!name) return;
    const row = this.rowOf(e.target);
    if (!row) return;
    if (setField(row.task, name, e.target.value)) {
      if (name === 'key') {
        row.el.dataset.key = row.task.key;
      }
      this.edited(name === 'depends_on' || name === 'key');
      this.fillLine(row);
    }
  }

  edited(structural = false) {
    if (!this.dirty && this.notice && this.notice.kind === 'saved') this.notice = null;
    this.dirty = true;
    if (structural) this.structure += 1;
    this.renderHead();
    this.renderNotice();
    this.renderState();
  }

  addTask() {
    const keys = new Set(this.rows.map((r) => r.task.key));
    let n = this.rows.length + 1;
    while (keys.has(`task-${n}`)) n += 1;
    const agents = this.rows.map((r) => r.task.agent).filter(Boolean);
    const task = { key: `task-${n}`, title: '', prompt: '', agent: agents[agents.length - 1] || 'shell', depends_on: [] };
    const row = { uid: ++this.uid, task, isNew: true };
    this.rows.push(row);
    this.edited(true);
    this.renderList(); // opens the new task's editor
    row.el.scrollIntoView({ block: 'nearest' });
    const first = row.editor.querySelector('input');
    if (first) first.focus();
  }

  /** Remove a task the way the server's `remove` change does: whoever waited for it waits
   * for what it waited for. */
  removeTask(row) {
    const key = row.task.key;
    const inherited = row.task.depends_on || [];
    this.rows = this.rows.filter((r) => r !== row);
    for (const r of this.rows) {
      const deps = r.task.depends_on || [];
      if (!deps.includes(key)) continue;
      const kept = deps.filter((d) => d !== key);
      r.task.depends_on = [...new Set([...kept, ...inherited.filter((d) => d !== r.task.key)])];
      if (r.editor) {
        const input = r.editor.querySelector('[data-field="depends_on"]');
        if (input) input.value = r.task.depends_on.join(', ');
      }
    }
    this.openKeys.delete(key);
    this.edited(true);
    this.renderList();
    this.updateGraph();
  }

  discard() {
    if (!this.plan) return;
    this.notice = null;
    this.dirty = false;
    if (this.plan.latest_revision !== this.plan.revision && !this.viewing) {
      this.load();
      return;
    }
    this.setPlan(this.plan);
  }

  // --- talking to the API ------------------------------------------------------------

  async request(run) {
    this.busy = true;
    this.reloadAfter = false;
    this.loads += 1; // a load under way answers for a plan older than this request's
    this.renderState();
    try {
      return await run();
    } finally {
      this.busy = false;
      this.renderState();
      if (this.reloadAfter) {
        this.reloadAfter = false;
        this.load();
      }
    }
  }

  async save() {
    if (!this.plan || !this.dirty) return;
    const base = this.plan.revision ?? 0;
    const tasks = this.rows.map((r) => r.task);
    const summary = describeEdit(this.plan.tasks || [], tasks);
    if (!summary) {
      this.notice = { kind: 'info', text: 'Nothing to save: the plan is as it was.' };
      this.setPlan(this.plan);
      this.renderNotice();
      return;
    }
    await this.request(async () => {
      try {
        const plan = await api(`${this.sessionPath}/plan`, { method: 'PATCH', body: { base_revision: base, tasks, summary } });
        this.notice = { kind: 'saved', text: `Saved as revision ${plan.revision}.` };
        this.setPlan(plan);
      } catch (err) {
        this.saveFailed(err, base);
      }
    });
  }

  saveFailed(err, base) {
    if (!(err instanceof ApiError)) {
      toastError(err, 'Save');
      return;
    }
    if (err.status === 422) {
      this.errors = errorLines(err);
      this.renderErrors();
      this.renderState();
      return;
    }
    const stale = {
      stale_revision: () => {
        const current = err.details && err.details.current;
        return `Not saved: the plan changed meanwhile. Revision ${current ?? 'a newer one'} is the newest, and your edits were made on revision ${base}. It is shown now; make your edits again on it.`;
      },
      planning_in_progress: () => 'Not saved: the planner is at work on the plan. Edit once it has answered.',
      session_not_draft: () => 'Not saved: the plan was approved meanwhile and runs now.',
    }[err.code];
    if (!stale) {
      this.errors = errorLines(err);
      this.renderErrors();
      toastError(err, 'Save');
      return;
    }
    this.notice = { kind: 'stale', text: stale() };
    this.viewing = null;
    this.setPlan(this.plan); // the edits go: what they were made on is gone
    this.reloadAfter = true; // the newest revision, once the request has ended
  }

  async sendFeedback() {
    const text = this.feedbackInput.value.trim();
    if (!text || !this.plan || this.feedbackSend.disabled) return;
    await this.request(async () => {
      try {
        const plan = await post(`${this.sessionPath}/plan/messages`, { text });
        this.feedbackInput.value = '';
        this.viewing = null;
        this.notice = plan.status === 'planning'
          ? { kind: 'info', text: 'The planner is revising the plan…' }
          : { kind: 'saved', text: `The planner answered with revision ${plan.revision}.` };
        this.setPlan(plan);
      } catch (err) {
        toastError(err, 'Feedback');
        this.reloadAfter = true;
      }
    });
  }

  async planAgain() {
    await this.request(async () => {
      try {
        const plan = await post(`${this.sessionPath}/plan`, {});
        this.notice = null;
        this.viewing = null;
        this.setPlan(plan);
      } catch (err) {
        toastError(err, 'Plan');
        this.reloadAfter = true;
      }
    });
  }

  async approve() {
    if (!this.plan || this.approveButton.disabled) return;
    const count = this.rows.length;
    await this.request(async () => {
      try {
        const session = await post(`${this.sessionPath}/approve`);
        toast(`Plan approved: ${count} task${count === 1 ? '' : 's'} run now`);
        this.session = session;
        this.openKeys.clear();
        this.reloadAfter = true;
        this.ctx.onApproved(session);
      } catch (err) {
        toastError(err, 'Approve');
        this.reloadAfter = true;
      }
    });
  }
}

function offer(button, action) {
  if (button.hidden) button.removeAttribute('data-action');
  else button.dataset.action = action;
}

/** Set one field of a task from a form's text; false when nothing changed. */
export function setField(task, name, raw) {
  const before = JSON.stringify(task[name]);
  const text = String(raw ?? '');
  switch (name) {
    case 'key':
      task.key = text.trim();
      break;
    case 'title':
    case 'prompt':
      task[name] = text;
      break;
    case 'agent':
      task.agent = text;
      break;
    case 'priority': {
      const n = Number.parseInt(text, 10);
      if (Number.isFinite(n) && n !== 0) task.priority = n;
      else delete task.priority;
      break;
    }
    case 'estimated_hours': {
      const s = text.trim();
      if (!s) delete task.estimated_hours;
      else task.estimated_hours = Number.isFinite(Number(s)) ? Number(s) : s;
      break;
    }
    case 'phase':
    case 'epic': {
      const s = text.trim();
      if (s) task[name] = s;
      else delete task[name];
      break;
    }
    case 'depends_on':
      task.depends_on = text.split(/[\s,]+/).filter(Boolean);
      break;
    default:
      return false;
  }
  return JSON.stringify(task[name]) !== before;
}
