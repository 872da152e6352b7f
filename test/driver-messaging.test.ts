// The driver's message ops over real gRPC, against the built-in partitions.

import t from 'tap';
import { FFA_VERSION_1_1, PARTITION_PROPERTIES as P, parseUuid } from '../proto/ffa/index.js';
import { FfaDriver } from '../client-driver/driver.js';
import { GrpcConnector } from '../client-driver/transport/grpc.js';
import { EmulatedVm } from '../client-driver/vm.js';
import { SpmcGrpcServer } from '../server/grpc/server.js';
import { PARTITION_COMMANDS as CMD, packHops } from '../server/partitions/commands.js';
import { errnoOf, SP1_UUID, SP2_UUID, startedSpmc } from './helpers.js';

async function topology() {
  const spmc = await startedSpmc();
  const server = new SpmcGrpcServer(spmc);
  const address = `127.0.0.1:${await server.listen('127.0.0.1:0')}`;
  const connector = new GrpcConnector(address);
  const stop = async () => {
    connector.close();
    await server.stop(200);
  };
  return { spmc, server, connector, stop };
}

t.test('sendDirectReq and sendDirectReq2 through the bus devices', async (t) => {
  const { connector, stop } = await topology();
  t.teardown(stop);
  const vm = await EmulatedVm.attach(connector, { vcpuCount: 2 });
  const drv = new FfaDriver(vm);
  await drv.init();
  t.ok(drv.msgDirectReq2Supported, 'FEATURES(REQ2) succeeded');
  const sp2 = drv.bus.devices().find((d) => d.vmId === 0x8002)!;
  t.same(await drv.sendDirectReq(sp2, [BigInt(CMD.ECHO), 1n, 2n, 3n, 4n]), [BigInt(CMD.ECHO), 1n, 2n, 3n, 4n]);
  t.same(await drv.sendDirectReq(sp2, [BigInt(CMD.ECHO), 1n << 40n], { width: 32, vcpu: 1 }), [BigInt(CMD.ECHO), 0n, 0n, 0n, 0n], '32-bit: low halves only');
  const payload = Array.from({ length: 14 }, (_, i) => BigInt(i) * 0x1000000001n);
  t.same(await drv.sendDirectReq2(sp2, payload), payload, 'REQ2 to the device UUID');
  t.same(await drv.sendDirectReq2(0x8001, payload, { uuid: parseUuid(SP1_UUID) }), payload);
  t.equal(await errnoOf(drv.sendDirectReq2(0x8001, payload, { uuid: parseUuid(SP2_UUID) })), 'EINVAL', 'wrong service UUID');
  t.same(
    await drv.sendDirectReq(0x8001, [BigInt(CMD.FORWARD), packHops([0x8002, 0x8003, 0x8004]), 9n]),
    [BigInt(CMD.ECHO), 9n, 0n, 0n, 0n],
    'a chain of three',
  );
  t.same(await drv.sendDirectReq(0x8003, [BigInt(CMD.YIELD), 5n]), [BigInt(CMD.YIELD), 5n, 0n, 0n, 0n], 'YIELD: the driver runs it again');
  t.equal(await errnoOf(drv.sendDirectReq(0x8099, [0n])), 'EINVAL', 'unknown partition');
  await drv.exit();
  await vm.detach();
});

t.test('a v1.1 driver is told of REQ2 (the SPMC is v1.2) but may not send it', async (t) => {
  const { connector, stop } = await topology();
  t.teardown(stop);
  const vm = await EmulatedVm.attach(connector, {});
  const drv = new FfaDriver(vm, { version: FFA_VERSION_1_1 });
  await drv.init();
  t.ok(drv.msgDirectReq2Supported, "FEATURES by the SPMC's version (Hafnium's ffa_features_function)");
  // Hafnium's ffa_direct_msg_is_direct_request_supported: a sender below v1.2 may not use REQ2.
  t.equal(await errnoOf(drv.sendDirectReq2(0x8001, [1n])), 'EACCES');
  t.same(await drv.sendDirectReq(0x8001, [7n]), [7n, 0n, 0n, 0n, 0n]);
  await drv.exit();
});

t.test('VM to VM over gRPC: a receive loop in one VM, 32-bit for an AArch32 guest', async (t) => {
  const { connector, stop } = await topology();
  t.teardown(stop);
  const server = await EmulatedVm.attach(connector, { name: 'server-vm', properties: P.DIRECT_REQ_RECV, vcpuCount: 1 });
  const sdrv = new FfaDriver(server);
  await sdrv.init();
  const seen: number[] = [];
  const loop = sdrv.serveDirectRequests((req) => {
    seen.push(req.width);
    return req.args.map((v) => v + 1n);
  });
  const client = await EmulatedVm.attach(connector, { name: 'client-vm' });
  const cdrv = new FfaDriver(client);
  await cdrv.init();
  const dev = cdrv.bus.devices().find((d) => d.vmId === server.id)!;
  t.ok(dev.mode32bit, 'no AArch64 property: a 32-bit device');
  t.same(await cdrv.sendDirectReq(dev, [1n, 2n]), [2n, 3n, 1n, 1n, 1n]);
  t.same(seen, [32], 'the request went out as SMC32');
  const ended = loop.then(
    () => 'returned',
    (e: unknown) => `threw ${String(e)}`,
  );
  let settled = false;
  void ended.then(() => (settled = true));
  await cdrv.exit();
  t.notOk(settled, 'the receive loop still runs while its VM is attached');
  await server.detach(); // the SPMC answers its wait ABORTED
  t.equal(await ended, 'returned', 'detaching ends the receive loop cleanly (ABORTED ends it, any other error would throw)');
  t.same(seen, [32], 'and it served nothing more');
});
