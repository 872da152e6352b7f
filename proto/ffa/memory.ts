// Memory transaction descriptors (DONATE/LEND/SHARE, RETRIEVE_REQ/RESP, RELINQUISH): the v1.0
// layout (32-byte header) and the v1.1+ one (48-byte header; 16-byte EMADs in v1.1, 32 in v1.2).
// Decoding reads fields without judging them: the SPMC checks them in the reference's order. A
// descriptor too short for what it claims throws DescriptorTooShort, whose message says which part
// did not fit; tryDecode turns that into the sentence a refusal carries.

import type { EndpointId } from './endpoints.js';
import { type FfaVersion, FFA_VERSION_1_0, FFA_VERSION_1_2 } from './version.js';

export const MEM_HEADER_SIZE_V1_0 = 32;
export const MEM_HEADER_SIZE_V1_1 = 48;
export const EMAD_SIZE_V1_0 = 16;
export const EMAD_SIZE_V1_2 = 32;
export const COMPOSITE_HEADER_SIZE = 16;
export const CONSTITUENT_SIZE = 16;
export const RELINQUISH_HEADER_SIZE = 16;

/** Transaction flags (offset 4). */
export const MEM_FLAGS = {
  CLEAR: 1 << 0,
  TIME_SLICE: 1 << 1,
  /** Retrieve: zero after relinquish. */
  CLEAR_RELINQUISH: 1 << 2,
  TYPE_SHIFT: 3,
  TYPE_MASK: 0x3 << 3,
  HINT_MASK: 0xf << 5,
  HINT_VALID: 1 << 9,
  /** v1.2 retrieve: the retriever lists only itself. */
  BYPASS_MULTI_BORROWER: 1 << 10,
} as const;

export type MemTransactionType = 'share' | 'lend' | 'donate';
/** Flags bits [4:3] of a retrieve request or response. */
export const MEM_TRANSACTION_TYPES: Record<MemTransactionType, number> = { share: 1, lend: 2, donate: 3 };

/** Access permissions byte of an EMAD. */
export const MEM_PERM = {
  DATA_MASK: 0x3,
  DATA_NOT_SPECIFIED: 0,
  DATA_RO: 1,
  DATA_RW: 2,
  INSTRUCTION_SHIFT: 2,
  INSTRUCTION_MASK: 0x3 << 2,
  INSTRUCTION_NOT_SPECIFIED: 0,
  INSTRUCTION_NX: 1,
  INSTRUCTION_X: 2,
  /** Bits [7:4]: reserved by the spec; Hafnium's permissions bitfield is 4 bits and never reads them. */
  RESERVED_MASK: 0xf0,
} as const;

/**
 * Memory region attributes: [1:0] shareability, [3:2] cacheability, [5:4] type, [7:6] security
 * (Hafnium's ffa_memory_attributes_t: a 2-bit field whose value 1 is the NS bit 6). Bits [15:8] of
 * the v1.1+ 16-bit field are padding there: Hafnium never reads them (the spec says MBZ).
 */
export const MEM_ATTR = {
  SHAREABILITY_MASK: 0x3,
  INNER_SHAREABLE: 0x3,
  CACHEABILITY_MASK: 0x3 << 2,
  WRITE_BACK: 0x3 << 2,
  /** Device memory's cacheability field value nGnRnE (the only device kind Hafnium maps). */
  DEVICE_NGNRNE: 0,
  TYPE_MASK: 0x3 << 4,
  TYPE_NOT_SPECIFIED: 0,
  TYPE_DEVICE: 0x1 << 4,
  TYPE_NORMAL: 0x2 << 4,
  SECURITY_MASK: 0x3 << 6,
  NS: 1 << 6,
  /** Bits [15:8]: padding in Hafnium's attributes, MBZ in the spec (checked only in strict mode). */
  PADDING_MASK: 0xff00,
} as const;

/** Normal, write-back, inner shareable: what Hafnium wants for a share. */
export const MEM_ATTR_NORMAL_WB_IS = MEM_ATTR.TYPE_NORMAL | MEM_ATTR.WRITE_BACK | MEM_ATTR.INNER_SHAREABLE;
/** Device nGnRnE, inner shareable: the device memory attributes Hafnium accepts. */
export const MEM_ATTR_DEVICE_NGNRNE_IS = MEM_ATTR.TYPE_DEVICE | MEM_ATTR.DEVICE_NGNRNE | MEM_ATTR.INNER_SHAREABLE;

export const RECLAIM_FLAG_CLEAR = 1 << 0;
export const RECLAIM_FLAG_TIME_SLICE = 1 << 1;
export const RELINQUISH_FLAG_CLEAR = 1 << 0;
export const RELINQUISH_FLAG_TIME_SLICE = 1 << 1;
/** EMAD flags bit 0, in retrieve requests and responses: the borrower does not retrieve. */
export const EMAD_FLAG_NON_RETRIEVAL_BORROWER = 1 << 0;
/** Bit 63 of a handle: allocated by the hypervisor (1) or the SPMC (0). */
export const HANDLE_HYPERVISOR_BIT = 1n << 63n;

export interface MemAccess {
  receiver: EndpointId;
  permissions: number;
  flags: number;
  compositeOffset: number;
  /** v1.2 implementation-defined value ([0n, 0n] in a 16-byte EMAD). */
  impdef: [bigint, bigint];
  /** The 8 reserved bytes, kept for the MBZ check. */
  reserved: bigint;
}

export interface Constituent {
  address: bigint;
  pageCount: number;
}

/** What a transaction descriptor's header and access list say (constituents come separately). */
export interface MemTransaction {
  sender: EndpointId;
  attributes: number;
  flags: number;
  handle: bigint;
  tag: bigint;
  /** Bytes per EMAD and where the array starts (fixed for v1.0). */
  emadSize: number;
  receiversOffset: number;
  receivers: MemAccess[];
  /** Non-zero reserved header bytes (v1.0 byte 3 and word 24; v1.1+ bytes 36..47). */
  reservedNonZero: boolean;
}

export const memHeaderSize = (v: FfaVersion): number => (v <= FFA_VERSION_1_0 ? MEM_HEADER_SIZE_V1_0 : MEM_HEADER_SIZE_V1_1);
export const emadSizeFor = (v: FfaVersion): number => (v >= FFA_VERSION_1_2 ? EMAD_SIZE_V1_2 : EMAD_SIZE_V1_0);

export class DescriptorTooShort extends Error {}

/** Run a decoder; a descriptor too short for what it claims becomes `why`, a sentence. */
export function tryDecode<T>(decode: () => T): { ok: true; value: T } | { ok: false; why: string } {
  try {
    return { ok: true, value: decode() };
  } catch (e) {
    if (e instanceof DescriptorTooShort) return { ok: false, why: e.message };
    throw e;
  }
}

const view = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength);

function need(b: Uint8Array, end: number, what: string): void {
  if (end > b.length) throw new DescriptorTooShort(`${what} ends at byte ${end} but the descriptor has ${b.length}`);
}

/** Read the header and EMAD array in the layout of `version`; throws DescriptorTooShort. */
export function decodeMemTransaction(b: Uint8Array, version: FfaVersion): MemTransaction {
  const dv = view(b);
  if (version <= FFA_VERSION_1_0) {
    need(b, MEM_HEADER_SIZE_V1_0, 'the v1.0 transaction header');
    const count = dv.getUint32(28, true);
    const tx: MemTransaction = {
      sender: dv.getUint16(0, true),
      attributes: dv.getUint8(2),
      flags: dv.getUint32(4, true),
      handle: dv.getBigUint64(8, true),
      tag: dv.getBigUint64(16, true),
      emadSize: EMAD_SIZE_V1_0,
      receiversOffset: MEM_HEADER_SIZE_V1_0,
      receivers: [],
      reservedNonZero: dv.getUint8(3) !== 0 || dv.getUint32(24, true) !== 0,
    };
    tx.receivers = readEmads(b, MEM_HEADER_SIZE_V1_0, EMAD_SIZE_V1_0, count);
    return tx;
  }
  need(b, MEM_HEADER_SIZE_V1_1, 'the v1.1 transaction header');
  const emadSize = dv.getUint32(24, true);
  const count = dv.getUint32(28, true);
  const receiversOffset = dv.getUint32(32, true);
  let reserved = false;
  for (let i = 36; i < 48; i++) reserved ||= b[i] !== 0;
  return {
    sender: dv.getUint16(0, true),
    attributes: dv.getUint16(2, true),
    flags: dv.getUint32(4, true),
    handle: dv.getBigUint64(8, true),
    tag: dv.getBigUint64(16, true),
    emadSize,
    receiversOffset,
    receivers: emadSize === EMAD_SIZE_V1_0 || emadSize === EMAD_SIZE_V1_2 ? readEmads(b, receiversOffset, emadSize, count) : [],
    reservedNonZero: reserved,
  };
}

function readEmads(b: Uint8Array, offset: number, size: number, count: number): MemAccess[] {
  // A count the buffer cannot hold is the caller's problem to report; read what is there.
  const n = Math.min(count, Math.max(0, Math.floor((b.length - offset) / size)));
  const dv = view(b);
  const out: MemAccess[] = [];
  for (let i = 0; i < n; i++) {
    const o = offset + i * size;
    out.push({
      receiver: dv.getUint16(o, true),
      permissions: dv.getUint8(o + 2),
      flags: dv.getUint8(o + 3),
      compositeOffset: dv.getUint32(o + 4, true),
      impdef: size === EMAD_SIZE_V1_2 ? [dv.getBigUint64(o + 8, true), dv.getBigUint64(o + 16, true)] : [0n, 0n],
      reserved: dv.getBigUint64(o + (size === EMAD_SIZE_V1_2 ? 24 : 8), true),
    });
  }
  return out;
}

/** The receiver count the header claims (which may exceed what was read). */
export function memReceiverCount(b: Uint8Array): number {
  return b.length >= 32 ? view(b).getUint32(28, true) : 0;
}

export interface CompositeHeader {
  pageCount: number;
  constituentCount: number;
  reserved: bigint;
}

export function decodeCompositeHeader(b: Uint8Array, offset: number): CompositeHeader {
  need(b, offset + COMPOSITE_HEADER_SIZE, `the composite descriptor at offset ${offset}`);
  const dv = view(b);
  return { pageCount: dv.getUint32(offset, true), constituentCount: dv.getUint32(offset + 4, true), reserved: dv.getBigUint64(offset + 8, true) };
}

/** Constituents packed from `offset`; `reservedNonZero` flags any non-zero reserved word. */
export function decodeConstituents(b: Uint8Array, offset: number, count: number): { constituents: Constituent[]; reservedNonZero: boolean } {
  need(b, offset + count * CONSTITUENT_SIZE, `${count} constituents from offset ${offset}`);
  const dv = view(b);
  const constituents: Constituent[] = [];
  let reservedNonZero = false;
  for (let i = 0; i < count; i++) {
    const o = offset + i * CONSTITUENT_SIZE;
    constituents.push({ address: dv.getBigUint64(o, true), pageCount: dv.getUint32(o + 8, true) });
    reservedNonZero ||= dv.getUint32(o + 12, true) !== 0;
  }
  return { constituents, reservedNonZero };
}

export interface MemDescriptorInit {
  sender: EndpointId;
  attributes: number;
  flags: number;
  handle?: bigint;
  tag?: bigint;
  receivers: { receiver: EndpointId; permissions: number; flags?: number; impdef?: [bigint, bigint] }[];
  /** Omitted for a retrieve request (composite offset 0 in every EMAD). */
  constituents?: readonly Constituent[];
}

/** Where the parts of a descriptor go, for a writer that fragments it. */
export function memDescriptorLayout(version: FfaVersion, receivers: number): { header: number; emadSize: number; composite: number } {
  const header = memHeaderSize(version);
  const emadSize = emadSizeFor(version);
  const end = header + receivers * emadSize;
  return { header, emadSize, composite: Math.ceil(end / 16) * 16 };
}

/** A whole descriptor in the layout of `version`. */
export function encodeMemTransaction(d: MemDescriptorInit, version: FfaVersion): Uint8Array {
  const { header, emadSize, composite } = memDescriptorLayout(version, d.receivers.length);
  const constituents = d.constituents;
  const total = constituents ? composite + COMPOSITE_HEADER_SIZE + constituents.length * CONSTITUENT_SIZE : header + d.receivers.length * emadSize;
  const out = new Uint8Array(total);
  const dv = view(out);
  dv.setUint16(0, d.sender, true);
  if (version <= FFA_VERSION_1_0) dv.setUint8(2, d.attributes & 0xff);
  else dv.setUint16(2, d.attributes, true);
  dv.setUint32(4, d.flags >>> 0, true);
  dv.setBigUint64(8, d.handle ?? 0n, true);
  dv.setBigUint64(16, d.tag ?? 0n, true);
  if (version <= FFA_VERSION_1_0) {
    dv.setUint32(28, d.receivers.length, true);
  } else {
    dv.setUint32(24, emadSize, true);
    dv.setUint32(28, d.receivers.length, true);
    dv.setUint32(32, header, true);
  }
  d.receivers.forEach((r, i) => {
    const o = header + i * emadSize;
    dv.setUint16(o, r.receiver, true);
    dv.setUint8(o + 2, r.permissions);
    dv.setUint8(o + 3, r.flags ?? 0);
    dv.setUint32(o + 4, constituents ? composite : 0, true);
    if (emadSize === EMAD_SIZE_V1_2 && r.impdef) {
      dv.setBigUint64(o + 8, r.impdef[0], true);
      dv.setBigUint64(o + 16, r.impdef[1], true);
    }
  });
  if (constituents) {
    dv.setUint32(
      composite,
      constituents.reduce((n, c) => n + c.pageCount, 0),
      true,
    );
    dv.setUint32(composite + 4, constituents.length, true);
    constituents.forEach((c, i) => {
      const o = composite + COMPOSITE_HEADER_SIZE + i * CONSTITUENT_SIZE;
      dv.setBigUint64(o, c.address, true);
      dv.setUint32(o + 8, c.pageCount, true);
    });
  }
  return out;
}

export interface MemRelinquish {
  handle: bigint;
  flags: number;
  endpoints: EndpointId[];
}

export function encodeMemRelinquish(r: MemRelinquish): Uint8Array {
  const out = new Uint8Array(RELINQUISH_HEADER_SIZE + r.endpoints.length * 2);
  const dv = view(out);
  dv.setBigUint64(0, r.handle, true);
  dv.setUint32(8, r.flags >>> 0, true);
  dv.setUint32(12, r.endpoints.length, true);
  r.endpoints.forEach((e, i) => dv.setUint16(RELINQUISH_HEADER_SIZE + i * 2, e, true));
  return out;
}

/** The relinquish descriptor; the endpoint list is read only as far as `count` and the buffer allow. */
export function decodeMemRelinquish(b: Uint8Array): MemRelinquish & { count: number } {
  need(b, RELINQUISH_HEADER_SIZE, 'the relinquish header');
  const dv = view(b);
  const count = dv.getUint32(12, true);
  const n = Math.min(count, Math.floor((b.length - RELINQUISH_HEADER_SIZE) / 2));
  return {
    handle: dv.getBigUint64(0, true),
    flags: dv.getUint32(8, true),
    count,
    endpoints: Array.from({ length: n }, (_, i) => dv.getUint16(RELINQUISH_HEADER_SIZE + i * 2, true)),
  };
}
