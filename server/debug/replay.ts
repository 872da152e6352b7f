// `remote-spmc replay FILE`: run a recorded trace against a fresh SPMC built from the recorded
// manifest (or another one), re-issuing every endpoint's attaches, calls, guest writes, abandoned
// calls and detaches in the recorded order, and report the first result that differs.
//
// The model is deterministic and synchronous, so the same inputs in the same order give the same
// answers: a difference is a change in the SPMC or in the manifest, not noise.

import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { type EndpointId, fidName, hex, parseUuid, type Registers, U32 } from '../../proto/ffa/index.js';
import { findPersonality, installPersonality } from '../personalities/index.js';
import { FaultInjector } from '../faults/injector.js';
import { SessionCore } from '../session/core.js';
import { isPending, type Pending } from '../spmc/pending.js';
import { type PartitionManifest, Spmc } from '../spmc/spmc.js';
import type { SpmcLimits } from '../spmc/state.js';
import { buffersAfter, buffersBefore, type DecodedBuffer } from './buffers.js';
import type { TraceHeader, TraceRecord } from './records.js';
import type { LogicalPartition } from '../spmc/logical-partitions.js';

export interface ReplayDifference {
  seq: number;
  endpoint: EndpointId;
  what: string;
  recorded: string;
  replayed: string;
}

export interface ReplayReport {
  records: number;
  calls: number;
  matched: number;
  difference?: ReplayDifference;
}

export class TraceFormatError extends Error {}

const big = (v: string) => BigInt(v);
const regs = (r: string[]) => r.map(big);
const show = (r: readonly bigint[]) => {
  let n = r.length;
  while (n > 1 && r[n - 1] === 0n) n--;
  return `${fidName(Number(r[0]! & U32))} [${r
    .slice(0, n)
    .map((v) => hex(v))
    .join(', ')}]`;
};
const same = (a: readonly bigint[], b: readonly bigint[]) => {
  const n = Math.max(a.length, b.length);
  for (let i = 0; i < n; i++) if ((a[i] ?? 0n) !== (b[i] ?? 0n)) return false;
  return true;
};

/**
 * The partitions of a header, back to the model's types. A remote partition's credential was
 * recorded as `***`: the replayed SPMC gets a stand-in, and the replayed attaches present it. The
 * trace holds only attaches that succeeded, so no answer depends on the credential's value; to
 * replay against the real one, give the manifest (`--manifest`), whose credential-env is read from
 * the environment as `serve` reads it.
 */
export function headerPartitions(h: TraceHeader): PartitionManifest[] {
  const standIn = randomBytes(16).toString('hex');
  return (h.partitions as Record<string, unknown>[]).map((p) => ({
    ...(p as unknown as PartitionManifest),
    ...((p.behaviour as PartitionManifest['behaviour']).kind === 'remote' ? { behaviour: { kind: 'remote' as const, credential: standIn } } : {}),
    id: Number(p.id),
    uuids: (p.uuids as string[]).map(parseUuid),
    ramBytes: BigInt(p.ramBytes as string),
    ...(p.regions ? { regions: (p.regions as { base: string }[]).map((r) => ({ ...r, base: BigInt(r.base) })) as PartitionManifest['regions'] } : {}),
  }));
}

/** The logical partitions a trace header recorded, back from their JSON form. */
export function headerLogicalPartitions(h: TraceHeader): LogicalPartition[] {
  return ((h.logicalPartitions ?? []) as Record<string, unknown>[]).map((lp) => {
    const answers = lp.answers as { kind: 'echo' } | { kind: 'fixed'; words: string[] } | undefined;
    return {
      id: Number(lp.id),
      name: String(lp.name),
      uuids: (lp.uuids as string[]).map(parseUuid),
      ...(answers
        ? { answers: answers.kind === 'fixed' ? { kind: 'fixed' as const, words: answers.words.map((w) => BigInt(w)) } : { kind: 'echo' as const } }
        : {}),
    };
  });
}

export function parseTrace(text: string, file = '<trace>'): { header: TraceHeader; records: TraceRecord[] } {
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  if (lines.length === 0) throw new TraceFormatError(`${file}: empty`);
  const parse = (l: string, i: number) => {
    try {
      return JSON.parse(l) as unknown;
    } catch (e) {
      throw new TraceFormatError(`${file}:${i + 1}: not JSON (${(e as Error).message})`);
    }
  };
  const header = parse(lines[0]!, 0) as TraceHeader;
  if (header?.kind !== 'session' || header.format !== 1 || !Array.isArray(header.partitions)) {
    throw new TraceFormatError(`${file}:1: not a remote-spmc trace (no session header; record with serve --trace-file)`);
  }
  if (header.personality !== undefined && !findPersonality(header.personality)) {
    throw new TraceFormatError(`${file}:1: personality "${String(header.personality)}" is not one this server knows`);
  }
  const records = lines.slice(1).map((l, i) => parse(l, i + 1) as TraceRecord);
  records.forEach((r, i) => {
    const lost = r as unknown as { kind?: string; why?: string };
    if (lost?.kind === 'lost')
      throw new TraceFormatError(`${file}:${i + 2}: the recording lost records here (decoder thread ${lost.why}); a replay would differ`);
    if (typeof r?.seq !== 'number' || typeof r.kind !== 'string') throw new TraceFormatError(`${file}:${i + 2}: a record needs seq and kind`);
  });
  return { header, records: records.sort((a, b) => a.seq - b.seq) };
}

export function replay(header: TraceHeader, records: TraceRecord[], partitions = headerPartitions(header)): ReplayReport {
  const cursor = new ReplayCursor(header, partitions);
  for (const r of records) {
    const difference = cursor.step(r);
    if (difference) return { records: records.length, calls: cursor.calls, matched: cursor.matched, difference };
  }
  return { records: records.length, calls: cursor.calls, matched: cursor.matched };
}

/**
 * A replay one record at a time: the model as it stood after each record applied so far. The
 * dashboard's time travel moves one forward, and builds a new one to go back.
 */
export class ReplayCursor {
  readonly spmc: Spmc;
  private readonly pendings = new Map<number, Pending>();
  /**
   * Calls a fault rule acted on (marked `injected`) go through the same rules again, on the same
   * state; the rest go straight to the model (through the core, so a personality's hooks shape them).
   */
  private readonly faults: FaultInjector;
  calls = 0;
  matched = 0;
  /** The seq of the last record applied (0: none). */
  at = 0;

  constructor(
    header: TraceHeader,
    partitions = headerPartitions(header),
    /** Told of each call's decoded buffers (TX before it, RX after it), by seq. */
    private readonly onBuffers?: (seq: number, buffers: DecodedBuffer[]) => void,
  ) {
    const limits = Object.fromEntries(Object.entries(header.limits).map(([k, v]) => [k, typeof v === 'string' ? BigInt(v) : v])) as unknown as SpmcLimits;
    const personality = header.personality !== undefined ? findPersonality(header.personality) : undefined;
    this.spmc = new Spmc({
      partitions,
      limits,
      handleSeed: BigInt(header.handleSeed),
      strict: header.strict === true,
      logicalPartitions: headerLogicalPartitions(header),
      ...(personality ? { profile: personality.profile } : {}),
    });
    const core = SessionCore.for(this.spmc);
    if (personality) installPersonality(core, personality);
    this.faults = new FaultInjector(core, { replay: true });
  }

  /** Apply one record; the difference, if the model answers otherwise than recorded. */
  step(r: TraceRecord): ReplayDifference | undefined {
    this.at = r.seq;
    const spmc = this.spmc;
    const differ = (what: string, recorded: string, replayed: string): ReplayDifference => ({ seq: r.seq, endpoint: r.endpoint, what, recorded, replayed });
    switch (r.kind) {
      case 'attach': {
        let id: EndpointId;
        try {
          const p = spmc.partition(r.endpoint);
          const credential = p?.behaviour.kind === 'remote' ? p.behaviour.credential : undefined;
          id = spmc.attach({
            endpointId: r.endpoint,
            name: r.name,
            vcpuCount: r.vcpuCount,
            ramBytes: BigInt(r.ramBytes),
            properties: r.properties,
            uuids: r.uuids.map(parseUuid),
            credential,
          }).id;
        } catch (e) {
          return differ(`attach of ${hex(r.endpoint)}`, 'attached', `refused: ${(e as Error).message}`);
        }
        const base = spmc.endpoint(id)!.ram.base;
        if (hex(base) !== r.ramBase) return differ(`RAM window of ${hex(id)}`, r.ramBase, hex(base));
        break;
      }
      case 'detach':
        try {
          spmc.detach(r.endpoint);
        } catch (e) {
          return differ(`detach of ${hex(r.endpoint)}`, 'detached', `refused: ${(e as Error).message}`);
        }
        break;
      case 'write':
        if (r.data === undefined) throw new TraceFormatError(`seq ${r.seq}: a write without its bytes (traces kept in memory only note writes)`);
        try {
          spmc.writeMemory(r.endpoint, big(r.address), new Uint8Array(Buffer.from(r.data, 'base64')));
        } catch (e) {
          return differ(`write of ${r.length} bytes at ${r.address}`, 'written', (e as Error).message);
        }
        break;
      case 'call': {
        this.calls++;
        let out: Registers | Pending;
        const x = regs(r.x);
        const before = this.onBuffers ? buffersBefore(spmc, r.endpoint, x) : [];
        try {
          out = this.faults.replayCall(r.endpoint, r.vcpu, x, r.injected);
        } catch (e) {
          return differ(`${r.function} by ${hex(r.endpoint)}`, r.blocked ? 'blocked' : show(regs(r.result!.r)), `refused: ${(e as Error).message}`);
        }
        if (this.onBuffers) this.onBuffers(r.seq, [...before, ...(isPending(out) ? [] : buffersAfter(spmc, r.endpoint, x, out))]);
        if (r.blocked) {
          if (!isPending(out)) return differ(`${r.function} by ${hex(r.endpoint)} vCPU ${r.vcpu}`, 'blocked', show(out));
          this.pendings.set(r.seq, out);
        } else {
          if (isPending(out)) return differ(`${r.function} by ${hex(r.endpoint)} vCPU ${r.vcpu}`, show(regs(r.result!.r)), 'blocked');
          if (!same(out, regs(r.result!.r))) return differ(`${r.function} by ${hex(r.endpoint)} vCPU ${r.vcpu}`, show(regs(r.result!.r)), show(out));
          this.matched++;
        }
        break;
      }
      case 'return': {
        const p = this.pendings.get(r.callSeq);
        if (!p) throw new TraceFormatError(`seq ${r.seq}: answers call ${r.callSeq}, which is not in the trace`);
        const answer = peek(p);
        if (!answer) return differ(`answer to ${r.function} (call ${r.callSeq})`, show(regs(r.result.r)), 'still blocked');
        if (!same(answer, regs(r.result.r))) return differ(`answer to ${r.function} (call ${r.callSeq})`, show(regs(r.result.r)), show(answer));
        this.pendings.delete(r.callSeq);
        this.matched++;
        break;
      }
      case 'abandon':
        this.pendings.get(r.callSeq)?.abandon();
        break;
      case 'faults':
        try {
          this.faults.load({ seed: r.seed, rules: r.rules });
        } catch (e) {
          throw new TraceFormatError(`seq ${r.seq}: the fault rules recorded here do not load (${(e as Error).message})`);
        }
        break;
      default:
        break; // faults and console lines are consequences, not inputs
    }
    return undefined;
  }
}

/** What a settled Pending answered (the model settles synchronously, so this is known at once). */
function peek(p: Pending): Registers | undefined {
  return p.settled ? p.value : undefined;
}

export function replayFile(file: string, manifest?: PartitionManifest[]): ReplayReport {
  const { header, records } = parseTrace(readFileSync(file, 'utf8'), file);
  return replay(header, records, manifest);
}
