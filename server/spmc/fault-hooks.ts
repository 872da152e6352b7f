// What fault injection (server/faults) asks of the model beyond what a call does. Pure, like the
// rest of the model. (The other hooks are fields: Endpoint.rxHeld and sriHeld, SpmcState.fragmentCap.)

import type { FfaCall } from '../../proto/ffa/index.js';
import type { Endpoint, VcpuRef } from './endpoint.js';
import { type SpmcState, wake } from './state.js';

/**
 * `ep` aborted while serving direct requests: each requester still blocked on it gets `answer`
 * (ABORTED) now, and the partition's later response goes nowhere, as to a requester that left.
 * Returns how many requesters were answered.
 */
export function abortRequests(state: SpmcState, ep: Endpoint, answer: (origin: VcpuRef) => FfaCall): number {
  let n = 0;
  for (const v of ep.vcpus) {
    const req = v.handling;
    if (!req || req.originGone) continue;
    req.originGone = true;
    wake(state, req.origin, answer(req.origin));
    n++;
  }
  return n;
}
