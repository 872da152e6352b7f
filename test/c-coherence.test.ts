// Coherent guest memory for native clients (server side): the per-session tracker of what changed
// in an endpoint's view, its wire form, and a VM's chosen RAM base.

import t from 'tap';
import { FFA_PAGE_SIZE, fidRegister, FFA_VERSION_1_2, toRegisters } from '../proto/ffa/index.js';
import { decodeCallRequest, encodeCallReply, spmcServiceDefinition, u64FromWire, u64ToWire } from '../proto/wire.js';
import { acceptDirty, isEmptyUpdate } from '../server/session/coherence.js';
import { SessionCore } from '../server/session/core.js';
import { SpmcError } from '../server/spmc/spmc.js';
import { newSpmc } from './helpers.js';

const PAGE = BigInt(FFA_PAGE_SIZE);

function attached() {
  const spmc = newSpmc();
  const core = SessionCore.for(spmc);
  const a = core.attach({ name: 'c', ramBytes: 16n * PAGE });
  const s = core.session(a.session);
  return { spmc, core, a, s };
}

t.test('the first update is the whole view: the map and every page holding bytes', async (t) => {
  const { core, a, s } = attached();
  core.writeMemory(s, a.ramBase + 3n * PAGE + 8n, Uint8Array.of(7));
  const c = acceptDirty(core, s, []);
  const u = c.update();
  t.ok(u.mapChanged);
  t.same(u.map, [{ base: a.ramBase, limit: a.ramBase + 16n * PAGE, writable: true }]);
  t.same(
    u.pages.map((p) => p.address),
    [a.ramBase + 3n * PAGE],
    'only the page holding bytes',
  );
  t.equal(u.pages[0]!.data[8], 7);
  t.ok(isEmptyUpdate(c.update()), 'then nothing changed: an empty update (one message each way)');
});

t.test("the client's own dirty pages are not sent back; what the SPMC writes to RX is", async (t) => {
  const { core, a, s } = attached();
  const c = acceptDirty(core, s, []);
  c.update();
  const tx = a.ramBase;
  const rx = a.ramBase + PAGE;
  acceptDirty(core, s, [{ address: tx, data: new Uint8Array(FFA_PAGE_SIZE).fill(0xaa) }]);
  t.ok(isEmptyUpdate(c.update()), 'its own write is not echoed');
  t.same(core.readMemory(s, tx, 2), Uint8Array.of(0xaa, 0xaa), 'but it reached guest memory');
  core.call(s, 0, toRegisters([fidRegister('VERSION'), BigInt(FFA_VERSION_1_2)]), 'test');
  core.call(s, 0, toRegisters([fidRegister('RXTX_MAP', 64), tx, rx, 1n]), 'test');
  let u = c.update();
  t.ok(u.mapChanged, 'RXTX_MAP changes the view');
  t.same(
    u.map.map((r) => r.writable),
    [true, false, true],
    'RX is read-only now',
  );
  const out = core.call(s, 0, toRegisters([fidRegister('PARTITION_INFO_GET')]), 'test') as bigint[];
  u = c.update();
  t.notOk(u.mapChanged);
  t.same(
    u.pages.map((p) => p.address),
    [rx],
    'the RX page the SPMC filled comes back',
  );
  t.ok(out[2]! > 0n && u.pages[0]!.data.some((b) => b !== 0), 'holding the descriptors');
});

t.test('a write the endpoint may not make fails the call before it is made', async (t) => {
  const { core, s } = attached();
  t.throws(() => acceptDirty(core, s, [{ address: 0x1000n, data: new Uint8Array(8) }]), { name: 'MemoryFault' });
});

t.test('ranges that appear carry their bytes; ranges that go leave the map', async (t) => {
  const { spmc, core, a, s } = attached();
  const other = core.attach({ name: 'other' });
  const c = acceptDirty(core, s, []);
  c.update();
  // As a retrieve and a lend do: a range of another window becomes borrowed, and one of its own goes.
  spmc.state.memory.write(other.ramBase + PAGE, Uint8Array.of(1, 2, 3));
  const ep = spmc.endpoint(a.endpointId)!;
  ep.access.assign(other.ramBase, other.ramBase + 2n * PAGE, 'borrowed', 'ro');
  ep.access.remove(a.ramBase + 4n * PAGE, a.ramBase + 5n * PAGE);
  const u = c.update();
  t.ok(u.mapChanged);
  t.same(
    u.map.map((r) => [r.base - a.ramBase, r.limit - a.ramBase, r.writable]),
    [
      [0n, 4n * PAGE, true],
      [5n * PAGE, 16n * PAGE, true],
      [other.ramBase - a.ramBase, other.ramBase - a.ramBase + 2n * PAGE, false],
    ].sort((x, y) => (x[0]! < y[0]! ? -1 : 1)),
  );
  t.same(
    u.pages.map((p) => p.address),
    [other.ramBase + PAGE],
    'the borrowed page holding bytes',
  );
  // Another endpoint writes the borrowed memory: the change comes back; one it cannot see does not.
  core.writeMemory(core.session(other.session), other.ramBase + 3n, Uint8Array.of(9));
  core.writeMemory(core.session(other.session), other.ramBase + 5n * PAGE, Uint8Array.of(9));
  t.same(
    c.update().pages.map((p) => p.address),
    [other.ramBase],
  );
});

t.test('the session releases its watcher when it ends', async (t) => {
  const { spmc, core, a, s } = attached();
  acceptDirty(core, s, []);
  t.equal(spmc.state.memory.watchers.size, 1);
  core.detach(a.session);
  t.equal(spmc.state.memory.watchers.size, 0);
});

t.test('the coherence fields on the wire agree with the generic codec', async (t) => {
  const generic = spmcServiceDefinition()['Call']!;
  const req = generic.requestSerialize({
    session: 's',
    vcpu: 1,
    x: [u64ToWire(1n)],
    coherent: true,
    dirty: [{ address: u64ToWire(0x4000_1000n), data: Buffer.from([5, 6]) }],
  });
  const m = decodeCallRequest(req);
  t.equal(m.coherent, true);
  t.same(
    m.dirty?.map((p) => [p.address, [...p.data]]),
    [[0x4000_1000n, [5, 6]]],
  );
  const bytes = encodeCallReply([1n], undefined, {
    sequence: 3n,
    mapChanged: true,
    map: [
      { base: 0x4000_0000n, limit: 0x4001_0000n, writable: true },
      { base: 0x4001_0000n, limit: 0x4001_1000n, writable: false },
    ],
    pages: [
      { address: 0x4000_0000n, data: Uint8Array.of(1, 2) },
      { address: 0x4001_0000n, data: new Uint8Array(FFA_PAGE_SIZE).fill(7) },
    ],
  });
  const r = generic.responseDeserialize(bytes) as {
    coherence: { sequence: unknown; map_changed: boolean; map: { base: never; limit: never; writable: boolean }[]; pages: { address: never; data: Buffer }[] };
  };
  t.equal(u64FromWire(r.coherence.sequence as never), 3n);
  t.equal(r.coherence.map_changed, true);
  t.same(
    r.coherence.map.map((x) => [u64FromWire(x.base), u64FromWire(x.limit), x.writable]),
    [
      [0x4000_0000n, 0x4001_0000n, true],
      [0x4001_0000n, 0x4001_1000n, false],
    ],
  );
  t.same([...r.coherence.pages[0]!.data], [1, 2]);
  t.equal(u64FromWire(r.coherence.pages[1]!.address), 0x4001_0000n);
  t.ok(r.coherence.pages[1]!.data.length === FFA_PAGE_SIZE && r.coherence.pages[1]!.data.every((b) => b === 7), 'a whole page');
});

t.test('a VM may choose its RAM base; an overlapping or unaligned one is refused with why', async (t) => {
  const spmc = newSpmc();
  const core = SessionCore.for(spmc);
  const a = core.attach({ ramBytes: 0x10000n, ramBase: 0x9000_0000n });
  t.equal(a.ramBase, 0x9000_0000n, 'honoured');
  const thrown = (fn: () => unknown) => {
    try {
      fn();
    } catch (e) {
      return e instanceof SpmcError ? [e.kind, e.message] : ['not an SpmcError', String(e)];
    }
    return ['nothing thrown', ''];
  };
  t.same(
    thrown(() => core.attach({ ramBytes: 0x10000n, ramBase: 0x9000_8000n })),
    ['already-exists', 'ram_base 0x90008000+0x10000 overlaps memory already given to an endpoint or region'],
  );
  t.same(
    thrown(() => core.attach({ ramBase: 0x9000_0800n })),
    ['invalid-argument', 'ram_base 0x90000800 is not 4 KiB aligned'],
  );
  const b = core.attach({ ramBytes: 0x10000n });
  t.not(b.ramBase, a.ramBase, 'a placed window avoids it');
  core.detach(a.session);
  t.equal(core.attach({ ramBytes: 0x10000n, ramBase: 0x9000_0000n }).ramBase, 0x9000_0000n, 'free again after detach');
});
