// The driver's init, exit and info ops against the in-process SPMC, plus its error handling
// against a firmware that answers differently.

import t from 'tap';
import {
  FFA_ERRORS,
  FFA_PAGE_SIZE,
  FFA_VERSION_1_0,
  FFA_VERSION_1_1,
  FFA_VERSION_1_2,
  fid,
  formatUuid,
  hex,
  makeVersion,
  normalizeFid,
  parseUuid,
  type Registers,
  SMCCC_VERSION_FID,
  toRegisters,
  UUID_NIL,
} from '../proto/ffa/index.js';
import { type FfaDevice } from '../client-driver/bus.js';
import { FfaDriver } from '../client-driver/driver.js';
import { FfaDriverError, ffaToErrno } from '../client-driver/errno.js';
import { InProcessConnector } from '../server/session/in-process.js';
import type { Transport } from '../client-driver/transport/transport.js';
import { EmulatedVm } from '../client-driver/vm.js';
import { errnoOf, newSpmc, SP1_UUID, SP2_UUID, SP3_UUID } from './helpers.js';

async function vmOn(spmc = newSpmc(), opts = {}) {
  const vm = await EmulatedVm.attach(new InProcessConnector(spmc), { vcpuCount: 2, ...opts });
  return { spmc, vm };
}

t.test('init follows the Linux order and leaves the VM ready', async (t) => {
  const { spmc, vm } = await vmOn();
  const calls: string[] = [];
  const inner = vm.transport;
  const spy: Transport = {
    ...inner,
    invoke: (x, vcpu) => {
      calls.push(hex(normalizeFid(x[0]!)));
      return inner.invoke(x, vcpu);
    },
    readMemory: (a, l) => inner.readMemory(a, l),
    writeMemory: (a, d) => inner.writeMemory(a, d),
    detach: () => inner.detach(),
    connectInterrupts: (h, lost) => inner.connectInterrupts(h, lost),
  };
  Object.defineProperty(vm, 'transport', { value: spy });
  const drv = new FfaDriver(vm);
  await drv.init();
  t.same(
    calls.slice(0, 6),
    [SMCCC_VERSION_FID, fid('VERSION'), fid('ID_GET'), fid('FEATURES'), fid('RXTX_MAP', 64), fid('FEATURES')].map(hex),
    'SMCCC, VERSION, ID_GET, FEATURES(RXTX_MAP), RXTX_MAP_64, FEATURES',
  );
  t.equal(drv.version, FFA_VERSION_1_2);
  t.equal(drv.vmId, vm.id);
  t.equal(drv.rxtxBufSize, FFA_PAGE_SIZE, 'the SPMC minimum');
  t.equal(drv.notificationsEnabled, true, 'SRI reported: notifications on, without a bitmap of its own');
  // Hafnium's FEATURES reports BITMAP_CREATE to every caller, but only the hypervisor may call it:
  // the driver takes the NOT_SUPPORTED as "the hypervisor made it" and carries on.
  t.ok(calls.includes(hex(fid('NOTIFICATION_BITMAP_CREATE'))), 'BITMAP_CREATE reported, so it is tried');
  t.notOk(calls.includes(hex(fid('NOTIFICATION_BITMAP_DESTROY'))), 'and, never created, never destroyed');
  t.equal(drv.memOpsNative, true, 'FEATURES(MEM_LEND_64) succeeded');
  const mb = spmc.endpoint(vm.id)!.mailbox!;
  t.equal(mb.rx, drv.rxBuffer);
  t.equal(mb.tx, drv.txBuffer);
  t.same(
    drv.bus.devices().map((d) => [d.vmId, formatUuid(d.uuid)]),
    [
      [vm.id, formatUuid(UUID_NIL)],
      [0x8001, SP1_UUID],
      [0x8002, SP2_UUID],
      [0x8003, SP3_UUID],
      [0x8004, 'a4cd5826-e113-67cf-f910-cd491368ef31'],
    ],
  );
  t.ok(
    drv.bus.devices().every((d) => !d.mode32bit),
    'AArch64 partitions use SMC64',
  );
  t.equal(spmc.endpoint(vm.id)!.mailbox!.rxState, 'empty', 'RX released after discovery');
  await drv.exit();
});

t.test('client drivers bind by UUID and are removed at exit', async (t) => {
  const { spmc, vm } = await vmOn();
  const drv = new FfaDriver(vm);
  await drv.init();
  const probed: FfaDevice[] = [];
  const removed: number[] = [];
  await drv.bus.registerDriver({
    name: 'sp2-client',
    idTable: [SP2_UUID],
    probe: (dev) => void probed.push(dev),
    remove: (dev) => void removed.push(dev.vmId),
  });
  t.same(
    probed.map((d) => d.vmId),
    [0x8002],
  );
  t.equal(probed[0]!.driver?.name, 'sp2-client');
  await t.rejects(drv.bus.registerDriver({ name: 'bad', idTable: [], probe: () => {} }), FfaDriverError);

  await drv.exit();
  t.same(removed, [0x8002]);
  t.equal(drv.bus.devices().length, 0);
  t.equal(spmc.endpoint(vm.id)!.mailbox, undefined, 'RXTX_UNMAP issued');
  t.equal(vm.pages.alloc(1), vm.ramBase, 'buffers freed');
});

t.test('partition_info_get', async (t) => {
  const { vm } = await vmOn();
  const drv = new FfaDriver(vm);
  await drv.init();
  const [sp3] = await drv.partitionInfoGet(SP3_UUID);
  t.equal(sp3!.id, 0x8003);
  t.equal(sp3!.execContexts, 1);
  t.equal(await errnoOf(drv.partitionInfoGet('11111111-2222-3333-4444-555555555555')), 'ENOENT');
  t.equal(await errnoOf(drv.partitionInfoGet('not a uuid')), 'ENODEV');
  t.equal((await drv.partitionInfoGet('00000000-0000-0000-0000-000000000000')).length, 5);
  // The RX form gives what the register form gives.
  const viaRx = await drv.partitionInfoGetRx(UUID_NIL, 16);
  const viaRegs = await drv.partitionInfoGetRegs(UUID_NIL, 16);
  t.same(viaRx.entries, viaRegs.entries);
  t.equal(viaRx.count, 5);
  await drv.exit();
});

t.test('the Rx lock serialises RX users of one driver', async (t) => {
  const { vm } = await vmOn();
  const drv = new FfaDriver(vm);
  await drv.init();
  const results = await Promise.all(Array.from({ length: 12 }, () => drv.partitionInfoGetRx(UUID_NIL, 16)));
  t.ok(
    results.every((r) => r.entries?.length === 5),
    'no BUSY: each fill was released before the next',
  );
  await drv.exit();
});

t.test('older drivers: v1.1 and v1.0', async (t) => {
  const { spmc, vm } = await vmOn();
  const v11 = new FfaDriver(vm, { version: FFA_VERSION_1_1 });
  await v11.init();
  t.equal(v11.version, FFA_VERSION_1_1);
  t.equal(spmc.endpoint(vm.id)!.version, FFA_VERSION_1_1, 'the SPMC uses the v1.1 layouts for it');
  t.equal((await v11.partitionInfoGetRx(parseUuid(SP1_UUID), 4)).entries![0]!.id, 0x8001);
  await v11.exit();

  const other = (await vmOn(spmc)).vm;
  const v10 = new FfaDriver(other, { version: FFA_VERSION_1_0 });
  await v10.init();
  t.equal(v10.version, FFA_VERSION_1_0);
  // FEATURES reports PARTITION_INFO_GET_REGS (the SPMC's v1.2) to a v1.0 caller too, and Linux then
  // uses it; the RX form gives a v1.0 caller 8-byte descriptors without UUIDs.
  const rx = await v10.partitionInfoGetRx(UUID_NIL, 8);
  t.ok(rx.entries!.length > 0 && rx.entries!.every((d) => d.uuid.every((b) => b === 0)), 'v1.0 RX descriptors carry no UUID');
  const probed: number[] = [];
  await v10.bus.registerDriver({ name: 'sp1-client', idTable: [SP1_UUID], probe: (d) => void probed.push(d.vmId) });
  t.same(probed, [0x8001], 'the UUID was resolved by asking the SPMC');
  t.equal(formatUuid(v10.bus.devices().find((d) => d.vmId === 0x8001)!.uuid), SP1_UUID);
  await v10.exit();
});

t.test('init failure unwinds in reverse order', async (t) => {
  const { spmc, vm } = await vmOn();
  // Map the mailbox behind the driver's back: its RXTX_MAP is then DENIED.
  const page = vm.ramBase + 0x100000n;
  spmc.handle(vm.id, 0, toRegisters([fid('VERSION'), FFA_VERSION_1_2]));
  spmc.handle(vm.id, 0, toRegisters([fid('RXTX_MAP', 64), page, page + BigInt(FFA_PAGE_SIZE), 1]));
  const drv = new FfaDriver(vm);
  t.equal(await errnoOf(drv.init()), 'EACCES');
  t.equal(vm.pages.alloc(1), vm.ramBase, 'RX and TX buffers were freed');
});

t.test('a version locked by earlier calls makes init fail cleanly', async (t) => {
  const { spmc, vm } = await vmOn();
  spmc.handle(vm.id, 0, toRegisters([fid('ID_GET')])); // locks the default v1.0
  t.equal(await errnoOf(new FfaDriver(vm).init()), 'EOPNOTSUPP');
  const v10 = new FfaDriver(vm, { version: FFA_VERSION_1_0 });
  await v10.init();
  t.equal(v10.version, FFA_VERSION_1_0, 'asking for the locked version succeeds');
  await v10.exit();
});

/** The in-process SPMC behind a firmware that rewrites some answers. */
async function firmware(rewrite: (x: Registers, out: Registers) => Registers) {
  const { vm } = await vmOn();
  const inner = vm.transport;
  Object.defineProperty(vm, 'transport', {
    value: {
      ...inner,
      invoke: async (x: Registers, vcpu?: number) => rewrite(x, await inner.invoke(x, vcpu)),
      readMemory: (a: bigint, l: number) => inner.readMemory(a, l),
      detach: () => inner.detach(),
      connectInterrupts: (h: (intid: number, vcpu: number) => void) => inner.connectInterrupts(h),
    } satisfies Partial<Transport>,
  });
  return vm;
}

const answerTo = (fidValue: number, w0: number) => (x: Registers, out: Registers) => (normalizeFid(x[0]!) === fidValue ? toRegisters([w0]) : out);

t.test('transport and version checks', async (t) => {
  t.equal(await errnoOf(new FfaDriver(await firmware(answerTo(SMCCC_VERSION_FID, 0x10001))).init()), 'EOPNOTSUPP', 'SMCCC 1.1');
  t.equal(await errnoOf(new FfaDriver(await firmware(answerTo(SMCCC_VERSION_FID, 0xffffffff))).init()), 'EOPNOTSUPP', 'SMCCC 1.0');
  t.equal(await errnoOf(new FfaDriver(await firmware(answerTo(fid('VERSION'), 0xffffffff))).init()), 'EOPNOTSUPP', 'FFA_VERSION -1');
  t.equal(await errnoOf(new FfaDriver(await firmware(answerTo(fid('VERSION'), makeVersion(2, 0)))).init()), 'EINVAL', 'newer major');
  t.equal(await errnoOf(new FfaDriver(await firmware(answerTo(fid('VERSION'), 0x0000ffff))).init()), 'EINVAL', 'below 1.0');
  const newer = new FfaDriver(await firmware(answerTo(fid('VERSION'), makeVersion(1, 3))));
  await newer.init();
  t.equal(newer.version, FFA_VERSION_1_2, 'a newer minor is downgraded to ours');
  const older = new FfaDriver(await firmware(answerTo(fid('VERSION'), FFA_VERSION_1_1)));
  await older.init().catch(() => {});
  t.equal(older.version, FFA_VERSION_1_1, "an older firmware's version is used");
  t.equal(await errnoOf(new FfaDriver(await firmware(answerTo(fid('ID_GET'), fid('ERROR')))).init()), 'ENODEV', 'ID_GET fails');
});

t.test('FF-A errors map to errno, bounded by the table', async (t) => {
  t.equal(ffaToErrno(FFA_ERRORS.NOT_SUPPORTED), 'EOPNOTSUPP');
  t.equal(ffaToErrno(FFA_ERRORS.INVALID_PARAMETERS), 'EINVAL');
  t.equal(ffaToErrno(FFA_ERRORS.NO_MEMORY), 'ENOMEM');
  t.equal(ffaToErrno(FFA_ERRORS.BUSY), 'EBUSY');
  t.equal(ffaToErrno(FFA_ERRORS.INTERRUPTED), 'EINTR');
  t.equal(ffaToErrno(FFA_ERRORS.DENIED), 'EACCES');
  t.equal(ffaToErrno(FFA_ERRORS.RETRY), 'EAGAIN');
  t.equal(ffaToErrno(FFA_ERRORS.ABORTED), 'ECANCELED');
  t.equal(ffaToErrno(FFA_ERRORS.NO_DATA), 'ENODATA');
  t.equal(ffaToErrno(FFA_ERRORS.NOT_READY), 'EAGAIN');
  t.equal(ffaToErrno(-11), 'EINVAL', 'past the end of the table');
  t.equal(ffaToErrno(-1000), 'EINVAL');
  t.equal(ffaToErrno(0), 'EINVAL', 'success is not an error code');
  t.equal(ffaToErrno(3), 'EINVAL', 'positive');
  t.equal(new FfaDriverError('EBUSY', 'x').code, -16);
});

t.test('a driver that lost its SPMC gets EIO, not a crash', async (t) => {
  const { vm } = await vmOn();
  const drv = new FfaDriver(vm);
  await drv.init();
  await vm.detach();
  t.equal(await errnoOf(drv.partitionInfoGet(SP1_UUID)), 'EIO');
  t.equal(await errnoOf(drv.exit()), 'EIO', 'exit still reports the failed unmap');
});
