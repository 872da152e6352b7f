// Endpoints (Hafnium's vm.c): every VM and SP the SPMC knows, with its version, properties, RAM
// window, access table and mailbox.

import {
  type EndpointId,
  type FfaVersion,
  type Uuid,
  FFA_VERSION_1_0,
} from '../../proto/ffa/index.js';
import { AccessTable, type Window } from './memory.js';

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

export interface Endpoint {
  readonly id: EndpointId;
  readonly name: string;
  readonly kind: EndpointKind;
  readonly vcpuCount: number;
  readonly properties: number;
  readonly uuids: readonly Uuid[];
  /** The version that picks this endpoint's layouts: negotiated (VMs) or declared (SPs). */
  version: FfaVersion;
  /** Set by the first FF-A call other than FFA_VERSION; from then on only the same version is accepted. */
  versionLocked: boolean;
  readonly ram: Window;
  readonly access: AccessTable;
  mailbox?: Mailbox;
}

/** Before a VM negotiates, it is taken to be a v1.0 caller (the oldest layouts). */
export const VM_DEFAULT_VERSION = FFA_VERSION_1_0;

export function newEndpoint(init: Omit<Endpoint, 'access' | 'versionLocked' | 'mailbox'>): Endpoint {
  const ep: Endpoint = { ...init, access: new AccessTable(), versionLocked: false };
  ep.access.assign(init.ram.base, init.ram.base + init.ram.size, 'owned', 'rw');
  return ep;
}
