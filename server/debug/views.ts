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
