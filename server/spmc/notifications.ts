// Notifications (Hafnium's api.c notification calls and vm.c bitmaps): BITMAP_CREATE/DESTROY,
// BIND, UNBIND, SET, GET, INFO_GET, and how a receiver learns that something is pending.
//
// The server is the hypervisor of its VMs and the scheduler of its partitions, so:
// - a VM's bitmap exists from attach; BITMAP_CREATE/DESTROY are the hypervisor's and answer
//   NOT_SUPPORTED to every endpoint here;
// - a VM with something pending gets the Schedule Receiver Interrupt through its transport, and
//   may call INFO_GET, which reports that VM's own pending state only;
// - a partition with something pending is given cycles at once: a context waiting in MSG_WAIT
//   wakes with FFA_INTERRUPT(NPI); if none waits, its next MSG_WAIT returns that interrupt.

import {
  type EndpointId,
  FFA_ERRORS,
  FFA_VERSION_1_1,
  type FfaCall,
  ffaError,
  ffaSuccess,
  FRAMEWORK_HYP_MASK,
  FRAMEWORK_SPM_MASK,
  isSecureId,
  NOTIFICATION_BITMAP_MASK,
  NOTIFICATION_COUNT,
  NPI_INTID,
  packNotificationInfo,
  SRI_INTID,
  U32,
} from '../../proto/ffa/index.js';
import type { Endpoint, Vcpu } from './endpoint.js';
import type { AbiTable, CallContext, Reply, SpmcState } from './state.js';
import { vcpuRef, wake } from './state.js';

const { INVALID_PARAMETERS, NOT_SUPPORTED, DENIED, NO_DATA } = FFA_ERRORS;

/** Pending bits, and those INFO_GET has already reported (Hafnium's notifications_state). */
export interface NotificationState {
  pending: bigint;
  retrieved: bigint;
}

export interface Notifications {
  /** SPs: manifest notification-support; VMs: from attach (the hypervisor created the bitmap). */
  enabled: boolean;
  fromSp: NotificationState;
  fromVm: NotificationState;
  /** Bit 0: RX full (SPM); bit 32: RX full (hypervisor). */
  framework: NotificationState;
  /** Per notification ID, the sender bound to it, for senders of each world. */
  boundSp: (EndpointId | undefined)[];
  boundVm: (EndpointId | undefined)[];
  /** A partition had notifications set while no context waited: its next MSG_WAIT takes the NPI. */
  npiPending: boolean;
}

const freshState = (): NotificationState => ({ pending: 0n, retrieved: 0n });

export function newNotifications(enabled: boolean): Notifications {
  return {
    enabled,
    fromSp: freshState(),
    fromVm: freshState(),
    framework: freshState(),
    boundSp: new Array(NOTIFICATION_COUNT).fill(undefined),
    boundVm: new Array(NOTIFICATION_COUNT).fill(undefined),
    npiPending: false,
  };
}

const sourceOf = (n: Notifications, sender: EndpointId) =>
  isSecureId(sender) ? { state: n.fromSp, bound: n.boundSp } : { state: n.fromVm, bound: n.boundVm };

const bitsOf = (bitmap: bigint): number[] => {
  const out: number[] = [];
  for (let i = 0; i < NOTIFICATION_COUNT; i++) if ((bitmap >> BigInt(i)) & 1n) out.push(i);
  return out;
};

export const anyPending = (n: Notifications): boolean => (n.fromSp.pending | n.fromVm.pending | n.framework.pending) !== 0n;
const unreported = (n: Notifications): bigint =>
  (n.fromSp.pending & ~n.fromSp.retrieved) | (n.fromVm.pending & ~n.fromVm.retrieved) | (n.framework.pending & ~n.framework.retrieved);

/** Take the pending bits under `mask` (GET): they are no longer pending nor reported. */
function take(s: NotificationState, mask: bigint): bigint {
  const got = s.pending & mask;
  s.pending &= ~mask;
  s.retrieved &= ~mask;
  return got;
}

/**
 * Make `bits` pending for `receiver` and tell it, now or, when a partition asked to delay the
 * SRI, once that partition's vCPU stops running.
 */
export function raiseNotifications(
  state: SpmcState,
  receiver: Endpoint,
  which: NotificationState,
  bits: bigint,
  delayedBy?: Vcpu,
): void {
  which.pending |= bits;
  if (delayedBy) (delayedBy.delayedSri ??= new Set()).add(receiver.id);
  else signalReceiver(state, receiver);
}

/** The Schedule Receiver Interrupts a partition held back are sent once it gives up the CPU. */
export function flushDelayedSri(state: SpmcState, vcpu: Vcpu): void {
  // A context still starting ('off') is running its initialisation as far as SRIs go.
  if (!vcpu.delayedSri || vcpu.state === 'running' || vcpu.state === 'off') return;
  const ids = [...vcpu.delayedSri];
  vcpu.delayedSri = undefined;
  for (const id of ids) {
    const ep = state.endpoints.get(id);
    if (ep) signalReceiver(state, ep);
  }
}

/** A VM gets the SRI; a partition gets cycles with FFA_INTERRUPT(NPI). */
export function signalReceiver(state: SpmcState, receiver: Endpoint): void {
  if (!anyPending(receiver.notifications)) return;
  if (receiver.kind === 'vm') {
    for (const o of state.observers) o.interrupt?.(receiver.id, SRI_INTID);
    return;
  }
  const idle = receiver.vcpus.find((v) => v.state === 'waiting' && !v.handling);
  if (!idle) {
    receiver.notifications.npiPending = true;
    return;
  }
  receiver.notifications.npiPending = false;
  wake(state, vcpuRef(receiver, idle), npiInterrupt());
}

export const npiInterrupt = (): FfaCall => ({ fn: 'INTERRUPT', target: { endpoint: 0, vcpu: 0 }, interruptId: NPI_INTID });

/** MSG_WAIT of a partition with an NPI latched: the interrupt instead of waiting. */
export function takeLatchedNpi(ep: Endpoint): boolean {
  const n = ep.notifications;
  if (ep.kind !== 'sp' || !n.npiPending) return false;
  n.npiPending = false;
  return anyPending(n);
}

/** A VM left: nothing it was bound to may be set by whoever gets its ID next. */
export function forgetSender(state: SpmcState, id: EndpointId): void {
  for (const ep of state.endpoints.values()) {
    const bound = isSecureId(id) ? ep.notifications.boundSp : ep.notifications.boundVm;
    for (let i = 0; i < bound.length; i++) if (bound[i] === id) bound[i] = undefined;
  }
}

/** A remote partition's process left: the next one starts with no bindings and nothing pending. */
export function resetReceiver(ep: Endpoint): void {
  Object.assign(ep.notifications, newNotifications(ep.notifications.enabled));
}

function updateBindings(
  { state, caller }: CallContext,
  sender: EndpointId,
  receiver: EndpointId,
  bitmap: bigint,
  bind: boolean,
): Reply {
  if (sender === receiver || receiver !== caller.id) return ffaError(INVALID_PARAMETERS);
  if (bitmap === 0n) return ffaError(INVALID_PARAMETERS);
  if (caller.version < FFA_VERSION_1_1) return ffaError(NOT_SUPPORTED);
  const n = caller.notifications;
  if (!n.enabled) return ffaError(NOT_SUPPORTED);
  // Senders of the receiver's own world must exist (partitions always; VMs when a VM binds).
  const sameWorld = isSecureId(sender) || caller.kind === 'vm';
  if (bind && sameWorld && !state.endpoints.has(sender)) return ffaError(INVALID_PARAMETERS);
  const { state: pending, bound } = sourceOf(n, sender);
  // Bind takes free IDs only; unbind only IDs bound to this sender.
  const expected = bind ? undefined : sender;
  if (bitsOf(bitmap).some((i) => bound[i] !== expected)) return ffaError(DENIED);
  if ((pending.pending & bitmap) !== 0n) return ffaError(DENIED);
  for (const i of bitsOf(bitmap)) bound[i] = bind ? sender : undefined;
  return ffaSuccess();
}

export const notificationAbis: AbiTable = {
  // The hypervisor's calls; the server created every VM's bitmap at attach.
  NOTIFICATION_BITMAP_CREATE: { handle: () => ffaError(NOT_SUPPORTED), onInvalid: () => ffaError(NOT_SUPPORTED) },
  NOTIFICATION_BITMAP_DESTROY: { handle: () => ffaError(NOT_SUPPORTED), onInvalid: () => ffaError(NOT_SUPPORTED) },

  NOTIFICATION_BIND: {
    handle(ctx, { route, perVcpu, bitmap }) {
      if (perVcpu) return ffaError(INVALID_PARAMETERS);
      return updateBindings(ctx, route.source, route.destination, bitmap, true);
    },
  },

  NOTIFICATION_UNBIND: {
    handle: (ctx, { route, bitmap }) => updateBindings(ctx, route.source, route.destination, bitmap, false),
  },

  NOTIFICATION_SET: {
    handle({ state, caller, vcpu }, { route, perVcpu, delaySri, vcpu: targetVcpu, bitmap }) {
      if (perVcpu || targetVcpu !== 0) return ffaError(INVALID_PARAMETERS);
      const { source: sender, destination } = route;
      if (sender === destination || sender !== caller.id) return ffaError(INVALID_PARAMETERS);
      if (bitmap === 0n) return ffaError(INVALID_PARAMETERS);
      // Only the secure virtual instance may hold back the SRI.
      if (delaySri && caller.kind !== 'sp') return ffaError(INVALID_PARAMETERS);
      const receiver = state.endpoints.get(destination);
      if (!receiver) return ffaError(INVALID_PARAMETERS);
      if (!receiver.notifications.enabled) return ffaError(DENIED);
      const { state: which, bound } = sourceOf(receiver.notifications, sender);
      if (bitsOf(bitmap).some((i) => bound[i] !== sender)) return ffaError(DENIED);
      raiseNotifications(state, receiver, which, bitmap, delaySri ? vcpu : undefined);
      return ffaSuccess();
    },
  },

  NOTIFICATION_GET: {
    handle({ caller }, { receiver, vcpu, bitmaps }) {
      if (receiver !== caller.id) return ffaError(INVALID_PARAMETERS);
      if (vcpu >= caller.vcpuCount) return ffaError(INVALID_PARAMETERS);
      const n = caller.notifications;
      const fromSp = bitmaps.sp ? take(n.fromSp, NOTIFICATION_BITMAP_MASK) : 0n;
      const fromVm = bitmaps.vm ? take(n.fromVm, NOTIFICATION_BITMAP_MASK) : 0n;
      const spm = bitmaps.spmFramework ? take(n.framework, FRAMEWORK_SPM_MASK) : 0n;
      const hyp = bitmaps.hypFramework ? take(n.framework, FRAMEWORK_HYP_MASK) >> 32n : 0n;
      return ffaSuccess([fromSp & U32, fromSp >> 32n, fromVm & U32, fromVm >> 32n, spm, hyp]);
    },
  },

  NOTIFICATION_INFO_GET: {
    handle({ caller }, { width }) {
      // The scheduler's call: each VM schedules itself here; partitions are scheduled by the server.
      if (caller.kind !== 'vm') return ffaError(NOT_SUPPORTED);
      const n = caller.notifications;
      if (unreported(n) === 0n) return ffaError(NO_DATA);
      for (const s of [n.fromSp, n.fromVm, n.framework]) s.retrieved |= s.pending;
      // One list, the caller's own ID; global notifications carry no vCPU IDs.
      return ffaSuccess(packNotificationInfo({ lists: [{ endpoint: caller.id, vcpus: [] }], morePending: false }, width), width);
    },
  },
};
