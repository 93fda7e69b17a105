// Adapters: every worker the orchestrator has heard from, its agent kind, whether its
// liveness key is up, what it runs now and when it last sent a heartbeat. Refreshed every
// few seconds while shown; the "ago" times tick locally in between.

import { api } from './api.js';
import { h, fill, badge, fmtAgo, fmtDuration, parseTime } from './dom.js';
import { toastFirstFailure } from './ui.js';

const REFRESH_MS = 5000;
const TICK_MS = 1000;

export class AdaptersView {
  constructor(root, { onOpenTask }) {
    this.root = root;
    this.onOpenTask = onOpenTask;
    this.workers = null;
    this.visible = false;
    this.timer = null;
    this.tick = null;
    this.guarded = toastFirstFailure('Adapters');
    this.body = h('div', { class: 'adapters' });
    this.info = h('span', { class: 'muted', 'data-testid': 'adapters-info' });
    const refresh = h('button', { type: 'button', class: 'ghost small', text: 'Refresh', 'data-testid': 'adapters-refresh' });
    refresh.addEventListener('click', () => this.refresh());
    fill(root, h('div', { class: 'toolbar' }, h('h3', { text: 'Adapters' }), this.info, h('span', { class: 'spacer' }), refresh), this.body);
  }

  setVisible(visible) {
    this.visible = visible;
    clearInterval(this.timer);
    clearInterval(this.tick);
    if (!visible) return;
    this.refresh();
    this.timer = setInterval(() => this.refresh(), REFRESH_MS);
    this.tick = setInterval(() => this.render(), TICK_MS);
  }

  async refresh() {
    await this.guarded(async () => { this.workers = await api('/v1/workers'); });
    this.render();
  }

  render() {
    if (!this.workers) {
      fill(this.body, h('p', { class: 'muted', text: 'Loading…' }));
      return;
    }
    if (!this.workers.length) {
      this.info.textContent = '';
      fill(this.body, h('p', { class: 'empty', text: 'No adapter has connected yet. Start one with `swarm adapter --agent shell`.' }));
      return;
    }
    const now = Date.now();
    const alive = this.workers.filter((w) => w.alive).length;
    this.info.textContent = `${alive} of ${this.workers.length} alive`;
    const rows = this.workers.map((w) => {
      const running = Array.isArray(w.running) ? w.running : [];
      const tasks = running.length
        ? running.map((r) => {
          const b = h('button', { type: 'button', class: 'chip link', 'data-testid': 'adapter-task', text: `${r.task_key || String(r.task_id).slice(0, 8)} #${r.attempt ?? '?'}` });
          const since = parseTime(r.started_at);
          if (since !== null) b.title = `running for ${fmtDuration((now - since) / 1000)}`;
          b.addEventListener('click', () => this.onOpenTask(r.session_id, r.task_id));
          return b;
        })
        : [h('span', { class: 'muted', text: 'idle' })];
      const heartbeat = w.last_heartbeat_at || w.last_seen_at;
      return h('tr', { 'data-testid': 'adapter-row', 'data-name': w.name, 'data-alive': String(Boolean(w.alive)) },
        h('td', null, h('span', { class: `dot ${w.alive ? 'up' : 'down'}`, title: w.alive ? 'alive' : 'not seen' }), h('strong', { text: w.name }),
          h('div', { class: 'muted small', text: `${w.host}${w.pid ? ` · pid ${w.pid}` : ''}` })),
        h('td', null, h('span', { text: w.agent }),
          h('div', { class: 'muted small', 'data-testid': 'adapter-announced', text: [w.cli_version, ...(w.models || [])].filter(Boolean).join(' · ') }),
          h('div', { class: 'muted small', title: 'capabilities', text: (w.capabilities || []).filter((c) => c !== 'prose').join(', ') })),
        h('td', null, badge(w.alive ? w.status : 'gone')),
        h('td', { text: `${running.length} / ${w.concurrency}` }),
        h('td', null, h('div', { class: 'tasks' }, tasks)),
        h('td', { 'data-testid': 'adapter-heartbeat', title: heartbeat || '', text: fmtAgo(heartbeat, now) }));
    });
    fill(this.body, h('table', { class: 'table', 'data-testid': 'adapters-table' },
      h('thead', null, h('tr', null, ['Adapter', 'Agent', 'Status', 'Running', 'Current tasks', 'Last heartbeat'].map((t) => h('th', { text: t })))),
      h('tbody', null, rows)));
  }
}
