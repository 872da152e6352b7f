// grpc-js binding of remote_spmc.v1.Spmc onto the SPMC model, plus grpc.health.v1.
//
// A thin adapter: sessions, calls, guest memory and interrupt lines are the session core's.
// FF-A errors travel in registers (with their reason beside them); gRPC status codes are only
// for the transport.

import * as grpc from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import type { AttachRequest__Output as AttachRequest } from '../../proto/gen/remote_spmc/v1/AttachRequest.js';
import { regionsFromWire } from '../../proto/attach-regions.js';
import type { DetachRequest__Output as DetachRequest } from '../../proto/gen/remote_spmc/v1/DetachRequest.js';
import type { InterruptsRequest__Output as InterruptsRequest } from '../../proto/gen/remote_spmc/v1/InterruptsRequest.js';
import type { MemoryRequest__Output as MemoryRequest } from '../../proto/gen/remote_spmc/v1/MemoryRequest.js';
import type { ReadMemoryRequest__Output as ReadMemoryRequest } from '../../proto/gen/remote_spmc/v1/ReadMemoryRequest.js';
import type { WriteMemoryRequest__Output as WriteMemoryRequest } from '../../proto/gen/remote_spmc/v1/WriteMemoryRequest.js';
import type { TraceRequest__Output as TraceRequest } from '../../proto/gen/remote_spmc/v1/TraceRequest.js';
import type { Registers } from '../../proto/ffa/index.js';
import {
  type CallMessage as CallRequest,
  debugServiceDefinition,
  fastSpmcServiceDefinition,
  registerFile,
  type ReplyMessage,
  SPMC_SERVICE_NAME,
  u64FromWire,
  u64ToWire,
} from '../../proto/wire.js';
import { stateSnapshot } from '../debug/views.js';
import type { FaultInjector } from '../faults/injector.js';
import { FaultRuleError } from '../faults/rules.js';
import { type TraceFilter, type TraceLine, toLine } from '../debug/records.js';
import type { Tracer } from '../debug/tracer.js';
import { acceptDirty, isEmptyUpdate } from '../session/coherence.js';
import { coreOf, type Session, type SessionCore } from '../session/core.js';
import type { Outcome } from '../session/interceptors.js';
import { SessionError, statusOf } from '../session/status.js';
import { peerAddress } from '../session/throttle.js';
import { bearer, type TokenKind, Tokens } from '../session/tokens.js';
import { isPending, type Pending } from '../spmc/pending.js';
import type { Spmc } from '../spmc/spmc.js';

/** A refusal as a gRPC status: the session core's one mapping, by name. */
export function toStatus(e: unknown): { code: grpc.status; details: string } {
  const { status, message } = statusOf(e);
  return { code: grpc.status[status], details: message };
}

/** What a request that failed to parse turns into, so it can be refused as INVALID_ARGUMENT. */
interface Malformed {
  malformed: string;
}
const isMalformed = (v: unknown): v is Malformed => typeof v === 'object' && v !== null && 'malformed' in v;
const malformed = (m: Malformed) => new SessionError('INVALID_ARGUMENT', m.malformed);

/** Any server stream we may end: Session, Memory, Interrupts and Trace streams. */
type AnyStream = NodeJS.EventEmitter & { end(): void };

/** Requests a Session stream reads ahead while earlier ones wait to be answered. */
export const SESSION_QUEUE = 64;

/** How often the server pings an idle client's connection (ms), unless configured; the answer may take half that. */
export const DEFAULT_KEEPALIVE_MS = 10_000;

export interface SpmcGrpcOptions {
  /** Requests read ahead per Session stream (default SESSION_QUEUE); past it the stream is not read. */
  sessionQueue?: number;
  /** TLS (PEM): with `ca`, clients must present a certificate it signed (mTLS). None: plaintext. */
  tls?: ServerTls;
  /** The join token Attach needs and the admin token the Debug service needs (none: not asked). */
  tokens?: Tokens;
  /**
   * Ping each client connection this often (ms, default DEFAULT_KEEPALIVE_MS); one whose ping goes
   * unanswered for half as long is dropped, and its Session streams start their grace period.
   */
  keepaliveMs?: number;
}

export interface ServerTls {
  cert: Buffer;
  key: Buffer;
  ca?: Buffer;
}

/** Server credentials for `tls`; plaintext without it. */
export function serverCredentials(tls?: ServerTls): grpc.ServerCredentials {
  if (!tls) return grpc.ServerCredentials.createInsecure();
  return grpc.ServerCredentials.createSsl(tls.ca ?? null, [{ private_key: tls.key, cert_chain: tls.cert }], tls.ca !== undefined);
}

export class SpmcGrpcServer {
  private readonly server: grpc.Server;
  private readonly health = new HealthImplementation({ '': 'SERVING', [SPMC_SERVICE_NAME]: 'SERVING' });
  /** Streams to end with UNAVAILABLE on stop: Session, Memory and Interrupts streams. */
  private readonly openStreams = new Set<AnyStream>();
  private readonly debugStreams = new Set<AnyStream>();
  private stopping = false;
  /** Session and Memory streams not read from now: their clients are not reading the answers. */
  private readonly paused = new Set<object>();

  private readonly core: SessionCore;

  /** Per session, per vCPU: the last numbered call and its answer (see numbered()). */
  private readonly lastCalls = new WeakMap<Session, Map<number, { seq: number; reply?: ReplyMessage }>>();

  /** Requests a Session stream reads ahead of its answers (see sessionStream). */
  private readonly sessionQueue: number;

  private readonly tls?: ServerTls;
  private readonly tokens: Tokens;

  /** Serve a model's session core (given it, or the model). */
  constructor(target: SessionCore | Spmc, opts: SpmcGrpcOptions = {}) {
    this.core = coreOf(target);
    this.sessionQueue = Math.max(1, opts.sessionQueue ?? SESSION_QUEUE);
    this.tls = opts.tls;
    this.tokens = opts.tokens ?? new Tokens({});
    const keepaliveMs = Math.max(1, opts.keepaliveMs ?? DEFAULT_KEEPALIVE_MS);
    this.server = new grpc.Server({
      'grpc.keepalive_time_ms': keepaliveMs,
      'grpc.keepalive_timeout_ms': Math.max(1, Math.floor(keepaliveMs / 2)),
      'grpc.keepalive_permit_without_calls': 1,
    });
    this.server.addService(guardedDefinition(), this.handlers());
    this.health.addToServer(this.server);
  }

  /** How many Session and Memory streams are not read from now (read-only, for tests and metrics). */
  get pausedStreams(): number {
    return this.paused.size;
  }

  /** Serve the Debug service (trace stream, state snapshot and, given an injector, the fault rules) beside Spmc. */
  addDebug(tracer: Tracer, faults?: FaultInjector): void {
    this.server.addService(debugServiceDefinition(), {
      Trace: (stream: grpc.ServerWritableStream<TraceRequest, object>) => {
        try {
          this.checkToken('admin', stream);
        } catch (e) {
          stream.emit('error', toStatus(e));
          return;
        }
        const req = stream.request;
        const filter: TraceFilter = { endpoint: req.endpoint ?? undefined, function: req.function || undefined, errorsOnly: req.errors_only };
        // A TraceLine is the TraceRecord message, field for field. None is written while the
        // client's buffer is full: the feed queues, then drops and counts (see debug/feed.ts).
        // Past the subscriber limit: RESOURCE_EXHAUSTED, with why.
        if (tracer.subscriberCount >= tracer.maxSubscribers) return void stream.emit('error', toStatus(tracer.refusal()));
        const stop = tracer.subscribe(filter, {
          via: 'grpc',
          chunk: 16,
          write: (lines: TraceLine[]) => {
            let ok = true;
            for (const l of lines) ok = stream.write(l);
            return ok;
          },
          buffered: () => stream.writableLength,
          disconnect: (reason) => stream.emit('error', { code: grpc.status.RESOURCE_EXHAUSTED, details: reason }),
        });
        stream.on('drain', () => stop.feed.resume());
        // The recent ones first: live records reach the feed later, from the tracer's next flush.
        if (req.recent > 0) stop.feed.offer(tracer.recent(filter, Math.min(req.recent, 10000)).map((r) => toLine(r)));
        whileOpen(stream, this.debugStreams, stop);
      },
      State: (call: grpc.ServerUnaryCall<object, object>, cb: grpc.sendUnaryData<object>) => {
        try {
          this.checkToken('admin', call);
        } catch (e) {
          return cb(toStatus(e));
        }
        cb(null, { json: JSON.stringify(stateSnapshot(this.core.spmc)) });
      },
      ...this.faultHandlers(faults),
    });
  }

  /** FaultList, FaultAdd, FaultRemove: the rules as JSON (see server/faults/rules.ts), behind the admin token. */
  private faultHandlers(faults: FaultInjector | undefined): grpc.UntypedServiceImplementation {
    const unary =
      (op: (req: Record<string, unknown>) => void) => (call: grpc.ServerUnaryCall<Record<string, unknown>, object>, cb: grpc.sendUnaryData<object>) => {
        try {
          this.checkToken('admin', call);
          if (!faults) throw new SessionError('UNAVAILABLE', 'faults: this server has no fault injection');
          op(call.request);
        } catch (e) {
          if (e instanceof FaultRuleError) {
            const found = e.message.startsWith('id:');
            return cb({
              code: found ? grpc.status.NOT_FOUND : e.message.includes('exists already') ? grpc.status.ALREADY_EXISTS : grpc.status.INVALID_ARGUMENT,
              details: e.message,
            });
          }
          return cb(toStatus(e));
        }
        cb(null, { json: JSON.stringify(faults.list()) });
      };
    return {
      FaultList: unary(() => {}),
      FaultAdd: unary((req) => {
        let rule: unknown;
        try {
          rule = JSON.parse(String(req.rule_json ?? ''));
        } catch (e) {
          throw new FaultRuleError(`rule_json: not JSON (${(e as Error).message})`);
        }
        faults!.add(rule);
      }),
      FaultRemove: unary((req) => {
        if (!faults!.remove(String(req.id ?? ''))) throw new FaultRuleError(`id: no fault rule ${JSON.stringify(req.id)}`);
      }),
    };
  }

  /** Bind and start; resolves to the port actually bound (for "host:0"). */
  listen(address: string): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.bindAsync(address, serverCredentials(this.tls), (err, port) => (err ? reject(err) : resolve(port)));
    });
  }

  /** A call's `authorization: Bearer` token must be the configured `kind` token (when one is). */
  private checkToken(kind: TokenKind, call: { metadata: grpc.Metadata; getPeer(): string }): void {
    if (!this.tokens.required(kind)) return;
    const presented = bearer(call.metadata.get('authorization').map(String));
    this.tokens.check(kind, presented, peerAddress(call.getPeer()));
  }

  /** Stop taking calls, end open streams with UNAVAILABLE, and shut down. */
  async stop(graceMs = 2000): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.core.stop();
    this.health.setStatus('', 'NOT_SERVING');
    this.health.setStatus(SPMC_SERVICE_NAME, 'NOT_SERVING');
    for (const stream of this.openStreams) stream.emit('error', { code: grpc.status.UNAVAILABLE, details: 'server shutting down' });
    for (const stream of this.debugStreams) stream.end();
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

  /** One SMCCC call of a session: the answer now, or the Pending that will give it. */
  private call(req: CallRequest, s: Session, via: string): Outcome {
    const x = registerFile(req.x);
    if (!x) throw new SessionError('INVALID_ARGUMENT', `x: at most 18 registers, got ${req.x.length}`);
    if (req.coherent || req.dirty) acceptDirty(this.core, s, req.dirty ?? []);
    return this.core.call(s, req.vcpu, x, via);
  }

  /**
   * A numbered call (CallRequest.seq) of a session's vCPU: the record of its answer, to fill in or,
   * when the call is one resent after its connection dropped and was answered, the answer to send
   * again instead of making the call twice. Undefined for an unnumbered call. One record per vCPU
   * (calls on a vCPU are in order, so only the last can be resent), kept as long as the session.
   */
  private numbered(s: Session, req: CallRequest): { seq: number; reply?: ReplyMessage } | undefined {
    const seq = req.seq ?? 0;
    if (seq === 0) return undefined;
    let byVcpu = this.lastCalls.get(s);
    if (!byVcpu) this.lastCalls.set(s, (byVcpu = new Map()));
    const last = byVcpu.get(req.vcpu);
    // Any other number is a new call: a client that starts over (a restarted process resuming the
    // session by its token) numbers from wherever it likes.
    if (last && seq === last.seq) {
      if (last.reply) return last;
      // It blocked, and was abandoned with its stream (or is still blocked on a stream not yet seen broken).
      throw new SessionError('UNAVAILABLE', `seq: call ${seq} of vCPU ${req.vcpu} was abandoned when its stream broke`);
    }
    const next = { seq };
    byVcpu.set(req.vcpu, next);
    return next;
  }

  /**
   * The reply message for answer registers: the reason rides along when it is a refusal, and what
   * changed in guest memory when the call asked for coherence (nothing when nothing changed).
   */
  private reply(x: Registers, req?: CallRequest, s?: Session): ReplyMessage {
    const reason = this.core.reasonFor(x);
    const m: ReplyMessage = reason ? { x, reason } : { x };
    if (req?.coherent && s?.coherence) {
      const update = s.coherence.update();
      if (!isEmptyUpdate(update)) m.coherence = update;
    }
    return m;
  }

  private handlers(): grpc.UntypedServiceImplementation {
    const unary =
      <Req>(fn: (req: Req, call: grpc.ServerUnaryCall<Req | Malformed, object>) => object | Promise<object>) =>
      (call: grpc.ServerUnaryCall<Req | Malformed, object>, cb: grpc.sendUnaryData<object>) => {
        try {
          if (isMalformed(call.request)) throw malformed(call.request);
          const out = fn(call.request, call);
          if (out instanceof Promise)
            out.then(
              (r) => cb(null, r),
              (e) => cb(toStatus(e)),
            );
          else cb(null, out);
        } catch (e) {
          cb(toStatus(e));
        }
      };

    return {
      Attach: unary<AttachRequest>((req, call) => {
        this.checkToken('join', call);
        const a = this.core.attach(
          {
            endpointId: req.endpoint_id,
            name: req.name,
            vcpuCount: req.vcpu_count,
            ramBytes: u64FromWire(req.ram_bytes),
            properties: req.properties,
            uuids: req.uuids,
            credential: req.credential,
            regions: regionsFromWire(req.regions),
            ramBase: u64FromWire(req.ram_base),
          },
          peerAddress(call.getPeer()),
        );
        return { session: a.session, endpoint_id: a.endpointId, ram_base: u64ToWire(a.ramBase), ram_bytes: u64ToWire(a.ramBytes), ffa_version: a.ffaVersion };
      }),
      Detach: unary<DetachRequest>((req) => {
        this.core.detach(req.session);
        return {};
      }),
      // A client that gives up on a blocked call leaves the model as it is; the answer is dropped.
      Call: unary<CallRequest>((req, call) => {
        const s = this.core.session(req.session);
        const out = this.call(req, s, 'grpc-unary');
        if (!isPending(out)) return this.reply(out, req, s);
        call.on('cancelled', () => out.abandon());
        return out.answer.then((r) => this.reply(r, req, s));
      }),
      ReadMemory: unary<ReadMemoryRequest>((req) => ({
        data: Buffer.from(this.core.readMemory(this.core.session(req.session), u64FromWire(req.address), req.length)),
      })),
      WriteMemory: unary<WriteMemoryRequest>((req) => {
        this.core.writeMemory(this.core.session(req.session), u64FromWire(req.address), req.data);
        return {};
      }),
      Memory: (stream: grpc.ServerDuplexStream<MemoryRequest | Malformed, object>) => this.memoryStream(stream),
      Session: (stream: grpc.ServerDuplexStream<CallRequest | Malformed, object>) => this.sessionStream(stream),
      Interrupts: (stream: grpc.ServerWritableStream<InterruptsRequest | Malformed, object>) => this.interruptLine(stream),
    };
  }

  /**
   * A session's memory accesses on one stream, each answered at once and in order. A refused access
   * (fault, bad length) is answered with its status and the stream carries on; a stream that names
   * no valid session, or another one, ends with the status. While open, the stream holds its session
   * as a Session stream does: its cancel (the client went away) starts the grace period once no other
   * stream of the session remains.
   */
  private memoryStream(stream: grpc.ServerDuplexStream<MemoryRequest | Malformed, object>): void {
    let bound: Session | undefined;
    let done = false;
    let cancelled = false;
    whileOpen(stream, this.openStreams, () => {});
    stream.on('cancelled', () => {
      cancelled = true;
      if (bound) this.core.letGo(bound, stream, true);
    });
    // As for Session streams: a cancel arrives as 'close' too, so a clean end is decided after it.
    stream.on('close', () =>
      setImmediate(() => {
        if (!cancelled && bound) this.core.letGo(bound, stream, false);
      }),
    );
    // A client that does not read its answers (up to 1 MiB each) is not read from either.
    const paced = pacedBy(stream, this.paused);
    stream.on('data', (req: MemoryRequest | Malformed) => {
      if (done) return;
      try {
        if (isMalformed(req)) throw malformed(req);
        if (!bound) this.core.hold((bound = this.core.streamSession(bound, req.session)), stream);
        else this.core.streamSession(bound, req.session);
      } catch (e) {
        done = true;
        if (bound) this.core.letGo(bound, stream, false);
        stream.emit('error', toStatus(e));
        return;
      }
      try {
        const address = u64FromWire(req.address);
        if (req.read !== undefined) paced.write({ data: Buffer.from(this.core.readMemory(bound, address, req.read)) });
        else if (req.write !== undefined) {
          this.core.writeMemory(bound, address, req.write);
          paced.write({});
        } else throw new SessionError('INVALID_ARGUMENT', 'access: a read or a write');
      } catch (e) {
        const { code, details } = toStatus(e);
        paced.write({ status: code, details });
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

  /** The endpoint's interrupts, pushed as the model raises them; the line ends with the session. */
  private interruptLine(stream: grpc.ServerWritableStream<InterruptsRequest | Malformed, object>): void {
    let s: Session;
    try {
      if (isMalformed(stream.request)) throw malformed(stream.request);
      s = this.core.session(stream.request.session);
    } catch (e) {
      stream.emit('error', toStatus(e));
      return;
    }
    // While the client's buffer is full, interrupts raised meanwhile wait, each once: one still
    // pending when raised again is the same interrupt (as at a GIC), so the wait is bounded.
    const waiting = new Map<string, { intid: number; vcpu: number }>();
    let full = false;
    const raise = (intid: number, vcpu: number) => {
      if (full) waiting.set(`${intid}/${vcpu}`, { intid, vcpu });
      else full = !stream.write({ intid, vcpu });
    };
    stream.on('drain', () => {
      full = false;
      for (const [key, irq] of waiting) {
        waiting.delete(key);
        if (!stream.write(irq)) return void (full = true);
      }
    });
    const disconnect = this.core.interrupts(s, raise, () => stream.end());
    whileOpen(stream, this.openStreams, disconnect);
  }

  /**
   * One vCPU's calls in order. The stream belongs to the session named by its first request. A
   * client that half-closes leaves its VM attached (on its lease); a stream cancelled under it (the
   * client went away) starts the session's grace period once no other stream of the session remains,
   * and a new stream naming the session within it resumes it (see SessionCore.letGo). A call blocked
   * on the cancelled stream is abandoned, as a unary call whose client gives up: its answer is dropped
   * and the vCPU is free for the resumed stream's calls.
   */
  private sessionStream(stream: grpc.ServerDuplexStream<CallRequest | Malformed, object>): void {
    let bound: Session | undefined;
    let done = false;
    whileOpen(stream, this.openStreams, () => {});
    const fail = (e: unknown) => {
      if (done) return;
      done = true;
      if (bound) this.core.letGo(bound, stream, false);
      stream.emit('error', toStatus(e));
    };
    // Calls are answered in order: while one is blocked, later ones wait their turn.
    const queue: (CallRequest | Malformed)[] = [];
    // Read no more requests while this many wait or the client is not reading its answers.
    const paced = pacedBy(stream, this.paused, () => queue.length >= this.sessionQueue);
    let busy: Pending | undefined;
    let halfClosed = false;
    const pump = () => {
      while (!done && !busy && queue.length > 0) {
        const req = queue.shift()!;
        try {
          if (isMalformed(req)) throw malformed(req);
          const session = this.core.streamSession(bound, req.session);
          if (!bound) {
            bound = session;
            this.core.hold(bound, stream);
          }
          const numbered = this.numbered(session, req);
          if (numbered?.reply) {
            paced.write(numbered.reply);
            continue;
          }
          const out = this.call(req, session, 'grpc-session');
          if (isPending(out)) {
            busy = out;
            // Answered inside another endpoint's call: written once that call is over (a watcher,
            // not a promise: the hot path of every blocking call).
            out.whenComplete((r) =>
              queueMicrotask(() => {
                busy = undefined;
                const reply = this.reply(r, req, session);
                if (numbered) numbered.reply = reply;
                if (!done) paced.write(reply);
                pump();
              }),
            );
          } else {
            const reply = this.reply(out, req, session);
            if (numbered) numbered.reply = reply;
            paced.write(reply);
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
      paced.check();
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
      if (bound) this.core.letGo(bound, stream, true);
    });
    stream.on('close', () =>
      setImmediate(() => {
        if (!cancelled && bound) this.core.letGo(bound, stream, false);
      }),
    );
    stream.on('error', () => {
      done = true;
    });
  }
}

/**
 * Read a duplex stream only as fast as its client reads the answers: paused while the answers
 * written fill its buffer (write() answered false) or `backlog()` says enough requests wait, and
 * resumed on 'drain'. grpc-js then stops reading from HTTP/2, whose flow control holds the client.
 */
function pacedBy(
  stream: grpc.ServerDuplexStream<unknown, object>,
  paused: Set<object>,
  backlog: () => boolean = () => false,
): { write(msg: object): void; check(): void } {
  let full = false;
  const check = () => {
    const hold = full || backlog();
    if (hold && !stream.isPaused()) {
      stream.pause();
      paused.add(stream);
    } else if (!hold && stream.isPaused()) {
      stream.resume();
      paused.delete(stream);
    }
  };
  stream.on('close', () => paused.delete(stream));
  stream.on('drain', () => {
    full = false;
    check();
  });
  return {
    write: (msg) => {
      if (!stream.write(msg)) full = true;
      check();
    },
    check,
  };
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
