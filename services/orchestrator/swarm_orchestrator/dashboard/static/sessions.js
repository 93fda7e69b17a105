// The sessions list (left) and the open session's header: progress (done / total, elapsed,
// an estimate of the time left, tokens, cost), or a draft's plan state, and the session
// controls (pause / resume, checkpoint, rollback to a passed checkpoint, cancel).

import { api, post } from './api.js';
import { h, fill, badge, cls, label, fmtDateTime, fmtDuration, fmtTokens, fmtCost, TASK_STATES } from './dom.js';
import { actionButton, chooseOption, runAction, toast, toastFirstFailure } from './ui.js';

const LIST_REFRESH_MS = 10000;
const OPEN_STATES = new Set(['draft', 'active', 'awaiting_review', 'suspended']);
/** Sessions whose integration branch can be checked or rolled back. */
const RUNNING_STATES = new Set(['active', 'awaiting_review', 'suspended']);

export class SessionList {
  constructor(root, { onSelect }) {
    this.root = root;
    this.onSelect = onSelect;
    this.sessions = [];
    this.selected = null;
    this.loaded = false;
    this.guarded = toastFirstFailure('Sessions');
    // Properties, not addEventListener: a second sign-in builds a new list on the same root.
    root.onclick = (e) => {
      const item = e.target.closest('[data-testid="session-item"]');
      if (item) this.onSelect(item.dataset.sessionId);
    };
    root.onkeydown = (e) => {
      const item = e.target.closest('[data-testid="session-item"]');
      if (item && e.key === 'Enter') this.onSelect(item.dataset.sessionId);
    };
    this.timer = setInterval(() => this.refresh(), LIST_REFRESH_MS);
  }

  destroy() {
    clearInterval(this.timer);
  }

  async refresh() {
    await this.guarded(async () => {
      this.sessions = await api('/v1/sessions', { query: { limit: 100 } });
      this.loaded = true;
      this.render();
    });
    return this.sessions;
  }

  /** A fresher copy of one session (from the open session's own updates). */
  patch(session) {
    const i = this.sessions.findIndex((s) => s.id === session.id);
    if (i >= 0) {
      this.sessions[i] = { ...this.sessions[i], ...session };
      this.render();
    }
  }

  select(id) {
    this.selected = id;
    this.render();
  }

  render() {
    if (!this.sessions.length) {
      fill(this.root, h('li', { class: 'empty', text: this.loaded ? 'No session yet: start one from a goal (New session), or submit a graph with `swarm submit`.' : 'Loading…' }));
      return;
    }
    fill(this.root, this.sessions.map((s) => {
      const counts = s.counts || {};
      const total = s.total || Object.values(counts).reduce((a, b) => a + b, 0);
      const ended = ['succeeded', 'failed', 'blocked', 'cancelled'].reduce((n, k) => n + (counts[k] || 0), 0);
      return h('li', {
        class: `session${s.id === this.selected ? ' selected' : ''}`,
        'data-testid': 'session-item', 'data-session-id': s.id, 'data-status': s.status,
        tabindex: '0', role: 'button',
      },
      h('div', { class: 'session-top' }, h('span', { class: 'session-title', text: s.title }), badge(s.status)),
      s.status === 'draft'
        ? h('div', { class: 'muted small', 'data-testid': 'session-plan-state', text: planLine(s) })
        : [stackedBar(counts, total, 'mini'),
          h('div', { class: 'muted small', text: `${ended} / ${total} done${counts.running ? ` · ${counts.running} running` : ''}${counts.failed ? ` · ${counts.failed} failed` : ''}` })]);
    }));
  }
}

const PLAN_WORDS = {
  planning: 'the planner is at work',
  ready: 'plan ready',
  failed: 'planning failed',
  approved: 'plan approved',
};
const DRAFT_HINTS = {
  planning: 'The plan shows under Plan once the planner answers.',
  failed: 'Plan again, send feedback, or write the plan by hand under Plan.',
};

/** A draft's plan in a few words: "plan ready · revision 2". */
function planLine(s) {
  if (!s.plan_status) return 'draft';
  const revision = s.plan_revision ? ` · revision ${s.plan_revision}` : '';
  const words = PLAN_WORDS[s.plan_status] || `plan ${label(s.plan_status)}`;
  return `${words}${revision}${s.auto_approve ? ' · auto-approve' : ''}`;
}

/** A bar of task counts by state. */
export function stackedBar(counts, total, extra = '') {
  const bar = h('div', { class: `stacked ${extra}`, 'data-testid': 'progress-bar' });
  if (!total) return bar;
  for (const status of ['succeeded', 'failed', 'blocked', 'cancelled', 'awaiting_approval', 'reviewing', 'racing', 'running', 'queued']) {
    const n = counts[status] || 0;
    if (!n) continue;
    const seg = h('span', { class: `seg st-${status}`, title: `${label(status)}: ${n}` });
    seg.style.width = `${(100 * n) / total}%`;
    bar.append(seg);
  }
  return bar;
}

export class SessionHeader {
  constructor(root, { canOperate, onSession }) {
    this.root = root;
    this.canOperate = canOperate;
    this.onSession = onSession;
    this.session = null;
    this.progress = null;
    this.progressAt = 0;
    this.tick = setInterval(() => this.renderTimes(), 1000);
  }

  destroy() {
    clearInterval(this.tick);
  }

  clear() {
    this.session = null;
    this.progress = null;
    this.root.hidden = true;
    this.root.replaceChildren();
  }

  setSession(session) {
    this.session = session;
    this.render();
  }

  setProgress(progress) {
    this.progress = progress;
    this.progressAt = Date.now();
    this.render();
  }

  render() {
    const s = this.session;
    if (!s) return;
    this.root.hidden = false;
    const p = this.progress || {};
    const counts = p.counts || s.counts || {};
    const total = p.total ?? s.total ?? 0;
    const ended = p.ended ?? 0;
    this.times = {
      elapsed: h('span', { 'data-testid': 'progress-elapsed' }),
      eta: h('span', { 'data-testid': 'progress-eta' }),
    };
    const target = s.target_branch ? ` → ${s.target_branch}` : '';
    fill(this.root,
      h('div', { class: 'session-line' },
        h('h1', { class: 'session-name', 'data-testid': 'session-title', text: s.title }),
        badge(s.status),
        h('span', { class: 'muted small', title: s.repo, text: `${s.base_ref}${target} · ${s.integration_branch || ''}` }),
        h('span', { class: 'spacer' }),
        h('div', { class: 'controls', 'data-testid': 'session-controls' }, this.controls())),
      s.review_reason ? h('p', { class: 'muted small', 'data-testid': 'session-review-reason', text: s.review_reason }) : null,
      s.cancelling_by ? h('p', { class: 'muted small', 'data-testid': 'session-cancelling', text: `Cancelled by ${s.cancelling_by}: the tasks that could no longer start are being cancelled (${total - ended} left).` }) : null,
      s.suspended_reason ? h('p', { class: 'muted small', 'data-testid': 'session-suspended-reason', text: s.suspended_reason === 'budget_exhausted' ? 'Suspended: its budget (or its tenant\'s) is spent. Raise it to resume (swarm budget).' : `Suspended: ${s.suspended_reason}. It resumes by itself when an adapter comes.` }) : null,
      s.status === 'draft' ? h('p', { class: 'draft-line', 'data-testid': 'session-draft' },
        h('span', { text: `A draft: ${planLine(s)}. ` }),
        h('span', { class: 'muted', text: DRAFT_HINTS[s.plan_status] || 'Review the plan, edit it or send feedback, then approve it to run.' })) : null,
      s.status === 'draft' ? null : this.progressBlock(counts, total, ended, p));
    this.renderTimes();
  }

  progressBlock(counts, total, ended, p) {
    return [
      stackedBar(counts, total),
      h('div', { class: 'progress-stats' },
        h('span', { class: 'big', 'data-testid': 'progress-done', text: `${ended} / ${total} done` }),
        h('span', { class: 'muted', text: total ? `${Math.round(p.percent ?? (100 * ended) / total)}%` : '' }),
        stat('Elapsed', this.times.elapsed),
        stat('Time left', this.times.eta),
        stat('Running', h('span', { text: String(p.running ?? counts.running ?? 0) })),
        stat('Queued', h('span', { text: String(p.queued ?? counts.queued ?? 0) })),
        stat('Tokens', h('span', { 'data-testid': 'progress-tokens', title: usageTitle(p.usage), text: fmtTokens(p.tokens) })),
        stat('Cost', h('span', { 'data-testid': 'progress-cost', text: fmtCost(p.cost_usd) })),
        h('span', { class: 'counts' }, TASK_STATES.filter((k) => counts[k]).map((k) => h('span', { class: `count-chip st-${cls(k)}`, text: `${label(k)} ${counts[k]}` })))),
    ];
  }

  renderTimes() {
    if (!this.times || !this.session) return;
    const p = this.progress || {};
    const running = !p.finished_at && OPEN_STATES.has(this.session.status);
    const since = running ? (Date.now() - this.progressAt) / 1000 : 0;
    const elapsed = p.elapsed_s === null || p.elapsed_s === undefined ? null : p.elapsed_s + since;
    this.times.elapsed.textContent = fmtDuration(elapsed);
    let eta = '—';
    if (p.finished_at || (p.total && p.ended === p.total)) eta = 'done';
    else if (this.session.status === 'suspended') eta = 'paused';
    else if (p.eta_s !== null && p.eta_s !== undefined) {
      const left = p.eta_s - since;
      eta = left < 1 ? 'under 1s' : `~${fmtDuration(left)}`;
    }
    this.times.eta.textContent = eta;
  }

  controls() {
    const s = this.session;
    if (!this.canOperate() || !OPEN_STATES.has(s.status)) return [];
    const id = encodeURIComponent(s.id);
    const out = [];
    if (s.status === 'draft') return [this.cancelControl(s)];
    if (s.status === 'suspended') {
      out.push(this.control('resume', 'Resume', 'primary', {
        run: () => post(`/v1/sessions/${id}/resume`), done: 'Session resumed',
      }));
    } else {
      out.push(this.control('pause', 'Pause', '', {
        run: () => post(`/v1/sessions/${id}/pause`), done: 'Session paused: nothing new starts',
      }));
    }
    out.push(this.control('checkpoint', 'Checkpoint', '', {
      run: () => post(`/v1/sessions/${id}/checkpoints`),
      done: (c) => `Checkpoint ${c && c.number ? c.number : ''} requested: its gates run now`,
    }));
    if (RUNNING_STATES.has(s.status)) out.push(this.rollbackControl(s));
    out.push(this.cancelControl(s));
    return out;
  }

  cancelControl(s) {
    const id = encodeURIComponent(s.id);
    return this.control('cancel-session', 'Cancel session', 'danger', {
      confirm: {
        title: `Cancel session “${s.title}”?`,
        text: 'Every task that has not ended is cancelled and running agents are stopped; their work is lost.',
        ok: 'Cancel session',
      },
      run: () => post(`/v1/sessions/${id}/cancel`),
      done: 'Session cancelled',
    });
  }

  /** Rollback: pick one of the passed checkpoints (newest first), confirm, reset to it. */
  rollbackControl(s) {
    const id = encodeURIComponent(s.id);
    const b = h('button', {
      type: 'button', 'data-action': 'rollback', 'data-testid': 'session-rollback', text: 'Rollback…',
      title: 'Reset the integration branch to a passed checkpoint',
    });
    b.addEventListener('click', async () => {
      let passed;
      try {
        const list = await api(`/v1/sessions/${id}/checkpoints`);
        passed = list.filter((c) => c.status === 'passed').reverse();
      } catch (err) {
        toast(`Checkpoints: ${err.message}`, 'error');
        return;
      }
      if (!passed.length) {
        toast('No checkpoint has passed yet: there is nothing to roll back to. Take a checkpoint first.');
        return;
      }
      const chosen = await chooseOption({
        title: `Roll back “${s.title}”?`,
        text: 'The integration branch is reset to the checkpoint: the merges of tasks after it are undone, and tasks in flight start again from it.',
        what: 'Checkpoint',
        options: passed.map((c) => ({
          value: c.number,
          label: `#${c.number} · ${String(c.commit).slice(0, 10)} · ${fmtDateTime(c.finished_at || c.created_at)}${c.final ? ' · final' : ''}${c.tag ? ` · ${c.tag}` : ''}`,
        })),
        ok: 'Roll back',
      });
      if (chosen === null) return;
      await runAction(b, {
        run: () => post(`/v1/sessions/${id}/rollback`, { checkpoint: Number(chosen) }),
        done: (r) => `Rolled back to checkpoint ${r.checkpoint}: ${r.rolled_back.length ? `merges of ${r.rolled_back.join(', ')} undone` : 'no merge undone'}`,
      });
    });
    return b;
  }

  control(action, text, kind, spec) {
    return actionButton({ action, text, kind, testid: `session-${action}` }, spec, (result) => {
      if (result && result.id && result.status && result.title !== undefined) {
        this.onSession(result);
      }
    });
  }
}

function stat(name, value) {
  return h('span', { class: 'stat' }, h('span', { class: 'muted', text: `${name} ` }), value);
}

function usageTitle(usage) {
  if (!usage || typeof usage !== 'object') return '';
  return Object.entries(usage).map(([k, v]) => `${k}: ${v}`).join('\n');
}

