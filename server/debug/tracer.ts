// The call trace: every call, attach, detach, guest write, fault and console line of the SPMC, in
// the order the model saw them. Kept in a bounded ring, streamed to subscribers with filters and
// optionally to a JSONL file that `remote-spmc replay` runs again.
//
// Calls are captured raw (registers and the caller's version) and decoded with the proto/ffa codec
// only when someone reads them, after the call has been answered: tracing stays off the call path.

import { createWriteStream, type WriteStream } from 'node:fs';
import {
  decodeCall,
  type EndpointId,
  errorName,
  fid,
  type FfaVersion,
  fidName,
  formatUuid,
  type Registers,
  REGISTER_COUNT,
  registersUsed,
  U32,
} from '../../proto/ffa/index.js';
import { isPending } from '../spmc/pending.js';
import type { PartitionManifest, Spmc } from '../spmc/spmc.js';
import type { MemoryFaultRecord, ObservedCall, SpmcLimits, SpmcObserver } from '../spmc/state.js';

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
      result?: TraceResult;
      latencyUs?: number;
    })
  | (Common & { kind: 'return'; callSeq: number; vcpu: number; function: string; result: TraceResult; latencyUs: number; dropped?: true })
  | (Common & { kind: 'abandon'; callSeq: number; vcpu: number; function: string })
  | (Common & { kind: 'attach'; endpointKind: 'vm' | 'sp'; vcpuCount: number; ramBase: string; ramBytes: string; properties: number; uuids: string[] })
  | (Common & { kind: 'detach' })
  | (Common & { kind: 'write'; address: string; length: number; data?: string })
  | (Common & { kind: 'fault'; address: string; length: number; access: 'read' | 'write' })
  | (Common & { kind: 'console'; line: string });

/** The first line of a trace file: what a replay needs to rebuild the same SPMC. */
export interface TraceHeader {
  kind: 'session';
  format: 1;
  partitions: unknown[];
  limits: SpmcLimits;
  handleSeed: string;
}

export interface TraceFilter {
  endpoint?: EndpointId;
  /** A function name, with or without FFA_ and the width: MSG_SEND_DIRECT_REQ matches both widths. */
  function?: string;
  /** Only calls answered with FFA_ERROR, and memory faults. */
  errorsOnly?: boolean;
}

export interface TracerOptions {
  /** Records kept in memory (default 10000). */
  ringSize?: number;
  /** Append JSONL here (the first line is the session header). */
  file?: string;
  /** What the header records (the server passes its manifest, limits and handle seed). */
  session?: { partitions: PartitionManifest[]; limits: SpmcLimits; handleSeed: bigint };
}

/** What is captured at the time, cheap to keep; decoded on demand. */
type Raw =
  | {
      kind: 'call';
      seq: number;
      t: number;
      endpoint: EndpointId;
      vcpu: number;
      version: FfaVersion;
      via: string;
      name: string;
      handledUs: number;
      outVersion: FfaVersion;
      blocked: boolean;
      /** Its ring index: where its registers are. */
      slot: number;
    }
  | { kind: 'return'; seq: number; t: number; callSeq: number; endpoint: EndpointId; vcpu: number; version: FfaVersion; fn: string; latencyUs: number; dropped: boolean; slot: number }
  | { kind: 'abandon'; seq: number; t: number; callSeq: number; endpoint: EndpointId; vcpu: number; fn: string }
  | { kind: 'attach' | 'detach' | 'console' | 'write' | 'fault'; seq: number; t: number; endpoint: EndpointId; make: () => object };

const hex = (v: bigint | number) => `0x${v.toString(16)}`;

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

/** Normalise a function filter: "direct_req" -> "MSG_SEND_DIRECT_REQ"? No: an exact name, any width. */
function functionMatches(filter: string, name: string): boolean {
  const want = filter.toUpperCase().replace(/^FFA_/, '');
  const have = name.replace(/^FFA_/, '');
  return have === want || have === `${want}_32` || have === `${want}_64`;
}

export function matches(f: TraceFilter, r: TraceRecord): boolean {
  if (f.endpoint !== undefined && r.endpoint !== f.endpoint) return false;
  if (f.function !== undefined) {
    if (r.kind !== 'call' && r.kind !== 'return' && r.kind !== 'abandon') return false;
    if (!functionMatches(f.function, r.function)) return false;
  }
  if (f.errorsOnly) {
    if (r.kind === 'fault') return true;
    if (r.kind !== 'call' && r.kind !== 'return') return false;
    return r.result?.error !== undefined;
  }
  return true;
}

/** How long captured records wait before they are decoded for subscribers and the file. */
export const FLUSH_MS = 5;

const ERROR_FID = fid('ERROR');

/** Registers per ring slot: a call's x0..x17 and its answer's (a return's answer uses the first 18). */
const SLOT = 2 * REGISTER_COUNT;

export class Tracer {
  private readonly ring: (Raw | undefined)[];
  /**
   * The registers of each ring slot, in one preallocated array: capturing a call copies 36 words
   * and allocates nothing the garbage collector must later move.
   */
  private readonly regs: BigUint64Array;
  private next = 0;
  private seq = 0;
  private readonly subscribers = new Set<{ filter: TraceFilter; send: (r: TraceRecord) => void }>();
  private queue: Raw[] = [];
  private flushing = false;
  private readonly file?: WriteStream;
  private stopObserving: () => void;
  /** Endpoint names, kept after they leave: their last records still say who they were. */
  private readonly names = new Map<EndpointId, string>();
  /** When the call being handled reached the model (the model itself reads no clock). */
  private callStart = 0;
  private readonly observer: SpmcObserver;
  constructor(
    private readonly spmc: Spmc,
    opts: TracerOptions = {},
  ) {
    // A file needs every record: keep enough in the ring to cover a burst between two flushes.
    this.ring = new Array(Math.max(opts.file ? 4096 : 1, opts.ringSize ?? 10000));
    this.regs = new BigUint64Array(this.ring.length * SLOT);
    if (opts.file) {
      this.file = createWriteStream(opts.file, { flags: 'w' });
      const s = opts.session;
      const header: TraceHeader = {
        kind: 'session',
        format: 1,
        partitions: (s?.partitions ?? spmc.partitions()).map((p) => jsonValue({ ...p, ramBytes: p.ramBytes, uuids: p.uuids })),
        limits: jsonValue(s?.limits ?? spmc.state.limits) as SpmcLimits,
        handleSeed: hex(s?.handleSeed ?? 0n),
      };
      this.file.write(`${JSON.stringify(header)}\n`);
    }
    for (const ep of spmc.state.endpoints.values()) this.names.set(ep.id, ep.name);
    const name = (id: EndpointId) => this.names.get(id) ?? '';
    this.observer = {
      beforeCall: () => void (this.callStart = performance.now()),
      call: (c) => this.onCall(c),
      attach: (ep) => {
        this.names.set(ep.id, ep.name);
        const snapshot = {
          kind: 'attach' as const,
          endpoint: ep.id,
          name: ep.name,
          endpointKind: ep.kind,
          vcpuCount: ep.vcpuCount,
          ramBase: hex(ep.ram.base),
          ramBytes: hex(ep.ram.size),
          properties: ep.properties,
          uuids: ep.uuids.map(formatUuid),
        };
        this.push({ kind: 'attach', seq: ++this.seq, t: Date.now(), endpoint: ep.id, make: () => snapshot });
      },
      detach: (id) => {
        const n = name(id);
        this.push({ kind: 'detach', seq: ++this.seq, t: Date.now(), endpoint: id, make: () => ({ kind: 'detach', name: n }) });
      },
      write: (id, address, data) => {
        // The bytes are kept only for a file (a replay needs them); the ring notes the access.
        const copy = this.file ? Buffer.from(data).toString('base64') : undefined;
        const length = data.length;
        this.push({ kind: 'write', seq: ++this.seq, t: Date.now(), endpoint: id, make: () => ({ kind: 'write', name: name(id), address: hex(address), length, data: copy }) });
      },
      fault: (f: MemoryFaultRecord) =>
        this.push({
          kind: 'fault',
          seq: ++this.seq,
          t: Date.now(),
          endpoint: f.endpoint,
          make: () => ({ kind: 'fault', name: name(f.endpoint), address: hex(f.address), length: f.length, access: f.access }),
        }),
      console: (id, line) => this.push({ kind: 'console', seq: ++this.seq, t: Date.now(), endpoint: id, make: () => ({ kind: 'console', name: name(id), line }) }),
    };
    this.stopObserving = spmc.observe(this.observer);
  }

  /** Stop or resume recording (what happens meanwhile is not in the trace; a replay would differ). */
  setRecording(on: boolean): void {
    this.stopObserving();
    this.stopObserving = on ? this.spmc.observe(this.observer) : () => {};
  }

  private onCall(c: ObservedCall): void {
    const now = performance.now();
    const seq = ++this.seq;
    const ep = this.spmc.endpoint(c.endpoint);
    const blocked = isPending(c.out);
    const at = this.next * SLOT;
    const regs = this.regs;
    for (let i = 0; i < REGISTER_COUNT; i++) regs[at + i] = c.x[i] ?? 0n;
    if (!isPending(c.out)) for (let i = 0; i < REGISTER_COUNT; i++) regs[at + REGISTER_COUNT + i] = c.out[i] ?? 0n;
    this.push({
      kind: 'call',
      seq,
      t: Date.now(),
      endpoint: c.endpoint,
      vcpu: c.vcpu,
      version: c.version,
      via: c.via,
      name: ep?.name ?? '',
      handledUs: (now - this.callStart) * 1000,
      slot: this.next,
      outVersion: ep?.version ?? c.version,
      blocked,
    });
    if (this.answers.length > 0) this.recordAnswers();
    if (!isPending(c.out)) return;
    const pending = c.out;
    const perf = this.callStart;
    const fn = fidName(Number(c.x[0]! & U32));
    pending.onAbandonObserved = () =>
      this.push({ kind: 'abandon', seq: ++this.seq, t: Date.now(), callSeq: seq, endpoint: c.endpoint, vcpu: c.vcpu, fn });
    pending.whenComplete((out) => {
      // Answered inside another endpoint's call: recorded after that call, so the order of the
      // records is the order in which a replay must issue them.
      const latencyUs = (performance.now() - perf) * 1000;
      this.answers.push(() => {
        // The answer is encoded for the caller's version at the time it is answered.
        const version = this.spmc.endpoint(c.endpoint)?.version ?? c.version;
        const slot = this.next;
        for (let i = 0; i < REGISTER_COUNT; i++) this.regs[slot * SLOT + i] = out[i] ?? 0n;
        this.push({ slot, kind: 'return', seq: ++this.seq, t: Date.now(), callSeq: seq, endpoint: c.endpoint, vcpu: c.vcpu, version, fn, latencyUs, dropped: pending.abandoned });
      });
      if (this.answers.length === 1) queueMicrotask(() => this.recordAnswers());
    });
  }

  /** Answers given since the last call record (see onCall). */
  private answers: (() => void)[] = [];

  private recordAnswers(): void {
    const list = this.answers;
    this.answers = [];
    for (const a of list) a();
  }

  private push(raw: Raw): void {
    this.ring[this.next] = raw;
    this.next = (this.next + 1) % this.ring.length;
    if (this.subscribers.size === 0 && !this.file) return;
    this.queue.push(raw);
    if (!this.flushing) {
      this.flushing = true;
      // Decoding waits a moment and then takes the whole batch: off the path of the calls.
      setTimeout(() => this.flush(), FLUSH_MS);
    }
  }

  /** Decode what was captured since the last flush and hand it out. */
  private flush(): void {
    this.flushing = false;
    const batch = this.queue;
    this.queue = [];
    for (const raw of batch) {
      // A record that already left the ring (a burst larger than the ring) is gone.
      const rec = this.record(raw);
      if (!rec) continue;
      for (const s of this.subscribers) if (matches(s.filter, rec)) s.send(rec);
      this.file?.write(`${JSON.stringify(rec)}\n`);
    }
  }

  /** The registers of a raw record's slot, while it is still in the ring. */
  private slotOf(raw: Raw & { slot: number }, from: number): bigint[] | undefined {
    if (this.ring[raw.slot] !== raw) return undefined;
    const at = raw.slot * SLOT + from;
    const out = new Array<bigint>(REGISTER_COUNT);
    for (let i = 0; i < REGISTER_COUNT; i++) out[i] = this.regs[at + i]!;
    return out;
  }

  /** One record, decoded; undefined if it already left the ring. */
  record(raw: Raw): TraceRecord | undefined {

    const time = new Date(raw.t).toISOString();
    const name = raw.kind === 'call' ? raw.name : (this.names.get(raw.endpoint) ?? '');
    let rec: TraceRecord;
    switch (raw.kind) {
      case 'call': {
        const x = this.slotOf(raw, 0);
        const answer = this.slotOf(raw, REGISTER_COUNT);
        if (!x || !answer) return undefined;
        // Only a call answered with FFA_ERROR can have broken an MBZ rule: skip the re-encode otherwise.
        const errored = raw.blocked || Number(answer[0]! & U32) === ERROR_FID;
        const d = decodeCall(x, raw.version, errored);
        const fid = Number(x[0]! & U32);
        const used = d.ok || d.known ? registersUsed(d.ok ? d.call.fn : d.fn, d.width, raw.version) : x.length;
        rec = { seq: raw.seq, time, kind: 'call', endpoint: raw.endpoint, name, vcpu: raw.vcpu, via: raw.via, function: fidName(fid), x: trimmed(x, used) };
        if (d.ok) {
          const args = jsonValue(d.call) as Record<string, unknown>;
          if (Object.keys(args).length > 0) rec.args = args;
        } else rec.invalid = d.why;
        if (raw.blocked) rec.blocked = true;
        else {
          rec.result = decodeResult(answer, raw.outVersion);
          rec.latencyUs = Math.round(raw.handledUs * 10) / 10;
        }
        break;
      }
      case 'return': {
        const out = this.slotOf(raw, 0);
        if (!out) return undefined;
        rec = {
          seq: raw.seq,
          time,
          kind: 'return',
          endpoint: raw.endpoint,
          name,
          callSeq: raw.callSeq,
          vcpu: raw.vcpu,
          function: raw.fn,
          result: decodeResult(out, raw.version),
          latencyUs: Math.round(raw.latencyUs * 10) / 10,
        };
        if (raw.dropped) rec.dropped = true;
        break;
      }
      case 'abandon':
        rec = { seq: raw.seq, time, kind: 'abandon', endpoint: raw.endpoint, name, callSeq: raw.callSeq, vcpu: raw.vcpu, function: raw.fn };
        break;
      default:
        rec = { seq: raw.seq, time, endpoint: raw.endpoint, name, ...raw.make() } as TraceRecord;
    }
    // Not kept: a decoded record held by the ring would be promoted and cost the GC on every call.
    return rec;
  }

  /** The latest records in the ring that match, oldest first. */
  recent(filter: TraceFilter = {}, limit = 100): TraceRecord[] {
    const out: TraceRecord[] = [];
    for (let i = 1; i <= this.ring.length && out.length < limit; i++) {
      const raw = this.ring[(this.next - i + this.ring.length) % this.ring.length];
      if (!raw) break;
      const rec = this.record(raw);
      if (rec && matches(filter, rec)) out.push(rec);
    }
    return out.reverse();
  }

  /** Live records from now on; returns the unsubscribe. */
  subscribe(filter: TraceFilter, send: (r: TraceRecord) => void): () => void {
    const sub = { filter, send };
    this.subscribers.add(sub);
    return () => void this.subscribers.delete(sub);
  }

  /** Flush what is queued and close the file. */
  async close(): Promise<void> {
    this.stopObserving();
    this.flush();
    const file = this.file;
    if (file) await new Promise<void>((resolve) => file.end(resolve));
  }
}
