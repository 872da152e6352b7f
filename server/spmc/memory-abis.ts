// Memory-management ABIs (Hafnium's api.c + ffa_memory.c): MEM_SHARE/LEND/DONATE with
// MEM_FRAG_TX (memory-send.ts), MEM_RETRIEVE_REQ with MEM_FRAG_RX (memory-retrieve.ts),
// MEM_RELINQUISH and MEM_RECLAIM here. Checks run in Hafnium's order with its error codes, and
// every refusal says which check failed.

import {
  type CallOf,
  decodeMemRelinquish,
  FFA_ERRORS,
  ffaSuccess,
  hex,
  MEM_PERM,
  RECLAIM_FLAG_CLEAR,
  RECLAIM_FLAG_TIME_SLICE,
  RELINQUISH_FLAG_CLEAR,
  RELINQUISH_FLAG_TIME_SLICE,
  tryDecode,
} from '../../proto/ffa/index.js';
import { dataAccess, readTx, refusals, strictly, txSize } from './memory-checks.js';
import { fragRx, retrieveReq } from './memory-retrieve.js';
import { fragTx, memSend } from './memory-send.js';
import { dropBorrowerAccess, held, rangeOf, reclaim } from './memory-share.js';
import type { AbiTable, CallContext, InvalidCall, Reply } from './state.js';

const { INVALID_PARAMETERS, DENIED } = FFA_ERRORS;

function relinquish(ctx: CallContext): Reply {
  const { state, caller } = ctx;
  const no = refusals('MEM_RELINQUISH');
  const bad = (check: string, text: string) => no(INVALID_PARAMETERS, check, text);
  if (!caller.mailbox) return bad('no_tx_buffer', `${hex(caller.id)} has no TX buffer mapped`);
  const decoded = tryDecode(() => decodeMemRelinquish(readTx(state, caller, txSize(caller))));
  if (!decoded.ok) return bad('descriptor', decoded.why);
  const r = decoded.value;
  if (r.count !== 1) return bad('endpoint_count', `the descriptor lists ${r.count} endpoints; exactly 1 is supported`);
  if (r.endpoints[0] !== caller.id) return bad('endpoint', `the descriptor names ${hex(r.endpoints[0]!)}, but the caller is ${hex(caller.id)}`);
  const share = state.shares.byHandle.get(r.handle);
  if (!share) return bad('unknown_handle', `no memory transaction has handle ${hex(r.handle)}`);
  if (!share.complete) return bad('not_fully_sent', `transaction ${hex(r.handle)} is not fully sent yet`);
  const b = share.borrowers.find((x) => x.id === caller.id);
  if (!b) return bad('not_a_borrower', `${hex(caller.id)} is not a borrower of ${hex(r.handle)}`);
  if (b.retrieved !== 'yes') return bad('not_retrieved', `${hex(caller.id)} has not ${b.retrieved === 'no' ? '' : 'fully '}retrieved ${hex(r.handle)}`);
  if (state.strict && r.flags & ~(RELINQUISH_FLAG_CLEAR | RELINQUISH_FLAG_TIME_SLICE)) {
    return bad('flags', strictly(`flags ${hex(r.flags >>> 0)} set bits [31:2]`, 'FF-A v1.1 Table 16.25, flags bits [31:2] reserved MBZ'));
  }
  // The clear flag counts only once every other borrower has relinquished (Hafnium).
  const clear = (r.flags & RELINQUISH_FLAG_CLEAR) !== 0 && share.borrowers.every((x) => x === b || x.retrieved === 'no');
  if (clear && share.type === 'share') return bad('clear_on_share', 'shared memory cannot be cleared (the owner keeps access)');
  if (clear && dataAccess(b.permissions) === MEM_PERM.DATA_RO)
    return no(DENIED, 'clear_read_only', `${hex(caller.id)} was lent ${hex(r.handle)} read-only, so it cannot ask for clearing`);
  dropBorrowerAccess(state, share, b);
  if (clear) for (const c of share.constituents) state.memory.zero(rangeOf(c)[0], rangeOf(c)[1] - rangeOf(c)[0]);
  if (share.senderGone && !held(share)) reclaim(state, share, false);
  return ffaSuccess();
}

function memReclaim(ctx: CallContext, call: CallOf<'MEM_RECLAIM'>): Reply {
  const { state, caller } = ctx;
  const no = refusals('MEM_RECLAIM');
  const bad = (check: string, text: string) => no(INVALID_PARAMETERS, check, text);
  if (state.strict && call.flags & ~(RECLAIM_FLAG_CLEAR | RECLAIM_FLAG_TIME_SLICE)) {
    return bad('flags', strictly(`flags ${hex(call.flags >>> 0)} set bits [31:2]`, 'FF-A v1.1 FFA_MEM_RECLAIM, w3 bits [31:2] MBZ'));
  }
  const share = state.shares.byHandle.get(call.handle);
  if (!share) return bad('unknown_handle', `no memory transaction has handle ${hex(call.handle)}`);
  if (!share.complete) return bad('not_fully_sent', `transaction ${hex(call.handle)} is not fully sent yet`);
  if (share.sender !== caller.id) return bad('not_owner', `${hex(caller.id)} did not send ${hex(call.handle)} (${hex(share.sender)} did)`);
  const holder = share.borrowers.find((x) => x.retrieved !== 'no');
  if (holder) return no(DENIED, 'not_relinquished', `borrower ${hex(holder.id)} still holds ${hex(call.handle)}`);
  reclaim(state, share, (call.flags & RECLAIM_FLAG_CLEAR) !== 0);
  return ffaSuccess();
}

/**
 * Hafnium reads only the fields of a memory call's registers and never checks the rest, so a
 * malformed-register decode is handled as the call its fields make, unless in strict mode.
 */
const lenient =
  <F extends 'MEM_SHARE' | 'MEM_LEND' | 'MEM_DONATE' | 'MEM_RETRIEVE_REQ' | 'MEM_FRAG_TX' | 'MEM_FRAG_RX' | 'MEM_RELINQUISH' | 'MEM_RECLAIM'>(
    handle: (ctx: CallContext, call: CallOf<F>) => Reply,
  ) =>
  (ctx: CallContext, invalid: InvalidCall): Reply | undefined =>
    ctx.state.strict ? undefined : handle(ctx, invalid.call as CallOf<F>);

export const memoryAbis: AbiTable = {
  MEM_SHARE: { handle: memSend, onInvalid: lenient(memSend) },
  MEM_LEND: { handle: memSend, onInvalid: lenient(memSend) },
  MEM_DONATE: { handle: memSend, onInvalid: lenient(memSend) },
  MEM_FRAG_TX: { handle: fragTx, onInvalid: lenient(fragTx) },
  MEM_FRAG_RX: { handle: fragRx, onInvalid: lenient(fragRx) },
  MEM_RETRIEVE_REQ: { handle: retrieveReq, onInvalid: lenient(retrieveReq) },
  MEM_RELINQUISH: { handle: relinquish, onInvalid: lenient(relinquish) },
  MEM_RECLAIM: { handle: memReclaim, onInvalid: lenient(memReclaim) },
};
