// The call trace: every call, attach, detach, guest write, fault and console line of the SPMC, in
// the order the model saw them. Kept in a bounded ring, streamed to subscribers with filters and
// optionally to a JSONL file that `remote-spmc replay` runs again.
//
// A call is captured raw (its registers and a few facts) on the model's thread; decoding it with
// the proto/ffa codec happens later, in batches, on a decoder thread, and only when someone
// streams the trace. Tracing then costs a call a register copy and nothing more.

import { createWriteStream, type WriteStream } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { type EndpointId, formatUuid, fidName, hex, type Reason, REGISTER_COUNT, U32 } from '../../proto/ffa/index.js';
import { isPending } from '../spmc/pending.js';
import { coreOf, type SessionCore } from '../session/core.js';
import type { InterceptedCall, Interceptor, Outcome } from '../session/interceptors.js';
import { SessionError } from '../session/status.js';
import type { PartitionManifest, Spmc } from '../spmc/spmc.js';
import type { MemoryFaultRecord, SpmcLimits, SpmcObserver } from '../spmc/state.js';
import {
  decodeBatch,
  jsonValue,
  matches,
  packBatch,
  type RawRecord,
  SLOT,
  type TraceFilter,
  type TraceHeader,
  type TraceLine,
  type TraceRecord,
  toLine,
  toRecord,
} from './records.js';
import { type FeedOptions, type FeedStats, type TraceConsumer, TraceFeed } from './feed.js';
import { openPrivateFile, redactPartition } from './redact.js';
import type { LogicalPartition } from '../spmc/logical-partitions.js';

export type { TraceFilter, TraceHeader, TraceLine, TraceRecord } from './records.js';

export interface TracerOptions {
  /** Records kept in memory (default 10000). */
  ringSize?: number;
  /** Append JSONL here (the first line is the session header). */
  file?: string;
  /**
   * Records the decoder thread may be behind by (default: the ring size, at least 4096). Past it
   * this thread decodes too: a traced SPMC running flat out slows down rather than queue without bound.
   */
  decoderBacklog?: number;
  /** Each live subscriber's bounded queue, and when a stuck one is disconnected (see feed.ts). */
  subscribers?: FeedOptions;
  /** Live subscribers at once (default DEFAULT_MAX_SUBSCRIBERS); one more is RESOURCE_EXHAUSTED. */
  maxSubscribers?: number;
  /** What the header records (the server passes its manifest, limits and handle seed). */
  session?: {
    partitions: PartitionManifest[];
    limits: SpmcLimits;
    handleSeed: bigint;
    personality?: string;
    strict?: boolean;
    logicalPartitions?: LogicalPartition[];
  };
}

/**
 * How long captured records wait before they go to the decoder as one batch: live enough for a
 * person watching, and a busy SPMC then pays one hand-over per batch, not one per call.
 */
export const FLUSH_MS = 20;

/** Live trace subscribers (SSE and gRPC together) a tracer takes by default. */
export const DEFAULT_MAX_SUBSCRIBERS = 64;

/**
 * A ring slot whose call is kept in the tracer's per-slot arrays, not as an object (see onCall);
 * made into its RawRecord when read.
 */
const PACKED = Symbol('packed call');
/** Numbers a packed call keeps: seq, t, endpoint, vcpu, version, handledUs, outVersion, flags. */
const CALL_NUMS = 8;
/** Flags of a packed call. */
const BLOCKED = 1;
const WAITING = 2;
/** Calls between two readings of the wall clock (see wallOffset). */
const WALL_EVERY = 1024;

/** A handed-over batch: how many records, and their lines once decoded. */
interface OutboxBatch {
  records: number;
  lines?: TraceLine[];
}

export class Tracer {
  private readonly ring: (RawRecord | typeof PACKED | undefined)[];
  /**
   * The registers of each ring slot, in one preallocated array: capturing a call copies 36 words
   * and allocates nothing the garbage collector must later move.
   */
  private readonly regs: BigUint64Array;
  /**
   * A call captured while no one streams the trace stays in the ring as numbers and references in
   * these per-slot arrays rather than as an object: a record object per call, kept for the length
   * of the ring, is what the garbage collector would otherwise copy and later sweep.
   */
  private readonly callNums: Float64Array;
  /** Per slot: the endpoint's name, the transport, the refusal's reason. */
  private readonly callNames: string[];
  private readonly callVia: string[];
  private readonly callReasons: (Reason | undefined)[];
  /** Per slot: the fault rule that injected the answer. */
  private readonly callInjected: (string | undefined)[];
  private next = 0;
  private seq = 0;
  /**
   * Wall time minus performance.now(): a call's time is the core's clock read plus this, so a call
   * costs no clock read of the tracer's own. Taken again every WALL_EVERY calls, to follow changes
   * of the wall clock.
   */
  private wallOffset = Date.now() - performance.now();
  private readonly subscribers = new Set<{ filter: TraceFilter; feed: TraceFeed }>();
  private readonly feedOptions: FeedOptions;
  readonly maxSubscribers: number;
  /** Captured since the last flush, for subscribers and the file. */
  private queue: RawRecord[] = [];
  private flushTimer?: NodeJS.Timeout;
  /** The decoder thread: started for the first subscriber or file; undefined if it could not run. */
  private decoder?: Worker;
  private decoderFailed = false;
  /** Until the thread has loaded, batches are decoded here (starting it takes a while). */
  private decoderReady = false;
  /** Batches in capture order, decoded (lines) or not yet; they go out from the front, in order. */
  private outbox: OutboxBatch[] = [];
  /** Those at the decoder thread (it answers in order). */
  private atDecoder: OutboxBatch[] = [];
  private readonly maxBacklog: number;
  private whenDrained: (() => void)[] = [];
  private readonly file?: WriteStream;
  private stopObserving: () => void;
  /** Endpoint names, kept after they leave: their last records still say who they were. */
  private readonly names = new Map<EndpointId, string>();
  /** Events of the model that are not calls: attach, detach, writes, faults, console lines. */
  private readonly observer: SpmcObserver;
  /** Calls, from the session core's interceptor chain (the trace is its first link: it sees injected answers too). */
  private readonly interceptor: Interceptor = { name: 'trace', after: (c, out, reason) => this.onCall(c, out, reason) };
  private readonly spmc: Spmc;
  private readonly core: SessionCore;
  /** Trace a model's session core (given it, or the model). */
  constructor(target: SessionCore | Spmc, opts: TracerOptions = {}) {
    this.core = coreOf(target);
    const spmc = (this.spmc = this.core.spmc);
    // A file needs every record: keep enough in the ring to cover a burst between two flushes.
    this.ring = new Array(Math.max(opts.file ? 4096 : 1, opts.ringSize ?? 10000));
    this.regs = new BigUint64Array(this.ring.length * SLOT);
    this.callNums = new Float64Array(this.ring.length * CALL_NUMS);
    this.callNames = new Array<string>(this.ring.length).fill('');
    this.callVia = new Array<string>(this.ring.length).fill('');
    this.callReasons = new Array<Reason | undefined>(this.ring.length).fill(undefined);
    this.callInjected = new Array<string | undefined>(this.ring.length).fill(undefined);
    this.maxBacklog = opts.decoderBacklog ?? Math.max(4096, this.ring.length);
    this.feedOptions = opts.subscribers ?? {};
    this.maxSubscribers = opts.maxSubscribers ?? DEFAULT_MAX_SUBSCRIBERS;
    if (opts.file) {
      // Mode 0600, and no credential in the header: see redact.ts.
      this.file = createWriteStream('', { fd: openPrivateFile(opts.file) });
      const s = opts.session;
      const header: TraceHeader = {
        kind: 'session',
        format: 1,
        partitions: (s?.partitions ?? spmc.partitions()).map(redactPartition).map((p) => jsonValue({ ...p, ramBytes: p.ramBytes, uuids: p.uuids })),
        limits: jsonValue(s?.limits ?? spmc.state.limits) as SpmcLimits,
        handleSeed: hex(s?.handleSeed ?? 0n),
        ...(s?.personality !== undefined ? { personality: s.personality } : {}),
        ...(s?.strict ? { strict: true as const } : {}),
        ...(s?.logicalPartitions?.length ? { logicalPartitions: s.logicalPartitions.map((lp) => jsonValue(lp)) } : {}),
      };
      this.file.write(`${JSON.stringify(header)}\n`);
      this.startDecoder();
    }
    for (const ep of spmc.state.endpoints.values()) this.names.set(ep.id, ep.name);
    this.observer = {
      attach: (ep) => {
        this.names.set(ep.id, ep.name);
        this.event(ep.id, {
          kind: 'attach',
          endpointKind: ep.kind,
          vcpuCount: ep.vcpuCount,
          ramBase: hex(ep.ram.base),
          ramBytes: hex(ep.ram.size),
          properties: ep.properties,
          uuids: ep.uuids.map(formatUuid),
        });
      },
      detach: (id) => this.event(id, { kind: 'detach' }),
      // The bytes are kept only for a file (a replay needs them); the ring notes the access.
      write: (id, address, data) =>
        this.event(id, { kind: 'write', address: hex(address), length: data.length, data: this.file ? Buffer.from(data).toString('base64') : undefined }),
      fault: (f: MemoryFaultRecord) => this.event(f.endpoint, { kind: 'fault', address: hex(f.address), length: f.length, access: f.access }),
      console: (id, line) => this.event(id, { kind: 'console', line }),
    };
    this.stopObserving = this.record();
  }

  private record(): () => void {
    const stopEvents = this.spmc.observe(this.observer);
    const stopCalls = this.core.use(this.interceptor);
    return () => {
      stopEvents();
      stopCalls();
    };
  }

  /** Stop or resume recording (what happens meanwhile is not in the trace; a replay would differ). */
  setRecording(on: boolean): void {
    this.stopObserving();
    this.stopObserving = on ? this.record() : () => {};
  }

  /** Record an event that is not the model's (the fault rules in force): endpoint 0. */
  note(event: { kind: string }): void {
    this.event(0, event);
  }

  private event(endpoint: EndpointId, event: object): void {
    this.push({ kind: 'event', seq: ++this.seq, t: Date.now(), endpoint, name: this.names.get(endpoint) ?? '', event });
  }

  // Runs for every call: no clock read of its own (the core's serves), nothing decoded, and while no
  // one streams the trace, nothing allocated.
  private onCall(c: InterceptedCall, out: Outcome, reason: Reason | undefined): void {
    const seq = ++this.seq;
    if (seq % WALL_EVERY === 0) this.wallOffset = Date.now() - performance.now();
    const t = Math.floor(this.wallOffset + c.answered);
    const ep = this.spmc.endpoint(c.endpoint);
    const blocked = isPending(out);
    // Parked as waiting (MSG_WAIT, a direct response) rather than blocked on another endpoint.
    let waiting = false;
    if (blocked) {
      const vcpu = ep?.vcpus[c.vcpu];
      waiting = vcpu?.pending === out && vcpu.state === 'waiting';
    }
    const at = this.next * SLOT;
    const regs = this.regs;
    const x = c.x;
    for (let i = 0; i < REGISTER_COUNT; i++) regs[at + i] = x[i] ?? 0n;
    if (!blocked) for (let i = 0; i < REGISTER_COUNT; i++) regs[at + REGISTER_COUNT + i] = out[i] ?? 0n;
    if (this.subscribers.size === 0 && !this.file) {
      // Only the ring keeps it: packed, nothing allocated (see callNums).
      const slot = this.next;
      const n = slot * CALL_NUMS;
      const nums = this.callNums;
      nums[n] = seq;
      nums[n + 1] = t;
      nums[n + 2] = c.endpoint;
      nums[n + 3] = c.vcpu;
      nums[n + 4] = c.version;
      nums[n + 5] = (c.answered - c.start) * 1000;
      nums[n + 6] = ep?.version ?? c.version;
      nums[n + 7] = (blocked ? BLOCKED : 0) | (waiting ? WAITING : 0);
      this.callNames[slot] = ep?.name ?? '';
      this.callVia[slot] = c.via;
      this.callReasons[slot] = reason;
      this.callInjected[slot] = c.injected;
      this.ring[slot] = PACKED;
      this.next = (slot + 1) % this.ring.length;
    } else {
      this.push({
        kind: 'call',
        seq,
        t,
        endpoint: c.endpoint,
        name: ep?.name ?? '',
        vcpu: c.vcpu,
        version: c.version,
        via: c.via,
        handledUs: (c.answered - c.start) * 1000,
        slot: this.next,
        outVersion: ep?.version ?? c.version,
        blocked,
        reason,
        waiting,
        injected: c.injected,
      });
    }
    if (this.answers.length > 0) this.recordAnswers();
    if (!blocked) return;
    const pending = out;
    const perf = c.start;
    const fn = fidName(Number(c.x[0]! & U32));
    const name = () => this.names.get(c.endpoint) ?? '';
    pending.onAbandonObserved = () =>
      this.push({ kind: 'abandon', seq: ++this.seq, t: Date.now(), endpoint: c.endpoint, name: name(), callSeq: seq, vcpu: c.vcpu, fn });
    pending.whenComplete((answer) => {
      // Answered inside another endpoint's call: recorded after that call, so the order of the
      // records is the order in which a replay must issue them.
      const latencyUs = (performance.now() - perf) * 1000;
      this.answers.push(() => {
        // The answer is encoded for the caller's version at the time it is answered.
        const version = this.spmc.endpoint(c.endpoint)?.version ?? c.version;
        const slot = this.next;
        for (let i = 0; i < REGISTER_COUNT; i++) this.regs[slot * SLOT + i] = answer[i] ?? 0n;
        const why = this.spmc.reasonFor(answer);
        this.push({
          kind: 'return',
          seq: ++this.seq,
          t: Date.now(),
          endpoint: c.endpoint,
          name: name(),
          callSeq: seq,
          vcpu: c.vcpu,
          version,
          fn,
          latencyUs,
          dropped: pending.abandoned,
          slot,
          reason: why,
        });
      });
      if (this.answers.length === 1) queueMicrotask(() => this.recordAnswers());
    });
  }

  /** The record of a packed call (see onCall), as push() would have kept it. */
  private unpack(slot: number): RawRecord {
    const n = slot * CALL_NUMS;
    const nums = this.callNums;
    const flags = nums[n + 7]!;
    return {
      kind: 'call',
      seq: nums[n]!,
      t: nums[n + 1]!,
      endpoint: nums[n + 2]!,
      name: this.callNames[slot]!,
      vcpu: nums[n + 3]!,
      version: nums[n + 4]!,
      via: this.callVia[slot]!,
      handledUs: nums[n + 5]!,
      slot,
      outVersion: nums[n + 6]!,
      blocked: (flags & BLOCKED) !== 0,
      reason: this.callReasons[slot],
      waiting: (flags & WAITING) !== 0,
      injected: this.callInjected[slot],
    };
  }

  /** Answers given since the last call record (see onCall). */
  private answers: (() => void)[] = [];

  private recordAnswers(): void {
    const list = this.answers;
    this.answers = [];
    for (const a of list) a();
  }

  private push(raw: RawRecord): void {
    this.ring[this.next] = raw;
    this.next = (this.next + 1) % this.ring.length;
    if (this.subscribers.size === 0 && !this.file) return;
    this.queue.push(raw);
    // Wait a moment and take the whole batch: one message to the decoder per batch, not per call.
    this.flushTimer ??= setTimeout(() => this.flush(), FLUSH_MS);
  }

  private startDecoder(): void {
    if (this.decoder || this.decoderFailed) return;
    try {
      const decoder = new Worker(new URL('./trace-decoder.js', import.meta.url));
      decoder.on('message', (lines: TraceLine[] | 'ready') => {
        if (lines === 'ready') return void (this.decoderReady = true);
        this.atDecoder.shift()!.lines = lines;
        this.sendDecoded();
      });
      // Should it ever fail or stop, decode here from then on: the trace must not stop. (Batches it
      // held are lost; a file then misses them, and says so.)
      const lost = (why: string) => {
        if (this.decoder !== decoder) return;
        process.emitWarning(`trace decoder thread ${why}; decoding on the main thread`);
        if (this.atDecoder.length > 0) this.file?.write(`${JSON.stringify({ kind: 'lost', batches: this.atDecoder.length, why })}\n`);
        this.decoderFailed = true;
        this.decoder = undefined;
        for (const batch of this.atDecoder) batch.lines = [];
        this.atDecoder = [];
        this.sendDecoded();
      };
      decoder.on('error', (err) => lost(`failed (${err.message})`));
      decoder.on('exit', (code) => lost(`exited (code ${code})`));
      // An idle decoder must not keep the process alive (one with a batch does).
      decoder.unref();
      this.decoder = decoder;
    } catch (err) {
      process.emitWarning(`trace decoder thread did not start (${(err as Error).message}); decoding on the main thread`);
      this.decoderFailed = true;
    }
  }

  /** Send what was captured since the last flush to the decoder (or decode it here). */
  private flush(): void {
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    const raws: RawRecord[] = [];
    const slots: number[] = [];
    let n = 0;
    for (const raw of this.queue) if (raw.kind === 'call' || raw.kind === 'return') n++;
    // The batch carries its own copy of the registers: the ring may wrap before it is decoded.
    const regs = new BigUint64Array(n * SLOT);
    let slot = 0;
    for (const raw of this.queue) {
      if (raw.kind !== 'call' && raw.kind !== 'return') {
        raws.push(raw);
        slots.push(-1);
      } else if (this.ring[raw.slot] === raw) {
        // (One that already left the ring, in a burst larger than the ring, is gone.)
        regs.set(this.regs.subarray(raw.slot * SLOT, raw.slot * SLOT + SLOT), slot * SLOT);
        raws.push(raw);
        slots.push(slot++);
      }
    }
    this.queue = [];
    if (raws.length === 0) return;
    const batch = packBatch(raws, slots, regs);
    const entry: OutboxBatch = { records: raws.length };
    this.outbox.push(entry);
    const backlog = this.atDecoder.reduce((n, b) => n + b.records, 0);
    if (this.decoder && this.decoderReady && backlog + raws.length <= this.maxBacklog) {
      if (this.atDecoder.length === 0) this.decoder.ref();
      this.atDecoder.push(entry);
      this.decoder.postMessage(batch, [batch.nums.buffer as ArrayBuffer, regs.buffer as ArrayBuffer]);
    } else {
      entry.lines = decodeBatch(batch);
      this.sendDecoded();
    }
  }

  /** Hand out the decoded batches at the front of the outbox, in capture order. */
  private sendDecoded(): void {
    while (this.outbox[0]?.lines) this.deliver(this.outbox.shift()!.lines!);
    if (this.atDecoder.length === 0) {
      this.decoder?.unref();
      this.drainedNow();
    }
  }

  private deliver(lines: TraceLine[]): void {
    for (const s of this.subscribers) {
      const mine = lines.filter((l) => matches(s.filter, l));
      if (mine.length > 0) s.feed.offer(mine);
    }
    if (this.file) {
      let text = '';
      for (const l of lines) text += `${l.json}\n`;
      this.file.write(text);
    }
  }

  private drainedNow(): void {
    const waiting = this.whenDrained;
    this.whenDrained = [];
    for (const w of waiting) w();
  }

  /** Resolves once everything captured so far has reached the subscribers and the file. */
  drained(): Promise<void> {
    this.recordAnswers();
    if (this.queue.length > 0) this.flush();
    if (this.atDecoder.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.whenDrained.push(resolve));
  }

  /** The latest records in the ring that match, oldest first (decoded here, on demand). */
  recent(filter: TraceFilter = {}, limit = 100): TraceRecord[] {
    const out: TraceRecord[] = [];
    for (let i = 1; i <= this.ring.length && out.length < limit; i++) {
      const slot = (this.next - i + this.ring.length) % this.ring.length;
      const kept = this.ring[slot];
      if (!kept) break;
      const raw = kept === PACKED ? this.unpack(slot) : kept;
      const rec = toRecord(raw, this.regs);
      if (matches(filter, toLine(rec, ''))) out.push(rec);
    }
    return out.reverse();
  }

  /**
   * Live records from now on, as streamed lines, a batch at a time; returns the unsubscribe (with
   * the subscriber's feed). A consumer that can say its buffer is full (write() answers false) gets
   * a bounded queue and, when that overflows, a `lost` record (see feed.ts); call `feed.resume()`
   * when it drains. A plain function takes every line at once.
   */
  /** The seq the next record will get (the dashboard's buffer capture keys its entries by it). */
  get nextSeq(): number {
    return this.seq + 1;
  }

  /** Live subscribers now. */
  get subscriberCount(): number {
    return this.subscribers.size;
  }

  /** Why one more subscriber is refused. */
  refusal(): SessionError {
    return new SessionError('RESOURCE_EXHAUSTED', `trace: ${this.maxSubscribers} live subscribers already, this server's limit`);
  }

  /** A new live subscriber; RESOURCE_EXHAUSTED (a SessionError) when maxSubscribers are live already. */
  subscribe(filter: TraceFilter, to: TraceConsumer | ((lines: TraceLine[]) => void)): (() => void) & { feed: TraceFeed } {
    if (this.subscribers.size >= this.maxSubscribers) throw this.refusal();
    const consumer: TraceConsumer =
      typeof to === 'function'
        ? {
            write: (lines) => {
              to(lines);
              return true;
            },
          }
        : to;
    const sub = { filter, feed: new TraceFeed(consumer, this.feedOptions, () => this.subscribers.delete(sub)) };
    this.subscribers.add(sub);
    this.startDecoder();
    return Object.assign(() => sub.feed.stop(), { feed: sub.feed });
  }

  /** Each live subscriber's feed: queued, lost and written records (read-only). */
  feeds(): FeedStats[] {
    return [...this.subscribers].map((s) => s.feed);
  }

  /** Deliver what is captured, stop the decoder and close the file. */
  async close(): Promise<void> {
    this.stopObserving();
    await this.drained();
    const decoder = this.decoder;
    this.decoder = undefined;
    await decoder?.terminate();
    const file = this.file;
    if (file) await new Promise<void>((resolve) => file.end(resolve));
  }
}
