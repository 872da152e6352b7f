// Notifications, MSG_SEND2 and CONSOLE_LOG in the model: every check of the reference, each its own case.

import t from 'tap';
import {
  encodeIndirectMessage,
  type EndpointId,
  FEATURE_IDS,
  FFA_ERRORS,
  FFA_VERSION_1_0,
  FFA_VERSION_1_1,
  type FfaCall,
  fid,
  joinU64,
  NPI_INTID,
  packNotificationInfo,
  parseUuid,
  SRI_INTID,
  unpackNotificationInfo,
} from '../proto/ffa/index.js';
import { defaultManifest } from '../server/manifest.js';
import { isPending } from '../server/spmc/pending.js';
import { Spmc } from '../server/spmc/spmc.js';
import { errorOf, newSpmc, RawVm, settle, SP1_UUID, successArgs } from './helpers.js';

const { INVALID_PARAMETERS, NOT_SUPPORTED, DENIED, BUSY, NO_DATA } = FFA_ERRORS;
const SP1 = 0x8001;
const SP2 = 0x8002;
const SP3 = 0x8003; // no indirect messaging in the default manifest

/** An SPMC whose partitions are driven by hand (none runs), with a log of raised interrupts and console lines. */
function setup(partitions = defaultManifest()) {
  const spmc = new Spmc({ partitions });
  const interrupts: [EndpointId, number][] = [];
  const lines: [EndpointId, string][] = [];
  spmc.observe({ interrupt: (id, intid) => interrupts.push([id, intid]), console: (id, line) => lines.push([id, line]) });
  const vm = RawVm.attach(spmc, { vcpuCount: 2 });
  return { spmc, vm, interrupts, lines, sp: (id: EndpointId) => new RawVm(spmc, id) };
}

const bind = (receiver: RawVm, sender: EndpointId, bitmap: bigint, perVcpu = false): FfaCall =>
  receiver.call({ fn: 'NOTIFICATION_BIND', route: { source: sender, destination: receiver.id }, perVcpu, bitmap });
const unbind = (receiver: RawVm, sender: EndpointId, bitmap: bigint): FfaCall =>
  receiver.call({ fn: 'NOTIFICATION_UNBIND', route: { source: sender, destination: receiver.id }, bitmap });
const set = (sender: RawVm, receiver: EndpointId, bitmap: bigint, o: { perVcpu?: boolean; delaySri?: boolean; vcpu?: number; as?: EndpointId } = {}): FfaCall =>
  sender.call({
    fn: 'NOTIFICATION_SET',
    route: { source: o.as ?? sender.id, destination: receiver },
    perVcpu: o.perVcpu ?? false,
    delaySri: o.delaySri ?? false,
    vcpu: o.vcpu ?? 0,
    bitmap,
  });
const ALL = { sp: true, vm: true, spmFramework: true, hypFramework: true };
const get = (receiver: RawVm, bitmaps = ALL, vcpu = 0, as?: EndpointId): FfaCall =>
  receiver.call({ fn: 'NOTIFICATION_GET', receiver: as ?? receiver.id, vcpu, bitmaps });
/** GET's answer as [fromSp, fromVm, spmFramework, hypFramework]. */
const got = (c: FfaCall): bigint[] => {
  const [a = 0n, b = 0n, c2 = 0n, d = 0n, e = 0n, f = 0n] = successArgs(c);
  return [joinU64(a, b), joinU64(c2, d), e, f];
};

t.test('NOTIFICATION_BIND', async (t) => {
  t.test('a VM binds an SP sender; the SP sets; GET collects once', async (t) => {
    const { vm, sp } = setup();
    t.equal(bind(vm, SP1, 0b1010n).fn, 'SUCCESS');
    t.equal(set(sp(SP1), vm.id, 0b10n).fn, 'SUCCESS');
    t.same(got(get(vm)), [0b10n, 0n, 0n, 0n], 'from SPs in w2/w3');
    t.same(got(get(vm)), [0n, 0n, 0n, 0n], 'getting clears');
  });
  t.test('the per-vCPU flag is INVALID_PARAMETERS', async (t) => {
    const { vm } = setup();
    t.equal(errorOf(bind(vm, SP1, 1n, true)), INVALID_PARAMETERS);
  });
  t.test('other w2 bits are INVALID_PARAMETERS', async (t) => {
    const { vm } = setup();
    t.equal(errorOf(vm.call({ fn: 'FEATURES', id: 0, inputProperties: 0 })), NOT_SUPPORTED); // (sanity: the VM answers)
    const r = vm.regs([fid('NOTIFICATION_BIND'), (SP1 << 16) | vm.id, 0x4, 1, 0]);
    t.equal(Number((r[2]! << 32n) >> 32n) | 0, INVALID_PARAMETERS);
  });
  t.test('sender == receiver is INVALID_PARAMETERS', async (t) => {
    const { vm } = setup();
    t.equal(errorOf(bind(vm, vm.id, 1n)), INVALID_PARAMETERS);
  });
  t.test('a receiver other than the caller is INVALID_PARAMETERS', async (t) => {
    const { spmc, vm } = setup();
    const other = RawVm.attach(spmc);
    t.equal(errorOf(vm.call({ fn: 'NOTIFICATION_BIND', route: { source: SP1, destination: other.id }, perVcpu: false, bitmap: 1n })), INVALID_PARAMETERS);
  });
  t.test('an empty bitmap is INVALID_PARAMETERS', async (t) => {
    const { vm } = setup();
    t.equal(errorOf(bind(vm, SP1, 0n)), INVALID_PARAMETERS);
  });
  t.test('a v1.0 receiver is NOT_SUPPORTED', async (t) => {
    const { spmc } = setup();
    const old = RawVm.attach(spmc, {}, FFA_VERSION_1_0);
    t.equal(errorOf(bind(old, SP1, 1n)), NOT_SUPPORTED);
  });
  t.test('a partition without notification support is NOT_SUPPORTED', async (t) => {
    const partitions = defaultManifest().map((p) => (p.id === SP2 ? { ...p, notificationSupport: false } : p));
    const { sp } = setup(partitions);
    t.equal(errorOf(bind(sp(SP2), SP1, 1n)), NOT_SUPPORTED);
  });
  t.test('an SP sender that does not exist is INVALID_PARAMETERS', async (t) => {
    const { vm } = setup();
    t.equal(errorOf(bind(vm, 0x8009, 1n)), INVALID_PARAMETERS);
  });
  t.test('a VM binding a VM that is not attached is INVALID_PARAMETERS; an SP may bind any VM id', async (t) => {
    const { vm, sp } = setup();
    t.equal(errorOf(bind(vm, 0x77, 1n)), INVALID_PARAMETERS);
    t.equal(bind(sp(SP1), 0x77, 1n).fn, 'SUCCESS', 'the normal world is the other world for a partition');
  });
  t.test('an ID already bound is DENIED, to another sender or the same one', async (t) => {
    const { vm } = setup();
    t.equal(bind(vm, SP1, 0b11n).fn, 'SUCCESS');
    t.equal(errorOf(bind(vm, SP2, 0b10n)), DENIED);
    t.equal(errorOf(bind(vm, SP1, 0b01n)), DENIED);
    t.equal(bind(vm, SP2, 0b100n).fn, 'SUCCESS', 'a free ID is fine');
  });
  t.test('SP and VM senders have their own bindings for the same ID', async (t) => {
    const { spmc, vm, sp } = setup();
    const other = RawVm.attach(spmc);
    t.equal(bind(vm, SP1, 1n).fn, 'SUCCESS');
    t.equal(bind(vm, other.id, 1n).fn, 'SUCCESS');
    t.equal(set(other, vm.id, 1n).fn, 'SUCCESS');
    t.equal(set(sp(SP1), vm.id, 1n).fn, 'SUCCESS');
    t.same(got(get(vm)), [1n, 1n, 0n, 0n]);
  });
});

t.test('NOTIFICATION_UNBIND', async (t) => {
  t.test('unbinding stops the sender', async (t) => {
    const { vm, sp } = setup();
    bind(vm, SP1, 0b11n);
    t.equal(unbind(vm, SP1, 0b01n).fn, 'SUCCESS');
    t.equal(errorOf(set(sp(SP1), vm.id, 0b01n)), DENIED);
    t.equal(set(sp(SP1), vm.id, 0b10n).fn, 'SUCCESS', 'the other ID is still bound');
  });
  t.test('IDs not bound to this sender are DENIED', async (t) => {
    const { vm } = setup();
    bind(vm, SP1, 1n);
    t.equal(errorOf(unbind(vm, SP2, 1n)), DENIED);
    t.equal(errorOf(unbind(vm, SP1, 0b11n)), DENIED, 'one unbound ID spoils the lot');
  });
  t.test('a pending ID is DENIED', async (t) => {
    const { vm, sp } = setup();
    bind(vm, SP1, 1n);
    set(sp(SP1), vm.id, 1n);
    t.equal(errorOf(unbind(vm, SP1, 1n)), DENIED);
    get(vm);
    t.equal(unbind(vm, SP1, 1n).fn, 'SUCCESS', 'once collected');
  });
  t.test('w2 is MBZ', async (t) => {
    const { vm } = setup();
    bind(vm, SP1, 1n);
    const r = vm.regs([fid('NOTIFICATION_UNBIND'), (SP1 << 16) | vm.id, 1, 1, 0]);
    t.equal(Number(BigInt.asIntN(32, r[2]!)), INVALID_PARAMETERS);
  });
});

t.test('NOTIFICATION_SET', async (t) => {
  t.test('per-vCPU, a vCPU ID or MBZ flag bits are INVALID_PARAMETERS', async (t) => {
    const { vm, sp } = setup();
    bind(vm, SP1, 1n);
    t.equal(errorOf(set(sp(SP1), vm.id, 1n, { perVcpu: true })), INVALID_PARAMETERS);
    t.equal(errorOf(set(sp(SP1), vm.id, 1n, { vcpu: 1 })), INVALID_PARAMETERS);
    const r = sp(SP1).regs([fid('NOTIFICATION_SET'), (SP1 << 16) | vm.id, 0x4, 1, 0]);
    t.equal(Number(BigInt.asIntN(32, r[2]!)), INVALID_PARAMETERS);
  });
  t.test('a sender other than the caller is INVALID_PARAMETERS', async (t) => {
    const { vm, sp } = setup();
    bind(vm, SP1, 1n);
    t.equal(errorOf(set(sp(SP2), vm.id, 1n, { as: SP1 })), INVALID_PARAMETERS);
  });
  t.test('sender == receiver is INVALID_PARAMETERS', async (t) => {
    const { vm } = setup();
    t.equal(errorOf(set(vm, vm.id, 1n)), INVALID_PARAMETERS);
  });
  t.test('an empty bitmap is INVALID_PARAMETERS', async (t) => {
    const { vm, sp } = setup();
    t.equal(errorOf(set(vm, SP1, 0n)), INVALID_PARAMETERS);
    t.equal(errorOf(set(sp(SP1), vm.id, 0n)), INVALID_PARAMETERS);
  });
  t.test('delaying the SRI is for partitions only', async (t) => {
    const { spmc, vm } = setup();
    const other = RawVm.attach(spmc);
    bind(other, vm.id, 1n);
    t.equal(errorOf(set(vm, other.id, 1n, { delaySri: true })), INVALID_PARAMETERS);
  });
  t.test('an unknown receiver is INVALID_PARAMETERS', async (t) => {
    const { vm } = setup();
    t.equal(errorOf(set(vm, 0x1234, 1n)), INVALID_PARAMETERS);
  });
  t.test('a receiver without notifications is DENIED', async (t) => {
    const partitions = defaultManifest().map((p) => (p.id === SP2 ? { ...p, notificationSupport: false } : p));
    const { vm } = setup(partitions);
    t.equal(errorOf(set(vm, SP2, 1n)), DENIED);
  });
  t.test('IDs not bound to the sender are DENIED', async (t) => {
    const { vm, sp } = setup();
    bind(vm, SP1, 0b01n);
    t.equal(errorOf(set(sp(SP2), vm.id, 0b01n)), DENIED, 'bound to another sender');
    t.equal(errorOf(set(sp(SP1), vm.id, 0b11n)), DENIED, 'one ID not bound');
  });
  t.test('a VM receiver gets the SRI at once', async (t) => {
    const { vm, sp, interrupts } = setup();
    bind(vm, SP1, 1n);
    set(sp(SP1), vm.id, 1n);
    t.same(interrupts, [[vm.id, SRI_INTID]]);
  });
  t.test('a delayed SRI fires when the partition stops running', async (t) => {
    const { vm, sp, interrupts } = setup();
    bind(vm, SP1, 1n);
    const sp1 = sp(SP1);
    t.equal(set(sp1, vm.id, 1n, { delaySri: true }).fn, 'SUCCESS');
    t.same(interrupts, [], 'held back while SP1 runs');
    sp1.call({ fn: 'ID_GET' });
    t.same(interrupts, [], 'still running');
    t.ok(isPending(sp1.start({ fn: 'MSG_WAIT', retainRx: false })), 'SP1 waits');
    t.same(interrupts, [[vm.id, SRI_INTID]], 'sent as it gave up the CPU');
  });
  t.test('a waiting partition is not woken; FFA_RUN gives it the NPI (api_ffa_notification_set, api_vcpu_prepare_run)', async (t) => {
    const { vm, sp } = setup();
    const sp1 = sp(SP1);
    t.equal(bind(sp1, vm.id, 0b100n).fn, 'SUCCESS');
    const wait = sp1.start({ fn: 'MSG_WAIT', retainRx: false });
    t.ok(isPending(wait));
    t.equal(set(vm, SP1, 0b100n).fn, 'SUCCESS');
    t.equal(vm.spmc.endpoint(SP1)!.vcpus[0]!.state, 'waiting', 'SET only marks it pending');
    const run = vm.start({ fn: 'RUN', target: { endpoint: SP1, vcpu: 0 } });
    t.ok(isPending(run), 'the VM gives SP1 its cycles');
    const ev = await settle(wait);
    t.equal(ev.fn, 'INTERRUPT');
    t.equal(ev.fn === 'INTERRUPT' && ev.interruptId, NPI_INTID);
    t.same(got(get(sp1)), [0n, 0b100n, 0n, 0n], 'from VMs in w4/w5');
    t.ok(isPending(sp1.start({ fn: 'MSG_WAIT', retainRx: false })));
    t.equal((await settle(run)).fn, 'MSG_WAIT', 'and the cycles come back to the VM');
  });
  t.test('a partition busy when notified takes the NPI at its next MSG_WAIT', async (t) => {
    const { vm, sp } = setup();
    const sp1 = sp(SP1);
    bind(sp1, vm.id, 1n);
    set(vm, SP1, 1n);
    const ev = sp1.call({ fn: 'MSG_WAIT', retainRx: false });
    t.equal(ev.fn === 'INTERRUPT' && ev.interruptId, NPI_INTID, 'answered at once');
    get(sp1);
    t.ok(isPending(sp1.start({ fn: 'MSG_WAIT', retainRx: false })), 'then it waits as usual');
  });
});

t.test('NOTIFICATION_GET', async (t) => {
  t.test('flag bits [31:4] are INVALID_PARAMETERS', async (t) => {
    const { vm } = setup();
    const r = vm.regs([fid('NOTIFICATION_GET'), vm.id, 0x10]);
    t.equal(Number(BigInt.asIntN(32, r[2]!)), INVALID_PARAMETERS);
  });
  t.test('a receiver other than the caller is INVALID_PARAMETERS', async (t) => {
    const { vm } = setup();
    t.equal(errorOf(get(vm, ALL, 0, SP1)), INVALID_PARAMETERS);
  });
  t.test('a vCPU ID at or above the count is INVALID_PARAMETERS', async (t) => {
    const { vm } = setup();
    t.equal(get(vm, ALL, 1).fn, 'SUCCESS');
    t.equal(errorOf(get(vm, ALL, 2)), INVALID_PARAMETERS);
  });
  t.test('only the bitmaps asked for are returned and cleared', async (t) => {
    const { spmc, vm, sp } = setup();
    const other = RawVm.attach(spmc);
    bind(vm, SP1, 1n << 63n);
    bind(vm, other.id, 1n << 40n);
    set(sp(SP1), vm.id, 1n << 63n);
    set(other, vm.id, 1n << 40n);
    t.same(got(get(vm, { sp: false, vm: true, spmFramework: false, hypFramework: false })), [0n, 1n << 40n, 0n, 0n]);
    t.same(got(get(vm, { sp: true, vm: true, spmFramework: false, hypFramework: false })), [1n << 63n, 0n, 0n, 0n], 'the SP bitmap stayed pending');
  });
});

t.test('NOTIFICATION_INFO_GET', async (t) => {
  t.test('partitions are scheduled by the server: NOT_SUPPORTED', async (t) => {
    const { sp } = setup();
    t.equal(errorOf(sp(SP1).call({ fn: 'NOTIFICATION_INFO_GET', width: 64 })), NOT_SUPPORTED);
  });
  t.test('nothing pending is NO_DATA', async (t) => {
    const { vm } = setup();
    t.equal(errorOf(vm.call({ fn: 'NOTIFICATION_INFO_GET', width: 64 })), NO_DATA);
  });
  t.test('a VM sees its own ID once per new notification (64- and 32-bit forms)', async (t) => {
    const { vm, sp } = setup();
    bind(vm, SP1, 0b11n);
    set(sp(SP1), vm.id, 0b01n);
    const r = vm.call({ fn: 'NOTIFICATION_INFO_GET', width: 64 });
    t.equal(r.fn === 'SUCCESS' && r.width, 64, 'FFA_SUCCESS_64');
    const args = successArgs(r);
    t.equal(args[0], 1n << 7n, 'one list, no vCPU IDs, nothing more pending');
    t.equal(args[1], BigInt(vm.id), 'x3 holds the ID');
    t.same(unpackNotificationInfo(args, 64), { lists: [{ endpoint: vm.id, vcpus: [] }], morePending: false });
    t.equal(errorOf(vm.call({ fn: 'NOTIFICATION_INFO_GET', width: 64 })), NO_DATA, 'reported once');
    set(sp(SP1), vm.id, 0b10n);
    const r32 = vm.call({ fn: 'NOTIFICATION_INFO_GET', width: 32 });
    t.equal(r32.fn === 'SUCCESS' && r32.width, 32, 'FFA_SUCCESS_32 for the 32-bit form');
    t.same(unpackNotificationInfo(successArgs(r32), 32).lists, [{ endpoint: vm.id, vcpus: [] }], 'a new ID is reported again');
  });
  t.test('list packing: counts, sizes, ID order, the limit and the more-pending bit', async (t) => {
    const lists = [
      { endpoint: 0x8001, vcpus: [] },
      { endpoint: 0x8002, vcpus: [1, 2, 3] },
      { endpoint: 5, vcpus: [0] },
    ];
    const x = packNotificationInfo({ lists, morePending: true }, 64);
    t.equal(x[0], 1n | (3n << 7n) | (0n << 12n) | (3n << 14n) | (1n << 16n));
    t.equal(x[1], 0x8001n | (0x8002n << 16n) | (1n << 32n) | (2n << 48n), 'four IDs per register, little-endian');
    t.equal(x[2], 3n | (5n << 16n));
    t.same(unpackNotificationInfo(x, 64), { lists, morePending: true });
    const many = Array.from({ length: 12 }, (_, i) => ({ endpoint: 0x8001 + i, vcpus: [] }));
    t.equal(unpackNotificationInfo(packNotificationInfo({ lists: many, morePending: false }, 32), 32).lists.length, 10, '10 IDs in the 32-bit form');
    t.equal(unpackNotificationInfo(packNotificationInfo({ lists: many, morePending: false }, 64), 64).lists.length, 12);
    const x32 = packNotificationInfo({ lists: many, morePending: false }, 32);
    t.ok(
      x32.slice(1).every((v) => v >> 32n === 0n),
      'two IDs per register, low halves only',
    );
  });
});

t.test("BITMAP_CREATE and BITMAP_DESTROY are the hypervisor's: NOT_SUPPORTED for every endpoint", async (t) => {
  const { vm, sp } = setup();
  for (const c of [vm, sp(SP1)]) {
    t.equal(errorOf(c.call({ fn: 'NOTIFICATION_BITMAP_CREATE', vmId: vm.id, vcpuCount: 1 })), NOT_SUPPORTED);
    t.equal(errorOf(c.call({ fn: 'NOTIFICATION_BITMAP_DESTROY', vmId: vm.id })), NOT_SUPPORTED);
    const bad = c.regs([fid('NOTIFICATION_BITMAP_CREATE'), 0xffff0001, 1]);
    t.equal(Number(BigInt.asIntN(32, bad[2]!)), NOT_SUPPORTED, 'even with MBZ bits set');
  }
});

t.test('FFA_FEATURES for notifications', async (t) => {
  const { spmc, vm, sp } = setup();
  const features = (c: RawVm, id: number) => c.call({ fn: 'FEATURES', id, inputProperties: 0 });
  for (const fn of ['NOTIFICATION_BIND', 'NOTIFICATION_UNBIND', 'NOTIFICATION_SET', 'NOTIFICATION_GET', 'MSG_SEND2'] as const) {
    t.equal(features(vm, fid(fn)).fn, 'SUCCESS', fn);
    t.equal(features(sp(SP1), fid(fn)).fn, 'SUCCESS', `${fn} (SP)`);
  }
  t.equal(features(vm, fid('NOTIFICATION_INFO_GET', 64)).fn, 'SUCCESS');
  t.equal(errorOf(features(sp(SP1), fid('NOTIFICATION_INFO_GET', 64))), NOT_SUPPORTED);
  t.equal(features(sp(SP1), fid('CONSOLE_LOG', 64)).fn, 'SUCCESS');
  t.same(successArgs(features(sp(SP1), FEATURE_IDS.NPI)).slice(0, 1), [5n], 'NPI: INTID 5');
  t.same(successArgs(features(sp(SP1), FEATURE_IDS.MEI)).slice(0, 1), [4n], 'MEI: INTID 4');
  t.equal(errorOf(features(sp(SP1), FEATURE_IDS.SRI)), NOT_SUPPORTED, 'SPs get no SRI');
  // Reported by the SPMC's version, not the caller's (Hafnium's ffa_features_function): a v1.0
  // caller is told of them too, though its calls are NOT_SUPPORTED.
  const old = RawVm.attach(spmc, {}, FFA_VERSION_1_0);
  t.equal(features(old, fid('NOTIFICATION_BIND')).fn, 'SUCCESS', 'v1.0 caller told of BIND');
  t.equal(features(old, fid('MSG_SEND2')).fn, 'SUCCESS');
});

// ---- FFA_MSG_SEND2 --------------------------------------------------------------------------------

/** Put a message in `from`'s TX buffer. */
function writeTx(
  from: RawVm,
  tx: bigint,
  h: { sender?: EndpointId; receiver: EndpointId; offset?: number; size?: number; uuid?: string },
  payload: Uint8Array,
  headerSize = 40,
): void {
  const msg = encodeIndirectMessage(
    { sender: h.sender ?? from.id, receiver: h.receiver, uuid: h.uuid ? parseUuid(h.uuid) : undefined, offset: h.offset },
    payload,
    headerSize,
  );
  if (h.size !== undefined) new DataView(msg.buffer).setUint32(16, h.size >>> 0, true);
  from.spmc.writeMemory(from.id, tx, msg);
}
const send2 = (from: RawVm, delaySri = false, senderVmId = 0): FfaCall => from.call({ fn: 'MSG_SEND2', senderVmId, delaySri });
const bytes = (...v: number[]) => Uint8Array.from(v);

function pair() {
  const s = setup();
  const a = s.vm;
  const b = RawVm.attach(s.spmc);
  const ma = a.mapMailbox();
  const mb = b.mapMailbox();
  return { ...s, a, b, ma, mb };
}

t.test('FFA_MSG_SEND2', async (t) => {
  t.test('VM to VM: RX holds header and payload, the tail is zero, HYP RX-full is pending, the SRI fires', async (t) => {
    const { spmc, a, b, ma, mb, interrupts } = pair();
    spmc.writeMemory(b.id, mb.rx - 0n, new Uint8Array(0)); // (no-op: RX is read-only to its owner, writes of nothing pass)
    writeTx(a, ma.tx, { receiver: b.id, uuid: SP1_UUID }, bytes(1, 2, 3));
    t.equal(send2(a).fn, 'SUCCESS');
    const rx = spmc.readMemory(b.id, mb.rx, 4096);
    const dv = new DataView(rx.buffer, rx.byteOffset);
    t.equal(dv.getUint32(8, true), 40, 'offset');
    t.equal(dv.getUint16(12, true), b.id, 'receiver');
    t.equal(dv.getUint16(14, true), a.id, 'sender');
    t.equal(dv.getUint32(16, true), 3, 'size');
    t.same([...rx.subarray(24, 40)], [...parseUuid(SP1_UUID)], 'UUID');
    t.same([...rx.subarray(40, 43)], [1, 2, 3]);
    t.ok(
      rx.subarray(43).every((x) => x === 0),
      'tail zeroed',
    );
    t.equal(spmc.endpoint(b.id)!.mailbox!.rxState, 'full');
    t.same(interrupts, [[b.id, SRI_INTID]]);
    t.same(got(get(b)), [0n, 0n, 0n, 1n], 'w7 bit 0: hypervisor RX full (the sender is a VM)');
  });
  t.test('RX_RELEASE is DENIED until the framework notification is collected', async (t) => {
    const { a, b, ma } = pair();
    writeTx(a, ma.tx, { receiver: b.id }, bytes(9));
    send2(a);
    t.equal(errorOf(b.call({ fn: 'RX_RELEASE', vmId: 0 })), DENIED);
    get(b);
    t.equal(b.call({ fn: 'RX_RELEASE', vmId: 0 }).fn, 'SUCCESS');
  });
  t.test("a partition sender sets the SPM RX-full bit; MSG_WAIT releases a partition's RX", async (t) => {
    const { spmc, a, sp } = pair();
    const sp1 = sp(SP1);
    const m = sp1.mapMailbox();
    writeTx(sp1, m.tx, { receiver: a.id }, bytes(7));
    t.equal(send2(sp1).fn, 'SUCCESS');
    t.same(got(get(a)), [0n, 0n, 1n, 0n], 'w6 bit 0: SPM RX full');
    // And back: a VM's message to SP1; SP1 takes the NPI when the VM runs it.
    const wait = sp1.start({ fn: 'MSG_WAIT', retainRx: false });
    writeTx(a, spmc.endpoint(a.id)!.mailbox!.tx, { receiver: SP1 }, bytes(8));
    t.equal(send2(a).fn, 'SUCCESS');
    t.ok(isPending(a.start({ fn: 'RUN', target: { endpoint: SP1, vcpu: 0 } })));
    t.equal((await settle(wait)).fn, 'INTERRUPT');
    t.same(got(get(sp1)), [0n, 0n, 0n, 1n], 'from a VM: the hypervisor bit');
    t.ok(isPending(sp1.start({ fn: 'MSG_WAIT', retainRx: false })));
    t.equal(spmc.endpoint(SP1)!.mailbox!.rxState, 'empty', 'released by MSG_WAIT');
  });
  t.test('w1 naming a sender VM is INVALID_PARAMETERS (only the hypervisor forwards)', async (t) => {
    const { a, b, ma } = pair();
    writeTx(a, ma.tx, { receiver: b.id }, bytes(1));
    t.equal(errorOf(send2(a, false, a.id)), INVALID_PARAMETERS);
  });
  t.test('a v1.0 caller is NOT_SUPPORTED', async (t) => {
    const { spmc, b } = pair();
    const old = RawVm.attach(spmc, {}, FFA_VERSION_1_0);
    const m = old.mapMailbox();
    writeTx(old, m.tx, { receiver: b.id }, bytes(1));
    t.equal(errorOf(send2(old)), NOT_SUPPORTED);
  });
  t.test('no TX buffer is DENIED', async (t) => {
    const { spmc, b } = pair();
    const c = RawVm.attach(spmc);
    t.equal(errorOf(send2(c)), DENIED);
    t.equal(spmc.endpoint(b.id)!.mailbox!.rxState, 'empty');
  });
  t.test('a header sender other than the caller is INVALID_PARAMETERS', async (t) => {
    const { spmc, a, b, ma } = pair();
    writeTx(a, ma.tx, { sender: b.id, receiver: SP1 }, bytes(1));
    t.equal(errorOf(send2(a)), INVALID_PARAMETERS);
    t.equal(spmc.endpoint(SP1)!.notifications.framework.pending, 0n);
  });
  t.test('receiver == sender is INVALID_PARAMETERS', async (t) => {
    const { a, ma } = pair();
    writeTx(a, ma.tx, { receiver: a.id }, bytes(1));
    t.equal(errorOf(send2(a)), INVALID_PARAMETERS);
  });
  t.test('a VM asking to delay the SRI is INVALID_PARAMETERS; other flag bits too', async (t) => {
    const { a, b, ma } = pair();
    writeTx(a, ma.tx, { receiver: b.id }, bytes(1));
    t.equal(errorOf(send2(a, true)), INVALID_PARAMETERS);
    const r = a.regs([fid('MSG_SEND2'), 0, 1]);
    t.equal(Number(BigInt.asIntN(32, r[2]!)), INVALID_PARAMETERS, 'w2 bit 0 is MBZ');
  });
  t.test('an unknown receiver is INVALID_PARAMETERS', async (t) => {
    const { a, ma } = pair();
    writeTx(a, ma.tx, { receiver: 0x4321 }, bytes(1));
    t.equal(errorOf(send2(a)), INVALID_PARAMETERS);
  });
  t.test('a receiver without indirect messaging (SP3), or below v1.1, is DENIED', async (t) => {
    const { spmc, a, ma, sp } = pair();
    sp(SP3).mapMailbox();
    writeTx(a, ma.tx, { receiver: SP3 }, bytes(1));
    t.equal(errorOf(send2(a)), DENIED);
    const old = RawVm.attach(spmc, {}, FFA_VERSION_1_0);
    old.mapMailbox();
    writeTx(a, ma.tx, { receiver: old.id }, bytes(1));
    t.equal(errorOf(send2(a)), DENIED);
  });
  t.test('a sender without the indirect property is DENIED', async (t) => {
    const { spmc, b } = pair();
    const plain = RawVm.attach(spmc, { properties: 0x302 });
    const m = plain.mapMailbox();
    writeTx(plain, m.tx, { receiver: b.id }, bytes(1));
    t.equal(errorOf(send2(plain)), DENIED);
  });
  t.test('a receiver RX that is unmapped or full is BUSY, and nothing is written', async (t) => {
    const { spmc, a, b, ma, mb } = pair();
    const c = RawVm.attach(spmc);
    writeTx(a, ma.tx, { receiver: c.id }, bytes(1));
    t.equal(errorOf(send2(a)), BUSY, 'unmapped');
    writeTx(a, ma.tx, { receiver: b.id }, bytes(1, 1));
    t.equal(send2(a).fn, 'SUCCESS');
    writeTx(a, ma.tx, { receiver: b.id }, bytes(2, 2, 2));
    t.equal(errorOf(send2(a)), BUSY, 'full');
    const rx = spmc.readMemory(b.id, mb.rx, 43);
    t.same([...rx.subarray(40)], [1, 1, 0], 'the first message is intact');
  });
  t.test('a payload offset inside the header is INVALID_PARAMETERS (40 for v1.2, 20 for v1.1)', async (t) => {
    const { spmc, a, b, ma } = pair();
    writeTx(a, ma.tx, { receiver: b.id, offset: 24 }, bytes(1));
    t.equal(errorOf(send2(a)), INVALID_PARAMETERS, 'v1.2 sender, offset 24');
    const v11 = RawVm.attach(spmc, {}, FFA_VERSION_1_1);
    const m = v11.mapMailbox();
    writeTx(v11, m.tx, { receiver: b.id, offset: 16 }, bytes(1), 20);
    t.equal(errorOf(send2(v11)), INVALID_PARAMETERS, 'v1.1 sender, offset 16');
    writeTx(v11, m.tx, { receiver: b.id }, bytes(5, 6), 20);
    t.equal(send2(v11).fn, 'SUCCESS', 'v1.1 sender, 20-byte header');
    t.same([...spmc.readMemory(b.id, spmc.endpoint(b.id)!.mailbox!.rx + 20n, 2)], [5, 6]);
  });
  t.test('offset + size past the buffer is INVALID_PARAMETERS, overflow included', async (t) => {
    const { a, b, ma } = pair();
    writeTx(a, ma.tx, { receiver: b.id, size: 4096 - 40 + 1 }, bytes(1));
    t.equal(errorOf(send2(a)), INVALID_PARAMETERS);
    writeTx(a, ma.tx, { receiver: b.id, size: 0xffffffff }, bytes(1));
    t.equal(errorOf(send2(a)), INVALID_PARAMETERS);
    writeTx(a, ma.tx, { receiver: b.id, size: 4096 - 40 }, bytes(1));
    t.equal(send2(a).fn, 'SUCCESS', 'exactly one buffer');
  });
  t.test('a partition without notification support gets the message but no framework notification', async (t) => {
    const partitions = defaultManifest().map((p) => (p.id === SP2 ? { ...p, notificationSupport: false } : p));
    const s = setup(partitions);
    const m = s.vm.mapMailbox();
    s.sp(SP2).mapMailbox();
    writeTx(s.vm, m.tx, { receiver: SP2 }, bytes(1));
    t.equal(send2(s.vm).fn, 'SUCCESS');
    t.equal(s.spmc.endpoint(SP2)!.notifications.framework.pending, 0n);
    t.equal(s.sp(SP2).call({ fn: 'RX_RELEASE', vmId: 0 }).fn, 'SUCCESS');
  });
  t.test('16 senders to one receiver: one message delivered, the rest BUSY, until it releases', async (t) => {
    const { spmc, b, mb } = pair();
    const senders = Array.from({ length: 16 }, () => {
      const v = RawVm.attach(spmc);
      return { v, m: v.mapMailbox() };
    });
    const delivered: number[] = [];
    let busy = 0;
    for (let round = 0; delivered.length < 16 && round < 100; round++) {
      for (const [i, s] of senders.entries()) {
        if (delivered.includes(i)) continue;
        writeTx(s.v, s.m.tx, { receiver: b.id }, bytes(i));
        const r = send2(s.v);
        if (r.fn === 'SUCCESS') delivered.push(i);
        else if (errorOf(r) === BUSY) busy++;
        else t.fail(`unexpected ${r.fn}`);
      }
      // The receiver reads one message and releases.
      const rx = spmc.readMemory(b.id, mb.rx, 41);
      t.equal(rx[40], delivered[delivered.length - 1], `round ${round}: the last SUCCESS is what RX holds`);
      get(b);
      b.call({ fn: 'RX_RELEASE', vmId: 0 });
    }
    t.same(
      [...delivered].sort((x, y) => x - y),
      [...Array(16).keys()],
      'each delivered exactly once',
    );
    t.equal(busy, (16 * 17) / 2 - 16, 'every other attempt was BUSY');
  });
});

t.test('FFA_CONSOLE_LOG', async (t) => {
  const pack = (s: string, regs: number, bytesPer: number): bigint[] => {
    const out = Array.from({ length: regs }, () => 0n);
    [...s].forEach((c, i) => (out[Math.floor(i / bytesPer)]! |= BigInt(c.charCodeAt(0)) << BigInt(8 * (i % bytesPer))));
    return out;
  };
  t.test('lines are kept per partition and told to observers', async (t) => {
    const { spmc, sp, lines } = setup();
    const sp1 = sp(SP1);
    t.equal(sp1.call({ fn: 'CONSOLE_LOG', width: 64, length: 9, chars: new TextEncoder().encode('hello\nwor') }).fn, 'SUCCESS');
    t.equal(sp(SP2).call({ fn: 'CONSOLE_LOG', width: 32, length: 3, chars: new TextEncoder().encode('x\ny') }).fn, 'SUCCESS');
    sp1.call({ fn: 'CONSOLE_LOG', width: 64, length: 3, chars: new TextEncoder().encode('ld\n') });
    t.same(lines, [
      [SP1, 'hello'],
      [SP2, 'x'],
      [SP1, 'world'],
    ]);
    t.same(spmc.endpoint(SP1)!.console.lines, ['hello', 'world']);
    t.equal(spmc.endpoint(SP2)!.console.partial, 'y', 'an unfinished line waits');
  });
  t.test('the register packing: 32-bit takes w2..w7 low halves, 64-bit x2..x17 at v1.2', async (t) => {
    const { sp, lines } = setup();
    const text = 'abcdefghijklmnopqrstuvw\n'; // 24 characters
    sp(SP1).regs([fid('CONSOLE_LOG', 32), 24, ...pack(text, 6, 4)]);
    const long = `${'z'.repeat(127)}\n`;
    sp(SP1).regs([fid('CONSOLE_LOG', 64), 128, ...pack(long, 16, 8)]);
    t.same(
      lines.map((l) => l[1]),
      [text.trimEnd(), 'z'.repeat(127)],
    );
  });
  t.test('a count of 0 or above the maximum is INVALID_PARAMETERS', async (t) => {
    const { sp } = setup();
    const c = (width: 32 | 64, length: number) => errorOf(sp(SP1).call({ fn: 'CONSOLE_LOG', width, length, chars: new Uint8Array(128) }));
    t.equal(c(64, 0), INVALID_PARAMETERS);
    t.equal(c(32, 25), INVALID_PARAMETERS, '24 at most in w2..w7');
    t.equal(c(64, 129), INVALID_PARAMETERS, '128 at most in x2..x17');
  });
  t.test("a v1.1 partition's 64-bit form carries 48 characters", async (t) => {
    const partitions = defaultManifest().map((p) => (p.id === SP2 ? { ...p, ffaVersion: FFA_VERSION_1_1, properties: p.properties & ~0x600 } : p));
    const { sp } = setup(partitions);
    const sp2 = new RawVm(sp(SP2).spmc, SP2, FFA_VERSION_1_1);
    t.equal(sp2.call({ fn: 'CONSOLE_LOG', width: 64, length: 48, chars: new Uint8Array(48).fill(0x41) }).fn, 'SUCCESS');
    t.equal(errorOf(sp2.call({ fn: 'CONSOLE_LOG', width: 64, length: 49, chars: new Uint8Array(48).fill(0x41) })), INVALID_PARAMETERS);
  });
  t.test('a VM logs to the hypervisor, which the server is (Hafnium api_ffa_console_log)', async (t) => {
    const { spmc, vm, lines } = setup();
    t.equal(vm.call({ fn: 'CONSOLE_LOG', width: 64, length: 3, chars: new TextEncoder().encode('vm\n') }).fn, 'SUCCESS');
    t.same(lines, [[vm.id, 'vm']]);
    t.same(spmc.endpoint(vm.id)!.console.lines, ['vm']);
  });
});

t.test('a VM leaving forgets its bindings; a remote partition leaving starts afresh', async (t) => {
  const { spmc, vm, sp } = setup();
  const other = RawVm.attach(spmc);
  bind(vm, other.id, 1n);
  bind(sp(SP1), other.id, 2n);
  spmc.detach(other.id);
  const again = RawVm.attach(spmc, { endpointId: other.id });
  t.equal(errorOf(set(again, vm.id, 1n)), DENIED, 'the new VM with the same ID was never bound');
  t.equal(errorOf(set(again, SP1, 2n)), DENIED);
  t.equal(newSpmc().endpoint(SP1)!.notifications.enabled, true, 'default partitions take notifications');
});
