// Answers changed on their way back: later (a delay), or with x8..x17 clobbered. Each works on an
// answer given now or on one that comes later (a Pending), and keeps the reason of a refusal.

import { FFA_VERSION_1_2, type FfaVersion, lookupFid, normalizeFid, type Registers, REGISTER_COUNT } from '../../proto/ffa/index.js';
import { isPending, Pending } from '../spmc/pending.js';
import type { Spmc } from '../spmc/spmc.js';
import type { Outcome } from '../session/interceptors.js';

/** Give `out`'s answer to `to` once there is one (and an abandoned `to` abandons `out`). */
export function pipe(out: Outcome, to: Pending, map: (r: Registers) => Registers = (r) => r): void {
  if (!isPending(out) || out.settled) {
    to.complete(map(isPending(out) ? out.value! : out));
    return;
  }
  to.onAbandon = () => out.abandon();
  out.whenComplete((r) => to.complete(map(r)));
  // Abandoned underneath (its endpoint left): nobody will answer `to` either.
  const before = out.onAbandonObserved;
  out.onAbandonObserved = () => {
    before?.();
    to.abandon();
  };
}

/** `out`'s answer, given when `schedule` runs the delivery it is handed once there is an answer. */
export function delayed(out: Outcome, fn: string, schedule: (run: () => void) => void): Pending {
  const later = new Pending(fn);
  const hold = new Pending(fn);
  hold.whenComplete((r) => schedule(() => later.complete(r)));
  pipe(out, hold);
  later.onAbandon = () => hold.abandon();
  return later;
}

/** A value no SPMC would leave in a register: the pattern names the register it was put in. */
export const CLOBBER_PATTERN = 0xdeadbeef_00000000n;

/** Answers that carry results in x8..x17: a REQ2/RESP2 payload, PARTITION_INFO_GET_REGS descriptors. */
function usesHighRegisters(answer: Registers, callFid: number): boolean {
  const fn = lookupFid(normalizeFid(answer[0] ?? 0n))?.fn;
  if (fn === 'MSG_SEND_DIRECT_REQ2' || fn === 'MSG_SEND_DIRECT_RESP2') return true;
  return fn === 'SUCCESS' && lookupFid(callFid)?.fn === 'PARTITION_INFO_GET_REGS';
}

/**
 * x8..x17 of an answer to a v1.2+ caller overwritten, unless the answer carries results there
 * (SMCCC v1.2 says they are preserved; rusted-firmware-a #96 caught an SPMC that did not).
 */
export function clobbered(spmc: Spmc, answer: Registers, version: FfaVersion, callFid: number): Registers {
  if (version < FFA_VERSION_1_2 || usesHighRegisters(answer, callFid)) return answer;
  const out = [...answer];
  while (out.length < REGISTER_COUNT) out.push(0n);
  for (let i = 8; i < REGISTER_COUNT; i++) out[i] = CLOBBER_PATTERN | BigInt(i);
  const reason = spmc.reasonFor(answer);
  if (reason) spmc.state.reasons.set(out, reason);
  return out;
}
