// Declared memory and device regions (Hafnium's manifest memory-regions and device-regions, and a
// VM's at attach): checked as Hafnium's manifest parser checks them, placed in the emulated physical
// address space, and mapped into the endpoint's access table with what the memory is, so that
// memory sharing can refuse what Hafnium refuses (read-only memory sent with write access, device
// memory in a normal-memory transaction).

import { DEVICE_REGION_ACCESS, FFA_PAGE_SIZE, hex, MEMORY_REGION_ACCESS, type MemoryRegionDecl, REGION_ATTR } from '../../proto/ffa/index.js';
import type { Endpoint } from './endpoint.js';
import { MEMORY_ATTRS, pageAligned, type Window } from './memory.js';
import type { SpmcState } from './state.js';

const PAGE = BigInt(FFA_PAGE_SIZE);
/** The emulated physical address space ends here (48-bit PAs). */
const ADDRESS_SPACE_END = 1n << 48n;
/** At most this many regions per endpoint (Hafnium: PARTITION_MAX_MEMORY_REGIONS). */
export const MAX_REGIONS = 64;

export type RegionProblem = { problem: string };

const RWX = REGION_ATTR.READ | REGION_ATTR.WRITE | REGION_ATTR.EXECUTE;
const label = (r: MemoryRegionDecl, i: number) => `${r.device ? 'device' : 'memory'} region ${i}${r.description ? ` (${r.description})` : ''}`;

/** Hafnium's manifest checks on one region (parse_ffa_region_attributes, parse_page_count): the problem, if any. */
export function regionProblem(r: MemoryRegionDecl): string | undefined {
  if (!Number.isInteger(r.pages) || r.pages < 1) return `pages-count ${r.pages} must be at least 1`;
  if (r.base < 0n || !pageAligned(r.base)) return `base ${hex(r.base)} is not 4 KiB aligned`;
  const access = r.attributes & RWX;
  const allowed: readonly number[] = r.device ? DEVICE_REGION_ACCESS : MEMORY_REGION_ACCESS;
  if (!allowed.includes(access)) {
    return `attributes ${hex(r.attributes)} must be ${r.device ? 'read or read-write (never executable)' : 'read, read-write, read-execute or read-write-execute'}`;
  }
  if ((r.attributes & ~(RWX | REGION_ATTR.NON_SECURE)) !== 0) return `attributes ${hex(r.attributes)} set unknown bits`;
  return undefined;
}

/** Every region's problem, named by its place in the list. */
export function checkRegions(regions: readonly MemoryRegionDecl[]): RegionProblem | undefined {
  if (regions.length > MAX_REGIONS) return { problem: `at most ${MAX_REGIONS} regions, got ${regions.length}` };
  for (const [i, r] of regions.entries()) {
    const problem = regionProblem(r);
    if (problem) return { problem: `${label(r, i)}: ${problem}` };
  }
  return undefined;
}

const sizeOf = (r: MemoryRegionDecl) => BigInt(r.pages) * PAGE;

/** Check the regions, and reserve the absolute ones (before the RAM window is placed, so it avoids them). */
export function reserveAbsolute(state: SpmcState, regions: readonly MemoryRegionDecl[]): Window[] | RegionProblem {
  const bad = checkRegions(regions);
  if (bad) return bad;
  const taken: Window[] = [];
  for (const [i, r] of regions.entries()) {
    if (r.relative) continue;
    const win = reserve(state, r, r.base, i);
    if ('problem' in win) {
      for (const w of taken) state.windows.free(w);
      return win;
    }
    taken.push(win);
  }
  return taken;
}

function reserve(state: SpmcState, r: MemoryRegionDecl, base: bigint, i: number): Window | RegionProblem {
  const size = sizeOf(r);
  if (base + size > ADDRESS_SPACE_END) return { problem: `${label(r, i)}: ${hex(base)}+${hex(size)} is beyond the 48-bit address space` };
  return state.windows.reserve(base, size) ?? { problem: `${label(r, i)}: ${hex(base)}+${hex(size)} overlaps memory already given to an endpoint or region` };
}

/**
 * Map the endpoint's RAM and regions with what the memory is: all a VM's memory is non-secure;
 * RAM is executable normal memory. A relative region lies in the RAM window (and re-attributes
 * those pages: a read-only part of RAM) or wholly outside it (then it is reserved here). Returns
 * every window reserved for the endpoint's regions, `absolute` included; on a problem, frees them.
 */
export function mapRegions(state: SpmcState, ep: Endpoint, regions: readonly MemoryRegionDecl[], absolute: Window[]): Window[] | RegionProblem {
  const ns = ep.kind === 'vm' ? MEMORY_ATTRS.NON_SECURE : 0;
  const taken = [...absolute];
  const ramEnd = ep.ram.base + ep.ram.size;
  const placed: { base: bigint; limit: bigint; r: MemoryRegionDecl; i: number }[] = [];
  for (const [i, r] of regions.entries()) {
    const base = r.relative ? ep.ram.base + r.base : r.base;
    const limit = base + sizeOf(r);
    const inRam = base >= ep.ram.base && limit <= ramEnd;
    const clash = placed.find((p) => base < p.limit && p.base < limit);
    let problem: string | undefined;
    if (clash) problem = `${label(r, i)} overlaps ${label(clash.r, clash.i)}`;
    else if (r.relative && !inRam && base < ramEnd && limit > ep.ram.base)
      problem = `${label(r, i)}: ${hex(base)}..${hex(limit)} straddles the RAM window ${hex(ep.ram.base)}..${hex(ramEnd)}`;
    else if (r.relative && !inRam) {
      const win = reserve(state, r, base, i);
      if ('problem' in win) problem = win.problem;
      else taken.push(win);
    }
    if (problem) {
      for (const w of taken) state.windows.free(w);
      return { problem };
    }
    placed.push({ base, limit, r, i });
  }
  ep.access.assign(ep.ram.base, ramEnd, 'owned', 'rw', MEMORY_ATTRS.EXECUTE | ns);
  for (const { base, limit, r } of placed) {
    const attrs =
      (r.attributes & REGION_ATTR.EXECUTE ? MEMORY_ATTRS.EXECUTE : 0) |
      (r.device ? MEMORY_ATTRS.DEVICE : 0) |
      (ns || r.attributes & REGION_ATTR.NON_SECURE ? MEMORY_ATTRS.NON_SECURE : 0);
    ep.access.assign(base, limit, 'owned', r.attributes & REGION_ATTR.WRITE ? 'rw' : 'ro', attrs);
  }
  return taken;
}
