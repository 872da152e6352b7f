// Discovery: FFA_ID_GET, FFA_SPM_ID_GET, FFA_PARTITION_INFO_GET and its register form.

import {
  encodePartitionInfo,
  FFA_ERRORS,
  FFA_VERSION_1_0,
  FFA_VERSION_1_1,
  FFA_VERSION_1_2,
  ffaError,
  ffaSuccess,
  isNilUuid,
  packPartitionInfoRegsHeader,
  PARTITION_INFO_REGS_MAX_PER_CALL,
  PARTITION_INFO_SIZE_V1_1,
  PARTITION_PROPERTIES as P,
  PARTITION_PROPERTIES_MASK_V1_0,
  PARTITION_PROPERTIES_MASK_V1_1,
  type PartitionInfo,
  partitionInfoSize,
  partitionInfoToRegs,
  SPMC_ID,
  type Uuid,
  UUID_NIL,
  uuidEquals,
} from '../../proto/ffa/index.js';
import type { Endpoint } from './endpoint.js';
import { logicalPartitionEntries } from './logical-partitions.js';
import { fillRx, rxBufferSize, rxBusy } from './mailbox.js';
import type { AbiTable, SpmcState } from './state.js';

const { INVALID_PARAMETERS, BUSY, NO_MEMORY, RETRY } = FFA_ERRORS;

/** What `caller` may do with `target`, as Hafnium filters it (ffa_setup_partition_properties). */
export function visibleProperties(target: Endpoint, caller: Endpoint): number {
  let p = target.properties;
  // SPs cannot send direct requests to the normal world...
  if (caller.kind === 'vm' && target.kind === 'sp') p &= ~(P.DIRECT_REQ_SEND | P.DIRECT_REQ2_SEND);
  // ...so to an SP a VM never looks like a direct-request receiver.
  if (caller.kind === 'sp' && target.kind === 'vm') p &= ~(P.DIRECT_REQ_RECV | P.DIRECT_REQ2_RECV);
  if (target.version < FFA_VERSION_1_2) p &= ~(P.DIRECT_REQ2_RECV | P.DIRECT_REQ2_SEND);
  if (target.version < FFA_VERSION_1_1) p &= ~(P.INDIRECT_MSG | P.NOTIFICATION_RECV);
  const vmEvents = caller.kind === 'vm' && target.kind === 'sp' && (p & P.DIRECT_REQ_RECV) !== 0;
  if (!vmEvents) p &= ~(P.VM_CREATED | P.VM_DESTROYED);
  return p & (caller.version <= FFA_VERSION_1_0 ? PARTITION_PROPERTIES_MASK_V1_0 : PARTITION_PROPERTIES_MASK_V1_1);
}

/**
 * The descriptors `caller` gets for `uuid`: attached VMs then SPs, in ID order. With the Nil UUID a
 * v1.2 caller gets one entry per UUID of each partition and older callers one per partition; a
 * specific UUID matches each partition once, with the UUID field left zero.
 */
export function partitionEntries(state: SpmcState, caller: Endpoint, uuid: Uuid): PartitionInfo[] {
  const all = isNilUuid(uuid);
  const out: PartitionInfo[] = [];
  for (const ep of state.orderedEndpoints()) {
    const base = { id: ep.id, execContexts: ep.vcpuCount, properties: visibleProperties(ep, caller) };
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
      if (!isNilUuid(uuid) && entries.length === 0) return ffaError(INVALID_PARAMETERS);
      // Count-only leaves RX alone (and w3 is MBZ), so it works before RXTX_MAP.
      if (countOnly) return ffaSuccess([entries.length, 0]);
      if (rxBusy(caller)) return ffaError(BUSY);
      const descSize = partitionInfoSize(caller.version);
      if (entries.length * descSize > rxBufferSize(caller)) return ffaError(NO_MEMORY);
      fillRx(state, caller, encodePartitionInfo(entries, descSize), SPMC_ID, 'PARTITION_INFO_GET');
      return ffaSuccess([entries.length, caller.version >= FFA_VERSION_1_1 ? descSize : 0]);
    },
  },

  PARTITION_INFO_GET_REGS: {
    handle({ state, caller }, { uuid, startIndex, tag }) {
      // Nothing here changes between calls, so no tag is ever handed out; any other is stale.
      if (tag !== 0) return ffaError(RETRY);
      // An SP's query is forwarded to the SPMD, whose logical partitions follow the SPs
      // (Hafnium's api_ffa_partition_info_get_regs_forward); a VM's is not.
      const logical = caller.kind === 'sp' ? logicalPartitionEntries(state.logicalPartitions, uuid) : [];
      const entries = [...partitionEntries(state, caller, uuid), ...logical];
      if (entries.length === 0 || startIndex >= entries.length) return ffaError(INVALID_PARAMETERS);
      const batch = entries.slice(startIndex, startIndex + PARTITION_INFO_REGS_MAX_PER_CALL);
      const header = packPartitionInfoRegsHeader({
        lastIndex: entries.length - 1,
        currentIndex: startIndex + batch.length - 1,
        tag: 0,
        descSize: PARTITION_INFO_SIZE_V1_1,
      });
      return ffaSuccess([header, ...batch.flatMap(partitionInfoToRegs)], 64);
    },
  },
};
