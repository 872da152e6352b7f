// A call whose answer comes later: the caller's vCPU is blocked until another endpoint's call
// completes it. The model settles it synchronously; a transport awaits `answer`.

import type { Registers } from '../../proto/ffa/index.js';

export class Pending {
  readonly answer: Promise<Registers>;
  private settle!: (r: Registers) => void;
  private done = false;
  /** The transport gave up on it (client went away); a later completion is dropped. */
  abandoned = false;

  constructor(
    /** The function the caller is blocked in, for state views and the trace. */
    readonly fn: string,
  ) {
    this.answer = new Promise((resolve) => (this.settle = resolve));
  }

  get settled(): boolean {
    return this.done;
  }

  /** Deliver the answer; false when nobody is listening any more (or it was already answered). */
  complete(r: Registers): boolean {
    if (this.done) return false;
    this.done = true;
    this.settle(r);
    return !this.abandoned;
  }
}

export const isPending = (v: unknown): v is Pending => v instanceof Pending;
