// System: the mode (running, draining, stopped), the work in flight, and for an admin
// without a tenant the drain, emergency stop and resume controls.

import { api, post } from './api.js';
import { h, fill, badge, fmtDateTime } from './dom.js';
import { actionButton, toastFirstFailure } from './ui.js';

const REFRESH_MS = 10000;

/** The controls of a system admin: the modes each is offered in, what it asks and says. */
const CONTROLS = [
  {
    action: 'drain', text: 'Drain', kind: 'warn', offered: (mode) => mode === 'running',
    confirm: {
      title: 'Drain the system?',
      text: 'Adapters take no new work and finish what they run. Nothing starts until you resume.',
      ok: 'Drain',
    },
    path: '/v1/system/drain',
    done: 'Draining: adapters finish what they run',
  },
  {
    action: 'stop', text: 'Emergency stop', kind: 'danger', offered: (mode) => mode !== 'stopped',
    confirm: {
      title: 'Emergency stop?',
      text: 'Every agent process is killed within seconds; the work of running attempts is lost and they run again after resume.',
      ok: 'Stop everything',
    },
    path: '/v1/system/stop',
    done: 'Emergency stop: agents are being killed',
  },
  {
    action: 'resume-system', text: 'Resume', kind: 'primary', offered: (mode) => mode !== 'running',
    path: '/v1/system/resume',
    done: 'The system runs again',
  },
];

export class SystemView {
  constructor(root, { me, onMode }) {
    this.root = root;
    this.me = me;
    this.onMode = onMode;
    this.system = null;
    this.guarded = toastFirstFailure('System');
    this.timer = setInterval(() => this.refresh(), REFRESH_MS);
    this.refresh();
  }

  destroy() {
    clearInterval(this.timer);
  }

  get isSystemAdmin() {
    return this.me && this.me.role === 'admin' && (this.me.tenant === null || this.me.tenant === undefined);
  }

  async refresh() {
    await this.guarded(async () => this.set(await api('/v1/system')));
  }

  set(system) {
    this.system = system;
    this.onMode(system.mode);
    this.render();
  }

  render() {
    const s = this.system;
    if (!s) {
      fill(this.root, h('p', { class: 'muted', text: 'Loading…' }));
      return;
    }
    const controls = this.isSystemAdmin
      ? CONTROLS.filter((c) => c.offered(s.mode)).map((c) => this.control(c))
      : [];
    const me = this.me || {};
    fill(this.root,
      h('div', { class: 'system' },
        h('div', { class: 'system-card' },
          h('h3', null, 'Mode ', badge(s.mode, 'big mode')),
          h('p', { class: 'muted', text: s.changed_by ? `set by ${s.changed_by} at ${fmtDateTime(s.changed_at)}` : '' }),
          h('dl', { class: 'facts' },
            h('dt', { text: 'Running' }), h('dd', { 'data-testid': 'system-running', text: String(s.running) }),
            h('dt', { text: 'Queued' }), h('dd', { text: String(s.queued) }),
            h('dt', { text: 'Adapters alive' }), h('dd', { text: String(s.workers_alive) })),
          h('div', { class: 'controls', 'data-testid': 'system-controls' }, controls),
          this.isSystemAdmin ? null : h('p', { class: 'muted small', text: 'Drain, emergency stop and resume need an admin token without a tenant.' })),
        h('div', { class: 'system-card' },
          h('h3', { text: 'Signed in' }),
          h('dl', { class: 'facts' },
            h('dt', { text: 'Token' }), h('dd', { text: me.name || '' }),
            h('dt', { text: 'Role' }), h('dd', { 'data-testid': 'me-role', text: me.role || '' }),
            h('dt', { text: 'Tenant' }), h('dd', { text: me.tenant || '— (all)' })))));
  }

  control({ action, text, kind, confirm, path, done }) {
    const spec = { confirm, run: () => post(path), done };
    return actionButton({ action, text, kind, testid: `system-${action}` }, spec, (result) => {
      if (result && result.mode) this.set(result);
    });
  }
}
