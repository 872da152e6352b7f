// Endpoints (Hafnium's vm.c): every VM and SP the SPMC knows, with its version, properties, RAM
// window, access table and mailbox.

import { type EndpointId, type FfaCall, type FfaVersion, type Uuid, FFA_VERSION_OLDEST } from '../../proto/ffa/index.js';
import { AccessTable, type Window } from './memory.js';
import { type Notifications, newNotifications } from './notifications.js';
import type { Pending } from './pending.js';

export type EndpointKind = 'vm' | 'sp';

export type RxState = 'empty' | 'full';

export interface Mailbox {
  tx: bigint;
  rx: bigint;
  pageCount: number;
  /** EMPTY: the partition manager (producer) owns RX; FULL: the endpoint (consumer) does. */
  rxState: RxState;
  /** Who filled RX and with what, while FULL. */
  rxProducer?: EndpointId;
  rxFunction?: string;
}

export interface VcpuRef {
  endpoint: EndpointId;
  vcpu: number;
}

/** A direct request a vCPU is serving. */
export interface DirectRequest {
  origin: VcpuRef;
  /** Every endpoint from the first requester up to and including `origin`: a loop is DENIED. */
  chain: EndpointId[];
  kind: 'req' | 'req2';
  framework: boolean;
  /** The origin left (detached) while this was served: its response goes nowhere. */
  originGone: boolean;
  /**
   * The response, given while notifications were pending: the responder took the NPI instead of
   * waiting, and the origin gets this when the responder next waits.
   */
  response?: FfaCall;
}

/**
 * An execution context. `running`: it may make calls (a VM's vCPU, or an SP handling a request).
 * `waiting`: in FFA_MSG_WAIT (or after a response), for the next request. `blocked`: it sent a
 * direct request or ran another vCPU. `preempted`: it yielded and waits for FFA_RUN. `off`: a
 * partition context that has not reached FFA_MSG_WAIT yet (or whose remote process left).
 */
export type VcpuState = 'running' | 'waiting' | 'blocked' | 'preempted' | 'off';

export interface Vcpu {
  readonly index: number;
  /** What it falls back to when nothing holds it: a VM's vCPU runs, a partition's context is off. */
  readonly idle: 'running' | 'off';
  state: VcpuState;
  /** The caller's completion while waiting, blocked or preempted. */
  pending?: Pending;
  handling?: DirectRequest;
  /** Whom this vCPU gave cycles to (a request or FFA_RUN), while blocked. */
  blockedOn?: VcpuRef;
  /** Who gave this vCPU cycles with FFA_RUN outside any request; its next MSG_WAIT or YIELD goes there. */
  runBy?: VcpuRef;
  /** While preempted: the vCPU it yielded to, the only one that may FFA_RUN it again. */
  yieldedTo?: VcpuRef;
  /** Receivers whose Schedule Receiver Interrupt this partition delayed until it stops running. */
  delayedSri?: Set<EndpointId>;
}

export interface Endpoint {
  readonly id: EndpointId;
  readonly name: string;
  readonly kind: EndpointKind;
  readonly vcpuCount: number;
  readonly properties: number;
  readonly uuids: readonly Uuid[];
  /**
   * The version that picks this endpoint's layouts and what others see of it: the declared one (a
   * partition's manifest; v1.0 for a VM) until FFA_VERSION negotiates another (versions.ts).
   */
  version: FfaVersion;
  /** Set by the first FF-A call other than FFA_VERSION; from then on only the same version is accepted. */
  versionLocked: boolean;
  readonly ram: Window;
  readonly access: AccessTable;
  mailbox?: Mailbox;
  readonly vcpus: Vcpu[];
  readonly notifications: Notifications;
  /** FFA_CONSOLE_LOG output: the unfinished line, then the latest whole lines (bounded). */
  readonly console: { partial: string; lines: string[] };
  /** Fault injection (server/faults): RX is held full (producers find it busy); SRIs for it are held back. */
  rxHeld?: boolean;
  sriHeld?: boolean;
}

/** Before a VM negotiates, it is taken to be a caller of the oldest version (the oldest layouts). */
export const VM_DEFAULT_VERSION = FFA_VERSION_OLDEST;

export function newEndpoint(
  init: Omit<Endpoint, 'access' | 'versionLocked' | 'mailbox' | 'vcpus' | 'notifications' | 'console'>,
  notificationsEnabled: boolean,
): Endpoint {
  // A VM's vCPUs run as soon as it attaches; a partition's contexts start when they first wait.
  const idle = init.kind === 'vm' ? 'running' : 'off';
  const vcpus = Array.from({ length: init.vcpuCount }, (_, index): Vcpu => ({ index, idle, state: idle }));
  const ep: Endpoint = {
    ...init,
    access: new AccessTable(),
    versionLocked: false,
    vcpus,
    notifications: newNotifications(notificationsEnabled),
    console: { partial: '', lines: [] },
  };
  ep.access.assign(init.ram.base, init.ram.base + init.ram.size, 'owned', 'rw');
  return ep;
}
