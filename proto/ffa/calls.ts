// The typed codec: x0..x17 <-> one value per FF-A call, for a caller's negotiated version.
//
// Modelled on the arm-ffa crate's `Interface`: every FID decodes into a discriminated union member
// and encodes back. MBZ checking is done once, generically: a decoded value keeps every field the
// ABI defines, so re-encoding it reproduces exactly the bits a well-formed caller may set; any other
// bit in the registers the call uses is an MBZ violation.

import { errorCodeFromWord, errorCodeToWord, FFA_ERRORS, type FfaErrorCode, type Reason } from './errors.js';
import { type FfaFunction, type Width, fidRegister, inFfaRange, lookupFid, normalizeFid, SMCCC_VERSION_FID } from './functions.js';
import { hex, joinU64, packPair, pairHigh, pairLow, REGISTER_COUNT, type Registers, splitU64, U32, zeroRegisters } from './registers.js';
import { type Uuid, uuidFromPair, uuidFromWords, uuidToPair, uuidToWords } from './uuid.js';
import { type FfaVersion, FFA_VERSION_1_1, FFA_VERSION_1_2 } from './version.js';
import type { EndpointId } from './endpoints.js';
import { RXTX_PAGE_COUNT_MASK } from './features.js';
import { PARTITION_INFO_FLAG_COUNT_ONLY } from './partition-info.js';
import { NOTIFICATION_FLAG_DELAY_SRI, NOTIFICATION_FLAG_PER_VCPU, NOTIFICATION_GET_FLAGS } from './notifications.js';

/** (endpoint << 16) | vCPU */
export interface TargetInfo {
  endpoint: EndpointId;
  vcpu: number;
}

/** w1 of messaging and notification calls: (sender << 16) | receiver. */
export interface SrcDst {
  source: EndpointId;
  destination: EndpointId;
}

export type DirectMessageKind = { kind: 'partition' } | { kind: 'framework'; type: number };

export type MemBuffer = { address: bigint; pageCount: number };

export type FfaCall =
  /** `reason` is not in the registers: the SPMC says there why it refused (see Reason). */
  | { fn: 'ERROR'; target: TargetInfo; code: number; errorArg: number; reason?: Reason }
  | { fn: 'SUCCESS'; width: Width; target: TargetInfo; args: bigint[] }
  | { fn: 'INTERRUPT'; target: TargetInfo; interruptId: number }
  | { fn: 'VERSION'; requested: FfaVersion }
  | { fn: 'FEATURES'; id: number; inputProperties: number }
  | { fn: 'RX_RELEASE'; vmId: EndpointId }
  | { fn: 'RXTX_MAP'; width: Width; tx: bigint; rx: bigint; pageCount: number }
  | { fn: 'RXTX_UNMAP'; id: EndpointId }
  | { fn: 'PARTITION_INFO_GET'; uuid: Uuid; countOnly: boolean }
  | { fn: 'ID_GET' }
  | { fn: 'MSG_POLL' }
  | { fn: 'MSG_WAIT'; retainRx: boolean }
  | { fn: 'YIELD'; target: TargetInfo; timeout: bigint }
  | { fn: 'RUN'; target: TargetInfo }
  | { fn: 'MSG_SEND'; route: SrcDst; size: number; flags: number }
  | { fn: 'MSG_SEND_DIRECT_REQ'; width: Width; route: SrcDst; message: DirectMessageKind; args: bigint[] }
  | { fn: 'MSG_SEND_DIRECT_RESP'; width: Width; route: SrcDst; message: DirectMessageKind; args: bigint[] }
  | MemSendCall<'MEM_DONATE'>
  | MemSendCall<'MEM_LEND'>
  | MemSendCall<'MEM_SHARE'>
  | MemSendCall<'MEM_RETRIEVE_REQ'>
  | { fn: 'MEM_RETRIEVE_RESP'; totalLength: number; fragmentLength: number }
  | { fn: 'MEM_RELINQUISH' }
  | { fn: 'MEM_RECLAIM'; handle: bigint; flags: number }
  | { fn: 'MEM_OP_PAUSE'; handle: bigint }
  | { fn: 'MEM_OP_RESUME'; handle: bigint }
  | { fn: 'MEM_FRAG_RX'; handle: bigint; fragmentOffset: number; endpoint: EndpointId }
  | { fn: 'MEM_FRAG_TX'; handle: bigint; fragmentLength: number; endpoint: EndpointId }
  | { fn: 'NORMAL_WORLD_RESUME' }
  | { fn: 'NOTIFICATION_BITMAP_CREATE'; vmId: EndpointId; vcpuCount: number }
  | { fn: 'NOTIFICATION_BITMAP_DESTROY'; vmId: EndpointId }
  | { fn: 'NOTIFICATION_BIND'; route: SrcDst; perVcpu: boolean; bitmap: bigint }
  | { fn: 'NOTIFICATION_UNBIND'; route: SrcDst; bitmap: bigint }
  | { fn: 'NOTIFICATION_SET'; route: SrcDst; perVcpu: boolean; delaySri: boolean; vcpu: number; bitmap: bigint }
  | { fn: 'NOTIFICATION_GET'; receiver: EndpointId; vcpu: number; bitmaps: NotificationGetFlags }
  | { fn: 'NOTIFICATION_INFO_GET'; width: Width }
  | { fn: 'RX_ACQUIRE'; vmId: EndpointId }
  | { fn: 'SPM_ID_GET' }
  | { fn: 'MSG_SEND2'; senderVmId: EndpointId; delaySri: boolean }
  | { fn: 'SECONDARY_EP_REGISTER'; width: Width; entryPoint: bigint }
  | { fn: 'MEM_PERM_GET'; width: Width; baseVa: bigint }
  | { fn: 'MEM_PERM_SET'; width: Width; baseVa: bigint; pageCount: number; permissions: number }
  | { fn: 'CONSOLE_LOG'; width: Width; length: number; chars: Uint8Array }
  | { fn: 'PARTITION_INFO_GET_REGS'; uuid: Uuid; startIndex: number; tag: number }
  | { fn: 'EL3_INTR_HANDLE' }
  | { fn: 'MSG_SEND_DIRECT_REQ2'; route: SrcDst; uuid: Uuid; args: bigint[] }
  | { fn: 'MSG_SEND_DIRECT_RESP2'; route: SrcDst; args: bigint[] }
  | { fn: 'NS_RES_INFO_GET'; width: Width; raw: bigint[] }
  | { fn: 'ABORT'; width: Width; raw: bigint[] };

/** DONATE/LEND/SHARE/RETRIEVE_REQ: lengths, and the buffer (0/0 = the TX buffer). */
export interface MemSendCall<F extends 'MEM_DONATE' | 'MEM_LEND' | 'MEM_SHARE' | 'MEM_RETRIEVE_REQ'> {
  fn: F;
  width: Width;
  totalLength: number;
  fragmentLength: number;
  buffer: MemBuffer;
}

export interface NotificationGetFlags {
  sp: boolean;
  vm: boolean;
  spmFramework: boolean;
  hypFramework: boolean;
}

export type CallOf<F extends FfaFunction> = Extract<FfaCall, { fn: F }>;

export type DecodeResult =
  | { ok: true; call: FfaCall; fid: number; width: Width }
  /** A known FID whose registers break the ABI: answer FFA_ERROR(error). `call` holds the fields as read. */
  | { ok: false; known: true; fn: FfaFunction; width: Width; fid: number; error: FfaErrorCode; why: string; call: FfaCall }
  /** Not an FF-A function this codec knows (inFfaRange says which SMCCC answer applies). */
  | { ok: false; known: false; fid: number; inFfaRange: boolean; smcccVersion: boolean; why: string };

/** Direct-message w2: bit 31 = framework message, type in [7:0]. */
export const DIRECT_MSG_FRAMEWORK_BIT = 0x80000000;
export const DIRECT_MSG_FRAMEWORK_TYPE_MASK = 0xff;
/** Payload registers of DIRECT_REQ/RESP (x3..x7) and of REQ2/RESP2 (x4..x17). */
export const DIRECT_MSG_ARGS = 5;
export const DIRECT_MSG2_ARGS = 14;
/** MSG_WAIT w2 bit 0 (v1.2): the caller keeps its RX buffer. */
export const MSG_WAIT_FLAG_RETAIN_RX = 1 << 0;
export const CONSOLE_LOG_MAX_CHARS_32 = 24;
export const CONSOLE_LOG_MAX_CHARS_64 = 48;
export const CONSOLE_LOG_MAX_CHARS_64_V1_2 = 128;

/** Functions whose SMC64 form uses x0..x17 whatever the caller's version (SMCCC v1.2 ABIs). */
const ALWAYS_18: ReadonlySet<FfaFunction> = new Set<FfaFunction>(['SUCCESS', 'PARTITION_INFO_GET_REGS', 'MSG_SEND_DIRECT_REQ2', 'MSG_SEND_DIRECT_RESP2']);

/** SMC32 calls on which Hafnium also requires x8..x17 = 0 from v1.2 callers. */
const HIGH_MBZ_AT_1_2: ReadonlySet<FfaFunction> = new Set<FfaFunction>(['RUN', 'MSG_WAIT']);

/** How many registers (x0..x(n-1)) carry the call. */
export function registersUsed(fn: FfaFunction, width: Width, version: FfaVersion): number {
  if (width === 32) return 8;
  return ALWAYS_18.has(fn) || version >= FFA_VERSION_1_2 ? REGISTER_COUNT : 8;
}

/** Errors other than INVALID_PARAMETERS for malformed input (FEATURES and VERSION only know NOT_SUPPORTED). */
const MALFORMED_ERROR: Partial<Record<FfaFunction, FfaErrorCode>> = {
  FEATURES: FFA_ERRORS.NOT_SUPPORTED,
  VERSION: FFA_ERRORS.NOT_SUPPORTED,
};

const lo32 = (v: bigint): number => Number(v & U32);
const target = (v: bigint): TargetInfo => ({ endpoint: pairHigh(v), vcpu: pairLow(v) });
const route = (v: bigint): SrcDst => ({ source: pairHigh(v), destination: pairLow(v) });
const packTarget = (t: TargetInfo): bigint => packPair(t.endpoint, t.vcpu);
const packRoute = (r: SrcDst): bigint => packPair(r.source, r.destination);
/** Whether a 32-bit flags word has `flag` set. */
const has = (v: bigint, flag: number): boolean => (lo32(v) & flag) !== 0;

const FRAMEWORK_BIT = BigInt(DIRECT_MSG_FRAMEWORK_BIT);
const FRAMEWORK_TYPE_MASK = BigInt(DIRECT_MSG_FRAMEWORK_TYPE_MASK);
function decodeMessageKind(w2: bigint): DirectMessageKind {
  return (w2 & FRAMEWORK_BIT) !== 0n ? { kind: 'framework', type: Number(w2 & FRAMEWORK_TYPE_MASK) } : { kind: 'partition' };
}
function encodeMessageKind(m: DirectMessageKind): bigint {
  return m.kind === 'framework' ? FRAMEWORK_BIT | BigInt(m.type & DIRECT_MSG_FRAMEWORK_TYPE_MASK) : 0n;
}

function charsFrom(r: Registers, first: number, count: number): Uint8Array {
  const out = new Uint8Array(count * 8);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < count; i++) dv.setBigUint64(i * 8, r[first + i]!, true);
  return out;
}
/** Characters packed little-endian from x`first`; what does not fit the call's registers is dropped. */
function charsInto(r: Registers, first: number, chars: Uint8Array, width: Width, used: number): void {
  const step = width === 32 ? 4 : 8;
  const padded = new Uint8Array(Math.ceil(chars.length / step) * step);
  padded.set(chars);
  const dv = new DataView(padded.buffer);
  for (let i = 0; i * step < padded.length && first + i < used; i++) {
    r[first + i] = step === 4 ? BigInt(dv.getUint32(i * 4, true)) : dv.getBigUint64(i * 8, true);
  }
}

/** Per-function decode (fields only; MBZ is checked by re-encoding) and encode. */
type Codec<F extends FfaFunction> = {
  decode(r: Registers, width: Width, version: FfaVersion, used: number): CallOf<F>;
  encode(c: CallOf<F>, r: Registers, version: FfaVersion, used: number): void;
};
type CodecTable = { [F in FfaFunction]: Codec<F> };

const none = <F extends FfaFunction>(fn: F): Codec<F> => ({
  decode: () => ({ fn }) as CallOf<F>,
  encode: () => {},
});

type MemSendFn = 'MEM_DONATE' | 'MEM_LEND' | 'MEM_SHARE' | 'MEM_RETRIEVE_REQ';
const memSend = <F extends MemSendFn>(fn: F): Codec<F> =>
  ({
    decode: (r, width) =>
      ({
        fn,
        width,
        totalLength: lo32(r[1]!),
        fragmentLength: lo32(r[2]!),
        buffer: { address: r[3]!, pageCount: lo32(r[4]!) },
      }) as CallOf<F>,
    encode: (c: CallOf<MemSendFn>, r: Registers) => {
      r[1] = BigInt(c.totalLength >>> 0);
      r[2] = BigInt(c.fragmentLength >>> 0);
      r[3] = c.buffer.address;
      r[4] = BigInt(c.buffer.pageCount >>> 0);
    },
  }) as Codec<F>;

const memHandle = <F extends 'MEM_OP_PAUSE' | 'MEM_OP_RESUME'>(fn: F): Codec<F> =>
  ({
    decode: (r) => ({ fn, handle: joinU64(r[1]!, r[2]!) }) as CallOf<F>,
    encode: (c: CallOf<'MEM_OP_PAUSE' | 'MEM_OP_RESUME'>, r: Registers) => {
      [r[1], r[2]] = splitU64(c.handle);
    },
  }) as Codec<F>;

const direct = <F extends 'MSG_SEND_DIRECT_REQ' | 'MSG_SEND_DIRECT_RESP'>(fn: F): Codec<F> =>
  ({
    decode: (r, width) => ({ fn, width, route: route(r[1]!), message: decodeMessageKind(r[2]!), args: r.slice(3, 3 + DIRECT_MSG_ARGS) }) as CallOf<F>,
    encode: (c: CallOf<'MSG_SEND_DIRECT_REQ' | 'MSG_SEND_DIRECT_RESP'>, r: Registers) => {
      r[1] = packRoute(c.route);
      r[2] = encodeMessageKind(c.message);
      for (let i = 0; i < DIRECT_MSG_ARGS; i++) r[3 + i] = c.args[i] ?? 0n;
    },
  }) as Codec<F>;

const opaque = <F extends 'NS_RES_INFO_GET' | 'ABORT'>(fn: F): Codec<F> =>
  ({
    decode: (r, width, _v, used) => ({ fn, width, raw: r.slice(1, used) }) as CallOf<F>,
    encode: (c: CallOf<'NS_RES_INFO_GET' | 'ABORT'>, r: Registers) => c.raw.forEach((v, i) => (r[1 + i] = v)),
  }) as Codec<F>;

const CODECS: CodecTable = {
  ERROR: {
    decode: (r, _w, version) => ({
      fn: 'ERROR',
      target: target(r[1]!),
      code: errorCodeFromWord(r[2]!),
      errorArg: version >= FFA_VERSION_1_2 ? lo32(r[3]!) : 0,
    }),
    encode: (c, r) => {
      r[1] = packTarget(c.target);
      r[2] = errorCodeToWord(c.code);
      r[3] = BigInt(c.errorArg >>> 0);
    },
  },
  SUCCESS: {
    decode: (r, width, _v, used) => ({ fn: 'SUCCESS', width, target: target(r[1]!), args: r.slice(2, used) }),
    encode: (c, r, _v, used) => {
      r[1] = packTarget(c.target);
      for (let i = 0; i < c.args.length && 2 + i < used; i++) r[2 + i] = c.args[i]!;
    },
  },
  INTERRUPT: {
    decode: (r) => ({ fn: 'INTERRUPT', target: target(r[1]!), interruptId: lo32(r[2]!) }),
    encode: (c, r) => {
      r[1] = packTarget(c.target);
      r[2] = BigInt(c.interruptId >>> 0);
    },
  },
  VERSION: {
    decode: (r) => ({ fn: 'VERSION', requested: lo32(r[1]!) }),
    encode: (c, r) => void (r[1] = BigInt(c.requested >>> 0)),
  },
  FEATURES: {
    decode: (r) => ({ fn: 'FEATURES', id: lo32(r[1]!), inputProperties: lo32(r[2]!) }),
    encode: (c, r) => {
      r[1] = BigInt(c.id >>> 0);
      r[2] = BigInt(c.inputProperties >>> 0);
    },
  },
  RX_RELEASE: {
    // v1.0: w1 MBZ; v1.1+: [15:0] VM ID (hypervisor only).
    decode: (r, _w, version) => ({ fn: 'RX_RELEASE', vmId: version >= FFA_VERSION_1_1 ? pairLow(r[1]!) : 0 }),
    encode: (c, r) => void (r[1] = BigInt(c.vmId & 0xffff)),
  },
  RXTX_MAP: {
    decode: (r, width) => ({ fn: 'RXTX_MAP', width, tx: r[1]!, rx: r[2]!, pageCount: lo32(r[3]!) & RXTX_PAGE_COUNT_MASK }),
    encode: (c, r) => {
      r[1] = c.tx;
      r[2] = c.rx;
      r[3] = BigInt(c.pageCount & RXTX_PAGE_COUNT_MASK);
    },
  },
  RXTX_UNMAP: {
    decode: (r) => ({ fn: 'RXTX_UNMAP', id: pairHigh(r[1]!) }),
    encode: (c, r) => void (r[1] = packPair(c.id, 0)),
  },
  PARTITION_INFO_GET: {
    // w5 flags exist from v1.1; in v1.0 w5 is MBZ.
    decode: (r, _w, version) => ({
      fn: 'PARTITION_INFO_GET',
      uuid: uuidFromWords(r.slice(1, 5)),
      countOnly: version >= FFA_VERSION_1_1 && has(r[5]!, PARTITION_INFO_FLAG_COUNT_ONLY),
    }),
    encode: (c, r) => {
      uuidToWords(c.uuid).forEach((v, i) => (r[1 + i] = v));
      r[5] = c.countOnly ? BigInt(PARTITION_INFO_FLAG_COUNT_ONLY) : 0n;
    },
  },
  ID_GET: none('ID_GET'),
  MSG_POLL: none('MSG_POLL'),
  MSG_WAIT: {
    decode: (r, _w, version) => ({ fn: 'MSG_WAIT', retainRx: version >= FFA_VERSION_1_2 && has(r[2]!, MSG_WAIT_FLAG_RETAIN_RX) }),
    encode: (c, r) => void (r[2] = BigInt(c.retainRx ? MSG_WAIT_FLAG_RETAIN_RX : 0)),
  },
  YIELD: {
    // w1 is the target info when the SPMC hands the yield to the requester; a yielding SP leaves it 0.
    decode: (r, _w, version) => ({ fn: 'YIELD', target: target(r[1]!), timeout: version >= FFA_VERSION_1_2 ? joinU64(r[2]!, r[3]!) : 0n }),
    encode: (c, r) => {
      r[1] = packTarget(c.target);
      [r[2], r[3]] = splitU64(c.timeout);
    },
  },
  RUN: {
    decode: (r) => ({ fn: 'RUN', target: target(r[1]!) }),
    encode: (c, r) => void (r[1] = packTarget(c.target)),
  },
  MSG_SEND: {
    decode: (r) => ({ fn: 'MSG_SEND', route: route(r[1]!), size: lo32(r[3]!), flags: lo32(r[4]!) }),
    encode: (c, r) => {
      r[1] = packRoute(c.route);
      r[3] = BigInt(c.size >>> 0);
      r[4] = BigInt(c.flags >>> 0);
    },
  },
  MSG_SEND_DIRECT_REQ: direct('MSG_SEND_DIRECT_REQ'),
  MSG_SEND_DIRECT_RESP: direct('MSG_SEND_DIRECT_RESP'),
  MEM_DONATE: memSend('MEM_DONATE'),
  MEM_LEND: memSend('MEM_LEND'),
  MEM_SHARE: memSend('MEM_SHARE'),
  MEM_RETRIEVE_REQ: memSend('MEM_RETRIEVE_REQ'),
  MEM_RETRIEVE_RESP: {
    decode: (r) => ({ fn: 'MEM_RETRIEVE_RESP', totalLength: lo32(r[1]!), fragmentLength: lo32(r[2]!) }),
    encode: (c, r) => {
      r[1] = BigInt(c.totalLength >>> 0);
      r[2] = BigInt(c.fragmentLength >>> 0);
    },
  },
  MEM_RELINQUISH: none('MEM_RELINQUISH'),
  MEM_RECLAIM: {
    decode: (r) => ({ fn: 'MEM_RECLAIM', handle: joinU64(r[1]!, r[2]!), flags: lo32(r[3]!) }),
    encode: (c, r) => {
      [r[1], r[2]] = splitU64(c.handle);
      r[3] = BigInt(c.flags >>> 0);
    },
  },
  MEM_OP_PAUSE: memHandle('MEM_OP_PAUSE'),
  MEM_OP_RESUME: memHandle('MEM_OP_RESUME'),
  MEM_FRAG_RX: {
    decode: (r) => ({ fn: 'MEM_FRAG_RX', handle: joinU64(r[1]!, r[2]!), fragmentOffset: lo32(r[3]!), endpoint: pairHigh(r[4]!) }),
    encode: (c, r) => {
      [r[1], r[2]] = splitU64(c.handle);
      r[3] = BigInt(c.fragmentOffset >>> 0);
      r[4] = packPair(c.endpoint, 0);
    },
  },
  MEM_FRAG_TX: {
    decode: (r) => ({ fn: 'MEM_FRAG_TX', handle: joinU64(r[1]!, r[2]!), fragmentLength: lo32(r[3]!), endpoint: pairHigh(r[4]!) }),
    encode: (c, r) => {
      [r[1], r[2]] = splitU64(c.handle);
      r[3] = BigInt(c.fragmentLength >>> 0);
      r[4] = packPair(c.endpoint, 0);
    },
  },
  NORMAL_WORLD_RESUME: none('NORMAL_WORLD_RESUME'),
  NOTIFICATION_BITMAP_CREATE: {
    decode: (r) => ({ fn: 'NOTIFICATION_BITMAP_CREATE', vmId: pairLow(r[1]!), vcpuCount: lo32(r[2]!) }),
    encode: (c, r) => {
      r[1] = BigInt(c.vmId & 0xffff);
      r[2] = BigInt(c.vcpuCount >>> 0);
    },
  },
  NOTIFICATION_BITMAP_DESTROY: {
    decode: (r) => ({ fn: 'NOTIFICATION_BITMAP_DESTROY', vmId: pairLow(r[1]!) }),
    encode: (c, r) => void (r[1] = BigInt(c.vmId & 0xffff)),
  },
  NOTIFICATION_BIND: {
    decode: (r) => ({ fn: 'NOTIFICATION_BIND', route: route(r[1]!), perVcpu: has(r[2]!, NOTIFICATION_FLAG_PER_VCPU), bitmap: joinU64(r[3]!, r[4]!) }),
    encode: (c, r) => {
      r[1] = packRoute(c.route);
      r[2] = BigInt(c.perVcpu ? NOTIFICATION_FLAG_PER_VCPU : 0);
      [r[3], r[4]] = splitU64(c.bitmap);
    },
  },
  NOTIFICATION_UNBIND: {
    decode: (r) => ({ fn: 'NOTIFICATION_UNBIND', route: route(r[1]!), bitmap: joinU64(r[3]!, r[4]!) }),
    encode: (c, r) => {
      r[1] = packRoute(c.route);
      [r[3], r[4]] = splitU64(c.bitmap);
    },
  },
  NOTIFICATION_SET: {
    decode: (r) => ({
      fn: 'NOTIFICATION_SET',
      route: route(r[1]!),
      perVcpu: has(r[2]!, NOTIFICATION_FLAG_PER_VCPU),
      delaySri: has(r[2]!, NOTIFICATION_FLAG_DELAY_SRI),
      vcpu: pairHigh(r[2]!),
      bitmap: joinU64(r[3]!, r[4]!),
    }),
    encode: (c, r) => {
      r[1] = packRoute(c.route);
      r[2] = packPair(c.vcpu, (c.perVcpu ? NOTIFICATION_FLAG_PER_VCPU : 0) | (c.delaySri ? NOTIFICATION_FLAG_DELAY_SRI : 0));
      [r[3], r[4]] = splitU64(c.bitmap);
    },
  },
  NOTIFICATION_GET: {
    decode: (r) => ({
      fn: 'NOTIFICATION_GET',
      receiver: pairLow(r[1]!),
      vcpu: pairHigh(r[1]!),
      bitmaps: {
        sp: has(r[2]!, NOTIFICATION_GET_FLAGS.SP),
        vm: has(r[2]!, NOTIFICATION_GET_FLAGS.VM),
        spmFramework: has(r[2]!, NOTIFICATION_GET_FLAGS.SPM),
        hypFramework: has(r[2]!, NOTIFICATION_GET_FLAGS.HYP),
      },
    }),
    encode: (c, r) => {
      r[1] = packPair(c.vcpu, c.receiver);
      const b = c.bitmaps;
      const F = NOTIFICATION_GET_FLAGS;
      r[2] = BigInt((b.sp ? F.SP : 0) | (b.vm ? F.VM : 0) | (b.spmFramework ? F.SPM : 0) | (b.hypFramework ? F.HYP : 0));
    },
  },
  NOTIFICATION_INFO_GET: {
    decode: (_r, width) => ({ fn: 'NOTIFICATION_INFO_GET', width }),
    encode: () => {},
  },
  RX_ACQUIRE: {
    decode: (r) => ({ fn: 'RX_ACQUIRE', vmId: pairLow(r[1]!) }),
    encode: (c, r) => void (r[1] = BigInt(c.vmId & 0xffff)),
  },
  SPM_ID_GET: none('SPM_ID_GET'),
  MSG_SEND2: {
    decode: (r) => ({ fn: 'MSG_SEND2', senderVmId: pairHigh(r[1]!), delaySri: has(r[2]!, NOTIFICATION_FLAG_DELAY_SRI) }),
    encode: (c, r) => {
      r[1] = packPair(c.senderVmId, 0);
      r[2] = BigInt(c.delaySri ? NOTIFICATION_FLAG_DELAY_SRI : 0);
    },
  },
  SECONDARY_EP_REGISTER: {
    decode: (r, width) => ({ fn: 'SECONDARY_EP_REGISTER', width, entryPoint: r[1]! }),
    encode: (c, r) => void (r[1] = c.entryPoint),
  },
  MEM_PERM_GET: {
    decode: (r, width) => ({ fn: 'MEM_PERM_GET', width, baseVa: r[1]! }),
    encode: (c, r) => void (r[1] = c.baseVa),
  },
  MEM_PERM_SET: {
    decode: (r, width) => ({ fn: 'MEM_PERM_SET', width, baseVa: r[1]!, pageCount: lo32(r[2]!), permissions: lo32(r[3]!) }),
    encode: (c, r) => {
      r[1] = c.baseVa;
      r[2] = BigInt(c.pageCount >>> 0);
      r[3] = BigInt(c.permissions >>> 0);
    },
  },
  CONSOLE_LOG: {
    // Characters are packed little-endian from x2; the codec keeps every char register so the
    // value round-trips, and `length` says how many are meant.
    decode: (r, width, _v, used) => {
      const regs = used - 2;
      const all = charsFrom(r, 2, regs);
      const chars = width === 32 ? Uint8Array.from({ length: regs * 4 }, (_, i) => all[Math.floor(i / 4) * 8 + (i % 4)]!) : all;
      return { fn: 'CONSOLE_LOG', width, length: lo32(r[1]!) & 0xff, chars };
    },
    encode: (c, r, _v, used) => {
      r[1] = BigInt(c.length & 0xff);
      charsInto(r, 2, c.chars, c.width, used);
    },
  },
  PARTITION_INFO_GET_REGS: {
    decode: (r) => ({
      fn: 'PARTITION_INFO_GET_REGS',
      uuid: uuidFromPair(r[1]!, r[2]!),
      startIndex: pairLow(r[3]!),
      tag: pairHigh(r[3]!),
    }),
    encode: (c, r) => {
      [r[1], r[2]] = uuidToPair(c.uuid);
      r[3] = packPair(c.tag, c.startIndex);
    },
  },
  EL3_INTR_HANDLE: none('EL3_INTR_HANDLE'),
  MSG_SEND_DIRECT_REQ2: {
    decode: (r) => ({ fn: 'MSG_SEND_DIRECT_REQ2', route: route(r[1]!), uuid: uuidFromPair(r[2]!, r[3]!), args: r.slice(4, 4 + DIRECT_MSG2_ARGS) }),
    encode: (c, r) => {
      r[1] = packRoute(c.route);
      [r[2], r[3]] = uuidToPair(c.uuid);
      for (let i = 0; i < DIRECT_MSG2_ARGS; i++) r[4 + i] = c.args[i] ?? 0n;
    },
  },
  MSG_SEND_DIRECT_RESP2: {
    decode: (r) => ({ fn: 'MSG_SEND_DIRECT_RESP2', route: route(r[1]!), args: r.slice(4, 4 + DIRECT_MSG2_ARGS) }),
    encode: (c, r) => {
      r[1] = packRoute(c.route);
      for (let i = 0; i < DIRECT_MSG2_ARGS; i++) r[4 + i] = c.args[i] ?? 0n;
    },
  },
  NS_RES_INFO_GET: opaque('NS_RES_INFO_GET'),
  ABORT: opaque('ABORT'),
};

/** The width a call value travels in (fixed-width functions have none in their value). */
export function callWidth(c: FfaCall): Width {
  if ('width' in c) return c.width;
  switch (c.fn) {
    case 'PARTITION_INFO_GET_REGS':
    case 'MSG_SEND_DIRECT_REQ2':
    case 'MSG_SEND_DIRECT_RESP2':
      return 64;
    default:
      return 32;
  }
}

/** Registers for a call value, as the caller's version lays them out. */
export function encodeCall(c: FfaCall, version: FfaVersion): Registers {
  return encodeInto(zeroRegisters(), c, version);
}

function encodeInto(r: Registers, c: FfaCall, version: FfaVersion): Registers {
  const width = callWidth(c);
  r[0] = fidRegister(c.fn, width);
  const used = registersUsed(c.fn, width, version);
  (CODECS[c.fn] as Codec<FfaFunction>).encode(c as never, r, version, used);
  if (width === 32) for (let i = 1; i < 8; i++) r[i] = r[i]! & U32;
  return r;
}

const SCRATCH_IN = zeroRegisters();
const SCRATCH_OUT = zeroRegisters();

/**
 * Decode x0..x17 as sent by a caller of the given version. `checkMbz: false` reads the fields only:
 * for what the partition manager hands an endpoint, which its own encoder built.
 */
export function decodeCall(x: readonly bigint[], version: FfaVersion, checkMbz = true): DecodeResult {
  const fidValue = normalizeFid(x[0] ?? 0n);
  const id = lookupFid(fidValue);
  if (!id) {
    return {
      ok: false,
      known: false,
      fid: fidValue,
      inFfaRange: inFfaRange(fidValue),
      smcccVersion: fidValue === SMCCC_VERSION_FID,
      why: 'unknown function ID',
    };
  }
  const { fn, width } = id;
  const used = registersUsed(fn, width, version);
  // SMC32: only w0..w7 count, upper halves ignored. (Scratch files: decode keeps no reference to them.)
  // Plain loops, not fill(): Array.prototype.fill is slow on BigInt arrays, and this is every call.
  const r = SCRATCH_IN;
  r[0] = 0n;
  if (width === 32) for (let i = 1; i < used; i++) r[i] = (x[i] ?? 0n) & U32;
  else for (let i = 1; i < used; i++) r[i] = x[i] ?? 0n;
  for (let i = used; i < REGISTER_COUNT; i++) r[i] = 0n;
  const call = (CODECS[fn] as Codec<FfaFunction>).decode(r, width, version, used);
  if (!checkMbz) return { ok: true, call, fid: fidValue, width };

  const out = SCRATCH_OUT;
  for (let i = 0; i < REGISTER_COUNT; i++) out[i] = 0n;
  const back = encodeInto(out, call, version);
  for (let i = 1; i < used; i++) {
    if (back[i] !== r[i]) {
      const extra = r[i]! & ~back[i]!;
      return {
        ok: false,
        known: true,
        fn,
        width,
        fid: fidValue,
        error: MALFORMED_ERROR[fn] ?? FFA_ERRORS.INVALID_PARAMETERS,
        why: `${width === 32 ? 'w' : 'x'}${i} has MBZ bits set (${hex(extra)})`,
        call,
      };
    }
  }
  if (version >= FFA_VERSION_1_2 && HIGH_MBZ_AT_1_2.has(fn)) {
    for (let i = 8; i < REGISTER_COUNT; i++) {
      if ((x[i] ?? 0n) !== 0n) {
        return { ok: false, known: true, fn, width, fid: fidValue, error: FFA_ERRORS.INVALID_PARAMETERS, why: `x${i} must be zero for a v1.2 caller`, call };
      }
    }
  }
  return { ok: true, call, fid: fidValue, width };
}

// Results: the SPMC answers with these two most of the time.
export const ffaSuccess = (args: (bigint | number)[] = [], width: Width = 32): FfaCall => ({
  fn: 'SUCCESS',
  width,
  target: { endpoint: 0, vcpu: 0 },
  args: args.map((a) => BigInt(a)),
});
export const ffaError = (code: number, reason?: Reason): FfaCall => ({ fn: 'ERROR', target: { endpoint: 0, vcpu: 0 }, code, errorArg: 0, reason });

/** Registers of FFA_ERROR(code), without building a call value (hot path). */
export function errorRegisters(code: number): Registers {
  const r = zeroRegisters();
  r[0] = fidRegister('ERROR');
  r[2] = errorCodeToWord(code);
  return r;
}
