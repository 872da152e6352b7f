// Memory-management ABIs (Hafnium's api.c + ffa_memory.c): MEM_SHARE/LEND/DONATE with
// MEM_FRAG_TX, MEM_RETRIEVE_REQ with MEM_FRAG_RX, MEM_RELINQUISH and MEM_RECLAIM. Checks run in
// the reference's order (ffa-reference Part B §3.4-§3.8) with its error codes.

import {
  type CallOf,
  COMPOSITE_HEADER_SIZE,
  CONSTITUENT_SIZE,
  type Constituent,
  decodeCompositeHeader,
  decodeConstituents,
  decodeMemRelinquish,
  decodeMemTransaction,
  DescriptorTooShort,
  EMAD_SIZE_V1_0,
  EMAD_SIZE_V1_2,
  encodeMemTransaction,
  FFA_ERRORS,
  FFA_PAGE_SIZE,
  FFA_VERSION_1_0,
  FFA_VERSION_1_2,
  type FfaCall,
  ffaError,
  ffaSuccess,
  MEM_ATTR,
  MEM_ATTR_NORMAL_WB_IS,
  MEM_FLAGS,
  MEM_HEADER_SIZE_V1_1,
  MEM_PERM,
  MEM_TRANSACTION_TYPES,
  type MemTransaction,
  type MemTransactionType,
  memDescriptorLayout,
  memReceiverCount,
  RECLAIM_FLAG_CLEAR,
  RECLAIM_FLAG_TIME_SLICE,
  RELINQUISH_FLAG_CLEAR,
  U32,
} from '../../proto/ffa/index.js';
import type { Endpoint } from './endpoint.js';
import { rxBufferSize, rxBusy, fillRx } from './mailbox.js';
import type { Permission } from './memory.js';
import { type Borrower, dropBorrowerAccess, held, type MemShare, rangeOf, reclaim } from './memory-share.js';
import type { AbiTable, CallContext, Reply, SpmcState } from './state.js';

const { INVALID_PARAMETERS, DENIED, NO_MEMORY, BUSY } = FFA_ERRORS;
const fail = (code: number): Reply => ffaError(code);
const PAGE = BigInt(FFA_PAGE_SIZE);

const TYPE_OF = { MEM_SHARE: 'share', MEM_LEND: 'lend', MEM_DONATE: 'donate' } as const;
type SendCall = CallOf<'MEM_SHARE'> | CallOf<'MEM_LEND'> | CallOf<'MEM_DONATE'>;

const txSize = (ep: Endpoint) => rxBufferSize(ep); // TX and RX have the same size
const readTx = (state: SpmcState, ep: Endpoint, length: number) => state.memory.read(ep.mailbox!.tx, length);
const handleReply = (handle: bigint): FfaCall => ffaSuccess([handle & U32, handle >> 32n]);
const dataAccess = (perm: number) => perm & MEM_PERM.DATA_MASK;
const instructionAccess = (perm: number) => (perm & MEM_PERM.INSTRUCTION_MASK) >> MEM_PERM.INSTRUCTION_SHIFT;
const emadSizeValid = (size: number, version: number) => size === EMAD_SIZE_V1_0 || (size === EMAD_SIZE_V1_2 && version >= FFA_VERSION_1_2);

/** Header and access-list checks common to sends and retrieve requests (ffa_memory_region_sanity_check). */
function sanityCheck(state: SpmcState, buf: Uint8Array, tx: MemTransaction, version: number, retrieve: boolean): number | undefined {
  if (tx.reservedNonZero) return INVALID_PARAMETERS;
  if (version > FFA_VERSION_1_0) {
    if (!emadSizeValid(tx.emadSize, version)) return INVALID_PARAMETERS;
    if (tx.receiversOffset < MEM_HEADER_SIZE_V1_1 || tx.receiversOffset % 16 !== 0) return INVALID_PARAMETERS;
  }
  const count = memReceiverCount(buf);
  if (count < 1 || count > state.limits.maxBorrowers) return INVALID_PARAMETERS;
  if (tx.receivers.length < count || tx.receiversOffset + count * tx.emadSize > buf.length) return INVALID_PARAMETERS;
  const receiversEnd = tx.receiversOffset + count * tx.emadSize;
  for (const r of tx.receivers) {
    if (r.reserved !== 0n) return INVALID_PARAMETERS;
    if (retrieve) {
      if (r.compositeOffset !== 0) return INVALID_PARAMETERS;
    } else if (r.compositeOffset === 0 || r.compositeOffset < receiversEnd || r.compositeOffset + COMPOSITE_HEADER_SIZE > buf.length) {
      return INVALID_PARAMETERS;
    }
    if (!retrieve && r.compositeOffset !== tx.receivers[0]!.compositeOffset) return INVALID_PARAMETERS;
  }
  return undefined;
}

/** The first fragment of a send: everything but the constituents (api_ffa_mem_send, ffa_memory_send_validate). */
function validateSendHeader(ctx: CallContext, type: MemTransactionType, frag: Uint8Array, total: number): { tx: MemTransaction } | { error: number } {
  const { state, caller } = ctx;
  let tx: MemTransaction;
  try {
    tx = decodeMemTransaction(frag, caller.version);
  } catch (e) {
    if (e instanceof DescriptorTooShort) return { error: INVALID_PARAMETERS };
    throw e;
  }
  const bad = sanityCheck(state, frag, tx, caller.version, false);
  if (bad !== undefined) return { error: bad };
  if (tx.flags & ~MEM_FLAGS.CLEAR || (type === 'share' && tx.flags & MEM_FLAGS.CLEAR)) return { error: INVALID_PARAMETERS };
  if (type === 'donate' && tx.receivers.length !== 1) return { error: INVALID_PARAMETERS };
  for (const r of tx.receivers) {
    const ep = state.endpoints.get(r.receiver);
    if (!ep || ep.id === caller.id) return { error: INVALID_PARAMETERS };
  }
  // A partition never sends memory to the normal world.
  if (caller.kind === 'sp' && tx.receivers.some((r) => state.endpoints.get(r.receiver)!.kind === 'vm')) return { error: DENIED };
  const composite = tx.receivers[0]!.compositeOffset;
  if (frag.length % 16 !== 0 || total % 16 !== 0) return { error: INVALID_PARAMETERS };
  if (tx.sender !== caller.id) return { error: DENIED };
  const constituentsStart = composite + COMPOSITE_HEADER_SIZE;
  if (total < constituentsStart + CONSTITUENT_SIZE || composite % 16 !== 0) return { error: INVALID_PARAMETERS };
  const header = decodeCompositeHeader(frag, composite);
  if (header.reserved !== 0n || total - constituentsStart !== header.constituentCount * CONSTITUENT_SIZE) return { error: INVALID_PARAMETERS };
  const ids = tx.receivers.map((r) => r.receiver);
  if (new Set(ids).size !== ids.length) return { error: INVALID_PARAMETERS };
  for (const r of tx.receivers) {
    const data = dataAccess(r.permissions);
    const instr = instructionAccess(r.permissions);
    if (r.permissions & MEM_PERM.RESERVED_MASK || data === 3 || instr === 3) return { error: INVALID_PARAMETERS };
    if (instr !== MEM_PERM.INSTRUCTION_NOT_SPECIFIED) return { error: INVALID_PARAMETERS };
    if (type === 'donate' ? data !== MEM_PERM.DATA_NOT_SPECIFIED : data === MEM_PERM.DATA_NOT_SPECIFIED) return { error: INVALID_PARAMETERS };
    if (r.flags !== 0) return { error: INVALID_PARAMETERS };
  }
  if (tx.attributes & MEM_ATTR.NS || tx.attributes & ~MEM_ATTR.DEFINED_MASK) return { error: INVALID_PARAMETERS };
  const memType = tx.attributes & MEM_ATTR.TYPE_MASK;
  const typeRequired = type === 'share' || (type === 'lend' && tx.receivers.length > 1);
  if (!typeRequired && memType !== MEM_ATTR.TYPE_NOT_SPECIFIED) return { error: INVALID_PARAMETERS };
  if (typeRequired && tx.attributes !== MEM_ATTR_NORMAL_WB_IS) return { error: DENIED };
  return { tx };
}

/** On the last fragment: the constituents and the sender's ownership (ffa_send_check_update). */
function completeSend(ctx: CallContext, share: MemShare): Reply {
  const { state, caller } = ctx;
  const composite = share.header.receivers[0]!.compositeOffset;
  const head = decodeCompositeHeader(share.bytes, composite);
  const { constituents, reservedNonZero } = decodeConstituents(share.bytes, composite + COMPOSITE_HEADER_SIZE, head.constituentCount);
  const abort = (code: number) => {
    state.shares.byHandle.delete(share.handle);
    return fail(code);
  };
  if (reservedNonZero || constituents.length === 0) return abort(INVALID_PARAMETERS);
  let pages = 0;
  for (const c of constituents) {
    if (c.address % PAGE !== 0n || c.pageCount === 0) return abort(INVALID_PARAMETERS);
    pages += c.pageCount;
  }
  const sorted = [...constituents].sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
  for (let i = 1; i < sorted.length; i++) if (rangeOf(sorted[i - 1]!)[1] > sorted[i]!.address) return abort(INVALID_PARAMETERS);
  if (pages !== head.pageCount) return abort(INVALID_PARAMETERS);
  // The sender must own every page exclusively: not shared, lent, a mailbox or somebody else's.
  for (const c of constituents) if (!caller.access.allows(...rangeOf(c), 'rw', ['owned'])) return abort(DENIED);

  share.constituents = constituents;
  share.saved = constituents.map((c) => ({ base: rangeOf(c)[0], limit: rangeOf(c)[1], state: 'owned' as const, perm: 'rw' as const }));
  const to = share.type === 'share' ? { state: 'shared' as const, perm: 'rw' as const } : undefined;
  caller.access.update(share.saved.map((r) => ({ base: r.base, limit: r.limit, to })));
  if (share.header.flags & MEM_FLAGS.CLEAR) for (const r of share.saved) state.memory.zero(r.base, r.limit - r.base);
  share.complete = true;
  share.bytes = new Uint8Array(0);
  return handleReply(share.handle);
}

function memSend(ctx: CallContext, call: SendCall): Reply {
  const { state, caller } = ctx;
  const type = TYPE_OF[call.fn];
  const { totalLength: total, fragmentLength: fragLen } = call;
  if (call.buffer.address !== 0n || call.buffer.pageCount !== 0) return fail(INVALID_PARAMETERS);
  if (fragLen > total) return fail(INVALID_PARAMETERS);
  if (!caller.mailbox) return fail(INVALID_PARAMETERS);
  if (fragLen > txSize(caller)) return fail(INVALID_PARAMETERS);
  const frag = readTx(state, caller, fragLen);
  const checked = validateSendHeader(ctx, type, frag, total);
  if ('error' in checked) return fail(checked.error);
  if (state.shares.size >= state.limits.maxTransactions) return fail(NO_MEMORY);

  const bytes = new Uint8Array(total);
  bytes.set(frag);
  const share: MemShare = {
    handle: state.shares.newHandle(),
    type,
    sender: caller.id,
    senderVersion: caller.version,
    header: checked.tx,
    borrowers: checked.tx.receivers.map((r) => ({ id: r.receiver, permissions: r.permissions, retrieved: 'no', delivered: 0 })),
    constituents: [],
    bytes,
    received: fragLen,
    fragments: 1,
    complete: false,
    saved: [],
    senderGone: false,
  };
  state.shares.byHandle.set(share.handle, share);
  if (fragLen < total) return { fn: 'MEM_FRAG_RX', handle: share.handle, fragmentOffset: fragLen, endpoint: 0 };
  return completeSend(ctx, share);
}

function fragTx(ctx: CallContext, call: CallOf<'MEM_FRAG_TX'>): Reply {
  const { state, caller } = ctx;
  if (call.endpoint !== 0) return fail(INVALID_PARAMETERS);
  if (!caller.mailbox) return fail(INVALID_PARAMETERS);
  const len = call.fragmentLength;
  if (len > txSize(caller) || len < 16 || len % 16 !== 0) return fail(INVALID_PARAMETERS);
  const share = state.shares.byHandle.get(call.handle);
  if (!share || share.sender !== caller.id || share.complete) return fail(INVALID_PARAMETERS);
  if (share.received + len > share.bytes.length) {
    state.shares.byHandle.delete(share.handle);
    return fail(INVALID_PARAMETERS);
  }
  if (share.fragments >= state.limits.maxFragments) {
    state.shares.byHandle.delete(share.handle);
    return fail(NO_MEMORY);
  }
  share.bytes.set(readTx(state, caller, len), share.received);
  share.received += len;
  share.fragments++;
  if (share.received < share.bytes.length) return { fn: 'MEM_FRAG_RX', handle: share.handle, fragmentOffset: share.received, endpoint: 0 };
  return completeSend(ctx, share);
}

/** The response a borrower gets: the transaction in its own layout, with only its access descriptor. */
function retrieveResponse(share: MemShare, b: Borrower, version: number, granted: number, clear: boolean): Uint8Array {
  return encodeMemTransaction(
    {
      sender: share.sender,
      attributes: share.header.attributes,
      flags: (MEM_TRANSACTION_TYPES[share.type] << MEM_FLAGS.TYPE_SHIFT) | (clear ? MEM_FLAGS.CLEAR : 0),
      handle: share.handle,
      tag: share.header.tag,
      receivers: [{ receiver: b.id, permissions: granted }],
      constituents: share.constituents,
    },
    version,
  );
}

/** The next piece of a retrieve response that fits `room`: whole constituents only. */
function nextFragment(resp: Uint8Array, from: number, room: number, constituentsStart: number): number {
  const left = resp.length - from;
  if (left <= room) return left;
  if (from === 0) return constituentsStart + Math.floor((room - constituentsStart) / CONSTITUENT_SIZE) * CONSTITUENT_SIZE;
  return Math.floor(room / CONSTITUENT_SIZE) * CONSTITUENT_SIZE;
}

function retrieveReq(ctx: CallContext, call: CallOf<'MEM_RETRIEVE_REQ'>): Reply {
  const { state, caller } = ctx;
  if (call.buffer.address !== 0n || call.buffer.pageCount !== 0) return fail(INVALID_PARAMETERS);
  if (call.fragmentLength !== call.totalLength) return fail(INVALID_PARAMETERS);
  if (!caller.mailbox) return fail(INVALID_PARAMETERS);
  if (call.totalLength > txSize(caller)) return fail(INVALID_PARAMETERS);
  if (rxBusy(caller)) return fail(BUSY);
  const buf = readTx(state, caller, call.totalLength);
  let req: MemTransaction;
  try {
    req = decodeMemTransaction(buf, caller.version);
  } catch (e) {
    if (e instanceof DescriptorTooShort) return fail(INVALID_PARAMETERS);
    throw e;
  }
  const bad = sanityCheck(state, buf, req, caller.version, true);
  if (bad !== undefined) return fail(bad);
  const share = state.shares.byHandle.get(req.handle);
  if (!share || !share.complete) return fail(INVALID_PARAMETERS);
  if (buf.length !== req.receiversOffset + req.receivers.length * req.emadSize) return fail(INVALID_PARAMETERS);
  if (req.sender !== share.sender) return fail(DENIED);
  const reqType = (req.flags & MEM_FLAGS.TYPE_MASK) >> MEM_FLAGS.TYPE_SHIFT;
  if (reqType !== 0 && reqType !== MEM_TRANSACTION_TYPES[share.type]) return fail(INVALID_PARAMETERS);
  if (req.tag !== share.header.tag) return fail(INVALID_PARAMETERS);
  const b = share.borrowers.find((x) => x.id === caller.id);
  if (!b) return fail(INVALID_PARAMETERS);
  const allowedFlags =
    MEM_FLAGS.CLEAR | MEM_FLAGS.TIME_SLICE | MEM_FLAGS.CLEAR_RELINQUISH | MEM_FLAGS.TYPE_MASK | (caller.version >= FFA_VERSION_1_2 ? MEM_FLAGS.BYPASS_MULTI_BORROWER : 0);
  if (req.flags & ~allowedFlags) return fail(INVALID_PARAMETERS);
  const clear = (req.flags & MEM_FLAGS.CLEAR) !== 0;
  const clearAfter = (req.flags & MEM_FLAGS.CLEAR_RELINQUISH) !== 0;
  if (share.type === 'share' && (clear || clearAfter)) return fail(INVALID_PARAMETERS);
  if (clear && !(share.header.flags & MEM_FLAGS.CLEAR)) return fail(DENIED);
  if (req.attributes & MEM_ATTR.NS) return fail(INVALID_PARAMETERS);
  if ((req.attributes & MEM_ATTR.TYPE_MASK) !== MEM_ATTR.TYPE_NOT_SPECIFIED && req.attributes !== MEM_ATTR_NORMAL_WB_IS) return fail(DENIED);
  const bypass = (req.flags & MEM_FLAGS.BYPASS_MULTI_BORROWER) !== 0;
  if (bypass ? req.receivers.length !== 1 || share.borrowers.length < 2 : req.receivers.length !== share.borrowers.length) return fail(INVALID_PARAMETERS);
  if (req.receivers.some((r) => !share.borrowers.some((x) => x.id === r.receiver))) return fail(DENIED);
  const mine = req.receivers.find((r) => r.receiver === caller.id);
  if (!mine) return fail(INVALID_PARAMETERS);

  // Permissions: no more than was granted; instruction access as the operation says.
  const sent = dataAccess(b.permissions);
  let data = dataAccess(mine.permissions);
  if (data === 3) return fail(INVALID_PARAMETERS);
  if (share.type === 'donate') {
    if (data === MEM_PERM.DATA_NOT_SPECIFIED) data = MEM_PERM.DATA_RW;
  } else if (data === MEM_PERM.DATA_NOT_SPECIFIED) {
    data = sent;
  } else if (data === MEM_PERM.DATA_RW && sent !== MEM_PERM.DATA_RW) {
    return fail(DENIED);
  }
  const instr = instructionAccess(mine.permissions);
  const single = share.borrowers.length === 1;
  if (instr === 3) return fail(INVALID_PARAMETERS);
  if (share.type === 'share' || !single) {
    if (instr !== MEM_PERM.INSTRUCTION_NOT_SPECIFIED) return fail(INVALID_PARAMETERS);
  } else if (instr === MEM_PERM.INSTRUCTION_NOT_SPECIFIED) {
    return fail(INVALID_PARAMETERS);
  }
  if (data === MEM_PERM.DATA_RO && (clear || clearAfter)) return fail(DENIED);
  if (mine.flags !== 0 || (caller.version >= FFA_VERSION_1_2 && (mine.impdef[0] !== 0n || mine.impdef[1] !== 0n))) {
    // Non-retrieval-borrower flags and impdef values are not used here; they must be clear.
    return fail(INVALID_PARAMETERS);
  }
  // The pages must not be mapped for the retriever yet: a second retrieve is DENIED.
  if (b.retrieved !== 'no' || share.constituents.some((c) => overlapsAny(caller, c))) {
    return fail(DENIED);
  }

  const granted: Permission = data === MEM_PERM.DATA_RW ? 'rw' : 'ro';
  const grantedByte = data | ((share.type === 'share' ? MEM_PERM.INSTRUCTION_NX : instr) << MEM_PERM.INSTRUCTION_SHIFT);
  b.response = retrieveResponse(share, b, caller.version, grantedByte, (share.header.flags & MEM_FLAGS.CLEAR) !== 0);
  b.granted = granted;
  if (share.type !== 'donate') caller.access.update(share.constituents.map((c) => ({ base: rangeOf(c)[0], limit: rangeOf(c)[1], to: { state: 'borrowed' as const, perm: granted } })));
  return deliverResponse(ctx, share, b, 'MEM_RETRIEVE_RESP');
}

const overlapsAny = (ep: Endpoint, c: Constituent) => ep.access.touches(...rangeOf(c));

/** Write the next response fragment to the borrower's RX; the last one completes the retrieval. */
function deliverResponse(ctx: CallContext, share: MemShare, b: Borrower, fn: 'MEM_RETRIEVE_RESP' | 'MEM_FRAG_TX'): Reply {
  const { state, caller } = ctx;
  const resp = b.response!;
  const constituentsStart = memDescriptorLayout(caller.version, 1).composite + COMPOSITE_HEADER_SIZE;
  const len = nextFragment(resp, b.delivered, rxBufferSize(caller), constituentsStart);
  if (len <= 0) return fail(NO_MEMORY);
  fillRx(state, caller, resp.subarray(b.delivered, b.delivered + len), share.sender, fn);
  b.delivered += len;
  b.retrieved = b.delivered >= resp.length ? 'yes' : 'partial';
  if (b.retrieved === 'yes') {
    b.response = undefined;
    if (share.type === 'donate') {
      // Ownership moves for good; nothing is left to reclaim.
      caller.access.update(share.constituents.map((c) => ({ base: rangeOf(c)[0], limit: rangeOf(c)[1], to: { state: 'owned' as const, perm: 'rw' as const } })));
      state.shares.byHandle.delete(share.handle);
    }
  }
  if (fn === 'MEM_RETRIEVE_RESP') return { fn, totalLength: resp.length, fragmentLength: len };
  return { fn, handle: share.handle, fragmentLength: len, endpoint: 0 };
}

function fragRx(ctx: CallContext, call: CallOf<'MEM_FRAG_RX'>): Reply {
  const { state, caller } = ctx;
  if (call.endpoint !== 0) return fail(INVALID_PARAMETERS);
  if (rxBusy(caller)) return fail(BUSY);
  const share = state.shares.byHandle.get(call.handle);
  const b = share?.borrowers.find((x) => x.id === caller.id);
  if (!share || !share.complete || !b || b.retrieved !== 'partial') return fail(INVALID_PARAMETERS);
  if (call.fragmentOffset !== b.delivered) return fail(INVALID_PARAMETERS);
  return deliverResponse(ctx, share, b, 'MEM_FRAG_TX');
}

function relinquish(ctx: CallContext): Reply {
  const { state, caller } = ctx;
  if (!caller.mailbox) return fail(INVALID_PARAMETERS);
  let r;
  try {
    r = decodeMemRelinquish(readTx(state, caller, txSize(caller)));
  } catch (e) {
    if (e instanceof DescriptorTooShort) return fail(INVALID_PARAMETERS);
    throw e;
  }
  if (r.count !== 1 || r.endpoints.length !== 1) return fail(INVALID_PARAMETERS);
  if (r.endpoints[0] !== caller.id) return fail(INVALID_PARAMETERS);
  const share = state.shares.byHandle.get(r.handle);
  if (!share || !share.complete) return fail(INVALID_PARAMETERS);
  const b = share.borrowers.find((x) => x.id === caller.id);
  if (!b || b.retrieved !== 'yes') return fail(INVALID_PARAMETERS);
  if (r.flags & ~(RELINQUISH_FLAG_CLEAR | RECLAIM_FLAG_TIME_SLICE)) return fail(INVALID_PARAMETERS);
  const clear = (r.flags & RELINQUISH_FLAG_CLEAR) !== 0;
  if (clear && share.type === 'share') return fail(INVALID_PARAMETERS);
  if (clear && b.granted !== 'rw') return fail(DENIED);
  dropBorrowerAccess(state, share, b);
  if (clear && !held(share)) for (const c of share.constituents) state.memory.zero(rangeOf(c)[0], rangeOf(c)[1] - rangeOf(c)[0]);
  if (share.senderGone && !held(share)) reclaim(state, share, false);
  return ffaSuccess();
}

function memReclaim(ctx: CallContext, call: CallOf<'MEM_RECLAIM'>): Reply {
  const { state, caller } = ctx;
  if (call.flags & ~(RECLAIM_FLAG_CLEAR | RECLAIM_FLAG_TIME_SLICE)) return fail(INVALID_PARAMETERS);
  const share = state.shares.byHandle.get(call.handle);
  if (!share || !share.complete) return fail(INVALID_PARAMETERS);
  if (share.sender !== caller.id) return fail(INVALID_PARAMETERS);
  if (held(share)) return fail(DENIED);
  reclaim(state, share, (call.flags & RECLAIM_FLAG_CLEAR) !== 0);
  return ffaSuccess();
}

export const memoryAbis: AbiTable = {
  MEM_SHARE: { handle: memSend },
  MEM_LEND: { handle: memSend },
  MEM_DONATE: { handle: memSend },
  MEM_FRAG_TX: { handle: fragTx },
  MEM_FRAG_RX: { handle: fragRx },
  MEM_RETRIEVE_REQ: { handle: retrieveReq },
  MEM_RELINQUISH: { handle: relinquish },
  MEM_RECLAIM: { handle: memReclaim },
};
