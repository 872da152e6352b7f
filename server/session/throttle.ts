// Throttling of failed credentials, per source (a peer address): a few failures are free, then each
// further one doubles how long that source must wait before it may try again. Guessing a credential
// then costs hours, not seconds; a partition that was started with a typo recovers after a while.

import { isIP } from 'node:net';

/** Milliseconds on a clock that only moves forward. */
export type Clock = () => number;

export interface ThrottleOptions {
  /** Failures a source may make before it must wait (default 5). */
  free?: number;
  /** The first wait, doubled for each further failure (default 1 s). */
  baseMs?: number;
  /** The longest wait (default 5 min). */
  maxMs?: number;
  /** A source that has not failed for this long starts afresh (default 15 min). */
  forgetMs?: number;
  /** Sources remembered at once; the oldest is forgotten past it (default 10000). */
  maxSources?: number;
  clock: Clock;
}

interface Failures {
  count: number;
  last: number;
  until: number;
}

export class FailureThrottle {
  private readonly sources = new Map<string, Failures>();
  private readonly free: number;
  private readonly baseMs: number;
  private readonly maxMs: number;
  private readonly forgetMs: number;
  private readonly maxSources: number;
  private readonly clock: Clock;

  constructor(opts: ThrottleOptions) {
    this.free = opts.free ?? 5;
    this.baseMs = opts.baseMs ?? 1000;
    this.maxMs = opts.maxMs ?? 5 * 60_000;
    this.forgetMs = opts.forgetMs ?? 15 * 60_000;
    this.maxSources = opts.maxSources ?? 10_000;
    this.clock = opts.clock;
  }

  private entry(source: string, now: number): Failures | undefined {
    const f = this.sources.get(source);
    if (f && now - f.last > this.forgetMs && now >= f.until) {
      this.sources.delete(source);
      return undefined;
    }
    return f;
  }

  /** Milliseconds `source` must still wait before its next try (0: it may try now). */
  waitFor(source: string): number {
    const now = this.clock();
    const f = this.entry(source, now);
    return f ? Math.max(0, f.until - now) : 0;
  }

  /** `source` presented a wrong credential; returns its failures so far. */
  failed(source: string): number {
    const now = this.clock();
    let f = this.entry(source, now);
    if (!f) {
      if (this.sources.size >= this.maxSources) this.sources.delete(this.sources.keys().next().value!);
      this.sources.set(source, (f = { count: 0, last: now, until: 0 }));
    }
    f.count++;
    f.last = now;
    const over = f.count - this.free;
    if (over > 0) f.until = now + Math.min(this.maxMs, this.baseMs * 2 ** Math.min(over - 1, 30));
    return f.count;
  }

  /** `source` got it right: its failures are forgotten. */
  succeeded(source: string): void {
    this.sources.delete(source);
  }
}

/**
 * The address part of a peer as the transports name it: grpc-js "127.0.0.1:5432", "::1:5432" or
 * "ipv4:..."; Fastify's "::ffff:127.0.0.1". The port is dropped (a new connection has a new one) and
 * an IPv4-mapped IPv6 address is written as IPv4, so one host is one source on either transport.
 */
export function peerAddress(peer: string): string {
  let a = peer.replace(/^ipv[46]:/, '');
  const m = /^\[(.*)\]:\d+$/.exec(a);
  if (m) a = m[1]!;
  else if (isIP(a) === 0) {
    const port = /^(.*):\d+$/.exec(a);
    if (port && isIP(port[1]!) !== 0) a = port[1]!;
  }
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(a);
  return mapped ? mapped[1]! : a;
}
