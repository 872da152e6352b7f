// An emulated VM: its attachment to an SPMC, its RAM window with a page allocator (the guest's
// alloc_pages_exact), and its vCPUs.

import { FFA_PAGE_SIZE } from '../proto/ffa/index.js';
import type { AttachOptions, Connector, Transport } from './transport/transport.js';

const PAGE = BigInt(FFA_PAGE_SIZE);

/** First-fit allocator of whole pages over [base, base + bytes). */
export class PageAllocator {
  /** Free runs as [firstPage, endPage) indices into the window. */
  private free: [number, number][];

  constructor(
    readonly base: bigint,
    bytes: bigint,
  ) {
    this.free = [[0, Number(bytes / PAGE)]];
  }

  /**
   * Base address of `count` contiguous pages, aligned to `alignPages` pages (a power of two, as
   * alloc_pages_exact aligns to the order it allocates), or undefined when none are left (-ENOMEM).
   */
  alloc(count: number, alignPages = 1): bigint | undefined {
    if (!Number.isInteger(count) || count < 1) throw new RangeError(`page count ${count}`);
    if (!Number.isInteger(alignPages) || alignPages < 1) throw new RangeError(`alignment ${alignPages}`);
    const align = BigInt(alignPages);
    const basePage = this.base / PAGE;
    for (let i = 0; i < this.free.length; i++) {
      const run = this.free[i]!;
      // The first page of the run whose absolute page number is a multiple of the alignment.
      const first = Number(((basePage + BigInt(run[0]) + align - 1n) / align) * align - basePage);
      if (first + count > run[1]) continue;
      const pieces: [number, number][] = [];
      if (first > run[0]) pieces.push([run[0], first]);
      if (first + count < run[1]) pieces.push([first + count, run[1]]);
      this.free.splice(i, 1, ...pieces);
      return this.base + BigInt(first) * PAGE;
    }
    return undefined;
  }

  release(address: bigint, count: number): void {
    const first = Number((address - this.base) / PAGE);
    this.free.push([first, first + count]);
    this.free.sort((a, b) => a[0] - b[0]);
    const merged: [number, number][] = [];
    for (const r of this.free) {
      const last = merged[merged.length - 1];
      if (last && last[1] >= r[0]) last[1] = Math.max(last[1], r[1]);
      else merged.push([r[0], r[1]]);
    }
    this.free = merged;
  }
}

export class EmulatedVm {
  readonly pages: PageAllocator;

  private constructor(
    readonly id: number,
    readonly name: string,
    readonly vcpuCount: number,
    readonly ramBase: bigint,
    readonly ramBytes: bigint,
    readonly transport: Transport,
  ) {
    this.pages = new PageAllocator(ramBase, ramBytes);
  }

  /** Attach; without `properties` the SPMC makes it the usual AArch64 guest that sends direct requests. */
  static async attach(connector: Connector, opts: AttachOptions = {}): Promise<EmulatedVm> {
    const a = await connector.attach(opts);
    return new EmulatedVm(a.endpointId, opts.name ?? `vm${a.endpointId}`, opts.vcpuCount ?? 1, a.ramBase, a.ramBytes, a.transport);
  }

  /** An endpoint that already exists (a built-in partition driven in process). */
  static fromAttachment(a: { endpointId: number; ramBase: bigint; ramBytes: bigint; transport: Transport }, name: string, vcpuCount: number): EmulatedVm {
    return new EmulatedVm(a.endpointId, name, vcpuCount, a.ramBase, a.ramBytes, a.transport);
  }

  read(address: bigint, length: number): Promise<Uint8Array> {
    return this.transport.readMemory(address, length);
  }

  write(address: bigint, data: Uint8Array): Promise<void> {
    return this.transport.writeMemory(address, data);
  }

  detach(): Promise<void> {
    return this.transport.detach();
  }
}
