// Shared fixtures: an SPMC with the default manifest, raw calls by value, register helpers.

import {
  decodeCall,
  encodeCall,
  type EndpointId,
  errorCodeFromWord,
  FFA_PAGE_SIZE,
  FFA_VERSION_1_2,
  type FfaCall,
  type FfaVersion,
  fid,
  hex,
  type Registers,
  toRegisters,
  U32,
  UUID_NIL,
} from '../proto/ffa/index.js';
import { FfaDriverError } from '../client-driver/errno.js';
import { TransportError } from '../client-driver/transport/transport.js';
import { defaultManifest } from '../server/manifest.js';
import { Tracer, type TracerOptions } from '../server/debug/tracer.js';
import { SpmcGrpcServer } from '../server/grpc/server.js';
import { buildHttpApp } from '../server/http/app.js';
import { startBuiltinPartitions } from '../server/partitions/index.js';
import { SessionCore } from '../server/session/core.js';
import { isPending, type Pending } from '../server/spmc/pending.js';
import type { TraceRecord } from '../server/debug/records.js';
import { type AttachParams, Spmc } from '../server/spmc/spmc.js';
import type { VcpuState } from '../server/spmc/endpoint.js';
import type { SpmcLimits } from '../server/spmc/state.js';

export const SP1_UUID = 'b4b5671e-4a90-4fe1-b81f-fb13dae1dacb';
export const SP2_UUID = 'd1582309-f023-47b9-827c-4464f5578fc8';
export const SP3_UUID = '79b55c73-1d8c-44b9-8593-61e1770ad8d2';
export const SP4_UUID = 'a4cd5826-e113-67cf-f910-cd491368ef31';

export function newSpmc(limits: Partial<SpmcLimits> = {}): Spmc {
  return new Spmc({ partitions: defaultManifest(), limits });
}

/** A VM endpoint driven with raw registers, as a test harness or an ACS client would. */
export class RawVm {
  constructor(
    readonly spmc: Spmc,
    readonly id: EndpointId,
    public version: FfaVersion = FFA_VERSION_1_2,
  ) {}

  /** Attach and negotiate `version` (FFA_VERSION does not lock it: tests may still change it). */
  static attach(spmc: Spmc, params: AttachParams = {}, version: FfaVersion = FFA_VERSION_1_2): RawVm {
    const vm = new RawVm(spmc, spmc.attach(params).id, version);
    vm.negotiate(version);
    return vm;
  }

  get ramBase(): bigint {
    return this.spmc.endpoint(this.id)!.ram.base;
  }

  /** A call that must answer at once. */
  regs(x: (bigint | number)[], vcpu = 0): Registers {
    const out = this.viaCore(toRegisters(x), vcpu);
    if (isPending(out)) throw new Error(`call ${hex(x[0]!)} blocked`);
    return out;
  }

  /** Through the model's session core, as a transport calls (its interceptors see the call). */
  private viaCore(x: Registers, vcpu: number): Registers | Pending {
    return SessionCore.for(this.spmc).handle(this.id, vcpu, x, 'direct');
  }

  /** A call that may block: the answer now, or the Pending one. */
  start(c: FfaCall, vcpu = 0): Registers | Pending {
    return this.viaCore(encodeCall(c, this.version), vcpu);
  }

  /** Send a call value and decode what comes back. */
  call(c: FfaCall, vcpu = 0): FfaCall {
    const out = this.viaCore(encodeCall(c, this.version), vcpu);
    if (isPending(out)) throw new Error(`FFA_${c.fn} blocked`);
    const d = decodeCall(out, this.version);
    if (!d.ok) throw new Error(`undecodable reply ${out.map((v) => v.toString(16))}`);
    return d.call;
  }

  negotiate(version: FfaVersion = this.version): void {
    this.version = version;
    const [w0] = this.regs([fid('VERSION'), version]);
    if (Number(w0! & U32) !== FFA_VERSION_1_2) throw new Error('negotiation failed');
  }

  /** RXTX_MAP at the start of the RAM window (TX) and the page after the buffers (RX). */
  mapMailbox(pages = 1): { tx: bigint; rx: bigint } {
    const tx = this.ramBase;
    const rx = this.ramBase + BigInt(pages) * BigInt(FFA_PAGE_SIZE);
    const r = this.call({ fn: 'RXTX_MAP', width: 64, tx, rx, pageCount: pages });
    if (r.fn !== 'SUCCESS') throw new Error(`RXTX_MAP failed: ${JSON.stringify(r, (_k, v) => (typeof v === 'bigint' ? v.toString() : v))}`);
    return { tx, rx };
  }

  partitionInfoGet(uuid = UUID_NIL, countOnly = false): FfaCall {
    return this.call({ fn: 'PARTITION_INFO_GET', uuid, countOnly });
  }
}

/** The FF-A error code of a reply, or undefined when it is not FFA_ERROR. */
/** The SpmcError kind `fn` throws, or 'none'. */
export function thrownKind(fn: () => unknown): string {
  try {
    fn();
    return 'none';
  } catch (e) {
    return (e as { kind?: string }).kind ?? (e as Error).name;
  }
}

export function errorOf(c: FfaCall): number | undefined {
  return c.fn === 'ERROR' ? c.code : undefined;
}

export function errorOfRegs(r: Registers): number | undefined {
  return Number(r[0]! & U32) === fid('ERROR') ? errorCodeFromWord(r[2]!) : undefined;
}

export const successArgs = (c: FfaCall): bigint[] => {
  if (c.fn !== 'SUCCESS') throw new Error(`expected FFA_SUCCESS, got FFA_${c.fn}`);
  return c.args;
};

/** An SPMC whose built-in partitions are running their receive loops. */
export async function startedSpmc(limits: Partial<SpmcLimits> = {}, partitions = defaultManifest()): Promise<Spmc> {
  const spmc = new Spmc({ partitions, limits });
  await startBuiltinPartitions(spmc, (id, e) => {
    throw new Error(`partition ${hex(id)} failed: ${String(e)}`);
  });
  return spmc;
}

/** Settle a call that may block into its decoded answer. */
export async function settle(out: Registers | Pending, version: FfaVersion = FFA_VERSION_1_2): Promise<FfaCall> {
  const r = isPending(out) ? await out.answer : out;
  const d = decodeCall(r, version);
  if (!d.ok) throw new Error(`undecodable ${r.map((v) => v.toString(16))}`);
  return d.call;
}

/** The errno a driver operation failed with, or 'none'. */
export async function errnoOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'none';
  } catch (e) {
    return e instanceof FfaDriverError ? e.errno : `not an FfaDriverError: ${(e as Error).message}`;
  }
}

/** The transport status a call failed with, or 'OK'. */
export async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'OK';
  } catch (e) {
    return e instanceof TransportError ? e.code : `not a TransportError: ${(e as Error).message}`;
  }
}

// Waiting for events, not for time: a test that sleeps and then expects something to have happened
// fails on a busy machine. These resolve on the event itself and have no bound of their own (the
// test runner's timeout is the only one).

/** What a stream or callback hands over, with waits on what has arrived (checked at each arrival). */
export class Arrivals<T> {
  readonly items: T[] = [];
  private waiting: { ready: (items: readonly T[]) => boolean; resolve: () => void }[] = [];

  readonly push = (item: T): void => {
    this.items.push(item);
    this.waiting = this.waiting.filter((w) => (w.ready(this.items) ? void w.resolve() : true));
  };

  /** Resolves with the items once `ready` holds for them. */
  when(ready: (items: readonly T[]) => boolean): Promise<T[]> {
    if (ready(this.items)) return Promise.resolve(this.items);
    return new Promise((resolve) => this.waiting.push({ ready, resolve: () => resolve(this.items) }));
  }

  /** Resolves once `n` items have arrived. */
  atLeast(n: number): Promise<T[]> {
    return this.when((items) => items.length >= n);
  }

  /** Resolves with the first item (from now on or already here) that matches. */
  async first(match: (item: T) => boolean): Promise<T> {
    const items = await this.when((all) => all.some(match));
    return items.find(match)!;
  }
}

/**
 * Resolves once the model says `ready`, checked now and after every call through the session core
 * (every transport's), every attach and detach, and every console line.
 */
export function modelReaches(spmc: Spmc, ready: () => boolean): Promise<void> {
  if (ready()) return Promise.resolve();
  return new Promise((resolve) => {
    let done = false;
    const check = () => {
      if (done || !ready()) return;
      done = true;
      stopCalls();
      stopModel();
      resolve();
    };
    const stopCalls = SessionCore.for(spmc).use({ name: 'test-wait', after: check });
    // Observers hear of a detach before the model carries it out: look once it is done.
    const stopModel = spmc.observe({ attach: check, detach: () => queueMicrotask(check), console: check });
  });
}

/** Resolves once vCPU `vcpu` of `endpoint` is in `state`. */
export const vcpuReaches = (spmc: Spmc, endpoint: EndpointId, vcpu: number, state: VcpuState): Promise<void> =>
  modelReaches(spmc, () => spmc.endpoint(endpoint)?.vcpus[vcpu]?.state === state);

/** Resolves once the VM `endpoint` has left the model (detached, or released by its transport). */
export const released = (spmc: Spmc, endpoint: EndpointId): Promise<void> => modelReaches(spmc, () => !spmc.endpoint(endpoint));

/** The Pending of the next call by `endpoint` that blocks, through the session core (start waiting before making the call). */
export function nextBlockedCall(spmc: Spmc, endpoint: EndpointId): Promise<Pending> {
  return new Promise((resolve) => {
    const stop = SessionCore.for(spmc).use({
      name: 'test-blocked-call',
      after: (c, out) => {
        if (c.endpoint !== endpoint || !isPending(out)) return;
        stop();
        resolve(out);
      },
    });
  });
}

/** Resolves once the transport has given up on `p` (its client went away or its deadline passed) and the model has dealt with it. */
export function abandoned(p: Pending): Promise<void> {
  if (p.abandoned) return Promise.resolve();
  return new Promise((resolve) => {
    const before = p.onAbandonObserved;
    p.onAbandonObserved = () => {
      before?.();
      resolve();
    };
  });
}

/**
 * The live trace of a server over SSE (`url`: /v1/trace with its filters). Resolves once the
 * stream is open: the server subscribes in the same tick as it writes the stream's head, so every
 * call made from then on is in `records`.
 */
export async function sseTrace(url: string): Promise<{ records: Arrivals<TraceRecord>; close: () => Promise<void> }> {
  const ctl = new AbortController();
  const res = await fetch(url, { signal: ctl.signal });
  if (res.headers.get('content-type') !== 'text/event-stream') throw new Error(`${url}: not an event stream (${res.status})`);
  const records = new Arrivals<TraceRecord>();
  const reading = (async () => {
    const dec = new TextDecoder();
    let buf = '';
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        buf += dec.decode(chunk, { stream: true });
        for (let i = buf.indexOf('\n\n'); i >= 0; i = buf.indexOf('\n\n')) {
          const data = buf
            .slice(0, i)
            .split('\n')
            .find((l) => l.startsWith('data: '));
          buf = buf.slice(i + 2);
          if (data) records.push(JSON.parse(data.slice(6)) as TraceRecord);
        }
      }
    } catch (e) {
      if (!ctl.signal.aborted) throw e;
    }
  })();
  return {
    records,
    close: async () => {
      ctl.abort();
      await reading;
    },
  };
}

/**
 * A model served as `serve` serves it, on loopback ports of its own: a trace, gRPC (Spmc and Debug)
 * and HTTP over one session core. `stop` closes them in reverse order.
 */
export async function servedSpmc(spmc: Spmc, tracerOptions: TracerOptions = {}) {
  const core = SessionCore.for(spmc);
  const tracer = new Tracer(core, tracerOptions);
  const grpcServer = new SpmcGrpcServer(core);
  grpcServer.addDebug(tracer);
  const grpcAddr = `127.0.0.1:${await grpcServer.listen('127.0.0.1:0')}`;
  const app = await buildHttpApp({ core, tracer });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const addr = app.server.address();
  const base = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
  const stop = async () => {
    await app.close();
    await grpcServer.stop(200);
    await tracer.close();
  };
  return { spmc, core, tracer, grpcServer, grpcAddr, app, base, stop };
}
