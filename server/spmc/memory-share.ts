// Memory transactions (Hafnium's ffa_memory.c share states): what each handle holds, the access
// changes of each step, reclaim, and what a leaving endpoint leaves behind.

import {
  type Constituent,
  type EndpointId,
  type FfaVersion,
  FFA_PAGE_SIZE,
  HANDLE_HYPERVISOR_BIT,
  type MemTransaction,
  type MemTransactionType,
} from '../../proto/ffa/index.js';
import type { Endpoint } from './endpoint.js';
import type { AccessRange } from './memory.js';
import type { SpmcState } from './state.js';

const PAGE = BigInt(FFA_PAGE_SIZE);

export interface Borrower {
  id: EndpointId;
  /** The permissions byte as stored for retrieval (a share's instruction access reads NX, as Hafnium stores it). */
  permissions: number;
  /** The sender's EMAD flags and implementation-defined value for this borrower, echoed in the response. */
  emadFlags: number;
  impdef: [bigint, bigint];
  /** Retrieval: none yet, started (response fragments still to fetch), or whole. */
  retrieved: 'no' | 'partial' | 'yes';
  /** The response descriptor being handed out, and how much of it has been. */
  response?: Uint8Array;
  delivered: number;
  /** What the borrower maps on the last fragment: its access and the memory's attributes. */
  grant?: Pick<AccessRange, 'perm' | 'attrs'>;
}

export interface MemShare {
  handle: bigint;
  type: MemTransactionType;
  sender: EndpointId;
  senderVersion: FfaVersion;
  header: MemTransaction;
  borrowers: Borrower[];
  /** Sending: the constituents so far (from every fragment), and how many the composite header announced. */
  constituents: Constituent[];
  expectedConstituents: number;
  compositePageCount: number;
  /** Where the constituents start in the sender's descriptor (FRAG_RX offsets count from here). */
  constituentsOffset: number;
  /** Some constituent's reserved word was not zero (refused only in strict mode). */
  constituentReserved: boolean;
  fragments: number;
  complete: boolean;
  /** The sender's mode of the memory when it was sent (Hafnium's sender_orig_mode), once complete. */
  mode?: Pick<AccessRange, 'perm' | 'attrs'>;
  /** The sender's ranges before the send, restored on reclaim. */
  saved: AccessRange[];
  /** The sender left: reclaim as soon as no borrower holds the memory. */
  senderGone: boolean;
}

export const rangeOf = (c: Constituent): [bigint, bigint] => [c.address, c.address + BigInt(c.pageCount) * PAGE];

/** The memory-sharing part of the SPMC state. */
export class MemShares {
  readonly byHandle = new Map<bigint, MemShare>();
  private seed: bigint;

  constructor(seed: bigint) {
    this.seed = seed;
  }

  /**
   * A fresh handle: 63 random bits (bit 63 clear: allocated by the SPMC), never 0, never live.
   * splitmix64 over a seed the server takes from a secure source, so one VM cannot guess another's.
   */
  newHandle(): bigint {
    for (;;) {
      this.seed = BigInt.asUintN(64, this.seed + 0x9e3779b97f4a7c15n);
      let z = this.seed;
      z = BigInt.asUintN(64, (z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n);
      z = BigInt.asUintN(64, (z ^ (z >> 27n)) * 0x94d049bb133111ebn);
      const h = (z ^ (z >> 31n)) & (HANDLE_HYPERVISOR_BIT - 1n);
      if (h !== 0n && !this.byHandle.has(h)) return h;
    }
  }

  get size(): number {
    return this.byHandle.size;
  }

  /** Transactions `sender` has alive (at most maxTransactions, so a walk is cheap). */
  countBySender(sender: number): number {
    let n = 0;
    for (const s of this.byHandle.values()) if (s.sender === sender) n++;
    return n;
  }
}

/** Give the sender's memory back as it was (a sent transaction only), and forget the transaction. */
export function reclaim(state: SpmcState, share: MemShare, clear: boolean): void {
  const owner = share.senderGone ? undefined : state.endpoints.get(share.sender);
  if (share.complete) {
    if (clear) for (const c of share.constituents) state.memory.zero(rangeOf(c)[0], rangeOf(c)[1] - rangeOf(c)[0]);
    owner?.access.update(share.saved.map((r) => ({ base: r.base, limit: r.limit, to: { state: r.state, perm: r.perm, attrs: r.attrs } })));
  }
  state.shares.byHandle.delete(share.handle);
  if (share.senderGone) state.reapWindows();
}

/** Take a borrower's access away (relinquish, explicit or because it left). */
export function dropBorrowerAccess(state: SpmcState, share: MemShare, b: Borrower): void {
  const ep = state.endpoints.get(b.id);
  if (ep && share.type !== 'donate') ep.access.update(share.constituents.map((c) => ({ base: rangeOf(c)[0], limit: rangeOf(c)[1] })));
  b.retrieved = 'no';
  b.response = undefined;
  b.delivered = 0;
  b.grant = undefined;
}

export const held = (share: MemShare): boolean => share.borrowers.some((b) => b.retrieved !== 'no');

/** What an endpoint that leaves still has in memory transactions is settled. */
export function releaseMemory(state: SpmcState, ep: Endpoint): void {
  for (const share of [...state.shares.byHandle.values()]) {
    for (const b of share.borrowers) if (b.id === ep.id && b.retrieved !== 'no') dropBorrowerAccess(state, share, b);
    if (share.sender === ep.id) {
      // A half-sent transaction is dropped. A VM's sent one is reclaimed once nobody holds it; a
      // remote partition stays in the manifest and keeps its transactions for when it returns.
      if (!share.complete) reclaim(state, share, false);
      else if (ep.kind === 'vm') {
        share.senderGone = true;
        if (!held(share)) reclaim(state, share, false);
      }
    } else if (share.senderGone && !held(share)) {
      reclaim(state, share, false);
    }
  }
}
