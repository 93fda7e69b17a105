// One open session, kept current: its tasks (a Map by id), the session itself and its
// progress. The timeline stream says what changed; every event with a task_id marks that
// task dirty, and dirty tasks are fetched in batches every ~250 ms (by id, or the whole list
// when many changed). Progress is refreshed at most once a second. The tasks' phases, epics
// and estimates (not in the task list) come from the session's graph file, read again when
// tasks are added.

import { api, ApiError } from './api.js';
import { EventStream } from './stream.js';
import { sleep, throttle } from './dom.js';
import { stats } from './stats.js';

const FLUSH_MS = 250;
const BATCH_MS = 20; // events of one transaction arrive together: take them in one fetch
const MAX_IDS_PER_REQUEST = 100;
const MAX_IDS_BY_ID = 200; // above this, one full list is cheaper
const FULL_GAP_MS = 1000;
const PROGRESS_MS = 1000;
const SESSION_MS = 1000;
const GROUPS_MS = 3000;
/** Task fields the board groups by, read from GET /v1/sessions/{id}/graph. */
const GROUP_FIELDS = ['phase', 'epic', 'estimated_hours'];
/** Events that do not change the task row: no refetch for them. */
const NO_REFETCH = new Set(['task.progress']);
/** Session events that change tasks without naming them (a rollback undoes merges, or
 * brings them back, with one session entry): the whole list is read again. */
const FULL_REFETCH = new Set(['session.rolled_back']);

export class SessionLive {
  /**
   * hooks: onTasks({changed: Set<id>, added: bool, full: bool}), onSession(session),
   * onProgress(progress), onEvent(event), onStreamState(state), onError(err),
   * onGroups(Map key -> {phase, epic, estimated_hours})
   */
  constructor(sessionId, hooks) {
    this.id = sessionId;
    this.hooks = hooks;
    this.tasks = new Map();
    this.keyToId = new Map();
    this.order = 0;
    this.session = null;
    this.progress = null;
    this.progressAt = 0;
    this.dirty = new Set();
    this.fullWanted = false;
    this.flushTimer = null;
    this.flushing = false;
    this.lastFull = 0;
    this.lastFlush = 0;
    this.stopped = false;
    this.stream = null;
    this.structure = 0; // bumped when tasks are added or their dependencies change
    this.stats = { fetchedById: 0, fullFetches: 0, events: 0 };
    this.refreshProgress = throttle(() => this.loadProgress(), PROGRESS_MS);
    this.refreshSession = throttle(() => this.loadSession(), SESSION_MS);
    this.groups = new Map();
    this.groupsSig = '';
    this.refreshGroups = throttle(() => this.loadGroups(), GROUPS_MS);
  }

  async start() {
    // Session and progress first: the stream starts after the newest entry they report
    // (when the server reports one), and the task list is read after that point.
    await this.loadSession();
    if (this.stopped) return;
    await this.loadProgress();
    for (let delay = 1000; !this.stopped; delay = Math.min(delay * 2, 15000)) {
      try {
        await this.loadAll();
        break;
      } catch (err) {
        // A 4xx will not change by asking again (a 429 was already waited out).
        if (err instanceof ApiError && err.status >= 400 && err.status < 500) throw err;
        this.hooks.onError(err);
        await sleep(delay);
      }
    }
    if (this.stopped) return;
    this.stream = new EventStream(`/v1/sessions/${encodeURIComponent(this.id)}/events`, {
      onEvent: (ev) => this.onEvent(ev),
      onState: (state) => this.hooks.onStreamState(state),
      lastId: this.startAfter,
    }).start();
  }

  stop() {
    this.stopped = true;
    if (this.stream) this.stream.close();
    clearTimeout(this.flushTimer);
  }

  /** Where the stream starts: after the newest entry the session reports, if it does. */
  get startAfter() {
    const s = this.session || {};
    const last = s.last_event_id ?? (this.progress && this.progress.last_event_id);
    return last === undefined || last === null ? null : String(last);
  }

  async loadSession() {
    try {
      const session = await api(`/v1/sessions/${encodeURIComponent(this.id)}`);
      if (this.stopped) return;
      this.session = session;
      this.hooks.onSession(session);
    } catch (err) {
      this.hooks.onError(err);
    }
  }

  async loadProgress() {
    if (this.stopped) return;
    try {
      const progress = await api(`/v1/sessions/${encodeURIComponent(this.id)}/progress`);
      if (this.stopped) return;
      this.progress = progress;
      this.progressAt = Date.now();
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 404 && err.code === 'not_found')) {
        this.hooks.onError(err);
        return;
      }
      // An orchestrator without /progress: work it out from the tasks.
      this.progress = localProgress(this.session, this.tasks);
      this.progressAt = Date.now();
    }
    this.hooks.onProgress(this.progress);
  }

  async loadAll() {
    this.stats.fullFetches += 1;
    this.lastFull = Date.now();
    const list = await api(`/v1/sessions/${encodeURIComponent(this.id)}/tasks`);
    if (this.stopped) return;
    const seen = new Set();
    const changed = new Set();
    let added = false;
    for (const task of list) {
      seen.add(task.id);
      const result = this.put(task);
      if (result) changed.add(task.id);
      if (result === 'added') added = true;
    }
    for (const id of [...this.tasks.keys()]) {
      if (!seen.has(id)) {
        this.keyToId.delete(this.tasks.get(id).key);
        this.tasks.delete(id);
        changed.add(id);
        added = true;
      }
    }
    if (added) {
      this.structure += 1;
      this.refreshGroups();
    }
    this.hooks.onTasks({ changed, added, full: true });
  }

  /** Phases, epics and estimates by task key; hooks.onGroups when they changed. */
  async loadGroups() {
    if (this.stopped || !this.tasks.size) return;
    let graph;
    try {
      graph = await api(`/v1/sessions/${encodeURIComponent(this.id)}/graph`);
    } catch (err) {
      // Only the grouping is missing without it: no toast for an older orchestrator.
      if (!(err instanceof ApiError && err.status === 404)) this.hooks.onError(err);
      return;
    }
    if (this.stopped) return;
    const groups = new Map();
    for (const task of graph.tasks || []) {
      const fields = {};
      let any = false;
      for (const name of GROUP_FIELDS) {
        if (task[name] !== undefined && task[name] !== null && task[name] !== '') {
          fields[name] = task[name];
          any = true;
        }
      }
      if (any) groups.set(task.key, fields);
    }
    const sig = JSON.stringify([...groups]);
    if (sig === this.groupsSig) return;
    this.groupsSig = sig;
    this.groups = groups;
    if (this.hooks.onGroups) this.hooks.onGroups(groups);
  }

  /** Store one task; 'added', 'structure', 'changed' or null (nothing new). */
  put(task) {
    const old = this.tasks.get(task.id);
    task._sig = JSON.stringify(task);
    if (!old) {
      task._order = this.order++;
      this.tasks.set(task.id, task);
      this.keyToId.set(task.key, task.id);
      return 'added';
    }
    if (old._sig === task._sig) return null;
    task._order = old._order;
    this.tasks.set(task.id, task);
    const depsBefore = (old.depends_on || []).join('\n');
    if (depsBefore !== (task.depends_on || []).join('\n')) return 'structure';
    return 'changed';
  }

  onEvent(ev) {
    if (!ev || typeof ev !== 'object') return;
    this.stats.events += 1;
    stats.arrived(ev);
    this.hooks.onEvent(ev);
    const type = String(ev.type || '');
    if (ev.task_id && !NO_REFETCH.has(type)) {
      this.dirty.add(ev.task_id);
      this.scheduleFlush();
    }
    if (FULL_REFETCH.has(type)) {
      this.fullWanted = true;
      this.scheduleFlush();
    }
    if (type.startsWith('session.') || type.startsWith('checkpoint.') || type.startsWith('plan.')) {
      this.refreshSession();
    }
    if (!NO_REFETCH.has(type)) this.refreshProgress();
  }

  /** Fetch soon: right away (after the rest of the chunk that brought the event) when
   * nothing was fetched for FLUSH_MS, else when FLUSH_MS has passed since the last fetch. */
  scheduleFlush() {
    if (this.flushTimer !== null || this.flushing) return;
    const wait = Math.max(BATCH_MS, this.lastFlush + FLUSH_MS - Date.now());
    this.flushTimer = setTimeout(() => {
      this.flushTimer = null;
      this.flush();
    }, wait);
  }

  async flush() {
    if (this.stopped || (!this.dirty.size && !this.fullWanted)) return;
    if (this.dirty.size > MAX_IDS_BY_ID && !this.fullWanted) {
      // A burst (a replayed history, a cancelled session): one full list, at most every
      // FULL_GAP_MS, however long the burst lasts.
      const wait = this.lastFull + FULL_GAP_MS - Date.now();
      if (wait > 0) {
        this.flushTimer = setTimeout(() => {
          this.flushTimer = null;
          this.flush();
        }, wait);
        return;
      }
    }
    this.flushing = true;
    this.lastFlush = Date.now();
    const ids = [...this.dirty];
    const full = this.fullWanted || ids.length > MAX_IDS_BY_ID;
    this.dirty.clear();
    this.fullWanted = false;
    try {
      if (full) {
        await this.loadAll();
      } else {
        await this.loadByIds(ids);
      }
    } catch (err) {
      for (const id of ids) this.dirty.add(id);
      if (full) this.fullWanted = true;
      this.hooks.onError(err);
    } finally {
      this.flushing = false;
      if (this.dirty.size || this.fullWanted) this.scheduleFlush();
    }
  }

  async loadByIds(ids) {
    const changed = new Set();
    let added = false;
    for (let i = 0; i < ids.length; i += MAX_IDS_PER_REQUEST) {
      const chunk = ids.slice(i, i + MAX_IDS_PER_REQUEST);
      const query = chunk.map((id) => ['id', id]);
      const list = await api(`/v1/sessions/${encodeURIComponent(this.id)}/tasks`, { query });
      if (this.stopped) return;
      this.stats.fetchedById += list.length;
      for (const task of list) {
        const result = this.put(task);
        if (result) changed.add(task.id);
        if (result === 'added' || result === 'structure') added = true;
      }
    }
    if (added) {
      this.structure += 1;
      this.refreshGroups();
    }
    if (changed.size) this.hooks.onTasks({ changed, added, full: false });
  }

  /** Merge a task the page already holds fresh (the answer of a control call). */
  merge(task) {
    if (!task || task.session_id !== this.id) return;
    const old = this.tasks.get(task.id);
    if (old) {
      // Control calls answer without the spend; keep what the list said until it refreshes.
      for (const k of ['usage', 'tokens', 'cost_usd']) {
        if (task[k] === null || task[k] === undefined) task[k] = old[k];
      }
    }
    const result = this.put(task);
    if (!result) return;
    if (result !== 'changed') this.structure += 1;
    this.hooks.onTasks({ changed: new Set([task.id]), added: result !== 'changed', full: false });
  }
}

/** Progress from the task list, for servers without GET /progress. */
function localProgress(session, tasks) {
  const counts = {};
  let tokens = 0;
  let cost = 0;
  for (const t of tasks.values()) {
    counts[t.status] = (counts[t.status] || 0) + 1;
    tokens += Number(t.tokens) || 0;
    cost += Number(t.cost_usd) || 0;
  }
  const total = tasks.size;
  const ended = ['succeeded', 'failed', 'blocked', 'cancelled']
    .reduce((n, s) => n + (counts[s] || 0), 0);
  const started = session ? Date.parse(session.created_at) : NaN;
  return {
    session_id: session && session.id,
    status: session && session.status,
    total,
    ended,
    percent: total ? (100 * ended) / total : 0,
    counts,
    running: counts.running || 0,
    queued: counts.queued || 0,
    started_at: session && session.created_at,
    finished_at: session && session.finished_at,
    elapsed_s: Number.isNaN(started) ? null : (Date.now() - started) / 1000,
    eta_s: null,
    tokens,
    cost_usd: cost,
  };
}
