// Notifications (FF-A v1.1 §10): bitmaps, framework bits, and the FFA_NOTIFICATION_INFO_GET
// list packing both the SPMC (encode) and the driver (decode) use.

import type { EndpointId } from './endpoints.js';

/** 64 notification IDs per bitmap; bit n is ID n. */
export const NOTIFICATION_COUNT = 64;
export const NOTIFICATION_BITMAP_MASK = (1n << 64n) - 1n;
export const notificationBit = (id: number): bigint => 1n << BigInt(id);

/** BIND w2 / SET w2 bit 0: per-vCPU notification (refused here, as in Hafnium's current tree). */
export const NOTIFICATION_FLAG_PER_VCPU = 1 << 0;
/** SET w2 bit 1 (and MSG_SEND2 w2 bit 1): delay the Schedule Receiver Interrupt; SPs only. */
export const NOTIFICATION_FLAG_DELAY_SRI = 1 << 1;

/** NOTIFICATION_GET w2: which bitmaps to get (from SPs, from VMs, the SPM's and the hypervisor's framework bits). */
export const NOTIFICATION_GET_FLAGS = {
  SP: 1 << 0,
  VM: 1 << 1,
  SPM: 1 << 2,
  HYP: 1 << 3,
} as const;

/** The framework bitmap: RX buffer full, set by the SPM (bit 0) or the hypervisor (bit 32). */
export const FRAMEWORK_SPM_RX_FULL = 1n << 0n;
export const FRAMEWORK_HYP_RX_FULL = 1n << 32n;
export const FRAMEWORK_SPM_MASK = 0xffffffffn;
export const FRAMEWORK_HYP_MASK = 0xffffffffn << 32n;

/** FFA_NOTIFICATION_INFO_GET: x2 layout and how many IDs fit (w3..w7 or x3..x7). */
export const INFO_GET_MORE_PENDING = 1n;
export const INFO_GET_LIST_COUNT_SHIFT = 7n;
export const INFO_GET_LIST_COUNT_MASK = 0x1fn;
export const INFO_GET_LIST_SIZES_SHIFT = 12;
export const INFO_GET_MAX_VCPU_IDS_PER_LIST = 3;
export const infoGetMaxIds = (width: 32 | 64): number => (width === 64 ? 20 : 10);
const idsPerRegister = (width: 32 | 64): number => (width === 64 ? 4 : 2);

/** One list: a partition ID, then the vCPU IDs it needs cycles on (none for global notifications). */
export interface NotificationInfoList {
  endpoint: EndpointId;
  vcpus: number[];
}

export interface NotificationInfo {
  lists: NotificationInfoList[];
  morePending: boolean;
}

/**
 * The SUCCESS payload x2..x7 of INFO_GET. Lists that do not fit are left out and `morePending`
 * should then be set by the caller (it knows whether anything is left).
 */
export function packNotificationInfo(info: NotificationInfo, width: 32 | 64): bigint[] {
  const maxIds = infoGetMaxIds(width);
  const ids: number[] = [];
  let x2 = info.morePending ? INFO_GET_MORE_PENDING : 0n;
  let lists = 0;
  for (const l of info.lists) {
    const vcpus = l.vcpus.slice(0, INFO_GET_MAX_VCPU_IDS_PER_LIST);
    if (ids.length + 1 + vcpus.length > maxIds) break;
    ids.push(l.endpoint, ...vcpus);
    x2 |= BigInt(vcpus.length) << BigInt(INFO_GET_LIST_SIZES_SHIFT + 2 * lists);
    lists++;
  }
  x2 |= BigInt(lists) << INFO_GET_LIST_COUNT_SHIFT;
  const per = idsPerRegister(width);
  const regs = [x2, 0n, 0n, 0n, 0n, 0n];
  ids.forEach((id, i) => {
    const r = 1 + Math.floor(i / per);
    regs[r] = regs[r]! | (BigInt(id & 0xffff) << BigInt(16 * (i % per)));
  });
  return regs;
}

/** The inverse: read x2..x7 of an INFO_GET SUCCESS (32-bit replies use the low halves only). */
export function unpackNotificationInfo(args: readonly bigint[], width: 32 | 64): NotificationInfo {
  const x2 = args[0] ?? 0n;
  const listCount = Number((x2 >> INFO_GET_LIST_COUNT_SHIFT) & INFO_GET_LIST_COUNT_MASK);
  const per = idsPerRegister(width);
  const maxIds = infoGetMaxIds(width);
  const idAt = (i: number): number => Number(((args[1 + Math.floor(i / per)] ?? 0n) >> BigInt(16 * (i % per))) & 0xffffn);
  const lists: NotificationInfoList[] = [];
  let next = 0;
  for (let l = 0; l < listCount; l++) {
    const vcpuCount = Number((x2 >> BigInt(INFO_GET_LIST_SIZES_SHIFT + 2 * l)) & 3n);
    if (next + 1 + vcpuCount > maxIds) break; // a malformed reply: keep what is well formed
    const endpoint = idAt(next++);
    const vcpus = Array.from({ length: vcpuCount }, () => idAt(next++));
    lists.push({ endpoint, vcpus });
  }
  return { lists, morePending: (x2 & INFO_GET_MORE_PENDING) !== 0n };
}
