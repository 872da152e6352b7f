// Coherent guest memory for native clients: a client that keeps a copy of its endpoint's guest
// memory (mapped at the guest addresses) sends the pages it wrote with each call, and each answer
// tells it what changed in its view since the last one: the ranges it may touch (when they
// changed) and the bytes of readable pages that changed or became readable. Nothing changed: an
// empty update, so a call stays one message each way.

import { FFA_PAGE_SIZE } from '../../proto/ffa/index.js';
import type { AccessRange } from '../spmc/memory.js';
import type { Spmc } from '../spmc/spmc.js';
import type { Session, SessionCore } from './core.js';

const PAGE = BigInt(FFA_PAGE_SIZE);
/** Past this many separate changed ranges, one range covering them all (pages outside the view are filtered anyway). */
const MAX_CHANGED = 1024;

export interface CoherencePage {
  address: bigint;
  data: Uint8Array;
}

export interface CoherenceRange {
  base: bigint;
  limit: bigint;
  writable: boolean;
}

export interface CoherenceUpdate {
  sequence: bigint;
  mapChanged: boolean;
  map: CoherenceRange[];
  pages: CoherencePage[];
}

interface Span {
  base: bigint;
  limit: bigint;
}

/** What an endpoint may touch, as the client maps it: ranges merged where the writability is the same. */
export function viewOf(ranges: readonly AccessRange[]): CoherenceRange[] {
  const out: CoherenceRange[] = [];
  for (const r of ranges) {
    const writable = r.perm === 'rw';
    const prev = out[out.length - 1];
    if (prev && prev.limit === r.base && prev.writable === writable) prev.limit = r.limit;
    else out.push({ base: r.base, limit: r.limit, writable });
  }
  return out;
}

const sameView = (a: readonly CoherenceRange[], b: readonly CoherenceRange[]) =>
  a.length === b.length && a.every((r, i) => r.base === b[i]!.base && r.limit === b[i]!.limit && r.writable === b[i]!.writable);

/** [base, limit) minus every span of `minus` (both sorted or not). */
function subtract(spans: readonly Span[], minus: readonly Span[]): Span[] {
  let out = spans.map((s) => ({ ...s }));
  for (const m of minus) {
    const next: Span[] = [];
    for (const s of out) {
      if (m.limit <= s.base || s.limit <= m.base) next.push(s);
      else {
        if (s.base < m.base) next.push({ base: s.base, limit: m.base });
        if (m.limit < s.limit) next.push({ base: m.limit, limit: s.limit });
      }
    }
    out = next;
  }
  return out;
}

/** One session's coherence state: what changed since its last update, and the view its client holds. */
export class Coherence {
  private changed: Span[] = [];
  private held: CoherenceRange[] = [];
  private sequence = 0n;
  private readonly watcher = (address: bigint, length: bigint) => this.note(address, address + length);

  constructor(
    private readonly spmc: Spmc,
    private readonly endpointId: number,
  ) {
    spmc.state.memory.watchers.add(this.watcher);
  }

  /** Stop watching (the session is released). */
  close(): void {
    this.spmc.state.memory.watchers.delete(this.watcher);
  }

  private note(base: bigint, limit: bigint): void {
    if (limit <= base) return;
    const last = this.changed[this.changed.length - 1];
    if (last && base <= last.limit && limit >= last.base) {
      if (base < last.base) last.base = base;
      if (limit > last.limit) last.limit = limit;
      return;
    }
    this.changed.push({ base, limit });
    if (this.changed.length > MAX_CHANGED) {
      const lo = this.changed.reduce((m, s) => (s.base < m ? s.base : m), base);
      const hi = this.changed.reduce((m, s) => (s.limit > m ? s.limit : m), limit);
      this.changed = [{ base: lo, limit: hi }];
    }
  }

  /**
   * The client's own writes have reached guest memory: its copy has those bytes already, so they
   * are not sent back (what others wrote elsewhere in those pages still is).
   */
  written(spans: readonly Span[]): void {
    this.changed = subtract(this.changed, spans);
  }

  /** What changed in the endpoint's view since the last update; afterwards the client holds the current view. */
  update(): CoherenceUpdate {
    const ep = this.spmc.endpoint(this.endpointId);
    const view = ep ? viewOf(ep.access.list()) : [];
    const mapChanged = !sameView(view, this.held);
    const pfns = new Set<number>();
    const addPages = (base: bigint, limit: bigint) => {
      for (let p = base / PAGE; p * PAGE < limit; p++) pfns.add(Number(p));
    };
    for (const c of this.changed) {
      for (const r of view) {
        const base = c.base > r.base ? c.base : r.base;
        const limit = c.limit < r.limit ? c.limit : r.limit;
        if (base < limit) addPages(base, limit);
      }
    }
    const memory = this.spmc.state.memory;
    // Newly readable: the client zeroes it; the pages holding bytes travel.
    if (mapChanged) for (const s of subtract(view, this.held)) for (const pfn of memory.heldIn(s.base, s.limit)) pfns.add(pfn);
    this.changed = [];
    if (mapChanged) this.held = view;
    if (!mapChanged && pfns.size === 0) return { sequence: this.sequence, mapChanged: false, map: [], pages: [] };
    this.sequence++;
    const pages = [...pfns]
      .sort((a, b) => a - b)
      .map((pfn) => {
        const address = BigInt(pfn) * PAGE;
        return { address, data: memory.read(address, FFA_PAGE_SIZE) };
      });
    return { sequence: this.sequence, mapChanged, map: mapChanged ? view : [], pages };
  }
}

/** An update with nothing in it (nothing to send). */
export const isEmptyUpdate = (u: CoherenceUpdate): boolean => !u.mapChanged && u.pages.length === 0;

/**
 * A coherent call's way in: the session keeps coherence from now on, and the pages its client
 * wrote are written first, with WriteMemory's checks (a fault refuses the call before it is made).
 */
export function acceptDirty(core: SessionCore, s: Session, dirty: readonly CoherencePage[]): Coherence {
  s.coherence ??= new Coherence(core.spmc, s.endpointId);
  for (const p of dirty) core.writeMemory(s, p.address, p.data);
  if (dirty.length > 0) s.coherence.written(dirty.map((p) => ({ base: p.address, limit: p.address + BigInt(p.data.length) })));
  return s.coherence;
}
