// The state every ABI handler works on, and the shape of a handler.

import {
  type CallOf,
  type DecodeResult,
  type EndpointId,
  type FfaCall,
  type FfaErrorCode,
  type FfaFunction,
  type FfaVersion,
  ffaError,
  FFA_PAGE_SIZE,
  type Reason,
  type Registers,
} from '../../proto/ffa/index.js';
import { encodeCall } from '../../proto/ffa/index.js';
import type { Endpoint, Vcpu, VcpuRef, VcpuState } from './endpoint.js';
import type { LogicalPartition } from './logical-partitions.js';
import { Pending } from './pending.js';
import { PhysicalMemory, type Window, WindowAllocator } from './memory.js';
import { MemShares } from './memory-share.js';
import { DEFAULT_PROFILE, type SpmcProfile } from './profile.js';

export interface SpmcLimits {
  /** Borrowers per memory transaction. */
  maxBorrowers: number;
  /** Fragments of one memory transaction descriptor. */
  maxFragments: number;
  /** Memory transactions alive at once. */
  maxTransactions: number;
  /** Memory transactions one sender has alive at once (being sent, or sent and not yet reclaimed). */
  maxTransactionsPerEndpoint: number;
  /** Largest total length (w1) of a memory transaction descriptor accepted by MEM_SHARE/LEND/DONATE, in bytes. */
  maxDescriptorBytes: number;
  /** RXTX_MAP: largest page count accepted, reported in FEATURES(RXTX_MAP) to v1.2 callers (1..63). */
  rxtxMaxPages: number;
  /** Largest RAM window a VM may ask for at attach. */
  maxRamBytes: bigint;
  /** Most vCPUs a VM may ask for at attach (at most 64). */
  maxVcpus: number;
  /**
   * Guest RAM actually stored, in bytes: the sparse store's pages (a page exists once something
   * non-zero is written to it). A guest write that would store more is refused.
   */
  maxStoredBytes: bigint;
  /** How many VMs may be attached at once. */
  maxVms: number;
}

export const DEFAULT_LIMITS: SpmcLimits = {
  maxBorrowers: 4,
  maxFragments: 20,
  maxTransactions: 256,
  maxTransactionsPerEndpoint: 64,
  maxDescriptorBytes: 1 << 20,
  rxtxMaxPages: 16,
  maxRamBytes: 64n << 30n,
  maxVcpus: 64,
  maxStoredBytes: 1n << 30n,
  maxVms: 256,
};

const PAGE = BigInt(FFA_PAGE_SIZE);

/** Emulated physical address space: windows start at 1 GiB, 2 MiB aligned, below 2^48. */
const RAM_SPACE_START = 1n << 30n;
const RAM_SPACE_END = 1n << 48n;
const RAM_WINDOW_ALIGN = 2n << 20n;

/**
 * Who outside the model wants to know what happens in it: transports deliver interrupts to their
 * endpoint, the server logs console lines. Called synchronously; an observer must not call back in.
 */
export interface SpmcObserver {
  /** An interrupt for a VM (the Schedule Receiver Interrupt when it has notifications pending). */
  interrupt?(endpoint: EndpointId, intid: number): void;
  /** A whole line of FFA_CONSOLE_LOG output from a partition. */
  console?(endpoint: EndpointId, line: string): void;
  attach?(ep: Endpoint): void;
  detach?(endpoint: EndpointId): void;
  /** A guest write that passed the access check. */
  write?(endpoint: EndpointId, address: bigint, data: Uint8Array): void;
  fault?(f: MemoryFaultRecord): void;
}

export class SpmcState {
  readonly endpoints = new Map<EndpointId, Endpoint>();
  readonly observers = new Set<SpmcObserver>();
  readonly memory = new PhysicalMemory();
  readonly windows = new WindowAllocator(RAM_SPACE_START, RAM_SPACE_END, RAM_WINDOW_ALIGN);
  /** Completions nobody was listening for any more (abandoned calls). */
  dropped = 0;
  /** The latest memory faults, oldest first (bounded). */
  readonly faults: MemoryFaultRecord[] = [];
  faultCount = 0;
  readonly shares: MemShares;
  /** The SPMD's logical partitions the manifest declares (not endpoints: no memory, no vCPUs). */
  readonly logicalPartitions: LogicalPartition[] = [];
  /**
   * Why each FFA_ERROR answer was given, keyed by the answer's register file (a fresh array per
   * answer): the registers stay the ABI's, and whoever holds them can ask for the reason.
   */
  readonly reasons = new WeakMap<Registers, Reason>();
  /** Refuse what the spec calls MBZ but Hafnium never checks (SpmcConfig.strict). */
  strict = false;
  /** Where this SPMC answers as another partition manager would (SpmcConfig.profile; server/personalities). */
  profile: SpmcProfile = DEFAULT_PROFILE;
  /** Fault injection (server/faults): the largest retrieve-response fragment written to an RX buffer (0: no cap). */
  fragmentCap = 0;
  /** RAM windows of endpoints that left while others still held pages in them. */
  private readonly orphanWindows: Window[] = [];

  constructor(
    readonly limits: SpmcLimits,
    handleSeed: bigint,
  ) {
    this.shares = new MemShares(handleSeed);
  }

  /** Free a leaving endpoint's window, unless pages of it are still borrowed, donated elsewhere, or in a transaction. */
  retireWindow(win: Window): void {
    this.orphanWindows.push(win);
    this.reapWindows();
  }

  reapWindows(): void {
    for (const win of [...this.orphanWindows]) {
      const end = win.base + win.size;
      const inUse =
        [...this.endpoints.values()].some((ep) => ep.access.list().some((r) => r.base < end && r.limit > win.base)) ||
        // Pages still in a transaction (a donation partway retrieved is mapped for nobody yet).
        [...this.shares.byHandle.values()].some(
          (s) => s.complete && s.constituents.some((c) => c.address < end && c.address + BigInt(c.pageCount) * PAGE > win.base),
        );
      if (inUse) continue;
      this.memory.zero(win.base, win.size);
      this.windows.free(win);
      this.orphanWindows.splice(this.orphanWindows.indexOf(win), 1);
    }
  }

  /** VMs then SPs, each in ID order: the order PARTITION_INFO_GET reports them. */
  orderedEndpoints(): Endpoint[] {
    return [...this.endpoints.values()].sort((a, b) => a.id - b.id);
  }
}

export interface MemoryFaultRecord {
  /** Running number of the fault since start. */
  seq: number;
  endpoint: EndpointId;
  address: bigint;
  length: number;
  access: 'read' | 'write';
}

export const FAULT_LOG_SIZE = 1000;

export interface CallContext {
  readonly state: SpmcState;
  readonly caller: Endpoint;
  readonly vcpu: Vcpu;
}

/**
 * A handler answers with an FF-A value (encoded for the caller's version), raw registers, or a
 * pending answer: the caller's vCPU is blocked until another call completes it.
 */
export type Reply = FfaCall | { raw: Registers } | { pending: Pending };

/**
 * Refuse a call: FFA_ERROR(error) with the reason, `code` as `<function>.<check>` and `text` a
 * sentence naming the check that failed and the values involved.
 */
export const refuse = (error: FfaErrorCode, code: string, text: string): FfaCall => ffaError(error, { code, text });

/** Encode an answer for `version`, remembering why when it is a refusal. */
export function encodeAnswer(state: SpmcState, value: FfaCall, version: FfaVersion): Registers {
  const r = encodeCall(value, version);
  if (value.fn === 'ERROR' && value.reason) state.reasons.set(r, value.reason);
  return r;
}

export const vcpuRef = (ep: Endpoint, v: Vcpu): VcpuRef => ({ endpoint: ep.id, vcpu: v.index });
export const sameVcpu = (a: VcpuRef | undefined, b: VcpuRef): boolean => !!a && a.endpoint === b.endpoint && a.vcpu === b.vcpu;

export function vcpuAt(state: SpmcState, ref: VcpuRef): { ep: Endpoint; vcpu: Vcpu } | undefined {
  const ep = state.endpoints.get(ref.endpoint);
  const vcpu = ep?.vcpus[ref.vcpu];
  return ep && vcpu ? { ep, vcpu } : undefined;
}

/** Block `vcpu` (waiting, blocked or preempted) and hand its caller the pending answer. */
export function park(vcpu: Vcpu, how: Exclude<VcpuState, 'running' | 'off'>, fn: string, on?: VcpuRef): Reply {
  const pending = new Pending(fn);
  vcpu.state = how;
  vcpu.pending = pending;
  vcpu.blockedOn = on;
  if (how === 'waiting') {
    // Nobody will see a request delivered to an abandoned wait: stop waiting, so senders get BUSY.
    // (An abandoned request or run stays blocked until answered; the answer is then dropped.)
    pending.onAbandon = () => {
      if (vcpu.pending !== pending) return;
      vcpu.pending = undefined;
      vcpu.state = vcpu.idle;
    };
  }
  return { pending };
}

/**
 * Resume a parked vCPU with `value` (encoded for its endpoint's version). It runs again; whether
 * anyone still listens (a client may have gone) does not change the model.
 */
export function wake(state: SpmcState, ref: VcpuRef, value: FfaCall): void {
  const at = vcpuAt(state, ref);
  if (!at || !at.vcpu.pending) return;
  const { ep, vcpu } = at;
  const pending = vcpu.pending!;
  vcpu.state = 'running';
  vcpu.pending = undefined;
  vcpu.blockedOn = undefined;
  if (!pending.complete(encodeAnswer(state, value, ep.version))) state.dropped++;
}

export type InvalidCall = Extract<DecodeResult, { ok: false; known: true }>;

export interface AbiHandler<F extends FfaFunction> {
  handle(ctx: CallContext, call: CallOf<F>): Reply;
  /** Where the reference runs a state check before argument checks, answer a malformed call here. */
  onInvalid?(ctx: CallContext, invalid: InvalidCall): Reply | undefined;
}

export type AbiTable = { [F in FfaFunction]?: AbiHandler<F> };
