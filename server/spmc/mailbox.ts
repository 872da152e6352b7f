// The Rx/Tx mailbox: RXTX_MAP, RXTX_UNMAP, RX_RELEASE, and the producer side every ABI that
// writes a caller's RX buffer goes through.

import { FFA_ERRORS, FFA_PAGE_SIZE, type EndpointId, ffaSuccess, hex, rxtxMinSizeBytes } from '../../proto/ffa/index.js';
import type { Endpoint } from './endpoint.js';
import { pageAligned } from './memory.js';
import { type AbiTable, refuse, type SpmcState } from './state.js';

const PAGE = BigInt(FFA_PAGE_SIZE);
const { INVALID_PARAMETERS, DENIED } = FFA_ERRORS;

export const rxBufferSize = (ep: Endpoint): number => (ep.mailbox ? ep.mailbox.pageCount * FFA_PAGE_SIZE : 0);

/** A producer finds RX busy when it is unmapped or still FULL. */
export const rxBusy = (ep: Endpoint): boolean => !ep.mailbox || ep.mailbox.rxState !== 'empty' || ep.rxHeld === true;

/** Write `data` to an EMPTY RX buffer, zero its tail, and hand it to the endpoint (FULL). */
export function fillRx(state: SpmcState, ep: Endpoint, data: Uint8Array, producer: EndpointId, fn: string): void {
  const mb = ep.mailbox;
  if (!mb || mb.rxState !== 'empty') throw new Error(`RX of ${hex(ep.id)} is not producer-owned`);
  const size = rxBufferSize(ep);
  if (data.length > size) throw new Error('RX overflow');
  state.memory.write(mb.rx, data);
  state.memory.zero(mb.rx + BigInt(data.length), BigInt(size - data.length));
  mb.rxState = 'full';
  mb.rxProducer = producer;
  mb.rxFunction = fn;
}

/**
 * The consumer gives RX back (RX_RELEASE, or MSG_WAIT's implicit release). A message whose
 * RX-full framework notification is still pending stays until NOTIFICATION_GET collects it.
 */
export function releaseRx(ep: Endpoint): boolean {
  const mb = ep.mailbox;
  if (!mb || mb.rxState === 'empty') return false;
  if (ep.notifications.framework.pending !== 0n) return false;
  mb.rxState = 'empty';
  mb.rxProducer = undefined;
  mb.rxFunction = undefined;
  return true;
}

/** Give the mailbox pages back to the endpoint's exclusive use. */
export function unmapMailbox(ep: Endpoint): void {
  const mb = ep.mailbox;
  if (!mb) return;
  const size = BigInt(mb.pageCount) * PAGE;
  ep.access.assign(mb.tx, mb.tx + size, 'owned', 'rw');
  ep.access.assign(mb.rx, mb.rx + size, 'owned', 'rw');
  ep.mailbox = undefined;
}

const alreadyMapped = (caller: Endpoint) => refuse(DENIED, 'rxtx_map.already_mapped', `RXTX_MAP: ${hex(caller.id)} already has RX/TX buffers mapped`);

export const mailboxAbis: AbiTable = {
  RXTX_MAP: {
    // A second map is DENIED before its arguments are looked at (Hafnium; SpmcProfile.rxtxDeniedFirst).
    onInvalid: ({ state, caller }) => (caller.mailbox && state.profile.rxtxDeniedFirst ? alreadyMapped(caller) : undefined),
    handle({ state, caller }, { tx, rx, pageCount }) {
      const { profile } = state;
      if (caller.mailbox && profile.rxtxDeniedFirst) return alreadyMapped(caller);
      if (pageCount < 1 || pageCount > state.limits.rxtxMaxPages) {
        return refuse(INVALID_PARAMETERS, 'rxtx_map.page_count', `RXTX_MAP: page count ${pageCount} is not 1..${state.limits.rxtxMaxPages}`);
      }
      if (!pageAligned(tx) || !pageAligned(rx)) {
        return refuse(INVALID_PARAMETERS, 'rxtx_map.unaligned', `RXTX_MAP: TX ${hex(tx)} or RX ${hex(rx)} is not 4 KiB aligned`);
      }
      // A minimum above 4 KiB (FEATURES(RXTX_MAP) w2[1:0]) is the minimum size and the alignment.
      const min = rxtxMinSizeBytes(profile.rxtxMinSize) ?? FFA_PAGE_SIZE;
      if (min > FFA_PAGE_SIZE) {
        if (pageCount * FFA_PAGE_SIZE < min) {
          return refuse(INVALID_PARAMETERS, 'rxtx_map.below_minimum', `RXTX_MAP: ${pageCount} pages is below this SPMC's minimum buffer of ${min} bytes`);
        }
        if (tx % BigInt(min) !== 0n || rx % BigInt(min) !== 0n) {
          return refuse(INVALID_PARAMETERS, 'rxtx_map.min_alignment', `RXTX_MAP: TX ${hex(tx)} or RX ${hex(rx)} is not aligned to the ${min}-byte minimum`);
        }
      }
      if (caller.mailbox) return alreadyMapped(caller);
      const size = BigInt(pageCount) * PAGE;
      if (tx < rx + size && rx < tx + size) {
        return refuse(INVALID_PARAMETERS, 'rxtx_map.overlap', `RXTX_MAP: TX ${hex(tx)} and RX ${hex(rx)} overlap (${pageCount} pages each)`);
      }
      // Both buffers must be the caller's own, exclusively: TX read-write, RX at least readable.
      if (!caller.access.allows(tx, tx + size, 'rw', ['owned'])) {
        return refuse(
          INVALID_PARAMETERS,
          'rxtx_map.tx_not_owned',
          `RXTX_MAP: TX ${hex(tx)}+${hex(size)} is not memory ${hex(caller.id)} owns exclusively read-write`,
        );
      }
      if (!caller.access.allows(rx, rx + size, 'ro', ['owned'])) {
        return refuse(INVALID_PARAMETERS, 'rxtx_map.rx_not_owned', `RXTX_MAP: RX ${hex(rx)}+${hex(size)} is not memory ${hex(caller.id)} owns exclusively`);
      }
      caller.access.assign(tx, tx + size, 'mailbox-tx', 'rw');
      caller.access.assign(rx, rx + size, 'mailbox-rx', 'ro');
      caller.mailbox = { tx, rx, pageCount, rxState: 'empty' };
      return ffaSuccess();
    },
  },
  RXTX_UNMAP: {
    handle({ caller }, { id }) {
      // w1[31:16] names a VM only when the hypervisor unmaps for it; every caller here is virtual.
      if (id !== 0) return refuse(INVALID_PARAMETERS, 'rxtx_unmap.id', `RXTX_UNMAP: w1 names endpoint ${hex(id)}; a virtual caller passes 0`);
      if (!caller.mailbox) return refuse(INVALID_PARAMETERS, 'rxtx_unmap.not_mapped', `RXTX_UNMAP: ${hex(caller.id)} has no RX/TX buffers mapped`);
      unmapMailbox(caller);
      return ffaSuccess();
    },
  },
  RX_RELEASE: {
    handle({ caller }, { vmId }) {
      if (vmId !== 0) return refuse(INVALID_PARAMETERS, 'rx_release.id', `RX_RELEASE: w1 names endpoint ${hex(vmId)}; a virtual caller passes 0`);
      if (releaseRx(caller)) return ffaSuccess();
      const mb = caller.mailbox;
      if (!mb) return refuse(DENIED, 'rx_release.not_mapped', `RX_RELEASE: ${hex(caller.id)} has no RX buffer mapped`);
      if (mb.rxState === 'empty')
        return refuse(DENIED, 'rx_release.not_owned', `RX_RELEASE: the RX buffer of ${hex(caller.id)} is not full (nothing to release)`);
      return refuse(
        DENIED,
        'rx_release.framework_pending',
        `RX_RELEASE: ${hex(caller.id)} must collect its RX-buffer-full framework notification with NOTIFICATION_GET first`,
      );
    },
  },
};
