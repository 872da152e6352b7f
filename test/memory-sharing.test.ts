// Memory sharing against the SPMC model: each check of the reference (Part B §3.4-§3.8) as its own
// case, then whole transactions through the driver.

import t from 'tap';
import {
  type Constituent,
  encodeMemRelinquish,
  encodeMemTransaction,
  FFA_ERRORS,
  FFA_PAGE_SIZE,
  FFA_VERSION_1_0,
  FFA_VERSION_1_1,
  FFA_VERSION_1_2,
  type FfaCall,
  type FfaVersion,
  joinU64,
  MEM_ATTR_NORMAL_WB_IS,
  MEM_FLAGS,
  MEM_PERM,
  type MemDescriptorInit,
  PARTITION_PROPERTIES as P,
} from '../proto/ffa/index.js';
import { parseManifest, DEFAULT_MANIFEST_YAML } from '../server/manifest.js';
import { errorOf, RawVm, startedSpmc } from './helpers.js';
import type { Spmc } from '../server/spmc/spmc.js';

const { INVALID_PARAMETERS, DENIED, BUSY, NO_MEMORY } = FFA_ERRORS;
const RW = MEM_PERM.DATA_RW;
const RO = MEM_PERM.DATA_RO;
const NX = MEM_PERM.INSTRUCTION_NX << MEM_PERM.INSTRUCTION_SHIFT;
const SP1 = 0x8001;

/** A VM with a one-page mailbox at the start of its RAM; regions start 1 MiB in. */
class MemVm extends RawVm {
  static make(spmc: Spmc, version: FfaVersion = FFA_VERSION_1_2, properties = P.AARCH64_EXEC): MemVm {
    const base = RawVm.attach(spmc, { properties }, version);
    const vm = new MemVm(spmc, base.id, version);
    vm.mapMailbox(1);
    return vm;
  }
  region(page: number, pageCount = 1): Constituent {
    return { address: this.ramBase + 0x100000n + BigInt(page) * BigInt(FFA_PAGE_SIZE), pageCount };
  }
  desc(d: Partial<MemDescriptorInit> & Pick<MemDescriptorInit, 'receivers'>): Uint8Array {
    return encodeMemTransaction({ sender: this.id, attributes: MEM_ATTR_NORMAL_WB_IS, flags: 0, constituents: [this.region(0)], ...d }, this.version);
  }
  /** Put `bytes` in TX and send them as `fn`. */
  send(
    fn: 'MEM_SHARE' | 'MEM_LEND' | 'MEM_DONATE' | 'MEM_RETRIEVE_REQ',
    bytes: Uint8Array,
    o: { total?: number; frag?: number; address?: bigint; pages?: number } = {},
  ): FfaCall {
    this.spmc.writeMemory(this.id, this.ramBase, bytes);
    const total = o.total ?? bytes.length;
    return this.call({ fn, width: 64, totalLength: total, fragmentLength: o.frag ?? total, buffer: { address: o.address ?? 0n, pageCount: o.pages ?? 0 } });
  }
  share(to: number, extra: Partial<MemDescriptorInit> = {}): bigint {
    return handleOf(this.send('MEM_SHARE', this.desc({ receivers: [{ receiver: to, permissions: RW }], ...extra })));
  }
  retrieveDesc(handle: bigint, sender: number, d: Partial<MemDescriptorInit> = {}): Uint8Array {
    return encodeMemTransaction({ sender, attributes: 0, flags: 0, handle, receivers: [{ receiver: this.id, permissions: RW }], ...d }, this.version);
  }
  retrieve(handle: bigint, sender: number, d: Partial<MemDescriptorInit> = {}): FfaCall {
    return this.send('MEM_RETRIEVE_REQ', this.retrieveDesc(handle, sender, d));
  }
  relinquish(handle: bigint, endpoints = [this.id], flags = 0): FfaCall {
    this.spmc.writeMemory(this.id, this.ramBase, encodeMemRelinquish({ handle, flags, endpoints }));
    return this.call({ fn: 'MEM_RELINQUISH' });
  }
  reclaim(handle: bigint, flags = 0): FfaCall {
    return this.call({ fn: 'MEM_RECLAIM', handle, flags });
  }
  releaseRx(): void {
    this.call({ fn: 'RX_RELEASE', vmId: 0 });
  }
}

function handleOf(c: FfaCall): bigint {
  if (c.fn !== 'SUCCESS') throw new Error(`expected SUCCESS, got ${JSON.stringify(c, (_k, v) => (typeof v === 'bigint' ? v.toString(16) : v))}`);
  return joinU64(c.args[0]!, c.args[1]!);
}

async function world(limits = {}) {
  const spmc = await startedSpmc(limits);
  const a = MemVm.make(spmc);
  const b = MemVm.make(spmc);
  return { spmc, a, b };
}

const patch = (bytes: Uint8Array, offset: number, value: number, size = 1) => {
  const out = bytes.slice();
  const dv = new DataView(out.buffer);
  if (size === 1) dv.setUint8(offset, value);
  else if (size === 2) dv.setUint16(offset, value, true);
  else dv.setUint32(offset, value, true);
  return out;
};

t.test('MEM_SHARE/LEND/DONATE: API checks', async (t) => {
  const { spmc, a, b } = await world();
  const d = a.desc({ receivers: [{ receiver: b.id, permissions: RW }] });
  t.equal(errorOf(a.send('MEM_SHARE', d, { address: 0x1000n, pages: 1 })), INVALID_PARAMETERS, 'a buffer in w3/w4');
  t.equal(errorOf(a.send('MEM_SHARE', d, { frag: d.length + 16 })), INVALID_PARAMETERS, 'fragment longer than the total');
  t.equal(errorOf(a.send('MEM_SHARE', d, { total: 8192, frag: 8192 })), INVALID_PARAMETERS, 'fragment longer than TX');
  const nomap = RawVm.attach(spmc, {});
  t.equal(
    errorOf(nomap.call({ fn: 'MEM_SHARE', width: 64, totalLength: d.length, fragmentLength: d.length, buffer: { address: 0n, pageCount: 0 } })),
    INVALID_PARAMETERS,
    'no TX buffer',
  );
});

t.test('MEM_SHARE/LEND/DONATE: descriptor checks', async (t) => {
  const { spmc, a, b } = await world({ maxBorrowers: 2 });
  const c = MemVm.make(spmc);
  const one = [{ receiver: b.id, permissions: RW }];
  const d = a.desc({ receivers: one });
  const cases: [string, 'MEM_SHARE' | 'MEM_LEND' | 'MEM_DONATE', Uint8Array, number][] = [
    ['reserved header bytes', 'MEM_SHARE', patch(d, 40, 1), INVALID_PARAMETERS],
    ['EMAD size 24', 'MEM_SHARE', patch(d, 24, 24, 4), INVALID_PARAMETERS],
    ['receivers offset below 48', 'MEM_SHARE', patch(d, 32, 32, 4), INVALID_PARAMETERS],
    ['no receivers', 'MEM_SHARE', patch(d, 28, 0, 4), INVALID_PARAMETERS],
    [
      'more receivers than the limit',
      'MEM_SHARE',
      a.desc({ receivers: [b.id, c.id, 0x8001].map((r) => ({ receiver: r, permissions: RW })) }),
      INVALID_PARAMETERS,
    ],
    ['composite offset 0', 'MEM_SHARE', patch(d, 52, 0, 4), INVALID_PARAMETERS],
    ['composite offset inside the receivers', 'MEM_SHARE', patch(d, 52, 48, 4), INVALID_PARAMETERS],
    ['EMAD reserved', 'MEM_SHARE', patch(d, 48 + 24, 1), INVALID_PARAMETERS],
    ['CLEAR on a share', 'MEM_SHARE', a.desc({ receivers: one, flags: MEM_FLAGS.CLEAR }), INVALID_PARAMETERS],
    ['time slicing', 'MEM_LEND', a.desc({ receivers: one, flags: MEM_FLAGS.TIME_SLICE, attributes: 0 }), INVALID_PARAMETERS],
    ['a retrieve-only flag', 'MEM_LEND', a.desc({ receivers: one, flags: MEM_FLAGS.HINT_VALID, attributes: 0 }), INVALID_PARAMETERS],
    ['donate to two', 'MEM_DONATE', a.desc({ receivers: [b.id, c.id].map((r) => ({ receiver: r, permissions: 0 })), attributes: 0 }), INVALID_PARAMETERS],
    ['unknown receiver', 'MEM_SHARE', a.desc({ receivers: [{ receiver: 0x7777, permissions: RW }] }), INVALID_PARAMETERS],
    ['to itself', 'MEM_SHARE', a.desc({ receivers: [{ receiver: a.id, permissions: RW }] }), INVALID_PARAMETERS],
    ['sender is not the caller', 'MEM_SHARE', a.desc({ receivers: one, sender: b.id }), DENIED],
    ['repeated receiver', 'MEM_SHARE', a.desc({ receivers: [one[0]!, one[0]!] }), INVALID_PARAMETERS],
    ['reserved data access', 'MEM_SHARE', a.desc({ receivers: [{ receiver: b.id, permissions: 3 }] }), INVALID_PARAMETERS],
    ['instruction access from the sender', 'MEM_SHARE', a.desc({ receivers: [{ receiver: b.id, permissions: RW | NX }] }), INVALID_PARAMETERS],
    ['share without data access', 'MEM_SHARE', a.desc({ receivers: [{ receiver: b.id, permissions: 0 }] }), INVALID_PARAMETERS],
    ['donate with data access', 'MEM_DONATE', a.desc({ receivers: one, attributes: 0 }), INVALID_PARAMETERS],
    ['NS attribute', 'MEM_SHARE', a.desc({ receivers: one, attributes: MEM_ATTR_NORMAL_WB_IS | 0x40 }), INVALID_PARAMETERS],
    ['single-borrower lend with a memory type', 'MEM_LEND', a.desc({ receivers: one }), INVALID_PARAMETERS],
    ['share as non-cacheable', 'MEM_SHARE', a.desc({ receivers: one, attributes: 0x27 }), DENIED],
    ['overlapping constituents', 'MEM_SHARE', a.desc({ receivers: one, constituents: [a.region(0, 2), a.region(1)] }), INVALID_PARAMETERS],
    ['the same constituent twice', 'MEM_SHARE', a.desc({ receivers: one, constituents: [a.region(3), a.region(3)] }), INVALID_PARAMETERS],
    [
      'page count sum differs',
      'MEM_SHARE',
      (() => {
        const x = a.desc({ receivers: one });
        return patch(x, 80, 2, 4);
      })(),
      INVALID_PARAMETERS,
    ],
    [
      'constituent count differs',
      'MEM_SHARE',
      (() => {
        const x = a.desc({ receivers: one });
        return patch(x, 84, 2, 4);
      })(),
      INVALID_PARAMETERS,
    ],
    ['unaligned address', 'MEM_SHARE', a.desc({ receivers: one, constituents: [{ address: a.region(0).address + 8n, pageCount: 1 }] }), INVALID_PARAMETERS],
    // Hafnium's constituents_get_mode finds no mode for an empty range: DENIED, not INVALID_PARAMETERS.
    ['zero pages', 'MEM_SHARE', a.desc({ receivers: one, constituents: [{ address: a.region(0).address, pageCount: 0 }] }), DENIED],
    ["another VM's memory", 'MEM_SHARE', a.desc({ receivers: one, constituents: [b.region(0)] }), DENIED],
    ['its TX buffer', 'MEM_SHARE', a.desc({ receivers: one, constituents: [{ address: a.ramBase, pageCount: 1 }] }), DENIED],
    ['its RX buffer', 'MEM_LEND', a.desc({ receivers: one, constituents: [{ address: a.ramBase + 0x1000n, pageCount: 1 }], attributes: 0 }), DENIED],
  ];
  for (const [what, fn, bytes, code] of cases) t.equal(errorOf(a.send(fn, bytes)), code, what);
  t.equal(errorOf(a.send('MEM_SHARE', d.subarray(0, d.length - 8), { total: d.length - 8 })), INVALID_PARAMETERS, 'length not a multiple of 16');
  t.equal(spmc.state.shares.size, 0, 'no transaction was left behind');
});

t.test('a partition may not send memory to a VM', async (t) => {
  const manifest = parseManifest(
    `${DEFAULT_MANIFEST_YAML}  - {name: r, id: 0x8010, uuids: [0badcafe-0000-4000-8000-000000000001], ffa-version: "1.2", execution-ctx-count: 1, messaging-method: 3, remote: {credential: credential-1}}\n`,
  );
  const { Spmc } = await import('../server/spmc/spmc.js');
  const spmc = new Spmc({ partitions: manifest });
  spmc.attach({ endpointId: 0x8010, credential: 'credential-1' });
  const sp = new MemVm(spmc, 0x8010, FFA_VERSION_1_2);
  sp.mapMailbox(1);
  const vm = MemVm.make(spmc);
  t.equal(errorOf(sp.send('MEM_SHARE', sp.desc({ receivers: [{ receiver: vm.id, permissions: RW }] }))), DENIED);
  t.equal(sp.send('MEM_SHARE', sp.desc({ receivers: [{ receiver: SP1, permissions: RW }] })).fn, 'SUCCESS', 'SP to SP is fine');
});

t.test('a region already shared cannot be sent again; the transaction limit is NO_MEMORY', async (t) => {
  const { a, b } = await world({ maxTransactions: 2 });
  a.share(b.id);
  t.equal(errorOf(a.send('MEM_LEND', a.desc({ receivers: [{ receiver: b.id, permissions: RW }], attributes: 0 }))), DENIED, 'already shared');
  a.share(b.id, { constituents: [a.region(5)] });
  t.equal(errorOf(a.send('MEM_SHARE', a.desc({ receivers: [{ receiver: b.id, permissions: RW }], constituents: [a.region(9)] }))), NO_MEMORY);
});

t.test('fragments: FRAG_RX tells the offset, FRAG_TX carries the rest', async (t) => {
  const { spmc, a, b } = await world({ maxFragments: 2 });
  const constituents = Array.from({ length: 600 }, (_, i) => a.region(i * 2));
  const d = a.desc({ receivers: [{ receiver: b.id, permissions: RW }], constituents });
  const first = a.send('MEM_SHARE', d.subarray(0, 4096), { total: d.length, frag: 4096 });
  t.ok(first.fn === 'MEM_FRAG_RX' && first.fragmentOffset === 4096, 'FRAG_RX at 4096');
  const handle = first.fn === 'MEM_FRAG_RX' ? first.handle : 0n;
  const fragTx = (vm: MemVm, bytes: Uint8Array, h = handle, endpoint = 0) => {
    spmc.writeMemory(vm.id, vm.ramBase, bytes);
    return vm.call({ fn: 'MEM_FRAG_TX', handle: h, fragmentLength: bytes.length, endpoint });
  };
  t.equal(errorOf(fragTx(a, d.subarray(4096, 8192), handle, a.id)), INVALID_PARAMETERS, 'a sender ID from a VM');
  t.equal(errorOf(fragTx(a, d.subarray(4096, 4104))), INVALID_PARAMETERS, 'not a multiple of 16');
  t.equal(errorOf(fragTx(a, d.subarray(4096, 8192), handle + 1n)), INVALID_PARAMETERS, 'unknown handle');
  t.equal(errorOf(fragTx(b, d.subarray(4096, 8192))), INVALID_PARAMETERS, "another VM's transaction");
  const second = fragTx(a, d.subarray(4096, 8192));
  t.ok(second.fn === 'MEM_FRAG_RX' && second.fragmentOffset === 8192);
  t.equal(errorOf(fragTx(a, d.subarray(8192, 8192 + 16))), NO_MEMORY, 'past the fragment limit');
  t.equal(spmc.state.shares.size, 0, 'and the transaction is gone');
});

t.test('MEM_RETRIEVE_REQ checks', async (t) => {
  const { spmc, a, b } = await world();
  const c = MemVm.make(spmc);
  const h = a.share(b.id);
  t.equal(errorOf(b.send('MEM_RETRIEVE_REQ', b.retrieveDesc(h, a.id), { address: 0x1000n })), INVALID_PARAMETERS, 'a buffer in w3');
  const req = b.retrieveDesc(h, a.id);
  t.equal(errorOf(b.send('MEM_RETRIEVE_REQ', req, { total: req.length + 16 })), INVALID_PARAMETERS, 'fragmented request');
  t.equal(errorOf(b.retrieve(h, a.id, { constituents: [b.region(0)] })), INVALID_PARAMETERS, 'composite offset set');
  t.equal(errorOf(b.retrieve(h + 1n, a.id)), INVALID_PARAMETERS, 'unknown handle');
  t.equal(errorOf(b.retrieve(h, c.id)), DENIED, 'wrong sender');
  t.equal(errorOf(b.retrieve(h, a.id, { flags: 2 << MEM_FLAGS.TYPE_SHIFT })), INVALID_PARAMETERS, 'lend asked of a share');
  t.equal(errorOf(b.retrieve(h, a.id, { tag: 7n })), INVALID_PARAMETERS, 'wrong tag');
  t.equal(errorOf(c.retrieve(h, a.id)), INVALID_PARAMETERS, 'not a borrower');
  t.equal(errorOf(b.retrieve(h, a.id, { flags: MEM_FLAGS.CLEAR })), INVALID_PARAMETERS, 'CLEAR on a share');
  t.equal(errorOf(b.retrieve(h, a.id, { flags: MEM_FLAGS.HINT_VALID })), INVALID_PARAMETERS, 'address hint');
  t.equal(errorOf(b.retrieve(h, a.id, { attributes: 0x40 })), INVALID_PARAMETERS, 'NS bit');
  t.equal(
    errorOf(
      b.retrieve(h, a.id, {
        receivers: [
          { receiver: b.id, permissions: RW },
          { receiver: c.id, permissions: 0 },
        ],
      }),
    ),
    INVALID_PARAMETERS,
    'receiver count differs',
  );
  t.equal(errorOf(b.retrieve(h, a.id, { receivers: [{ receiver: b.id, permissions: RW | NX }] })), INVALID_PARAMETERS, 'instruction access on a share');
  const ro = a.share(b.id, { constituents: [a.region(4)], receivers: [{ receiver: b.id, permissions: RO }] });
  t.equal(errorOf(b.retrieve(ro, a.id)), DENIED, 'RW asked of an RO grant');
  const lend = handleOf(a.send('MEM_LEND', a.desc({ receivers: [{ receiver: b.id, permissions: RW }], attributes: 0, constituents: [a.region(8)] })));
  t.equal(errorOf(b.retrieve(lend, a.id, { flags: 2 << MEM_FLAGS.TYPE_SHIFT })), INVALID_PARAMETERS, 'single-borrower lend without X or NX');
  t.equal(
    errorOf(b.retrieve(lend, a.id, { flags: MEM_FLAGS.CLEAR, receivers: [{ receiver: b.id, permissions: RW | NX }] })),
    DENIED,
    'CLEAR the lender did not ask for',
  );
  t.equal(b.retrieve(h, a.id).fn, 'MEM_RETRIEVE_RESP');
  t.equal(errorOf(b.retrieve(ro, a.id, { receivers: [{ receiver: b.id, permissions: RO }] })), BUSY, 'RX still full');
  b.releaseRx();
  t.equal(errorOf(b.retrieve(h, a.id)), DENIED, 'a second retrieve by the same borrower');
});

t.test('MEM_RELINQUISH and MEM_RECLAIM checks', async (t) => {
  const { spmc, a, b } = await world();
  const c = MemVm.make(spmc);
  const h = a.share(b.id);
  t.equal(errorOf(b.relinquish(h)), INVALID_PARAMETERS, 'not retrieved yet');
  t.equal(b.retrieve(h, a.id).fn, 'MEM_RETRIEVE_RESP');
  b.releaseRx();
  t.equal(errorOf(b.relinquish(h, [b.id, c.id])), INVALID_PARAMETERS, 'two endpoints');
  t.equal(errorOf(b.relinquish(h, [c.id])), INVALID_PARAMETERS, 'someone else');
  t.equal(errorOf(b.relinquish(h + 1n)), INVALID_PARAMETERS, 'unknown handle');
  t.equal(errorOf(c.relinquish(h)), INVALID_PARAMETERS, 'not a borrower');
  t.equal(errorOf(b.relinquish(h, [b.id], 1)), INVALID_PARAMETERS, 'clear on a share');
  t.equal(errorOf(a.reclaim(h)), DENIED, 'reclaim while retrieved');
  t.equal(errorOf(b.reclaim(h)), INVALID_PARAMETERS, 'reclaim by the borrower');
  t.equal(b.relinquish(h).fn, 'SUCCESS');
  t.equal(errorOf(a.reclaim(h + 1n)), INVALID_PARAMETERS, 'unknown handle');
  // Hafnium's api_ffa_mem_reclaim never looks at flags bits [31:2]; only strict mode refuses them.
  t.equal(a.reclaim(h, 4).fn, 'SUCCESS', 'reclaim flags [31:2] are not checked');
  t.equal(errorOf(a.reclaim(h)), INVALID_PARAMETERS, 'gone after reclaim');
  t.equal(spmc.state.shares.size, 0);
});

t.test('access follows the operation: share, lend, donate', async (t) => {
  const { spmc, a, b } = await world();
  const page = a.region(0).address;
  spmc.writeMemory(a.id, page, new Uint8Array([1, 2, 3]));
  // Share: both see the same memory.
  const h = a.share(b.id);
  t.throws(() => spmc.readMemory(b.id, page, 1), /may not read/, 'not before retrieve');
  b.retrieve(h, a.id);
  b.releaseRx();
  spmc.writeMemory(b.id, page, new Uint8Array([9]));
  t.same([...spmc.readMemory(a.id, page, 3)], [9, 2, 3], 'the owner sees the borrower’s write');
  b.relinquish(h);
  t.throws(() => spmc.readMemory(b.id, page, 1), /may not read/, 'gone after relinquish');
  a.reclaim(h);
  // Lend: the owner loses access until reclaim.
  const lend = handleOf(a.send('MEM_LEND', a.desc({ receivers: [{ receiver: b.id, permissions: RW }], attributes: 0, flags: MEM_FLAGS.CLEAR })));
  t.throws(() => spmc.readMemory(a.id, page, 1), /may not read/, 'lent memory is not the owner’s');
  t.match(spmc.state.faults.at(-1), { endpoint: a.id, address: page, length: 1, access: 'read' }, 'the fault is recorded');
  b.retrieve(lend, a.id, { receivers: [{ receiver: b.id, permissions: RW | NX }], flags: MEM_FLAGS.CLEAR });
  b.releaseRx();
  t.same([...spmc.readMemory(b.id, page, 3)], [0, 0, 0], 'cleared as the lender asked');
  spmc.writeMemory(b.id, page, new Uint8Array([7]));
  b.relinquish(lend);
  a.reclaim(lend);
  t.same([...spmc.readMemory(a.id, page, 1)], [7], 'back with the borrower’s data');
  // Donate: ownership moves for good.
  const don = handleOf(a.send('MEM_DONATE', a.desc({ receivers: [{ receiver: b.id, permissions: 0 }], attributes: 0 })));
  b.retrieve(don, a.id, { flags: 3 << MEM_FLAGS.TYPE_SHIFT, receivers: [{ receiver: b.id, permissions: NX }] });
  b.releaseRx();
  t.throws(() => spmc.readMemory(a.id, page, 1), /may not read/);
  spmc.writeMemory(b.id, page, new Uint8Array([5]));
  t.equal(errorOf(a.reclaim(don)), INVALID_PARAMETERS, 'nothing to reclaim');
  t.equal(errorOf(b.relinquish(don)), INVALID_PARAMETERS, 'nor to relinquish');
  t.equal(b.share(a.id, { constituents: [{ address: page, pageCount: 1 }] }) > 0n, true, 'the new owner can share it');
});

t.test('v1.0, v1.1 and v1.2 senders and borrowers mixed', async (t) => {
  const spmc = await startedSpmc();
  const vms = [FFA_VERSION_1_0, FFA_VERSION_1_1, FFA_VERSION_1_2].map((v) => MemVm.make(spmc, v));
  for (const s of vms) {
    for (const r of vms) {
      if (s === r) continue;
      const h = s.share(r.id, { constituents: [s.region(r.version & 0xf)] });
      const resp = r.retrieve(h, s.id);
      t.ok(resp.fn === 'MEM_RETRIEVE_RESP', `v1.${s.version & 0xf} -> v1.${r.version & 0xf}`);
      r.releaseRx();
      t.equal(r.relinquish(h).fn, 'SUCCESS');
      t.equal(s.reclaim(h).fn, 'SUCCESS');
    }
  }
});

t.test('leaving mid-transaction', async (t) => {
  const { spmc, a, b } = await world();
  const page = a.region(0).address;
  spmc.writeMemory(a.id, page, new Uint8Array([4]));
  const h = a.share(b.id);
  b.retrieve(h, a.id);
  b.releaseRx();
  spmc.detach(a.id); // the owner leaves: the borrower keeps access until it relinquishes
  t.same([...spmc.readMemory(b.id, page, 1)], [4]);
  t.equal(b.relinquish(h).fn, 'SUCCESS');
  t.equal(spmc.state.shares.size, 0, 'reclaimed on the last relinquish');
  const c = MemVm.make(spmc);
  const h2 = c.share(b.id);
  b.retrieve(h2, c.id);
  b.releaseRx();
  spmc.detach(b.id); // a borrower that leaves relinquishes
  t.equal(c.reclaim(h2).fn, 'SUCCESS');
  const d = c.desc({ receivers: [{ receiver: SP1, permissions: RW }], constituents: Array.from({ length: 300 }, (_, i) => c.region(10 + i)) });
  t.equal(c.send('MEM_SHARE', d.subarray(0, 4096), { total: d.length, frag: 4096 }).fn, 'MEM_FRAG_RX');
  spmc.detach(c.id); // half sent: dropped
  t.equal(spmc.state.shares.size, 0, 'nothing leaks');
});

t.test('property: no VM touches a page another owns unless a transaction gave it access', async (t) => {
  const spmc = await startedSpmc();
  const vms = [0, 1, 2].map(() => MemVm.make(spmc));
  type Page = { owner: MemVm; ownerAccess: boolean; borrowers: Map<MemVm, 'rw' | 'ro'>; busy: boolean };
  const pages = new Map<bigint, Page>();
  for (const v of vms) for (let i = 0; i < 6; i++) pages.set(v.region(i).address, { owner: v, ownerAccess: true, borrowers: new Map(), busy: false });
  type Tx = { type: 'share' | 'lend' | 'donate'; sender: MemVm; to: MemVm; perm: 'rw' | 'ro'; page: bigint; retrieved: boolean };
  const txs = new Map<bigint, Tx>();
  let seed = 12345;
  const rand = (n: number) => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 8) % n;
  const pick = <T>(xs: T[]): T | undefined => (xs.length ? xs[rand(xs.length)] : undefined);
  const mismatches: string[] = [];

  const check = (step: number) => {
    for (const [addr, p] of pages) {
      for (const v of vms) {
        const mayRead = (p.owner === v && p.ownerAccess) || p.borrowers.has(v);
        const mayWrite = (p.owner === v && p.ownerAccess) || p.borrowers.get(v) === 'rw';
        let canRead = true;
        let canWrite = true;
        try {
          const byte = spmc.readMemory(v.id, addr, 1);
          try {
            spmc.writeMemory(v.id, addr, byte);
          } catch {
            canWrite = false;
          }
        } catch {
          canRead = false;
          canWrite = false;
        }
        if (canRead !== mayRead || canWrite !== mayWrite)
          mismatches.push(`step ${step}: vm ${v.id} page ${addr.toString(16)} read ${canRead}/${mayRead} write ${canWrite}/${mayWrite}`);
      }
    }
  };

  let steps = 0;
  for (let step = 0; step < 250 && mismatches.length === 0; step++) {
    const op = rand(5);
    if (op <= 1) {
      const sender = vms[rand(3)]!;
      const mine = [...pages].filter(([, p]) => p.owner === sender && p.ownerAccess && !p.busy && p.borrowers.size === 0);
      const entry = pick(mine);
      if (!entry) continue;
      const to = pick(vms.filter((v) => v !== sender))!;
      const type = (['share', 'lend', 'donate'] as const)[rand(3)]!;
      const perm = rand(2) ? 'rw' : 'ro';
      const region = { address: entry[0], pageCount: 1 };
      const fn = type === 'share' ? 'MEM_SHARE' : type === 'lend' ? 'MEM_LEND' : 'MEM_DONATE';
      const permissions = type === 'donate' ? 0 : perm === 'rw' ? RW : RO;
      const r = sender.send(
        fn,
        sender.desc({ receivers: [{ receiver: to.id, permissions }], constituents: [region], attributes: type === 'share' ? MEM_ATTR_NORMAL_WB_IS : 0 }),
      );
      const h = handleOf(r);
      txs.set(h, { type, sender, to, perm: type === 'donate' ? 'rw' : perm, page: entry[0], retrieved: false });
      entry[1].busy = true;
      if (type !== 'share') entry[1].ownerAccess = false;
      // A page already in a transaction cannot be sent again.
      const again = sender.send('MEM_SHARE', sender.desc({ receivers: [{ receiver: to.id, permissions: RW }], constituents: [region] }));
      if (errorOf(again) !== DENIED) mismatches.push(`step ${step}: resend was ${again.fn}`);
    } else if (op === 2) {
      const entry = pick([...txs].filter(([, x]) => !x.retrieved));
      if (!entry) continue;
      const [h, x] = entry;
      const typeFlag = { share: 1, lend: 2, donate: 3 }[x.type] << MEM_FLAGS.TYPE_SHIFT;
      const permissions = (x.perm === 'rw' ? RW : RO) | (x.type === 'share' ? 0 : NX);
      const r = x.to.retrieve(h, x.sender.id, { flags: typeFlag, receivers: [{ receiver: x.to.id, permissions: x.type === 'donate' ? NX : permissions }] });
      if (r.fn !== 'MEM_RETRIEVE_RESP') mismatches.push(`step ${step}: retrieve gave ${r.fn}`);
      x.to.releaseRx();
      const p = pages.get(x.page)!;
      if (x.type === 'donate') {
        Object.assign(p, { owner: x.to, ownerAccess: true, busy: false });
        txs.delete(h);
      } else {
        p.borrowers.set(x.to, x.perm);
        x.retrieved = true;
      }
    } else if (op === 3) {
      const entry = pick([...txs].filter(([, x]) => x.retrieved));
      if (!entry) continue;
      const [h, x] = entry;
      if (x.to.relinquish(h).fn !== 'SUCCESS') mismatches.push(`step ${step}: relinquish failed`);
      pages.get(x.page)!.borrowers.delete(x.to);
      x.retrieved = false;
    } else {
      const entry = pick([...txs]);
      if (!entry) continue;
      const [h, x] = entry;
      const r = x.sender.reclaim(h);
      if (x.retrieved) {
        if (errorOf(r) !== DENIED) mismatches.push(`step ${step}: reclaim while retrieved gave ${r.fn}`);
        continue;
      }
      if (r.fn !== 'SUCCESS') mismatches.push(`step ${step}: reclaim failed`);
      Object.assign(pages.get(x.page)!, { ownerAccess: true, busy: false });
      txs.delete(h);
    }
    check(step);
    steps++;
  }
  t.ok(steps > 120, `${steps} operations were checked`);
  t.same(mismatches.slice(0, 5), [], 'the access table matched the per-page model at every step');
  t.ok(txs.size >= 0 && spmc.state.shares.size === txs.size, 'the SPMC holds exactly the live transactions');
});

t.test('retrieve responses in fragments: FRAG_RX checks', async (t) => {
  const { spmc, a, b } = await world();
  const c = MemVm.make(spmc);
  const constituents = Array.from({ length: 400 }, (_, i) => a.region(i * 2));
  const d = a.desc({ receivers: [{ receiver: b.id, permissions: RW }], constituents });
  let r = a.send('MEM_SHARE', d.subarray(0, 4096), { total: d.length, frag: 4096 });
  const handle = r.fn === 'MEM_FRAG_RX' ? r.handle : 0n;
  spmc.writeMemory(a.id, a.ramBase, d.subarray(4096));
  r = a.call({ fn: 'MEM_FRAG_TX', handle, fragmentLength: d.length - 4096, endpoint: 0 });
  t.equal(handleOf(r), handle, 'sent in two fragments');
  const first = b.retrieve(handle, a.id);
  t.ok(first.fn === 'MEM_RETRIEVE_RESP' && first.fragmentLength === 4096 && first.totalLength > 4096, 'the first 4 KiB of the response');
  const fragRx = (vm: MemVm, offset: number, endpoint = 0) => vm.call({ fn: 'MEM_FRAG_RX', handle, fragmentOffset: offset, endpoint });
  t.equal(errorOf(fragRx(b, 4096)), BUSY, 'RX still full');
  b.releaseRx();
  t.equal(errorOf(fragRx(b, 4096, b.id)), INVALID_PARAMETERS, 'an endpoint ID from a VM');
  t.equal(errorOf(fragRx(b, 4000)), INVALID_PARAMETERS, 'wrong offset');
  t.equal(errorOf(fragRx(c, 4096)), INVALID_PARAMETERS, 'not a borrower');
  t.equal(errorOf(b.relinquish(handle)), INVALID_PARAMETERS, 'not fully retrieved yet');
  const next = fragRx(b, 4096);
  t.ok(next.fn === 'MEM_FRAG_TX' && next.handle === handle && next.fragmentLength > 0, 'FRAG_TX with the next piece');
  b.releaseRx();
  t.equal(errorOf(fragRx(b, 8192)), INVALID_PARAMETERS, 'nothing left to fetch');
  t.equal(b.relinquish(handle).fn, 'SUCCESS');
  t.equal(a.reclaim(handle).fn, 'SUCCESS');
});

t.test('retrieve: clear flags with read-only access, and the multi-borrower bypass', async (t) => {
  const { spmc, a, b } = await world();
  const c = MemVm.make(spmc);
  const lend = handleOf(
    a.send(
      'MEM_LEND',
      a.desc({
        receivers: [
          { receiver: b.id, permissions: RO },
          { receiver: c.id, permissions: RO },
        ],
        flags: MEM_FLAGS.CLEAR,
      }),
    ),
  );
  const both = [
    { receiver: b.id, permissions: RO },
    { receiver: c.id, permissions: RO },
  ];
  t.equal(errorOf(b.retrieve(lend, a.id, { receivers: both, flags: MEM_FLAGS.CLEAR })), DENIED, 'clear with read-only access');
  t.equal(
    errorOf(b.retrieve(lend, a.id, { receivers: [{ receiver: b.id, permissions: RO }] })),
    INVALID_PARAMETERS,
    'one receiver listed without the bypass flag',
  );
  const bypass = b.retrieve(lend, a.id, { receivers: [{ receiver: b.id, permissions: RO }], flags: MEM_FLAGS.BYPASS_MULTI_BORROWER });
  t.equal(bypass.fn, 'MEM_RETRIEVE_RESP', 'v1.2 bypass: the retriever lists only itself');
  b.releaseRx();
  t.equal(errorOf(b.relinquish(lend, [b.id], 1)), DENIED, 'clear on relinquish with read-only access');
  t.equal(b.relinquish(lend).fn, 'SUCCESS');
  t.equal(a.reclaim(lend).fn, 'SUCCESS');
});
