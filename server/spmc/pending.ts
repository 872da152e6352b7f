// A call whose answer comes later: the caller's vCPU is blocked until another endpoint's call
// completes it. The model settles it synchronously; a transport awaits `answer`.

import type { Registers } from '../../proto/ffa/index.js';

export class Pending {
  private answerPromise?: Promise<Registers>;
  private settle?: (r: Registers) => void;
  private done = false;
  private result?: Registers;
  private gaveUp = false;
  /** Set by the model: what abandoning means for the blocked vCPU. */
  onAbandon?: () => void;
  /** Set by an observer (the trace): told after the model has dealt with it. */
  onAbandonObserved?: () => void;
  /** Observers told synchronously when it is answered (cheaper than a promise reaction each). */
  private watchers?: ((r: Registers) => void)[];

  /** Call `cb` with the answer when it comes (observers: the trace, the metrics). */
  whenComplete(cb: (r: Registers) => void): void {
    (this.watchers ??= []).push(cb);
  }

  constructor(
    /** The function the caller is blocked in, for state views and the trace. */
    readonly fn: string,
  ) {}

  /** The answer as a promise (made when first asked for: the gRPC session stream uses whenComplete). */
  get answer(): Promise<Registers> {
    this.answerPromise ??= this.done ? Promise.resolve(this.result!) : new Promise((resolve) => (this.settle = resolve));
    return this.answerPromise;
  }

  get settled(): boolean {
    return this.done;
  }

  /** The answer, once settled (the model settles synchronously; transports await `answer`). */
  get value(): Registers | undefined {
    return this.result;
  }

  get abandoned(): boolean {
    return this.gaveUp;
  }

  /** The transport gave up on it (the client went away or its deadline passed). */
  abandon(): void {
    if (this.gaveUp || this.done) return;
    this.gaveUp = true;
    this.onAbandon?.();
    this.onAbandonObserved?.();
  }

  /** Deliver the answer; false when nobody is listening any more (or it was already answered). */
  complete(r: Registers): boolean {
    if (this.done) return false;
    this.done = true;
    this.result = r;
    this.settle?.(r);
    if (this.watchers) for (const w of this.watchers) w(r);
    return !this.gaveUp;
  }
}

export const isPending = (v: unknown): v is Pending => v instanceof Pending;
