// System: the mode (running, draining, stopped), the work in flight, and for an admin
// without a tenant the drain, emergency stop and resume controls.

import { api, post } from './api.js';
import { h, fill, badge, fmtDateTime } from './dom.js';
import { actionButton, toastError } from './ui.js';

const REFRESH_MS = 10000;

export class SystemView {
  constructor(root, { me, onMode }) {
    this.root = root;
    this.me = me;
    this.onMode = onMode;
    this.system = null;
    this.failed = false;
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
    try {
      this.set(await api('/v1/system'));
      this.failed = false;
    } catch (err) {
      if (!this.failed) toastError(err, 'System');
      this.failed = true;
    }
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
    const controls = [];
    if (this.isSystemAdmin) {
      if (s.mode === 'running') {
        controls.push(this.control('drain', 'Drain', 'warn', {
          confirm: {
            title: 'Drain the system?',
            text: 'Adapters take no new work and finish what they run. Nothing starts until you resume.',
            ok: 'Drain',
          },
          run: () => post('/v1/system/drain'),
          done: 'Draining: adapters finish what they run',
        }));
      }
      if (s.mode !== 'stopped') {
        controls.push(this.control('stop', 'Emergency stop', 'danger', {
          confirm: {
            title: 'Emergency stop?',
            text: 'Every agent process is killed within seconds; the work of running attempts is lost and they run again after resume.',
            ok: 'Stop everything',
          },
          run: () => post('/v1/system/stop'),
          done: 'Emergency stop: agents are being killed',
        }));
      }
      if (s.mode !== 'running') {
        controls.push(this.control('resume-system', 'Resume', 'primary', {
          run: () => post('/v1/system/resume'),
          done: 'The system runs again',
        }));
      }
    }
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

  control(action, text, kind, spec) {
    return actionButton({ action, text, kind, testid: `system-${action}` }, spec, (result) => {
      if (result && result.mode) this.set(result);
    });
  }
}
