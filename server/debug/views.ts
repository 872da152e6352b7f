// Read-only JSON views of the SPMC state, for the HTTP API, the Debug service and the CLI. Every
// number an FF-A engineer reads in hex (addresses, handles, bitmaps) is a hex string.

import { type EndpointId, FFA_PAGE_SIZE, formatUuid, formatVersion, hex } from '../../proto/ffa/index.js';
import type { Endpoint } from '../spmc/endpoint.js';
import type { MemShare } from '../spmc/memory-share.js';
import type { Spmc } from '../spmc/spmc.js';

export function endpointSummary(ep: Endpoint) {
  return {
    id: ep.id,
    idHex: hex(ep.id),
    name: ep.name,
    kind: ep.kind,
    version: formatVersion(ep.version),
    properties: hex(ep.properties),
    vcpuCount: ep.vcpuCount,
    vcpus: ep.vcpus.map((v) => v.state),
    rxState: ep.mailbox ? ep.mailbox.rxState : 'unmapped',
    pendingNotifications: ep.notifications.fromSp.pending !== 0n || ep.notifications.fromVm.pending !== 0n || ep.notifications.framework.pending !== 0n,
  };
}

export function endpointDetail(ep: Endpoint) {
  const n = ep.notifications;
  const mb = ep.mailbox;
  const bound = (list: (EndpointId | undefined)[]) => list.flatMap((sender, id) => (sender === undefined ? [] : [{ id, sender: hex(sender) }]));
  return {
    ...endpointSummary(ep),
    uuids: ep.uuids.map(formatUuid),
    versionLocked: ep.versionLocked,
    ram: { base: hex(ep.ram.base), size: hex(ep.ram.size) },
    vcpus: ep.vcpus.map((v) => ({
      index: v.index,
      state: v.state,
      blockedIn: v.pending ? `FFA_${v.pending.fn}` : undefined,
      blockedOn: v.blockedOn ? { endpoint: hex(v.blockedOn.endpoint), vcpu: v.blockedOn.vcpu } : undefined,
      handling: v.handling
        ? { from: hex(v.handling.origin.endpoint), vcpu: v.handling.origin.vcpu, kind: v.handling.kind, chain: v.handling.chain.map(hex) }
        : undefined,
    })),
    mailbox: mb
      ? {
          tx: hex(mb.tx),
          rx: hex(mb.rx),
          pageCount: mb.pageCount,
          bytes: mb.pageCount * FFA_PAGE_SIZE,
          rxState: mb.rxState,
          rxOwner: mb.rxState === 'full' ? 'endpoint' : 'spmc',
          rxProducer: mb.rxProducer !== undefined ? hex(mb.rxProducer) : undefined,
          rxFunction: mb.rxFunction ? `FFA_${mb.rxFunction}` : undefined,
          // A fault rule holds it full: producers find it busy.
          rxHeld: ep.rxHeld ? true : undefined,
        }
      : null,
    notifications: {
      enabled: n.enabled,
      pendingFromSp: hex(n.fromSp.pending),
      pendingFromVm: hex(n.fromVm.pending),
      pendingFramework: hex(n.framework.pending),
      boundToSp: bound(n.boundSp),
      boundToVm: bound(n.boundVm),
      npiLatched: n.npiPending,
    },
    console: ep.kind === 'sp' ? { lines: ep.console.lines.slice(-50), partial: ep.console.partial } : undefined,
  };
}

export function transactionView(s: MemShare) {
  return {
    handle: hex(s.handle),
    type: s.type,
    sender: hex(s.sender),
    state: s.complete ? 'sent' : `sending (${s.constituents.length}/${s.expectedConstituents} constituents)`,
    flags: hex(s.header.flags),
    tag: hex(s.header.tag),
    attributes: hex(s.header.attributes),
    borrowers: s.borrowers.map((b) => ({ id: hex(b.id), permissions: hex(b.permissions), retrieved: b.retrieved, granted: b.grant?.perm ?? null })),
    ranges: s.constituents.map((c) => ({ address: hex(c.address), pageCount: c.pageCount })),
    senderGone: s.senderGone,
  };
}

export function accessView(ep: Endpoint) {
  return {
    endpoint: hex(ep.id),
    name: ep.name,
    ranges: ep.access.list().map((r) => ({ base: hex(r.base), limit: hex(r.limit), state: r.state, perm: r.perm })),
  };
}

/** Everything at once: the Debug service's snapshot and `remote-spmc state`. */
export function stateSnapshot(spmc: Spmc) {
  const eps = spmc.state.orderedEndpoints();
  return {
    endpoints: eps.map(endpointDetail),
    transactions: [...spmc.state.shares.byHandle.values()].map(transactionView),
    faults: spmc.state.faults.slice(-20).map((f) => ({ ...f, address: hex(f.address), endpoint: hex(f.endpoint) })),
    droppedAnswers: spmc.state.dropped,
  };
}

/** What a memory-map range is, for the endpoint that sees it. */
export type MapState = 'owned' | 'shared-out' | 'lent-out' | 'donated-out' | 'borrowed-ro' | 'borrowed-rw' | 'tx' | 'rx';

const ACCESS_TO_MAP: Record<string, (perm: string) => MapState> = {
  owned: () => 'owned',
  shared: () => 'shared-out',
  borrowed: (perm) => (perm === 'rw' ? 'borrowed-rw' : 'borrowed-ro'),
  'mailbox-tx': () => 'tx',
  'mailbox-rx': () => 'rx',
};

/**
 * The memory map of every endpoint: its RAM window and ranges coloured by state (lent and donated
 * ranges are gaps in the owner's access table, so they come from the live transactions), each
 * range sent or borrowed under a handle naming it, and the endpoint's recent faults.
 */
export function memoryMapView(spmc: Spmc) {
  const shares = [...spmc.state.shares.byHandle.values()];
  const spans = (s: MemShare) => s.constituents.map((c) => [c.address, c.address + BigInt(c.pageCount) * BigInt(FFA_PAGE_SIZE)] as const);
  const handleOf = (base: bigint, limit: bigint, who: (s: MemShare) => boolean) =>
    shares.find((s) => who(s) && spans(s).some(([b, l]) => base < l && b < limit))?.handle;
  return {
    endpoints: spmc.state.orderedEndpoints().map((ep) => {
      const ranges: { base: string; limit: string; state: MapState; perm: string; handle?: string }[] = ep.access.list().map((r) => {
        const state = ACCESS_TO_MAP[r.state]?.(r.perm) ?? 'owned';
        const handle =
          state === 'shared-out'
            ? handleOf(r.base, r.limit, (s) => s.sender === ep.id)
            : state.startsWith('borrowed')
              ? handleOf(r.base, r.limit, (s) => s.borrowers.some((b) => b.id === ep.id))
              : undefined;
        return { base: hex(r.base), limit: hex(r.limit), state, perm: r.perm, ...(handle !== undefined ? { handle: hex(handle) } : {}) };
      });
      for (const s of shares) {
        if (s.sender !== ep.id || s.type === 'share') continue;
        for (const [base, limit] of spans(s))
          ranges.push({ base: hex(base), limit: hex(limit), state: s.type === 'lend' ? 'lent-out' : 'donated-out', perm: 'none', handle: hex(s.handle) });
      }
      ranges.sort((a, b) => (BigInt(a.base) < BigInt(b.base) ? -1 : 1));
      return {
        id: ep.id,
        idHex: hex(ep.id),
        name: ep.name,
        kind: ep.kind,
        ram: { base: hex(ep.ram.base), limit: hex(ep.ram.base + ep.ram.size) },
        ranges,
        faults: spmc.state.faults.filter((f) => f.endpoint === ep.id).map((f) => ({ seq: f.seq, address: hex(f.address), length: f.length, access: f.access })),
      };
    }),
    transactions: shares.map(transactionView),
  };
}
