// The call interceptor chain: what runs around every SMCCC call, whatever transport brought it.
// The trace and the metrics observe; fault injection (later) answers instead of the model.

import { decodeCall, type DecodeResult, type EndpointId, type FfaVersion, type Reason, type Registers } from '../../proto/ffa/index.js';
import type { Pending } from '../spmc/pending.js';

/** What the model (or an interceptor) answered: registers now, or a Pending answer. */
export type Outcome = Registers | Pending;

/** An answer an interceptor gives instead of the model's (registers, or one that comes later), with why when it is a refusal. */
export interface InjectedAnswer {
  x: Outcome;
  reason?: Reason;
}

/** One call as the chain sees it. */
export class InterceptedCall {
  private decodedCall?: DecodeResult;
  /** The interceptor that answered instead of the model, if one did. */
  answeredBy?: string;
  /** Set by an interceptor that injected or changed the answer (fault injection: the rule's id); the trace records it. */
  injected?: string;
  /**
   * performance.now() when the answer (or the Pending) was there, before the first `after`: read
   * once by the core, so the interceptors' latencies agree and none reads the clock again.
   */
  answered = 0;

  constructor(
    readonly endpoint: EndpointId,
    readonly vcpu: number,
    readonly x: Registers,
    /** The caller's version when the call arrived: the one its registers are read with. */
    readonly version: FfaVersion,
    /** Which transport brought it (grpc-session, grpc-unary, http, in-process ...). */
    readonly via: string,
    /** performance.now() when the call reached the core (read once, for every interceptor). */
    readonly start: number,
  ) {}

  /** The call decoded for the caller's version (worked out when first asked for). */
  decoded(): DecodeResult {
    return (this.decodedCall ??= decodeCall(this.x, this.version));
  }
}

export interface Interceptor {
  readonly name: string;
  /** Before the model: return an answer to give it instead (the model then never sees the call). */
  before?(call: InterceptedCall): InjectedAnswer | undefined;
  /**
   * After the model (or the interceptor that answered): the outcome, and why if it is a refusal given
   * now. May return another outcome to give instead (a delayed or altered answer): outer `after`s see that.
   */
  after?(call: InterceptedCall, out: Outcome, reason: Reason | undefined): Outcome | void;
}
