// Rate-limited logging: at most N lines per key (an endpoint, a source) per interval. What was held
// back is counted and said in one line when the key logs again or ends, so a flood of faults or
// guesses costs a few lines and still shows how big it was.

import type { Clock } from './throttle.js';

export interface LogLimitOptions {
  /** Lines per key per interval. */
  lines: number;
  intervalMs: number;
  clock: Clock;
  /** Keys remembered at once; the oldest is forgotten past it (default 10000). */
  maxKeys?: number;
}

interface Window {
  start: number;
  lines: number;
  suppressed: number;
}

export interface Admission {
  /** Whether to log this event. */
  log: boolean;
  /** Events held back in the key's earlier interval(s), not yet said: say them now. */
  suppressedBefore: number;
}

export class LogLimiter {
  private readonly windows = new Map<string | number, Window>();

  constructor(private readonly opts: LogLimitOptions) {}

  /** One event of `key`: may it be logged, and how many were held back before it. */
  admit(key: string | number): Admission {
    const now = this.opts.clock();
    let w = this.windows.get(key);
    let suppressedBefore = 0;
    if (w && now - w.start >= this.opts.intervalMs) {
      suppressedBefore = w.suppressed;
      this.windows.delete(key);
      w = undefined;
    }
    if (!w) {
      if (this.windows.size >= (this.opts.maxKeys ?? 10_000)) this.windows.delete(this.windows.keys().next().value!);
      this.windows.set(key, (w = { start: now, lines: 0, suppressed: 0 }));
    }
    if (w.lines < this.opts.lines) {
      w.lines++;
      return { log: true, suppressedBefore };
    }
    w.suppressed++;
    return { log: false, suppressedBefore };
  }

  /** `key` is gone (an endpoint released): forget it; returns what it held back and never said. */
  end(key: string | number): number {
    const w = this.windows.get(key);
    this.windows.delete(key);
    return w?.suppressed ?? 0;
  }
}
