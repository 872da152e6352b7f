// The SPMC model: endpoints, attach/detach, and handle(caller, vCPU, x0..x17). Pure and
// synchronous: no sockets, timers, clocks or logging; transports call in and await nothing.

import {
  decodeCall,
  type EndpointId,
  errorRegisters,
  FFA_ERRORS,
  FFA_FUNCTIONS,
  FFA_PAGE_SIZE,
  type FfaFunction,
  type FfaVersion,
  ffaSuccess,
  fidName,
  hex,
  isCompatible,
  isSecureId,
  isSpmdLogicalId,
  isVmId,
  type MemoryRegionDecl,
  PARTITION_ID_TYPE_MASK,
  PARTITION_PROPERTIES as P,
  PARTITION_PROPERTIES_MASK_V1_1,
  type Reason,
  type Registers,
  REGISTER_COUNT,
  SMCCC_NOT_SUPPORTED,
  SMCCC_VERSION_1_2,
  SPMC_ID,
  SPMD_LP_ID_END,
  SPMD_LP_ID_START,
  toRegisters,
  type Uuid,
  uuidEquals,
  VM_ID_MAX,
  VM_ID_MIN,
} from '../../proto/ffa/index.js';
import { type Endpoint, newEndpoint, VM_DEFAULT_VERSION } from './endpoint.js';
import { consoleAbis } from './console.js';
import { cpuCycleAbis } from './cpu-cycles.js';
import { featuresAbis } from './features.js';
import { messagingAbis } from './messaging.js';
import { releaseMemory } from './memory-share.js';
import { memoryAbis } from './memory-abis.js';
import { indirectMessagingAbis } from './indirect-messaging.js';
import type { LogicalPartition } from './logical-partitions.js';
import { flushDelayedSri, forgetSender, notificationAbis, resetReceiver, signalReceiver } from './notifications.js';
import { Pending } from './pending.js';
import { mailboxAbis, unmapMailbox } from './mailbox.js';
import { roundUp, type Window } from './memory.js';
import { partitionAbis } from './partitions.js';
import { mapRegions, type RegionProblem, reserveAbsolute } from './regions.js';
import {
  type AbiHandler,
  type AbiTable,
  type CallContext,
  DEFAULT_LIMITS,
  encodeAnswer,
  FAULT_LOG_SIZE,
  refuse,
  type SpmcLimits,
  type SpmcObserver,
  SpmcState,
  vcpuAt,
  vcpuRef,
  wake,
} from './state.js';
import { versionAbis } from './versions.js';
import { DEFAULT_PROFILE, PHYSICAL_NWD_ID, type SpmcProfile, versionFor } from './profile.js';
import { v13Abis } from './v1-3.js';

/** A secure partition as the manifest declares it (already validated). */
export interface PartitionManifest {
  id: EndpointId;
  name: string;
  uuids: Uuid[];
  ffaVersion: FfaVersion;
  execContexts: number;
  properties: number;
  ramBytes: bigint;
  /** Receives notifications (manifest notification-support; also the NOTIFICATION_RECV property). */
  notificationSupport: boolean;
  /** Built-in service name, or a remote partition that attaches over the wire with its credential. */
  behaviour: { kind: 'builtin'; service: string } | { kind: 'remote'; credential: string };
  /** The manifest's memory-regions and device-regions. */
  regions?: MemoryRegionDecl[];
}

export interface SpmcConfig {
  partitions: PartitionManifest[];
  /** The SPMD's logical partitions SPs may discover (manifest `logical-partitions`). */
  logicalPartitions?: LogicalPartition[];
  limits?: Partial<SpmcLimits>;
  /** Seeds memory handles; the server gives a secure random value (tests a fixed one). */
  handleSeed?: bigint;
  /**
   * Also refuse what the spec calls MBZ but Hafnium never checks (reserved descriptor fields,
   * attribute padding, unused registers of memory calls). Off by default: never stricter than Hafnium.
   */
  strict?: boolean;
  /**
   * Answer as another partition manager would where it differs (version, FEATURES, RX/TX rules,
   * partition-info layout, the normal world's view); server/personalities names complete sets.
   * Unset fields are Hafnium's, as this model answers by default.
   */
  profile?: Partial<SpmcProfile>;
}

export interface AttachParams {
  endpointId?: number;
  name?: string;
  vcpuCount?: number;
  ramBytes?: bigint;
  properties?: number;
  uuids?: Uuid[];
  credential?: string;
  /** A VM's memory and device regions (its memory is all non-secure). */
  regions?: MemoryRegionDecl[];
  /** Where a VM's RAM window must lie (4 KiB aligned; IPA == PA); unset or 0: the SPMC places it. */
  ramBase?: bigint;
}

export type SpmcErrorKind = 'invalid-argument' | 'already-exists' | 'permission-denied' | 'not-found' | 'resource-exhausted';

/** A refusal of the transport-level request itself (the gRPC status), never an FF-A error. */
export class SpmcError extends Error {
  constructor(
    readonly kind: SpmcErrorKind,
    message: string,
  ) {
    super(message);
    this.name = 'SpmcError';
  }
}

/** Guest access to memory it may not touch. */
export class MemoryFault extends Error {
  constructor(
    readonly endpoint: EndpointId,
    readonly address: bigint,
    readonly length: number,
    readonly access: 'read' | 'write',
  ) {
    super(`endpoint ${hex(endpoint)} may not ${access} ${length} bytes at ${hex(address)}`);
    this.name = 'MemoryFault';
  }
}

export const VM_DEFAULT_RAM = 64n << 20n;
export const VM_DEFAULT_PROPERTIES = P.AARCH64_EXEC | P.DIRECT_REQ_SEND | P.DIRECT_REQ2_SEND | P.INDIRECT_MSG | P.NOTIFICATION_RECV;
export const MAX_VCPUS = 64;
export const MAX_UUIDS = 8;
const PAGE = BigInt(FFA_PAGE_SIZE);
const PA_SPACE = 1n << 48n;

export class Spmc {
  readonly state: SpmcState;
  private readonly abis: AbiTable;
  private readonly manifest = new Map<EndpointId, PartitionManifest>();
  /** Remote SPs currently attached over the wire. */
  private readonly remoteAttached = new Set<EndpointId>();
  /** What each VM's declared regions took of the address space, given back when it leaves. */
  private readonly regionWindows = new Map<EndpointId, Window[]>();

  constructor(config: SpmcConfig) {
    this.state = new SpmcState({ ...DEFAULT_LIMITS, ...config.limits }, config.handleSeed ?? 0x5eed5eed5eed5eedn);
    this.state.strict = config.strict ?? false;
    this.state.profile = { ...DEFAULT_PROFILE, ...config.profile };
    this.abis = {
      ...versionAbis,
      ...featuresAbis(() => this.abis),
      ...mailboxAbis,
      ...partitionAbis,
      ...messagingAbis,
      ...cpuCycleAbis,
      ...memoryAbis,
      ...indirectMessagingAbis,
      ...notificationAbis,
      ...consoleAbis,
      ...v13Abis,
    };
    // Every partition's absolute regions first, so that no RAM window lands on one.
    const absolute = config.partitions.map((p) => regionsOrThrow(p.name, reserveAbsolute(this.state, p.regions ?? [])));
    config.partitions.forEach((p, i) => this.addPartition(p, absolute[i]!));
    for (const lp of config.logicalPartitions ?? []) this.addLogicalPartition(lp);
  }

  private addLogicalPartition(lp: LogicalPartition): void {
    if (!isSpmdLogicalId(lp.id))
      throw new SpmcError('invalid-argument', `logical partition id ${hex(lp.id)} is not in ${hex(SPMD_LP_ID_START)}..${hex(SPMD_LP_ID_END)}`);
    if (this.state.endpoints.has(lp.id) || this.state.logicalPartitions.some((o) => o.id === lp.id)) {
      throw new SpmcError('already-exists', `logical partition id ${hex(lp.id)} declared twice`);
    }
    if (lp.uuids.length === 0) throw new SpmcError('invalid-argument', `logical partition ${lp.name} has no UUID`);
    this.state.logicalPartitions.push(lp);
  }

  logicalPartitions(): readonly LogicalPartition[] {
    return this.state.logicalPartitions;
  }

  private addPartition(p: PartitionManifest, absolute: Window[]): void {
    if (!isSecureId(p.id) || p.id === SPMC_ID) throw new SpmcError('invalid-argument', `partition id ${hex(p.id)} is not an SP id`);
    if (this.state.endpoints.has(p.id)) throw new SpmcError('already-exists', `partition id ${hex(p.id)} declared twice`);
    if (!isCompatible(p.ffaVersion, versionFor(this.state.profile, 'sp')))
      throw new SpmcError('invalid-argument', `partition ${p.name}: FF-A version not supported`);
    const ram = this.state.windows.allocate(roundUp(p.ramBytes, PAGE));
    if (!ram) throw new SpmcError('resource-exhausted', `no room for partition ${p.name}'s memory`);
    const ep = newEndpoint(
      {
        id: p.id,
        name: p.name,
        kind: 'sp',
        vcpuCount: p.execContexts,
        properties: p.properties,
        uuids: p.uuids,
        version: p.ffaVersion,
        ram,
      },
      p.notificationSupport,
    );
    // Its manifest's version until it negotiates another before its first other call (versions.ts).
    regionsOrThrow(p.name, mapRegions(this.state, ep, p.regions ?? [], absolute));
    this.state.endpoints.set(p.id, ep);
    this.manifest.set(p.id, p);
  }

  /** Watch interrupts for VMs and partitions' console lines; returns the way to stop watching. */
  observe(o: SpmcObserver): () => void {
    this.state.observers.add(o);
    return () => void this.state.observers.delete(o);
  }

  /** A VM's interrupt line (re)connected: raise what is already pending for it. */
  resignal(id: EndpointId): void {
    const ep = this.state.endpoints.get(id);
    if (ep?.kind === 'vm') signalReceiver(this.state, ep);
  }

  partition(id: EndpointId): PartitionManifest | undefined {
    return this.manifest.get(id);
  }

  partitions(): PartitionManifest[] {
    return [...this.manifest.values()];
  }

  endpoint(id: EndpointId): Endpoint | undefined {
    return this.state.endpoints.get(id);
  }

  /** Join as a VM (id requested or assigned), or as a remote SP named by the manifest. */
  attach(params: AttachParams): Endpoint {
    const requested = params.endpointId ?? 0;
    if (!Number.isInteger(requested) || requested < 0 || requested > 0xffff) {
      throw new SpmcError('invalid-argument', `endpoint_id ${requested} is not a 16-bit id`);
    }
    if (isSecureId(requested)) return this.attachRemotePartition(requested, params.credential ?? '');

    const vcpuCount = params.vcpuCount || 1;
    if (!Number.isInteger(vcpuCount) || vcpuCount < 1 || vcpuCount > MAX_VCPUS) {
      throw new SpmcError('invalid-argument', `vcpu_count must be 1..${MAX_VCPUS}`);
    }
    const { maxVcpus, maxRamBytes } = this.state.limits;
    if (vcpuCount > maxVcpus) throw new SpmcError('resource-exhausted', `vcpu_count ${vcpuCount} is above this server's limit of ${maxVcpus} vCPUs per VM`);
    const ramBytes = roundUp(params.ramBytes || VM_DEFAULT_RAM, PAGE);
    // More than the address space is a malformed request; more than the server allows, a limit.
    if (ramBytes > PA_SPACE) throw new SpmcError('invalid-argument', `ram_bytes ${hex(ramBytes)} is beyond the 48-bit physical address space`);
    if (ramBytes > maxRamBytes) {
      throw new SpmcError('resource-exhausted', `ram_bytes ${hex(ramBytes)} is above this server's limit of ${hex(maxRamBytes)} bytes per VM`);
    }
    // 0 asks for the usual guest: AArch64, sending direct requests (both forms), receiving none.
    const properties = params.properties || VM_DEFAULT_PROPERTIES;
    if ((properties & ~PARTITION_PROPERTIES_MASK_V1_1) !== 0 || (properties & PARTITION_ID_TYPE_MASK) !== 0) {
      throw new SpmcError('invalid-argument', `properties ${hex(properties)} set reserved bits or a non-PE id type`);
    }
    const uuids = params.uuids ?? [];
    if (uuids.length > MAX_UUIDS) throw new SpmcError('invalid-argument', `at most ${MAX_UUIDS} uuids`);
    if (uuids.some((u, i) => uuids.findIndex((v) => uuidEquals(u, v)) !== i)) throw new SpmcError('invalid-argument', 'duplicate uuid');
    const name = params.name ?? '';
    if (name.length > 64) throw new SpmcError('invalid-argument', 'name longer than 64 characters');

    const vms = [...this.state.endpoints.values()].filter((e) => e.kind === 'vm').length;
    if (vms >= this.state.limits.maxVms) throw new SpmcError('resource-exhausted', `at most ${this.state.limits.maxVms} VMs`);
    const physical = this.state.profile.normalWorld === 'physical';
    if (physical && requested !== PHYSICAL_NWD_ID) {
      throw new SpmcError(
        'invalid-argument',
        `endpoint_id ${hex(requested)}: at the non-secure physical instance the one normal-world endpoint is ${PHYSICAL_NWD_ID}`,
      );
    }
    if (physical && vms > 0) throw new SpmcError('resource-exhausted', 'the non-secure physical instance has one normal-world endpoint, and it is attached');
    let id = requested;
    if (physical) {
      // No hypervisor: the one normal-world endpoint is ID 0 (TF-A's ns_ep_desc[0], OP-TEE's guest 0).
    } else if (id === 0) {
      id = VM_ID_MIN;
      while (id <= VM_ID_MAX && this.state.endpoints.has(id)) id++;
    } else if (this.state.endpoints.has(id)) {
      throw new SpmcError('already-exists', `endpoint id ${hex(id)} is in use`);
    }
    if (!physical && !isVmId(id)) throw new SpmcError('resource-exhausted', 'no free VM id');
    const regions = params.regions ?? [];
    const absolute = reserveAbsolute(this.state, regions);
    if ('problem' in absolute) throw new SpmcError('invalid-argument', `regions: ${absolute.problem}`);
    const ram = this.placeRam(ramBytes, params.ramBase ?? 0n);
    if (!ram.window) {
      for (const w of absolute) this.state.windows.free(w);
      throw new SpmcError(ram.kind, ram.problem);
    }
    const ep = newEndpoint(
      {
        id,
        name: name || `vm${id}`,
        kind: 'vm',
        vcpuCount,
        properties,
        uuids,
        version: VM_DEFAULT_VERSION,
        ram: ram.window,
      },
      true,
    ); // the server, as hypervisor, creates every VM's notification bitmap
    const windows = mapRegions(this.state, ep, regions, absolute);
    if ('problem' in windows) {
      this.state.windows.free(ram.window);
      throw new SpmcError('invalid-argument', `regions: ${windows.problem}`);
    }
    this.regionWindows.set(id, windows);

    this.state.endpoints.set(id, ep);
    for (const o of this.state.observers) o.attach?.(ep);
    return ep;
  }

  /** The RAM window: where the attach asks for it (if free), or the first that fits. */
  private placeRam(size: bigint, base: bigint): { window: Window } | { window?: undefined; kind: SpmcErrorKind; problem: string } {
    if (base === 0n) {
      const window = this.state.windows.allocate(size);
      return window ? { window } : { kind: 'resource-exhausted', problem: 'no room for the RAM window' };
    }
    if (base < 0n || base % PAGE !== 0n) return { kind: 'invalid-argument', problem: `ram_base ${hex(base)} is not 4 KiB aligned` };
    if (base + size > PA_SPACE) return { kind: 'invalid-argument', problem: `ram_base ${hex(base)}+${hex(size)} is beyond the 48-bit physical address space` };
    const window = this.state.windows.reserve(base, size);
    return window
      ? { window }
      : { kind: 'already-exists', problem: `ram_base ${hex(base)}+${hex(size)} overlaps memory already given to an endpoint or region` };
  }

  private attachRemotePartition(id: EndpointId, credential: string): Endpoint {
    const p = this.manifest.get(id);
    const ep = this.state.endpoints.get(id);
    if (!p || !ep) throw new SpmcError('permission-denied', `${hex(id)} is not a partition of the manifest`);
    if (p.behaviour.kind !== 'remote' || !sameSecret(p.behaviour.credential, credential)) {
      throw new SpmcError('permission-denied', `attaching as partition ${hex(id)} needs its credential`);
    }
    if (this.remoteAttached.has(id)) throw new SpmcError('already-exists', `partition ${hex(id)} is already attached`);
    this.remoteAttached.add(id);
    // Each attach boots the partition's image again: it starts from its declared version, unlocked.
    ep.version = p.ffaVersion;
    ep.versionLocked = false;
    for (const o of this.state.observers) o.attach?.(ep);
    return ep;
  }

  /** Leave: Rx/Tx unmapped, memory freed, id reusable. A remote SP stays in the manifest. */
  detach(id: EndpointId): void {
    const ep = this.state.endpoints.get(id);
    if (!ep) throw new SpmcError('not-found', `no endpoint ${hex(id)}`);
    for (const o of this.state.observers) o.detach?.(id);
    this.releaseVcpus(ep);
    unmapMailbox(ep);
    releaseMemory(this.state, ep);
    if (ep.kind === 'sp') {
      resetReceiver(ep);
      this.remoteAttached.delete(id);
      return;
    }
    this.state.endpoints.delete(id);
    forgetSender(this.state, id);
    this.state.retireWindow(ep.ram);
    for (const w of this.regionWindows.get(id) ?? []) this.state.retireWindow(w);
    this.regionWindows.delete(id);
  }

  /**
   * Everything that involved the leaving endpoint's vCPUs ends cleanly: whoever waits on one of
   * them is answered ABORTED, requests it made are answered into the void, and a partition that
   * yielded to it gets its cycles back so it can finish.
   */
  private releaseVcpus(ep: Endpoint): void {
    const aborted = refuse(FFA_ERRORS.ABORTED, 'detach.endpoint_left', `endpoint ${hex(ep.id)} (${ep.name}) left while this call waited on it`);
    for (const v of ep.vcpus) {
      if (v.handling && !v.handling.originGone) {
        const origin = vcpuAt(this.state, v.handling.origin);
        if (origin?.vcpu.state === 'blocked' && origin.vcpu.blockedOn?.endpoint === ep.id) wake(this.state, v.handling.origin, aborted);
      }
      if (v.runBy) wake(this.state, v.runBy, aborted);
      for (const other of this.state.endpoints.values()) {
        for (const o of other.vcpus) {
          if (o.handling?.origin.endpoint === ep.id && o.handling.origin.vcpu === v.index) o.handling.originGone = true;
          if (o.runBy?.endpoint === ep.id && o.runBy.vcpu === v.index) o.runBy = undefined;
          if (o.state === 'preempted' && o.yieldedTo?.endpoint === ep.id && o.yieldedTo.vcpu === v.index) {
            o.yieldedTo = undefined;
            wake(this.state, vcpuRef(other, o), ffaSuccess());
          }
        }
      }
      // Its own outstanding call is over too.
      v.pending?.complete(encodeAnswer(this.state, aborted, ep.version));
      Object.assign(v, { state: v.idle, pending: undefined, handling: undefined, blockedOn: undefined, runBy: undefined, yieldedTo: undefined });
    }
  }

  /**
   * One SMCCC call, atomically against the state: the answer now, or a Pending one. (Transports
   * call through the session core, whose interceptors see every call.)
   */
  handle(callerId: EndpointId, vcpuIndex: number, x: readonly bigint[]): Registers | Pending {
    return this.dispatch(callerId, vcpuIndex, x);
  }

  /** Why the model answered these registers with FFA_ERROR (undefined for any other answer). */
  reasonFor(answer: Registers): Reason | undefined {
    return this.state.reasons.get(answer);
  }

  private dispatch(callerId: EndpointId, vcpuIndex: number, x: readonly bigint[]): Registers | Pending {
    const caller = this.state.endpoints.get(callerId);
    if (!caller) throw new SpmcError('not-found', `no endpoint ${hex(callerId)}`);
    const vcpu = caller.vcpus[vcpuIndex];
    if (!Number.isInteger(vcpuIndex) || !vcpu) {
      throw new SpmcError('invalid-argument', `vcpu ${vcpuIndex} is not below vcpu_count ${caller.vcpuCount}`);
    }
    if (x.length > REGISTER_COUNT) throw new SpmcError('invalid-argument', `at most ${REGISTER_COUNT} registers`);
    if (vcpu.state !== 'running' && vcpu.state !== 'off') {
      throw new SpmcError('invalid-argument', `vcpu ${vcpuIndex} is ${vcpu.state} in FFA_${vcpu.pending?.fn ?? '?'}`);
    }

    const decoded = decodeCall(x, caller.version);
    if (!decoded.ok && !decoded.known) {
      if (decoded.smcccVersion) return toRegisters([SMCCC_VERSION_1_2]);
      if (!decoded.inFfaRange) return toRegisters([SMCCC_NOT_SUPPORTED]);
      const r = errorRegisters(FFA_ERRORS.NOT_SUPPORTED);
      this.state.reasons.set(r, { code: 'ffa.unknown_function', text: `function ID ${hex(decoded.fid)} is not an FF-A function this SPMC implements` });
      return r;
    }
    const fn: FfaFunction = decoded.ok ? decoded.call.fn : decoded.fn;
    const handler = this.abis[fn] as AbiHandler<FfaFunction> | undefined;
    // Not handled at all, newer than the version this SPMC answers as, or one the profile's SPMC does not do for VMs.
    const { profile } = this.state;
    if (!handler || FFA_FUNCTIONS[fn].since > versionFor(profile, caller.kind) || (caller.kind === 'vm' && profile.vmUnsupported.includes(fn))) {
      const name = fidName(decoded.fid);
      return encodeAnswer(
        this.state,
        refuse(FFA_ERRORS.NOT_SUPPORTED, `${fn.toLowerCase()}.not_supported`, `${name}: not handled by this SPMC`),
        caller.version,
      );
    }

    const ctx: CallContext = { state: this.state, caller, vcpu };
    const reply = decoded.ok
      ? handler.handle(ctx, decoded.call as never)
      : (handler.onInvalid?.(ctx, decoded) ?? refuse(decoded.error, `${fn.toLowerCase()}.mbz`, `${fn}: ${decoded.why}`));
    if (fn !== 'VERSION' && fn !== 'INTERRUPT') caller.versionLocked = true;
    if (vcpu.delayedSri) flushDelayedSri(this.state, vcpu);
    if ('pending' in reply) return reply.pending;
    return 'raw' in reply ? reply.raw : encodeAnswer(this.state, reply, caller.version);
  }

  /** Guest read, checked against the endpoint's access table. */
  readMemory(id: EndpointId, address: bigint, length: number): Uint8Array {
    const ep = this.requireEndpoint(id);
    if (!ep.access.allows(address, address + BigInt(length), 'ro')) throw this.fault(id, address, length, 'read');
    return this.state.memory.read(address, length);
  }

  /** Guest write, checked against the endpoint's access table. */
  writeMemory(id: EndpointId, address: bigint, data: Uint8Array): void {
    const ep = this.requireEndpoint(id);
    if (!ep.access.allows(address, address + BigInt(data.length), 'rw')) throw this.fault(id, address, data.length, 'write');
    // Checked before any byte is written: a refused write changes nothing. What the SPMC itself
    // writes (RX buffers) is counted but never refused: it is bounded by the mailboxes.
    const memory = this.state.memory;
    const added = memory.newPagesFor(address, data);
    const cap = this.state.limits.maxStoredBytes;
    if (added > 0 && memory.storedBytes + BigInt(added) * PAGE > cap) {
      throw new SpmcError(
        'resource-exhausted',
        `guest RAM store full: writing ${data.length} bytes at ${hex(address)} needs ${added} new pages past the ${hex(cap)}-byte limit (${hex(memory.storedBytes)} stored)`,
      );
    }
    memory.write(address, data);
    for (const o of this.state.observers) o.write?.(id, address, data);
  }

  /** Record a fault (kept in a bounded log) and return it to throw. */
  private fault(endpoint: EndpointId, address: bigint, length: number, access: 'read' | 'write'): MemoryFault {
    const log = this.state.faults;
    const record = { seq: ++this.state.faultCount, endpoint, address, length, access };
    log.push(record);
    if (log.length > FAULT_LOG_SIZE) log.splice(0, log.length - FAULT_LOG_SIZE);
    for (const o of this.state.observers) o.fault?.(record);
    return new MemoryFault(endpoint, address, length, access);
  }

  private requireEndpoint(id: EndpointId): Endpoint {
    const ep = this.state.endpoints.get(id);
    if (!ep) throw new SpmcError('not-found', `no endpoint ${hex(id)}`);
    return ep;
  }
}

/** A manifest partition's regions that do not fit are a manifest error. */
function regionsOrThrow<T>(partition: string, r: T | RegionProblem): T {
  if (r && typeof r === 'object' && 'problem' in r) throw new SpmcError('invalid-argument', `partition ${partition}: ${r.problem}`);
  return r as T;
}

/** Compare without an early exit, so timing does not tell how much of a credential matched. */
function sameSecret(a: string, b: string): boolean {
  let diff = a.length ^ b.length;
  for (let i = 0; i < Math.max(a.length, b.length); i++) diff |= (a.charCodeAt(i) || 0) ^ (b.charCodeAt(i) || 0);
  return diff === 0 && a.length > 0;
}
