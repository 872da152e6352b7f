// FfaDriver: the behaviour of Linux's drivers/firmware/arm_ffa/driver.c, over a Transport.
//
// init() follows ffa_init()/ffa_probe(): SMCCC version, FFA_VERSION, ID_GET, FEATURES(RXTX_MAP)
// sizing, RXTX_MAP, feature probes, notification setup, partition discovery. Every step that
// needs undoing pushes its undo; a failure (and exit()) runs them in reverse.

import { Mutex } from 'async-mutex';
import {
  COMPOSITE_HEADER_SIZE,
  errorName,
  CONSTITUENT_SIZE,
  type Constituent,
  decodeCompositeHeader,
  decodeConstituents,
  decodeMemTransaction,
  encodeMemRelinquish,
  encodeMemTransaction,
  MEM_ATTR,
  MEM_ATTR_NORMAL_WB_IS,
  MEM_FLAGS,
  MEM_PERM,
  MEM_TRANSACTION_TYPES,
  memDescriptorLayout,
  type MemTransactionType,
  decodeCall,
  FFA_ERRORS,
  decodePartitionInfo,
  encodeCall,
  FEATURE_IDS,
  FEATURES_FID_BIT,
  type EndpointId,
  type FfaCall,
  type FfaVersion,
  CONSOLE_LOG_MAX_CHARS_64,
  CONSOLE_LOG_MAX_CHARS_64_V1_2,
  encodeIndirectMessage,
  FFA_PAGE_SIZE,
  FFA_VERSION_1_2,
  FFA_VERSION_1_0,
  FFA_VERSION_OLDEST,
  INDIRECT_MSG_HEADER_SIZE_V1_2,
  NPI_INTID,
  FFA_VERSION_IMPLEMENTED,
  DIRECT_MSG_ARGS,
  DIRECT_MSG2_ARGS,
  fid,
  formatVersion,
  joinU64,
  isUuidString,
  PARTITION_INFO_REGS_MAX_PER_CALL,
  PARTITION_INFO_REGS_PER_DESC,
  PARTITION_INFO_SIZE_V1_0,
  PARTITION_PROPERTIES,
  type PartitionInfo,
  partitionInfoFromRegs,
  partitionInfoSize,
  parseUuid,
  type Registers,
  rxtxMaxPages,
  rxtxMinSizeBytes,
  SMCCC_VERSION_1_2,
  SMCCC_VERSION_FID,
  toRegisters,
  U32,
  unpackPartitionInfoRegsHeader,
  type Uuid,
  UUID_NIL,
  versionMajor,
  versionMinor,
} from '../proto/ffa/index.js';
import { type FfaDevice, FfaBus } from './bus.js';
import { FfaDriverError, ffaToErrno } from './errno.js';
import { FfaNotifier } from './notifier.js';
import { type Answer, TransportError } from './transport/transport.js';
import type { EmulatedVm } from './vm.js';

/** ffa_mem_ops_args: who gets the memory, and which. */
export interface MemOpsArgs {
  receivers: { id: EndpointId; permissions: number; impdef?: [bigint, bigint] }[];
  regions: readonly Constituent[];
  flags?: number;
  tag?: bigint;
}

/** What a borrower asks for and gets back. */
export interface MemRetrieveArgs {
  handle: bigint;
  sender: EndpointId;
  type?: MemTransactionType;
  tag?: bigint;
  /** Permissions byte for our own access descriptor (default: RW, with NX for lend and donate). */
  permissions?: number;
  flags?: number;
  /** Every borrower of the transaction (default: just us). */
  receivers?: EndpointId[];
}

export interface RetrievedMemory {
  handle: bigint;
  sender: EndpointId;
  attributes: number;
  flags: number;
  permissions: number;
  constituents: Constituent[];
}

/** A direct request as an endpoint that serves them receives it. */
export interface DirectRequest {
  kind: 'req' | 'req2';
  source: EndpointId;
  width: 32 | 64;
  /** w3..w7 (x3..x7) for a request, x4..x17 for a request 2. */
  args: bigint[];
  /** The service a request 2 asked for (Nil: the default one). */
  uuid?: Uuid;
}

/** Answers a direct request with the response payload (same layout as the request's). */
export type DirectRequestHandler = (req: DirectRequest, vcpu: number) => Promise<bigint[]> | bigint[];

export interface FfaDriverOptions {
  /** FFA_DRIVER_VERSION: what FFA_VERSION asks for (Linux: 1.2). Lower it to act as an older driver. */
  version?: FfaVersion;
  /** RX/TX size to ask for, in bytes; the SPMC's minimum and maximum still apply (Linux: the minimum). */
  rxtxBufferSize?: number;
  /** nr_cpu_ids for NOTIFICATION_BITMAP_CREATE (default: the VM's vCPU count). */
  cpuCount?: number;
  /** Pause before FFA_RUN after an FFA_YIELD (Linux: about 1 ms; default 0). */
  yieldDelayMs?: number;
  /** Told when a direct-request handler throws (the request is answered with an empty payload). */
  onHandlerError?: (e: unknown, req: DirectRequest) => void;
  /** Debug-level log (pino-compatible): each refused call with the SPMC's reason. */
  log?: { debug(obj: object, msg?: string): void };
}

/** Register form of the count-then-fill probe may race with a VM attaching; retry this often. */
const PROBE_ATTEMPTS = 3;

export class FfaDriver {
  readonly bus = new FfaBus();
  /** Rx and Tx buffers are each used under their lock, as drv_info->rx_lock / tx_lock. */
  readonly rxLock = new Mutex();
  readonly txLock = new Mutex();
  private readonly driverVersion: FfaVersion;

  version: FfaVersion = FFA_VERSION_1_0;
  vmId: EndpointId = 0;
  rxtxBufSize = 0;
  rxBuffer = 0n;
  txBuffer = 0n;
  memOpsNative = false;
  msgDirectReq2Supported = false;
  notificationsEnabled = false;
  /** Notifier ops and notification delivery (ffa_ops.notifier_ops). */
  readonly notifier = new FfaNotifier(this);
  /** Calls in flight per vCPU: interrupt work runs on a vCPU that is not inside a call. */
  private readonly inFlight: number[] = [];
  private undo: { what: string; run: () => Promise<void> }[] = [];

  constructor(
    readonly vm: EmulatedVm,
    private readonly opts: FfaDriverOptions = {},
  ) {
    this.driverVersion = opts.version ?? FFA_VERSION_IMPLEMENTED;
  }

  // ---- invoke_ffa_fn ---------------------------------------------------------------------------

  /** invoke_ffa_fn(): registers in, registers out; transport failures become EIO. */
  invokeFfaFn(x: Registers, vcpu = 0): Promise<Registers> {
    return this.invoke(x, vcpu, (r) => r);
  }

  /**
   * One call at a time per vCPU, as on a real CPU: a call made while another is in flight on the
   * same vCPU (interrupt work, say, while a direct request blocks) waits for it to return. `then`
   * reads the answer in the same promise callback (every call of every endpoint passes here, and
   * each extra await would cost it another trip through the microtask queue).
   */
  private invoke<T>(x: Registers, vcpu: number, then: (r: Answer) => T): Promise<T> {
    if (!this.inFlight[vcpu]) return this.invokeNow(x, vcpu, then);
    return new Promise((resolve, reject) => (this.queued[vcpu] ??= []).push(() => this.invokeNow(x, vcpu, then).then(resolve, reject)));
  }

  /** Calls waiting for their vCPU, per vCPU. */
  private readonly queued: (() => void)[][] = [];

  private invokeNow<T>(x: Registers, vcpu: number, then: (r: Answer) => T): Promise<T> {
    this.inFlight[vcpu] = (this.inFlight[vcpu] ?? 0) + 1;
    let sent: Promise<Answer>;
    try {
      sent = this.vm.transport.invoke(x, vcpu);
    } catch (e) {
      sent = Promise.reject(e);
    }
    return sent.then(
      (r) => {
        this.returned(vcpu);
        return then(r);
      },
      (e) => {
        this.returned(vcpu);
        throw e instanceof TransportError ? new FfaDriverError('EIO', e.message) : e;
      },
    );
  }

  private returned(vcpu: number): void {
    if (--this.inFlight[vcpu]! > 0) return;
    const next = this.queued[vcpu]?.shift();
    if (next) next();
    // Interrupt work that found every vCPU in a call runs once one comes back.
    else if (this.notifier.deferred) this.notifier.kick();
  }

  /** vCPUs running a receive loop: they are waiting for requests, not free for interrupt work. */
  private readonly serving = new Set<number>();

  /** vCPUs interrupt work has taken, for the whole of the work. */
  private readonly held: number[] = [];

  /** A vCPU with no call in flight, no receive loop and no interrupt work (interrupts are taken between calls), if any. */
  idleVcpu(): number | undefined {
    for (let v = 0; v < this.vm.vcpuCount; v++) if (!this.inFlight[v] && !this.held[v] && !this.serving.has(v)) return v;
    return undefined;
  }

  /** Keep `vcpu` from other interrupt work until the returned release is called (work spanning several calls). */
  holdVcpu(vcpu: number): () => void {
    this.held[vcpu] = (this.held[vcpu] ?? 0) + 1;
    return () => {
      this.held[vcpu]!--;
    };
  }

  /** One FF-A call built as a value, encoded and decoded for the negotiated version. */
  call(c: FfaCall, vcpu = 0): Promise<FfaCall> {
    return this.invoke(encodeCall(c, this.version), vcpu, (reply) => {
      // Replies are the partition manager's own encoding: read them, as Linux does, without judging MBZ.
      const d = decodeCall(reply, this.version, false);
      if (!d.ok) throw new FfaDriverError('EIO', `undecodable reply to FFA_${c.fn}: ${d.why}`);
      if (d.call.fn === 'ERROR' && reply.reason) {
        d.call.reason = reply.reason;
        this.opts.log?.debug({ fn: c.fn, error: errorName(d.call.code), reason: reply.reason.code }, reply.reason.text);
      }
      return d.call;
    });
  }

  /** The SUCCESS payload (x2..), or the FF-A error as an errno. */
  async success(c: FfaCall, vcpu = 0): Promise<bigint[]> {
    const r = await this.call(c, vcpu);
    if (r.fn === 'SUCCESS') return r.args;
    if (r.fn === 'ERROR') throw new FfaDriverError(ffaToErrno(r.code), `FFA_${c.fn}`, r.code, r.reason);
    throw new FfaDriverError('EIO', `FFA_${c.fn} answered FFA_${r.fn}`);
  }

  /** FFA_FEATURES: [w2, w3] interface properties. */
  async features(id: number, inputProperties = 0): Promise<[number, number]> {
    // A feature ID (bit 31 clear) takes no input properties (ffa_features()).
    if ((id & FEATURES_FID_BIT) === 0 && inputProperties !== 0) throw new FfaDriverError('EINVAL', 'feature IDs take no input properties');
    const [w2 = 0n, w3 = 0n] = await this.success({ fn: 'FEATURES', id, inputProperties });
    return [Number(w2 & U32), Number(w3 & U32)];
  }

  private async supported(id: number): Promise<boolean> {
    try {
      await this.features(id);
      return true;
    } catch (e) {
      if (e instanceof FfaDriverError && e.ffaError !== undefined) return false;
      throw e;
    }
  }

  // ---- init / exit ------------------------------------------------------------------------------

  async init(): Promise<void> {
    await this.transportInit();
    await this.versionCheck();
    try {
      await this.idGet();
      await this.rxtxSetup();
      await this.flagsInit();
      await this.notificationsSetup();
      await this.partitionsSetup();
    } catch (e) {
      await this.unwind();
      throw e;
    }
  }

  /** Driver removal: notifications, partitions, RXTX_UNMAP, buffers, in reverse order of setup. */
  async exit(): Promise<void> {
    await this.unwind();
  }

  private async unwind(): Promise<void> {
    let first: unknown;
    for (const step of this.undo.reverse()) {
      try {
        await step.run();
      } catch (e) {
        first ??= e; // keep going: later steps still free what they own
      }
    }
    this.undo = [];
    if (first) throw first;
  }

  private onUnwind(what: string, run: () => Promise<void>): void {
    this.undo.push({ what, run });
  }

  /** ffa_transport_init(): the conduit must speak SMCCC v1.2 (x0..x17). */
  private async transportInit(): Promise<void> {
    const [w0] = await this.invokeFfaFn(toRegisters([SMCCC_VERSION_FID]));
    const v = Number(w0! & U32);
    if ((v | 0) < 0 || v < SMCCC_VERSION_1_2) throw new FfaDriverError('EOPNOTSUPP', 'SMCCC v1.2 or later is required');
  }

  /** ffa_version_check(): ask for our version, accept 1.0..1.2, downgrade a newer minor. */
  private async versionCheck(): Promise<void> {
    const [w0] = await this.invokeFfaFn(encodeCall({ fn: 'VERSION', requested: this.driverVersion }, this.driverVersion));
    const fw = Number(w0! & U32);
    if ((fw | 0) === FFA_ERRORS.NOT_SUPPORTED) throw new FfaDriverError('EOPNOTSUPP', 'FFA_VERSION not supported');
    if (versionMajor(fw) > versionMajor(this.driverVersion)) {
      throw new FfaDriverError('EINVAL', `incompatible v${formatVersion(fw)}, latest supported v${formatVersion(this.driverVersion)}`);
    }
    if ((fw | 0) < 0 || fw < FFA_VERSION_OLDEST) throw new FfaDriverError('EINVAL', `earliest supported v${formatVersion(FFA_VERSION_OLDEST)}`);
    // Same major: use the firmware's version unless its minor is newer than ours.
    this.version = versionMinor(fw) <= versionMinor(this.driverVersion) ? fw : this.driverVersion;
  }

  private async idGet(): Promise<void> {
    try {
      const [w2 = 0n] = await this.success({ fn: 'ID_GET' });
      this.vmId = Number(w2 & 0xffffn);
    } catch (e) {
      throw new FfaDriverError('ENODEV', `FFA_ID_GET failed: ${(e as Error).message}`);
    }
  }

  /** FEATURES(RXTX_MAP_64) sizes the buffers; RX and TX are each allocated and mapped. */
  private async rxtxSetup(): Promise<void> {
    let min = FFA_PAGE_SIZE;
    let max = 0;
    try {
      const [w2] = await this.features(fid('RXTX_MAP', 64));
      min = rxtxMinSizeBytes(w2) ?? FFA_PAGE_SIZE;
      max = rxtxMaxPages(w2) * FFA_PAGE_SIZE;
      if (max !== 0 && max < min) max = min;
    } catch (e) {
      if (!(e instanceof FfaDriverError) || e.ffaError === undefined) throw e;
    }
    const pageAlign = (n: number) => Math.ceil(n / FFA_PAGE_SIZE) * FFA_PAGE_SIZE;
    let size = pageAlign(Math.max(min, this.opts.rxtxBufferSize ?? 0));
    if (max !== 0) size = Math.min(size, max);
    const pages = size / FFA_PAGE_SIZE;
    // The minimum is also the alignment (FEATURES(RXTX_MAP) w2[1:0]): a 64 KiB minimum wants 64 KiB
    // aligned buffers, as alloc_pages_exact gives Linux.
    const align = min / FFA_PAGE_SIZE;

    const rx = this.vm.pages.alloc(pages, align);
    if (rx === undefined) throw new FfaDriverError('ENOMEM', 'no memory for the RX buffer');
    this.onUnwind('free RX buffer', async () => this.vm.pages.release(rx, pages));
    const tx = this.vm.pages.alloc(pages, align);
    if (tx === undefined) throw new FfaDriverError('ENOMEM', 'no memory for the TX buffer');
    this.onUnwind('free TX buffer', async () => this.vm.pages.release(tx, pages));

    await this.success({ fn: 'RXTX_MAP', width: 64, tx, rx, pageCount: pages });
    this.onUnwind('FFA_RXTX_UNMAP', async () => {
      await this.success({ fn: 'RXTX_UNMAP', id: 0 }); // w1 = 0 from a virtual instance
    });
    this.rxBuffer = rx;
    this.txBuffer = tx;
    this.rxtxBufSize = size;
  }

  /** ffa_drvinfo_flags_init() */
  private async flagsInit(): Promise<void> {
    this.memOpsNative = (await this.supported(fid('MEM_LEND', 64))) || (await this.supported(fid('MEM_SHARE', 64)));
    this.msgDirectReq2Supported = (await this.supported(fid('MSG_SEND_DIRECT_REQ2', 64))) || (await this.supported(fid('MSG_SEND_DIRECT_RESP2', 64)));
  }

  /**
   * ffa_notifications_setup(): a bitmap if the SPMC wants one created, then the SRI and NPI; with
   * neither, notifications stay off. The interrupt line is connected for whichever exists.
   *
   * One departure from Linux: BITMAP_CREATE answered NOT_SUPPORTED is taken as "the hypervisor made
   * the bitmap", not as the end of notifications. Hafnium reports BITMAP_CREATE to every caller in
   * FFA_FEATURES yet lets only the hypervisor call it (remote-spmc follows it), and Linux, which
   * gives up on any failure here, would run with notifications off behind such a hypervisor.
   */
  private async notificationsSetup(): Promise<void> {
    let created = false;
    if (await this.supported(fid('NOTIFICATION_BITMAP_CREATE'))) {
      try {
        await this.success({ fn: 'NOTIFICATION_BITMAP_CREATE', vmId: this.vmId, vcpuCount: this.opts.cpuCount ?? this.vm.vcpuCount });
        created = true;
      } catch (e) {
        if (!(e instanceof FfaDriverError) || e.ffaError === undefined) throw e;
        if (e.ffaError !== FFA_ERRORS.NOT_SUPPORTED) return;
      }
    }
    const destroy = async () => {
      if (created) await this.success({ fn: 'NOTIFICATION_BITMAP_DESTROY', vmId: this.vmId });
    };
    const sri = await this.supported(FEATURE_IDS.SRI);
    const npi = await this.supported(FEATURE_IDS.NPI);
    if (!sri && !npi) {
      await destroy();
      return;
    }
    // Our own pending notifications come back through the schedule-receiver path (SRI, INFO_GET):
    // the notifier handles our own ID itself (Linux's ffa_self_notif_handle), from the first SRI on.
    const disconnect = this.vm.transport.connectInterrupts(
      (intid) => this.notifier.onInterrupt(intid),
      (e) => this.notifier.onError?.(e),
    );
    this.notificationsEnabled = true;
    this.onUnwind('notification cleanup', async () => {
      this.notificationsEnabled = false;
      disconnect();
      this.notifier.clear();
      await destroy();
    });
  }

  /** ffa_setup_partitions(): every partition becomes a device; we are one too if not listed. */
  private async partitionsSetup(): Promise<void> {
    const infos = await this.partitionProbe(UUID_NIL);
    if (infos.length === 0) throw new FfaDriverError('EINVAL', 'no partitions');
    this.onUnwind('partition cleanup', () => this.bus.unregisterAll());
    if (this.version === FFA_VERSION_1_0) this.bus.uuidResolver = (dev, uuid) => this.partitionServesUuid(dev.vmId, uuid);
    for (const info of infos) {
      const aarch64 = (info.properties & PARTITION_PROPERTIES.AARCH64_EXEC) !== 0;
      await this.bus.registerDevice({
        vmId: info.id,
        uuid: info.uuid,
        properties: info.properties,
        mode32bit: this.version > FFA_VERSION_1_0 && !aarch64,
      });
    }
    if (!infos.some((i) => i.id === this.vmId)) {
      await this.bus.registerDevice({ vmId: this.vmId, uuid: UUID_NIL, properties: 0, mode32bit: false });
    }
  }

  private async partitionServesUuid(id: EndpointId, uuid: Uuid): Promise<boolean> {
    try {
      return (await this.partitionProbe(uuid)).some((p) => p.id === id);
    } catch {
      return false;
    }
  }

  // ---- info ops --------------------------------------------------------------------------------

  apiVersionGet(): FfaVersion {
    return this.version;
  }

  /** ffa_partition_info_get(): every partition serving `uuid` (Nil: all). */
  async partitionInfoGet(uuidStr: string): Promise<PartitionInfo[]> {
    if (typeof uuidStr !== 'string' || !isUuidString(uuidStr)) throw new FfaDriverError('ENODEV', `invalid UUID ${String(uuidStr)}`);
    let infos: PartitionInfo[];
    try {
      infos = await this.partitionProbe(parseUuid(uuidStr));
    } catch (e) {
      // A busy RX buffer is not an absent partition: the caller may try again (Linux answers -ENOENT
      // for every failure here, and its clients then give up on a partition that exists).
      if (e instanceof FfaDriverError && e.ffaError === FFA_ERRORS.BUSY) throw e;
      if (e instanceof FfaDriverError && e.ffaError !== undefined) throw new FfaDriverError('ENOENT', `no partition serves ${uuidStr}`, e.ffaError);
      throw e;
    }
    if (infos.length === 0) throw new FfaDriverError('ENOENT', `no partition serves ${uuidStr}`);
    return infos;
  }

  /** ffa_partition_probe(): count, then fill; the register form when the SPMC has it. */
  async partitionProbe(uuid: Uuid): Promise<PartitionInfo[]> {
    const regs = await this.supported(fid('PARTITION_INFO_GET_REGS', 64));
    const get = regs ? this.partitionInfoGetRegs.bind(this) : this.partitionInfoGetRx.bind(this);
    for (let attempt = 1; ; attempt++) {
      const { count } = await get(uuid);
      const { entries } = await get(uuid, count);
      if (entries) return entries;
      // The count grew between the passes (another VM attached): count again.
      if (attempt >= PROBE_ATTEMPTS) throw new FfaDriverError('EAGAIN', 'partition count kept changing');
    }
  }

  /**
   * __ffa_partition_info_get(): with no capacity, count only (v1.1+: without touching RX);
   * with one, fill RX, copy the descriptors if they fit, and release RX.
   */
  async partitionInfoGetRx(uuid: Uuid, capacity?: number): Promise<{ count: number; entries?: PartitionInfo[] }> {
    return this.rxLock.runExclusive(async () => {
      const countOnly = capacity === undefined && this.version > FFA_VERSION_1_0;
      const [w2 = 0n, w3 = 0n] = await this.success({ fn: 'PARTITION_INFO_GET', uuid, countOnly });
      const count = Number(w2 & U32);
      // w3 = 0 after a fill is an SPMC bug (OP-TEE before PR #6531): its descriptors are then the
      // negotiated version's own, which Linux would not know, taking 0 as the stride.
      const told = Number(w3 & U32);
      const size = this.version > FFA_VERSION_1_0 ? told || partitionInfoSize(this.version) : PARTITION_INFO_SIZE_V1_0;
      try {
        if (capacity === undefined || count > capacity) return { count };
        if (size < PARTITION_INFO_SIZE_V1_0 || count * size > this.rxtxBufSize) {
          throw new FfaDriverError('EINVAL', `${count} descriptors of ${size} bytes do not fit RX`);
        }
        const buf = await this.vm.read(this.rxBuffer, count * size);
        return { count, entries: decodePartitionInfo(buf, count, size) };
      } finally {
        // With count-only the RX buffer was never ours to release.
        if (!countOnly) await this.success({ fn: 'RX_RELEASE', vmId: 0 });
      }
    });
  }

  /** __ffa_partition_info_get_regs(): the register form, looping until the last index. */
  async partitionInfoGetRegs(uuid: Uuid, capacity?: number): Promise<{ count: number; entries?: PartitionInfo[] }> {
    const entries: PartitionInfo[] = [];
    let start = 0;
    let tag = 0;
    for (;;) {
      const args = await this.success({ fn: 'PARTITION_INFO_GET_REGS', uuid, startIndex: start, tag });
      const h = unpackPartitionInfoRegsHeader(args[0] ?? 0n);
      const count = h.lastIndex + 1;
      if (capacity === undefined || count > capacity) return { count };
      const perDesc = h.descSize / 8;
      if (!Number.isInteger(perDesc) || perDesc < PARTITION_INFO_REGS_PER_DESC) throw new FfaDriverError('EINVAL', `descriptor size ${h.descSize}`);
      // Never trust the firmware's indices: they must move forward and stay inside what we asked for.
      const n = h.currentIndex - start + 1;
      if (h.currentIndex < start || h.currentIndex >= count || n * perDesc > PARTITION_INFO_REGS_MAX_PER_CALL * PARTITION_INFO_REGS_PER_DESC) {
        throw new FfaDriverError('EINVAL', `bad indices ${start}..${h.currentIndex} of ${count}`);
      }
      for (let i = 0; i < n; i++) {
        const at = 1 + i * perDesc;
        entries.push(partitionInfoFromRegs(args[at] ?? 0n, args[at + 1] ?? 0n, args[at + 2] ?? 0n));
      }
      if (h.currentIndex === h.lastIndex) return { count, entries };
      start = h.currentIndex + 1;
      tag = h.tag;
    }
  }

  // ---- msg ops ---------------------------------------------------------------------------------

  /**
   * ffa_msg_send_direct_req(): w3..w7 to `to`, waiting through FFA_INTERRUPT and FFA_YIELD with
   * FFA_RUN. 64-bit unless the device is a 32-bit one; the response payload comes back.
   */
  sendDirectReq(to: FfaDevice | EndpointId, data: readonly bigint[], opts: { vcpu?: number; width?: 32 | 64 } = {}): Promise<bigint[]> {
    const [dest, mode32] = typeof to === 'number' ? [to, false] : [to.vmId, to.mode32bit];
    const width = opts.width ?? (mode32 ? 32 : 64);
    const args: bigint[] = [];
    for (let i = 0; i < DIRECT_MSG_ARGS; i++) args.push(BigInt.asUintN(width, data[i] ?? 0n));
    const req: FfaCall = { fn: 'MSG_SEND_DIRECT_REQ', width, route: { source: this.vmId, destination: dest }, message: { kind: 'partition' }, args };
    return this.sendAndWait(req, opts.vcpu ?? 0).then((r) => {
      if (r.fn === 'MSG_SEND_DIRECT_RESP' && r.width === width) return r.args;
      throw this.unexpected('MSG_SEND_DIRECT_REQ', r);
    });
  }

  /** ffa_msg_send_direct_req2(): x4..x17 to the service `uuid` (default: the device's UUID). */
  async sendDirectReq2(to: FfaDevice | EndpointId, data: readonly bigint[], opts: { vcpu?: number; uuid?: Uuid } = {}): Promise<bigint[]> {
    if (!this.msgDirectReq2Supported) throw new FfaDriverError('EOPNOTSUPP', 'FFA_MSG_SEND_DIRECT_REQ2 not supported');
    const dest = typeof to === 'number' ? to : to.vmId;
    const uuid = opts.uuid ?? (typeof to === 'number' ? UUID_NIL : to.uuid);
    const args = Array.from({ length: DIRECT_MSG2_ARGS }, (_, i) => BigInt.asUintN(64, data[i] ?? 0n));
    const r = await this.sendAndWait({ fn: 'MSG_SEND_DIRECT_REQ2', route: { source: this.vmId, destination: dest }, uuid, args }, opts.vcpu ?? 0);
    if (r.fn === 'MSG_SEND_DIRECT_RESP2') return r.args;
    throw this.unexpected('MSG_SEND_DIRECT_REQ2', r);
  }

  /**
   * A handler that throws still answers (an empty payload), so its requester is never left blocked.
   * A handler that answers at once is not awaited (one microtask less on every request served).
   */
  private handleSafely(handler: DirectRequestHandler, req: DirectRequest, vcpu: number): Promise<bigint[]> | bigint[] {
    const failed = (e: unknown) => {
      this.opts.onHandlerError?.(e, req);
      return [];
    };
    try {
      const out = handler(req, vcpu);
      return out instanceof Promise ? out.catch(failed) : out;
    } catch (e) {
      return failed(e);
    }
  }

  /** ffa_msg_send_wait_for_completion(): give the target its cycles until it answers. */
  private sendAndWait(c: FfaCall, vcpu: number): Promise<FfaCall> {
    return this.call(c, vcpu).then((r) => (r.fn === 'INTERRUPT' || r.fn === 'YIELD' ? this.runUntilAnswered(r, vcpu) : r));
  }

  private async runUntilAnswered(r: FfaCall, vcpu: number): Promise<FfaCall> {
    while (r.fn === 'INTERRUPT' || r.fn === 'YIELD') {
      if (r.fn === 'YIELD' && this.opts.yieldDelayMs) await new Promise((res) => setTimeout(res, this.opts.yieldDelayMs));
      r = await this.call({ fn: 'RUN', target: r.target }, vcpu);
    }
    return r;
  }

  private unexpected(what: string, r: FfaCall): FfaDriverError {
    if (r.fn === 'ERROR') return new FfaDriverError(ffaToErrno(r.code), `FFA_${what}`, r.code);
    return new FfaDriverError('EINVAL', `FFA_${what} answered FFA_${r.fn}`);
  }

  /** ffa_run(): FFA_RUN on a partition's vCPU, again while it is interrupted. */
  async run(to: FfaDevice | EndpointId, targetVcpu: number, vcpu = 0): Promise<void> {
    const endpoint = typeof to === 'number' ? to : to.vmId;
    let r = await this.call({ fn: 'RUN', target: { endpoint, vcpu: targetVcpu } }, vcpu);
    while (r.fn === 'INTERRUPT') r = await this.call({ fn: 'RUN', target: r.target }, vcpu);
    if (r.fn === 'ERROR') throw new FfaDriverError(ffaToErrno(r.code), 'FFA_RUN', r.code);
  }

  /** FFA_YIELD from a partition serving a request: returns once it is run again. */
  async yield(vcpu = 0, timeout = 0n): Promise<void> {
    const r = await this.call({ fn: 'YIELD', target: { endpoint: 0, vcpu: 0 }, timeout }, vcpu);
    if (r.fn === 'ERROR') throw new FfaDriverError(ffaToErrno(r.code), 'FFA_YIELD', r.code);
  }

  /**
   * The receive loop of an endpoint that serves direct requests (a partition, or a VM that attached
   * with the receive property): FFA_MSG_WAIT, then answer each request with its response, which
   * also waits for the next. Returns when the SPMC stops giving it requests (ABORTED: it left).
   */
  async serveDirectRequests(handler: DirectRequestHandler, vcpu = 0): Promise<void> {
    this.serving.add(vcpu);
    try {
      await this.receiveLoop(handler, vcpu);
    } finally {
      this.serving.delete(vcpu);
    }
  }

  private async receiveLoop(handler: DirectRequestHandler, vcpu: number): Promise<void> {
    let ev = await this.call({ fn: 'MSG_WAIT', retainRx: false }, vcpu);
    for (;;) {
      if (ev.fn === 'MSG_SEND_DIRECT_REQ') {
        const answer = this.handleSafely(handler, { kind: 'req', source: ev.route.source, width: ev.width, args: ev.args }, vcpu);
        const args = Array.isArray(answer) ? answer : await answer;
        ev = await this.call(
          { fn: 'MSG_SEND_DIRECT_RESP', width: ev.width, route: { source: this.vmId, destination: ev.route.source }, message: ev.message, args },
          vcpu,
        );
      } else if (ev.fn === 'MSG_SEND_DIRECT_REQ2') {
        const answer = this.handleSafely(handler, { kind: 'req2', source: ev.route.source, width: 64, args: ev.args, uuid: ev.uuid }, vcpu);
        const args = Array.isArray(answer) ? answer : await answer;
        ev = await this.call({ fn: 'MSG_SEND_DIRECT_RESP2', route: { source: this.vmId, destination: ev.route.source }, args }, vcpu);
      } else if (ev.fn === 'INTERRUPT') {
        // Notification Pending Interrupt: the SPMC gave us cycles to collect notifications.
        if (ev.interruptId === NPI_INTID && this.notificationsEnabled) {
          await this.notifier.getAndHandle(vcpu).catch((e) => this.notifier.onError?.(e));
        }
        ev = await this.call({ fn: 'MSG_WAIT', retainRx: false }, vcpu);
      } else if (ev.fn === 'ERROR') {
        if (ev.code === FFA_ERRORS.ABORTED) return;
        throw new FfaDriverError(ffaToErrno(ev.code), 'receive loop', ev.code);
      } else {
        // Cycles without a request (FFA_RUN): nothing to do but wait again.
        ev = await this.call({ fn: 'MSG_WAIT', retainRx: false }, vcpu);
      }
    }
  }

  /**
   * ffa_indirect_msg_send(): the v1.2 header (40 bytes, the device's UUID) and `payload` in TX,
   * then FFA_MSG_SEND2, all under the TX lock.
   */
  async sendIndirect(to: FfaDevice | EndpointId, payload: Uint8Array, opts: { vcpu?: number; uuid?: Uuid } = {}): Promise<void> {
    const dest = typeof to === 'number' ? to : to.vmId;
    const uuid = opts.uuid ?? (typeof to === 'number' ? UUID_NIL : to.uuid);
    if (payload.length > this.rxtxBufSize - INDIRECT_MSG_HEADER_SIZE_V1_2) throw new FfaDriverError('ERANGE', `${payload.length} bytes do not fit TX`);
    await this.txLock.runExclusive(async () => {
      await this.vm.write(this.txBuffer, encodeIndirectMessage({ sender: this.vmId, receiver: dest, uuid }, payload));
      await this.success({ fn: 'MSG_SEND2', senderVmId: 0, delaySri: false }, opts.vcpu ?? 0);
    });
  }

  /** FFA_CONSOLE_LOG (partitions only): `text` in as few calls as the version allows. */
  async consoleLog(text: string, vcpu = 0): Promise<void> {
    const bytes = new TextEncoder().encode(text);
    const max = this.version >= FFA_VERSION_1_2 ? CONSOLE_LOG_MAX_CHARS_64_V1_2 : CONSOLE_LOG_MAX_CHARS_64;
    for (let at = 0; at < bytes.length; at += max) {
      const chunk = bytes.subarray(at, at + max);
      await this.success({ fn: 'CONSOLE_LOG', width: 64, length: chunk.length, chars: chunk }, vcpu);
    }
  }

  // ---- mem ops -----------------------------------------------------------------------------------

  /** ffa_memory_share(): Normal write-back inner-shareable memory, the owner keeps access. */
  memShare(args: MemOpsArgs): Promise<bigint> {
    return this.memSend('MEM_SHARE', args, MEM_ATTR_NORMAL_WB_IS);
  }

  /** ffa_memory_lend(): the owner loses access until reclaim (attributes left to the borrower). */
  memLend(args: MemOpsArgs): Promise<bigint> {
    return this.memSend('MEM_LEND', args, MEM_ATTR.TYPE_NOT_SPECIFIED);
  }

  /** Ownership moves to the one borrower for good. */
  memDonate(args: MemOpsArgs): Promise<bigint> {
    return this.memSend('MEM_DONATE', args, MEM_ATTR.TYPE_NOT_SPECIFIED);
  }

  /** ffa_setup_and_transmit(): the descriptor in TX, fragmented when it does not fit. */
  private async memSend(fn: 'MEM_SHARE' | 'MEM_LEND' | 'MEM_DONATE', args: MemOpsArgs, attributes: number): Promise<bigint> {
    const width = this.memOpsNative ? 64 : 32;
    const whole = encodeMemTransaction(
      {
        sender: this.vmId,
        attributes,
        flags: args.flags ?? 0,
        tag: args.tag ?? 0n,
        receivers: args.receivers.map((r) => ({ receiver: r.id, permissions: r.permissions, impdef: r.impdef })),
        constituents: args.regions,
      },
      this.version,
    );
    const layout = memDescriptorLayout(this.version, args.receivers.length);
    const headerLen = layout.composite + COMPOSITE_HEADER_SIZE;
    if (headerLen > this.rxtxBufSize) throw new FfaDriverError('ENXIO', 'descriptor header does not fit the TX buffer');
    return this.txLock.runExclusive(async () => {
      // Each fragment is whole constituents, and fills the buffer before the next one starts.
      const perFrag = Math.floor(this.rxtxBufSize / CONSTITUENT_SIZE) * CONSTITUENT_SIZE;
      let len = Math.min(whole.length, headerLen + Math.floor((this.rxtxBufSize - headerLen) / CONSTITUENT_SIZE) * CONSTITUENT_SIZE);
      await this.vm.write(this.txBuffer, whole.subarray(0, len));
      let r = await this.call({ fn, width, totalLength: whole.length, fragmentLength: len, buffer: { address: 0n, pageCount: 0 } });
      let sent = len;
      while (r.fn === 'MEM_FRAG_RX') {
        if (sent >= whole.length) throw new FfaDriverError('EINVAL', 'SPMC asked for more than the descriptor holds');
        len = Math.min(perFrag, whole.length - sent);
        await this.vm.write(this.txBuffer, whole.subarray(sent, sent + len));
        r = await this.call({ fn: 'MEM_FRAG_TX', handle: r.handle, fragmentLength: len, endpoint: 0 });
        sent += len;
      }
      if (r.fn === 'SUCCESS') return joinU64(r.args[0]!, r.args[1]!);
      throw this.unexpected(fn, r);
    });
  }

  /** ffa_memory_reclaim() */
  async memReclaim(handle: bigint, flags = 0): Promise<void> {
    await this.success({ fn: 'MEM_RECLAIM', handle, flags });
  }

  /** FFA_MEM_RETRIEVE_REQ, then FFA_MEM_FRAG_RX until the whole response is in. */
  async memRetrieve(args: MemRetrieveArgs): Promise<RetrievedMemory> {
    const type = args.type ?? 'share';
    const ownPerm = args.permissions ?? MEM_PERM.DATA_RW | (type === 'share' ? 0 : MEM_PERM.INSTRUCTION_NX << MEM_PERM.INSTRUCTION_SHIFT);
    const receivers = (args.receivers ?? [this.vmId]).map((id) => ({ receiver: id, permissions: id === this.vmId ? ownPerm : 0 }));
    const req = encodeMemTransaction(
      {
        sender: args.sender,
        attributes: MEM_ATTR.TYPE_NOT_SPECIFIED,
        flags: (args.flags ?? 0) | (MEM_TRANSACTION_TYPES[type] << MEM_FLAGS.TYPE_SHIFT),
        handle: args.handle,
        tag: args.tag ?? 0n,
        receivers,
      },
      this.version,
    );
    const width = this.memOpsNative ? 64 : 32;
    return this.txLock.runExclusive(() =>
      this.rxLock.runExclusive(async () => {
        await this.vm.write(this.txBuffer, req);
        const r = await this.call({
          fn: 'MEM_RETRIEVE_REQ',
          width,
          totalLength: req.length,
          fragmentLength: req.length,
          buffer: { address: 0n, pageCount: 0 },
        });
        if (r.fn !== 'MEM_RETRIEVE_RESP') throw this.unexpected('MEM_RETRIEVE_REQ', r);
        const resp = new Uint8Array(r.totalLength);
        let got = 0;
        let fragLen = r.fragmentLength;
        for (;;) {
          if (fragLen === 0 || got + fragLen > resp.length || fragLen > this.rxtxBufSize) throw new FfaDriverError('EINVAL', 'bad retrieve fragment');
          resp.set(await this.vm.read(this.rxBuffer, fragLen), got);
          got += fragLen;
          await this.success({ fn: 'RX_RELEASE', vmId: 0 });
          if (got === resp.length) break;
          const next = await this.call({ fn: 'MEM_FRAG_RX', handle: args.handle, fragmentOffset: got, endpoint: 0 });
          if (next.fn !== 'MEM_FRAG_TX') throw this.unexpected('MEM_FRAG_RX', next);
          fragLen = next.fragmentLength;
        }
        const tx = decodeMemTransaction(resp, this.version);
        const own = tx.receivers[0];
        if (!own || own.compositeOffset === 0) throw new FfaDriverError('EINVAL', 'retrieve response without a region');
        const head = decodeCompositeHeader(resp, own.compositeOffset);
        const { constituents } = decodeConstituents(resp, own.compositeOffset + COMPOSITE_HEADER_SIZE, head.constituentCount);
        return { handle: args.handle, sender: tx.sender, attributes: tx.attributes, flags: tx.flags, permissions: own.permissions, constituents };
      }),
    );
  }

  /** FFA_MEM_RELINQUISH of our access to `handle`. */
  async memRelinquish(handle: bigint, flags = 0): Promise<void> {
    await this.txLock.runExclusive(async () => {
      await this.vm.write(this.txBuffer, encodeMemRelinquish({ handle, flags, endpoints: [this.vmId] }));
      await this.success({ fn: 'MEM_RELINQUISH' });
    });
  }
}
