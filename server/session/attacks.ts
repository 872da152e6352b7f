// What makes attacks visible: failed credentials are throttled per source, logged at warn (one line
// per source per minute, with how many were held back) and counted; memory faults are logged at most
// a few lines per endpoint per second, then one line saying how many were suppressed. The counts
// are read by /metrics.

import type { EndpointId } from '../../proto/ffa/index.js';
import type { Logger } from './core.js';
import { LogLimiter } from './log-limit.js';
import { type Clock, FailureThrottle, type ThrottleOptions } from './throttle.js';
import { SessionError } from './status.js';

export interface AttackWatchOptions {
  clock: Clock;
  log: Pick<Logger, 'warn'>;
  throttle?: Omit<ThrottleOptions, 'clock'>;
  /** Lines per source per interval for failed credentials (default 1 per minute). */
  authLog?: { lines: number; intervalMs: number };
  /** Lines per endpoint per interval for memory faults (default 10 per second). */
  faultLog?: { lines: number; intervalMs: number };
}

/** The counters /metrics shows. */
export interface AttackCounts {
  /** Wrong credentials presented, by what was presented ("credential"). */
  authFailures: Map<string, number>;
  /** Attempts refused unchecked because their source had to wait. */
  authThrottled: Map<string, number>;
  /** Log lines held back, by what they were about ("auth_failure", "memory_fault"). */
  logSuppressed: Map<string, number>;
}

const bump = (m: Map<string, number>, key: string, n = 1) => m.set(key, (m.get(key) ?? 0) + n);

export class AttackWatch {
  readonly counts: AttackCounts = { authFailures: new Map(), authThrottled: new Map(), logSuppressed: new Map() };
  private readonly throttle: FailureThrottle;
  private readonly authLog: LogLimiter;
  private readonly faultLog: LogLimiter;
  private readonly log: Pick<Logger, 'warn'>;

  constructor(opts: AttackWatchOptions) {
    this.log = opts.log;
    this.throttle = new FailureThrottle({ ...opts.throttle, clock: opts.clock });
    this.authLog = new LogLimiter({ ...(opts.authLog ?? { lines: 1, intervalMs: 60_000 }), clock: opts.clock });
    this.faultLog = new LogLimiter({ ...(opts.faultLog ?? { lines: 10, intervalMs: 1000 }), clock: opts.clock });
  }

  /** Before checking a `kind` ("credential") from `source`: refused, unchecked, while it must wait. */
  checkAllowed(source: string, kind = 'credential'): void {
    const ms = this.throttle.waitFor(source);
    if (ms === 0) return;
    bump(this.counts.authThrottled, kind);
    throw new SessionError('RESOURCE_EXHAUSTED', `too many failed ${kind}s from ${source}, retry in ${Math.ceil(ms / 1000)} s`);
  }

  /** `source` presented a wrong `kind`; `what` says what it tried (never the secret itself). */
  failed(source: string, what: object, kind = 'credential'): void {
    bump(this.counts.authFailures, kind);
    const failures = this.throttle.failed(source);
    const { log, suppressedBefore } = this.authLog.admit(source);
    if (log) this.log.warn({ source, ...what, failures, suppressed: suppressedBefore }, `failed ${kind}`);
    else bump(this.counts.logSuppressed, 'auth_failure');
  }

  /** `source` presented a right one. */
  succeeded(source: string): void {
    this.throttle.succeeded(source);
  }

  /** A guest memory fault of `endpoint`, described by `fields`. */
  fault(endpoint: EndpointId, fields: object): void {
    const { log, suppressedBefore } = this.faultLog.admit(endpoint);
    if (suppressedBefore > 0) this.faultsSuppressed(endpoint, suppressedBefore);
    if (log) this.log.warn({ endpoint, ...fields }, 'memory fault');
    else bump(this.counts.logSuppressed, 'memory_fault');
  }

  /** `endpoint` left: say how many of its faults were not logged. */
  released(endpoint: EndpointId): void {
    const n = this.faultLog.end(endpoint);
    if (n > 0) this.faultsSuppressed(endpoint, n);
  }

  private faultsSuppressed(endpoint: EndpointId, n: number): void {
    this.log.warn({ endpoint, suppressed: n }, `suppressed ${n} memory faults`);
  }
}
