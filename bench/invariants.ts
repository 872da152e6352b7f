// Invariants of the SPMC model, checked from outside after every step of a fuzz run (and usable by
// any test): the access tables against a per-page ownership model and the share table, the
// mailboxes, the handle table, blocked vCPUs and notification bindings. Each break is a sentence.
// (In bench/ so that bench/fuzz.ts can use it: bench imports nothing from test/.)

import { FFA_PAGE_SIZE, hex, isSecureId, HANDLE_HYPERVISOR_BIT } from '../proto/ffa/index.js';
import type { Endpoint, Vcpu, VcpuRef } from '../server/spmc/endpoint.js';
import type { AccessState, Permission } from '../server/spmc/memory.js';
import type { MemShare } from '../server/spmc/memory-share.js';
import type { Spmc } from '../server/spmc/spmc.js';

const PAGE = BigInt(FFA_PAGE_SIZE);
const OWNER_STATES: ReadonlySet<AccessState> = new Set<AccessState>(['owned', 'shared', 'mailbox-tx', 'mailbox-rx']);

interface PageAccess {
  ep: Endpoint;
  state: AccessState;
  perm: Permission;
}

/** What the checker remembers of a complete donation between two checks. */
interface DonationSeen {
  sender: Endpoint | undefined;
  borrower: Endpoint | undefined;
  pages: number[];
}

/**
 * The per-page model: who owns each page. An endpoint owns its RAM window from the moment it
 * appears (a reused window included); ownership moves only when a donation completes, seen as the
 * donation leaving the share table with its borrower owning the pages. Pages are frame numbers.
 * Only pages where something happened are looked at one by one: a page its window's owner alone
 * uses, in no transaction, is checked as part of its range.
 */
export class InvariantChecker {
  /** Pages whose owner is not their window's (donated), by frame number. */
  private readonly moved = new Map<number, Endpoint>();
  private readonly seen = new WeakSet<Endpoint>();
  private donations = new Map<bigint, DonationSeen>();
  /** VM ids attached at the last check: one that left must leave no binding behind. */
  private vmsLast = new Set<number>();
  /** How many checks ran, and the breaks found (each a sentence). */
  checks = 0;
  readonly breaks: string[] = [];

  constructor(private readonly spmc: Spmc) {}

  /** Check everything; returns the breaks of this check (also appended to `breaks`). */
  check(): string[] {
    this.checks++;
    const out: string[] = [];
    const state = this.spmc.state;
    const endpoints = [...state.endpoints.values()];
    const live = (ep: Endpoint | undefined): ep is Endpoint => !!ep && state.endpoints.get(ep.id) === ep;
    const inWindow = (ep: Endpoint, base: bigint, limit: bigint) => base >= ep.ram.base && limit <= ep.ram.base + ep.ram.size;

    // An endpoint that appeared since the last check owns all of its window.
    for (const ep of endpoints) {
      if (this.seen.has(ep)) continue;
      this.seen.add(ep);
      for (const pfn of pagesOf(ep.ram.base, ep.ram.base + ep.ram.size)) this.moved.delete(pfn);
    }
    const windowOwner = (pfn: number) => {
      const a = BigInt(pfn) * PAGE;
      return endpoints.find((ep) => a >= ep.ram.base && a < ep.ram.base + ep.ram.size);
    };
    const ownerOf = (pfn: number) => this.moved.get(pfn) ?? windowOwner(pfn);
    const accessOf = (pfn: number, ep: Endpoint): PageAccess | undefined => {
      const m = ep.access.modeOf(BigInt(pfn) * PAGE, BigInt(pfn + 1) * PAGE);
      return m && { ep, state: m.state, perm: m.perm };
    };

    // Donations that left the share table since the last check: completed, or reclaimed.
    for (const [handle, d] of this.donations) {
      if (state.shares.byHandle.has(handle)) continue;
      const toBorrower = live(d.borrower) && d.pages.every((p) => accessOf(p, d.borrower!)?.state === 'owned');
      if (toBorrower) for (const p of d.pages) this.moved.set(p, d.borrower!);
      else if (live(d.sender) && !d.pages.every((p) => accessOf(p, d.sender!)?.state === 'owned')) {
        out.push(`donation ${hex(handle)} left the share table, but neither its borrower nor its sender ${hex(d.sender.id)} owns its pages`);
      }
    }

    // The handle table.
    const inShare = new Map<number, MemShare>();
    for (const [key, s] of state.shares.byHandle) out.push(...checkShare(key, s, this.spmc, live));
    if (state.shares.size > state.limits.maxTransactions)
      out.push(`${state.shares.size} memory transactions alive, above the limit of ${state.limits.maxTransactions}`);
    for (const s of state.shares.byHandle.values()) {
      if (!s.complete) continue;
      for (const c of s.constituents) {
        for (const pfn of pagesOf(c.address, c.address + BigInt(c.pageCount) * PAGE)) {
          const other = inShare.get(pfn);
          if (other) out.push(`page ${pageHex(pfn)} is in two live transactions, ${hex(other.handle)} and ${hex(s.handle)}`);
          inShare.set(pfn, s);
        }
      }
    }

    // The pages to look at one by one: in a transaction, donated, mapped other than as the window
    // owner's own, or missing from their window owner's table.
    const pages = new Set<number>([...inShare.keys(), ...this.moved.keys()]);
    for (const ep of endpoints) {
      let at = ep.ram.base;
      const end = ep.ram.base + ep.ram.size;
      for (const r of ep.access.list()) {
        if (r.limit <= r.base) out.push(`${hex(ep.id)}: empty access range ${hex(r.base)}..${hex(r.limit)}`);
        if (r.state !== 'owned' || !inWindow(ep, r.base, r.limit)) for (const pfn of pagesOf(r.base, r.limit)) pages.add(pfn);
        if (r.base > at && at < end) for (const pfn of pagesOf(at, r.base < end ? r.base : end)) pages.add(pfn);
        if (r.limit > at) at = r.limit;
      }
      if (at < end) for (const pfn of pagesOf(at, end)) pages.add(pfn);
    }

    // Each page: one owner at most, the model's; borrowed only through a live transaction; the
    // owner's own access as the share table says.
    for (const pfn of pages) {
      const list = endpoints.map((ep) => accessOf(pfn, ep)).filter((a): a is PageAccess => !!a);
      const owner = ownerOf(pfn);
      const s = inShare.get(pfn);
      const owners = list.filter((a) => OWNER_STATES.has(a.state));
      if (owners.length > 1) out.push(`page ${pageHex(pfn)} has ${owners.length} owners: ${owners.map((a) => `${hex(a.ep.id)} (${a.state})`).join(', ')}`);
      for (const a of owners) {
        if (a.ep !== owner)
          out.push(
            `page ${pageHex(pfn)} is ${a.state} by ${hex(a.ep.id)}, but the model's owner is ${owner ? hex(owner.id) : 'nobody'}${live(owner) ? '' : ' (gone)'}`,
          );
      }
      for (const a of list) {
        if (a.state !== 'borrowed') continue;
        const b = s?.borrowers.find((x) => x.id === a.ep.id);
        if (!s || s.type === 'donate' || !b || b.retrieved === 'no') {
          out.push(`page ${pageHex(pfn)} is borrowed by ${hex(a.ep.id)} without a live transaction that lends it to ${hex(a.ep.id)}`);
        } else if (b.grant && b.grant.perm !== a.perm) {
          out.push(`page ${pageHex(pfn)}: ${hex(a.ep.id)} has ${a.perm} access, but was granted ${b.grant.perm} in ${hex(s.handle)}`);
        }
      }
      if (s && !s.senderGone) {
        const sender = state.endpoints.get(s.sender);
        if (sender && owner !== sender) out.push(`page ${pageHex(pfn)} was sent in ${hex(s.handle)} by ${hex(s.sender)}, who does not own it`);
        const mine = sender && list.find((a) => a.ep === sender);
        if (s.type === 'share' && mine?.state !== 'shared')
          out.push(`page ${pageHex(pfn)} is shared in ${hex(s.handle)}, but its owner ${hex(s.sender)} has it ${mine?.state ?? 'unmapped'}`);
        if (s.type !== 'share' && mine)
          out.push(
            `page ${pageHex(pfn)} is ${s.type === 'lend' ? 'lent' : 'donated'} in ${hex(s.handle)}, but its owner ${hex(s.sender)} still has it ${mine.state}`,
          );
      }
      if (s) {
        for (const b of s.borrowers) {
          const ep = state.endpoints.get(b.id);
          if (!ep) continue;
          const got = list.find((a) => a.ep === ep);
          const want = s.type !== 'donate' && b.retrieved !== 'no';
          if (want && got?.state !== 'borrowed') out.push(`${hex(b.id)} retrieved ${hex(s.handle)}, but has page ${pageHex(pfn)} ${got?.state ?? 'unmapped'}`);
          if (!want && got) out.push(`${hex(b.id)} holds no retrieval of ${hex(s.handle)}, but has page ${pageHex(pfn)} ${got.state}`);
        }
      } else if (live(owner) && !list.some((a) => a.ep === owner)) {
        out.push(`page ${pageHex(pfn)} is in no transaction, but its owner ${hex(owner.id)} cannot access it`);
      }
    }

    // A VM that left leaves no notification binding behind.
    const vmsNow = new Set(endpoints.filter((ep) => ep.kind === 'vm').map((ep) => ep.id));
    for (const id of this.vmsLast) {
      if (vmsNow.has(id)) continue;
      for (const ep of endpoints) {
        const i = ep.notifications.boundVm.indexOf(id);
        if (i >= 0) out.push(`${hex(ep.id)}: notification ${i} is still bound to ${hex(id)}, which left`);
      }
    }
    this.vmsLast = vmsNow;

    for (const ep of state.endpoints.values()) {
      out.push(...checkMailbox(ep, state.limits.rxtxMaxPages));
      out.push(...checkVcpus(ep, this.spmc));
      out.push(...checkNotifications(ep, this.spmc));
    }

    // Remember complete donations for the next check.
    this.donations = new Map();
    for (const s of state.shares.byHandle.values()) {
      if (s.type !== 'donate' || !s.complete) continue;
      const pages = s.constituents.flatMap((c) => pagesOf(c.address, c.address + BigInt(c.pageCount) * PAGE));
      this.donations.set(s.handle, { sender: state.endpoints.get(s.sender), borrower: state.endpoints.get(s.borrowers[0]!.id), pages });
    }
    this.breaks.push(...out);
    return out;
  }
}

/** Page frame numbers of [base, limit) (a plain array: this runs for every page at every step). */
function pagesOf(base: bigint, limit: bigint): number[] {
  const out: number[] = [];
  for (let p = Number(base / PAGE), end = Number((limit + PAGE - 1n) / PAGE); p < end; p++) out.push(p);
  return out;
}

const pageHex = (pfn: number) => hex(BigInt(pfn) * PAGE);

function checkShare(key: bigint, s: MemShare, spmc: Spmc, live: (ep: Endpoint | undefined) => boolean): string[] {
  const out: string[] = [];
  const state = spmc.state;
  const h = hex(s.handle);
  if (key !== s.handle) out.push(`handle table: key ${hex(key)} holds transaction ${h}`);
  if (s.handle === 0n || (s.handle & HANDLE_HYPERVISOR_BIT) !== 0n) out.push(`handle ${h} is 0 or has the hypervisor bit`);
  if (s.borrowers.length === 0) out.push(`${h} has no borrower`);
  if (s.borrowers.length > state.limits.maxBorrowers) out.push(`${h} has ${s.borrowers.length} borrowers, above ${state.limits.maxBorrowers}`);
  const ids = s.borrowers.map((b) => b.id);
  if (new Set(ids).size !== ids.length) out.push(`${h} lists a borrower twice`);
  if (ids.includes(s.sender)) out.push(`${h}: the sender ${hex(s.sender)} is also a borrower`);
  if (s.type === 'donate' && s.borrowers.length !== 1) out.push(`donation ${h} has ${s.borrowers.length} borrowers`);
  const sender = state.endpoints.get(s.sender);
  if (!s.complete) {
    if (!sender) out.push(`${h} is half sent by ${hex(s.sender)}, who is gone`);
    if (s.senderGone) out.push(`${h} is half sent and marked sender-gone`);
    if (s.borrowers.some((b) => b.retrieved !== 'no')) out.push(`${h} is half sent but retrieved`);
  } else {
    if (!s.mode) out.push(`${h} is complete without the sender's mode`);
    const total = s.constituents.reduce((n, c) => n + c.pageCount, 0);
    if (total !== s.compositePageCount) out.push(`${h} is complete with ${total} pages, the composite says ${s.compositePageCount}`);
    if (s.constituents.some((c) => c.address % PAGE !== 0n)) out.push(`${h} is complete with an unaligned constituent`);
  }
  if (s.senderGone && !s.borrowers.some((b) => b.retrieved !== 'no')) out.push(`${h}: its sender left and nobody holds it, yet it was not reclaimed`);
  if (!s.senderGone && !sender && s.complete && s.sender < 0x8000) out.push(`${h}: its sender ${hex(s.sender)} left, but it is not marked so`);
  for (const b of s.borrowers) {
    if (!live(state.endpoints.get(b.id)) && b.retrieved !== 'no') out.push(`${h}: borrower ${hex(b.id)} left but still holds a retrieval`);
    if (b.retrieved === 'partial' && (!b.response || b.delivered >= b.response.length))
      out.push(`${h}: ${hex(b.id)} is partway through a retrieval with nothing left to deliver`);
    if (b.retrieved === 'yes' && b.response) out.push(`${h}: ${hex(b.id)} retrieved it all but a response is still held`);
    if (b.retrieved === 'yes' && s.type === 'donate') out.push(`donation ${h} was retrieved but is still in the table`);
    if (b.retrieved !== 'no' && !b.grant) out.push(`${h}: ${hex(b.id)} retrieved it without a grant`);
  }
  return out;
}

function checkMailbox(ep: Endpoint, maxPages: number): string[] {
  const out: string[] = [];
  const id = hex(ep.id);
  const mb = ep.mailbox;
  const boxPages = ep.access.list().filter((r) => r.state === 'mailbox-tx' || r.state === 'mailbox-rx');
  if (!mb) {
    if (boxPages.length) out.push(`${id} has no mailbox, but ${boxPages.length} ranges are mapped as one`);
    return out;
  }
  if (mb.pageCount < 1 || mb.pageCount > maxPages) out.push(`${id}: mailbox of ${mb.pageCount} pages`);
  const size = BigInt(mb.pageCount) * PAGE;
  const tx = ep.access.modeOf(mb.tx, mb.tx + size);
  const rx = ep.access.modeOf(mb.rx, mb.rx + size);
  if (tx?.state !== 'mailbox-tx' || tx.perm !== 'rw') out.push(`${id}: TX ${hex(mb.tx)} is ${tx ? `${tx.state} ${tx.perm}` : 'not uniformly mapped'}`);
  if (rx?.state !== 'mailbox-rx' || rx.perm !== 'ro') out.push(`${id}: RX ${hex(mb.rx)} is ${rx ? `${rx.state} ${rx.perm}` : 'not uniformly mapped'}`);
  for (const r of boxPages) {
    const buf = r.state === 'mailbox-tx' ? mb.tx : mb.rx;
    if (r.base < buf || r.limit > buf + size) out.push(`${id}: ${r.state} range ${hex(r.base)}..${hex(r.limit)} lies outside the mailbox`);
  }
  if (mb.rxState === 'empty' && (mb.rxProducer !== undefined || mb.rxFunction !== undefined)) out.push(`${id}: RX is empty but names a producer`);
  if (mb.rxState === 'full' && mb.rxFunction === undefined) out.push(`${id}: RX is full with no function that filled it`);
  return out;
}

const refName = (r: VcpuRef) => `${hex(r.endpoint)} vCPU ${r.vcpu}`;
const same = (a: VcpuRef | undefined, ep: Endpoint, v: Vcpu) => !!a && a.endpoint === ep.id && a.vcpu === v.index;

function checkVcpus(ep: Endpoint, spmc: Spmc): string[] {
  const out: string[] = [];
  const at = (r: VcpuRef) => spmc.state.endpoints.get(r.endpoint)?.vcpus[r.vcpu];
  for (const v of ep.vcpus) {
    const me = `${hex(ep.id)} vCPU ${v.index}`;
    const parked = v.state === 'waiting' || v.state === 'blocked' || v.state === 'preempted';
    if (parked && (!v.pending || v.pending.settled)) out.push(`${me} is ${v.state} without an outstanding call`);
    if (!parked && v.pending) out.push(`${me} is ${v.state} but holds a pending FFA_${v.pending.fn}`);
    if (v.state === 'off' && ep.kind === 'vm') out.push(`${me}: a VM's vCPU is off`);
    if (v.state === 'blocked') {
      const on = v.blockedOn;
      const t = on && at(on);
      if (!on || !t) out.push(`${me} is blocked on ${on ? refName(on) : 'nothing'}, which does not exist`);
      else {
        // Someone must answer: the target serves its request, or runs on its cycles.
        const serves = t.handling && !t.handling.originGone && same(t.handling.origin, ep, v);
        if (!serves && !same(t.runBy, ep, v)) out.push(`${me} is blocked on ${refName(on)}, which neither serves its request nor runs for it`);
      }
    } else if (v.blockedOn) out.push(`${me} is ${v.state} but still blocked on ${refName(v.blockedOn)}`);
    if (v.state === 'preempted' && (!v.yieldedTo || !at(v.yieldedTo)))
      out.push(`${me} yielded to ${v.yieldedTo ? refName(v.yieldedTo) : 'nobody'}, who is not there`);
    if (v.state !== 'preempted' && v.yieldedTo) out.push(`${me} is ${v.state} but remembers yielding to ${refName(v.yieldedTo)}`);
    if (v.handling && !v.handling.originGone && !at(v.handling.origin)) out.push(`${me} serves a request from ${refName(v.handling.origin)}, who is gone`);
    if (v.runBy && !at(v.runBy)) out.push(`${me} was run by ${refName(v.runBy)}, who is gone`);
    if (v.handling && ep.kind === 'vm') out.push(`${me}: a VM serves a direct request`);
  }
  return out;
}

function checkNotifications(ep: Endpoint, spmc: Spmc): string[] {
  const out: string[] = [];
  const n = ep.notifications;
  for (const [world, bound] of [
    ['SP', n.boundSp],
    ['VM', n.boundVm],
  ] as const) {
    bound.forEach((sender, i) => {
      if (sender === undefined) return;
      if (isSecureId(sender) !== (world === 'SP')) out.push(`${hex(ep.id)}: notification ${i} of the ${world} bitmap is bound to ${hex(sender)}`);
      // Hafnium checks only that a sender of its own world exists (api_ffa_notification_update_bindings).
      if (world === 'SP' && !spmc.state.endpoints.has(sender) && !spmc.logicalPartitions().some((lp) => lp.id === sender))
        out.push(`${hex(ep.id)}: notification ${i} is bound to ${hex(sender)}, which does not exist`);
    });
  }
  if (!n.enabled && (n.boundSp.some((s) => s !== undefined) || n.boundVm.some((s) => s !== undefined)))
    out.push(`${hex(ep.id)} does not receive notifications, yet has bindings`);
  for (const [name, s] of [
    ['SP', n.fromSp],
    ['VM', n.fromVm],
  ] as const) {
    if ((s.retrieved & ~s.pending) !== 0n) out.push(`${hex(ep.id)}: ${name} notifications ${hex(s.retrieved & ~s.pending)} reported but not pending`);
  }
  return out;
}
