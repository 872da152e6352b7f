// The state every ABI handler works on, and the shape of a handler.

import {
  type CallOf,
  type DecodeResult,
  type EndpointId,
  type FfaCall,
  type FfaFunction,
  type Registers,
  type Width,
} from '../../proto/ffa/index.js';
import type { Endpoint } from './endpoint.js';
import { PhysicalMemory, WindowAllocator } from './memory.js';

export interface SpmcLimits {
  /** RXTX_MAP: largest page count accepted, reported in FEATURES(RXTX_MAP) to v1.2 callers (1..63). */
  rxtxMaxPages: number;
  /** Largest RAM window a VM may ask for at attach. */
  maxRamBytes: bigint;
  /** How many VMs may be attached at once. */
  maxVms: number;
}

export const DEFAULT_LIMITS: SpmcLimits = {
  rxtxMaxPages: 16,
  maxRamBytes: 64n << 30n,
  maxVms: 256,
};

/** Emulated physical address space: windows start at 1 GiB, 2 MiB aligned, below 2^48. */
const RAM_SPACE_START = 1n << 30n;
const RAM_SPACE_END = 1n << 48n;
const RAM_WINDOW_ALIGN = 2n << 20n;

export class SpmcState {
  readonly endpoints = new Map<EndpointId, Endpoint>();
  readonly memory = new PhysicalMemory();
  readonly windows = new WindowAllocator(RAM_SPACE_START, RAM_SPACE_END, RAM_WINDOW_ALIGN);

  constructor(readonly limits: SpmcLimits) {}

  /** VMs then SPs, each in ID order: the order PARTITION_INFO_GET reports them. */
  orderedEndpoints(): Endpoint[] {
    return [...this.endpoints.values()].sort((a, b) => a.id - b.id);
  }
}

export interface CallContext {
  readonly state: SpmcState;
  readonly caller: Endpoint;
  readonly vcpu: number;
}

/** A handler answers with an FF-A value (encoded for the caller's version) or raw registers. */
export type Reply = FfaCall | { raw: Registers };

export type InvalidCall = Extract<DecodeResult, { ok: false; known: true }>;

export interface AbiHandler<F extends FfaFunction> {
  handle(ctx: CallContext, call: CallOf<F>): Reply;
  /** Where the reference runs a state check before argument checks, answer a malformed call here. */
  onInvalid?(ctx: CallContext, invalid: InvalidCall): Reply | undefined;
  /** FFA_FEATURES for this function: interface properties (w2, w3), or undefined for NOT_SUPPORTED. */
  features?(ctx: CallContext, width: Width, inputProperties: number): [number, number] | undefined;
}

export type AbiTable = { [F in FfaFunction]?: AbiHandler<F> };
