// AttachRequest.regions as the model's region declarations (the wire form of a VM's memory and
// device regions; the manifest gives partitions theirs).

import type { MemoryRegion__Output } from './gen/remote_spmc/v1/MemoryRegion.js';
import { type MemoryRegionDecl, REGION_ATTR } from './ffa/index.js';
import { u64FromWire } from './wire.js';

export function regionsFromWire(regions: readonly MemoryRegion__Output[] | undefined): MemoryRegionDecl[] {
  return (regions ?? []).map((r) => ({
    base: u64FromWire(r.base),
    relative: r.relative,
    pages: r.pages,
    device: r.device,
    attributes: REGION_ATTR.READ | (r.read_only ? 0 : REGION_ATTR.WRITE) | (r.executable ? REGION_ATTR.EXECUTE : 0),
    ...(r.description ? { description: r.description } : {}),
  }));
}
