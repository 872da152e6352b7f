// The sequence chart in plain SVG: lifelines across, one row per call down. Only the rows in view
// are drawn (a 10,000-record session stays responsive); the scroll area's spacer has the full size,
// the SVG stays in view (sticky) and draws what is under it. Zoom scales rows and columns, dragging
// pans, a click on a row selects it.
/* global requestAnimationFrame, ResizeObserver, XMLSerializer */

import { SPMC } from './model.js';

const NS = 'http://www.w3.org/2000/svg';
const HEAD = 34;
/** Rows drawn above and below the view, so a fast scroll does not show blank edges. */
const OVERSCAN = 8;

/** The chart's style, inside the SVG itself so an exported chart looks the same. */
const STYLE = `
  text { font: 11px ui-monospace, Menlo, Consolas, monospace; fill: #222; }
  .head rect { fill: #203040; } .head text { fill: #fff; }
  .life { stroke: #bbb; stroke-dasharray: 4 3; }
  .bar { fill: #ffe6b3; stroke: #c98a00; } .bar.open { fill: #ffd27a; }
  .arrow line, .arrow path { stroke: #2a5db0; fill: none; stroke-width: 1.4; }
  .arrow.response line { stroke-dasharray: 5 3; }
  .arrow.signal line { stroke: #7a3db8; stroke-dasharray: 2 3; }
  .arrow.return line { stroke: #555; stroke-dasharray: 5 3; }
  .arrow.error line, .arrow.error path { stroke: #b00020; } .arrow.error text { fill: #b00020; }
  .arrow.injected line { stroke: #d35400; stroke-width: 2.2; } .inj { fill: #d35400; font-weight: bold; }
  .arrow.selected text { font-weight: bold; } .arrow.selected .hit { fill: #e8f0fe; }
  .hit { fill: transparent; }
  .note text { fill: #666; } .note.error text { fill: #b00020; } .note circle { fill: #999; } .note.error circle { fill: #b00020; }
  .lost rect { fill: #fde0e0; } .lost text { fill: #b00020; }
  .reason { fill: #b00020; font-size: 10px; }
  .seq { fill: #999; font-size: 10px; }
  .cursor { stroke: #0a8f3c; stroke-width: 2; }
  .head-cursor { fill: #0a8f3c; }
  .arrowhead { fill: #2a5db0; } .arrowhead.error { fill: #b00020; }
`;

const el = (name, attrs = {}, text) => {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
};

export class SequenceChart {
  constructor(scroller, { onSelect } = {}) {
    this.scroller = scroller;
    this.onSelect = onSelect || (() => {});
    this.spacer = document.createElement('div');
    this.spacer.className = 'spacer';
    this.svg = el('svg', { class: 'chart', xmlns: NS });
    this.svg.append(el('style', {}, STYLE));
    this.layer = el('g');
    this.svg.append(this.layer);
    this.spacer.append(this.svg);
    scroller.append(this.spacer);
    this.zoom = 1;
    this.model = undefined;
    this.selected = undefined;
    /** The time-travel cursor: rows up to this seq are "now". */
    this.cursorSeq = undefined;
    this.follow = true;
    this.pending = false;
    scroller.addEventListener('scroll', () => {
      // Scrolled up by the user: stop following the newest rows until back at the bottom.
      this.follow = scroller.scrollTop + scroller.clientHeight >= scroller.scrollHeight - this.rowH() * 2;
      this.draw();
    });
    this.svg.addEventListener('click', (e) => {
      const g = e.target.closest('[data-index]');
      if (g) this.select(Number(g.dataset.index));
    });
    this.pan();
    new ResizeObserver(() => this.draw()).observe(scroller);
  }

  rowH = () => Math.round(28 * this.zoom);
  colW = () => Math.round(170 * this.zoom);

  setModel(model) {
    this.model = model;
    this.selected = undefined;
    this.follow = true;
    this.draw();
  }

  setZoom(z) {
    const top = this.scroller.scrollTop / this.rowH();
    this.zoom = Math.min(3, Math.max(0.3, z));
    this.layout();
    this.scroller.scrollTop = top * this.rowH();
    this.draw();
  }

  /** Drag to pan (a click without a drag still selects). */
  pan() {
    let from;
    this.scroller.addEventListener('pointerdown', (e) => {
      if (e.button === 0) from = { x: e.clientX, y: e.clientY, left: this.scroller.scrollLeft, top: this.scroller.scrollTop };
    });
    window.addEventListener('pointermove', (e) => {
      if (!from || (Math.abs(e.clientX - from.x) < 4 && Math.abs(e.clientY - from.y) < 4)) return;
      this.scroller.scrollLeft = from.left - (e.clientX - from.x);
      this.scroller.scrollTop = from.top - (e.clientY - from.y);
    });
    window.addEventListener('pointerup', () => (from = undefined));
    this.scroller.addEventListener(
      'wheel',
      (e) => {
        if (!e.ctrlKey) return;
        e.preventDefault();
        this.setZoom(this.zoom * (e.deltaY < 0 ? 1.1 : 1 / 1.1));
      },
      { passive: false },
    );
  }

  x(id) {
    const i = this.model.lifelines.findIndex((l) => l.id === id);
    return 60 + i * this.colW() + this.colW() / 2;
  }

  layout() {
    const m = this.model;
    if (!m) return;
    this.spacer.style.width = `${60 + m.lifelines.length * this.colW() + 40}px`;
    this.spacer.style.height = `${HEAD + m.rows.length * this.rowH() + 20}px`;
  }

  /** Rows changed: redraw on the next frame (many records in one batch: one redraw). */
  update() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.layout();
      if (this.follow && this.cursorSeq === undefined) this.scroller.scrollTop = this.scroller.scrollHeight;
      this.draw();
    });
  }

  select(index) {
    this.selected = index;
    this.draw();
    const row = this.model.rows[index];
    if (row) this.onSelect(row);
  }

  /** Scroll so a row is in view. */
  reveal(index) {
    const y = index * this.rowH();
    const s = this.scroller;
    if (y < s.scrollTop || y > s.scrollTop + s.clientHeight - HEAD - this.rowH() * 2) s.scrollTop = Math.max(0, y - s.clientHeight / 3);
    this.draw();
  }

  /** The rows in view, first..last (inclusive). */
  visible() {
    const s = this.scroller;
    const h = this.rowH();
    const n = this.model ? this.model.rows.length : 0;
    const first = Math.max(0, Math.floor(s.scrollTop / h) - OVERSCAN);
    const last = Math.min(n - 1, Math.ceil((s.scrollTop + s.clientHeight) / h) + OVERSCAN);
    return { first, last };
  }

  draw() {
    const m = this.model;
    const s = this.scroller;
    this.svg.setAttribute('width', s.clientWidth);
    this.svg.setAttribute('height', s.clientHeight);
    this.layer.replaceChildren();
    if (!m) return;
    this.layout();
    const h = this.rowH();
    const left = s.scrollLeft;
    const top = s.scrollTop;
    const { first, last } = this.visible();
    const body = el('g', { transform: `translate(${-left},${HEAD - top})` });
    this.layer.append(body);
    const y = (i) => i * h + h / 2;
    // Lifelines over the rows in view.
    for (const l of m.lifelines) {
      body.append(el('line', { class: 'life', x1: this.x(l.id), x2: this.x(l.id), y1: Math.max(0, first * h), y2: (last + 1) * h }));
    }
    // Activation bars that cross the view.
    for (const b of m.bars) {
      const to = b.to ?? m.rows.length - 1;
      if (to < first || b.from > last) continue;
      const y1 = y(b.from);
      const y2 = Math.max(y(to), y1 + h / 2);
      body.append(
        el('rect', { class: `bar${b.to === undefined ? ' open' : ''}`, 'data-call': b.callSeq, x: this.x(b.endpoint) - 4, y: y1, width: 8, height: y2 - y1 }),
      );
    }
    for (let i = first; i <= last; i++) body.append(this.row(m.rows[i], y(i), h));
    if (this.cursorSeq !== undefined) {
      const at = this.cursorIndex();
      if (at >= first - 1 && at <= last)
        body.append(el('line', { class: 'cursor', x1: 0, x2: 60 + m.lifelines.length * this.colW(), y1: (at + 1) * h, y2: (at + 1) * h }));
    }
    // The lifeline heads stay at the top.
    const head = el('g', { class: 'head', transform: `translate(${-left},0)` });
    for (const l of m.lifelines) {
      const x = this.x(l.id);
      const g = el('g', { 'data-lifeline': l.id === SPMC ? 'spmc' : `0x${l.id.toString(16)}` });
      g.append(el('rect', { x: x - this.colW() / 2 + 6, y: 4, width: this.colW() - 12, height: HEAD - 8, rx: 4 }));
      g.append(el('text', { x, y: HEAD / 2 + 4, 'text-anchor': 'middle' }, l.label.length > 24 ? `${l.label.slice(0, 23)}…` : l.label));
      head.append(g);
    }
    this.layer.append(head);
  }

  /** Index of the last row at or before the cursor. */
  cursorIndex() {
    const rows = this.model.rows;
    let lo = 0;
    let hi = rows.length - 1;
    let at = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (rows[mid].seq <= this.cursorSeq) {
        at = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return at;
  }

  row(r, y, h) {
    const cls = [
      r.kind === 'note' || r.kind === 'lost' ? r.kind : 'arrow',
      r.kind,
      r.response ? 'response' : '',
      r.error ? 'error' : '',
      r.injected ? 'injected' : '',
      r.index === this.selected ? 'selected' : '',
    ]
      .filter(Boolean)
      .join(' ');
    const g = el('g', {
      class: cls,
      'data-index': r.index,
      'data-seq': r.seq,
      'data-fn': r.fn || '',
      'data-from': lane(r.from),
      'data-to': r.to.map(lane).join(' '),
    });
    const x1 = this.x(r.from);
    const width = 60 + this.model.lifelines.length * this.colW();
    g.append(el('rect', { class: 'hit', x: 0, y: y - h / 2, width, height: h }));
    g.append(el('text', { class: 'seq', x: 4, y: y + 4 }, `#${r.seq}`));
    if (r.kind === 'lost') {
      g.append(el('rect', { x: 50, y: y - h / 2 + 2, width: width - 50, height: h - 4 }));
      g.append(el('text', { x: 60, y: y + 4 }, `⚠ ${r.label}`));
      return g;
    }
    if (r.kind === 'note') {
      g.append(el('circle', { cx: x1, cy: y, r: 3 }));
      g.append(el('text', { x: x1 + 8, y: y + 4 }, r.label));
      return g;
    }
    for (const t of r.to) {
      const x2 = this.x(t);
      if (x2 === x1) {
        // To itself (should not happen; drawn as a loop).
        g.append(el('path', { d: `M${x1},${y - 4} h24 v8 h-24` }));
        continue;
      }
      const dir = x2 > x1 ? 1 : -1;
      g.append(el('line', { x1, y1: y, x2: x2 - dir * 6, y2: y }));
      g.append(el('path', { class: `arrowhead${r.error ? ' error' : ''}`, d: `M${x2},${y} l${-dir * 8},-4 v8 z` }));
    }
    const xs = [x1, ...r.to.map((t) => this.x(t))];
    const mid = (Math.min(...xs) + Math.max(...xs)) / 2;
    const label = el('text', { x: mid, y: y - 4, 'text-anchor': 'middle' }, r.label);
    g.append(label);
    if (r.injected) g.append(el('text', { class: 'inj', x: mid, y: y + 11, 'text-anchor': 'middle' }, `⚡ injected by ${r.injected}`));
    else if (r.error && r.reason)
      g.append(el('text', { class: 'reason', x: mid, y: y + 11, 'text-anchor': 'middle' }, r.reason.length > 90 ? `${r.reason.slice(0, 89)}…` : r.reason));
    const title = el('title', {}, `#${r.seq} ${r.fn || ''}${r.reason ? `\n${r.reason}` : ''}`);
    g.append(title);
    return g;
  }

  /** The chart as drawn now, as a standalone SVG document. */
  exportSvg() {
    const copy = this.svg.cloneNode(true);
    copy.setAttribute('xmlns', NS);
    copy.setAttribute('viewBox', `0 0 ${this.svg.getAttribute('width')} ${this.svg.getAttribute('height')}`);
    return `<?xml version="1.0" encoding="UTF-8"?>\n${new XMLSerializer().serializeToString(copy)}`;
  }
}

const lane = (id) => (id === SPMC ? 'spmc' : `0x${id.toString(16)}`);
