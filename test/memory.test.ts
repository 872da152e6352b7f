// The memory model: sparse pages, range-based access tables, RAM windows.

import t from 'tap';
import { AccessTable, PhysicalMemory, WindowAllocator } from '../server/spmc/memory.js';

t.test('physical memory is sparse and reads zero where unwritten', async (t) => {
  const m = new PhysicalMemory();
  t.same([...m.read(0x12345n, 4)], [0, 0, 0, 0]);
  m.write(0x1ffen, new Uint8Array([1, 2, 3, 4])); // straddles two pages
  t.equal(m.allocatedPages, 2);
  t.same([...m.read(0x1ffcn, 8)], [0, 0, 1, 2, 3, 4, 0, 0]);
  m.write(0x10000n, new Uint8Array(4096)); // zeros allocate nothing
  t.equal(m.allocatedPages, 2);
  m.zero(0x1fffn, 2n);
  t.same([...m.read(0x1ffen, 4)], [1, 0, 0, 4]);
  m.zero(0n, 1n << 40n); // a huge range costs what the allocated pages do
  t.equal(m.allocatedPages, 0);
});

t.test('access table: assign splits and merges, allows checks every byte', async (t) => {
  const a = new AccessTable();
  a.assign(0x10000n, 0x20000n, 'owned', 'rw');
  t.ok(a.allows(0x10000n, 0x20000n, 'rw'));
  t.notOk(a.allows(0xf000n, 0x10001n, 'ro'), 'starts before the range');
  t.notOk(a.allows(0x1f000n, 0x20001n, 'ro'), 'runs past it');
  a.assign(0x12000n, 0x13000n, 'mailbox-rx', 'ro');
  t.equal(a.list().length, 3);
  t.ok(a.allows(0x12000n, 0x13000n, 'ro'));
  t.notOk(a.allows(0x12000n, 0x12001n, 'rw'), 'RX is read-only');
  t.notOk(a.allows(0x11000n, 0x14000n, 'ro', ['owned']), 'not all owned');
  t.ok(a.allows(0x11000n, 0x14000n, 'ro'), 'readable throughout');
  a.assign(0x12000n, 0x13000n, 'owned', 'rw');
  t.equal(a.list().length, 1, 'merged back into one range');
  a.remove(0x14000n, 0x15000n);
  t.equal(a.list().length, 2);
  t.notOk(a.allows(0x13000n, 0x16000n, 'ro'), 'hole');
  // A 1 GiB range is one entry.
  a.assign(1n << 32n, (1n << 32n) + (1n << 30n), 'owned', 'rw');
  t.equal(a.list().length, 3);
  t.ok(a.allows(1n << 32n, (1n << 32n) + (1n << 30n), 'rw'));
});

t.test('window allocator: first fit, aligned, reuses freed space', async (t) => {
  const w = new WindowAllocator(0x40000000n, 0x50000000n, 0x200000n);
  const a = w.allocate(0x1000n)!;
  const b = w.allocate(0x300000n)!;
  t.equal(a.base, 0x40000000n);
  t.equal(b.base, 0x40200000n, 'aligned after a');
  w.free(a);
  t.equal(w.allocate(0x200000n)!.base, 0x40000000n, 'the hole is reused');
  t.equal(w.allocate(0x10000000n), undefined, 'no room');
});

t.test('access table: many changes in one pass agree with one at a time', async (t) => {
  const one = new AccessTable();
  const many = new AccessTable();
  for (const a of [one, many]) {
    a.assign(0n, 0x100000n, 'owned', 'rw');
    a.assign(0x200000n, 0x300000n, 'owned', 'rw');
  }
  const changes = [
    { base: 0x1000n, limit: 0x3000n, to: { state: 'shared' as const, perm: 'rw' as const } },
    { base: 0x5000n, limit: 0x6000n },
    { base: 0xff000n, limit: 0x201000n, to: { state: 'borrowed' as const, perm: 'ro' as const } },
    { base: 0x3000n, limit: 0x4000n, to: { state: 'shared' as const, perm: 'rw' as const } },
  ];
  for (const c of changes) {
    if (c.to) one.assign(c.base, c.limit, c.to.state, c.to.perm);
    else one.remove(c.base, c.limit);
  }
  many.update(changes);
  t.same(many.list(), one.list());
  t.ok(many.allows(0x1000n, 0x4000n, 'rw', ['shared']), 'adjacent shared spans merged');
  t.notOk(many.touches(0x5000n, 0x6000n), 'removed');
});
