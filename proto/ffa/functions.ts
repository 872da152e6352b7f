// FF-A function IDs (DEN0077, v1.0..v1.2): the one place in the repo that knows them.
//
// A FID is 0x84000000 | num (SMC32) or 0xC4000000 | num (SMC64). Each function lists the widths it
// exists in and the version that introduced it; every ID the driver, the SPMC and the trace use is
// derived from this table.

import { type FfaVersion, FFA_VERSION_1_0, FFA_VERSION_1_1, FFA_VERSION_1_2, FFA_VERSION_1_3 } from './version.js';

export const SMC32_FAST_BASE = 0x84000000;
export const SMC64_FAST_BASE = 0xc4000000;

/** SMCCC function-ID fields used to classify x0. */
export const SMCCC_FAST_CALL = 0x80000000;
export const SMCCC_64BIT = 0x40000000;
export const SMCCC_OEN_SHIFT = 24;
export const SMCCC_OEN_MASK = 0x3f;
export const SMCCC_OEN_STANDARD_SECURE = 4;
/** SMCCC v1.3 "no live SVE state" hint: masked off before decoding. */
export const SMCCC_SVE_HINT = 0x00010000;
/** Bits [23:17] must be zero in a fast call; a FID that sets them is unknown. */
export const SMCCC_FAST_MBZ_MASK = 0x00fe0000;
export const SMCCC_VERSION_FID = 0x80000000;
/** SMCCC return code for an unknown function, as 32 bits (w0). */
export const SMCCC_NOT_SUPPORTED = 0xffffffff;
/** The SMCCC version this server implements (1.2: x0..x17 on SMC64). */
export const SMCCC_VERSION_1_2 = 0x00010002;

/** Function numbers FF-A owns in OEN 4 (TF-A's is_ffa_fid bound; 0xF0.. belongs to Errata ABI). */
export const FFA_FN_NUM_MIN = 0x60;
export const FFA_FN_NUM_MAX = 0xef;

export type Width = 32 | 64;

interface FunctionSpec {
  readonly num: number;
  readonly widths: readonly Width[];
  readonly since: FfaVersion;
  /** Last version that has it (MSG_POLL and MSG_SEND were removed in v1.1). */
  readonly until?: FfaVersion;
}

const both: readonly Width[] = [32, 64];
const w32: readonly Width[] = [32];
const w64: readonly Width[] = [64];

export const FFA_FUNCTIONS = {
  ERROR: { num: 0x60, widths: w32, since: FFA_VERSION_1_0 },
  SUCCESS: { num: 0x61, widths: both, since: FFA_VERSION_1_0 },
  INTERRUPT: { num: 0x62, widths: w32, since: FFA_VERSION_1_0 },
  VERSION: { num: 0x63, widths: w32, since: FFA_VERSION_1_0 },
  FEATURES: { num: 0x64, widths: w32, since: FFA_VERSION_1_0 },
  RX_RELEASE: { num: 0x65, widths: w32, since: FFA_VERSION_1_0 },
  RXTX_MAP: { num: 0x66, widths: both, since: FFA_VERSION_1_0 },
  RXTX_UNMAP: { num: 0x67, widths: w32, since: FFA_VERSION_1_0 },
  PARTITION_INFO_GET: { num: 0x68, widths: w32, since: FFA_VERSION_1_0 },
  ID_GET: { num: 0x69, widths: w32, since: FFA_VERSION_1_0 },
  MSG_POLL: { num: 0x6a, widths: w32, since: FFA_VERSION_1_0, until: FFA_VERSION_1_0 },
  MSG_WAIT: { num: 0x6b, widths: w32, since: FFA_VERSION_1_0 },
  YIELD: { num: 0x6c, widths: w32, since: FFA_VERSION_1_0 },
  RUN: { num: 0x6d, widths: w32, since: FFA_VERSION_1_0 },
  MSG_SEND: { num: 0x6e, widths: w32, since: FFA_VERSION_1_0, until: FFA_VERSION_1_0 },
  MSG_SEND_DIRECT_REQ: { num: 0x6f, widths: both, since: FFA_VERSION_1_0 },
  MSG_SEND_DIRECT_RESP: { num: 0x70, widths: both, since: FFA_VERSION_1_0 },
  MEM_DONATE: { num: 0x71, widths: both, since: FFA_VERSION_1_0 },
  MEM_LEND: { num: 0x72, widths: both, since: FFA_VERSION_1_0 },
  MEM_SHARE: { num: 0x73, widths: both, since: FFA_VERSION_1_0 },
  MEM_RETRIEVE_REQ: { num: 0x74, widths: both, since: FFA_VERSION_1_0 },
  MEM_RETRIEVE_RESP: { num: 0x75, widths: w32, since: FFA_VERSION_1_0 },
  MEM_RELINQUISH: { num: 0x76, widths: w32, since: FFA_VERSION_1_0 },
  MEM_RECLAIM: { num: 0x77, widths: w32, since: FFA_VERSION_1_0 },
  MEM_OP_PAUSE: { num: 0x78, widths: w32, since: FFA_VERSION_1_0 },
  MEM_OP_RESUME: { num: 0x79, widths: w32, since: FFA_VERSION_1_0 },
  MEM_FRAG_RX: { num: 0x7a, widths: w32, since: FFA_VERSION_1_0 },
  MEM_FRAG_TX: { num: 0x7b, widths: w32, since: FFA_VERSION_1_0 },
  NORMAL_WORLD_RESUME: { num: 0x7c, widths: w32, since: FFA_VERSION_1_0 },
  NOTIFICATION_BITMAP_CREATE: { num: 0x7d, widths: w32, since: FFA_VERSION_1_1 },
  NOTIFICATION_BITMAP_DESTROY: { num: 0x7e, widths: w32, since: FFA_VERSION_1_1 },
  NOTIFICATION_BIND: { num: 0x7f, widths: w32, since: FFA_VERSION_1_1 },
  NOTIFICATION_UNBIND: { num: 0x80, widths: w32, since: FFA_VERSION_1_1 },
  NOTIFICATION_SET: { num: 0x81, widths: w32, since: FFA_VERSION_1_1 },
  NOTIFICATION_GET: { num: 0x82, widths: w32, since: FFA_VERSION_1_1 },
  NOTIFICATION_INFO_GET: { num: 0x83, widths: both, since: FFA_VERSION_1_1 },
  RX_ACQUIRE: { num: 0x84, widths: w32, since: FFA_VERSION_1_1 },
  SPM_ID_GET: { num: 0x85, widths: w32, since: FFA_VERSION_1_1 },
  MSG_SEND2: { num: 0x86, widths: w32, since: FFA_VERSION_1_1 },
  SECONDARY_EP_REGISTER: { num: 0x87, widths: both, since: FFA_VERSION_1_1 },
  MEM_PERM_GET: { num: 0x88, widths: both, since: FFA_VERSION_1_1 },
  MEM_PERM_SET: { num: 0x89, widths: both, since: FFA_VERSION_1_1 },
  CONSOLE_LOG: { num: 0x8a, widths: both, since: FFA_VERSION_1_2 },
  PARTITION_INFO_GET_REGS: { num: 0x8b, widths: w64, since: FFA_VERSION_1_2 },
  EL3_INTR_HANDLE: { num: 0x8c, widths: w32, since: FFA_VERSION_1_2 },
  MSG_SEND_DIRECT_REQ2: { num: 0x8d, widths: w64, since: FFA_VERSION_1_2 },
  MSG_SEND_DIRECT_RESP2: { num: 0x8e, widths: w64, since: FFA_VERSION_1_2 },
  // v1.3: answered only under a v1.3 personality (server/personalities: hafnium-2.14).
  NS_RES_INFO_GET: { num: 0x8f, widths: w64, since: FFA_VERSION_1_3 },
  ABORT: { num: 0x90, widths: both, since: FFA_VERSION_1_3 },
} as const satisfies Record<string, FunctionSpec>;

export type FfaFunction = keyof typeof FFA_FUNCTIONS;

export const FFA_FUNCTION_NAMES = Object.keys(FFA_FUNCTIONS) as FfaFunction[];

export interface FunctionId {
  readonly fn: FfaFunction;
  readonly width: Width;
  readonly fid: number;
  /** The FID as the x0 register value (encoding a call takes it from here: a hot path). */
  readonly x0: bigint;
}

/** Every defined (function, width) pair, worked out once: by FID, and by name as [SMC32, SMC64]. */
const byFid = new Map<number, FunctionId>();
const byName = new Map<FfaFunction, [FunctionId | undefined, FunctionId | undefined]>();
for (const fn of FFA_FUNCTION_NAMES) {
  const forms: [FunctionId | undefined, FunctionId | undefined] = [undefined, undefined];
  for (const width of FFA_FUNCTIONS[fn].widths as readonly Width[]) {
    const id = ((width === 64 ? SMC64_FAST_BASE : SMC32_FAST_BASE) | FFA_FUNCTIONS[fn].num) >>> 0;
    const entry = { fn, width, fid: id, x0: BigInt(id) };
    byFid.set(id, entry);
    forms[width === 64 ? 1 : 0] = entry;
  }
  byName.set(fn, forms);
}

function functionId(fn: FfaFunction, width: Width): FunctionId {
  const id = byName.get(fn)?.[width === 64 ? 1 : 0];
  if (!id) throw new Error(`FFA_${fn} has no SMC${width} form`);
  return id;
}

/** The FID of `fn` in the given width; throws if that width does not exist (a programming error). */
export const fid = (fn: FfaFunction, width: Width = 32): number => functionId(fn, width).fid;

/** The same, as the x0 register value. */
export const fidRegister = (fn: FfaFunction, width: Width = 32): bigint => functionId(fn, width).x0;

/** Every defined (function, width) pair, for tables and tests. */
export const ALL_FUNCTION_IDS: readonly FunctionId[] = [...byFid.values()];

/** w0 with the SVE hint masked off, as a 32-bit FID. */
export function normalizeFid(x0: bigint): number {
  return (Number(x0 & 0xffffffffn) & ~SMCCC_SVE_HINT) >>> 0;
}

/** FF-A FIDs differ only in the SMC64 bit and the function number: an array index, not a hash. */
const FN_NUM_SLOTS = FFA_FN_NUM_MAX + 1;
const byIndex: (FunctionId | undefined)[] = new Array<FunctionId | undefined>(2 * FN_NUM_SLOTS).fill(undefined);
for (const id of byFid.values()) {
  if ((id.fid & 0xffff) >= FN_NUM_SLOTS) throw new Error(`FFA_${id.fn}: function number above FFA_FN_NUM_MAX`);
  byIndex[(id.fid & SMCCC_64BIT ? FN_NUM_SLOTS : 0) + (id.fid & 0xffff)] = id;
}

/** The FF-A function x0 names, or undefined. */
export function lookupFid(fidValue: number): FunctionId | undefined {
  const v = fidValue >>> 0;
  const num = v & 0xffff;
  if (num >= FN_NUM_SLOTS || ((v & ~SMCCC_64BIT) >>> 0) - num !== SMC32_FAST_BASE) return undefined;
  return byIndex[(v & SMCCC_64BIT ? FN_NUM_SLOTS : 0) + num];
}

/** True when the FID lies in the FF-A range (OEN 4, fast call, number 0x60..0xEF) whether or not defined. */
export function inFfaRange(fidValue: number): boolean {
  const v = fidValue >>> 0;
  if ((v & SMCCC_FAST_CALL) === 0) return false;
  if (((v >>> SMCCC_OEN_SHIFT) & SMCCC_OEN_MASK) !== SMCCC_OEN_STANDARD_SECURE) return false;
  if ((v & SMCCC_FAST_MBZ_MASK) !== 0) return false;
  const num = v & 0xffff;
  return num >= FFA_FN_NUM_MIN && num <= FFA_FN_NUM_MAX;
}

/** Display name of a FID: `FFA_RXTX_MAP_64`, `SMCCC_VERSION`, or hex. */
export function fidName(fidValue: number): string {
  const id = lookupFid(fidValue);
  if (id) {
    const spec: FunctionSpec = FFA_FUNCTIONS[id.fn];
    return spec.widths.length > 1 ? `FFA_${id.fn}_${id.width}` : `FFA_${id.fn}`;
  }
  if (fidValue >>> 0 === SMCCC_VERSION_FID) return 'SMCCC_VERSION';
  return `0x${(fidValue >>> 0).toString(16).padStart(8, '0')}`;
}
