// Partition-info descriptors: 8 bytes for v1.0 callers, 24 bytes for v1.1/v1.2 callers, 48 bytes in
// the v1.3 layout (in RX after FFA_PARTITION_INFO_GET), and the register form of
// FFA_PARTITION_INFO_GET_REGS (3 registers per 24-byte descriptor, 6 per 48-byte one).

import type { EndpointId } from './endpoints.js';
import { type Uuid, UUID_NIL, uuidFromPair, uuidToPair } from './uuid.js';
import { type FfaVersion, FFA_VERSION_1_0 } from './version.js';

export interface PartitionInfo {
  id: EndpointId;
  execContexts: number;
  properties: number;
  /** Nil when not reported (v1.0, or a specific UUID was asked). */
  uuid: Uuid;
  /** v1.3 layout only: the partition's FF-A version (0 when not told). */
  ffaVersion?: FfaVersion;
}

export const PARTITION_INFO_SIZE_V1_0 = 8;
export const PARTITION_INFO_SIZE_V1_1 = 24;
/** v1.3: protocol UUID at 8, image UUID at 24, the partition's FF-A version at 40, 4 reserved bytes. */
export const PARTITION_INFO_SIZE_V1_3 = 48;
const FFA_VERSION_OFFSET = 40;

/** PARTITION_INFO_GET w5 flag: return the count only. */
export const PARTITION_INFO_FLAG_COUNT_ONLY = 0x1;

export function partitionInfoSize(version: FfaVersion): number {
  return version <= FFA_VERSION_1_0 ? PARTITION_INFO_SIZE_V1_0 : PARTITION_INFO_SIZE_V1_1;
}

export function encodePartitionInfo(entries: readonly PartitionInfo[], descSize: number): Uint8Array {
  const out = new Uint8Array(entries.length * descSize);
  const dv = new DataView(out.buffer);
  entries.forEach((e, i) => {
    const o = i * descSize;
    dv.setUint16(o, e.id, true);
    dv.setUint16(o + 2, e.execContexts, true);
    dv.setUint32(o + 4, e.properties >>> 0, true);
    if (descSize >= PARTITION_INFO_SIZE_V1_1) out.set(e.uuid, o + 8);
    // The image UUID stays Nil: a partition here has protocol UUIDs only.
    if (descSize >= PARTITION_INFO_SIZE_V1_3) dv.setUint32(o + FFA_VERSION_OFFSET, (e.ffaVersion ?? 0) >>> 0, true);
  });
  return out;
}

/** Reads `count` descriptors of `descSize` bytes (the size the SPMC reported is the stride). */
export function decodePartitionInfo(buf: Uint8Array, count: number, descSize: number): PartitionInfo[] {
  if (descSize < PARTITION_INFO_SIZE_V1_0) throw new RangeError(`descriptor size ${descSize} is below 8`);
  if (count * descSize > buf.length) throw new RangeError(`${count} descriptors of ${descSize} bytes overrun ${buf.length}`);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const out: PartitionInfo[] = [];
  for (let i = 0; i < count; i++) {
    const o = i * descSize;
    out.push({
      id: dv.getUint16(o, true),
      execContexts: dv.getUint16(o + 2, true),
      properties: dv.getUint32(o + 4, true),
      uuid: descSize >= PARTITION_INFO_SIZE_V1_1 ? buf.slice(o + 8, o + 24) : UUID_NIL,
      ...(descSize >= PARTITION_INFO_SIZE_V1_3 ? { ffaVersion: dv.getUint32(o + FFA_VERSION_OFFSET, true) } : {}),
    });
  }
  return out;
}

// FFA_PARTITION_INFO_GET_REGS: x2 packing and three registers per v1.2 descriptor.
export const PARTITION_INFO_REGS_PER_DESC = 3;
export const PARTITION_INFO_REGS_MAX_PER_CALL = 5; // x3..x17
/** Registers x3..x17 that carry descriptors. */
export const PARTITION_INFO_REGS_PAYLOAD = 15;

/** How many descriptors of `descSize` bytes one FFA_PARTITION_INFO_GET_REGS answer carries (5 of 24 bytes, 2 of 48). */
export const partitionInfoRegsPerCall = (descSize: number): number => Math.floor(PARTITION_INFO_REGS_PAYLOAD / (descSize / 8));

export interface PartitionInfoRegsHeader {
  lastIndex: number;
  currentIndex: number;
  tag: number;
  descSize: number;
}

export function packPartitionInfoRegsHeader(h: PartitionInfoRegsHeader): bigint {
  return BigInt(h.lastIndex & 0xffff) | (BigInt(h.currentIndex & 0xffff) << 16n) | (BigInt(h.tag & 0xffff) << 32n) | (BigInt(h.descSize & 0xffff) << 48n);
}

export function unpackPartitionInfoRegsHeader(x2: bigint): PartitionInfoRegsHeader {
  return {
    lastIndex: Number(x2 & 0xffffn),
    currentIndex: Number((x2 >> 16n) & 0xffffn),
    tag: Number((x2 >> 32n) & 0xffffn),
    descSize: Number((x2 >> 48n) & 0xffffn),
  };
}

export function partitionInfoToRegs(e: PartitionInfo): [bigint, bigint, bigint] {
  const a = BigInt(e.id & 0xffff) | (BigInt(e.execContexts & 0xffff) << 16n) | (BigInt(e.properties >>> 0) << 32n);
  const [lo, hi] = uuidToPair(e.uuid);
  return [a, lo, hi];
}

/** The registers of one descriptor of `descSize` bytes: the 24-byte three, then (v1.3) the Nil image UUID and the version. */
export function partitionInfoToRegsSized(e: PartitionInfo, descSize: number): bigint[] {
  const regs: bigint[] = partitionInfoToRegs(e);
  if (descSize >= PARTITION_INFO_SIZE_V1_3) regs.push(0n, 0n, BigInt((e.ffaVersion ?? 0) >>> 0));
  return regs;
}

export function partitionInfoFromRegs(a: bigint, lo: bigint, hi: bigint): PartitionInfo {
  return {
    id: Number(a & 0xffffn),
    execContexts: Number((a >> 16n) & 0xffffn),
    properties: Number((a >> 32n) & 0xffffffffn),
    uuid: uuidFromPair(lo, hi),
  };
}
