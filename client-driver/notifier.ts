// The driver's notifier ops and notification delivery (Linux driver.c: ffa_notify_request /
// _relinquish / _send, the framework callbacks, the schedule-receiver work and
// notif_get_and_handle), plus the receive side of indirect messages.

import {
  decodeIndirectMessageHeader,
  type EndpointId,
  FRAMEWORK_SPM_RX_FULL,
  INDIRECT_MSG_HEADER_SIZE_V1_2,
  INDIRECT_MSG_UUID_OFFSET,
  isNilUuid,
  isSecureId,
  NOTIFICATION_COUNT,
  notificationBit,
  NPI_INTID,
  SRI_INTID,
  joinU64,
  unpackNotificationInfo,
  type Uuid,
  UUID_NIL,
  uuidEquals,
} from '../proto/ffa/index.js';
import type { FfaDevice } from './bus.js';
import type { FfaDriver } from './driver.js';
import { FfaDriverError } from './errno.js';

/** ffa_notifier_cb: a partition (or VM) set notification `notifyId` for us. */
export type NotifierCallback = (notifyId: number) => void;
/** ffa_fwk_notifier_cb: an indirect message arrived from the device's partition. */
export type FrameworkCallback = (message: IndirectMessage) => void;
/** ffa_sched_recv_cb: the partition has notifications pending and needs cycles. */
export type SchedRecvCallback = (vcpu: number, isPerVcpu: boolean) => void;

export interface IndirectMessage {
  sender: EndpointId;
  uuid: Uuid;
  payload: Uint8Array;
}

type NotifyType = 'sp' | 'vm';
const typeOf = (id: EndpointId): NotifyType => (isSecureId(id) ? 'sp' : 'vm');

export class FfaNotifier {
  /** notifier_hash: callbacks by (type, notification ID). */
  private readonly callbacks = new Map<string, NotifierCallback>();
  private readonly fwkCallbacks: { sender: EndpointId; uuid: Uuid; cb: FrameworkCallback }[] = [];
  private readonly schedRecv = new Map<EndpointId, SchedRecvCallback>();
  /** SRI work: one runner at a time; an SRI during a run asks for another run. */
  private sriPending = false;
  private sriRunning = false;
  /** What a callback threw, or a failed GET (the kernel would log it). */
  onError?: (e: unknown) => void;
  /** Every NOTIFICATION_GET result, after the callbacks: for endpoints that act on raw bitmaps. */
  onNotified?: (got: { fromSp: bigint; fromVm: bigint }, vcpu: number) => Promise<void> | void;
  /** An indirect message no framework callback took (otherwise dropped, as Linux does). */
  onUnclaimedMessage?: (msg: IndirectMessage, vcpu: number) => Promise<void> | void;

  constructor(private readonly drv: FfaDriver) {}

  private checkEnabled(notifyId: number): void {
    if (!this.drv.notificationsEnabled) throw new FfaDriverError('EOPNOTSUPP', 'notifications are not enabled');
    if (!Number.isInteger(notifyId) || notifyId < 0 || notifyId >= NOTIFICATION_COUNT) throw new FfaDriverError('EINVAL', `notification id ${notifyId}`);
  }

  // ---- ops for client drivers -------------------------------------------------------------------

  /** ffa_notify_request(): take notification `notifyId` from the device's partition. */
  async notifyRequest(dev: FfaDevice, isPerVcpu: boolean, cb: NotifierCallback, notifyId: number): Promise<void> {
    this.checkEnabled(notifyId);
    const key = `${typeOf(dev.vmId)}:${notifyId}`;
    if (this.callbacks.has(key)) throw new FfaDriverError('EINVAL', `notification ${notifyId} already requested`);
    this.callbacks.set(key, cb);
    try {
      await this.drv.success({
        fn: 'NOTIFICATION_BIND',
        route: { source: dev.vmId, destination: this.drv.vmId },
        perVcpu: isPerVcpu,
        bitmap: notificationBit(notifyId),
      });
    } catch (e) {
      this.callbacks.delete(key);
      throw e;
    }
  }

  /** ffa_notify_relinquish(): forget the callback, then unbind. */
  async notifyRelinquish(dev: FfaDevice, notifyId: number): Promise<void> {
    this.checkEnabled(notifyId);
    const key = `${typeOf(dev.vmId)}:${notifyId}`;
    if (!this.callbacks.delete(key)) throw new FfaDriverError('ENOENT', `notification ${notifyId} was not requested`);
    await this.drv.success({ fn: 'NOTIFICATION_UNBIND', route: { source: dev.vmId, destination: this.drv.vmId }, bitmap: notificationBit(notifyId) });
  }

  /** ffa_notify_send(): set notification `notifyId` for the device's partition. */
  async notifySend(dev: FfaDevice | EndpointId, isPerVcpu: boolean, notifyId: number, vcpu = 0): Promise<void> {
    this.checkEnabled(notifyId);
    const dest = typeof dev === 'number' ? dev : dev.vmId;
    await this.drv.success({
      fn: 'NOTIFICATION_SET',
      route: { source: this.drv.vmId, destination: dest },
      perVcpu: isPerVcpu,
      delaySri: false,
      vcpu: isPerVcpu ? vcpu : 0,
      bitmap: notificationBit(notifyId),
    });
  }

  /** ffa_fwk_notify_request(): indirect messages from the device's partition (and UUID) go to `cb`. */
  fwkNotifyRequest(dev: FfaDevice, cb: FrameworkCallback): void {
    if (!this.drv.notificationsEnabled) throw new FfaDriverError('EOPNOTSUPP', 'notifications are not enabled');
    if (this.fwkCallbacks.some((f) => f.sender === dev.vmId && uuidEquals(f.uuid, dev.uuid))) {
      throw new FfaDriverError('EINVAL', 'framework notifier already registered');
    }
    this.fwkCallbacks.push({ sender: dev.vmId, uuid: dev.uuid, cb });
  }

  fwkNotifyRelinquish(dev: FfaDevice): void {
    const i = this.fwkCallbacks.findIndex((f) => f.sender === dev.vmId && uuidEquals(f.uuid, dev.uuid));
    if (i < 0) throw new FfaDriverError('ENOENT', 'no framework notifier registered');
    this.fwkCallbacks.splice(i, 1);
  }

  /** ffa_sched_recv_cb_register(): told when the partition has notifications pending. */
  schedRecvCbRegister(id: EndpointId, cb: SchedRecvCallback): void {
    if (this.schedRecv.has(id)) throw new FfaDriverError('EINVAL', 'schedule-receiver callback already registered');
    this.schedRecv.set(id, cb);
  }

  schedRecvCbUnregister(id: EndpointId): void {
    this.schedRecv.delete(id);
  }

  /** Everything is dropped at driver exit. */
  clear(): void {
    this.callbacks.clear();
    this.fwkCallbacks.length = 0;
    this.schedRecv.clear();
  }

  // ---- interrupts -------------------------------------------------------------------------------

  /** The interrupt line: SRI runs the schedule-receiver work, NPI gets and handles at once. */
  onInterrupt(intid: number): void {
    if (intid === SRI_INTID) {
      this.sriPending = true;
      this.kick();
    } else if (intid === NPI_INTID) {
      // A partition takes its NPI in FFA_MSG_WAIT (serveDirectRequests); on the line it is the same work.
      this.sriPending = true;
      this.kick();
    }
  }

  /** An SRI is waiting for a vCPU to run its work on. */
  get deferred(): boolean {
    return this.sriPending && !this.sriRunning;
  }

  /** A vCPU finished a call: deferred interrupt work may run now. */
  kick(): void {
    if (!this.sriPending || this.sriRunning) return;
    const vcpu = this.drv.idleVcpu();
    if (vcpu === undefined) return; // every vCPU is in a call; the next one to return kicks again
    this.sriRunning = true;
    // The vCPU is ours until the work is done: no receive loop or interrupt work may take it meanwhile.
    const release = this.drv.holdVcpu(vcpu);
    void this.schedRecvWork(vcpu).finally(() => {
      release();
      this.sriRunning = false;
      this.kick();
    });
  }

  /** ffa_sched_recv_irq_work_fn(): INFO_GET until nothing more is pending, then each partition's callback. */
  private async schedRecvWork(vcpu: number): Promise<void> {
    while (this.sriPending) {
      this.sriPending = false;
      try {
        for (;;) {
          const r = await this.drv.call({ fn: 'NOTIFICATION_INFO_GET', width: 64 }, vcpu);
          if (r.fn !== 'SUCCESS') break; // NO_DATA is silent; other errors would be logged
          const info = unpackNotificationInfo(r.args, r.width);
          for (const list of info.lists) {
            // Our own ID: collect and handle here, on this vCPU (ffa_self_notif_handle).
            if (list.endpoint === this.drv.vmId) {
              await this.getAndHandle(vcpu);
              continue;
            }
            const cb = this.schedRecv.get(list.endpoint);
            if (list.vcpus.length === 0) cb?.(0, false);
            else for (const v of list.vcpus) cb?.(v, true);
          }
          if (!info.morePending) break;
        }
      } catch (e) {
        this.onError?.(e);
      }
    }
  }

  /** notif_get_and_handle(): NOTIFICATION_GET, then framework, VM and SP callbacks. */
  async getAndHandle(vcpu: number): Promise<void> {
    const r = await this.drv.success(
      { fn: 'NOTIFICATION_GET', receiver: this.drv.vmId, vcpu, bitmaps: { sp: true, vm: true, spmFramework: true, hypFramework: true } },
      vcpu,
    );
    const [spLo = 0n, spHi = 0n, vmLo = 0n, vmHi = 0n, spm = 0n, hyp = 0n] = r;
    // Bit 0 of either framework word is "RX buffer full".
    if (((spm | hyp) & FRAMEWORK_SPM_RX_FULL) !== 0n) await this.receiveIndirect(vcpu).catch((e) => this.onError?.(e));
    const fromVm = joinU64(vmLo, vmHi);
    const fromSp = joinU64(spLo, spHi);
    this.dispatch(fromVm, 'vm');
    this.dispatch(fromSp, 'sp');
    if (fromVm | fromSp) await this.onNotified?.({ fromSp, fromVm }, vcpu);
  }

  private dispatch(bitmap: bigint, type: NotifyType): void {
    for (let id = 0; id < NOTIFICATION_COUNT; id++) {
      if ((bitmap & notificationBit(id)) === 0n) continue;
      const cb = this.callbacks.get(`${type}:${id}`);
      try {
        cb?.(id);
      } catch (e) {
        this.onError?.(e);
      }
    }
  }

  /** handle_fwk_notif_callbacks(): copy the message out of RX, release RX, then call its callback. */
  private async receiveIndirect(vcpu: number): Promise<void> {
    const msg = await this.drv.rxLock.runExclusive(async () => {
      const bufSize = this.drv.rxtxBufSize;
      try {
        // One read of the whole buffer: over the wire each access is a round trip.
        const rx = await this.drv.vm.read(this.drv.rxBuffer, bufSize);
        const h = decodeIndirectMessageHeader(rx.subarray(0, INDIRECT_MSG_HEADER_SIZE_V1_2));
        const validOffset = h.offset === INDIRECT_MSG_UUID_OFFSET || h.offset >= INDIRECT_MSG_HEADER_SIZE_V1_2;
        if (h.size === 0 || !validOffset || h.offset > bufSize || h.size > bufSize - h.offset) {
          throw new FfaDriverError('EINVAL', `bad indirect message header (offset ${h.offset}, size ${h.size})`);
        }
        const payload = rx.slice(h.offset, h.offset + h.size);
        return { sender: h.sender, uuid: h.offset >= INDIRECT_MSG_HEADER_SIZE_V1_2 ? h.uuid : UUID_NIL, payload };
      } finally {
        await this.drv.success({ fn: 'RX_RELEASE', vmId: 0 }, vcpu);
      }
    });
    const f = this.fwkCallbacks.find((c) => c.sender === msg.sender && (isNilUuid(c.uuid) || isNilUuid(msg.uuid) || uuidEquals(c.uuid, msg.uuid)));
    try {
      if (f) f.cb(msg);
      else await this.onUnclaimedMessage?.(msg, vcpu);
    } catch (e) {
      this.onError?.(e);
    }
  }
}
