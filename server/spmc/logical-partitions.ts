// The SPMD's logical partitions (EL3), as a manifest declares them: what SPs discover of them and
// how they answer.
//
// - Listed to SPs only, and only by FFA_PARTITION_INFO_GET_REGS: Hafnium's SPMC forwards an SP's
//   register query to the SPMD (api_ffa_partition_info_get_regs_forward), never a VM's, and never
//   FFA_PARTITION_INFO_GET ("The SPMD doesn't access RXTX buffers", ffa_setup_partition_info_get_forward).
// - Listed as TF-A's SPMD lists them (spmd_logical_sp.c): one execution context, AArch64,
//   DIRECT_REQ_SEND, the UUID only for a Nil-UUID query, after the SPs.
// - Direct requests to them: Hafnium does not forward one (api_ffa_msg_send_direct_req: vm_find
//   fails, INVALID_PARAMETERS) and TF-A's SPMD refuses them ("SPMD logical partitions cannot handle
//   direct messages"). A manifest may give one `answers`, for SPs that talk to a firmware service:
//   it then also shows DIRECT_REQ_RECV and answers an SP's FFA_MSG_SEND_DIRECT_REQ at once. That goes
//   beyond both references; without `answers` the references' refusal stands.

import {
  DIRECT_MSG_ARGS,
  type EndpointId,
  type FfaCall,
  type FfaVersion,
  FFA_VERSION_IMPLEMENTED,
  isNilUuid,
  type Width,
  PARTITION_PROPERTIES as P,
  type PartitionInfo,
  type Uuid,
  U32,
  UUID_NIL,
  uuidEquals,
} from '../../proto/ffa/index.js';

/** How a logical partition answers a direct request: the request's own words, or fixed ones. */
export type LogicalAnswer = { kind: 'echo' } | { kind: 'fixed'; words: bigint[] };

/** A logical partition as the manifest declares it (already validated). */
export interface LogicalPartition {
  id: EndpointId;
  name: string;
  uuids: Uuid[];
  answers?: LogicalAnswer;
}

/** One execution context, as TF-A's SPMD reports every logical partition. */
export const LOGICAL_PARTITION_EXEC_CONTEXTS = 1;

/** The SPMD reports its own version for its partitions. */
export const LOGICAL_PARTITION_VERSION: FfaVersion = FFA_VERSION_IMPLEMENTED;

export const logicalProperties = (lp: LogicalPartition): number => P.DIRECT_REQ_SEND | P.AARCH64_EXEC | (lp.answers ? P.DIRECT_REQ_RECV : 0);

/** What the SPMD lists for `uuid` (one entry per UUID for the Nil UUID, the UUID field then filled). */
export function logicalPartitionEntries(lps: readonly LogicalPartition[], uuid: Uuid): PartitionInfo[] {
  const all = isNilUuid(uuid);
  const out: PartitionInfo[] = [];
  for (const lp of lps) {
    const base = { id: lp.id, execContexts: LOGICAL_PARTITION_EXEC_CONTEXTS, properties: logicalProperties(lp) };
    if (all) for (const u of lp.uuids) out.push({ ...base, uuid: u });
    else if (lp.uuids.some((u) => uuidEquals(u, uuid))) out.push({ ...base, uuid: UUID_NIL });
  }
  return out;
}

/** The response of `lp` to a direct request from `sender`, in the request's width. */
export function logicalAnswer(lp: LogicalPartition, sender: EndpointId, width: Width, args: readonly bigint[]): FfaCall {
  const answer = lp.answers ?? { kind: 'echo' };
  const words = answer.kind === 'echo' ? args : answer.words;
  const word = (i: number) => (width === 32 ? (words[i] ?? 0n) & U32 : BigInt.asUintN(64, words[i] ?? 0n));
  return {
    fn: 'MSG_SEND_DIRECT_RESP',
    width,
    route: { source: lp.id, destination: sender },
    message: { kind: 'partition' },
    args: Array.from({ length: DIRECT_MSG_ARGS }, (_, i) => word(i)),
  };
}
