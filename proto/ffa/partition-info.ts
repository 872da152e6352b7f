// Partition-info descriptors: 8 bytes for v1.0 callers, 24 bytes for v1.1/v1.2 callers
// (in RX after FFA_PARTITION_INFO_GET), and the 3-register form of FFA_PARTITION_INFO_GET_REGS.

import type { EndpointId } from './endpoints.js';
import { type Uuid, UUID_NIL, uuidFromPair, uuidToPair } from './uuid.js';
import { type FfaVersion, FFA_VERSION_1_0 } from './version.js';

export interface PartitionInfo {
  id: EndpointId;
  execContexts: number;
  properties: number;
  /** Nil when not reported (v1.0, or a specific UUID was asked). */
  uuid: Uuid;
}

export const PARTITION_INFO_SIZE_V1_0 = 8;
export const PARTITION_INFO_SIZE_V1_1 = 24;

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
    });
  }
  return out;
}

// FFA_PARTITION_INFO_GET_REGS: x2 packing and three registers per v1.2 descriptor.
export const PARTITION_INFO_REGS_PER_DESC = 3;
export const PARTITION_INFO_REGS_MAX_PER_CALL = 5; // x3..x17

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

export function partitionInfoFromRegs(a: bigint, lo: bigint, hi: bigint): PartitionInfo {
  return {
    id: Number(a & 0xffffn),
    execContexts: Number((a >> 16n) & 0xffffn),
    properties: Number((a >> 32n) & 0xffffffffn),
    uuid: uuidFromPair(lo, hi),
  };
}
