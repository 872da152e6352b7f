// One trace subscriber's feed: what the tracer hands a consumer (an SSE response, a gRPC stream)
// goes out as fast as the consumer takes it, and no faster. A consumer whose buffer is full
// (write() answered false) gets nothing more until it says it drained; meanwhile records wait in a
// bounded queue, and past it they are dropped and counted. Once it drains it gets the queued
// records, then one `lost` record saying how many were dropped, then live records again. A consumer
// that stays stuck while records are being dropped is disconnected with the reason.

import type { TraceLine, TraceRecord } from './records.js';

/** Where a feed writes: the transport behind one subscriber. */
export interface TraceConsumer {
  /** Take these lines; false when the consumer's buffer is full: nothing more until the feed's resume(). */
  write(lines: TraceLine[]): boolean;
  /** End the stream, saying why (the consumer stayed stuck while records were dropped). */
  disconnect?(reason: string): void;
  /** What the transport holds unsent (its own unit: bytes, messages), for the feed's statistics. */
  buffered?(): number;
  /** Most lines per write() (default 256): what a consumer holds past its own limit is at most this. */
  chunk?: number;
  /** What the consumer is, for the statistics ('sse', 'grpc' ...). */
  via?: string;
}

export interface FeedOptions {
  /** Most records queued for a consumer whose buffer is full (default DEFAULT_SUBSCRIBER_QUEUE). */
  queue?: number;
  /** Most bytes of records (their JSON) queued for it (default DEFAULT_SUBSCRIBER_QUEUE_BYTES). */
  queueBytes?: number;
  /** Disconnect a consumer stuck this long while records are dropped (default DEFAULT_SUBSCRIBER_STALL_MS). */
  stallMs?: number;
}

export const DEFAULT_SUBSCRIBER_QUEUE = 4096;
export const DEFAULT_SUBSCRIBER_QUEUE_BYTES = 4 << 20;
export const DEFAULT_SUBSCRIBER_STALL_MS = 60_000;

/** Bytes per write() at most, whatever the chunk: a few large records (guest writes in a file trace) make one write. */
const CHUNK_BYTES = 64 << 10;

/** What a feed has done: read-only, for tests and metrics. */
export interface FeedStats {
  readonly via: string;
  /** Records and bytes queued now, and the most ever queued at once. */
  readonly queued: number;
  readonly queuedBytes: number;
  readonly maxQueued: number;
  readonly maxQueuedBytes: number;
  /** The most the transport held unsent after a write (see TraceConsumer.buffered). */
  readonly maxBuffered: number;
  /** Records dropped and not yet reported in a `lost` record, and dropped in all. */
  readonly lost: number;
  readonly lostTotal: number;
  /** Records written to the consumer (`lost` records included). */
  readonly written: number;
  /** The consumer's buffer is full. */
  readonly stalled: boolean;
  /** Why it was disconnected, once it was. */
  readonly disconnected?: string;
}

/** The `lost` record: `count` records matching the subscriber's filter, seq `fromSeq`..`seq`, were dropped. */
export function lostLine(count: number, fromSeq: number, toSeq: number): TraceLine {
  const rec: TraceRecord = { kind: 'lost', count, fromSeq, seq: toSeq, time: new Date().toISOString(), endpoint: 0, name: '' };
  return { seq: toSeq, kind: 'lost', endpoint: 0, function: '', error: '', json: JSON.stringify(rec), reason: '', reason_code: '', injected: '' };
}

export class TraceFeed implements FeedStats {
  readonly via: string;
  private readonly maxRecords: number;
  private readonly maxBytes: number;
  private readonly stallMs: number;
  private readonly chunk: number;
  /** Queued lines from `head` on (shifting an array one by one is quadratic). */
  private queue: TraceLine[] = [];
  private head = 0;
  queuedBytes = 0;
  maxQueued = 0;
  maxQueuedBytes = 0;
  maxBuffered = 0;
  lost = 0;
  lostTotal = 0;
  private lostFrom = 0;
  private lostTo = 0;
  written = 0;
  stalled = false;
  /** Date.now() when the consumer last said its buffer was full. */
  private stalledAt = 0;
  disconnected?: string;
  private closed = false;

  /** `ended` runs once the feed stops, however it stops. */
  constructor(
    private readonly consumer: TraceConsumer,
    opts: FeedOptions = {},
    private readonly ended: () => void = () => {},
  ) {
    this.via = consumer.via ?? '';
    this.maxRecords = opts.queue ?? DEFAULT_SUBSCRIBER_QUEUE;
    this.maxBytes = opts.queueBytes ?? DEFAULT_SUBSCRIBER_QUEUE_BYTES;
    this.stallMs = opts.stallMs ?? DEFAULT_SUBSCRIBER_STALL_MS;
    this.chunk = Math.max(1, consumer.chunk ?? 256);
  }

  get queued(): number {
    return this.queue.length - this.head;
  }

  /** New records for this consumer (already filtered), in order. */
  offer(lines: readonly TraceLine[]): void {
    if (this.closed) return;
    let i = 0;
    // Nothing waiting: straight to the consumer while it takes them.
    if (this.queued === 0 && this.lost === 0) while (i < lines.length && !this.stalled) i = this.writeFrom(lines, i);
    for (; i < lines.length; i++) this.enqueue(lines[i]!);
    this.pump();
    if (this.lost > 0 && this.stalled && Date.now() - this.stalledAt >= this.stallMs) {
      const s = Math.round((Date.now() - this.stalledAt) / 1000);
      this.stop(`trace client's buffer stayed full for ${s} s while its records were being dropped; ${this.lostTotal} records lost`);
    }
  }

  /** The consumer drained its buffer: send what waits. */
  resume(): void {
    if (this.closed) return;
    this.stalled = false;
    this.pump();
  }

  /** Stop feeding (the consumer went away); with a reason, tell the consumer and disconnect it. */
  stop(reason?: string): void {
    if (this.closed) return;
    this.closed = true;
    this.queue = [];
    this.head = 0;
    this.queuedBytes = 0;
    this.ended();
    if (reason !== undefined) {
      this.disconnected = reason;
      this.consumer.disconnect?.(reason);
    }
  }

  private enqueue(l: TraceLine): void {
    const bytes = l.json.length;
    if (this.lost === 0 && this.queued < this.maxRecords && this.queuedBytes + bytes <= this.maxBytes) {
      this.queue.push(l);
      this.queuedBytes += bytes;
      if (this.queued > this.maxQueued) this.maxQueued = this.queued;
      if (this.queuedBytes > this.maxQueuedBytes) this.maxQueuedBytes = this.queuedBytes;
      return;
    }
    // Once one is dropped, later ones are too until the `lost` record goes out: what the consumer
    // gets is always a prefix, the gap, then live records.
    if (this.lost === 0) this.lostFrom = l.seq;
    this.lost++;
    this.lostTotal++;
    this.lostTo = l.seq;
  }

  /** Write the queue, then the `lost` record, while the consumer takes them. */
  private pump(): void {
    while (!this.stalled && !this.closed) {
      if (this.queued > 0) {
        const from = this.head;
        this.head = this.writeFrom(this.queue, from);
        for (let i = from; i < this.head; i++) this.queuedBytes -= this.queue[i]!.json.length;
        if (this.head === this.queue.length || this.head > 4096) {
          this.queue = this.queue.slice(this.head);
          this.head = 0;
        }
      } else if (this.lost > 0) {
        const line = lostLine(this.lost, this.lostFrom, this.lostTo);
        this.lost = 0;
        this.write([line]);
      } else break;
    }
  }

  /** Write one chunk of `lines` from `from`; returns where the next one starts. */
  private writeFrom(lines: readonly TraceLine[], from: number): number {
    let end = from;
    let bytes = 0;
    while (end < lines.length && end - from < this.chunk && (end === from || bytes + lines[end]!.json.length <= CHUNK_BYTES))
      bytes += lines[end++]!.json.length;
    this.write(from === 0 && end === lines.length ? (lines as TraceLine[]) : lines.slice(from, end));
    return end;
  }

  private write(lines: TraceLine[]): void {
    const ok = this.consumer.write(lines);
    this.written += lines.length;
    const held = this.consumer.buffered?.() ?? 0;
    if (held > this.maxBuffered) this.maxBuffered = held;
    if (!ok && !this.stalled) {
      this.stalled = true;
      this.stalledAt = Date.now();
    }
  }
}
