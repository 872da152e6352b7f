// Several VMs on one server, contending for mailbox state over real gRPC, and kept apart.

import t from 'tap';
import { decodePartitionInfo, FFA_ERRORS, type FfaCall, fid, toRegisters, UUID_NIL } from '../proto/ffa/index.js';
import { FfaDriver } from '../client-driver/driver.js';
import { SpmcChannel } from '../client-driver/transport/grpc-client.js';
import { GrpcConnector } from '../client-driver/transport/grpc.js';
import { TransportError } from '../client-driver/transport/transport.js';
import { EmulatedVm } from '../client-driver/vm.js';
import { SpmcGrpcServer } from '../server/grpc/server.js';
import { defaultManifest } from '../server/manifest.js';
import { Spmc } from '../server/spmc/spmc.js';
import { errorOf, errorOfRegs } from './helpers.js';

async function topology(vms: number) {
  const spmc = new Spmc({ partitions: defaultManifest() });
  const server = new SpmcGrpcServer(spmc);
  const address = `127.0.0.1:${await server.listen('127.0.0.1:0')}`;
  const connector = new GrpcConnector(address);
  const drivers: FfaDriver[] = [];
  for (let i = 0; i < vms; i++) {
    const vm = await EmulatedVm.attach(connector, { name: `vm${i}`, vcpuCount: 2 });
    const drv = new FfaDriver(vm);
    await drv.init();
    drivers.push(drv);
  }
  const stop = async () => {
    for (const d of drivers) await d.exit().catch(() => {});
    for (const d of drivers) await d.vm.detach().catch(() => {});
    connector.close();
    await server.stop(500);
  };
  return { spmc, server, address, drivers, stop };
}

/** Repeatable pseudo-random choices. */
function rng(seed: number) {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) >>> 16) / 0x10000;
}

t.test('interleaved PARTITION_INFO_GET / RX_RELEASE across VMs and vCPUs never leak RX state', async (t) => {
  const { drivers, stop } = await topology(4);
  t.teardown(stop);
  const expectedIds = [...drivers.map((d) => d.vmId), 0x8001, 0x8002, 0x8003, 0x8004];

  const run = async (drv: FfaDriver, seed: number) => {
    const next = rng(seed);
    let rxFull = false; // this VM's own model of its RX
    const mismatches: string[] = [];
    for (let i = 0; i < 60; i++) {
      const vcpu = i % 2;
      const op = next();
      if (op < 0.45) {
        const r: FfaCall = await drv.call({ fn: 'PARTITION_INFO_GET', uuid: UUID_NIL, countOnly: false }, vcpu);
        if (rxFull) {
          if (errorOf(r) !== FFA_ERRORS.BUSY) mismatches.push(`${i}: expected BUSY, got ${r.fn}`);
        } else if (r.fn !== 'SUCCESS') {
          mismatches.push(`${i}: expected SUCCESS, got ${r.fn}`);
        } else {
          const count = Number(r.args[0]);
          const infos = decodePartitionInfo(await drv.vm.read(drv.rxBuffer, count * 24), count, 24);
          if (JSON.stringify(infos.map((p) => p.id)) !== JSON.stringify(expectedIds)) mismatches.push(`${i}: RX held ${infos.map((p) => p.id)}`);
          rxFull = true;
        }
      } else if (op < 0.9) {
        const r = await drv.call({ fn: 'RX_RELEASE', vmId: 0 }, vcpu);
        const want = rxFull ? 'SUCCESS' : 'DENIED';
        const got = r.fn === 'SUCCESS' ? 'SUCCESS' : errorOf(r) === FFA_ERRORS.DENIED ? 'DENIED' : r.fn;
        if (want !== got) mismatches.push(`${i}: RX_RELEASE expected ${want}, got ${got}`);
        rxFull = false;
      } else {
        const r = await drv.call({ fn: 'PARTITION_INFO_GET', uuid: UUID_NIL, countOnly: true }, vcpu);
        if (r.fn !== 'SUCCESS' || Number(r.args[0]) !== expectedIds.length) mismatches.push(`${i}: count-only gave ${r.fn}`);
      }
    }
    return mismatches;
  };
  const results = await Promise.all(drivers.map((d, i) => run(d, 17 + i)));
  results.forEach((m, i) => t.same(m, [], `vm${i}: every outcome matched its own RX state`));
  // And the driver path, all VMs at once, both vCPUs each.
  for (const d of drivers) await d.call({ fn: 'RX_RELEASE', vmId: 0 }).catch(() => {});
  const probes = await Promise.all(drivers.flatMap((d) => [d.partitionInfoGetRx(UUID_NIL, 16), d.partitionInfoGetRx(UUID_NIL, 16)]));
  t.ok(
    probes.every((p) => p.entries?.length === expectedIds.length),
    'concurrent discovery in every VM',
  );
});

t.test('a VM cannot map or touch another VM’s memory', async (t) => {
  const { drivers, address, stop } = await topology(2);
  t.teardown(stop);
  const [a, b] = drivers as [FfaDriver, FfaDriver];
  const ch = new SpmcChannel(address);
  t.teardown(() => ch.close());
  const c = await ch.attach({ name: 'intruder' });
  await ch.call(c.session, 0, toRegisters([fid('VERSION'), 0x10002]));
  const map = await ch.call(c.session, 0, toRegisters([fid('RXTX_MAP', 64), b.vm.ramBase + 0x200000n, c.ramBase, 1]));
  t.equal(errorOfRegs(map), FFA_ERRORS.INVALID_PARAMETERS, "RXTX_MAP on another VM's pages");
  const map2 = await ch.call(c.session, 0, toRegisters([fid('RXTX_MAP', 64), c.ramBase, a.rxBuffer, 1]));
  t.equal(errorOfRegs(map2), FFA_ERRORS.INVALID_PARAMETERS, "RX on another VM's RX buffer");
  await a.vm.write(a.vm.ramBase + 0x300000n, new Uint8Array([0xaa]));
  for (const [what, p] of [
    ['read', ch.readMemory(c.session, a.vm.ramBase + 0x300000n, 1)],
    ['write', ch.writeMemory(c.session, b.txBuffer, new Uint8Array([1]))],
    ['read RX', ch.readMemory(c.session, a.rxBuffer, 16)],
  ] as const) {
    const err = await p.then(
      () => undefined,
      (e: unknown) => e,
    );
    t.ok(err instanceof TransportError && err.code === 'PERMISSION_DENIED', `${what} is a fault`);
  }
  t.same([...(await a.vm.read(a.vm.ramBase + 0x300000n, 1))], [0xaa], 'the owner still reads it');
  const rxWrite = await a.vm.write(a.rxBuffer, new Uint8Array([1])).then(
    () => 'ok',
    (e: TransportError) => e.code,
  );
  t.equal(rxWrite, 'PERMISSION_DENIED', 'even the owner may not write its RX buffer');
});

t.test('one VM leaving disturbs no other; its id is reusable', async (t) => {
  const { spmc, drivers, address, stop } = await topology(3);
  t.teardown(stop);
  const [a, b, c] = drivers as [FfaDriver, FfaDriver, FfaDriver];
  t.equal((await a.call({ fn: 'PARTITION_INFO_GET', uuid: UUID_NIL, countOnly: false })).fn, 'SUCCESS');
  t.equal((await c.call({ fn: 'PARTITION_INFO_GET', uuid: UUID_NIL, countOnly: false })).fn, 'SUCCESS');
  const bId = b.vmId;
  await b.vm.detach(); // no exit(): the SPMC cleans up
  t.equal(spmc.endpoint(bId), undefined);
  t.equal(spmc.endpoint(a.vmId)!.mailbox!.rxState, 'full', "a's RX untouched");
  t.equal(spmc.endpoint(c.vmId)!.mailbox!.rxState, 'full', "c's RX untouched");
  t.equal((await a.call({ fn: 'RX_RELEASE', vmId: 0 })).fn, 'SUCCESS');
  const again = new SpmcChannel(address);
  t.teardown(() => again.close());
  const back = await again.attach({ endpointId: bId });
  t.equal(back.endpointId, bId, 'the id is free again');
  t.same([...(await again.readMemory(back.session, back.ramBase, 8))], new Array(8).fill(0), 'fresh memory');
  const count = await a.call({ fn: 'PARTITION_INFO_GET', uuid: UUID_NIL, countOnly: true });
  t.ok(count.fn === 'SUCCESS' && Number(count.args[0]) === 7, '3 VMs and 4 SPs');
});
