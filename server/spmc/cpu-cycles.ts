// CPU cycles (Hafnium's cpu_cycles.c): FFA_MSG_WAIT, FFA_YIELD, FFA_RUN, FFA_INTERRUPT.
//
// Cycles move with calls: a direct request or FFA_RUN gives the target's vCPU the caller's cycles
// (the caller blocks); FFA_MSG_WAIT, a response or FFA_YIELD hands them back.

import { FFA_ERRORS, ffaError, ffaSuccess, type FfaCall } from '../../proto/ffa/index.js';
import type { Vcpu } from './endpoint.js';
import { releaseRx } from './mailbox.js';
import { npiInterrupt, takeLatchedNpi } from './notifications.js';
import type { AbiTable, SpmcState } from './state.js';
import { park, sameVcpu, vcpuRef, wake } from './state.js';

const { INVALID_PARAMETERS, DENIED, BUSY } = FFA_ERRORS;

/** Put `vcpu` back to waiting for its next request; whoever ran it gets `handBack`. */
export function waitForNext(state: SpmcState, vcpu: Vcpu, fn: string, handBack: FfaCall) {
  if (vcpu.runBy) {
    wake(state, vcpu.runBy, handBack);
    vcpu.runBy = undefined;
  }
  return park(vcpu, 'waiting', fn);
}

export const cpuCycleAbis: AbiTable = {
  MSG_WAIT: {
    handle({ state, caller, vcpu }, call) {
      // While serving a request the cycles belong to the requester: answer it first.
      if (vcpu.handling) return ffaError(DENIED);
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
      const target = { endpoint: caller.id, vcpu: vcpu.index };
      const giver = vcpu.handling && !vcpu.handling.originGone ? vcpu.handling.origin : vcpu.runBy;
      if (!giver) {
        // Nobody lent these cycles: a VM's yield is a no-op; an SP outside any request may not.
        return caller.kind === 'vm' ? ffaSuccess() : ffaError(DENIED);
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
      if (!ep || !t || ep.id === caller.id) return ffaError(INVALID_PARAMETERS);
      if (caller.kind === 'sp' && ep.kind === 'vm') return ffaError(DENIED);
      const me = vcpuRef(caller, vcpu);
      switch (t.state) {
        case 'preempted':
          // Only the vCPU it yielded to may give it its cycles back.
          if (!sameVcpu(t.yieldedTo, me)) return ffaError(DENIED);
          t.yieldedTo = undefined;
          wake(state, target, ffaSuccess());
          return park(vcpu, 'blocked', 'RUN', target);
        case 'waiting':
          t.runBy = me;
          wake(state, target, { fn: 'RUN', target });
          return park(vcpu, 'blocked', 'RUN', target);
        default:
          // Running, blocked on someone else, or not started.
          return ffaError(BUSY);
      }
    },
  },

  // Only the other world may signal an interrupt; no endpoint here is that.
  INTERRUPT: { handle: () => ffaError(DENIED) },
};
