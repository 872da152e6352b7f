// What both gRPC transports share: the channel, Attach/Detach, guest memory, status mapping.

import * as grpc from '@grpc/grpc-js';
import type { Registers } from '../../proto/ffa/index.js';
import type { AttachReply__Output as AttachReply } from '../../proto/gen/remote_spmc/v1/AttachReply.js';
import type { ReadMemoryReply__Output as ReadMemoryReply } from '../../proto/gen/remote_spmc/v1/ReadMemoryReply.js';
import { type CallMessage, registerFile, type ReplyMessage, spmcClientConstructor, u64FromWire, u64ToWire } from '../../proto/wire.js';
import { type Answer, type AttachOptions, type Transport, TransportError, type TransportErrorCode } from './transport.js';

export function transportError(e: unknown): TransportError {
  if (e instanceof TransportError) return e;
  const s = e as Partial<grpc.ServiceError>;
  if (typeof s.code === 'number') {
    const name = (grpc.status[s.code] ?? 'UNKNOWN') as TransportErrorCode;
    return new TransportError(name, s.details || s.message || 'gRPC error');
  }
  return new TransportError('UNKNOWN', e instanceof Error ? e.message : String(e));
}

/** A call's reply registers, with the refusal's reason; a reply with more than 18 is the server's fault, not ours. */
export function replyRegisters(reply: ReplyMessage): Answer {
  const x = registerFile(reply.x);
  if (!x) throw new TransportError('INTERNAL', 'reply carries more than 18 registers');
  return reply.reason ? Object.assign(x, { reason: reply.reason }) : x;
}

/** How a client proves itself and checks the server: TLS (PEM bytes) and a bearer token. */
export interface ChannelSecurity {
  /** CA certificate(s) the server's certificate must chain to; with it the channel uses TLS. */
  ca?: Buffer;
  /** Client certificate and key, for a server that asks for one (mTLS). */
  cert?: Buffer;
  key?: Buffer;
  /** The name the server's certificate must carry, when it is not the address's host. */
  serverName?: string;
  /** Sent as `authorization: Bearer TOKEN` on every call (the server's --join-token or --admin-token). */
  token?: string;
}

/** Channel credentials for `sec`: TLS when a CA or a client certificate is given, else plaintext. */
export function channelCredentials(sec: ChannelSecurity = {}): grpc.ChannelCredentials {
  if (!sec.ca && !sec.cert && !sec.key) return grpc.credentials.createInsecure();
  return grpc.credentials.createSsl(sec.ca ?? null, sec.key ?? null, sec.cert ?? null);
}

/**
 * Client options for `sec`: the TLS name override, and an interceptor that adds the token to every
 * call's metadata (call credentials would refuse a plaintext channel, and loopback needs no TLS).
 */
export function clientOptions(sec: ChannelSecurity = {}): grpc.ClientOptions {
  const out: grpc.ClientOptions = {};
  if (sec.serverName) out['grpc.ssl_target_name_override'] = sec.serverName;
  const token = sec.token;
  if (token)
    out.interceptors = [
      (options, nextCall) =>
        new grpc.InterceptingCall(nextCall(options), {
          start(metadata, listener, next) {
            metadata.set('authorization', `Bearer ${token}`);
            next(metadata, listener);
          },
        }),
    ];
  return out;
}

/**
 * Whether a stream failed the way a dropped connection fails it: UNAVAILABLE, or INTERNAL (grpc-js's
 * "RST_STREAM ... without gRPC status" when the server gave up on the connection under a live stream).
 */
const droppedWith = (e: TransportError): boolean => e.code === 'UNAVAILABLE' || e.code === 'INTERNAL';

/** Times an interrupt line is opened again after the connection dropped, with no interrupt between. */
const LINE_REOPENS = 3;

type Unary<Req, Rep> = (req: Req, options: grpc.CallOptions, cb: (err: grpc.ServiceError | null, rep: Rep) => void) => void;

export class SpmcChannel {
  readonly client: grpc.Client & Record<string, unknown>;

  constructor(address: string, options: grpc.ChannelOptions = {}, security: ChannelSecurity = {}) {
    const Client = spmcClientConstructor();
    this.client = new Client(address, channelCredentials(security), {
      'grpc.keepalive_time_ms': 10_000,
      'grpc.keepalive_timeout_ms': 5_000,
      ...clientOptions(security),
      ...options,
    }) as grpc.Client & Record<string, unknown>;
  }

  unary<Req, Rep>(method: string, req: Req, options: grpc.CallOptions = {}): Promise<Rep> {
    const fn = (this.client[method] as Unary<Req, Rep>).bind(this.client);
    return new Promise((resolve, reject) => fn(req, options, (err, rep) => (err ? reject(transportError(err)) : resolve(rep))));
  }

  async attach(opts: AttachOptions): Promise<{ session: string; endpointId: number; ramBase: bigint; ramBytes: bigint; ffaVersion?: number }> {
    const rep = await this.unary<object, AttachReply>('Attach', {
      endpoint_id: opts.endpointId ?? 0,
      name: opts.name ?? '',
      vcpu_count: opts.vcpuCount ?? 1,
      ram_bytes: u64ToWire(opts.ramBytes ?? 0n),
      properties: opts.properties ?? 0,
      uuids: opts.uuids ?? [],
      credential: opts.credential ?? '',
    });
    return {
      session: rep.session,
      endpointId: rep.endpoint_id,
      ramBase: u64FromWire(rep.ram_base),
      ramBytes: u64FromWire(rep.ram_bytes),
      ffaVersion: rep.ffa_version || undefined,
    };
  }

  /** One call; `options.deadline` gives up on a call that blocks too long (the SPMC drops its answer). */
  async call(session: string, vcpu: number, x: Registers, options: grpc.CallOptions = {}): Promise<Answer> {
    return replyRegisters(await this.unary<CallMessage, ReplyMessage>('Call', { session, vcpu, x }, options));
  }

  async readMemory(session: string, address: bigint, length: number): Promise<Uint8Array> {
    const rep = await this.unary<object, ReadMemoryReply>('ReadMemory', { session, address: u64ToWire(address), length });
    return new Uint8Array(rep.data);
  }

  async writeMemory(session: string, address: bigint, data: Uint8Array): Promise<void> {
    await this.unary<object, object>('WriteMemory', { session, address: u64ToWire(address), data: Buffer.from(data) });
  }

  /**
   * The Interrupts stream of a session; returns its cancel. A line the connection dropped under
   * (see droppedWith) is opened again, which resumes the session and raises again what is pending; after
   * LINE_REOPENS such reopens with no interrupt between them, or any other failure, `onLost` is told.
   */
  interrupts(session: string, handler: (intid: number, vcpu: number) => void, onLost?: (e: TransportError) => void): () => void {
    const open = this.client['Interrupts'] as (req: object) => grpc.ClientReadableStream<{ intid: number; vcpu: number }>;
    let cancelled = false;
    let reopens = 0;
    let stream: grpc.ClientReadableStream<{ intid: number; vcpu: number }>;
    const connect = () => {
      const line = (stream = open.call(this.client, { session }));
      let over = false;
      const lost = (e: TransportError) => {
        if (cancelled || over) return;
        over = true;
        if (droppedWith(e) && reopens++ < LINE_REOPENS) {
          try {
            return connect();
          } catch {
            // The channel was closed meanwhile: the line is lost for good.
          }
        }
        onLost?.(e);
      };
      line.on('data', (i: { intid: number; vcpu: number }) => {
        reopens = 0;
        handler(i.intid, i.vcpu);
      });
      line.on('error', (e) => lost(transportError(e)));
      line.on('end', () => lost(new TransportError('UNAVAILABLE', 'interrupt line ended')));
    };
    connect();
    return () => {
      cancelled = true;
      stream.cancel();
    };
  }

  async detach(session: string): Promise<void> {
    await this.unary<object, object>('Detach', { session });
  }

  close(): void {
    this.client.close();
  }
}

/** A request sent on an OrderedStream and not yet answered. */
export interface Unanswered<Answer> {
  req: object;
  resolve(a: Answer): void;
  reject(e: Error): void;
  /** Already sent again once, on a stream that replaced a broken one. */
  resent: boolean;
}

/**
 * Requests of one session on one bidirectional stream (Session, Memory), answered in order. The
 * first request names the session, the rest leave it out: so a stream opened to replace a broken
 * one resumes the session by its token (within the server's grace period, `serve --session-grace`). `read` turns a reply into the answer, or
 * throws to refuse it, in the stream's own callback (no extra promise hop on every call).
 *
 * When the connection drops (UNAVAILABLE: say the server's keepalive gave up on a process stopped in
 * a debugger) with requests unanswered, `resend` gets them, once, to send again on a new stream; a
 * request is only resent where that is safe (memory accesses, or calls the server answers once by their number).
 */
export class OrderedStream<Reply, Answer> {
  private readonly stream: grpc.ClientDuplexStream<object, Reply>;
  private readonly waiting: Unanswered<Answer>[] = [];
  private named = false;
  broken = false;

  constructor(
    channel: SpmcChannel,
    method: 'Session' | 'Memory',
    private readonly session: string,
    read: (r: Reply) => Answer,
    private readonly resend?: (unanswered: Unanswered<Answer>[]) => void,
  ) {
    this.stream = (channel.client[method] as () => grpc.ClientDuplexStream<object, Reply>).call(channel.client);
    this.stream.on('data', (reply: Reply) => {
      const w = this.waiting.shift();
      if (!w) return;
      try {
        w.resolve(read(reply));
      } catch (e) {
        w.reject(e as Error);
      }
    });
    this.stream.on('error', (e) => this.fail(transportError(e)));
    this.stream.on('end', () => this.fail(new TransportError('UNAVAILABLE', `${method} stream ended`)));
  }

  private fail(e: TransportError): void {
    this.broken = true;
    const unanswered = this.waiting.splice(0);
    if (unanswered.length === 0) return;
    if (droppedWith(e) && this.resend && !unanswered.some((w) => w.resent)) {
      try {
        return this.resend(unanswered);
      } catch {
        // No new stream (the channel was closed meanwhile): they fail with the first error.
      }
    }
    for (const w of unanswered) w.reject(e);
  }

  /** Send a request (a fresh object: its session is filled in here). */
  send(req: object): Promise<Answer> {
    return new Promise((resolve, reject) => this.write({ req, resolve, reject, resent: false }));
  }

  /** Send again requests a broken stream left unanswered, in their order. */
  sendAgain(unanswered: Unanswered<Answer>[]): void {
    for (const w of unanswered) this.write({ ...w, resent: true });
  }

  private write(w: Unanswered<Answer>): void {
    this.waiting.push(w);
    (w.req as { session?: string }).session = this.named ? '' : this.session;
    this.stream.write(w.req);
    this.named = true;
  }

  end(): void {
    this.broken = true;
    this.stream.end();
  }

  /** Give the stream up, as a lost connection does: what waits fails with CANCELLED. */
  cancel(): void {
    this.broken = true;
    this.stream.cancel();
  }
}

interface MemoryReply {
  data: Buffer;
  status: number;
  details: string;
}

/** A memory access's answer: its bytes, or the status the unary form would have ended with. */
function memoryAnswer(r: MemoryReply): Buffer {
  if (r.status !== 0) throw transportError({ code: r.status, details: r.details });
  return r.data;
}

/** What both gRPC transports do the same way: guest memory, the interrupt line, detach. */
export abstract class GrpcTransport implements Transport {
  /** Guest accesses on one Memory stream: a unary call each costs about a millisecond in grpc-js. */
  private memory?: OrderedStream<MemoryReply, Buffer>;

  constructor(
    protected readonly channel: SpmcChannel,
    protected readonly session: string,
  ) {}

  abstract invoke(x: Registers, vcpu?: number): Promise<Answer>;

  connectInterrupts(handler: (intid: number, vcpu: number) => void, onLost?: (e: TransportError) => void): () => void {
    return this.channel.interrupts(this.session, handler, onLost);
  }

  /**
   * One access on the memory stream, opened on first use and again after it broke (say the server
   * restarted). Accesses a dropped connection left unanswered are sent again once on a new stream:
   * reading or writing the same bytes twice is the same as once.
   */
  private access(address: bigint, access: { read: number } | { write: Buffer }): Promise<Buffer> {
    return this.memoryStream().send({ address: u64ToWire(address), ...access });
  }

  private memoryStream(): OrderedStream<MemoryReply, Buffer> {
    if (!this.memory || this.memory.broken)
      this.memory = new OrderedStream(this.channel, 'Memory', this.session, memoryAnswer, (unanswered) => this.memoryStream().sendAgain(unanswered));
    return this.memory;
  }

  async readMemory(address: bigint, length: number): Promise<Uint8Array> {
    const data = await this.access(address, { read: length });
    return new Uint8Array(data.buffer, data.byteOffset, data.length);
  }

  async writeMemory(address: bigint, data: Uint8Array): Promise<void> {
    await this.access(address, { write: Buffer.from(data.buffer, data.byteOffset, data.length) });
  }

  /** Give the memory stream up, as a lost connection does (see GrpcSessionTransport.dropStreams). */
  protected dropMemory(): void {
    this.memory?.cancel();
    this.memory = undefined;
  }

  async detach(): Promise<void> {
    try {
      await this.channel.detach(this.session);
    } finally {
      this.memory?.end();
      this.memory = undefined;
    }
  }
}
