// The dependency graph: a layered layout computed here (longest-path layers, then
// barycenter sweeps to cut crossings), drawn as one SVG built as one string (every value
// escaped). A status change only recolours a node; the layout is redone only when tasks
// are added or their dependencies change.

import { h, fill, esc, cls, label, TASK_STATES } from './dom.js';
import { stats } from './stats.js';

const NODE_W = 150;
const NODE_H = 30;
const COL_W = 200;
const ROW_H = 40;
const PAD = 20;
const SWEEPS = 3;
const MAX_LABEL = 20;
const MIN_SCALE = 0.03;
const MAX_SCALE = 2;

/**
 * Lay out tasks (an array; `depends_on` holds keys). Returns node positions by index, the
 * edges as [parent index, child index], and the drawing's size.
 */
export function layout(tasks) {
  const n = tasks.length;
  const index = new Map();
  tasks.forEach((t, i) => index.set(t.key, i));
  const parents = tasks.map((t) => {
    const out = [];
    for (const key of t.depends_on || []) {
      const p = index.get(key);
      if (p !== undefined && p !== -1) out.push(p);
    }
    return out;
  });
  const children = Array.from({ length: n }, () => []);
  parents.forEach((ps, i) => ps.forEach((p) => children[p].push(i)));

  const layer = longestPathLayers(parents, children);
  let depth = 0;
  for (let i = 0; i < n; i += 1) depth = Math.max(depth, layer[i] + 1);
  const layers = Array.from({ length: depth }, () => []);
  for (let i = 0; i < n; i += 1) layers[layer[i]].push(i);

  const pos = new Float64Array(n);
  const place = (members) => {
    const mid = (members.length - 1) / 2;
    members.forEach((v, k) => { pos[v] = k - mid; });
  };
  layers.forEach(place);
  const barycenter = (v, nbrs) => {
    if (!nbrs.length) return pos[v];
    let sum = 0;
    for (const u of nbrs) sum += pos[u];
    return sum / nbrs.length;
  };
  const reorder = (members, nbrs) => {
    const keys = new Map(members.map((v) => [v, barycenter(v, nbrs[v])]));
    members.sort((a, b) => keys.get(a) - keys.get(b));
    place(members);
  };
  for (let sweep = 0; sweep < SWEEPS; sweep += 1) {
    for (let l = 1; l < depth; l += 1) reorder(layers[l], parents);
    for (let l = depth - 2; l >= 0; l -= 1) reorder(layers[l], children);
  }

  let rows = 1;
  for (const members of layers) rows = Math.max(rows, members.length);
  const x = new Float64Array(n);
  const y = new Float64Array(n);
  for (let i = 0; i < n; i += 1) {
    x[i] = PAD + layer[i] * COL_W;
    y[i] = PAD + (pos[i] + (rows - 1) / 2) * ROW_H;
  }
  const edges = [];
  parents.forEach((ps, i) => ps.forEach((p) => edges.push([p, i])));
  return {
    x, y, layer, edges, depth, rows,
    width: PAD * 2 + Math.max(0, depth - 1) * COL_W + NODE_W,
    height: PAD * 2 + (rows - 1) * ROW_H + NODE_H,
  };
}

/** Layer of a task = 1 + the largest layer of its parents (Kahn's order; a cycle, which
 * the API refuses anyway, leaves its tasks where they were). */
function longestPathLayers(parents, children) {
  const n = parents.length;
  const layer = new Int32Array(n);
  const indegree = parents.map((ps) => ps.length);
  const queue = [];
  for (let i = 0; i < n; i += 1) if (indegree[i] === 0) queue.push(i);
  for (let head = 0; head < queue.length; head += 1) {
    const v = queue[head];
    for (const c of children[v]) {
      if (layer[c] < layer[v] + 1) layer[c] = layer[v] + 1;
      indegree[c] -= 1;
      if (indegree[c] === 0) queue.push(c);
    }
  }
  return layer;
}

function truncate(text, max) {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

export class GraphView {
  constructor(root, { onOpen }) {
    this.root = root;
    this.onOpen = onOpen;
    this.visible = false;
    this.structure = null;
    this.pendingStructure = null;
    this.tasks = new Map();
    this.nodes = new Map(); // task id -> <g>
    this.edgesOf = new Map(); // task id -> [<path>]
    this.selected = null;
    this.scale = 1;
    this.size = { width: 0, height: 0 };
    this.build();
  }

  build() {
    const button = (text, title, testid, fn) => {
      const b = h('button', { type: 'button', class: 'ghost small', title, 'data-testid': testid, text });
      b.addEventListener('click', fn);
      return b;
    };
    this.legend = h('div', { class: 'legend', 'data-testid': 'graph-legend' });
    this.info = h('span', { class: 'muted', 'data-testid': 'graph-info' });
    this.scroll = h('div', { class: 'graph-scroll', 'data-testid': 'graph' });
    fill(this.root,
      h('div', { class: 'toolbar' },
        button('−', 'Zoom out', 'graph-zoom-out', () => this.zoom(this.scale / 1.25)),
        button('+', 'Zoom in', 'graph-zoom-in', () => this.zoom(this.scale * 1.25)),
        button('Fit', 'Fit the whole graph', 'graph-fit', () => this.zoom(this.fitScale())),
        button('1:1', 'Actual size', 'graph-actual', () => this.zoom(1)),
        this.info, h('span', { class: 'spacer' }), this.legend),
      this.scroll);
    this.bindPointer();
  }

  bindPointer() {
    let drag = null;
    this.scroll.addEventListener('pointerdown', (e) => {
      if (e.button !== 0) return;
      drag = { x: e.clientX, y: e.clientY, left: this.scroll.scrollLeft, top: this.scroll.scrollTop, moved: false };
    });
    this.scroll.addEventListener('pointermove', (e) => {
      if (!drag) return;
      const dx = e.clientX - drag.x;
      const dy = e.clientY - drag.y;
      if (!drag.moved && Math.abs(dx) + Math.abs(dy) < 4) return;
      drag.moved = true;
      this.scroll.classList.add('dragging');
      this.scroll.scrollLeft = drag.left - dx;
      this.scroll.scrollTop = drag.top - dy;
    });
    const end = () => {
      this.scroll.classList.remove('dragging');
      setTimeout(() => { drag = null; }, 0);
    };
    this.scroll.addEventListener('pointerup', end);
    this.scroll.addEventListener('pointerleave', end);
    this.scroll.addEventListener('click', (e) => {
      if (drag && drag.moved) return;
      const node = e.target.closest('[data-testid="graph-node"]');
      if (node) this.onOpen(node.dataset.taskId);
    });
    this.scroll.addEventListener('keydown', (e) => {
      const node = e.target.closest('[data-testid="graph-node"]');
      if (node && e.key === 'Enter') this.onOpen(node.dataset.taskId);
    });
    this.scroll.addEventListener('wheel', (e) => {
      if (!e.ctrlKey) return;
      e.preventDefault();
      this.zoom(this.scale * (e.deltaY < 0 ? 1.15 : 1 / 1.15));
    }, { passive: false });
  }

  /** Forget the drawing (another session opens). */
  reset() {
    this.structure = null;
    this.pendingStructure = null;
    this.tasks = new Map();
    this.nodes.clear();
    this.edgesOf.clear();
    this.svg = null;
    this.size = { width: 0, height: 0 };
    this.scroll.replaceChildren();
    this.legend.replaceChildren();
    this.info.textContent = '';
  }

  setVisible(visible) {
    this.visible = visible;
    if (visible) this.update(this.tasks, this.pendingStructure, null);
  }

  /** New task data: re-layout if the structure changed, else recolour what changed. */
  update(tasks, structure, changed) {
    this.tasks = tasks;
    this.pendingStructure = structure;
    if (!this.visible) return;
    if (structure !== this.structure) {
      this.structure = structure;
      this.draw();
    } else {
      this.recolour(changed);
    }
    this.drawLegend();
  }

  draw() {
    const started = performance.now();
    const tasks = [...this.tasks.values()].sort((a, b) => a._order - b._order);
    const g = layout(tasks);
    const laidOut = performance.now();
    stats.record('graphLayout', laidOut - started);
    const first = this.size.width === 0;
    this.size = { width: g.width, height: g.height };
    if (first) this.scale = Math.min(1, Math.max(0.35, this.fitScale()));
    const parts = [
      `<svg xmlns="http://www.w3.org/2000/svg" class="graph-svg" data-testid="graph-svg" viewBox="0 0 ${g.width} ${g.height}" width="${Math.ceil(g.width * this.scale)}" height="${Math.ceil(g.height * this.scale)}">`,
      '<defs><marker id="arrow" viewBox="0 0 8 8" refX="8" refY="4" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0L8,4L0,8z"/></marker></defs>',
      '<g class="edges">',
    ];
    for (const [p, c] of g.edges) {
      const x1 = g.x[p] + NODE_W;
      const y1 = g.y[p] + NODE_H / 2;
      const x2 = g.x[c];
      const y2 = g.y[c] + NODE_H / 2;
      const mx = (x1 + x2) / 2;
      parts.push(`<path data-testid="graph-edge" data-from="${esc(tasks[p].id)}" data-to="${esc(tasks[c].id)}" d="M${x1},${y1}C${mx},${y1} ${mx},${y2} ${x2 - 1},${y2}" marker-end="url(#arrow)"/>`);
    }
    parts.push('</g><g class="nodes">');
    tasks.forEach((t, i) => {
      const status = cls(t.status);
      parts.push(`<g class="node st-${status}" data-testid="graph-node" data-task-id="${esc(t.id)}" data-task-key="${esc(t.key)}" data-status="${status}" transform="translate(${g.x[i]},${g.y[i]})" tabindex="0"><title>${esc(`${t.key} — ${t.title || ''} (${label(t.status)})`)}</title><rect width="${NODE_W}" height="${NODE_H}" rx="6"/><circle cx="12" cy="${NODE_H / 2}" r="4"/><text x="22" y="${NODE_H / 2 + 4}">${esc(truncate(t.key, MAX_LABEL))}</text></g>`);
    });
    parts.push('</g></svg>');
    this.scroll.innerHTML = parts.join('');
    this.svg = this.scroll.firstElementChild;
    this.nodes.clear();
    this.edgesOf.clear();
    for (const el of this.svg.querySelectorAll('[data-testid="graph-node"]')) {
      this.nodes.set(el.dataset.taskId, el);
    }
    for (const el of this.svg.querySelectorAll('[data-testid="graph-edge"]')) {
      for (const id of [el.dataset.from, el.dataset.to]) {
        const list = this.edgesOf.get(id);
        if (list) list.push(el);
        else this.edgesOf.set(id, [el]);
      }
    }
    this.info.textContent = `${tasks.length} tasks · ${g.edges.length} dependencies · ${g.depth} layers`;
    this.select(this.selected);
    stats.record('graphRender', performance.now() - laidOut);
  }

  recolour(changed) {
    const started = performance.now();
    const ids = changed || this.tasks.keys();
    for (const id of ids) {
      const el = this.nodes.get(id);
      const task = this.tasks.get(id);
      if (!el || !task) continue;
      const status = cls(task.status);
      if (el.dataset.status === status) continue;
      el.dataset.status = status;
      el.setAttribute('class', `node st-${status}${id === this.selected ? ' selected' : ''}`);
      const title = el.querySelector('title');
      if (title) title.textContent = `${task.key} — ${task.title || ''} (${label(task.status)})`;
    }
    stats.record('graphRecolour', performance.now() - started);
  }

  drawLegend() {
    const counts = {};
    for (const t of this.tasks.values()) counts[t.status] = (counts[t.status] || 0) + 1;
    fill(this.legend, TASK_STATES.filter((s) => counts[s]).map((s) => h('span', { class: `legend-item st-${s}` },
      h('span', { class: 'swatch' }), `${label(s)} ${counts[s]}`)));
  }

  select(id) {
    const previous = this.selected && this.nodes.get(this.selected);
    if (previous) previous.classList.remove('selected');
    for (const el of this.edgesOf.get(this.selected) || []) el.classList.remove('hl');
    this.selected = id;
    const node = id && this.nodes.get(id);
    if (node) node.classList.add('selected');
    for (const el of this.edgesOf.get(id) || []) el.classList.add('hl');
  }

  fitScale() {
    const { width, height } = this.size;
    if (!width || !height) return 1;
    const w = this.scroll.clientWidth || 800;
    const hgt = this.scroll.clientHeight || 500;
    return Math.max(MIN_SCALE, Math.min(MAX_SCALE, (w - 4) / width, (hgt - 4) / height));
  }

  zoom(scale) {
    const next = Math.max(MIN_SCALE, Math.min(MAX_SCALE, scale));
    if (!this.svg) {
      this.scale = next;
      return;
    }
    const s = this.scroll;
    const cx = (s.scrollLeft + s.clientWidth / 2) / this.scale;
    const cy = (s.scrollTop + s.clientHeight / 2) / this.scale;
    this.scale = next;
    this.svg.setAttribute('width', String(Math.ceil(this.size.width * next)));
    this.svg.setAttribute('height', String(Math.ceil(this.size.height * next)));
    s.scrollLeft = cx * next - s.clientWidth / 2;
    s.scrollTop = cy * next - s.clientHeight / 2;
  }
}
