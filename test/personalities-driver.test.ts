// The TypeScript driver under every personality, in-process and over gRPC: init and its ops either
// work or fail with the right errno, and leave clean state (RX given back, locks free, no memory
// transaction left behind).

import t from 'tap';
import { FFA_PAGE_SIZE, FFA_VERSION_1_1, FFA_VERSION_1_2, type FfaVersion, formatUuid, MEM_PERM, parseUuid, splitU64, UUID_NIL } from '../proto/ffa/index.js';
import { FfaDriver } from '../client-driver/driver.js';
import type { Connector } from '../client-driver/transport/transport.js';
import { GrpcConnector } from '../client-driver/transport/grpc.js';
import { EmulatedVm } from '../client-driver/vm.js';
import { SpmcGrpcServer } from '../server/grpc/server.js';
import { defaultManifest } from '../server/manifest.js';
import { startBuiltinPartitions } from '../server/partitions/index.js';
import { PARTITION_COMMANDS as CMD } from '../server/partitions/commands.js';
import { installPersonality, PERSONALITY_NAMES, personalityOrThrow } from '../server/personalities/index.js';
import { SessionCore } from '../server/session/core.js';
import { InProcessConnector } from '../server/session/in-process.js';
import { Spmc } from '../server/spmc/spmc.js';
import { errnoOf, SP1_UUID } from './helpers.js';

const SP1 = 0x8001;
const SPS = [0x8001, 0x8002, 0x8003, 0x8004];
const RW = MEM_PERM.DATA_RW;

/** What the driver finds under each personality, and how each op ends ('none': it works). */
interface Expected {
  version: FfaVersion;
  physical: boolean;
  rxtxBufSize: number;
  notifications: boolean;
  req2: boolean;
  lend: string;
  donate: string;
}

const HAFNIUM: Expected = {
  version: FFA_VERSION_1_2,
  physical: false,
  rxtxBufSize: FFA_PAGE_SIZE,
  notifications: true,
  req2: true,
  lend: 'none',
  donate: 'none',
};

const EXPECTED: Record<string, Expected> = {
  hafnium: HAFNIUM,
  'hafnium-2.14': HAFNIUM,
  'tf-a-el3-spmc': { ...HAFNIUM, physical: true, notifications: false, donate: 'EOPNOTSUPP' },
  optee: { ...HAFNIUM, version: FFA_VERSION_1_1, physical: true, req2: false, lend: 'EOPNOTSUPP', donate: 'EOPNOTSUPP' },
  physical: { ...HAFNIUM, physical: true },
  'descriptor-48': HAFNIUM,
  'partition-info-size-zero': HAFNIUM,
  'min-rxtx-64k': { ...HAFNIUM, rxtxBufSize: 0x10000 },
  'clobber-x8-x17': HAFNIUM,
};

async function serving(name: string, via: 'in-process' | 'grpc') {
  const personality = personalityOrThrow(name);
  const spmc = new Spmc({ partitions: defaultManifest(), profile: personality.profile, handleSeed: 0x77n });
  const core = SessionCore.for(spmc);
  await startBuiltinPartitions(core, (id, e) => {
    throw new Error(`partition ${id.toString(16)} failed: ${String(e)}`);
  });
  installPersonality(core, personality);
  if (via === 'in-process') return { spmc, connector: new InProcessConnector(core) as Connector, stop: async () => {} };
  const server = new SpmcGrpcServer(core);
  const grpc = new GrpcConnector(`127.0.0.1:${await server.listen('127.0.0.1:0')}`);
  return {
    spmc,
    connector: grpc as Connector,
    stop: async () => {
      grpc.close();
      await server.stop(200);
    },
  };
}

t.test('every personality has its expectations here', async (t) => {
  t.same(Object.keys(EXPECTED).sort(), [...PERSONALITY_NAMES].sort());
});

for (const via of ['in-process', 'grpc'] as const) {
  for (const name of PERSONALITY_NAMES) {
    t.test(`${via}: the driver under ${name}`, async (t) => {
      const want = EXPECTED[name]!;
      const { spmc, connector, stop } = await serving(name, via);
      t.teardown(stop);
      const vm = await EmulatedVm.attach(connector, { vcpuCount: 2 });
      // One page taken first: the RX/TX buffers cannot be aligned to 64 KiB by chance.
      vm.pages.alloc(1);
      const drv = new FfaDriver(vm);
      const clean = (what: string) => {
        t.equal(spmc.endpoint(vm.id)?.mailbox?.rxState, 'empty', `${what}: RX is the SPMC's again`);
        t.notOk(drv.rxLock.isLocked() || drv.txLock.isLocked(), `${what}: locks released`);
        t.equal(spmc.state.shares.byHandle.size, 0, `${what}: no memory transaction left`);
      };

      await drv.init();
      t.equal(drv.version, want.version, 'negotiated version');
      t.equal(drv.vmId, want.physical ? 0 : vm.id, 'ID_GET');
      t.equal(drv.rxtxBufSize, want.rxtxBufSize, 'RX/TX size from FEATURES(RXTX_MAP)');
      t.equal(drv.rxBuffer % BigInt(want.rxtxBufSize), 0n, 'RX aligned to the minimum');
      t.equal(drv.notificationsEnabled, want.notifications, 'notifications');
      t.equal(drv.msgDirectReq2Supported, want.req2, 'DIRECT_REQ2');
      t.same(
        drv.bus
          .devices()
          .map((d) => d.vmId)
          .sort((a, b) => a - b),
        [drv.vmId, ...SPS],
        'itself and the four SPs as devices',
      );
      t.equal(formatUuid(drv.bus.devices().find((d) => d.vmId === SP1)!.uuid), SP1_UUID, 'with their UUIDs');
      clean('init');

      const infos = await drv.partitionInfoGet(SP1_UUID);
      t.same(
        infos.map((i) => i.id),
        [SP1],
      );
      // The RX path too, whatever the driver chose at init (48-byte strides, w3 = 0 ...).
      const { count } = await drv.partitionInfoGetRx(UUID_NIL);
      const rx = await drv.partitionInfoGetRx(UUID_NIL, count);
      t.same(
        rx.entries?.filter((e) => e.id >= 0x8000).map((e) => [e.id, formatUuid(e.uuid)]),
        SPS.map((id) => [id, formatUuid(spmc.partition(id)!.uuids[0]!)]),
        'PARTITION_INFO_GET through RX reads every SP right',
      );
      clean('partition info');

      t.same(await drv.sendDirectReq(SP1, [BigInt(CMD.ECHO), 1n, 2n, 3n, 4n]), [BigInt(CMD.ECHO), 1n, 2n, 3n, 4n], 'a direct request is echoed');
      const req2 = drv.sendDirectReq2(SP1, [5n, 6n], { uuid: parseUuid(SP1_UUID) });
      if (want.req2) t.same((await req2).slice(0, 2), [5n, 6n], 'DIRECT_REQ2 is echoed');
      else t.equal(await errnoOf(req2), 'EOPNOTSUPP', 'DIRECT_REQ2 is not supported');

      const pages = vm.pages.alloc(2)!;
      const regions = [{ address: pages, pageCount: 2 }];
      const share = await drv.memShare({ receivers: [{ id: SP1, permissions: RW }], regions });
      const [, status] = await drv.sendDirectReq(SP1, [BigInt(CMD.MEM), ...splitU64(share), 0x5an, 1n]);
      t.equal(status, 0n, 'SP1 retrieved, wrote and relinquished the shared pages');
      await drv.memReclaim(share);
      clean('share');

      const lend = drv.memLend({ receivers: [{ id: SP1, permissions: RW }], regions });
      if (want.lend === 'none') await drv.memReclaim(await lend);
      else t.equal(await errnoOf(lend), want.lend, 'lend');
      clean('lend');
      if (want.donate !== 'none') {
        t.equal(await errnoOf(drv.memDonate({ receivers: [{ id: SP1, permissions: RW }], regions })), want.donate, 'donate');
        clean('donate');
      }

      await drv.exit();
      t.equal(spmc.endpoint(vm.id)?.mailbox, undefined, 'exit unmapped RX/TX');
      t.same(drv.bus.devices(), [], 'and unregistered the devices');
      await vm.transport.detach();
    });
  }
}

t.test('an older driver (v1.1) under partition-info-size-zero reads descriptors by its version when w3 is 0', async (t) => {
  const { spmc, connector, stop } = await serving('partition-info-size-zero', 'in-process');
  t.teardown(stop);
  const vm = await EmulatedVm.attach(connector);
  const drv = new FfaDriver(vm, { version: FFA_VERSION_1_1 });
  await drv.init();
  const rx = await drv.partitionInfoGetRx(UUID_NIL, 8);
  t.same(
    rx.entries?.map((e) => e.id),
    [vm.id, ...SPS],
  );
  t.equal(formatUuid(rx.entries![1]!.uuid), SP1_UUID);
  t.equal(spmc.endpoint(vm.id)!.mailbox!.rxState, 'empty', 'RX released');
  await drv.exit();
});
