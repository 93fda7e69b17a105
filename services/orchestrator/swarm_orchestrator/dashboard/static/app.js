// The dashboard's entry point: sign-in (a token kept in localStorage, checked with
// /v1/whoami), the views, and routing by the URL hash (#s=<session>&t=<task>&v=<view>).
// A draft session opens on its plan; once approved, on its board.
// Plain ES modules, no build step; every view lives in a module of its own.

import { api, auth, setToken } from './api.js';
import { AdaptersView } from './adapters.js';
import { BlackboardView } from './blackboard.js';
import { Board } from './board.js';
import { GraphView } from './graph.js';
import { SessionLive } from './live.js';
import { NewSessionDialog } from './newsession.js';
import { PlanView } from './plan.js';
import { SessionHeader, SessionList } from './sessions.js';
import { SystemView } from './system.js';
import { TaskPanel } from './taskpanel.js';
import { toast, toastError } from './ui.js';
import { h, fill, cls } from './dom.js';

const VIEWS = ['plan', 'board', 'graph', 'blackboard', 'adapters', 'system'];
const ROLE_RANK = { viewer: 0, operator: 1, admin: 2 };
const LIVE_TEXT = { open: 'live', connecting: 'connecting…', retrying: 'reconnecting…', closed: 'offline' };
const NOTICES = {
  'session.finished': 'Session finished',
  'session.awaiting_review': 'Session awaits review',
  'session.finalized': 'Session finalized',
  'session.cancelled': 'Session cancelled',
  'checkpoint.passed': 'Checkpoint passed',
  'checkpoint.failed': 'Checkpoint failed',
  'session.rolled_back': 'Integration branch rolled back',
  'plan.failed': 'Planning failed',
};

const NOTICE_FRESH_MS = 15000;

const $ = (selector) => document.querySelector(selector);

const app = {
  me: null,
  live: null,
  sessionId: null,
  view: 'board',
  views: null,
  pending: new Set(),
  pendingFull: false,
  frame: null,
  chooseView: false, // the open session's first answer picks its view (a draft: the plan)
};
window.swarm = app; // for a person at the console, and the tests

function canOperate() {
  return Boolean(app.me) && (ROLE_RANK[app.me.role] ?? 0) >= ROLE_RANK.operator;
}

// --- sign-in -------------------------------------------------------------------------

function showLogin(message = '') {
  stopAll();
  $('#layout').hidden = true;
  $('#login').hidden = false;
  $('[data-testid="logout"]').hidden = true;
  $('[data-testid="whoami"]').textContent = '';
  const error = $('[data-testid="login-error"]');
  error.textContent = message;
  error.hidden = !message;
  $('[data-testid="token-input"]').focus();
}

async function signIn(token) {
  setToken(token);
  let me;
  try {
    me = await api('/v1/whoami');
  } catch (err) {
    if (err.status === 401) setToken('');
    showLogin(err.message);
    return;
  }
  app.me = me;
  $('#login').hidden = true;
  $('#layout').hidden = false;
  $('[data-testid="logout"]').hidden = false;
  const who = $('[data-testid="whoami"]');
  who.textContent = `${me.name} · ${me.role}${me.tenant ? ` · ${me.tenant}` : ''}`;
  who.dataset.role = me.role;
  document.body.dataset.role = me.role;
  $('[data-testid="new-session"]').hidden = !canOperate();
  startViews();
}

function stopAll() {
  if (app.live) app.live.stop();
  app.live = null;
  app.sessionId = null;
  if (app.views) {
    app.views.sessions.destroy();
    app.views.header.destroy();
    app.views.system.destroy();
    app.views.adapters.setVisible(false);
    app.views.panel.close();
    app.views.plan.reset();
  }
  app.views = null;
  app.me = null;
  setLive('closed');
}

// --- views ---------------------------------------------------------------------------

function startViews() {
  const openTask = (id) => navigate({ t: id });
  const panel = new TaskPanel($('[data-testid="task-panel"]'), {
    canOperate,
    onClose: () => navigate({ t: null }),
    onOpen: openTask,
    onChanged: (task) => app.live && app.live.merge(task),
    idOfKey: (key) => (app.live && app.live.keyToId.get(key)) || null,
  });
  app.views = {
    panel,
    sessions: new SessionList($('[data-testid="sessions"]'), { onSelect: (id) => navigate({ s: id, t: null }) }),
    header: new SessionHeader($('[data-testid="session-header"]'), { canOperate, onSession: sessionChanged }),
    plan: new PlanView($('[data-testid="view-plan"]'), {
      canOperate,
      onSession: sessionChanged,
      onApproved: (s) => {
        sessionChanged(s);
        navigate({ v: 'board' });
      },
    }),
    board: new Board($('[data-testid="view-board"]'), { onOpen: openTask }),
    graph: new GraphView($('[data-testid="view-graph"]'), { onOpen: openTask }),
    blackboard: new BlackboardView($('[data-testid="view-blackboard"]'), { canOperate }),
    adapters: new AdaptersView($('[data-testid="view-adapters"]'), {
      onOpenTask: (sessionId, taskId) => navigate({ s: sessionId, t: taskId, v: 'board' }),
    }),
    system: new SystemView($('[data-testid="view-system"]'), { me: app.me, onMode: setMode }),
  };
  if (!app.newSession) {
    app.newSession = new NewSessionDialog({
      defaults: () => (app.live && app.live.session) || null,
      onCreated: (s) => {
        toast(s.status === 'draft' ? `Session “${s.title}” made: its plan is ${s.plan_status || 'on its way'}` : `Session “${s.title}” runs`);
        if (app.views) app.views.sessions.refresh();
        navigate({ s: s.id, t: null, v: s.status === 'draft' ? 'plan' : 'board' });
      },
    });
  }
  app.views.sessions.refresh().then((list) => {
    const route = readRoute();
    if (!route.s && list.length) {
      history.replaceState(null, '', writeRoute({ ...route, s: list[0].id }));
    }
    applyRoute();
  });
  applyRoute();
}

function readRoute() {
  const params = new URLSearchParams(location.hash.slice(1));
  const v = params.get('v');
  return { s: params.get('s'), t: params.get('t'), v: VIEWS.includes(v) ? v : 'board', chosen: VIEWS.includes(v) };
}

/** A fresher copy of the open session, from any view: every view that shows it follows. */
function sessionChanged(s) {
  if (!app.views || !s || s.id !== app.sessionId) return;
  app.views.header.setSession(s);
  app.views.sessions.patch(s);
  app.views.plan.setSession(s);
  const tab = $('[data-testid="tab-plan"]');
  tab.hidden = !s.plan_status;
  if (app.chooseView) {
    app.chooseView = false;
    const route = readRoute();
    if (!route.chosen && s.status === 'draft' && s.plan_status) {
      history.replaceState(null, '', writeRoute({ ...route, v: 'plan' }));
      applyRoute();
    }
  }
  if (tab.hidden && app.view === 'plan') navigate({ v: 'board' });
}

function writeRoute(route) {
  const params = new URLSearchParams();
  if (route.s) params.set('s', route.s);
  if (route.t) params.set('t', route.t);
  if (route.v && route.v !== 'board') params.set('v', route.v);
  return `#${params.toString()}`;
}

function navigate(change) {
  const next = writeRoute({ ...readRoute(), ...change });
  if (next !== location.hash) location.hash = next;
  else applyRoute();
}

function applyRoute() {
  if (!app.views) return;
  const route = readRoute();
  showView(route.v);
  if (route.s !== app.sessionId) openSession(route.s);
  const panel = app.views.panel;
  if (route.t && route.s) {
    panel.open(route.t, app.live ? app.live.tasks.get(route.t) : null);
  } else if (panel.isOpen) {
    panel.close();
  }
  $('#layout').classList.toggle('with-panel', panel.isOpen);
  app.views.board.select(route.t);
  app.views.graph.select(route.t);
}

function showView(view) {
  app.view = view;
  for (const b of document.querySelectorAll('.tabs [data-view]')) {
    b.setAttribute('aria-selected', String(b.dataset.view === view));
  }
  for (const el of document.querySelectorAll('section.view')) el.hidden = el.dataset.view !== view;
  app.views.graph.setVisible(view === 'graph');
  app.views.plan.setVisible(view === 'plan');
  app.views.adapters.setVisible(view === 'adapters');
  app.views.blackboard.setVisible(view === 'blackboard');
  if (view === 'system') app.views.system.refresh();
}

function openSession(id) {
  if (app.live) app.live.stop();
  app.live = null;
  app.sessionId = id;
  app.pending.clear();
  const { board, graph, header, sessions, plan } = app.views;
  header.clear();
  plan.reset();
  board.setGroups(new Map());
  app.chooseView = true;
  $('[data-testid="tab-plan"]').hidden = true;
  sessions.select(id);
  app.views.blackboard.setSession(id);
  const empty = new Map();
  board.setEmptyText(id ? 'Loading…' : 'Pick a session on the left.');
  board.render(empty);
  graph.reset();
  if (!id) {
    setLive('closed');
    return;
  }
  const live = new SessionLive(id, {
    onTasks: ({ changed, full }) => {
      board.setEmptyText('No tasks in this session yet.');
      scheduleRender(changed, full);
    },
    onSession: sessionChanged,
    onGroups: (groups) => board.setGroups(groups),
    onProgress: (p) => {
      header.setProgress(p);
      if (p && p.counts) sessions.patch({ id, counts: p.counts, total: p.total });
    },
    onEvent: (ev) => {
      app.views.panel.onEvent(ev);
      app.views.plan.onEvent(ev);
      app.views.blackboard.onEvent(ev);
      const notice = NOTICES[ev.type];
      // Not for the history a new stream replays: only what just happened.
      const fresh = Date.now() - (Date.parse(ev.created_at) || 0) < NOTICE_FRESH_MS;
      if (notice && fresh) toast(notice, ev.type.endsWith('failed') ? 'error' : 'info');
    },
    onStreamState: setLive,
    onError: (err) => toastError(err),
  });
  app.live = live;
  live.start().catch((err) => {
    toastError(err, 'Session');
  });
}

function scheduleRender(changed, full) {
  if (full) app.pendingFull = true;
  for (const id of changed) app.pending.add(id);
  if (app.frame !== null) return;
  app.frame = requestAnimationFrame(render);
}

function render() {
  app.frame = null;
  const live = app.live;
  if (!live || !app.views) return;
  const changed = app.pendingFull ? null : app.pending;
  app.views.board.render(live.tasks);
  app.views.graph.update(live.tasks, live.structure, changed);
  const panel = app.views.panel;
  if (panel.isOpen && (changed === null || changed.has(panel.id))) {
    panel.taskChanged(live.tasks.get(panel.id));
  }
  app.pending = new Set();
  app.pendingFull = false;
}

function setLive(state) {
  const el = $('[data-testid="live-status"]');
  el.dataset.state = state;
  el.querySelector('.live-text').textContent = LIVE_TEXT[state] || state;
}

function setMode(mode) {
  const el = $('[data-testid="system-mode"]');
  el.dataset.mode = mode;
  fill(el, h('span', { class: `badge mode st-${cls(mode)}`, text: `system ${mode}` }));
}

// --- wiring --------------------------------------------------------------------------

function boot() {
  auth.onUnauthorized = (err) => showLogin(err.message);
  $('[data-testid="login-form"]').addEventListener('submit', (e) => {
    e.preventDefault();
    const input = $('[data-testid="token-input"]');
    const token = input.value.trim();
    input.value = '';
    if (token) signIn(token);
  });
  $('[data-testid="logout"]').addEventListener('click', () => {
    setToken('');
    showLogin('Signed out.');
  });
  for (const b of document.querySelectorAll('.tabs [data-view]')) {
    b.addEventListener('click', () => navigate({ v: b.dataset.view }));
  }
  $('[data-testid="sessions-refresh"]').addEventListener('click', () => app.views && app.views.sessions.refresh());
  $('[data-testid="new-session"]').addEventListener('click', () => app.newSession && app.newSession.open());
  window.addEventListener('hashchange', applyRoute);
  document.addEventListener('keydown', (e) => {
    if (e.key !== 'Escape' || document.querySelector('dialog[open]')) return;
    if (app.views && app.views.panel.isOpen) navigate({ t: null });
  });
  if (auth.token) signIn(auth.token);
  else showLogin();
}

boot();
