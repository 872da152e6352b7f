// The FF-A v1.3 calls Hafnium 2.14 answers: FFA_NS_RES_INFO_GET (api_ffa_ns_res_info_get) and
// FFA_ABORT (api_ffa_abort). Dispatched only when the profile's version is v1.3 (spmc.ts); below
// it they are NOT_SUPPORTED as every function newer than the SPMC is.

import {
  AMD_PERM,
  type AddressMapDescriptor,
  encodeResourceInfo,
  type EndpointId,
  FFA_ERRORS,
  ffaSuccess,
  hex,
  isSecureId,
  MEM_PERM,
  NS_RES_INFO_FLAG_CONTINUE,
  NS_RES_INFO_FLAG_TARGET_VALID,
  NS_RES_INFO_RESOURCE_TYPE_MASK,
  NS_RES_INFO_TARGET_MASK,
  SPMC_ID,
} from '../../proto/ffa/index.js';
import type { Endpoint } from './endpoint.js';
import { fillRx, rxBufferSize, rxBusy } from './mailbox.js';
import { type AbiTable, park, refuse, type SpmcState, wake } from './state.js';

const { INVALID_PARAMETERS, NOT_SUPPORTED, RETRY, ABORTED } = FFA_ERRORS;

/** A descriptor being handed out in RX-sized pieces, per caller (Hafnium keeps one, globally). */
const inProgress = new WeakMap<SpmcState, Map<EndpointId, { data: Uint8Array; sent: number }>>();

const lo32 = (v: bigint | undefined): number => Number((v ?? 0n) & 0xffffffffn);

/** AMD permissions of a borrower's data/instruction access byte, as the borrower maps the memory. */
function amdPermissions(memPerm: number): number {
  const data = memPerm & MEM_PERM.DATA_MASK;
  let p = AMD_PERM.PRIV_R;
  if (data === MEM_PERM.DATA_RW) p |= AMD_PERM.PRIV_W;
  if ((memPerm & MEM_PERM.INSTRUCTION_MASK) >> MEM_PERM.INSTRUCTION_SHIFT !== MEM_PERM.INSTRUCTION_NX) p |= AMD_PERM.PRIV_X;
  return p;
}

/**
 * What api_ffa_ns_res_info_get_generate_data lists, in its order: every VM's RX and TX buffers (the
 * SPMC maps RX to write and TX to read), then the normal-world memory lent or shared to `target`
 * (every partition with 0), one descriptor per constituent and borrower.
 */
function resources(state: SpmcState, target: EndpointId): AddressMapDescriptor[] {
  const out: AddressMapDescriptor[] = [];
  const vms = state.orderedEndpoints().filter((ep) => ep.kind === 'vm');
  for (const vm of vms) {
    const mb = vm.mailbox;
    if (!mb) continue;
    out.push({ base: mb.rx, pageCount: mb.pageCount, permissions: AMD_PERM.PRIV_R | AMD_PERM.PRIV_W, endpoint: vm.id, flags: 0 });
    out.push({ base: mb.tx, pageCount: mb.pageCount, permissions: AMD_PERM.PRIV_R, endpoint: vm.id, flags: 0 });
  }
  for (const share of state.shares.byHandle.values()) {
    if (!share.complete || isSecureId(share.sender)) continue;
    for (const b of share.borrowers) {
      if (!isSecureId(b.id) || (target !== 0 && b.id !== target)) continue;
      for (const c of share.constituents)
        out.push({ base: c.address, pageCount: c.pageCount, permissions: amdPermissions(b.permissions), endpoint: b.id, flags: 0 });
    }
  }
  return out;
}

/** The next RX-sized piece of `caller`'s descriptor: FFA_SUCCESS_64 with x2 = (this size << 32) | what remains. */
function handOut(state: SpmcState, caller: Endpoint, pending: { data: Uint8Array; sent: number }) {
  const size = Math.min(rxBufferSize(caller), pending.data.length - pending.sent);
  fillRx(state, caller, pending.data.subarray(pending.sent, pending.sent + size), SPMC_ID, 'NS_RES_INFO_GET');
  pending.sent += size;
  const remaining = pending.data.length - pending.sent;
  if (remaining === 0) inProgress.get(state)?.delete(caller.id);
  return ffaSuccess([(BigInt(size) << 32n) | BigInt(remaining)], 64);
}

export const v13Abis: AbiTable = {
  NS_RES_INFO_GET: {
    handle({ state, caller }, { raw }) {
      const flags = lo32(raw[1]);
      const valid = (flags & NS_RES_INFO_FLAG_TARGET_VALID) !== 0;
      const target = valid ? lo32(raw[0]) & NS_RES_INFO_TARGET_MASK : 0;
      if (valid && target === 0) {
        return refuse(INVALID_PARAMETERS, 'ns_res_info_get.target_zero', 'NS_RES_INFO_GET: x2 says x1 names a partition, but x1 is 0');
      }
      if (target !== 0 && (!isSecureId(target) || target === SPMC_ID)) {
        return refuse(INVALID_PARAMETERS, 'ns_res_info_get.target_not_sp', `NS_RES_INFO_GET: target ${hex(target)} is not a partition ID`);
      }
      if ((flags & NS_RES_INFO_RESOURCE_TYPE_MASK) !== 0) {
        return refuse(
          INVALID_PARAMETERS,
          'ns_res_info_get.resource_type',
          `NS_RES_INFO_GET: resource type ${(flags & NS_RES_INFO_RESOURCE_TYPE_MASK) >> 2} is not 0 (memory)`,
        );
      }
      let byCaller = inProgress.get(state);
      if (!byCaller) inProgress.set(state, (byCaller = new Map()));
      if ((flags & NS_RES_INFO_FLAG_CONTINUE) === 0) {
        byCaller.delete(caller.id);
        if (target !== 0 && state.endpoints.get(target)?.kind !== 'sp') {
          return refuse(INVALID_PARAMETERS, 'ns_res_info_get.unknown_target', `NS_RES_INFO_GET: there is no partition ${hex(target)}`);
        }
        byCaller.set(caller.id, { data: encodeResourceInfo(resources(state, target)), sent: 0 });
      }
      const pending = byCaller.get(caller.id);
      if (rxBusy(caller)) {
        // Hafnium resets its state on any error: a continuation must start again.
        byCaller.delete(caller.id);
        return refuse(
          RETRY,
          'ns_res_info_get.rx_busy',
          `NS_RES_INFO_GET: the RX buffer of ${hex(caller.id)} is ${caller.mailbox ? 'still full' : 'not mapped'}`,
        );
      }
      if (!pending)
        return refuse(ABORTED, 'ns_res_info_get.nothing_to_continue', `NS_RES_INFO_GET: ${hex(caller.id)} asked to continue, but no request is in progress`);
      return handOut(state, caller, pending);
    },
  },

  ABORT: {
    handle({ state, caller, vcpu }, { raw }) {
      if (caller.kind === 'vm')
        return refuse(NOT_SUPPORTED, 'abort.not_for_vms', 'ABORT: only partitions abort (FFA_ABORT is not supported in the normal world)');
      // x1 and x3..x7 MBZ; x2 carries the partition's abort code.
      const mbz = [raw[0], ...raw.slice(2, 7)].findIndex((v) => (v ?? 0n) !== 0n);
      if (mbz !== -1) {
        return refuse(
          INVALID_PARAMETERS,
          'abort.mbz',
          `ABORT: x${mbz === 0 ? 1 : mbz + 2} is ${hex(mbz === 0 ? raw[0]! : raw[mbz + 1]!)}; x1 and x3..x7 must be zero`,
        );
      }
      // Whoever this context was serving learns the partition aborted; the context itself stops
      // for good (it never returns from FFA_ABORT), so later requests to it find it busy.
      const served = vcpu.handling;
      if (served && !served.originGone) {
        wake(
          state,
          served.origin,
          refuse(ABORTED, 'abort.partition_aborted', `${hex(caller.id)} (${caller.name}) aborted (code ${hex(raw[1] ?? 0n)}) while serving this request`),
        );
      }
      vcpu.handling = undefined;
      return park(vcpu, 'blocked', 'ABORT');
    },
  },
};
