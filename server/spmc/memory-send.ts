// MEM_SHARE, MEM_LEND, MEM_DONATE and MEM_FRAG_TX (Hafnium's api_ffa_mem_send, ffa_memory_send,
// ffa_memory_send_continue): the descriptor's checks in Hafnium's order, then, once every
// constituent is in, the sender's memory (ffa_send_check_update, ffa_send_check_transition).

import {
  type CallOf,
  COMPOSITE_HEADER_SIZE,
  CONSTITUENT_SIZE,
  type Constituent,
  decodeCompositeHeader,
  decodeConstituents,
  decodeMemTransaction,
  FFA_ERRORS,
  FFA_PAGE_SIZE,
  FFA_VERSION_1_0,
  type FfaCall,
  ffaSuccess,
  hex,
  MEM_ATTR,
  MEM_FLAGS,
  MEM_PERM,
  type MemTransaction,
  type MemTransactionType,
  tryDecode,
  splitU64,
} from '../../proto/ffa/index.js';
import type { Endpoint, EndpointKind } from './endpoint.js';
import {
  attributesProblem,
  attributesSecurity,
  DATA_NAMES,
  dataAccess,
  INSTRUCTION_NAMES,
  instructionAccess,
  isRefusal,
  memType,
  memTypeName,
  pages,
  readTx,
  type Refusal,
  refusals,
  sanityCheck,
  strictly,
  txSize,
} from './memory-checks.js';
import { MEMORY_ATTRS, pageAligned, type AccessRange } from './memory.js';
import { type MemShare, rangeOf } from './memory-share.js';
import type { CallContext, Reply } from './state.js';

const { INVALID_PARAMETERS, DENIED, NO_MEMORY } = FFA_ERRORS;
const PAGE = BigInt(FFA_PAGE_SIZE);

export type SendFn = 'MEM_SHARE' | 'MEM_LEND' | 'MEM_DONATE';
const TYPE_OF = { MEM_SHARE: 'share', MEM_LEND: 'lend', MEM_DONATE: 'donate' } as const;

const handleReply = (handle: bigint): FfaCall => ffaSuccess(splitU64(handle));

/**
 * Who may send to whom when a partition takes part (Hafnium's SPMC ffa_memory_is_send_valid): lend
 * and donate go to SPs only; a share from an SP goes to SPs only; a VM may share with one SP, or
 * with several borrowers of both worlds. Between VMs alone the hypervisor allows everything.
 */
function sendAllowed(sender: EndpointKind, receiver: EndpointKind, type: MemTransactionType, multiple: boolean): boolean {
  if (type !== 'share') return receiver === 'sp';
  return sender === 'sp' ? receiver === 'sp' : multiple || receiver === 'sp';
}

/** The first fragment: everything but the constituents' memory (api_ffa_mem_send, ffa_memory_send_validate). */
function validateSendHeader(ctx: CallContext, fn: SendFn, frag: Uint8Array, total: number): { tx: MemTransaction } | Refusal {
  const { state, caller } = ctx;
  const type = TYPE_OF[fn];
  const no = refusals(fn);
  const bad = (check: string, text: string) => no(INVALID_PARAMETERS, check, text);
  const decoded = tryDecode(() => decodeMemTransaction(frag, caller.version));
  if (!decoded.ok) return bad('descriptor', decoded.why);
  const tx = decoded.value;
  const sane = sanityCheck(state, caller, fn, frag, tx, true);
  if (sane) return sane;

  // api_memory_region_check_flags
  if (type === 'share' && tx.flags & MEM_FLAGS.CLEAR) return bad('clear_on_share', 'the clear flag is set, but the owner keeps access to shared memory');
  if (tx.flags & ~(MEM_FLAGS.CLEAR | MEM_FLAGS.TIME_SLICE))
    return bad('flags', `flags ${hex(tx.flags >>> 0)} set bits other than clear (0) and time slicing (1)`);
  if (type === 'donate' && tx.receivers.length !== 1) return bad('donate_receivers', `a donate has exactly one borrower, not ${tx.receivers.length}`);
  const multiple = tx.receivers.length > 1;
  const receivers: Endpoint[] = [];
  for (const r of tx.receivers) {
    const ep = state.endpoints.get(r.receiver);
    if (!ep || ep === caller) return bad('receiver', `receiver ${hex(r.receiver)} ${ep ? 'is the sender itself' : 'does not exist'}`);
    receivers.push(ep);
  }
  const withPartition = caller.kind === 'sp' || receivers.some((ep) => ep.kind === 'sp');
  for (const ep of receivers) {
    if (withPartition && !sendAllowed(caller.kind, ep.kind, type, multiple)) {
      return no(
        DENIED,
        'receiver_world',
        `${caller.kind === 'sp' ? 'a partition' : 'a VM'} may not ${type} memory with ${ep.kind === 'sp' ? 'partition' : 'VM'} ${hex(ep.id)}${multiple ? ' among several borrowers' : ''} (Hafnium's SPMC: lend and donate go to partitions only)`,
      );
    }
  }

  // ffa_memory_send_validate
  const firstLeast = tx.receiversOffset + tx.emadSize + COMPOSITE_HEADER_SIZE;
  if (frag.length < firstLeast)
    return bad(
      'first_fragment_too_short',
      `the first fragment (${frag.length} bytes) must hold the header, an access descriptor and the composite header (${firstLeast})`,
    );
  if (frag.length % CONSTITUENT_SIZE !== 0 || total % CONSTITUENT_SIZE !== 0)
    return bad('length_alignment', `fragment length ${frag.length} or total length ${total} is not a multiple of 16`);
  if (tx.sender !== caller.id) return no(DENIED, 'sender', `the descriptor names sender ${hex(tx.sender)}, but the caller is ${hex(caller.id)}`);
  const receiversEnd = tx.receiversOffset + tx.receivers.length * tx.emadSize;
  if (receiversEnd + COMPOSITE_HEADER_SIZE + CONSTITUENT_SIZE > total)
    return bad('too_short', `total length ${total} leaves no room for a composite descriptor and a constituent after byte ${receiversEnd}`);
  const composite = tx.receivers[0]!.compositeOffset;
  if (composite < receiversEnd || composite % 16 !== 0 || composite > frag.length - COMPOSITE_HEADER_SIZE) {
    return bad(
      'composite_offset',
      `composite offset ${composite} is not 16-byte aligned between the access descriptors (${receiversEnd}) and the end of the first fragment`,
    );
  }
  const head = decodeCompositeHeader(frag, composite);
  const constituentsLength = total - composite - COMPOSITE_HEADER_SIZE;
  if (constituentsLength % CONSTITUENT_SIZE !== 0 || constituentsLength / CONSTITUENT_SIZE !== head.constituentCount) {
    return bad(
      'constituent_count',
      `the composite descriptor announces ${head.constituentCount} constituents, but the total length leaves room for ${constituentsLength / CONSTITUENT_SIZE}`,
    );
  }
  if (state.strict && head.reserved !== 0n)
    return bad('composite_reserved', strictly(`the composite descriptor's reserved bytes are ${hex(head.reserved)}`, 'FF-A v1.1 Table 10.13, reserved MBZ'));
  if (tx.flags & ~MEM_FLAGS.CLEAR) return bad('flags', `flags ${hex(tx.flags >>> 0)}: time slicing is not supported`);
  for (const [i, r] of tx.receivers.entries()) {
    if (tx.receivers.some((o, j) => j > i && o.receiver === r.receiver)) return bad('repeated_receiver', `receiver ${hex(r.receiver)} is listed twice`);
    const data = dataAccess(r.permissions);
    const instr = instructionAccess(r.permissions);
    if (data === MEM_PERM.DATA_MASK || instr === MEM_PERM.INSTRUCTION_MASK >> MEM_PERM.INSTRUCTION_SHIFT) {
      return bad('permissions_reserved', `receiver ${hex(r.receiver)}: permissions ${hex(r.permissions)} use a reserved data or instruction access value`);
    }
    if (state.strict && r.permissions & MEM_PERM.RESERVED_MASK) {
      return bad(
        'permissions_reserved',
        strictly(`receiver ${hex(r.receiver)}: permissions ${hex(r.permissions)} set bits [7:4]`, 'FF-A v1.1 Table 10.15, reserved MBZ'),
      );
    }
    if (instr !== MEM_PERM.INSTRUCTION_NOT_SPECIFIED)
      return bad('instruction_access', `receiver ${hex(r.receiver)}: the sender may not specify instruction access (${INSTRUCTION_NAMES[instr]})`);
    if (type === 'donate' ? data !== MEM_PERM.DATA_NOT_SPECIFIED : data === MEM_PERM.DATA_NOT_SPECIFIED) {
      return bad(
        'data_access',
        `receiver ${hex(r.receiver)}: data access ${DATA_NAMES[data]} in a ${type} (${type === 'donate' ? 'the borrower chooses it' : 'RO or RW must be given'})`,
      );
    }
    if (state.strict && r.flags !== 0)
      return bad(
        'emad_flags',
        strictly(`receiver ${hex(r.receiver)}: flags ${hex(r.flags)} in a ${type}`, 'FF-A v1.1 Table 10.15, flags MBZ in DONATE/LEND/SHARE'),
      );
  }
  const security = attributesSecurity(state, fn, tx);
  if (security) return security;
  if (type === 'donate' || (type === 'lend' && !multiple)) {
    if (memType(tx.attributes) !== MEM_ATTR.TYPE_NOT_SPECIFIED) {
      return bad(
        'memory_type',
        `memory type ${memTypeName(tx.attributes)} given by the sender of a ${multiple ? '' : 'single-borrower '}${type}; the borrower gives it`,
      );
    }
  } else {
    const problem = attributesProblem(tx.attributes);
    if (problem) return no(DENIED, 'attributes', `attributes ${hex(tx.attributes)}: ${problem}`);
  }
  return { tx };
}

export function memSend(ctx: CallContext, call: CallOf<SendFn>): Reply {
  const { state, caller } = ctx;
  const fn = call.fn;
  const no = refusals(fn);
  const { totalLength: total, fragmentLength: fragLen } = call;
  if (call.buffer.address !== 0n || call.buffer.pageCount !== 0) {
    return no(
      INVALID_PARAMETERS,
      'buffer',
      `descriptors travel in the TX buffer only; w3/w4 name a buffer at ${hex(call.buffer.address)} of ${pages(call.buffer.pageCount)}`,
    );
  }
  if (fragLen > total) return no(INVALID_PARAMETERS, 'fragment_length', `fragment length ${fragLen} is greater than the total length ${total}`);
  if (!caller.mailbox) return no(INVALID_PARAMETERS, 'no_tx_buffer', `${hex(caller.id)} has no TX buffer mapped`);
  const v10 = caller.version <= FFA_VERSION_1_0;
  if (fragLen > txSize(caller) || (v10 && fragLen > FFA_PAGE_SIZE)) {
    return no(
      INVALID_PARAMETERS,
      'fragment_too_long',
      `fragment length ${fragLen} exceeds ${v10 ? 'one page for a v1.0 sender' : `the ${txSize(caller)}-byte TX buffer`}`,
    );
  }
  // Where Hafnium allocates its copy of the descriptor (api_ffa_mem_send: "Failed to allocate
  // memory region copy", NO_MEMORY): this server holds at most maxDescriptorBytes of one.
  if (total > state.limits.maxDescriptorBytes)
    return no(
      NO_MEMORY,
      'descriptor_too_long',
      `total length ${total} is above this server's limit of ${state.limits.maxDescriptorBytes} bytes per descriptor`,
    );
  const frag = readTx(state, caller, fragLen);
  const checked = validateSendHeader(ctx, fn, frag, total);
  if (isRefusal(checked)) return checked;
  if (state.shares.size >= state.limits.maxTransactions)
    return no(NO_MEMORY, 'no_share_state', `${state.limits.maxTransactions} memory transactions are already in progress`);
  // Where Hafnium finds no free share state (allocate_share_state, NO_MEMORY), per sender here.
  const perSender = state.limits.maxTransactionsPerEndpoint;
  if (state.shares.countBySender(caller.id) >= perSender)
    return no(
      NO_MEMORY,
      'endpoint_share_states',
      `${hex(caller.id)} already has ${perSender} memory transactions in progress, this server's limit per endpoint`,
    );

  const { tx } = checked;
  const composite = tx.receivers[0]!.compositeOffset;
  const head = decodeCompositeHeader(frag, composite);
  const constituentsOffset = composite + COMPOSITE_HEADER_SIZE;
  const first = decodeConstituents(frag, constituentsOffset, (fragLen - constituentsOffset) / CONSTITUENT_SIZE);
  const type = TYPE_OF[fn];
  const share: MemShare = {
    handle: state.shares.newHandle(),
    type,
    sender: caller.id,
    senderVersion: caller.version,
    header: tx,
    borrowers: tx.receivers.map((r) => ({
      id: r.receiver,
      // Hafnium stores NX for a share's borrowers: that is what they are granted back.
      permissions: type === 'share' ? dataAccess(r.permissions) | (MEM_PERM.INSTRUCTION_NX << MEM_PERM.INSTRUCTION_SHIFT) : r.permissions,
      emadFlags: r.flags,
      impdef: r.impdef,
      retrieved: 'no',
      delivered: 0,
    })),
    constituents: first.constituents,
    expectedConstituents: head.constituentCount,
    compositePageCount: head.pageCount,
    constituentsOffset,
    constituentReserved: first.reservedNonZero,
    fragments: 1,
    complete: false,
    saved: [],
    senderGone: false,
  };
  state.shares.byHandle.set(share.handle, share);
  if (share.constituents.length < share.expectedConstituents) return fragRxReply(share);
  return completeSend(ctx, share, fn);
}

const fragRxReply = (share: MemShare): FfaCall => ({
  fn: 'MEM_FRAG_RX',
  handle: share.handle,
  fragmentOffset: share.constituentsOffset + share.constituents.length * CONSTITUENT_SIZE,
  endpoint: 0,
});

export function fragTx(ctx: CallContext, call: CallOf<'MEM_FRAG_TX'>): Reply {
  const { state, caller } = ctx;
  const no = refusals('MEM_FRAG_TX');
  const bad = (check: string, text: string) => no(INVALID_PARAMETERS, check, text);
  if (call.endpoint !== 0) return bad('endpoint', `w4 names sender ${hex(call.endpoint)}; only the hypervisor forwarding for a VM does`);
  if (!caller.mailbox) return bad('no_tx_buffer', `${hex(caller.id)} has no TX buffer mapped`);
  const len = call.fragmentLength;
  if (len > txSize(caller)) return bad('fragment_too_long', `fragment length ${len} exceeds the ${txSize(caller)}-byte TX buffer`);
  if (len < CONSTITUENT_SIZE || len % CONSTITUENT_SIZE !== 0)
    return bad('fragment_length', `fragment length ${len} is not a non-zero multiple of 16 (whole constituents)`);
  const share = state.shares.byHandle.get(call.handle);
  if (!share) return bad('unknown_handle', `no memory transaction has handle ${hex(call.handle)}`);
  if (share.sender !== caller.id) return bad('not_sender', `transaction ${hex(call.handle)} is being sent by ${hex(share.sender)}, not ${hex(caller.id)}`);
  if (share.complete) return bad('already_sent', `transaction ${hex(call.handle)} is already complete`);
  if (share.fragments >= state.limits.maxFragments) {
    state.shares.byHandle.delete(share.handle);
    return no(NO_MEMORY, 'too_many_fragments', `transaction ${hex(call.handle)} would need more than ${state.limits.maxFragments} fragments; it is dropped`);
  }
  const more = len / CONSTITUENT_SIZE;
  const length = share.constituentsOffset + (share.constituents.length + more) * CONSTITUENT_SIZE;
  if (length > state.limits.maxDescriptorBytes) {
    state.shares.byHandle.delete(share.handle);
    return no(
      NO_MEMORY,
      'descriptor_too_long',
      `transaction ${hex(call.handle)} would grow to ${length} bytes, above this server's limit of ${state.limits.maxDescriptorBytes} bytes per descriptor; it is dropped`,
    );
  }
  if (state.strict && share.constituents.length + more > share.expectedConstituents) {
    state.shares.byHandle.delete(share.handle);
    return bad(
      'past_total_length',
      strictly(
        `${more} more constituents make ${share.constituents.length + more}, past the ${share.expectedConstituents} the descriptor announced; it is dropped`,
        'FF-A v1.1 FFA_MEM_FRAG_TX, fragments add up to the total length in w1 of the first call',
      ),
    );
  }
  const added = decodeConstituents(readTx(state, caller, len), 0, more);
  share.constituents.push(...added.constituents);
  share.constituentReserved ||= added.reservedNonZero;
  share.fragments++;
  // Hafnium completes when the count matches exactly; past it, the transaction never completes.
  if (share.constituents.length !== share.expectedConstituents) return fragRxReply(share);
  return completeSend(ctx, share, 'MEM_FRAG_TX');
}

/** Hafnium's overlap test of two constituents (ffa_memory_check_overlap: inclusive ends). */
function overlapping(cs: readonly Constituent[]): [Constituent, Constituent] | undefined {
  // Zero-page constituents overlap nothing (they are refused below as unmapped).
  const sorted = cs.filter((c) => c.pageCount > 0).sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1]!;
    if (prev.address + BigInt(prev.pageCount) * PAGE - 1n >= sorted[i]!.address) return [prev, sorted[i]!];
  }
  return undefined;
}

const describe = (c: Constituent) => `${hex(c.address)} (${pages(c.pageCount)})`;

/** The sender's memory (ffa_send_check_update, then ffa_send_check_transition), on the last fragment. */
function checkSenderMemory(ctx: CallContext, share: MemShare, fn: string): Pick<AccessRange, 'perm' | 'attrs'> | Refusal {
  const { state, caller } = ctx;
  const no = refusals(fn);
  const bad = (check: string, text: string) => no(INVALID_PARAMETERS, check, text);
  const cs = share.constituents;
  if (state.strict && share.constituentReserved)
    return bad('constituent_reserved', strictly("a constituent's reserved word is not zero", 'FF-A v1.1 Table 10.14, reserved MBZ'));
  const both = overlapping(cs);
  if (both) return bad('constituents_overlap', `constituents ${describe(both[0])} and ${describe(both[1])} overlap`);
  const total = cs.reduce((n, c) => n + c.pageCount, 0);
  if (total !== share.compositePageCount)
    return bad('page_count', `the constituents hold ${pages(total)}, the composite descriptor says ${share.compositePageCount}`);
  // constituents_get_mode
  if (cs.length === 0) return bad('no_constituents', 'the descriptor has no constituents');
  let mode: AccessRange | undefined;
  for (const c of cs) {
    if (!pageAligned(c.address)) return bad('constituent_unaligned', `constituent ${describe(c)} is not 4 KiB aligned`);
    const m = caller.access.modeOf(...rangeOf(c));
    if (!m) return no(DENIED, 'mode_inconsistent', `constituent ${describe(c)} is not mapped for ${hex(caller.id)} with one mode throughout`);
    if (mode && (m.state !== mode.state || m.perm !== mode.perm || m.attrs !== mode.attrs)) {
      return no(DENIED, 'mode_differs', `constituent ${describe(c)} is ${modeName(m)} but ${describe(cs[0]!)} is ${modeName(mode)}`);
    }
    mode ??= m;
  }
  // ffa_send_check_transition
  const device = (mode!.attrs & MEMORY_ATTRS.DEVICE) !== 0;
  if (memType(share.header.attributes) === MEM_ATTR.TYPE_NORMAL && device)
    return no(DENIED, 'device_as_normal', 'device memory may not be sent as Normal memory');
  if (device && !(share.type === 'lend' && share.borrowers.length === 1)) {
    return no(
      DENIED,
      'device_memory',
      `device memory may only be lent to a single borrower, not ${share.type === 'lend' ? 'lent to several' : `${share.type}d`}`,
    );
  }
  if (mode!.state !== 'owned')
    return no(DENIED, 'not_owner', `${hex(caller.id)} does not own ${describe(cs[0]!)} exclusively (it is ${STATE_NAMES[mode!.state]})`);
  if (mode!.perm === 'ro' && share.header.flags & MEM_FLAGS.CLEAR)
    return no(DENIED, 'clear_read_only', 'the memory is read-only for the sender, so it cannot be cleared');
  for (const b of share.borrowers) {
    if (dataAccess(b.permissions) === MEM_PERM.DATA_RW && mode!.perm === 'ro') {
      return no(DENIED, 'permissions_exceed', `receiver ${hex(b.id)} would get RW access to memory that is read-only for the sender`);
    }
  }
  return { perm: mode!.perm, attrs: mode!.attrs };
}

const STATE_NAMES = { owned: 'owned', shared: 'already shared', borrowed: 'borrowed', 'mailbox-tx': 'its TX buffer', 'mailbox-rx': 'its RX buffer' } as const;
const modeName = (m: AccessRange) =>
  `${STATE_NAMES[m.state]} ${m.perm.toUpperCase()}${m.attrs & MEMORY_ATTRS.DEVICE ? ' device' : ''}${m.attrs & MEMORY_ATTRS.EXECUTE ? ' executable' : ''}${m.attrs & MEMORY_ATTRS.NON_SECURE ? ' non-secure' : ''} memory`;

/** On the last fragment: check the sender's memory, then take it out of the sender's exclusive use. */
function completeSend(ctx: CallContext, share: MemShare, fn: string): Reply {
  const { state, caller } = ctx;
  const mode = checkSenderMemory(ctx, share, fn);
  if (isRefusal(mode)) {
    state.shares.byHandle.delete(share.handle);
    return mode;
  }
  share.mode = mode;
  share.saved = share.constituents.map((c) => ({ base: rangeOf(c)[0], limit: rangeOf(c)[1], state: 'owned' as const, ...mode }));
  const to = share.type === 'share' ? { state: 'shared' as const, ...mode } : undefined;
  caller.access.update(share.saved.map((r) => ({ base: r.base, limit: r.limit, to })));
  if (share.header.flags & MEM_FLAGS.CLEAR) for (const r of share.saved) state.memory.zero(r.base, r.limit - r.base);
  share.complete = true;
  return handleReply(share.handle);
}
