// CPU cycles (Hafnium's cpu_cycles.c): FFA_MSG_WAIT, FFA_YIELD, FFA_RUN, FFA_INTERRUPT.
//
// Cycles move with calls: a direct request or FFA_RUN gives the target's vCPU the caller's cycles
// (the caller blocks); FFA_MSG_WAIT, a response or FFA_YIELD hands them back.

import { FFA_ERRORS, ffaSuccess, type FfaCall, hex } from '../../proto/ffa/index.js';
import type { Vcpu } from './endpoint.js';
import { releaseRx } from './mailbox.js';
import { npiInterrupt, takeLatchedNpi } from './notifications.js';
import type { AbiTable, SpmcState } from './state.js';
import { park, refuse, sameVcpu, vcpuRef, wake } from './state.js';

const { INVALID_PARAMETERS, DENIED, BUSY } = FFA_ERRORS;

/** Put `vcpu` back to waiting for its next request; whoever ran it gets `handBack`. */
export function waitForNext(state: SpmcState, vcpu: Vcpu, fn: string, handBack: FfaCall) {
  if (vcpu.runBy) {
    wake(state, vcpu.runBy, handBack);
    vcpu.runBy = undefined;
  }
  return park(vcpu, 'waiting', fn);
}

/**
 * A context that took its NPI on a direct response is done with it: the requester, held until now,
 * gets the response (Hafnium resumes the preempted vCPU: ffa_cpu_cycles_preempted_vcpu_resume).
 */
function releaseHeldResponse(state: SpmcState, vcpu: Vcpu): void {
  const req = vcpu.handling;
  if (!req?.response) return;
  vcpu.handling = undefined;
  if (!req.originGone) wake(state, req.origin, req.response);
  else state.dropped++;
}

export const cpuCycleAbis: AbiTable = {
  MSG_WAIT: {
    handle({ state, caller, vcpu }, call) {
      // While serving a request the cycles belong to the requester: answer it first.
      if (vcpu.handling && !vcpu.handling.response) {
        return refuse(
          DENIED,
          'msg_wait.request_ongoing',
          `MSG_WAIT: ${hex(caller.id)} context ${vcpu.index} must answer the request from ${hex(vcpu.handling.origin.endpoint)} first`,
        );
      }
      releaseHeldResponse(state, vcpu);
      // The implicit release fails silently, as Hafnium's does.
      if (!call.retainRx) releaseRx(caller);
      // Notifications arrived while no context waited: take them now instead of waiting.
      if (takeLatchedNpi(caller)) {
        if (vcpu.runBy) wake(state, vcpu.runBy, call);
        vcpu.runBy = undefined;
        return npiInterrupt();
      }
      return waitForNext(state, vcpu, 'MSG_WAIT', call);
    },
  },

  YIELD: {
    handle({ state, caller, vcpu }, { timeout }) {
      // Taking an NPI on a requester's cycles: a yield is a no-op (Hafnium's, for a secure interrupt).
      if (vcpu.handling?.response) return ffaSuccess();
      const target = { endpoint: caller.id, vcpu: vcpu.index };
      const giver = vcpu.handling && !vcpu.handling.originGone ? vcpu.handling.origin : vcpu.runBy;
      if (!giver) {
        // Nobody lent these cycles: a VM's yield is a no-op; an SP outside any request may not.
        if (caller.kind === 'vm') return ffaSuccess();
        return refuse(
          DENIED,
          'yield.no_cycles',
          `YIELD: partition ${hex(caller.id)} vCPU ${vcpu.index} was given no cycles (no request, no FFA_RUN) to hand back`,
        );
      }
      wake(state, giver, { fn: 'YIELD', target, timeout });
      const reply = park(vcpu, 'preempted', 'YIELD');
      vcpu.yieldedTo = giver;
      return reply;
    },
  },

  RUN: {
    handle({ state, caller, vcpu }, { target }) {
      const ep = state.endpoints.get(target.endpoint);
      const t = ep?.vcpus[target.vcpu];
      if (!ep) return refuse(INVALID_PARAMETERS, 'run.unknown_target', `RUN: no endpoint ${hex(target.endpoint)}`);
      if (!t) return refuse(INVALID_PARAMETERS, 'run.vcpu', `RUN: ${hex(ep.id)} has no vCPU ${target.vcpu} (it has ${ep.vcpuCount})`);
      if (ep.id === caller.id) return refuse(INVALID_PARAMETERS, 'run.self', `RUN: ${hex(caller.id)} may not run itself`);
      if (caller.kind === 'sp' && ep.kind === 'vm') return refuse(DENIED, 'run.sp_to_vm', `RUN: partition ${hex(caller.id)} may not run VM ${hex(ep.id)}`);
      const me = vcpuRef(caller, vcpu);
      switch (t.state) {
        case 'preempted':
          // Only the vCPU it yielded to may give it its cycles back.
          if (!sameVcpu(t.yieldedTo, me)) {
            const to = t.yieldedTo ? `${hex(t.yieldedTo.endpoint)} vCPU ${t.yieldedTo.vcpu}` : 'no one';
            return refuse(
              DENIED,
              'run.not_yielded_to_caller',
              `RUN: ${hex(ep.id)} vCPU ${t.index} yielded to ${to}, not to ${hex(caller.id)} vCPU ${vcpu.index}`,
            );
          }
          t.yieldedTo = undefined;
          wake(state, target, ffaSuccess());
          return park(vcpu, 'blocked', 'RUN', target);
        case 'waiting':
          t.runBy = me;
          // Pending notifications: it takes the NPI as it runs (Hafnium injects it on FFA_RUN).
          wake(state, target, takeLatchedNpi(ep) ? npiInterrupt() : { fn: 'RUN', target });
          return park(vcpu, 'blocked', 'RUN', target);
        default:
          // Running, blocked on someone else, or not started.
          return refuse(BUSY, 'run.target_busy', `RUN: ${hex(ep.id)} vCPU ${t.index} is ${t.state}, not waiting or preempted`);
      }
    },
  },

  // Only the other world may signal an interrupt; no endpoint here is that.
  INTERRUPT: {
    handle: ({ caller }) => refuse(DENIED, 'interrupt.not_other_world', `INTERRUPT: only the other world signals an interrupt; ${hex(caller.id)} may not`),
  },
};
