// Notifications (Hafnium's api.c notification calls and vm.c bitmaps): BITMAP_CREATE/DESTROY,
// BIND, UNBIND, SET, GET, INFO_GET, and how a receiver learns that something is pending.
//
// The server is the hypervisor of its VMs and the scheduler of its partitions, so:
// - a VM's bitmap exists from attach; BITMAP_CREATE/DESTROY are the hypervisor's and answer
//   NOT_SUPPORTED to every endpoint here;
// - a VM with something pending gets the Schedule Receiver Interrupt through its transport, and
//   may call INFO_GET, which reports that VM's own pending state only;
// - a partition with something pending is not woken (Hafnium's NOTIFICATION_SET only marks it
//   pending): it takes the Notification Pending Interrupt, as FFA_INTERRUPT(NPI), the next time it
//   runs and can take it: when FFA_RUN gives a waiting context cycles, when it answers a direct
//   request (that request is delivered first; the requester gets the response once the partition
//   waits again), or at its next FFA_MSG_WAIT. Hafnium injects the NPI on FFA_RUN and on direct
//   request delivery (ffa_interrupts_inject_notification_pending_interrupt) and the partition
//   takes it when it would wait (ffa_interrupts_intercept_call); with no interrupt model here,
//   that is where it is handed over.

import {
  type EndpointId,
  FFA_ERRORS,
  FFA_VERSION_1_1,
  type FfaCall,
  ffaSuccess,
  formatVersion,
  FRAMEWORK_HYP_MASK,
  FRAMEWORK_SPM_MASK,
  hex,
  isSecureId,
  isSpmdLogicalId,
  NOTIFICATION_BITMAP_MASK,
  NOTIFICATION_COUNT,
  NPI_INTID,
  packNotificationInfo,
  splitU64,
  SRI_INTID,
} from '../../proto/ffa/index.js';
import type { Endpoint, Vcpu } from './endpoint.js';
import { type AbiTable, type CallContext, refuse, type Reply, type SpmcState } from './state.js';

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
  /** A partition had notifications set and has not taken the NPI yet (see the top of this file). */
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

const sourceOf = (n: Notifications, sender: EndpointId) => (isSecureId(sender) ? { state: n.fromSp, bound: n.boundSp } : { state: n.fromVm, bound: n.boundVm });

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
export function raiseNotifications(state: SpmcState, receiver: Endpoint, which: NotificationState, bits: bigint, delayedBy?: Vcpu): void {
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

/** A VM gets the SRI; a partition has the NPI latched, taken when it next runs (never woken for it). */
export function signalReceiver(state: SpmcState, receiver: Endpoint): void {
  if (!anyPending(receiver.notifications)) return;
  if (receiver.kind === 'vm') {
    if (receiver.sriHeld) return; // dropped by fault injection (server/faults)
    for (const o of state.observers) o.interrupt?.(receiver.id, SRI_INTID);
    return;
  }
  receiver.notifications.npiPending = true;
}

export const npiInterrupt = (): FfaCall => ({ fn: 'INTERRUPT', target: { endpoint: 0, vcpu: 0 }, interruptId: NPI_INTID });

/** Whether a partition's context that is about to run or wait takes the NPI now (and then clears it). */
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

/** The IDs in `bitmap` whose bound sender is not `expected`, as "n (bound to 0x..)". */
function badBindings(bound: (EndpointId | undefined)[], bitmap: bigint, expected: EndpointId | undefined): string | undefined {
  const bad = bitsOf(bitmap).filter((i) => bound[i] !== expected);
  if (bad.length === 0) return undefined;
  return bad.map((i) => `${i} (${bound[i] === undefined ? 'unbound' : `bound to ${hex(bound[i]!)}`})`).join(', ');
}

function updateBindings({ state, caller }: CallContext, sender: EndpointId, receiver: EndpointId, bitmap: bigint, bind: boolean): Reply {
  const fn = bind ? 'NOTIFICATION_BIND' : 'NOTIFICATION_UNBIND';
  const code = fn.toLowerCase();
  // ffa_notifications_is_bind_valid.
  if (isSpmdLogicalId(sender) || isSpmdLogicalId(receiver)) {
    return refuse(
      INVALID_PARAMETERS,
      `${code}.logical_partition`,
      `${fn}: SPMD logical partitions take no part in notifications (sender ${hex(sender)}, receiver ${hex(receiver)})`,
    );
  }
  if (sender === receiver) return refuse(INVALID_PARAMETERS, `${code}.sender_is_receiver`, `${fn}: sender and receiver are both ${hex(sender)}`);
  if (receiver !== caller.id)
    return refuse(INVALID_PARAMETERS, `${code}.receiver_not_caller`, `${fn}: receiver ${hex(receiver)} is not the caller ${hex(caller.id)}`);
  if (bitmap === 0n) return refuse(INVALID_PARAMETERS, `${code}.empty_bitmap`, `${fn}: no notification IDs in the bitmap`);
  if (caller.version < FFA_VERSION_1_1) {
    return refuse(
      NOT_SUPPORTED,
      `${code}.receiver_version`,
      `${fn}: receiver ${hex(caller.id)} is FF-A v${formatVersion(caller.version)}; notifications need v1.1`,
    );
  }
  const n = caller.notifications;
  if (!n.enabled) return refuse(NOT_SUPPORTED, `${code}.not_enabled`, `${fn}: ${hex(caller.id)} does not receive notifications`);
  // Senders of the receiver's own world must exist (partitions always; VMs when a VM binds).
  const sameWorld = isSecureId(sender) || caller.kind === 'vm';
  if (bind && sameWorld && !state.endpoints.has(sender))
    return refuse(INVALID_PARAMETERS, `${code}.sender_unknown`, `${fn}: no endpoint ${hex(sender)} to bind as sender`);
  const { state: pending, bound } = sourceOf(n, sender);
  // Bind takes free IDs only; unbind only IDs bound to this sender.
  const bad = badBindings(bound, bitmap, bind ? undefined : sender);
  if (bad) {
    const what = bind ? 'already bound' : `not bound to ${hex(sender)}`;
    return refuse(DENIED, `${code}.${bind ? 'already_bound' : 'not_bound'}`, `${fn}: notification IDs ${what}: ${bad}`);
  }
  if ((pending.pending & bitmap) !== 0n) {
    return refuse(DENIED, `${code}.pending`, `${fn}: notifications ${hex(pending.pending & bitmap)} from ${hex(sender)} are still pending`);
  }
  for (const i of bitsOf(bitmap)) bound[i] = bind ? sender : undefined;
  return ffaSuccess();
}

/** BITMAP_CREATE/DESTROY: the hypervisor's calls, and the server created every VM's bitmap at attach. */
const hypervisorOnly = (fn: string) => () =>
  refuse(NOT_SUPPORTED, `${fn.toLowerCase()}.not_hypervisor`, `${fn}: the hypervisor's call; the server created every VM's bitmap at attach`);

/**
 * At the non-secure physical instance (SpmcProfile.normalWorld 'physical') there is no hypervisor:
 * the one normal-world endpoint makes these calls for itself, as Linux does at boot. Its bitmap
 * already exists (made at attach), so creating or destroying its own is taken as done.
 */
const physicalOwn =
  (fn: 'NOTIFICATION_BITMAP_CREATE' | 'NOTIFICATION_BITMAP_DESTROY') =>
  (ctx: CallContext, vmId: EndpointId): Reply => {
    if (ctx.caller.kind !== 'vm' || ctx.state.profile.normalWorld !== 'physical') return hypervisorOnly(fn)();
    if (vmId !== ctx.caller.id) {
      return refuse(INVALID_PARAMETERS, `${fn.toLowerCase()}.vm_id`, `${fn}: w1 names ${hex(vmId)}; the normal world here is ${hex(ctx.caller.id)} alone`);
    }
    return ffaSuccess();
  };

export const notificationAbis: AbiTable = {
  NOTIFICATION_BITMAP_CREATE: {
    handle: (ctx, { vmId }) => physicalOwn('NOTIFICATION_BITMAP_CREATE')(ctx, vmId),
    onInvalid: hypervisorOnly('NOTIFICATION_BITMAP_CREATE'),
  },
  NOTIFICATION_BITMAP_DESTROY: {
    handle: (ctx, { vmId }) => physicalOwn('NOTIFICATION_BITMAP_DESTROY')(ctx, vmId),
    onInvalid: hypervisorOnly('NOTIFICATION_BITMAP_DESTROY'),
  },

  NOTIFICATION_BIND: {
    handle(ctx, { route, perVcpu, bitmap }) {
      if (perVcpu) return refuse(INVALID_PARAMETERS, 'notification_bind.per_vcpu', 'NOTIFICATION_BIND: per-vCPU notifications are not supported (w2 bit 0)');
      return updateBindings(ctx, route.source, route.destination, bitmap, true);
    },
  },

  NOTIFICATION_UNBIND: {
    handle: (ctx, { route, bitmap }) => updateBindings(ctx, route.source, route.destination, bitmap, false),
  },

  NOTIFICATION_SET: {
    handle({ state, caller, vcpu }, { route, perVcpu, delaySri, vcpu: targetVcpu, bitmap }) {
      const F = 'NOTIFICATION_SET';
      if (perVcpu) return refuse(INVALID_PARAMETERS, 'notification_set.per_vcpu', `${F}: per-vCPU notifications are not supported (w2 bit 0)`);
      if (targetVcpu !== 0)
        return refuse(INVALID_PARAMETERS, 'notification_set.vcpu_id', `${F}: vCPU ID ${targetVcpu} in w2[31:16]; global notifications take 0`);
      const { source: sender, destination } = route;
      // ffa_notifications_is_set_valid.
      if (isSpmdLogicalId(sender) || isSpmdLogicalId(destination)) {
        return refuse(
          INVALID_PARAMETERS,
          'notification_set.logical_partition',
          `${F}: SPMD logical partitions take no part in notifications (sender ${hex(sender)}, receiver ${hex(destination)})`,
        );
      }
      if (sender === destination) return refuse(INVALID_PARAMETERS, 'notification_set.sender_is_receiver', `${F}: sender and receiver are both ${hex(sender)}`);
      if (sender !== caller.id)
        return refuse(INVALID_PARAMETERS, 'notification_set.sender_not_caller', `${F}: sender ${hex(sender)} is not the caller ${hex(caller.id)}`);
      if (bitmap === 0n) return refuse(INVALID_PARAMETERS, 'notification_set.empty_bitmap', `${F}: no notification IDs in the bitmap`);
      // Only the secure virtual instance may hold back the SRI.
      if (delaySri && caller.kind !== 'sp')
        return refuse(INVALID_PARAMETERS, 'notification_set.delay_sri', `${F}: only partitions may delay the SRI; ${hex(caller.id)} is a VM`);
      const receiver = state.endpoints.get(destination);
      if (!receiver) return refuse(INVALID_PARAMETERS, 'notification_set.receiver_unknown', `${F}: no endpoint ${hex(destination)}`);
      if (!receiver.notifications.enabled) return refuse(DENIED, 'notification_set.not_enabled', `${F}: ${hex(destination)} does not receive notifications`);
      const { state: which, bound } = sourceOf(receiver.notifications, sender);
      const bad = badBindings(bound, bitmap, sender);
      if (bad) return refuse(DENIED, 'notification_set.not_bound', `${F}: notification IDs not bound to ${hex(sender)} at ${hex(destination)}: ${bad}`);
      raiseNotifications(state, receiver, which, bitmap, delaySri ? vcpu : undefined);
      return ffaSuccess();
    },
  },

  NOTIFICATION_GET: {
    handle({ caller }, { receiver, vcpu, bitmaps }) {
      const F = 'NOTIFICATION_GET';
      if (receiver !== caller.id)
        return refuse(INVALID_PARAMETERS, 'notification_get.receiver_not_caller', `${F}: receiver ${hex(receiver)} is not the caller ${hex(caller.id)}`);
      if (vcpu >= caller.vcpuCount)
        return refuse(INVALID_PARAMETERS, 'notification_get.vcpu_id', `${F}: vCPU ID ${vcpu} is not below ${hex(caller.id)}'s count ${caller.vcpuCount}`);
      const n = caller.notifications;
      const fromSp = bitmaps.sp ? take(n.fromSp, NOTIFICATION_BITMAP_MASK) : 0n;
      const fromVm = bitmaps.vm ? take(n.fromVm, NOTIFICATION_BITMAP_MASK) : 0n;
      const spm = bitmaps.spmFramework ? take(n.framework, FRAMEWORK_SPM_MASK) : 0n;
      const hyp = bitmaps.hypFramework ? take(n.framework, FRAMEWORK_HYP_MASK) >> 32n : 0n;
      return ffaSuccess([...splitU64(fromSp), ...splitU64(fromVm), spm, hyp]);
    },
  },

  NOTIFICATION_INFO_GET: {
    handle({ caller }, { width }) {
      const F = `NOTIFICATION_INFO_GET_${width}`;
      // The scheduler's call: each VM schedules itself here; partitions are scheduled by the server.
      if (caller.kind !== 'vm')
        return refuse(
          NOT_SUPPORTED,
          'notification_info_get.not_scheduler',
          `${F}: the normal-world scheduler's call; partition ${hex(caller.id)} may not make it`,
        );
      const n = caller.notifications;
      if (unreported(n) === 0n)
        return refuse(NO_DATA, 'notification_info_get.no_data', `${F}: nothing pending for ${hex(caller.id)} that was not reported already`);
      for (const s of [n.fromSp, n.fromVm, n.framework]) s.retrieved |= s.pending;
      // One list, the caller's own ID; global notifications carry no vCPU IDs.
      return ffaSuccess(packNotificationInfo({ lists: [{ endpoint: caller.id, vcpus: [] }], morePending: false }, width), width);
    },
  },
};
