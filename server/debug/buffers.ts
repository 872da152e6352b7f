// Buffer content of a call, decoded for the dashboard: the memory transaction descriptor a sender
// or retriever wrote in its TX buffer, the relinquish descriptor, the indirect-message header, and
// what the SPMC answered in RX (the retrieve response, the partition-info list). Trace records carry
// only registers; the buffers are read from the model around the call (the TX before it, the RX
// after it), live by an interceptor and in a replay by the replay cursor.

import {
  decodeCall,
  decodeCompositeHeader,
  decodeConstituents,
  decodeIndirectMessageHeader,
  decodeMemRelinquish,
  decodeMemTransaction,
  decodePartitionInfo,
  type EndpointId,
  FFA_PAGE_SIZE,
  type FfaVersion,
  fid,
  INDIRECT_MSG_HEADER_SIZE_V1_2,
  type Registers,
  RELINQUISH_HEADER_SIZE,
  U32,
} from '../../proto/ffa/index.js';
import type { Interceptor } from '../session/interceptors.js';
import { isPending } from '../spmc/pending.js';
import type { Spmc } from '../spmc/spmc.js';
import { jsonValue } from './records.js';

/** One decoded buffer: what it is, where it was read, and its fields (JSON, ids and addresses in hex). */
export interface DecodedBuffer {
  what: 'memory transaction descriptor' | 'retrieve request' | 'retrieve response' | 'relinquish descriptor' | 'indirect message' | 'partition-info list';
  buffer: 'TX' | 'RX';
  bytes: number;
  value?: unknown;
  /** Why it could not be decoded (too short, not mapped ...). */
  invalid?: string;
}

/** Largest slice of a payload shown (the rest is summarised by its size). */
const PAYLOAD_PREVIEW = 64;

function read(spmc: Spmc, address: bigint, length: number): Uint8Array {
  return spmc.state.memory.read(address, Math.max(0, Math.min(length, FFA_PAGE_SIZE * 64)));
}

/** The descriptor with its constituents (the composite the first receiver points at). */
function memTransaction(b: Uint8Array, version: FfaVersion): unknown {
  const tx = decodeMemTransaction(b, version);
  const at = tx.receivers[0]?.compositeOffset ?? 0;
  let composite: unknown;
  if (at > 0 && at < b.length) {
    try {
      const h = decodeCompositeHeader(b, at);
      const { constituents } = decodeConstituents(b, at + 16, Math.min(h.constituentCount, Math.floor((b.length - at - 16) / 16)));
      composite = { pageCount: h.pageCount, constituentCount: h.constituentCount, constituents };
    } catch (e) {
      composite = { invalid: (e as Error).message };
    }
  }
  const { reserved: _r, ...rest } = tx as typeof tx & { reserved?: unknown };
  return jsonValue({ ...rest, receivers: tx.receivers.map(({ reserved: _x, ...r }) => r), composite });
}

const decodeOr = (f: () => unknown): { value?: unknown; invalid?: string } => {
  try {
    return { value: f() };
  } catch (e) {
    return { invalid: (e as Error).message };
  }
};

/** What the caller's TX held for this call, read before the model runs it. */
export function buffersBefore(spmc: Spmc, endpoint: EndpointId, x: Registers): DecodedBuffer[] {
  const ep = spmc.endpoint(endpoint);
  const mb = ep?.mailbox;
  if (!ep || !mb) return [];
  const d = decodeCall(x, ep.version, false);
  if (!d.ok) return [];
  const c = d.call;
  switch (c.fn) {
    case 'MEM_SHARE':
    case 'MEM_LEND':
    case 'MEM_DONATE':
    case 'MEM_RETRIEVE_REQ': {
      // A buffer of the caller's own (rare) is read where it says; else the TX buffer.
      const at = c.buffer.address !== 0n ? c.buffer.address : mb.tx;
      const b = read(spmc, at, c.fragmentLength);
      const what = c.fn === 'MEM_RETRIEVE_REQ' ? 'retrieve request' : 'memory transaction descriptor';
      return [{ what, buffer: 'TX', bytes: b.length, ...decodeOr(() => memTransaction(b, ep.version)) }];
    }
    case 'MEM_RELINQUISH': {
      const b = read(spmc, mb.tx, RELINQUISH_HEADER_SIZE + 16 * 8);
      return [{ what: 'relinquish descriptor', buffer: 'TX', bytes: RELINQUISH_HEADER_SIZE, ...decodeOr(() => jsonValue(decodeMemRelinquish(b))) }];
    }
    case 'MSG_SEND2': {
      const h = read(spmc, mb.tx, INDIRECT_MSG_HEADER_SIZE_V1_2);
      return [
        {
          what: 'indirect message',
          buffer: 'TX',
          bytes: h.length,
          ...decodeOr(() => {
            const header = decodeIndirectMessageHeader(h);
            const payload =
              header.offset < mb.pageCount * FFA_PAGE_SIZE
                ? read(spmc, mb.tx + BigInt(header.offset), Math.min(header.size, PAYLOAD_PREVIEW))
                : new Uint8Array();
            return { ...(jsonValue(header) as object), payload: Buffer.from(payload).toString('hex'), payloadShown: payload.length };
          }),
        },
      ];
    }
    default:
      return [];
  }
}

/** What the SPMC wrote in the caller's RX in answer, read after the model answered. */
export function buffersAfter(spmc: Spmc, endpoint: EndpointId, x: Registers, out: Registers): DecodedBuffer[] {
  const ep = spmc.endpoint(endpoint);
  const mb = ep?.mailbox;
  if (!ep || !mb) return [];
  const call = decodeCall(x, ep.version, false);
  const answer = decodeCall(out, ep.version, false);
  if (!call.ok || !answer.ok) return [];
  if (call.call.fn === 'MEM_RETRIEVE_REQ' && answer.call.fn === 'MEM_RETRIEVE_RESP') {
    const b = read(spmc, mb.rx, answer.call.fragmentLength);
    return [{ what: 'retrieve response', buffer: 'RX', bytes: b.length, ...decodeOr(() => memTransaction(b, ep.version)) }];
  }
  if (call.call.fn === 'PARTITION_INFO_GET' && !call.call.countOnly && answer.call.fn === 'SUCCESS') {
    const count = Number(answer.call.args[1] ?? 0n);
    const size = Number(answer.call.args[2] ?? 0n);
    const b = read(spmc, mb.rx, count * size);
    return [{ what: 'partition-info list', buffer: 'RX', bytes: b.length, ...decodeOr(() => jsonValue(decodePartitionInfo(b, count, size))) }];
  }
  return [];
}

/** Decoded buffers by trace seq, the latest `max` of them. */
export class BufferLog {
  private readonly bySeq = new Map<number, DecodedBuffer[]>();
  constructor(private readonly max = 5000) {}

  add(seq: number, buffers: DecodedBuffer[]): void {
    if (buffers.length === 0) return;
    this.bySeq.set(seq, buffers);
    if (this.bySeq.size > this.max) this.bySeq.delete(this.bySeq.keys().next().value!);
  }

  get(seq: number): DecodedBuffer[] | undefined {
    return this.bySeq.get(seq);
  }

  /** Every entry from `seq` on, oldest first. */
  since(seq: number): Record<number, DecodedBuffer[]> {
    const out: Record<number, DecodedBuffer[]> = {};
    for (const [s, b] of this.bySeq) if (s >= seq) out[s] = b;
    return out;
  }
}

/** Function IDs of the calls with a buffer to decode: every other call is passed over at once. */
const WITH_BUFFERS = new Set([
  ...(['MEM_SHARE', 'MEM_LEND', 'MEM_DONATE', 'MEM_RETRIEVE_REQ'] as const).flatMap((fn) => [fid(fn, 32), fid(fn, 64)]),
  ...(['MEM_RELINQUISH', 'MSG_SEND2', 'PARTITION_INFO_GET'] as const).map((fn) => fid(fn, 32)),
]);

/**
 * The live capture: an interceptor added after the tracer's, so its `after` runs just before the
 * tracer's and `nextSeq()` is the seq the tracer is about to give this call.
 */
export function bufferCapture(spmc: Spmc, log: BufferLog, nextSeq: () => number): Interceptor {
  const before = new WeakMap<Registers, DecodedBuffer[]>();
  return {
    name: 'dashboard-buffers',
    before(call) {
      if (!WITH_BUFFERS.has(Number(call.x[0]! & U32))) return undefined;
      const b = buffersBefore(spmc, call.endpoint, call.x);
      if (b.length > 0) before.set(call.x, b);
      return undefined;
    },
    after(call, out) {
      if (!WITH_BUFFERS.has(Number(call.x[0]! & U32))) return;
      const b = [...(before.get(call.x) ?? []), ...(isPending(out) ? [] : buffersAfter(spmc, call.endpoint, call.x, out))];
      log.add(nextSeq(), b);
    },
  };
}
