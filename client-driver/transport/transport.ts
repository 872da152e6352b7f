// The driver's view of the partition manager: the kernel's invoke_ffa_fn (x0..x17 in, x0..x17
// out) plus access to guest memory, and the way an emulated VM joins.

import type { Reason, Registers } from '../../proto/ffa/index.js';

/** x0..x17 of an answer; when it is FFA_ERROR, the SPMC's reason for the refusal rides along. */
export type Answer = Registers & { reason?: Reason };

export interface Transport {
  /** One SMCCC call on a vCPU; resolves to x0..x17 (18 entries), with the reason of a refusal. */
  invoke(x: Registers, vcpu?: number): Promise<Answer>;
  readMemory(address: bigint, length: number): Promise<Uint8Array>;
  writeMemory(address: bigint, data: Uint8Array): Promise<void>;
  /** Leave the SPMC: it releases this endpoint. */
  detach(): Promise<void>;
  /**
   * The endpoint's interrupt line (the GIC, for an emulated VM): `handler` runs for each interrupt
   * the SPMC raises for it, including any already pending when the line connects. Returns the
   * disconnect. `onLost` says why the line went down if it did so on its own (server gone).
   */
  connectInterrupts(handler: (intid: number, vcpu: number) => void, onLost?: (e: TransportError) => void): () => void;
}

export interface AttachOptions {
  /** 0 or absent: let the SPMC choose. */
  endpointId?: number;
  name?: string;
  vcpuCount?: number;
  ramBytes?: bigint;
  properties?: number;
  uuids?: string[];
  credential?: string;
}

export interface Attachment {
  endpointId: number;
  ramBase: bigint;
  ramBytes: bigint;
  /** A manifest partition's declared FF-A version, for its driver to ask for; absent for a VM. */
  ffaVersion?: number;
  transport: Transport;
}

/** Something that can attach an endpoint to an SPMC (over gRPC, or in process). */
export interface Connector {
  attach(opts: AttachOptions): Promise<Attachment>;
  /** Release what the connector holds (channels); attachments should be detached first. */
  close(): void;
}

/** Why a call did not reach the SPMC or was refused by the transport (not an FF-A error). */
export type TransportErrorCode =
  | 'UNAUTHENTICATED'
  | 'INVALID_ARGUMENT'
  | 'PERMISSION_DENIED'
  | 'ALREADY_EXISTS'
  | 'RESOURCE_EXHAUSTED'
  | 'UNAVAILABLE'
  | 'INTERNAL'
  | 'CANCELLED'
  | 'DEADLINE_EXCEEDED'
  | 'UNKNOWN';

export class TransportError extends Error {
  constructor(
    readonly code: TransportErrorCode,
    message: string,
  ) {
    super(`${code}: ${message}`);
    this.name = 'TransportError';
  }
}
