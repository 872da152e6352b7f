// Memory and device regions an endpoint declares: a partition's manifest `memory-regions` and
// `device-regions` (FF-A v1.2 partition manifest, Tables 5.2 and 5.3), and a VM's at attach. The
// attribute bits are those of Hafnium's manifests (MANIFEST_REGION_ATTR_*).

/** Region attributes: read, write, execute, and non-secure (the manifest's security attribute). */
export const REGION_ATTR = {
  READ: 1 << 0,
  WRITE: 1 << 1,
  EXECUTE: 1 << 2,
  NON_SECURE: 1 << 3,
} as const;

/** Access a memory region may declare (Hafnium: R, RW, RX or RWX). */
export const MEMORY_REGION_ACCESS = [
  REGION_ATTR.READ,
  REGION_ATTR.READ | REGION_ATTR.WRITE,
  REGION_ATTR.READ | REGION_ATTR.EXECUTE,
  REGION_ATTR.READ | REGION_ATTR.WRITE | REGION_ATTR.EXECUTE,
] as const;

/** Access a device region may declare (Hafnium: R or RW, never executable). */
export const DEVICE_REGION_ACCESS = [REGION_ATTR.READ, REGION_ATTR.READ | REGION_ATTR.WRITE] as const;

export interface MemoryRegionDecl {
  /** Physical address (IPA == PA), or with `relative` an offset from the endpoint's RAM base. */
  base: bigint;
  relative: boolean;
  /** 4 KiB pages, at least 1. */
  pages: number;
  /** Device (MMIO) memory rather than normal memory. */
  device: boolean;
  /** REGION_ATTR bits. */
  attributes: number;
  description?: string;
}
