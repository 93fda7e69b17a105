// DOM building and formatting. Everything that comes from the API (titles, prompts,
// transcripts) reaches the page through textContent or `esc()`, never as markup.

/** Build an element: h('div', {class: 'x', text: 'hi', onclick: fn}, child, 'text'). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'text') el.textContent = String(v);
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : String(c));
  }
}

/** Replace an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

const ESCAPES = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Escape text for markup built as a string (the graph's SVG). */
export function esc(value) {
  return String(value).replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

/** A status name safe to use in a class name. */
export function cls(value) {
  return String(value || 'unknown').replace(/[^a-z0-9_-]/gi, '');
}

export const TASK_STATES = [
  'pending', 'queued', 'running', 'racing', 'reviewing', 'awaiting_approval',
  'succeeded', 'failed', 'blocked', 'cancelled',
];
export const ENDED_STATES = new Set(['succeeded', 'failed', 'blocked', 'cancelled']);

export function label(status) {
  return String(status || '').replace(/_/g, ' ');
}

export function badge(status, extra = '') {
  return h('span', { class: `badge st-${cls(status)} ${extra}`, text: label(status) });
}

export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return '—';
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, '0')}s`;
  const hours = Math.floor(m / 60);
  if (hours < 48) return `${hours}h ${String(m % 60).padStart(2, '0')}m`;
  return `${Math.floor(hours / 24)}d ${hours % 24}h`;
}

export function parseTime(iso) {
  if (!iso) return null;
  const t = Date.parse(iso);
  return Number.isNaN(t) ? null : t;
}

export function fmtAgo(iso, now = Date.now()) {
  const t = parseTime(iso);
  if (t === null) return '—';
  const s = (now - t) / 1000;
  if (s < 1) return 'just now';
  return `${fmtDuration(s)} ago`;
}

export function fmtClock(iso) {
  const t = parseTime(iso);
  if (t === null) return '';
  return new Date(t).toLocaleTimeString([], { hour12: false });
}

export function fmtDateTime(iso) {
  const t = parseTime(iso);
  if (t === null) return '—';
  return new Date(t).toLocaleString([], { hour12: false });
}

export function fmtTokens(n) {
  if (n === null || n === undefined || !Number.isFinite(Number(n))) return '—';
  const v = Number(n);
  if (v < 1000) return String(v);
  if (v < 1e6) return `${(v / 1e3).toFixed(v < 1e4 ? 1 : 0)}k`;
  return `${(v / 1e6).toFixed(v < 1e7 ? 2 : 1)}M`;
}

export function fmtCost(usd) {
  if (usd === null || usd === undefined || usd === '') return '—';
  const v = Number(usd);
  if (!Number.isFinite(v)) return '—';
  if (v === 0) return '$0';
  if (v < 0.01) return `$${v.toFixed(4)}`;
  if (v < 100) return `$${v.toFixed(2)}`;
  return `$${Math.round(v)}`;
}

/** Sum of input and output tokens of a usage dict. */
export function usageTokens(usage) {
  if (!usage || typeof usage !== 'object') return null;
  let total = 0;
  let seen = false;
  for (const k of ['input', 'output', 'input_tokens', 'output_tokens']) {
    const v = Number(usage[k]);
    if (Number.isFinite(v)) { total += v; seen = true; }
  }
  return seen ? total : null;
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Call `fn` at most once per `ms`, the last call winning (trailing edge). */
export function throttle(fn, ms) {
  let last = 0;
  let timer = null;
  return function throttled() {
    if (timer !== null) return;
    const wait = Math.max(0, last + ms - Date.now());
    timer = setTimeout(() => {
      timer = null;
      last = Date.now();
      fn();
    }, wait);
  };
}
