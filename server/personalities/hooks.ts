// The interceptors personalities put on the session core's chain: what a partition manager does to
// answers that the model's parameters cannot say (today: registers it fails to preserve).

import { FFA_VERSION_1_2, fidRegister, REGISTER_COUNT, type Registers } from '../../proto/ffa/index.js';
import { isPending } from '../spmc/pending.js';
import type { Interceptor } from '../session/interceptors.js';
import type { PersonalityHook } from './catalog.js';

/** The first register an answer to a v1.2 caller must preserve when its results end at x7. */
const FIRST_PRESERVED = 8;

/** Answers whose results reach x8..x17: these keep them. */
const EXTENDED_ANSWERS: ReadonlySet<bigint> = new Set([
  fidRegister('SUCCESS', 64),
  fidRegister('MSG_SEND_DIRECT_REQ2', 64),
  fidRegister('MSG_SEND_DIRECT_RESP2', 64),
]);

/** What lands in x8..x17: recognisable in a trace, and the same in every run (replay matches). */
export const CLOBBER_PATTERN = 0xc10bbe5c10bbe500n;

/** Overwrite x8..x17 of an answer whose results end at x7 (the registers are the answer's own copy). */
export function clobber(x: Registers): void {
  if (EXTENDED_ANSWERS.has(x[0] ?? 0n)) return;
  for (let i = FIRST_PRESERVED; i < REGISTER_COUNT; i++) x[i] = CLOBBER_PATTERN | BigInt(i);
}

/**
 * rusted-firmware-a#96: an SPMC that does not preserve x8..x17 across a v1.2 call. Only callers
 * of v1.2 and later: for older ones x8..x17 are not part of the call at all.
 */
function clobberX8X17(): Interceptor {
  return {
    name: 'personality:clobber-x8-x17',
    after(call, out) {
      if (call.version < FFA_VERSION_1_2) return;
      // A blocked call is answered later: clobber that answer before the transport sends it.
      if (isPending(out)) out.whenComplete(clobber);
      else clobber(out);
    },
  };
}

export const HOOKS: Record<PersonalityHook, () => Interceptor> = {
  'clobber-x8-x17': clobberX8X17,
};
