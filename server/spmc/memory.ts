// Emulated physical memory: a sparse page store shared by all endpoints, per-endpoint access tables
// kept as address ranges (so a 1 GiB range costs what a 4 KiB one does), and the allocator that
// hands each endpoint its RAM window. Addresses are identity-mapped (IPA == PA), as Hafnium does.

import { FFA_PAGE_SIZE } from '../../proto/ffa/index.js';

const PAGE = BigInt(FFA_PAGE_SIZE);
const PAGE_SHIFT = 12n;

export const pageAligned = (a: bigint): boolean => (a & (PAGE - 1n)) === 0n;

/** Pages are allocated on first write; unwritten memory reads as zero. */
export class PhysicalMemory {
  private readonly pages = new Map<number, Uint8Array>();
  /** Told of every write and zeroing, by range (whoever keeps a copy of guest memory: see session/coherence.ts). */
  readonly watchers = new Set<(address: bigint, length: bigint) => void>();

  /** The page frame numbers in [base, limit) that hold bytes (the rest read as zero). */
  heldIn(base: bigint, limit: bigint): number[] {
    const first = Number(base >> PAGE_SHIFT);
    const last = Number((limit - 1n) >> PAGE_SHIFT);
    if (limit <= base) return [];
    if (last - first + 1 <= this.pages.size) {
      const out: number[] = [];
      for (let pfn = first; pfn <= last; pfn++) if (this.pages.has(pfn)) out.push(pfn);
      return out;
    }
    return [...this.pages.keys()].filter((pfn) => pfn >= first && pfn <= last).sort((a, b) => a - b);
  }

  get allocatedPages(): number {
    return this.pages.size;
  }

  /** Bytes the store holds (whole pages). */
  get storedBytes(): bigint {
    return BigInt(this.pages.size) * PAGE;
  }

  /** Pages a write of `data` at `address` would add to the store (zeros need none). */
  newPagesFor(address: bigint, data: Uint8Array): number {
    let n = 0;
    this.forEachChunk(address, data.length, (pfn, _off, pos, len) => {
      if (!this.pages.has(pfn) && !data.subarray(pos, pos + len).every((b) => b === 0)) n++;
    });
    return n;
  }

  read(address: bigint, length: number): Uint8Array {
    const out = new Uint8Array(length);
    this.forEachChunk(address, length, (pfn, off, pos, n) => {
      const page = this.pages.get(pfn);
      if (page) out.set(page.subarray(off, off + n), pos);
    });
    return out;
  }

  write(address: bigint, data: Uint8Array): void {
    this.forEachChunk(address, data.length, (pfn, off, pos, n) => {
      let page = this.pages.get(pfn);
      if (!page) {
        if (data.subarray(pos, pos + n).every((b) => b === 0)) return; // zeros need no page
        page = new Uint8Array(FFA_PAGE_SIZE);
        this.pages.set(pfn, page);
      }
      page.set(data.subarray(pos, pos + n), off);
    });
    for (const w of this.watchers) w(address, BigInt(data.length));
  }

  /** Zero a range; whole pages are dropped rather than written. */
  zero(address: bigint, length: bigint): void {
    for (const w of this.watchers) w(address, length);
    const first = Number(address >> PAGE_SHIFT);
    const last = Number((address + length - 1n) >> PAGE_SHIFT);
    const startOff = Number(address & (PAGE - 1n));
    const endOff = Number((address + length - 1n) & (PAGE - 1n));
    const clear = (pfn: number) => {
      const page = this.pages.get(pfn);
      if (!page) return;
      const from = pfn === first ? startOff : 0;
      const to = pfn === last ? endOff + 1 : FFA_PAGE_SIZE;
      if (from === 0 && to === FFA_PAGE_SIZE) this.pages.delete(pfn);
      else page.fill(0, from, to);
    };
    // Walk whichever is smaller: the range's pages or the allocated ones.
    if (last - first + 1 <= this.pages.size) {
      for (let pfn = first; pfn <= last; pfn++) clear(pfn);
    } else {
      for (const pfn of [...this.pages.keys()]) if (pfn >= first && pfn <= last) clear(pfn);
    }
  }

  private forEachChunk(address: bigint, length: number, fn: (pfn: number, off: number, pos: number, n: number) => void): void {
    let pfn = Number(address >> PAGE_SHIFT);
    let off = Number(address & (PAGE - 1n));
    for (let pos = 0; pos < length;) {
      const n = Math.min(FFA_PAGE_SIZE - off, length - pos);
      fn(pfn, off, pos, n);
      pos += n;
      pfn++;
      off = 0;
    }
  }
}

/** What an endpoint may do with a range of its address space, and why. */
export type AccessState =
  /** RAM the endpoint owns and uses alone. */
  | 'owned'
  /** RAM it owns and has shared: still its own, but not exclusively (cannot be sent again). */
  | 'shared'
  /** Memory another endpoint shared or lent to it. */
  | 'borrowed'
  /** Its TX buffer: still RW for it, but out of its exclusive use (cannot be shared or lent). */
  | 'mailbox-tx'
  /** Its RX buffer: read-only for it; the partition manager writes it. */
  | 'mailbox-rx';

export type Permission = 'rw' | 'ro';

/**
 * What memory is, beside who may read or write it: Hafnium's mode bits MM_MODE_X, MM_MODE_D and
 * MM_MODE_NS. They travel with the memory through transactions and decide what may be sent how.
 */
export const MEMORY_ATTRS = {
  EXECUTE: 1 << 0,
  DEVICE: 1 << 1,
  NON_SECURE: 1 << 2,
} as const;

export interface AccessRange {
  base: bigint;
  /** Exclusive end. */
  limit: bigint;
  state: AccessState;
  perm: Permission;
  /** MEMORY_ATTRS bits. */
  attrs: number;
}

const sameMode = (x: AccessRange, y: AccessRange) => x.state === y.state && x.perm === y.perm && x.attrs === y.attrs;

/** Non-overlapping ranges sorted by base; gaps are memory the endpoint may not touch. */
export class AccessTable {
  private ranges: AccessRange[] = [];

  list(): readonly AccessRange[] {
    return this.ranges;
  }

  /** The ranges that cover [base, limit), clipped to it, or undefined if any byte is not covered. */
  covering(base: bigint, limit: bigint): AccessRange[] | undefined {
    const out: AccessRange[] = [];
    let at = base;
    for (let i = this.firstEndingAfter(base); i < this.ranges.length && at < limit; i++) {
      const r = this.ranges[i]!;
      if (r.base > at) return undefined;
      if (r.limit <= at) continue;
      out.push({ ...r, base: at, limit: r.limit < limit ? r.limit : limit });
      at = r.limit;
    }
    return at >= limit ? out : undefined;
  }

  /** True when every byte of [base, limit) is covered with at least `need`, and in one of `states`. */
  allows(base: bigint, limit: bigint, need: Permission, states?: readonly AccessState[]): boolean {
    const parts = this.covering(base, limit);
    if (!parts) return false;
    return parts.every((p) => (need === 'ro' || p.perm === 'rw') && (!states || states.includes(p.state)));
  }

  /** True when any byte of [base, limit) is covered. */
  touches(base: bigint, limit: bigint): boolean {
    const i = this.firstEndingAfter(base);
    return i < this.ranges.length && this.ranges[i]!.base < limit;
  }

  /**
   * The one state, permission and attributes every byte of [base, limit) has (Hafnium's
   * vm_mem_get_mode), or undefined when a byte is not covered or the range is not uniform.
   */
  modeOf(base: bigint, limit: bigint): AccessRange | undefined {
    if (limit <= base) return undefined;
    const parts = this.covering(base, limit);
    if (!parts || !parts.every((p) => sameMode(p, parts[0]!))) return undefined;
    return { ...parts[0]!, base, limit };
  }

  /**
   * Give [base, limit) the state and permission, replacing whatever covered it. Without `attrs`
   * the memory keeps what it is (a mailbox mapped or unmapped is still the same memory).
   */
  assign(base: bigint, limit: bigint, state: AccessState, perm: Permission, attrs?: number): void {
    if (attrs === undefined) {
      const kinds = this.attrsOf(base, limit);
      if (kinds.length > 1) {
        this.update(kinds.map((k) => ({ base: k.base, limit: k.limit, to: { state, perm, attrs: k.attrs } })));
        return;
      }
      attrs = kinds[0]?.attrs ?? 0;
    }
    const at = this.removeAt(base, limit);
    this.ranges.splice(at, 0, { base, limit, state, perm, attrs });
    // Merge with the neighbours only: the rest of the table is untouched.
    const same = (x: AccessRange | undefined, y: AccessRange | undefined) => !!x && !!y && x.limit === y.base && sameMode(x, y);
    let i = at;
    if (same(this.ranges[i - 1], this.ranges[i])) {
      this.ranges[i - 1] = { ...this.ranges[i - 1]!, limit: this.ranges[i]!.limit };
      this.ranges.splice(i, 1);
      i--;
    }
    if (same(this.ranges[i], this.ranges[i + 1])) {
      this.ranges[i] = { ...this.ranges[i]!, limit: this.ranges[i + 1]!.limit };
      this.ranges.splice(i + 1, 1);
    }
  }

  /**
   * Many changes in one pass (a transaction's constituents): each span gets `to`, or becomes
   * inaccessible without it (attributes 0 unless given). Spans must not overlap. Costs O(table + changes), not their product.
   */
  update(changes: readonly { base: bigint; limit: bigint; to?: { state: AccessState; perm: Permission; attrs?: number } }[]): void {
    const cs = [...changes].sort((a, b) => (a.base < b.base ? -1 : a.base > b.base ? 1 : 0));
    const kept: AccessRange[] = [];
    let j = 0;
    for (const r of this.ranges) {
      while (j < cs.length && cs[j]!.limit <= r.base) j++;
      let start = r.base;
      for (let k = j; k < cs.length && cs[k]!.base < r.limit; k++) {
        if (cs[k]!.base > start) kept.push({ ...r, base: start, limit: cs[k]!.base });
        if (cs[k]!.limit > start) start = cs[k]!.limit;
      }
      if (start < r.limit) kept.push({ ...r, base: start });
    }
    const added = cs.filter((c) => c.to).map((c) => ({ base: c.base, limit: c.limit, ...c.to!, attrs: c.to!.attrs ?? 0 }));
    const all: AccessRange[] = [];
    for (let a = 0, b = 0; a < kept.length || b < added.length;) {
      all.push(b >= added.length || (a < kept.length && kept[a]!.base < added[b]!.base) ? kept[a++]! : added[b++]!);
    }
    const out: AccessRange[] = [];
    for (const r of all) {
      const prev = out[out.length - 1];
      if (prev && prev.limit === r.base && sameMode(prev, r)) prev.limit = r.limit;
      else out.push({ ...r });
    }
    this.ranges = out;
  }

  /** [base, limit) cut where its attributes change; a gap counts as attributes 0. */
  private attrsOf(base: bigint, limit: bigint): { base: bigint; limit: bigint; attrs: number }[] {
    const out: { base: bigint; limit: bigint; attrs: number }[] = [];
    const add = (b: bigint, l: bigint, attrs: number) => {
      const prev = out[out.length - 1];
      if (prev && prev.attrs === attrs && prev.limit === b) prev.limit = l;
      else out.push({ base: b, limit: l, attrs });
    };
    let at = base;
    for (let i = this.firstEndingAfter(base); i < this.ranges.length && at < limit; i++) {
      const r = this.ranges[i]!;
      if (r.base >= limit) break;
      if (r.base > at) add(at, r.base, 0);
      const end = r.limit < limit ? r.limit : limit;
      add(r.base > at ? r.base : at, end, r.attrs);
      at = end;
    }
    if (at < limit) add(at, limit, 0);
    return out;
  }

  /** Make [base, limit) inaccessible. */
  remove(base: bigint, limit: bigint): void {
    this.removeAt(base, limit);
  }

  /** Cut [base, limit) out; returns the index where a range starting at `base` would go. */
  private removeAt(base: bigint, limit: bigint): number {
    let i = this.firstEndingAfter(base);
    const replaced: AccessRange[] = [];
    let j = i;
    for (; j < this.ranges.length && this.ranges[j]!.base < limit; j++) {
      const r = this.ranges[j]!;
      if (r.base < base) replaced.push({ ...r, limit: base });
      if (r.limit > limit) replaced.push({ ...r, base: limit });
    }
    this.ranges.splice(i, j - i, ...replaced);
    // Insert after a left-over piece that starts before `base`.
    if (replaced.length > 0 && replaced[0]!.base < base) i++;
    return i;
  }

  /** Index of the first range whose end lies after `a`. */
  private firstEndingAfter(a: bigint): number {
    let lo = 0;
    let hi = this.ranges.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.ranges[mid]!.limit <= a) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

export interface Window {
  base: bigint;
  size: bigint;
}

/** First-fit allocator of RAM windows in the emulated physical address space. */
export class WindowAllocator {
  private readonly windows: Window[] = [];

  constructor(
    private readonly start: bigint,
    private readonly end: bigint,
    private readonly align: bigint,
  ) {}

  allocate(size: bigint): Window | undefined {
    let at = this.start;
    for (const w of this.windows) {
      if (w.base + w.size <= at) continue; // a reserved window below `start`
      if (at + size <= w.base) break;
      at = roundUp(w.base + w.size, this.align);
    }
    if (at + size > this.end) return undefined;
    return this.add({ base: at, size });
  }

  /** Take [base, base + size) wherever it is (a declared region), or undefined if it overlaps a window. */
  reserve(base: bigint, size: bigint): Window | undefined {
    if (this.windows.some((w) => base < w.base + w.size && w.base < base + size)) return undefined;
    return this.add({ base, size });
  }

  private add(win: Window): Window {
    this.windows.push(win);
    this.windows.sort((a, b) => (a.base < b.base ? -1 : a.base > b.base ? 1 : 0));
    return win;
  }

  free(win: Window): void {
    const i = this.windows.findIndex((w) => w.base === win.base);
    if (i >= 0) this.windows.splice(i, 1);
  }
}

export const roundUp = (v: bigint, a: bigint): bigint => ((v + a - 1n) / a) * a;
