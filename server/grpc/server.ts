// grpc-js binding of remote_spmc.v1.Spmc onto the SPMC model, plus grpc.health.v1.
//
// Sessions map an opaque token to an endpoint: identity comes from the session, never from
// registers. FF-A errors travel in registers; gRPC status codes are only for the transport.

import { randomBytes } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import { type EndpointId, isUuidString, parseUuid, type Registers } from '../../proto/ffa/index.js';
import type { AttachRequest__Output as AttachRequest } from '../../proto/gen/remote_spmc/v1/AttachRequest.js';
import { regionsFromWire } from '../../proto/attach-regions.js';
import type { DetachRequest__Output as DetachRequest } from '../../proto/gen/remote_spmc/v1/DetachRequest.js';
import type { InterruptsRequest__Output as InterruptsRequest } from '../../proto/gen/remote_spmc/v1/InterruptsRequest.js';
import type { MemoryRequest__Output as MemoryRequest } from '../../proto/gen/remote_spmc/v1/MemoryRequest.js';
import type { ReadMemoryRequest__Output as ReadMemoryRequest } from '../../proto/gen/remote_spmc/v1/ReadMemoryRequest.js';
import type { WriteMemoryRequest__Output as WriteMemoryRequest } from '../../proto/gen/remote_spmc/v1/WriteMemoryRequest.js';
import {
  type CallMessage as CallRequest,
  debugServiceDefinition,
  fastSpmcServiceDefinition,
  MAX_MEMORY_ACCESS,
  registerFile,
  SPMC_SERVICE_NAME,
  u64FromWire,
  type WireU64,
  u64ToWire,
} from '../../proto/wire.js';
import type { TraceRequest__Output as TraceRequest } from '../../proto/gen/remote_spmc/v1/TraceRequest.js';
import { stateSnapshot } from '../debug/views.js';
import { type TraceFilter, type TraceLine, toLine } from '../debug/records.js';
import type { Tracer } from '../debug/tracer.js';
import { isPending, type Pending } from '../spmc/pending.js';
import { MemoryFault, type Spmc, SpmcError } from '../spmc/spmc.js';

export interface Logger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

const silent: Logger = { info() {}, warn() {} };

/** A refusal carrying its gRPC status. */
export class StatusError extends Error {
  constructor(
    readonly code: grpc.status,
    details: string,
  ) {
    super(details);
  }
}

/** What a request that failed to parse turns into, so it can be refused as INVALID_ARGUMENT. */
interface Malformed {
  malformed: string;
}
const isMalformed = (v: unknown): v is Malformed => typeof v === 'object' && v !== null && 'malformed' in v;

export function toStatus(e: unknown): { code: grpc.status; details: string } {
  if (e instanceof StatusError) return { code: e.code, details: e.message };
  if (e instanceof MemoryFault) return { code: grpc.status.PERMISSION_DENIED, details: e.message };
  if (e instanceof SpmcError) {
    const code = {
      'invalid-argument': grpc.status.INVALID_ARGUMENT,
      'already-exists': grpc.status.ALREADY_EXISTS,
      'permission-denied': grpc.status.PERMISSION_DENIED,
      'not-found': grpc.status.UNAUTHENTICATED,
      'resource-exhausted': grpc.status.RESOURCE_EXHAUSTED,
    }[e.kind];
    return { code, details: e.message };
  }
  return { code: grpc.status.INTERNAL, details: e instanceof Error ? e.message : String(e) };
}

interface Session {
  token: string;
  endpointId: EndpointId;
  streams: Set<grpc.ServerDuplexStream<unknown, unknown>>;
  /** Open Interrupts streams; they end with the session. */
  interruptLines: Set<grpc.ServerWritableStream<unknown, unknown>>;
}

export interface SpmcServerOptions {
  logger?: Logger;
}

export class SpmcGrpcServer {
  private readonly server: grpc.Server;
  private readonly health = new HealthImplementation({ '': 'SERVING', [SPMC_SERVICE_NAME]: 'SERVING' });
  private readonly sessions = new Map<string, Session>();
  private readonly log: Logger;
  private stopping = false;

  constructor(
    private readonly spmc: Spmc,
    opts: SpmcServerOptions = {},
  ) {
    this.log = opts.logger ?? silent;
    this.server = new grpc.Server({
      'grpc.keepalive_time_ms': 10_000,
      'grpc.keepalive_timeout_ms': 5_000,
      'grpc.keepalive_permit_without_calls': 1,
    });
    this.server.addService(guardedDefinition(), this.handlers());
    this.health.addToServer(this.server);
  }

  /** Serve the Debug service (trace stream and state snapshot) beside Spmc. */
  addDebug(tracer: Tracer): void {
    this.server.addService(debugServiceDefinition(), {
      Trace: (stream: grpc.ServerWritableStream<TraceRequest, object>) => {
        const req = stream.request;
        const filter: TraceFilter = { endpoint: req.endpoint ?? undefined, function: req.function || undefined, errorsOnly: req.errors_only };
        // A TraceLine is the TraceRecord message, field for field.
        const send = (l: TraceLine) => stream.write(l);
        if (req.recent > 0) for (const r of tracer.recent(filter, Math.min(req.recent, 10000))) send(toLine(r));
        whileOpen(stream, this.debugStreams, tracer.subscribe(filter, (lines) => lines.forEach(send)));
      },
      State: (_call: grpc.ServerUnaryCall<object, object>, cb: grpc.sendUnaryData<object>) => cb(null, { json: JSON.stringify(stateSnapshot(this.spmc)) }),
    });
  }

  private readonly debugStreams = new Set<grpc.ServerWritableStream<TraceRequest, object>>();

  /** Bind and start; resolves to the port actually bound (for "host:0"). */
  listen(address: string): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port)));
    });
  }

  /** Stop taking calls, end open streams with UNAVAILABLE, and shut down. */
  async stop(graceMs = 2000): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.health.setStatus('', 'NOT_SERVING');
    this.health.setStatus(SPMC_SERVICE_NAME, 'NOT_SERVING');
    for (const s of this.sessions.values()) {
      for (const stream of [...s.streams, ...s.interruptLines]) stream.emit('error', { code: grpc.status.UNAVAILABLE, details: 'server shutting down' });
    }
    for (const stream of this.debugStreams) stream.end();
    for (const stream of this.memoryStreams) stream.emit('error', { code: grpc.status.UNAVAILABLE, details: 'server shutting down' });
    await new Promise<void>((resolve) => {
      const force = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, graceMs);
      this.server.tryShutdown(() => {
        clearTimeout(force);
        resolve();
      });
    });
  }

  get sessionCount(): number {
    return this.sessions.size;
  }

  // ---- sessions for the other transports (the HTTP JSON one) ------------------------------------

  /** Attach as the gRPC Attach does; the token works on every transport. */
  openSession(req: Omit<AttachRequest, 'ram_bytes'> & { ram_bytes: bigint }): { session: string; endpointId: number; ramBase: bigint; ramBytes: bigint } {
    const rep = this.attach({ ...req, ram_bytes: u64ToWire(req.ram_bytes) } as unknown as AttachRequest) as { session: string; endpoint_id: number };
    const ep = this.spmc.endpoint(rep.endpoint_id)!;
    return { session: rep.session, endpointId: rep.endpoint_id, ramBase: ep.ram.base, ramBytes: ep.ram.size };
  }

  /** The endpoint behind a token; throws UNAUTHENTICATED/UNAVAILABLE as a gRPC status would. */
  sessionEndpoint(token: string): number {
    return this.session(token).endpointId;
  }

  closeSession(token: string, why = 'detach'): void {
    this.release(this.session(token), why);
  }

  private session(token: string): Session {
    if (this.stopping) throw new StatusError(grpc.status.UNAVAILABLE, 'server shutting down');
    const s = this.sessions.get(token);
    if (!s) throw new StatusError(grpc.status.UNAUTHENTICATED, 'unknown session');
    return s;
  }

  private release(s: Session, why: string): void {
    if (!this.sessions.delete(s.token)) return;
    for (const line of s.interruptLines) line.end();
    s.interruptLines.clear();
    try {
      this.spmc.detach(s.endpointId);
    } catch (e) {
      this.log.warn({ endpoint: s.endpointId, err: (e as Error).message }, 'detach failed');
    }
    this.log.info({ endpoint: s.endpointId, why }, 'endpoint released');
  }

  private readMemory(s: Session, address: WireU64, length: number): Buffer {
    if (length === 0 || length > MAX_MEMORY_ACCESS) throw new StatusError(grpc.status.INVALID_ARGUMENT, `length must be 1..${MAX_MEMORY_ACCESS}`);
    return Buffer.from(this.guarded(s, () => this.spmc.readMemory(s.endpointId, u64FromWire(address), length)));
  }

  private writeMemory(s: Session, address: WireU64, data: Buffer): void {
    if (data.length === 0 || data.length > MAX_MEMORY_ACCESS) throw new StatusError(grpc.status.INVALID_ARGUMENT, `data must be 1..${MAX_MEMORY_ACCESS} bytes`);
    this.guarded(s, () => this.spmc.writeMemory(s.endpointId, u64FromWire(address), new Uint8Array(data.buffer, data.byteOffset, data.length)));
  }

  /**
   * The session of a stream's request: the stream's first request names it, later ones may leave it
   * empty but may not name another; and it must still exist (it may have been detached meanwhile).
   */
  private streamSession(bound: Session | undefined, named: string): Session {
    if (!bound) return this.session(named);
    if (named !== '' && named !== bound.token) throw new StatusError(grpc.status.INVALID_ARGUMENT, 'a stream carries one session');
    if (!this.sessions.has(bound.token)) throw new StatusError(grpc.status.UNAUTHENTICATED, 'session was detached');
    return bound;
  }

  private readonly memoryStreams = new Set<grpc.ServerDuplexStream<MemoryRequest | Malformed, object>>();

  /**
   * A session's memory accesses on one stream, each answered at once and in order. A refused access
   * (fault, bad length) is answered with its status and the stream carries on; a stream that names
   * no valid session, or another one, ends with the status.
   */
  private memoryStream(stream: grpc.ServerDuplexStream<MemoryRequest | Malformed, object>): void {
    let bound: Session | undefined;
    let done = false;
    whileOpen(stream, this.memoryStreams, () => {});
    stream.on('data', (req: MemoryRequest | Malformed) => {
      if (done) return;
      try {
        if (isMalformed(req)) throw new StatusError(grpc.status.INVALID_ARGUMENT, req.malformed);
        bound = this.streamSession(bound, req.session);
      } catch (e) {
        done = true;
        stream.emit('error', toStatus(e));
        return;
      }
      try {
        if (req.read !== undefined) stream.write({ data: this.readMemory(bound, req.address, req.read) });
        else if (req.write !== undefined) {
          this.writeMemory(bound, req.address, req.write);
          stream.write({});
        } else throw new StatusError(grpc.status.INVALID_ARGUMENT, 'an access is a read or a write');
      } catch (e) {
        const { code, details } = toStatus(e);
        stream.write({ status: code, details });
      }
    });
    stream.on('end', () => {
      if (!done) stream.end();
      done = true;
    });
    stream.on('error', () => {
      done = true;
    });
  }

  /** A memory access; a fault is logged before it goes back as PERMISSION_DENIED. */
  private guarded<T>(s: Session, access: () => T): T {
    try {
      return access();
    } catch (e) {
      if (e instanceof MemoryFault) this.log.warn({ endpoint: s.endpointId, address: `0x${e.address.toString(16)}`, length: e.length, access: e.access }, 'memory fault');
      throw e;
    }
  }

  private attach(req: AttachRequest): object {
    if (this.stopping) throw new StatusError(grpc.status.UNAVAILABLE, 'server shutting down');
    const bad = req.uuids.find((u) => !isUuidString(u));
    if (bad !== undefined) throw new StatusError(grpc.status.INVALID_ARGUMENT, `uuids: ${JSON.stringify(bad)} is not a UUID`);
    const ep = this.spmc.attach({
      endpointId: req.endpoint_id,
      name: req.name,
      vcpuCount: req.vcpu_count,
      ramBytes: u64FromWire(req.ram_bytes),
      properties: req.properties,
      uuids: req.uuids.map(parseUuid),
      credential: req.credential,
      regions: regionsFromWire(req.regions),
    });
    const token = randomBytes(18).toString('base64url');
    this.sessions.set(token, { token, endpointId: ep.id, streams: new Set(), interruptLines: new Set() });
    this.log.info({ endpoint: ep.id, name: ep.name, kind: ep.kind }, 'endpoint attached');
    return { session: token, endpoint_id: ep.id, ram_base: u64ToWire(ep.ram.base), ram_bytes: u64ToWire(ep.ram.size) };
  }

  /** One SMCCC call of a session: the answer now, or the Pending that will give it. */
  private call(req: CallRequest, s: Session, via: string): Registers | Pending {
    const x = registerFile(req.x);
    if (!x) throw new StatusError(grpc.status.INVALID_ARGUMENT, `x: at most 18 registers, got ${req.x.length}`);
    return this.spmc.handle(s.endpointId, req.vcpu, x, via);
  }

  private handlers(): grpc.UntypedServiceImplementation {
    const unary =
      <Req>(fn: (req: Req, call: grpc.ServerUnaryCall<Req | Malformed, object>) => object | Promise<object>) =>
      (call: grpc.ServerUnaryCall<Req | Malformed, object>, cb: grpc.sendUnaryData<object>) => {
        try {
          if (isMalformed(call.request)) throw new StatusError(grpc.status.INVALID_ARGUMENT, call.request.malformed);
          const out = fn(call.request, call);
          if (out instanceof Promise) out.then((r) => cb(null, r), (e) => cb(toStatus(e)));
          else cb(null, out);
        } catch (e) {
          cb(toStatus(e));
        }
      };

    return {
      Attach: unary<AttachRequest>((req) => this.attach(req)),
      Detach: unary<DetachRequest>((req) => {
        this.release(this.session(req.session), 'detach');
        return {};
      }),
      // A client that gives up on a blocked call leaves the model as it is; the answer is dropped.
      Call: unary<CallRequest>((req, call) => {
        const out = this.call(req, this.session(req.session), 'grpc-unary');
        if (!isPending(out)) return { x: out };
        call.on('cancelled', () => out.abandon());
        return out.answer.then((r) => ({ x: r }));
      }),
      ReadMemory: unary<ReadMemoryRequest>((req) => ({ data: this.readMemory(this.session(req.session), req.address, req.length) })),
      WriteMemory: unary<WriteMemoryRequest>((req) => {
        this.writeMemory(this.session(req.session), req.address, req.data);
        return {};
      }),
      Memory: (stream: grpc.ServerDuplexStream<MemoryRequest | Malformed, object>) => this.memoryStream(stream),
      Session: (stream: grpc.ServerDuplexStream<CallRequest | Malformed, object>) => this.sessionStream(stream),
      Interrupts: (stream: grpc.ServerWritableStream<InterruptsRequest | Malformed, object>) => this.interruptLine(stream),
    };
  }

  /** The endpoint's interrupts, pushed as the model raises them. */
  private interruptLine(stream: grpc.ServerWritableStream<InterruptsRequest | Malformed, object>): void {
    let s: Session;
    try {
      if (isMalformed(stream.request)) throw new StatusError(grpc.status.INVALID_ARGUMENT, stream.request.malformed);
      s = this.session(stream.request.session);
    } catch (e) {
      stream.emit('error', toStatus(e));
      return;
    }
    const line = stream as grpc.ServerWritableStream<unknown, unknown>;
    const endpoint = s.endpointId;
    const stop = this.spmc.observe({
      interrupt: (id, intid) => {
        if (id === endpoint) stream.write({ intid, vcpu: 0 });
      },
    });
    whileOpen(line, s.interruptLines, stop);
    this.spmc.resignal(endpoint);
  }

  /**
   * One vCPU's calls in order. The stream belongs to the session named by its first request. A
   * client that half-closes leaves its VM attached; a stream cancelled under it (the client went
   * away) releases the VM once no other stream of the session remains.
   */
  private sessionStream(stream: grpc.ServerDuplexStream<CallRequest | Malformed, object>): void {
    let bound: Session | undefined;
    let done = false;
    const fail = (e: unknown) => {
      if (done) return;
      done = true;
      bound?.streams.delete(stream as grpc.ServerDuplexStream<unknown, unknown>);
      stream.emit('error', toStatus(e));
    };
    // Calls are answered in order: while one is blocked, later ones wait their turn.
    const queue: (CallRequest | Malformed)[] = [];
    let busy: Pending | undefined;
    let halfClosed = false;
    const pump = () => {
      while (!done && !busy && queue.length > 0) {
        const req = queue.shift()!;
        try {
          if (isMalformed(req)) throw new StatusError(grpc.status.INVALID_ARGUMENT, req.malformed);
          const session = this.streamSession(bound, req.session);
          if (!bound) {
            bound = session;
            bound.streams.add(stream as grpc.ServerDuplexStream<unknown, unknown>);
          }
          const out = this.call(req, session, 'grpc-session');
          if (isPending(out)) {
            busy = out;
            // Answered inside another endpoint's call: written once that call is over (a watcher,
            // not a promise: the hot path of every blocking call).
            out.whenComplete((r) =>
              queueMicrotask(() => {
                busy = undefined;
                if (!done) stream.write({ x: r });
                pump();
              }),
            );
          } else {
            stream.write({ x: out });
          }
        } catch (e) {
          fail(e);
        }
      }
      // Half-closed and nothing left to answer: end our side too.
      if (!done && !busy && queue.length === 0 && halfClosed) {
        done = true;
        stream.end();
      }
    };
    stream.on('data', (req: CallRequest | Malformed) => {
      if (done) return;
      queue.push(req);
      pump();
    });
    // A clean half-close ends our side too. A cancel also arrives as 'end' then 'close', with
    // 'cancelled' last, so whether the client went away is decided once the events have settled.
    stream.on('end', () => {
      halfClosed = true;
      pump();
    });
    let cancelled = false;
    stream.on('cancelled', () => {
      done = true;
      cancelled = true;
      busy?.abandon();
      if (!bound || !bound.streams.delete(stream as grpc.ServerDuplexStream<unknown, unknown>)) return;
      if (bound.streams.size === 0) this.release(bound, 'session stream cancelled');
    });
    stream.on('close', () =>
      setImmediate(() => {
        if (!cancelled) bound?.streams.delete(stream as grpc.ServerDuplexStream<unknown, unknown>);
      }),
    );
    stream.on('error', () => {
      done = true;
    });
  }
}

/** A server stream is in `open` until it ends, however it ends; then `stop` undoes its subscription. */
function whileOpen<S extends NodeJS.EventEmitter>(stream: S, open: Set<S>, stop: () => void): void {
  open.add(stream);
  const close = () => {
    stop();
    open.delete(stream);
  };
  for (const event of ['cancelled', 'close', 'error']) stream.on(event, close);
}

/** The service definition with request parsing that reports malformed input instead of throwing. */
function guardedDefinition(): grpc.ServiceDefinition {
  const def = fastSpmcServiceDefinition();
  const out: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const [name, method] of Object.entries(def)) {
    out[name] = {
      ...method,
      requestDeserialize: (buf: Buffer) => {
        try {
          return method.requestDeserialize(buf);
        } catch (e) {
          return { malformed: `malformed ${name} request: ${(e as Error).message}` } satisfies Malformed;
        }
      },
    };
  }
  return out as grpc.ServiceDefinition;
}
