// Trace records: what the tracer captures at the time of a call (raw registers and a few facts),
// and how that becomes a decoded record with the proto/ffa codec. Pure, so the same code runs in
// the tracer's decoder thread and, for the ring's on-demand reads, on the model's own thread.

import {
  decodeCall,
  type EndpointId,
  errorName,
  fid,
  type FfaVersion,
  type Reason,
  fidName,
  formatUuid,
  hex,
  type Registers,
  REGISTER_COUNT,
  registersUsed,
  U32,
} from '../../proto/ffa/index.js';
import type { SpmcLimits } from '../spmc/state.js';

export interface TraceResult {
  function: string;
  /** The decoded answer (FFA_SUCCESS payload, a response's fields ...). */
  values?: unknown;
  /** The FF-A error name, when the answer is FFA_ERROR. */
  error?: string;
  /** x0.. of the answer, hex, up to the last non-zero register. */
  r: string[];
}

interface Common {
  seq: number;
  /** ISO time. */
  time: string;
  endpoint: EndpointId;
  name: string;
}

export type TraceRecord =
  | (Common & {
      kind: 'call';
      vcpu: number;
      via: string;
      function: string;
      args?: unknown;
      /** Why the registers do not decode as the function (the answer is then its error). */
      invalid?: string;
      /** x0.. of the call, hex, up to the last register it uses that is non-zero. */
      x: string[];
      /** The call blocked; a `return` record with the same callSeq answers it. */
      blocked?: true;
      /**
       * Blocked only waiting for its next message (FFA_MSG_WAIT, a direct response): the vCPU is
       * idle, not stuck on another endpoint, and its answer is that message.
       */
      waiting?: true;
      result?: TraceResult;
      latencyUs?: number;
      /** Why the call was refused (the answer is FFA_ERROR): the check that failed, with its values. */
      reason?: string;
      reasonCode?: string;
      /** The fault rule that answered for the model or changed its answer (server/faults); replay applies it again. */
      injected?: string;
    })
  | (Common & {
      kind: 'return';
      callSeq: number;
      vcpu: number;
      function: string;
      result: TraceResult;
      latencyUs: number;
      dropped?: true;
      reason?: string;
      reasonCode?: string;
    })
  | (Common & { kind: 'abandon'; callSeq: number; vcpu: number; function: string })
  | (Common & { kind: 'attach'; endpointKind: 'vm' | 'sp'; vcpuCount: number; ramBase: string; ramBytes: string; properties: number; uuids: string[] })
  | (Common & { kind: 'detach' })
  | (Common & { kind: 'write'; address: string; length: number; data?: string })
  | (Common & { kind: 'fault'; address: string; length: number; access: 'read' | 'write' })
  | (Common & { kind: 'console'; line: string })
  /** The fault rules from here on (the whole set, as given, and its seed): endpoint 0, name ''. */
  | (Common & { kind: 'faults'; seed: number; rules: unknown[] })
  /**
   * Only in a live stream: `count` records matching the subscriber's filter (seq `fromSeq`..`seq`)
   * were dropped because it read too slowly. Endpoint 0, name ''.
   */
  | (Common & { kind: 'lost'; count: number; fromSeq: number });

/**
 * A record as it is streamed: the fields a filter looks at, and the whole record as its JSONL line
 * (the gRPC Debug service's TraceRecord message has exactly these fields).
 */
export interface TraceLine {
  seq: number;
  kind: TraceRecord['kind'];
  endpoint: EndpointId;
  /** For call, return and abandon; '' otherwise. */
  function: string;
  /** The FF-A error name when the answer is FFA_ERROR; '' otherwise. */
  error: string;
  json: string;
  /** Why it was refused, when `error` is set ('' otherwise), and the reason's stable code. */
  reason: string;
  reason_code: string;
  /** The fault rule that injected or changed the answer ('' for none). */
  injected: string;
}

/** The first line of a trace file: what a replay needs to rebuild the same SPMC. */
export interface TraceHeader {
  kind: 'session';
  format: 1;
  partitions: unknown[];
  limits: SpmcLimits;
  handleSeed: string;
  /** The personality served (server/personalities), when not the default. */
  personality?: string;
  /** `serve --strict`: the model also refused what Hafnium never checks. */
  strict?: true;
  /** The manifest's logical partitions (TF-A's SPMD answers for them), ids and words in hex. */
  logicalPartitions?: unknown[];
}

export interface TraceFilter {
  endpoint?: EndpointId;
  /** A function name, with or without FFA_ and the width: MSG_SEND_DIRECT_REQ matches both widths. */
  function?: string;
  /** Only calls answered with FFA_ERROR, and memory faults. */
  errorsOnly?: boolean;
}

/**
 * What is captured at the time of a call or event: plain data (it crosses to the decoder thread).
 * `slot` says where the registers are: x0..x17 of a call then its answer's, a return's answer alone.
 */
export type RawRecord =
  | {
      kind: 'call';
      seq: number;
      t: number;
      endpoint: EndpointId;
      name: string;
      vcpu: number;
      version: FfaVersion;
      via: string;
      handledUs: number;
      outVersion: FfaVersion;
      blocked: boolean;
      waiting: boolean;
      slot: number;
      reason?: Reason;
      injected?: string;
    }
  | {
      kind: 'return';
      seq: number;
      t: number;
      endpoint: EndpointId;
      name: string;
      callSeq: number;
      vcpu: number;
      version: FfaVersion;
      fn: string;
      latencyUs: number;
      dropped: boolean;
      slot: number;
      reason?: Reason;
    }
  | { kind: 'abandon'; seq: number; t: number; endpoint: EndpointId; name: string; callSeq: number; vcpu: number; fn: string }
  /** Attach, detach, write, fault, console: rare, so made whole when captured. */
  | { kind: 'event'; seq: number; t: number; endpoint: EndpointId; name: string; event: object };

/** Registers per slot: a call's x0..x17 and its answer's. */
export const SLOT = 2 * REGISTER_COUNT;

/** Fields that hold endpoint IDs: shown in hex, as FF-A engineers read them. */
const ID_FIELDS = new Set(['source', 'destination', 'endpoint', 'sender', 'receiver', 'vmId', 'senderVmId', 'id']);

/**
 * FF-A values as JSON: bigints and endpoint IDs in hex, UUIDs formatted, other bytes as hex. The
 * function name already says the width, so `fn` and `width` are left out.
 */
export function jsonValue(v: unknown, key = ''): unknown {
  if (typeof v === 'bigint') return hex(v);
  if (typeof v === 'number' && ID_FIELDS.has(key)) return hex(v);
  if (v instanceof Uint8Array) return v.length === 16 ? formatUuid(v) : Buffer.from(v).toString('hex');
  if (Array.isArray(v)) return v.map((x) => jsonValue(x));
  if (v && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, val] of Object.entries(v)) if (k !== 'fn' && k !== 'width') out[k] = jsonValue(val, k);
    return out;
  }
  return v;
}

const trimmed = (x: readonly bigint[], used = x.length): string[] => {
  let n = Math.min(used, x.length);
  while (n > 1 && x[n - 1] === 0n) n--;
  return x.slice(0, n).map(hex);
};

function decodeResult(out: Registers, version: FfaVersion): TraceResult {
  const r = trimmed(out);
  const fid = Number(out[0]! & U32);
  const d = decodeCall(out, version, false);
  if (!d.ok) return { function: fidName(fid), r };
  if (d.call.fn === 'ERROR') return { function: fidName(fid), error: errorName(d.call.code), r };
  // FFA_SUCCESS: its payload registers, up to the last non-zero one.
  if (d.call.fn === 'SUCCESS') {
    const args = trimmed([0n, ...d.call.args]).slice(1);
    return args.length > 0 ? { function: fidName(fid), values: { args }, r } : { function: fidName(fid), r };
  }
  const values = jsonValue(d.call) as Record<string, unknown>;
  return Object.keys(values).length > 0 ? { function: fidName(fid), values, r } : { function: fidName(fid), r };
}

const ERROR_FID = fid('ERROR');

function registersAt(regs: BigUint64Array, at: number): bigint[] {
  const x = new Array<bigint>(REGISTER_COUNT);
  for (let i = 0; i < REGISTER_COUNT; i++) x[i] = regs[at + i]!;
  return x;
}

/** Calls in the same millisecond share one ISO time string. */
let lastT = NaN;
let lastTime = '';
function isoTime(t: number): string {
  if (t !== lastT) {
    lastT = t;
    lastTime = new Date(t).toISOString();
  }
  return lastTime;
}

/**
 * Decode one captured record; `regs` holds its slot (see RawRecord). Records are built field by
 * field, not by spreading a common part: V8 copies spread objects on a slow path, and this runs
 * for every call of a traced SPMC.
 */
export function toRecord(raw: RawRecord, regs: BigUint64Array): TraceRecord {
  const { seq, endpoint, name } = raw;
  const time = isoTime(raw.t);
  switch (raw.kind) {
    case 'call': {
      const x = registersAt(regs, raw.slot * SLOT);
      const answer = registersAt(regs, raw.slot * SLOT + REGISTER_COUNT);
      // Only a call answered with FFA_ERROR can have broken an MBZ rule: skip the re-encode otherwise.
      const errored = raw.blocked || Number(answer[0]! & U32) === ERROR_FID;
      const d = decodeCall(x, raw.version, errored);
      const used = d.ok || d.known ? registersUsed(d.ok ? d.call.fn : d.fn, d.width, raw.version) : x.length;
      const rec: TraceRecord = {
        seq,
        time,
        endpoint,
        name,
        kind: 'call',
        vcpu: raw.vcpu,
        via: raw.via,
        function: fidName(Number(x[0]! & U32)),
        x: trimmed(x, used),
      };
      if (d.ok) {
        const args = jsonValue(d.call) as Record<string, unknown>;
        if (Object.keys(args).length > 0) rec.args = args;
      } else rec.invalid = d.why;
      if (raw.blocked) {
        rec.blocked = true;
        if (raw.waiting) rec.waiting = true;
      } else {
        rec.result = decodeResult(answer, raw.outVersion);
        rec.latencyUs = Math.round(raw.handledUs * 10) / 10;
        if (raw.reason) {
          rec.reason = raw.reason.text;
          rec.reasonCode = raw.reason.code;
        }
      }
      if (raw.injected) rec.injected = raw.injected;
      return rec;
    }
    case 'return': {
      const rec: TraceRecord = {
        seq,
        time,
        endpoint,
        name,
        kind: 'return',
        callSeq: raw.callSeq,
        vcpu: raw.vcpu,
        function: raw.fn,
        // The answer is encoded for the caller's version at the time it was answered.
        result: decodeResult(registersAt(regs, raw.slot * SLOT), raw.version),
        latencyUs: Math.round(raw.latencyUs * 10) / 10,
      };
      if (raw.dropped) rec.dropped = true;
      if (raw.reason) {
        rec.reason = raw.reason.text;
        rec.reasonCode = raw.reason.code;
      }
      return rec;
    }
    case 'abandon':
      return { seq, time, endpoint, name, kind: 'abandon', callSeq: raw.callSeq, vcpu: raw.vcpu, function: raw.fn };
    case 'event':
      return Object.assign({ seq, time, endpoint, name }, raw.event) as TraceRecord;
  }
}

/** The streamed form of a record (`json: ''` where only a filter will look at it). */
export const toLine = (rec: TraceRecord, json = JSON.stringify(rec)): TraceLine => ({
  seq: rec.seq,
  kind: rec.kind,
  endpoint: rec.endpoint,
  function: 'function' in rec ? rec.function : '',
  error: ('result' in rec && rec.result?.error) || '',
  json,
  reason: ('reason' in rec && rec.reason) || '',
  reason_code: ('reasonCode' in rec && rec.reasonCode) || '',
  injected: ('injected' in rec && rec.injected) || '',
});

/**
 * Captured records on their way to the decoder thread: numbers in one array, strings in another,
 * registers in a third. Flat arrays cross a thread boundary far cheaper than one object per call.
 */
export interface RawBatch {
  nums: Float64Array;
  strs: string[];
  regs: BigUint64Array;
}

const KINDS = ['call', 'return', 'abandon', 'event'] as const;
/** Numbers per record: kind, seq, t, endpoint, vcpu, version, us, outVersion or callSeq, flag, slot. */
const NUMS = 10;
/** Strings per record: name, via or function, reason code, reason text, injected ('' where none). */
const STRS = 5;

/** Pack records; `slots[i]` is where raws[i]'s registers are in `regs` (the batch's own copy). */
export function packBatch(raws: readonly RawRecord[], slots: readonly number[], regs: BigUint64Array): RawBatch {
  const nums = new Float64Array(raws.length * NUMS);
  const strs: string[] = [];
  raws.forEach((r, i) => {
    const n = i * NUMS;
    nums[n] = KINDS.indexOf(r.kind);
    nums[n + 1] = r.seq;
    nums[n + 2] = r.t;
    nums[n + 3] = r.endpoint;
    switch (r.kind) {
      case 'call':
        // flag: 0 answered, 1 blocked, 2 blocked waiting for its next message.
        nums.set([r.vcpu, r.version, r.handledUs, r.outVersion, r.blocked ? (r.waiting ? 2 : 1) : 0, slots[i]!], n + 4);
        strs.push(r.name, r.via, r.reason?.code ?? '', r.reason?.text ?? '', r.injected ?? '');
        break;
      case 'return':
        nums.set([r.vcpu, r.version, r.latencyUs, r.callSeq, r.dropped ? 1 : 0, slots[i]!], n + 4);
        strs.push(r.name, r.fn, r.reason?.code ?? '', r.reason?.text ?? '', '');
        break;
      case 'abandon':
        nums.set([r.vcpu, 0, 0, r.callSeq], n + 4);
        strs.push(r.name, r.fn, '', '', '');
        break;
      case 'event':
        strs.push(r.name, JSON.stringify(r.event), '', '', '');
    }
  });
  return { nums, strs, regs };
}

export function unpackBatch({ nums, strs }: RawBatch): RawRecord[] {
  const raws: RawRecord[] = [];
  for (let n = 0, i = 0; n < nums.length; n += NUMS, i += STRS) {
    const at = (k: number) => nums[n + k]!;
    const [seq, t, endpoint, vcpu, version, us, other, flag, slot] = [at(1), at(2), at(3), at(4), at(5), at(6), at(7), at(8), at(9)];
    const name = strs[i]!;
    const str = strs[i + 1]!;
    const reason = strs[i + 2] ? { code: strs[i + 2]!, text: strs[i + 3]! } : undefined;
    switch (KINDS[at(0)]) {
      case 'call':
        raws.push({
          kind: 'call',
          seq,
          t,
          endpoint,
          name,
          vcpu,
          version,
          via: str,
          handledUs: us,
          outVersion: other,
          blocked: flag >= 1,
          waiting: flag === 2,
          slot,
          reason,
          injected: strs[i + 4] || undefined,
        });
        break;
      case 'return':
        raws.push({ kind: 'return', seq, t, endpoint, name, vcpu, version, fn: str, latencyUs: us, callSeq: other, dropped: flag === 1, slot, reason });
        break;
      case 'abandon':
        raws.push({ kind: 'abandon', seq, t, endpoint, name, vcpu, callSeq: other, fn: str });
        break;
      default:
        raws.push({ kind: 'event', seq, t, endpoint, name, event: JSON.parse(str) as object });
    }
  }
  return raws;
}

/** Decode a batch of captured records (the decoder thread's whole job). */
export function decodeBatch(batch: RawBatch): TraceLine[] {
  return unpackBatch(batch).map((raw) => toLine(toRecord(raw, batch.regs)));
}

/** An exact function name, any width: "MSG_SEND_DIRECT_REQ" matches FFA_MSG_SEND_DIRECT_REQ_32 and _64. */
function functionMatches(filter: string, name: string): boolean {
  const want = filter.toUpperCase().replace(/^FFA_/, '');
  const have = name.replace(/^FFA_/, '');
  return have === want || have === `${want}_32` || have === `${want}_64`;
}

/** Whether a record passes a filter (looking only at the fields a TraceLine carries). */
export function matches(f: TraceFilter, r: Pick<TraceLine, 'kind' | 'endpoint' | 'function' | 'error'>): boolean {
  if (f.endpoint !== undefined && r.endpoint !== f.endpoint) return false;
  if (f.function !== undefined) {
    if (r.kind !== 'call' && r.kind !== 'return' && r.kind !== 'abandon') return false;
    if (!functionMatches(f.function, r.function)) return false;
  }
  if (f.errorsOnly) return r.kind === 'fault' || ((r.kind === 'call' || r.kind === 'return') && r.error !== '');
  return true;
}
