// A recorded session opened for the dashboard's time travel: its records, the decoded buffers of
// every call, and the model's state at any record as a replay computes it. Going forward steps the
// replay on; going back replays from the start (the model is synchronous and fast: 10,000 records
// take a fraction of a second).

import type { PartitionManifest } from '../spmc/spmc.js';
import { BufferLog, type DecodedBuffer } from './buffers.js';
import type { TraceHeader, TraceRecord } from './records.js';
import { headerPartitions, parseTrace, ReplayCursor, type ReplayDifference } from './replay.js';
import { memoryMapView, stateSnapshot } from './views.js';

export class ReplaySession {
  readonly buffers = new BufferLog(Infinity);
  /** The first record whose replayed answer differs from the recorded one, if any. */
  readonly difference?: ReplayDifference;
  readonly calls: number;
  private cursor: ReplayCursor;
  private next = 0;

  constructor(
    readonly name: string,
    readonly header: TraceHeader,
    readonly records: readonly TraceRecord[],
    private readonly partitions: PartitionManifest[] = headerPartitions(header),
  ) {
    // One pass to decode every call's buffers and find the first difference.
    const full = new ReplayCursor(header, partitions, (seq, b) => this.buffers.add(seq, b));
    for (const r of records) {
      const d = full.step(r);
      if (d && !this.difference) this.difference = d;
    }
    this.calls = full.calls;
    this.cursor = new ReplayCursor(header, partitions);
  }

  static parse(name: string, text: string, partitions?: PartitionManifest[]): ReplaySession {
    const { header, records } = parseTrace(text, name);
    return new ReplaySession(name, header, records, partitions ?? headerPartitions(header));
  }

  /** The model after every record up to `seq` (0: before the first). */
  stateAt(seq: number) {
    if (this.cursor.at > seq) {
      this.cursor = new ReplayCursor(this.header, this.partitions);
      this.next = 0;
    }
    while (this.next < this.records.length && this.records[this.next]!.seq <= seq) this.cursor.step(this.records[this.next++]!);
    const spmc = this.cursor.spmc;
    return { at: this.next > 0 ? this.records[this.next - 1]!.seq : 0, ...stateSnapshot(spmc), memory: memoryMapView(spmc) };
  }

  buffersFrom(from: number): Record<number, DecodedBuffer[]> {
    return this.buffers.since(from);
  }

  summary() {
    return {
      name: this.name,
      records: this.records.length,
      calls: this.calls,
      firstSeq: this.records[0]?.seq ?? 0,
      lastSeq: this.records.at(-1)?.seq ?? 0,
      difference: this.difference,
    };
  }
}
