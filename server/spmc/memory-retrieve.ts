// MEM_RETRIEVE_REQ and MEM_FRAG_RX (Hafnium's api_ffa_mem_retrieve_req, ffa_memory_retrieve,
// ffa_memory_retrieve_validate, ffa_memory_retrieve_validate_memory_access_list,
// ffa_memory_retrieve_continue): the checks in Hafnium's order, and the response descriptor as
// Hafnium's ffa_partition_retrieve_response_init writes it.

import {
  type CallOf,
  COMPOSITE_HEADER_SIZE,
  CONSTITUENT_SIZE,
  decodeMemTransaction,
  EMAD_FLAG_NON_RETRIEVAL_BORROWER,
  EMAD_SIZE_V1_2,
  FFA_ERRORS,
  FFA_VERSION_1_0,
  FFA_VERSION_1_2,
  hex,
  MEM_ATTR,
  MEM_FLAGS,
  MEM_PERM,
  MEM_TRANSACTION_TYPES,
  type MemAccess,
  type MemTransactionType,
  encodeMemTransaction,
  memDescriptorLayout,
  tryDecode,
} from '../../proto/ffa/index.js';
import type { Endpoint } from './endpoint.js';
import { rxBufferSize, rxBusy, fillRx } from './mailbox.js';
import {
  attributesProblem,
  attributesSecurity,
  DATA_NAMES,
  dataAccess,
  INSTRUCTION_NAMES,
  instructionAccess,
  isRefusal,
  memType,
  pages,
  readTx,
  type Refusal,
  refusals,
  sanityCheck,
  strictly,
  txSize,
} from './memory-checks.js';
import { MEMORY_ATTRS, type Permission } from './memory.js';
import { type Borrower, type MemShare, rangeOf } from './memory-share.js';
import type { CallContext, Reply } from './state.js';

const { INVALID_PARAMETERS, DENIED, NO_MEMORY, BUSY } = FFA_ERRORS;
const FN = 'MEM_RETRIEVE_REQ';
const no = refusals(FN);
const bad = (check: string, text: string) => no(INVALID_PARAMETERS, check, text);
const { DATA_NOT_SPECIFIED: DATA_NS, DATA_RO, DATA_RW, INSTRUCTION_NOT_SPECIFIED: INSTR_NS, INSTRUCTION_NX: NX, INSTRUCTION_X: X } = MEM_PERM;
/** Retrieve flags Hafnium lets through ([10:0]; the hint bits are refused on their own). */
const RETRIEVE_FLAGS_KNOWN =
  MEM_FLAGS.CLEAR |
  MEM_FLAGS.TIME_SLICE |
  MEM_FLAGS.CLEAR_RELINQUISH |
  MEM_FLAGS.TYPE_MASK |
  MEM_FLAGS.HINT_MASK |
  MEM_FLAGS.HINT_VALID |
  MEM_FLAGS.BYPASS_MULTI_BORROWER;

/**
 * One borrower's requested access against what the sender gave
 * (ffa_memory_retrieve_is_memory_access_valid): what to grant, or the refusal.
 */
function accessGranted(
  type: MemTransactionType,
  who: number,
  sent: number,
  requested: number,
  multiple: boolean,
  nonSecure: boolean,
): { data: number; instr: number } | Refusal {
  const [sentData, reqData] = [dataAccess(sent), dataAccess(requested)];
  const [sentInstr, reqInstr] = [instructionAccess(sent), instructionAccess(requested)];
  let data: number;
  if ((sentData === DATA_NS || sentData === DATA_RW) && (reqData === DATA_NS || reqData === DATA_RW)) data = DATA_RW;
  else if (reqData === DATA_NS || reqData === DATA_RO) data = DATA_RO;
  else return no(DENIED, 'data_access', `receiver ${hex(who)} asks for ${DATA_NAMES[reqData]} data access where the sender gave ${DATA_NAMES[sentData]}`);

  if (type === 'share' || (type === 'lend' && multiple)) {
    if (reqInstr !== INSTR_NS) {
      return bad(
        'instruction_access',
        `receiver ${hex(who)} specifies instruction access ${INSTRUCTION_NAMES[reqInstr]} in a ${multiple ? 'multi-borrower ' : ''}${type}; it must be left unspecified`,
      );
    }
  } else if (!multiple) {
    if (reqInstr === INSTR_NS)
      return bad('instruction_access_missing', `receiver ${hex(who)} must specify X or NX instruction access in a single-borrower ${type}`);
    if (nonSecure && reqInstr === X) return bad('execute_non_secure', `receiver ${hex(who)} asks for X on non-secure memory`);
  }
  let instr: number;
  if ((sentInstr === INSTR_NS || sentInstr === X) && reqInstr === X) instr = X;
  else if (reqInstr === INSTR_NS || reqInstr === NX) instr = NX;
  else
    return no(
      DENIED,
      'instruction_access_exceeds',
      `receiver ${hex(who)} asks for ${INSTRUCTION_NAMES[reqInstr]} instruction access where the sender gave ${INSTRUCTION_NAMES[sentInstr]}`,
    );
  return { data, instr };
}

/**
 * The response a borrower gets, in its own layout, with only its access descriptor: the sender's
 * attributes with the NS bit when a partition retrieves non-secure memory, the sender's flags with
 * the transaction type, tag 0, and the sender's EMAD flags and impdef value for this borrower
 * (ffa_partition_retrieve_response_init, ffa_memory_add_security_bit_from_mode).
 */
function retrieveResponse(share: MemShare, b: Borrower, version: number, granted: number, nonSecure: boolean): Uint8Array {
  // A v1.0 descriptor has an 8-bit attributes field (Hafnium's ffa_memory_attributes_truncate).
  const attributes = version <= FFA_VERSION_1_0 ? share.header.attributes & 0xff : share.header.attributes;
  return encodeMemTransaction(
    {
      sender: share.sender,
      attributes: nonSecure ? (attributes & ~MEM_ATTR.SECURITY_MASK) | MEM_ATTR.NS : attributes,
      flags: (share.header.flags & MEM_FLAGS.CLEAR) | (MEM_TRANSACTION_TYPES[share.type] << MEM_FLAGS.TYPE_SHIFT),
      handle: share.handle,
      tag: 0n,
      receivers: [{ receiver: b.id, permissions: granted, flags: b.emadFlags, impdef: b.impdef }],
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

/** Checks of the request against the transaction (ffa_memory_retrieve_validate). */
function validateRequest(ctx: CallContext, share: MemShare, req: ReturnType<typeof decodeMemTransaction>, length: number): Refusal | undefined {
  const { state, caller } = ctx;
  const expected = req.receiversOffset + req.receivers.length * req.emadSize;
  if (length !== expected) return bad('length', `length ${length} is not ${expected}, the header and ${req.receivers.length} access descriptors`);
  if (req.sender !== share.sender)
    return no(DENIED, 'sender', `the request names sender ${hex(req.sender)}; transaction ${hex(share.handle)} is from ${hex(share.sender)}`);
  const reqType = (req.flags & MEM_FLAGS.TYPE_MASK) >> MEM_FLAGS.TYPE_SHIFT;
  if (reqType !== 0 && reqType !== MEM_TRANSACTION_TYPES[share.type]) {
    return bad(
      'transaction_type',
      `transaction type ${reqType} was asked for, but ${hex(share.handle)} is a ${share.type} (${MEM_TRANSACTION_TYPES[share.type]})`,
    );
  }
  if (req.tag !== share.header.tag) return bad('tag', `tag ${hex(req.tag)} does not match the sender's ${hex(share.header.tag)}`);
  if (!share.borrowers.some((x) => x.id === caller.id)) return bad('not_a_borrower', `${hex(caller.id)} is not a borrower of ${hex(share.handle)}`);
  if (req.flags & MEM_FLAGS.HINT_VALID) return bad('address_hint', 'an address range alignment hint is not supported');
  if (req.flags & MEM_FLAGS.HINT_MASK) return bad('address_hint', `flags ${hex(req.flags >>> 0)} set hint bits [8:5]`);
  if (req.flags & ~RETRIEVE_FLAGS_KNOWN) return bad('flags', `flags ${hex(req.flags >>> 0)} set bits [31:11]`);
  if (state.strict && caller.version < FFA_VERSION_1_2 && req.flags & MEM_FLAGS.BYPASS_MULTI_BORROWER) {
    return bad(
      'flags',
      strictly(`flags ${hex(req.flags >>> 0)} set bit 10, a v1.2 flag`, 'FF-A v1.1 Table 10.20, flags bits [31:10] MBZ in a v1.1 retrieve request'),
    );
  }
  const clear = (req.flags & MEM_FLAGS.CLEAR) !== 0;
  if (share.type === 'share' && req.flags & (MEM_FLAGS.CLEAR | MEM_FLAGS.CLEAR_RELINQUISH)) {
    return bad('clear_on_share', 'shared memory cannot be cleared (the owner keeps access)');
  }
  if (clear && !(share.header.flags & MEM_FLAGS.CLEAR))
    return no(DENIED, 'clear_not_requested', `the borrower asks for clearing, but the sender of ${hex(share.handle)} did not set the clear flag`);
  const security = attributesSecurity(state, FN, req);
  if (security) return security;
  if (memType(req.attributes) === MEM_ATTR.TYPE_NOT_SPECIFIED) return undefined;
  const problem = attributesProblem(req.attributes);
  return problem ? no(DENIED, 'attributes', `attributes ${hex(req.attributes)}: ${problem}`) : undefined;
}

/** The access list (ffa_memory_retrieve_validate_memory_access_list): what the caller is granted. */
function validateAccessList(
  ctx: CallContext,
  share: MemShare,
  req: ReturnType<typeof decodeMemTransaction>,
  nonSecure: boolean,
): { data: number; instr: number } | Refusal {
  const { state, caller } = ctx;
  const bypass = (req.flags & MEM_FLAGS.BYPASS_MULTI_BORROWER) !== 0;
  const count = share.borrowers.length;
  if (!bypass && req.receivers.length !== count)
    return bad('receiver_count_differs', `the request lists ${req.receivers.length} borrowers, the sender ${count}`);
  if (bypass && req.receivers.length !== 1)
    return bad('receiver_count_differs', `with the bypass flag the request lists only the caller, not ${req.receivers.length} borrowers`);
  if (bypass && count === 1) return bad('bypass_single_borrower', `the bypass flag is for several borrowers; ${hex(share.handle)} has one`);
  const clearFlags = (req.flags & (MEM_FLAGS.CLEAR | MEM_FLAGS.CLEAR_RELINQUISH)) !== 0;
  let mine: { data: number; instr: number } | undefined;
  for (const r of req.receivers) {
    const me = r.receiver === caller.id;
    if (bypass && !me) continue;
    const sent = share.borrowers.find((x) => x.id === r.receiver);
    if (!sent) return no(DENIED, 'unknown_receiver', `receiver ${hex(r.receiver)} is not a borrower of ${hex(share.handle)}`);
    const strictProblem = state.strict ? strictEmadProblem(r) : undefined;
    if (strictProblem) return bad('emad_reserved', strictly(`receiver ${hex(r.receiver)}: ${strictProblem}`, 'FF-A v1.1 Table 10.15, reserved MBZ'));
    const granted = accessGranted(share.type, r.receiver, sent.permissions, r.permissions, count > 1, nonSecure && me);
    if (isRefusal(granted)) return granted;
    if (me) {
      mine = granted;
      if (granted.data === DATA_RO && clearFlags)
        return no(DENIED, 'clear_read_only', 'a borrower with read-only access cannot ask for the memory to be cleared');
    }
    if (share.header.emadSize >= EMAD_SIZE_V1_2 && req.emadSize >= EMAD_SIZE_V1_2 && (sent.impdef[0] !== r.impdef[0] || sent.impdef[1] !== r.impdef[1])) {
      return bad(
        'impdef',
        `receiver ${hex(r.receiver)}: implementation-defined value ${hex(r.impdef[0])}:${hex(r.impdef[1])} differs from the sender's ${hex(sent.impdef[0])}:${hex(sent.impdef[1])}`,
      );
    }
  }
  return mine ?? bad('caller_not_listed', `the request has no access descriptor for the caller ${hex(caller.id)}`);
}

function strictEmadProblem(r: MemAccess): string | undefined {
  if (r.permissions & MEM_PERM.RESERVED_MASK) return `permissions ${hex(r.permissions)} set bits [7:4]`;
  if (r.flags & ~EMAD_FLAG_NON_RETRIEVAL_BORROWER) return `flags ${hex(r.flags)} set bits [7:1]`;
  return undefined;
}

export function retrieveReq(ctx: CallContext, call: CallOf<'MEM_RETRIEVE_REQ'>): Reply {
  const { state, caller } = ctx;
  if (call.buffer.address !== 0n || call.buffer.pageCount !== 0) {
    return bad('buffer', `descriptors travel in the TX buffer only; w3/w4 name a buffer at ${hex(call.buffer.address)} of ${pages(call.buffer.pageCount)}`);
  }
  if (call.fragmentLength !== call.totalLength)
    return bad('fragmented', `fragment length ${call.fragmentLength} differs from the total ${call.totalLength}: retrieve requests are not fragmented`);
  if (call.totalLength > txSize(caller)) return bad('too_long', `length ${call.totalLength} exceeds the ${txSize(caller)}-byte TX buffer`);
  if (!caller.mailbox) return bad('no_tx_buffer', `${hex(caller.id)} has no TX buffer mapped`);
  if (rxBusy(caller)) return no(BUSY, 'rx_busy', `the RX buffer of ${hex(caller.id)} is still full`);
  const buf = readTx(state, caller, call.totalLength);
  const decoded = tryDecode(() => decodeMemTransaction(buf, caller.version));
  if (!decoded.ok) return bad('descriptor', decoded.why);
  const req = decoded.value;
  const sane = sanityCheck(state, caller, FN, buf, req, false);
  if (sane) return sane;
  const share = state.shares.byHandle.get(req.handle);
  if (!share) return bad('unknown_handle', `no memory transaction has handle ${hex(req.handle)}`);
  if (!share.complete) return bad('not_fully_sent', `transaction ${hex(req.handle)} is not fully sent yet`);
  const invalid = validateRequest(ctx, share, req, call.totalLength);
  if (invalid) return invalid;
  // What Hafnium's SPMC sees as non-secure: a VM's memory, retrieved by a partition.
  const nonSecure = caller.kind === 'sp' && (share.mode!.attrs & MEMORY_ATTRS.NON_SECURE) !== 0;
  const granted = validateAccessList(ctx, share, req, nonSecure);
  if (isRefusal(granted)) return granted;
  const device = (share.mode!.attrs & MEMORY_ATTRS.DEVICE) !== 0;
  if (memType(req.attributes) === MEM_ATTR.TYPE_NORMAL && (device || memType(share.header.attributes) === MEM_ATTR.TYPE_DEVICE)) {
    return no(DENIED, 'device_as_normal', 'device memory may not be retrieved as Normal memory');
  }
  // ffa_retrieve_check_transition: the pages must not be mapped for the retriever yet.
  const b = share.borrowers.find((x) => x.id === caller.id)!;
  if (b.retrieved !== 'no' || share.constituents.some((c) => caller.access.touches(...rangeOf(c)))) {
    const what = b.retrieved === 'no' ? `already has pages of ${hex(share.handle)} mapped` : `has already retrieved ${hex(share.handle)}`;
    return no(DENIED, 'already_mapped', `${hex(caller.id)} ${what}`);
  }

  const perm: Permission = granted.data === DATA_RW ? 'rw' : 'ro';
  const attrs = (granted.instr === X ? MEMORY_ATTRS.EXECUTE : 0) | (share.mode!.attrs & (MEMORY_ATTRS.DEVICE | MEMORY_ATTRS.NON_SECURE));
  b.grant = { perm, attrs };
  b.response = retrieveResponse(share, b, caller.version, granted.data | (granted.instr << MEM_PERM.INSTRUCTION_SHIFT), nonSecure);
  if (share.type !== 'donate') mapFor(caller, share, 'borrowed', b);
  return deliverResponse(ctx, share, b, 'MEM_RETRIEVE_RESP');
}

const mapFor = (ep: Endpoint, share: MemShare, state: 'borrowed' | 'owned', b: Borrower) =>
  ep.access.update(share.constituents.map((c) => ({ base: rangeOf(c)[0], limit: rangeOf(c)[1], to: { state, ...b.grant! } })));

/** Write the next response fragment to the borrower's RX; the last one completes the retrieval. */
function deliverResponse(ctx: CallContext, share: MemShare, b: Borrower, fn: 'MEM_RETRIEVE_RESP' | 'MEM_FRAG_TX'): Reply {
  const { state, caller } = ctx;
  const resp = b.response!;
  const constituentsStart = memDescriptorLayout(caller.version, 1).composite + COMPOSITE_HEADER_SIZE;
  const room = state.fragmentCap > 0 ? Math.min(state.fragmentCap, rxBufferSize(caller)) : rxBufferSize(caller);
  const len = nextFragment(resp, b.delivered, room, constituentsStart);
  if (len <= 0)
    return refusals(fn === 'MEM_FRAG_TX' ? 'MEM_FRAG_RX' : FN)(NO_MEMORY, 'rx_too_small', `the ${rxBufferSize(caller)}-byte RX buffer cannot hold a fragment`);
  fillRx(state, caller, resp.subarray(b.delivered, b.delivered + len), share.sender, fn);
  b.delivered += len;
  b.retrieved = b.delivered >= resp.length ? 'yes' : 'partial';
  if (b.retrieved === 'yes') {
    b.response = undefined;
    if (share.type === 'donate') {
      // Ownership moves for good, with the access granted; nothing is left to reclaim.
      mapFor(caller, share, 'owned', b);
      state.shares.byHandle.delete(share.handle);
    }
  }
  if (fn === 'MEM_RETRIEVE_RESP') return { fn, totalLength: resp.length, fragmentLength: len };
  return { fn, handle: share.handle, fragmentLength: len, endpoint: 0 };
}

export function fragRx(ctx: CallContext, call: CallOf<'MEM_FRAG_RX'>): Reply {
  const { state, caller } = ctx;
  const rx = refusals('MEM_FRAG_RX');
  const badRx = (check: string, text: string) => rx(INVALID_PARAMETERS, check, text);
  if (call.endpoint !== 0) return badRx('endpoint', `w4 names endpoint ${hex(call.endpoint)}; only the hypervisor retrieving for a VM does`);
  if (rxBusy(caller)) return rx(BUSY, 'rx_busy', `the RX buffer of ${hex(caller.id)} is still full`);
  const share = state.shares.byHandle.get(call.handle);
  if (!share) return badRx('unknown_handle', `no memory transaction has handle ${hex(call.handle)}`);
  if (!share.complete) return badRx('not_fully_sent', `transaction ${hex(call.handle)} is not fully sent yet`);
  const b = share.borrowers.find((x) => x.id === caller.id);
  if (!b) return badRx('not_a_borrower', `${hex(caller.id)} is not a borrower of ${hex(call.handle)}`);
  if (b.retrieved !== 'partial')
    return badRx(
      'not_in_progress',
      `${hex(caller.id)} has ${b.retrieved === 'no' ? 'not started retrieving' : 'already retrieved all of'} ${hex(call.handle)}`,
    );
  if (call.fragmentOffset !== b.delivered)
    return badRx('fragment_offset', `fragment offset ${call.fragmentOffset} is not ${b.delivered}, the bytes delivered so far`);
  return deliverResponse(ctx, share, b, 'MEM_FRAG_TX');
}
