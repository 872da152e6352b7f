// The memory map: one bar per endpoint for its RAM window, its ranges coloured by state, the ranges
// it borrowed from other windows beside it, its recent faults as red ticks, and a line per handle
// from the owner's range to each borrower's. Ranges differ by orders of magnitude (a 64 MiB window,
// a 4 KiB page), so widths grow with the logarithm of the size: every range stays visible.

const NS = 'http://www.w3.org/2000/svg';
const el = (name, attrs = {}, text) => {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
};

export const STATE_COLOURS = {
  owned: '#cfe3cf',
  'shared-out': '#8ecae6',
  'lent-out': '#f4a261',
  'donated-out': '#bdbdbd',
  'borrowed-ro': '#b8c0ff',
  'borrowed-rw': '#6a7bff',
  tx: '#ffd166',
  rx: '#06d6a0',
  gap: '#f4f4f4',
};

const ROW = 34;
const LABEL = 130;
const FOREIGN = 170;

const big = (h) => BigInt(h);
const weight = (n) => 1 + Math.log2(1 + Number(n / 4096n));

/** Split a window into its ranges and the gaps between them, each with its share of the bar. */
function segments(ram, ranges) {
  const lo = big(ram.base);
  const hi = big(ram.limit);
  const inside = ranges.filter((r) => big(r.base) >= lo && big(r.limit) <= hi);
  const out = [];
  let at = lo;
  for (const r of inside) {
    if (big(r.base) > at) out.push({ base: at, limit: big(r.base), state: 'gap' });
    out.push({ ...r, base: big(r.base), limit: big(r.limit) });
    at = big(r.limit);
  }
  if (at < hi) out.push({ base: at, limit: hi, state: 'gap' });
  return out;
}

/** Draw the map into `svg` from a /v1/memory/map answer. */
export function drawMemoryMap(svg, map, width = 900) {
  svg.replaceChildren();
  svg.append(
    el(
      'style',
      {},
      'text { font: 11px ui-monospace, Menlo, Consolas, monospace; } .fault { stroke: #b00020; stroke-width: 2; } .link { stroke: #444; fill: none; stroke-dasharray: 3 2; }',
    ),
  );
  const eps = map.endpoints;
  svg.setAttribute('width', width);
  svg.setAttribute('height', eps.length * ROW + 24);
  const barW = width - LABEL - FOREIGN - 10;
  /** Where each range of a handle was drawn, for the links. */
  const at = new Map();
  const mark = (handle, role, x, y) => {
    if (!handle) return;
    if (!at.has(handle)) at.set(handle, { owner: [], borrower: [] });
    at.get(handle)[role].push({ x, y });
  };
  eps.forEach((ep, i) => {
    const y = 6 + i * ROW;
    const g = el('g', { 'data-endpoint': ep.idHex });
    g.append(el('text', { x: 2, y: y + 15 }, `${ep.idHex} ${ep.name}`.slice(0, 18)));
    const segs = segments(ep.ram, ep.ranges);
    const total = segs.reduce((n, s) => n + weight(s.limit - s.base), 0);
    let x = LABEL;
    for (const s of segs) {
      const w = (weight(s.limit - s.base) / total) * barW;
      const r = el('rect', {
        x,
        y,
        width: Math.max(1, w),
        height: 20,
        fill: STATE_COLOURS[s.state] || '#fff',
        stroke: '#fff',
        'data-state': s.state,
        'data-base': `0x${s.base.toString(16)}`,
        'data-handle': s.handle,
      });
      r.append(
        el(
          'title',
          {},
          `${s.state} 0x${s.base.toString(16)}..0x${s.limit.toString(16)} (${(s.limit - s.base) / 4096n} pages)${s.handle ? ` handle ${s.handle}` : ''}`,
        ),
      );
      g.append(r);
      if (s.state === 'lent-out' || s.state === 'donated-out' || s.state === 'shared-out') mark(s.handle, 'owner', x + w / 2, y + 20);
      if (s.state.startsWith('borrowed')) mark(s.handle, 'borrower', x + w / 2, y);
      s.x = x;
      s.w = w;
      x += w;
    }
    // Faults: a tick at the range they hit (or the window's edge).
    for (const f of ep.faults || []) {
      const s = segs.find((q) => big(f.address) >= q.base && big(f.address) < q.limit);
      const fx = s ? s.x + s.w / 2 : LABEL + barW;
      const t = el('line', { class: 'fault', 'data-fault': f.address, x1: fx, x2: fx, y1: y - 3, y2: y + 23 });
      t.append(el('title', {}, `fault: ${f.access} ${f.length} bytes at ${f.address}`));
      g.append(t);
    }
    // Ranges outside the window (memory borrowed from another endpoint), beside the bar.
    const foreign = ep.ranges.filter((r) => big(r.base) < big(ep.ram.base) || big(r.limit) > big(ep.ram.limit));
    foreign.forEach((r, k) => {
      const w = (FOREIGN - 10) / Math.max(1, foreign.length);
      const fx = LABEL + barW + 10 + k * w;
      const rect = el('rect', {
        x: fx,
        y,
        width: w - 2,
        height: 20,
        fill: STATE_COLOURS[r.state] || '#fff',
        'data-state': r.state,
        'data-base': r.base,
        'data-handle': r.handle,
      });
      rect.append(el('title', {}, `${r.state} ${r.base}..${r.limit}${r.handle ? ` handle ${r.handle}` : ''}`));
      g.append(rect);
      if (r.state.startsWith('borrowed')) mark(r.handle, 'borrower', fx + w / 2, y);
      else if (r.state.endsWith('-out')) mark(r.handle, 'owner', fx + w / 2, y + 20);
    });
    svg.append(g);
  });
  for (const [handle, { owner, borrower }] of at) {
    for (const o of owner) {
      for (const b of borrower) {
        const p = el('path', { class: 'link', 'data-link': handle, d: `M${o.x},${o.y} C${o.x},${(o.y + b.y) / 2} ${b.x},${(o.y + b.y) / 2} ${b.x},${b.y}` });
        p.append(el('title', {}, `handle ${handle}`));
        svg.append(p);
      }
    }
  }
}

/** The colour legend, as HTML. */
export function legend(div) {
  div.replaceChildren(
    ...Object.entries(STATE_COLOURS).map(([state, colour]) => {
      const s = document.createElement('span');
      s.className = 'key';
      s.innerHTML = `<i style="background:${colour}"></i>`;
      s.append(state === 'gap' ? 'not mapped' : state);
      return s;
    }),
  );
}
