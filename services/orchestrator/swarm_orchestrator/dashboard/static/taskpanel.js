// One task, opened from the board or the graph: its state and controls (retry, cancel,
// approve), prompt, attempts with their gates, reviewers' verdicts and people's comments (a
// comment may send the task back), the live transcript (task.progress events: messages, tool
// calls, file changes) and the diff.

import { api, post, ApiError } from './api.js';
import {
  h, fill, badge, cls, label, fmtDateTime, fmtClock, fmtDuration, fmtTokens, fmtCost,
  parseTime, usageTokens, throttle, ENDED_STATES,
} from './dom.js';
import { actionButton, toast, toastError } from './ui.js';

const TABS = ['overview', 'attempts', 'reviews', 'transcript', 'diff'];
const HISTORY_PAGE = 1000;
const HISTORY_PAGES = 10;
const MAX_ENTRIES = 2000;
const MAX_PATCH_LINES = 4000;
const MAX_DATA_CHARS = 4000;
const DETAIL_MS = 1000;
const CANCELLABLE = new Set(['pending', 'queued', 'running', 'awaiting_approval', 'reviewing', 'racing']);

export class TaskPanel {
  /**
   * ctx: canOperate() -> bool, onClose(), onChanged(taskPublic), idOfKey(key) -> id | null,
   * onOpen(id)
   */
  constructor(root, ctx) {
    this.root = root;
    this.ctx = ctx;
    this.id = null;
    this.task = null;
    this.detail = null;
    this.tab = 'overview';
    this.entries = new Map();
    this.rendered = 0; // highest event id in the transcript DOM
    this.historyLoaded = false;
    this.diffKey = null;
    this.generation = 0;
    this.refreshDetail = throttle(() => this.loadDetail(), DETAIL_MS);
    this.build();
  }

  build() {
    this.keyEl = h('h2', { class: 'task-key', 'data-testid': 'task-key' });
    this.statusEl = h('span', { 'data-testid': 'task-status' });
    this.titleEl = h('p', { class: 'task-title', 'data-testid': 'task-title' });
    this.controls = h('div', { class: 'controls', 'data-testid': 'task-controls' });
    const close = h('button', { type: 'button', class: 'ghost', 'data-testid': 'task-close', title: 'Close (Esc)', text: '×' });
    close.addEventListener('click', () => this.ctx.onClose());
    this.tabButtons = new Map();
    const tabs = h('nav', { class: 'subtabs', role: 'tablist' });
    for (const name of TABS) {
      const b = h('button', { type: 'button', role: 'tab', 'data-testid': `task-tab-${name}`, text: name });
      b.addEventListener('click', () => this.showTab(name));
      this.tabButtons.set(name, b);
      tabs.append(b);
    }
    this.bodies = new Map(TABS.map((name) => [name, h('div', { class: `task-body body-${name}`, 'data-testid': `task-${name}`, hidden: true })]));
    this.reviewList = h('div', { class: 'reviews', 'data-testid': 'task-review-list' });
    this.commentForm = this.buildCommentForm();
    fill(this.bodies.get('reviews'), this.reviewList, this.commentForm);
    this.transcript = h('div', { class: 'transcript', 'data-testid': 'transcript' });
    this.transcriptNote = h('p', { class: 'muted small' });
    fill(this.bodies.get('transcript'), this.transcriptNote, this.transcript);
    fill(this.root,
      h('header', { class: 'task-head' }, this.keyEl, this.statusEl, h('span', { class: 'spacer' }), close),
      this.titleEl, this.controls, tabs, ...this.bodies.values());
    this.showTab(this.tab);
  }

  get isOpen() {
    return this.id !== null;
  }

  open(id, task) {
    if (this.id === id) return;
    this.generation += 1;
    this.id = id;
    this.task = task || null;
    this.detail = null;
    this.entries = new Map();
    this.rendered = 0;
    this.historyLoaded = false;
    this.diffKey = null;
    this.root.dataset.taskId = id;
    this.root.hidden = false;
    this.transcript.replaceChildren();
    this.transcriptNote.textContent = 'Loading…';
    for (const name of ['overview', 'attempts', 'diff']) fill(this.bodies.get(name), h('p', { class: 'muted', text: 'Loading…' }));
    this.renderHead();
    this.loadDetail();
    this.loadHistory();
  }

  close() {
    this.generation += 1;
    this.id = null;
    this.task = null;
    this.detail = null;
    this.root.hidden = true;
    delete this.root.dataset.taskId;
  }

  buildCommentForm() {
    const text = h('textarea', { rows: 3, 'data-testid': 'comment-body', placeholder: 'A comment on this task…', maxlength: 20000 });
    const changes = h('input', { type: 'checkbox', 'data-testid': 'comment-request-changes' });
    const send = h('button', { type: 'submit', class: 'primary', 'data-testid': 'comment-send', text: 'Comment' });
    const form = h('form', { class: 'comment-form', 'data-testid': 'comment-form' },
      h('h4', { text: 'Comment' }), text,
      h('label', { class: 'small' }, changes, ' Request changes: send the task back with this comment as feedback'),
      h('div', { class: 'controls' }, send));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const body = text.value.trim();
      if (!body || !this.id) return;
      send.disabled = true;
      try {
        const answer = await post(`/v1/tasks/${encodeURIComponent(this.id)}/comments`, { body, request_changes: changes.checked });
        text.value = '';
        changes.checked = false;
        toast(answer.comment.request_changes ? `${answer.task.key} sent back` : 'Comment kept');
        this.ctx.onChanged(answer.task);
        this.taskChanged(answer.task);
        this.loadDetail();
      } catch (err) {
        toastError(err, 'Comment');
      } finally {
        send.disabled = false;
      }
    });
    return form;
  }

  showTab(name) {
    this.tab = name;
    for (const [n, b] of this.tabButtons) b.setAttribute('aria-selected', String(n === name));
    for (const [n, el] of this.bodies) el.hidden = n !== name;
    if (name === 'diff') this.loadDiff();
    if (name === 'transcript') this.stickToBottom(true);
  }

  /** The live store has a newer TaskPublic of the open task. */
  taskChanged(task) {
    if (!task || task.id !== this.id) return;
    this.task = { ...(this.task || {}), ...task };
    this.renderHead();
    this.refreshDetail();
  }

  /** An event of the session stream. */
  onEvent(ev) {
    if (!this.id || ev.task_id !== this.id) return;
    this.addEntry(ev);
    if (ev.type !== 'task.progress') this.refreshDetail();
  }

  async loadDetail() {
    const id = this.id;
    const gen = this.generation;
    if (!id) return;
    try {
      const detail = await api(`/v1/tasks/${encodeURIComponent(id)}`);
      if (gen !== this.generation) return;
      this.detail = detail;
      this.task = { ...(this.task || {}), ...detail };
      this.renderHead();
      this.renderOverview();
      this.renderAttempts();
      this.renderReviews();
      if (this.tab === 'diff') this.loadDiff();
    } catch (err) {
      if (gen === this.generation) {
        fill(this.bodies.get('overview'), h('p', { class: 'error', text: err.message }));
        toastError(err, 'Task');
      }
    }
  }

  async loadHistory() {
    const id = this.id;
    const gen = this.generation;
    let after = 0;
    try {
      for (let page = 0; page < HISTORY_PAGES; page += 1) {
        const list = await api(`/v1/tasks/${encodeURIComponent(id)}/events`, { query: { after, limit: HISTORY_PAGE } });
        if (gen !== this.generation) return;
        for (const ev of list) this.entries.set(ev.id, ev);
        if (list.length < HISTORY_PAGE) break;
        after = list[list.length - 1].id;
      }
    } catch (err) {
      if (gen === this.generation) toastError(err, 'Transcript');
    }
    if (gen !== this.generation) return;
    this.historyLoaded = true;
    this.renderTranscript();
  }

  addEntry(ev) {
    if (this.entries.has(ev.id)) return;
    this.entries.set(ev.id, ev);
    if (!this.historyLoaded) return;
    if (ev.id > this.rendered) {
      const stick = this.nearBottom();
      this.transcript.append(...entryRows(ev));
      this.rendered = ev.id;
      this.trim();
      this.noteCount();
      if (stick) this.stickToBottom();
    } else {
      this.renderTranscript();
    }
  }

  renderTranscript() {
    const events = [...this.entries.values()].sort((a, b) => a.id - b.id);
    const rows = [];
    for (const ev of events.slice(-MAX_ENTRIES)) rows.push(...entryRows(ev));
    this.transcript.replaceChildren(...rows);
    this.rendered = events.length ? events[events.length - 1].id : 0;
    this.noteCount();
    this.stickToBottom(true);
  }

  noteCount() {
    const n = this.entries.size;
    this.transcriptNote.textContent = n ? `${n} timeline entries` : 'Nothing recorded yet.';
  }

  trim() {
    while (this.transcript.childElementCount > MAX_ENTRIES * 3) this.transcript.firstElementChild.remove();
  }

  nearBottom() {
    const s = this.scroller();
    return s.scrollHeight - s.scrollTop - s.clientHeight < 40;
  }

  scroller() {
    return this.bodies.get('transcript');
  }

  stickToBottom(force = false) {
    if (this.tab !== 'transcript' && !force) return;
    const s = this.scroller();
    s.scrollTop = s.scrollHeight;
  }

  renderHead() {
    const t = this.task;
    if (!t) return;
    this.keyEl.textContent = t.key || '';
    fill(this.statusEl, badge(t.status));
    this.root.dataset.status = t.status || '';
    this.titleEl.textContent = t.title && t.title !== t.key ? t.title : '';
    this.renderControls();
  }

  renderControls() {
    const t = this.task;
    const items = [];
    if (t && this.ctx.canOperate()) {
      const conflicted = t.merge_status === 'conflict';
      if (t.status === 'failed' || t.status === 'cancelled' || conflicted) {
        items.push(this.control('retry', 'Retry', 'primary', {
          run: () => post(`/v1/tasks/${encodeURIComponent(t.id)}/retry`),
          done: () => `${t.key}: a new attempt is queued`,
        }));
      }
      if (t.status === 'awaiting_approval') {
        items.push(this.control('approve', 'Approve', 'primary', {
          run: () => post(`/v1/tasks/${encodeURIComponent(t.id)}/approve`),
          done: () => `${t.key} approved`,
        }));
      }
      if (CANCELLABLE.has(t.status)) {
        items.push(this.control('cancel', 'Cancel task', 'danger', {
          confirm: {
            title: `Cancel ${t.key}?`,
            text: t.status === 'running'
              ? 'Its agent is stopped and the work of this attempt is lost. Tasks that depend on it are blocked.'
              : 'It will not run; tasks that depend on it are blocked.',
            ok: 'Cancel task',
          },
          run: () => post(`/v1/tasks/${encodeURIComponent(t.id)}/cancel`),
          done: () => `${t.key} cancelled`,
        }));
      }
    }
    const sig = items.map((b) => b.dataset.action).join(',');
    if (this.controls.dataset.sig === sig && this.controls.dataset.task === (t && t.id)) return;
    this.controls.dataset.sig = sig;
    this.controls.dataset.task = t ? t.id : '';
    fill(this.controls, items);
  }

  control(action, text, kind, spec) {
    return actionButton({ action, text, kind, testid: `task-${action}` }, spec, (updated) => {
      if (updated && updated.id) {
        this.ctx.onChanged(updated);
        this.taskChanged(updated);
        this.loadDetail();
      }
    });
  }

  renderOverview() {
    const d = this.detail;
    if (!d) return;
    const deps = (d.depends_on || []).map((key) => {
      const id = this.ctx.idOfKey(key);
      if (!id) return h('span', { class: 'chip', text: key });
      const b = h('button', { type: 'button', class: 'chip link', text: key, 'data-testid': 'task-dep' });
      b.addEventListener('click', () => this.ctx.onOpen(id));
      return b;
    });
    const result = d.result || {};
    const spec = d.spec || {};
    const persona = spec.assigned_persona || null;
    const facts = [
      ['Agent', d.agent + (d.role ? ` · ${d.role}` : '')],
      ['Persona', persona ? `${persona.author_name || persona.name} (${persona.name})` : '—'],
      ['Attempt', `${d.attempt} of ${d.max_attempts}`],
      ['Priority', d.priority],
      ['Timeout', fmtDuration(d.timeout_s)],
      ['Tokens', d.tokens === null || d.tokens === undefined ? '—' : fmtTokens(d.tokens)],
      ['Cost', fmtCost(d.cost_usd)],
      ['Branch', d.branch || '—'],
      ['Merge', d.merge_status ? label(d.merge_status) : '—'],
      ['Created', fmtDateTime(d.created_at)],
      ['Started', fmtDateTime(d.started_at)],
      ['Finished', fmtDateTime(d.finished_at)],
      ['Duration', duration(d.started_at, d.finished_at)],
    ];
    if (spec.review) facts.push(['Review', `round ${d.review_round} of ${spec.review.max_rounds || '—'}`]);
    if (spec.race) facts.push(['Race', `best of ${spec.race.n}`]);
    if (spec.verify) facts.push(['Verifier', 'answers a verdict']);
    if (result.commit) facts.push(['Commit', String(result.commit).slice(0, 12)]);
    if (d.merge_commit) facts.push(['Merge commit', String(d.merge_commit).slice(0, 12)]);
    fill(this.bodies.get('overview'),
      d.reason ? h('p', { class: `reason st-${cls(d.status)}`, 'data-testid': 'task-reason', text: d.reason }) : null,
      h('dl', { class: 'facts' }, facts.map(([k, v]) => [h('dt', { text: k }), h('dd', { text: String(v) })])),
      deps.length ? h('div', { class: 'deps' }, h('h4', { text: 'Depends on' }), deps) : null,
      listBlock('Changed files', result.changed_files),
      listBlock('Conflicting files', d.conflict_files),
      d.overlaps && d.overlaps.length ? h('div', null, h('h4', { text: 'Overlaps' }), h('pre', { class: 'small', text: clip(JSON.stringify(d.overlaps, null, 2)) })) : null,
      d.feedback ? h('div', null, h('h4', { text: 'Feedback' }), h('pre', { class: 'prompt', text: d.feedback })) : null,
      h('h4', { text: 'Prompt' }),
      h('pre', { class: 'prompt', 'data-testid': 'task-prompt', text: d.prompt || '' }));
  }

  renderReviews() {
    const d = this.detail;
    if (!d) return;
    this.commentForm.hidden = !this.ctx.canOperate() || d.kind !== 'work';
    const reviews = (d.reviews || []).slice().reverse().map((r) => h('div', { class: 'review', 'data-testid': 'review', 'data-verdict': r.verdict },
      h('div', { class: 'attempt-head' },
        badge(r.verdict === 'PASS' ? 'passed' : 'failed', 'verdict'),
        h('strong', { text: `${r.verdict} · round ${r.round}` }),
        h('span', { class: 'muted', text: `attempt ${r.attempt} · ${r.agent}${r.persona ? ` as ${r.persona}` : ''}` }),
        h('span', { class: 'muted', text: fmtDateTime(r.created_at) })),
      r.summary ? h('p', { text: r.summary }) : null,
      listBlock('Critical issues', r.critical_issues),
      listBlock('Recommendations', r.recommendations)));
    const comments = (d.comments || []).map((c) => h('div', { class: 'comment', 'data-testid': 'comment' },
      h('div', { class: 'attempt-head' },
        h('strong', { text: c.author }),
        c.request_changes ? badge('changes requested') : null,
        h('span', { class: 'muted', text: fmtDateTime(c.created_at) })),
      h('pre', { class: 'prompt', text: c.body })));
    fill(this.reviewList,
      d.status === 'reviewing' ? h('p', { class: 'muted', 'data-testid': 'review-waiting', text: `A reviewer judges attempt ${d.attempt} (round ${d.review_round}).` }) : null,
      reviews.length ? h('h4', { text: 'Verdicts' }) : null, reviews,
      comments.length ? h('h4', { text: 'Comments' }) : null, comments,
      !reviews.length && !comments.length && d.status !== 'reviewing' ? h('p', { class: 'muted', text: 'No review or comment yet.' }) : null);
  }

  renderAttempts() {
    const d = this.detail;
    if (!d) return;
    const attempts = d.attempts || [];
    if (!attempts.length) {
      fill(this.bodies.get('attempts'), h('p', { class: 'muted', text: 'No attempt yet.' }));
      return;
    }
    const blocks = [...attempts].reverse().map((a) => {
      const tokens = usageTokens(a.usage);
      const head = h('div', { class: 'attempt-head' },
        h('strong', { text: `#${a.number}` }), badge(a.status),
        h('span', { class: 'muted', text: a.worker ? `on ${a.worker}` : '' }),
        h('span', { class: 'muted', text: fmtClock(a.started_at) }),
        h('span', { class: 'muted', text: duration(a.started_at, a.finished_at) }),
        a.exit_code !== null && a.exit_code !== undefined ? h('span', { class: 'muted', text: `exit ${a.exit_code}` }) : null,
        tokens !== null ? h('span', { class: 'muted', text: `${fmtTokens(tokens)} tok` }) : null,
        a.cost_usd !== null && a.cost_usd !== undefined ? h('span', { class: 'muted', text: fmtCost(a.cost_usd) }) : null);
      const gates = (a.gates || []).map((g) => h('li', { class: 'gate', 'data-testid': 'gate', 'data-status': String(g.status || '') },
        badge(g.status || (g.passed ? 'passed' : 'failed')),
        h('span', { class: 'gate-name', text: String(g.name || g.command || 'gate') }),
        g.exit_code !== null && g.exit_code !== undefined ? h('span', { class: 'muted', text: `exit ${g.exit_code}` }) : null,
        g.duration_s !== null && g.duration_s !== undefined ? h('span', { class: 'muted', text: fmtDuration(g.duration_s) }) : null,
        g.log_tail ? h('details', null, h('summary', { text: 'log' }), h('pre', { class: 'log', text: String(g.log_tail) })) : null));
      return h('section', { class: 'attempt', 'data-testid': 'attempt', 'data-number': String(a.number), 'data-status': a.status },
        head,
        a.reason || a.error ? h('p', { class: 'reason', text: [a.reason, a.error].filter(Boolean).join(': ') }) : null,
        gates.length ? h('ul', { class: 'gates' }, gates) : null,
        a.output_tail ? h('details', null, h('summary', { text: 'output' }), h('pre', { class: 'log', text: a.output_tail })) : null);
    });
    fill(this.bodies.get('attempts'), blocks);
  }

  async loadDiff() {
    const d = this.detail;
    const id = this.id;
    if (!d || !id) return;
    const key = (d.attempts || []).map((a) => a.commit || '').join(',');
    if (key === this.diffKey) return;
    this.diffKey = key;
    const gen = this.generation;
    const body = this.bodies.get('diff');
    try {
      const diff = await api(`/v1/tasks/${encodeURIComponent(id)}/diff`);
      if (gen !== this.generation) return;
      fill(body, renderDiff(diff));
    } catch (err) {
      if (gen !== this.generation) return;
      if (err instanceof ApiError && err.code === 'no_diff') {
        fill(body, h('p', { class: 'muted', 'data-testid': 'no-diff', text: ENDED_STATES.has(d.status) ? 'No committed work.' : 'No committed work yet.' }));
      } else {
        this.diffKey = null;
        fill(body, h('p', { class: 'error', text: err.message }));
      }
    }
  }
}

function duration(start, end) {
  const a = parseTime(start);
  if (a === null) return '—';
  const b = parseTime(end) ?? Date.now();
  return fmtDuration((b - a) / 1000);
}

function clip(text, max = MAX_DATA_CHARS) {
  const s = String(text);
  return s.length > max ? `${s.slice(0, max)}…` : s;
}

function listBlock(title, list) {
  if (!Array.isArray(list) || !list.length) return null;
  return h('div', null, h('h4', { text: title }),
    h('ul', { class: 'files' }, list.slice(0, 200).map((f) => h('li', { text: typeof f === 'string' ? f : JSON.stringify(f) }))));
}

/** Rows of one timeline entry: a task.progress batch gives one row per item. */
function entryRows(ev) {
  const time = h('span', { class: 'time', text: fmtClock(ev.created_at) });
  if (ev.type === 'task.progress') {
    const d = ev.data || {};
    const inner = d.data || {};
    const items = Array.isArray(inner.items) ? inner.items : [];
    const rows = items.map((item, i) => itemRow(ev, item, i === 0 ? time : null));
    if (!rows.length) rows.push(itemRow(ev, { kind: d.kind || 'progress', text: d.text || '' }, time));
    if (inner.dropped) {
      rows.push(h('div', { class: 'entry dropped' }, h('span', { class: 'time' }),
        h('span', { class: 'muted', text: `… ${inner.dropped} more not shown` })));
    }
    return rows;
  }
  const data = ev.data || {};
  const parts = ['reason', 'error', 'exit_code', 'from', 'worker', 'commit']
    .filter((k) => data[k] !== undefined && data[k] !== null && data[k] !== '')
    .map((k) => {
      let v = typeof data[k] === 'object' ? JSON.stringify(data[k]) : String(data[k]);
      if (k === 'commit') v = v.slice(0, 12);
      return h('span', { text: `${k}: ${v}` });
    });
  if (ev.actor && ev.actor !== 'system') parts.push(h('span', { class: 'muted', text: `by ${ev.actor}` }));
  const text = h('span', { class: 'text' }, ev.attempt ? h('span', { class: 'muted', text: `#${ev.attempt}` }) : null);
  parts.forEach((p, i) => text.append(i || ev.attempt ? ' · ' : '', p));
  const row = h('div', { class: `entry event t-${cls(ev.type.replace(/\./g, '-'))}`, 'data-testid': 'transcript-entry', 'data-type': ev.type },
    time, h('span', { class: 'kind', title: ev.type, text: ev.type }), text);
  return [row];
}

function itemRow(ev, item, time) {
  const kind = String(item.kind || 'item');
  let text = String(item.text || '');
  const data = item.data && typeof item.data === 'object' ? item.data : null;
  if (!text && data) text = data.path || data.tool || data.name || '';
  return h('div', { class: `entry item k-${cls(kind)}`, 'data-testid': 'transcript-entry', 'data-type': ev.type, 'data-kind': kind },
    time || h('span', { class: 'time' }),
    h('span', { class: 'kind', text: label(kind) }),
    h('span', { class: 'text', text: clip(text) }),
    data ? h('details', { class: 'data' }, h('summary', { text: '…' }), h('pre', { text: clip(JSON.stringify(data, null, 2)) })) : null);
}

function renderDiff(diff) {
  const files = diff.files || [];
  const table = h('table', { class: 'diffstat', 'data-testid': 'diff-files' },
    h('thead', null, h('tr', null, h('th', { text: 'File' }), h('th', { text: '+' }), h('th', { text: '−' }))),
    h('tbody', null, files.map((f) => h('tr', null,
      h('td', { text: f.path }),
      h('td', { class: 'add', text: f.additions === null ? 'bin' : String(f.additions) }),
      h('td', { class: 'del', text: f.deletions === null ? 'bin' : String(f.deletions) })))));
  const lines = String(diff.patch || '').split('\n');
  const shown = lines.slice(0, MAX_PATCH_LINES);
  const pre = h('pre', { class: 'patch', 'data-testid': 'diff-patch' });
  // One text node per line inside a classed span; built as a fragment (fast, no markup).
  const frag = document.createDocumentFragment();
  for (const line of shown) {
    let kind = '';
    if (line.startsWith('+++') || line.startsWith('---') || line.startsWith('diff ')) kind = 'file';
    else if (line.startsWith('@@')) kind = 'hunk';
    else if (line.startsWith('+')) kind = 'add';
    else if (line.startsWith('-')) kind = 'del';
    const span = document.createElement('span');
    if (kind) span.className = kind;
    span.textContent = `${line}\n`;
    frag.append(span);
  }
  pre.append(frag);
  return [
    h('p', { class: 'muted small', text: `attempt #${diff.attempt} · ${String(diff.base_commit || '').slice(0, 10)}..${String(diff.commit || '').slice(0, 10)} · ${files.length} files` }),
    table,
    pre,
    lines.length > MAX_PATCH_LINES || diff.truncated
      ? h('p', { class: 'muted', text: 'The patch is cut here; see it whole with GET /v1/tasks/{id}/diff?format=patch.' })
      : null,
  ];
}
