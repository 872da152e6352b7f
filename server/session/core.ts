// The transport-neutral session core: the one registry of attached endpoints and their sessions,
// the entry points every transport calls (attach, detach, call, guest memory, the interrupt line),
// and the interceptor chain around every call. gRPC, the JSON transport and the in-process
// connector are thin adapters over it.

import { randomBytes } from 'node:crypto';
// Imported: the global `performance` is a getter, and the chain reads the clock twice a call.
import { performance } from 'node:perf_hooks';
import { type EndpointId, hex, isSecureId, isUuidString, parseUuid, type Reason, type Registers } from '../../proto/ffa/index.js';
import { MAX_MEMORY_ACCESS } from '../../proto/wire.js';
import { isPending } from '../spmc/pending.js';
import { type AttachParams, MemoryFault, type Spmc, SpmcError } from '../spmc/spmc.js';
import type { Coherence } from './coherence.js';
import { AttackWatch, type AttackWatchOptions } from './attacks.js';
import { type Interceptor, InterceptedCall, type Outcome } from './interceptors.js';
import { SessionError } from './status.js';

export interface Logger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

const silent: Logger = { info() {}, warn() {} };

/** An attach as a transport receives it: UUIDs as text, to be checked here. */
export type AttachRequest = Omit<AttachParams, 'uuids'> & { uuids?: string[] };

export interface Attached {
  /** The token that names the session on every transport. */
  session: string;
  endpointId: EndpointId;
  ramBase: bigint;
  ramBytes: bigint;
  /** A manifest partition's declared FF-A version (what it should ask FFA_VERSION for); 0 for a VM. */
  ffaVersion: number;
}

export interface Session {
  readonly token: string;
  readonly endpointId: EndpointId;
  /** Open streams (or other holders) of the session: while one is open, the session is kept. */
  readonly holders: Set<object>;
  /** Interrupt lines: each is ended when the session is released; an open one also keeps the session. */
  readonly lines: Set<() => void>;
  /** When (core clock, ms) the session last made a call or lost its last holder: its lease runs from then. */
  lastActive: number;
  /** Set when its last stream was cancelled (the client went away): released at this time unless resumed. */
  graceUntil?: number;
  /** Set once a call asks for coherent guest memory (see coherence.ts). */
  coherence?: Coherence;
}

/** How long a session with no open stream is kept after its last call (ms), unless configured. */
export const DEFAULT_LEASE_MS = 30_000;
/** How long a session whose last stream was cancelled waits for its client to resume it (ms), unless configured. */
export const DEFAULT_GRACE_MS = 0;

export interface SessionCoreOptions {
  logger?: Logger;
  /** Milliseconds, for throttling and rate-limited logs (default performance.now; tests pass their own). */
  clock?: () => number;
  /** How failed credentials are throttled and faults logged (defaults: see attacks.ts). */
  attacks?: Omit<AttackWatchOptions, 'clock' | 'log'>;
  /**
   * A session without an open stream is released this long after its last call (ms, default
   * DEFAULT_LEASE_MS) by the next sweep(): an orphaned unary or JSON attach does not hold a slot forever.
   */
  leaseMs?: number;
  /**
   * A session whose last stream was cancelled is kept this long (ms, default DEFAULT_GRACE_MS: released
   * at once) for its client to resume it with a new stream naming its token.
   */
  graceMs?: number;
}

/** The core to work on, given it or its model. */
export const coreOf = (target: Spmc | SessionCore): SessionCore => (target instanceof SessionCore ? target : SessionCore.for(target));

/** One session core per model: every transport over a model shares its sessions and interceptors. */
const cores = new WeakMap<Spmc, SessionCore>();

export class SessionCore {
  /** The session core of `spmc` (made on first use; `opts` apply then). */
  static for(spmc: Spmc, opts: SessionCoreOptions = {}): SessionCore {
    let core = cores.get(spmc);
    if (!core) cores.set(spmc, (core = new SessionCore(spmc, opts)));
    return core;
  }

  private readonly sessions = new Map<string, Session>();
  private chain: Interceptor[] = [];
  /** Calls skip the chain (see bypassInterceptors). */
  private bypassed = false;
  private readonly log: Logger;
  private stopping = false;
  private readonly clock: () => number;
  readonly leaseMs: number;
  readonly graceMs: number;
  /** Failed credentials (throttled, logged, counted) and rate-limited fault logging. */
  readonly attacks: AttackWatch;

  private constructor(
    readonly spmc: Spmc,
    opts: SessionCoreOptions,
  ) {
    this.log = opts.logger ?? silent;
    this.clock = opts.clock ?? (() => performance.now());
    this.leaseMs = opts.leaseMs ?? DEFAULT_LEASE_MS;
    this.graceMs = opts.graceMs ?? DEFAULT_GRACE_MS;
    this.attacks = new AttackWatch({ ...opts.attacks, clock: this.clock, log: this.log });
  }

  // ---- interceptors ---------------------------------------------------------------------------

  /** Add an interceptor at the end of the chain (the first added sees a call first); returns its removal. */
  use(i: Interceptor): () => void {
    this.chain = [...this.chain, i];
    return () => void (this.chain = this.chain.filter((c) => c !== i));
  }

  /**
   * Let calls skip the chain (true) or go through it again (false); the chain itself is left as it
   * is. What a benchmark switches to measure the chain's cost on one server; off by default.
   */
  bypassInterceptors(on: boolean): void {
    this.bypassed = on;
  }

  // ---- sessions -------------------------------------------------------------------------------

  get sessionCount(): number {
    return this.sessions.size;
  }

  /** The core's clock (ms): what time windows of interceptors (fault rules) are measured with. */
  now(): number {
    return this.clock();
  }

  /** Whether a token names a session still attached (a look, not a call: renews no lease). */
  has(token: string): boolean {
    return this.sessions.has(token);
  }

  get serving(): boolean {
    return !this.stopping;
  }

  /** Stop taking calls: from now on every entry point answers UNAVAILABLE. */
  stop(): void {
    this.stopping = true;
  }

  /**
   * Join as a VM (or as a remote partition, with its credential): a new session. `source` is the
   * peer's address: a source that keeps presenting wrong credentials must wait before it may try again.
   */
  attach(req: AttachRequest, source = 'in-process'): Attached {
    this.checkServing();
    const bad = req.uuids?.find((u) => !isUuidString(u));
    if (bad !== undefined) throw new SessionError('INVALID_ARGUMENT', `uuids: ${JSON.stringify(bad)} is not a UUID`);
    const asPartition = isSecureId(req.endpointId ?? 0);
    if (asPartition) this.attacks.checkAllowed(source);
    let ep;
    try {
      ep = this.spmc.attach({ ...req, uuids: req.uuids?.map(parseUuid) });
    } catch (e) {
      if (asPartition && e instanceof SpmcError && e.kind === 'permission-denied')
        this.attacks.failed(source, { endpoint: hex(req.endpointId!), why: e.message });
      throw e;
    }
    if (asPartition) this.attacks.succeeded(source);
    const token = randomBytes(18).toString('base64url');
    this.sessions.set(token, { token, endpointId: ep.id, holders: new Set(), lines: new Set(), lastActive: this.clock() });
    this.log.info({ endpoint: ep.id, name: ep.name, kind: ep.kind }, 'endpoint attached');
    return { session: token, endpointId: ep.id, ramBase: ep.ram.base, ramBytes: ep.ram.size, ffaVersion: this.spmc.partition(ep.id)?.ffaVersion ?? 0 };
  }

  /** The session behind a token, or UNAUTHENTICATED (UNAVAILABLE while stopping). */
  session(token: string): Session {
    this.checkServing();
    const s = this.sessions.get(token);
    if (!s) throw new SessionError('UNAUTHENTICATED', token === '' ? 'session: none named' : 'session: unknown (never attached, or released)');
    // Every call by token (unary gRPC, JSON, a stream's first request) renews the lease, and ends
    // a grace period: the client is back.
    s.lastActive = this.clock();
    if (s.graceUntil !== undefined) this.resumed(s);
    return s;
  }

  /**
   * The session of a stream's request: the stream's first request names it, later ones may leave
   * it empty but may not name another; and it must still exist (it may have been released).
   */
  streamSession(bound: Session | undefined, named: string): Session {
    if (!bound) return this.session(named);
    if (named !== '' && named !== bound.token) throw new SessionError('INVALID_ARGUMENT', 'session: a stream carries one session');
    this.checkServing();
    if (!this.sessions.has(bound.token)) throw new SessionError('UNAUTHENTICATED', 'session: released while the stream was open');
    return bound;
  }

  /** Leave: the SPMC releases the endpoint. */
  detach(token: string, why = 'detach'): void {
    this.release(this.session(token), why);
  }

  /** A stream (or another holder) keeps the session while it is open; a session in its grace period is resumed. */
  hold(s: Session, holder: object): void {
    s.holders.add(holder);
    if (s.graceUntil !== undefined) this.resumed(s);
  }

  private resumed(s: Session): void {
    s.graceUntil = undefined;
    this.log.info({ endpoint: s.endpointId }, 'session resumed');
  }

  /**
   * A holder is done. One that was cancelled (its client went away) starts the grace period once no
   * other holder remains: the session is released when it ends (at once with grace 0) unless a new
   * stream names it first. One that ended cleanly leaves it attached, on its lease from now.
   */
  letGo(s: Session, holder: object, cancelled: boolean): void {
    if (!s.holders.delete(holder)) return;
    const now = this.clock();
    s.lastActive = now;
    if (!cancelled || s.holders.size > 0) return;
    if (this.graceMs <= 0) this.release(s, 'session stream cancelled');
    else {
      s.graceUntil = now + this.graceMs;
      this.log.info({ endpoint: s.endpointId, graceMs: this.graceMs }, 'session waiting to be resumed');
    }
  }

  /**
   * Release what nobody keeps: sessions whose grace period is over, and sessions with no open stream,
   * interrupt line or blocked call whose lease ran out. The server calls it from a timer; tests with their clock.
   */
  sweep(now = this.clock()): void {
    for (const s of [...this.sessions.values()]) {
      if (s.holders.size > 0) continue;
      if (s.graceUntil !== undefined) {
        if (now >= s.graceUntil) this.release(s, 'grace period over');
      } else if (s.lines.size === 0 && now - s.lastActive >= this.leaseMs && !this.calling(s)) {
        this.release(s, 'lease expired');
      }
    }
  }

  /** A call of the session is blocked in the model with its client still waiting (a unary MSG_WAIT, say): it holds the session. */
  private calling(s: Session): boolean {
    return this.spmc.endpoint(s.endpointId)?.vcpus.some((v) => v.pending !== undefined && !v.pending.abandoned) ?? false;
  }

  private release(s: Session, why: string): void {
    if (!this.sessions.delete(s.token)) return;
    s.coherence?.close();
    for (const end of [...s.lines]) end();
    s.lines.clear();
    try {
      this.spmc.detach(s.endpointId);
    } catch (e) {
      this.log.warn({ endpoint: s.endpointId, err: (e as Error).message }, 'detach failed');
    }
    this.attacks.released(s.endpointId);
    this.log.info({ endpoint: s.endpointId, why }, 'endpoint released');
  }

  private checkServing(): void {
    if (this.stopping) throw new SessionError('UNAVAILABLE', 'server shutting down');
  }

  // ---- calls ----------------------------------------------------------------------------------

  /** One SMCCC call of a session. */
  call(s: Session, vcpu: number, x: Registers, via: string): Outcome {
    return this.handle(s.endpointId, vcpu, x, via);
  }

  /**
   * One SMCCC call of an endpoint through the interceptor chain: each interceptor's `before` in
   * order until one answers (or the model does), then the `after`s of those that ran, innermost first.
   */
  handle(endpoint: EndpointId, vcpu: number, x: Registers, via: string): Outcome {
    const chain = this.chain;
    if (chain.length === 0 || this.bypassed) return this.spmc.handle(endpoint, vcpu, x);
    const version = this.spmc.endpoint(endpoint)?.version;
    if (version === undefined) return this.spmc.handle(endpoint, vcpu, x); // refused as the model refuses it
    const call = new InterceptedCall(endpoint, vcpu, x, version, via, performance.now());
    let out: Outcome | undefined;
    let ran = 0;
    while (ran < chain.length && !out) {
      const i = chain[ran++]!;
      const injected = i.before?.(call);
      if (injected) {
        out = injected.x;
        call.answeredBy = i.name;
        if (injected.reason && !isPending(out)) this.spmc.state.reasons.set(out, injected.reason);
      }
    }
    let answer: Outcome = out ?? this.spmc.handle(endpoint, vcpu, x);
    call.answered = performance.now();
    let reason = isPending(answer) ? undefined : this.spmc.reasonFor(answer);
    while (ran > 0) {
      const instead: Outcome | void = chain[--ran]!.after?.(call, answer, reason);
      if (instead) {
        answer = instead;
        reason = isPending(answer) ? undefined : this.spmc.reasonFor(answer);
      }
    }
    return answer;
  }

  /** Why these answer registers are an FFA_ERROR (undefined for any other answer). */
  reasonFor(answer: Registers): Reason | undefined {
    return this.spmc.reasonFor(answer);
  }

  // ---- guest memory ---------------------------------------------------------------------------

  readMemory(s: Session, address: bigint, length: number): Uint8Array {
    if (!Number.isInteger(length) || length < 1 || length > MAX_MEMORY_ACCESS) {
      throw new SessionError('INVALID_ARGUMENT', `length: ${length} is not 1..${MAX_MEMORY_ACCESS}`);
    }
    return this.guarded(s, () => this.spmc.readMemory(s.endpointId, address, length));
  }

  writeMemory(s: Session, address: bigint, data: Uint8Array): void {
    if (data.length < 1 || data.length > MAX_MEMORY_ACCESS) {
      throw new SessionError('INVALID_ARGUMENT', `data: ${data.length} bytes is not 1..${MAX_MEMORY_ACCESS}`);
    }
    this.guarded(s, () => this.spmc.writeMemory(s.endpointId, address, data));
  }

  /** A memory access; a fault is logged (rate-limited) before it goes back to the caller. */
  private guarded<T>(s: Session, access: () => T): T {
    this.checkServing();
    try {
      return access();
    } catch (e) {
      if (e instanceof MemoryFault) this.attacks.fault(s.endpointId, { address: hex(e.address), length: e.length, access: e.access });
      throw e;
    }
  }

  // ---- the interrupt line ---------------------------------------------------------------------

  /**
   * Connect the session's interrupt line: `deliver` runs for each interrupt the model raises for
   * the endpoint (those already pending are raised again now). `ended` runs if the session is
   * released first. Returns the disconnect.
   */
  interrupts(s: Session, deliver: (intid: number, vcpu: number) => void, ended: () => void = () => {}): () => void {
    const endpoint = s.endpointId;
    const stop = this.spmc.observe({
      interrupt: (id, intid) => {
        if (id === endpoint) deliver(intid, 0);
      },
    });
    const end = () => {
      disconnect();
      ended();
    };
    const disconnect = () => {
      stop();
      s.lines.delete(end);
    };
    s.lines.add(end);
    this.spmc.resignal(endpoint);
    return disconnect;
  }
}
