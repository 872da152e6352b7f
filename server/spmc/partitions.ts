// Discovery: FFA_ID_GET, FFA_SPM_ID_GET, FFA_PARTITION_INFO_GET and its register form.

import {
  encodePartitionInfo,
  FFA_ERRORS,
  FFA_VERSION_1_0,
  FFA_VERSION_1_1,
  FFA_VERSION_1_2,
  ffaSuccess,
  formatUuid,
  hex,
  isNilUuid,
  packPartitionInfoRegsHeader,
  PARTITION_INFO_SIZE_V1_0,
  PARTITION_INFO_SIZE_V1_3,
  PARTITION_PROPERTIES as P,
  PARTITION_PROPERTIES_MASK_V1_0,
  PARTITION_PROPERTIES_MASK_V1_1,
  type PartitionInfo,
  partitionInfoRegsPerCall,
  partitionInfoToRegsSized,
  SPMC_ID,
  type Uuid,
  UUID_NIL,
  uuidEquals,
} from '../../proto/ffa/index.js';
import type { Endpoint } from './endpoint.js';
import { logicalPartitionEntries } from './logical-partitions.js';
import { fillRx, rxBufferSize, rxBusy } from './mailbox.js';
import { type AbiTable, refuse, type SpmcState } from './state.js';
import type { SpmcProfile } from './profile.js';

const { INVALID_PARAMETERS, BUSY, NO_MEMORY, RETRY } = FFA_ERRORS;

/** What `caller` may do with `target`, as Hafnium filters it (ffa_setup_partition_properties). */
export function visibleProperties(target: Endpoint, caller: Endpoint): number {
  let p = target.properties;
  // SPs cannot send direct requests to the normal world. (SPs never see VMs: visiblePartitions.)
  if (caller.kind === 'vm' && target.kind === 'sp') p &= ~(P.DIRECT_REQ_SEND | P.DIRECT_REQ2_SEND);
  if (target.version < FFA_VERSION_1_2) p &= ~(P.DIRECT_REQ2_RECV | P.DIRECT_REQ2_SEND);
  if (target.version < FFA_VERSION_1_1) p &= ~(P.INDIRECT_MSG | P.NOTIFICATION_RECV);
  const vmEvents = caller.kind === 'vm' && target.kind === 'sp' && (p & P.DIRECT_REQ_RECV) !== 0;
  if (!vmEvents) p &= ~(P.VM_CREATED | P.VM_DESTROYED);
  return p & (caller.version <= FFA_VERSION_1_0 ? PARTITION_PROPERTIES_MASK_V1_0 : PARTITION_PROPERTIES_MASK_V1_1);
}

/**
 * The endpoints `caller`'s discovery calls list, in the order they list them. The one place that
 * decides who sees whom (later: logical partitions the SPMD would list to SPs). At the non-secure
 * physical instance (SpmcProfile.normalWorld 'physical') there is no hypervisor: SPs only for everyone.
 * - An SP sees SPs only: Hafnium's SPMC keeps normal-world VMs in a separate list (ffa/spmc/vm.c's
 *   nwd_vms), which api_ffa_fill_partitions_info_array never walks.
 * - A VM sees the attached VMs, then the SPs (Hafnium's hypervisor lists its VMs and appends what
 *   the SPMC answers), each in ID order.
 */
export function visiblePartitions(state: SpmcState, caller: Endpoint): Endpoint[] {
  const byId = [...state.endpoints.values()].sort((a, b) => a.id - b.id);
  const sps = byId.filter((ep) => ep.kind === 'sp');
  return caller.kind === 'sp' || state.profile.normalWorld === 'physical' ? sps : [...byId.filter((ep) => ep.kind === 'vm'), ...sps];
}

/** The descriptor size a caller of `version` gets: 8 for v1.0, the profile's (24, or 48 in the v1.3 layout) after. */
export const descriptorSize = (profile: SpmcProfile, version: number): number =>
  version <= FFA_VERSION_1_0 ? PARTITION_INFO_SIZE_V1_0 : profile.partitionInfoSize;

/**
 * The descriptors `caller` gets for `uuid`. With the Nil UUID a v1.2 caller gets one entry per UUID
 * of each partition and older callers one per partition; a specific UUID matches each partition
 * once, with the UUID field left zero.
 */
export function partitionEntries(state: SpmcState, caller: Endpoint, uuid: Uuid): PartitionInfo[] {
  const all = isNilUuid(uuid);
  const out: PartitionInfo[] = [];
  for (const ep of visiblePartitions(state, caller)) {
    const base: Omit<PartitionInfo, 'uuid'> = { id: ep.id, execContexts: ep.vcpuCount, properties: visibleProperties(ep, caller) };
    // The v1.3 layout also tells each partition's version.
    if (state.profile.partitionInfoSize >= PARTITION_INFO_SIZE_V1_3) base.ffaVersion = ep.version;
    if (all) {
      const uuids = ep.uuids.length > 0 ? ep.uuids : [UUID_NIL];
      for (const u of caller.version >= FFA_VERSION_1_2 ? uuids : uuids.slice(0, 1)) out.push({ ...base, uuid: u });
    } else if (ep.uuids.some((u) => uuidEquals(u, uuid))) {
      out.push({ ...base, uuid: UUID_NIL });
    }
  }
  return out;
}

export const partitionAbis: AbiTable = {
  ID_GET: { handle: ({ caller }) => ffaSuccess([caller.id]) },
  SPM_ID_GET: { handle: () => ffaSuccess([SPMC_ID]) },

  PARTITION_INFO_GET: {
    handle({ state, caller }, { uuid, countOnly }) {
      const entries = partitionEntries(state, caller, uuid);
      if (!isNilUuid(uuid) && entries.length === 0) {
        return refuse(
          INVALID_PARAMETERS,
          'partition_info_get.unknown_uuid',
          `PARTITION_INFO_GET: no partition ${hex(caller.id)} can see serves UUID ${formatUuid(uuid)}`,
        );
      }
      // Count-only leaves RX alone (and w3 is MBZ), so it works before RXTX_MAP.
      if (countOnly) return ffaSuccess([entries.length, 0]);
      if (rxBusy(caller)) {
        return caller.mailbox
          ? refuse(BUSY, 'partition_info_get.rx_full', `PARTITION_INFO_GET: the RX buffer of ${hex(caller.id)} is still full (RX_RELEASE it first)`)
          : refuse(BUSY, 'partition_info_get.rx_unmapped', `PARTITION_INFO_GET: ${hex(caller.id)} has no RX buffer mapped`);
      }
      const descSize = descriptorSize(state.profile, caller.version);
      if (entries.length * descSize > rxBufferSize(caller)) {
        return refuse(
          NO_MEMORY,
          'partition_info_get.rx_too_small',
          `PARTITION_INFO_GET: ${entries.length} descriptors of ${descSize} bytes do not fit the ${rxBufferSize(caller)}-byte RX buffer of ${hex(caller.id)}`,
        );
      }
      fillRx(state, caller, encodePartitionInfo(entries, descSize), SPMC_ID, 'PARTITION_INFO_GET');
      // OP-TEE before its PR #6531 left w3 0 (SpmcProfile.partitionInfoSizeInW3).
      return ffaSuccess([entries.length, caller.version >= FFA_VERSION_1_1 && state.profile.partitionInfoSizeInW3 ? descSize : 0]);
    },
  },

  PARTITION_INFO_GET_REGS: {
    handle({ state, caller }, { uuid, startIndex, tag }) {
      // Nothing here changes between calls, so no tag is ever handed out; any other is stale.
      if (tag !== 0) return refuse(RETRY, 'partition_info_get_regs.tag', `PARTITION_INFO_GET_REGS: tag ${hex(tag)} was never handed out (only 0 is valid)`);
      // An SP's query is forwarded to the SPMD, whose logical partitions follow the SPs
      // (Hafnium's api_ffa_partition_info_get_regs_forward); a VM's is not.
      const logical = caller.kind === 'sp' ? logicalPartitionEntries(state.logicalPartitions, uuid) : [];
      const entries = [...partitionEntries(state, caller, uuid), ...logical];
      if (entries.length === 0) {
        return refuse(
          INVALID_PARAMETERS,
          'partition_info_get_regs.unknown_uuid',
          `PARTITION_INFO_GET_REGS: no partition ${hex(caller.id)} can see serves UUID ${formatUuid(uuid)}`,
        );
      }
      if (startIndex >= entries.length) {
        return refuse(
          INVALID_PARAMETERS,
          'partition_info_get_regs.start_index',
          `PARTITION_INFO_GET_REGS: start index ${startIndex} is not below the count ${entries.length}`,
        );
      }
      // The register form is v1.2+: its descriptors are the profile's size (5 of 24 bytes a call, 2 of 48).
      const descSize = state.profile.partitionInfoSize;
      const batch = entries.slice(startIndex, startIndex + partitionInfoRegsPerCall(descSize));
      const header = packPartitionInfoRegsHeader({
        lastIndex: entries.length - 1,
        currentIndex: startIndex + batch.length - 1,
        tag: 0,
        descSize,
      });
      return ffaSuccess([header, ...batch.flatMap((e) => partitionInfoToRegsSized(e, descSize))], 64);
    },
  },
};
