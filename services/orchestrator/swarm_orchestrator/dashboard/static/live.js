// One open session, kept current: its tasks (a Map by id), the session itself and its
// progress. The timeline stream says what changed; every event with a task_id marks that
// task dirty, and dirty tasks are fetched in batches every ~250 ms (by id, or the whole list
// when many changed). Progress is refreshed at most once a second.

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
/** Events that do not change the task row: no refetch for them. */
const NO_REFETCH = new Set(['task.progress']);

export class SessionLive {
  /**
   * hooks: onTasks({changed: Set<id>, added: bool, full: bool}), onSession(session),
   * onProgress(progress), onEvent(event), onStreamState(state), onError(err)
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
    if (added) this.structure += 1;
    this.hooks.onTasks({ changed, added, full: true });
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
    if (type.startsWith('session.') || type.startsWith('checkpoint.')) this.refreshSession();
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
    if (this.stopped || !this.dirty.size) return;
    if (this.dirty.size > MAX_IDS_BY_ID) {
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
    this.dirty.clear();
    try {
      if (ids.length > MAX_IDS_BY_ID) {
        await this.loadAll();
      } else {
        await this.loadByIds(ids);
      }
    } catch (err) {
      for (const id of ids) this.dirty.add(id);
      this.hooks.onError(err);
    } finally {
      this.flushing = false;
      if (this.dirty.size) this.scheduleFlush();
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
    if (added) this.structure += 1;
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
