// The TypeScript driver under the main injections, in process and over gRPC: each operation works,
// or fails with the errno the Linux driver would return, and leaves clean state behind (no RX
// buffer left owned, its locks free, no memory transaction left behind).

import t, { type Test } from 'tap';
import { FFA_PAGE_SIZE, fid, MEM_PERM, splitU64 } from '../proto/ffa/index.js';
import { FfaDriver } from '../client-driver/driver.js';
import type { Connector } from '../client-driver/transport/transport.js';
import { EmulatedVm } from '../client-driver/vm.js';
import { defaultManifest } from '../server/manifest.js';
import { PARTITION_COMMANDS as CMD } from '../server/partitions/commands.js';
import { startBuiltinPartitions } from '../server/partitions/index.js';
import { Spmc } from '../server/spmc/spmc.js';
import { errnoOf } from './helpers.js';
import { faultStack, SP1, SP2, SP3, type Stack } from './faults-stack.js';

async function started() {
  const s = await faultStack(new Spmc({ partitions: defaultManifest() }));
  await startBuiltinPartitions(s.core, (id, e) => {
    throw new Error(`partition ${id} failed: ${String(e)}`);
  });
  return s;
}

async function driver(c: Connector, opts: ConstructorParameters<typeof FfaDriver>[1] = {}, init = true) {
  const d = new FfaDriver(await EmulatedVm.attach(c, { name: 'drv', vcpuCount: 2 }), opts);
  if (init) await d.init();
  return d;
}

/** Nothing left behind: RX not owned by the VM, both buffer locks free, no transaction pending. */
function clean(t: Test, s: Stack, d: FfaDriver, what: string) {
  t.equal(s.spmc.endpoint(d.vmId)?.mailbox?.rxState ?? 'empty', 'empty', `${what}: RX not left owned`);
  t.notOk(d.rxLock.isLocked(), `${what}: RX lock released`);
  t.notOk(d.txLock.isLocked(), `${what}: TX lock released`);
  t.equal(s.spmc.state.shares.byHandle.size, 0, `${what}: no transaction left`);
}

for (const kind of ['in-process', 'grpc'] as const) {
  t.test(`the driver under injections, ${kind}`, async (t) => {
    const s = await started();
    t.teardown(s.stop);
    const c = s.connector(kind);

    await t.test('init: RXTX_MAP BUSY once fails init with EBUSY, unwound; init again works', async (t) => {
      s.faults.load({ rules: [{ id: 'map-busy', match: { function: 'RXTX_MAP' }, action: { error: 'BUSY' }, times: 1 }] });
      const d = await driver(c, {}, false);
      t.equal(await errnoOf(d.init()), 'EBUSY');
      t.equal(s.spmc.endpoint(d.vmId)?.mailbox, undefined, 'no buffers left mapped');
      await d.init();
      clean(t, s, d, 'after init');
      await d.exit();
      s.faults.clear();
    });

    const d = await driver(c);
    t.teardown(() => d.exit());

    await t.test('direct request answered BUSY twice: EBUSY each time (no retry), then it works', async (t) => {
      s.faults.load({ rules: [{ id: 'busy-twice', match: { caller: d.vmId, function: 'MSG_SEND_DIRECT_REQ' }, action: { error: 'BUSY' }, times: 2 }] });
      t.equal(await errnoOf(d.sendDirectReq(SP1, [BigInt(CMD.ECHO), 1n])), 'EBUSY');
      t.equal(await errnoOf(d.sendDirectReq(SP1, [BigInt(CMD.ECHO), 1n])), 'EBUSY');
      t.same((await d.sendDirectReq(SP1, [BigInt(CMD.ECHO), 3n])).slice(0, 2), [BigInt(CMD.ECHO), 3n]);
      clean(t, s, d, 'BUSY');
    });

    await t.test('preempted (FFA_INTERRUPT): the driver runs the partition x1 names and gets the response', async (t) => {
      s.faults.load({ rules: [{ id: 'irq', match: { caller: d.vmId, target: SP3 }, action: { preempt: true }, times: 1 }] });
      t.same((await d.sendDirectReq(SP3, [BigInt(CMD.ECHO), 4n])).slice(0, 2), [BigInt(CMD.ECHO), 4n]);
      t.equal(s.faults.list().rules[0]!.fired, 1);
    });

    await t.test('the partition yields mid-request: the driver runs it again and gets the response', async (t) => {
      s.faults.load({ rules: [{ id: 'yld', match: { caller: SP3, function: 'MSG_SEND_DIRECT_RESP' }, action: { yield: true }, times: 1 }] });
      t.same((await d.sendDirectReq(SP3, [BigInt(CMD.ECHO), 5n])).slice(0, 2), [BigInt(CMD.ECHO), 5n]);
      t.equal(s.faults.list().rules[0]!.fired, 1);
    });

    await t.test('answers delayed, x8..x17 clobbered: every op works', async (t) => {
      s.faults.load({
        rules: [
          { id: 'slow', match: { caller: d.vmId, every: 2 }, action: { delay: 2 } },
          { id: 'x8', match: { caller: d.vmId }, action: { clobber: true } },
        ],
      });
      t.same((await d.sendDirectReq(SP2, [BigInt(CMD.ECHO), 6n])).slice(0, 2), [BigInt(CMD.ECHO), 6n]);
      t.ok((await d.partitionInfoGet('00000000-0000-0000-0000-000000000000')).length >= 4);
      const page = d.vm.pages.alloc(1)!;
      const handle = await d.memShare({ receivers: [{ id: SP2, permissions: MEM_PERM.DATA_RW }], regions: [{ address: page, pageCount: 1 }] });
      t.same((await d.sendDirectReq(SP2, [BigInt(CMD.MEM), ...splitU64(handle), 0x5an, 1n]))[1], 0n, 'SP2 retrieved, wrote and relinquished');
      await d.memReclaim(handle);
      d.vm.pages.release(page, 1);
      clean(t, s, d, 'delay and clobber');
    });

    await t.test('memory share BUSY: EBUSY, nothing left to reclaim, the TX lock free', async (t) => {
      s.faults.load({ rules: [{ id: 'share-busy', match: { function: 'MEM_SHARE' }, action: { error: 'BUSY' }, times: 1 }] });
      const page = d.vm.pages.alloc(1)!;
      const args = { receivers: [{ id: SP2, permissions: MEM_PERM.DATA_RW }], regions: [{ address: page, pageCount: 1 }] };
      t.equal(await errnoOf(d.memShare(args)), 'EBUSY');
      clean(t, s, d, 'share BUSY');
      await d.memReclaim(await d.memShare(args));
      d.vm.pages.release(page, 1);
      clean(t, s, d, 'share after');
    });

    await t.test('retrieve fragments capped: the partition retrieves in small MEM_FRAG_RX steps', async (t) => {
      s.faults.load({ rules: [{ id: 'frag', match: { caller: SP1 }, action: { fragmentCap: 128 } }] });
      const pages = Array.from({ length: 16 }, () => d.vm.pages.alloc(1)!);
      // Every other page: eight constituents, more than one small fragment holds.
      const regions = pages.filter((_, i) => i % 2 === 0).map((address) => ({ address, pageCount: 1 }));
      for (const r of regions) await d.vm.write(r.address, new Uint8Array(FFA_PAGE_SIZE));
      const handle = await d.memShare({ receivers: [{ id: SP1, permissions: MEM_PERM.DATA_RW }], regions });
      t.same((await d.sendDirectReq(SP1, [BigInt(CMD.MEM), ...splitU64(handle), 0x33n, 1n]))[1], 0n, 'SP1 retrieved it');
      t.ok(s.faults.list().rules[0]!.fired >= 2, `capped on the retrieve and ${s.faults.list().rules[0]!.fired - 1} MEM_FRAG_RX`);
      t.equal((await d.vm.read(regions[1]!.address, 1))[0], 0x33, 'and wrote through every constituent');
      await d.memReclaim(handle);
      for (const p of pages) d.vm.pages.release(p, 1);
      clean(t, s, d, 'fragments');
    });

    await t.test('the partition aborted: ECANCELED, then EBUSY as the lifecycle says', async (t) => {
      s.faults.load({ rules: [{ id: 'die', match: { caller: d.vmId, target: SP3 }, action: { abort: 'target' }, times: 1 }] });
      t.equal(await errnoOf(d.sendDirectReq(SP3, [BigInt(CMD.ECHO)])), 'ECANCELED');
      t.equal(await errnoOf(d.sendDirectReq(SP3, [BigInt(CMD.ECHO)])), 'EBUSY');
      s.faults.clear();
      clean(t, s, d, 'abort');
    });

    await t.test('a notification dropped: the sender is told it worked', async (t) => {
      await d.sendDirectReq(SP1, [BigInt(CMD.BIND), BigInt(d.vmId), 1n << 5n, 0n]);
      s.faults.load({ rules: [{ id: 'drop', match: { caller: d.vmId }, action: { notification: 'drop' } }] });
      await d.notifier.notifySend(SP1, false, 5);
      t.equal(s.spmc.endpoint(SP1)!.notifications.fromVm.pending & (1n << 5n), 0n, 'nothing arrived');
      s.faults.clear();
    });
    s.faults.clear();
  });
}

t.test('PARTITION_INFO_GET through RX (no register form) while RX is held full: EBUSY, RX lock released', async (t) => {
  const s = await started();
  t.teardown(s.stop);
  const d = await driver(s.connector('in-process'));
  t.teardown(() => d.exit());
  s.faults.load({
    rules: [
      // An SPMC without PARTITION_INFO_GET_REGS (FEATURES says so): the driver takes the RX form.
      { id: 'no-regs', match: { caller: d.vmId, function: 'FEATURES', args: { x1: fid('PARTITION_INFO_GET_REGS', 64) } }, action: { error: 'NOT_SUPPORTED' } },
      { id: 'rx-full', match: { caller: d.vmId, function: 'PARTITION_INFO_GET' }, action: { holdRxFull: 'caller' } },
    ],
  });
  t.equal(await errnoOf(d.partitionInfoGet('00000000-0000-0000-0000-000000000000')), 'EBUSY', 'busy, not "no such partition"');
  t.notOk(d.rxLock.isLocked());
  s.faults.remove('rx-full');
  t.ok((await d.partitionInfoGet('00000000-0000-0000-0000-000000000000')).length >= 4, 'works once released');
  clean(t, s, d, 'RX held');
});
