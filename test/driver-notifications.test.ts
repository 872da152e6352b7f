// The driver's notifier ops and indirect messages, end to end: built-in partitions, several VMs,
// interrupts pushed through the transport (the gRPC Interrupts stream, or in process).

import t from 'tap';
import { type EndpointId, FFA_ERRORS, FFA_PAGE_SIZE, hex, INDIRECT_MSG_HEADER_SIZE_V1_2 } from '../proto/ffa/index.js';
import { FfaDriver } from '../client-driver/driver.js';
import type { IndirectMessage } from '../client-driver/notifier.js';
import { GrpcConnector } from '../client-driver/transport/grpc.js';
import { InProcessConnector } from '../server/session/in-process.js';
import type { Connector } from '../client-driver/transport/transport.js';
import { EmulatedVm } from '../client-driver/vm.js';
import { SpmcGrpcServer } from '../server/grpc/server.js';
import { PARTITION_COMMANDS as CMD } from '../server/partitions/commands.js';
import type { Spmc } from '../server/spmc/spmc.js';
import { Arrivals, errnoOf, RawVm, startedSpmc } from './helpers.js';

const SP1 = 0x8001;
const SP2 = 0x8002;

/** A promise and the function that settles it (what a callback hands to the test). */
function deferred<T>() {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

/** The next console line of `id` that matches. */
function consoleLine(spmc: Spmc, id: EndpointId, re: RegExp): Promise<string> {
  return new Promise((resolve) => {
    const stop = spmc.observe({
      console: (from, line) => {
        if (from === id && re.test(line)) {
          stop();
          resolve(line);
        }
      },
    });
  });
}

type Kind = 'in-process' | 'grpc-session';

async function topology(kind: Kind) {
  const spmc = await startedSpmc();
  let connector: Connector;
  let server: SpmcGrpcServer | undefined;
  if (kind === 'in-process') {
    connector = new InProcessConnector(spmc);
  } else {
    server = new SpmcGrpcServer(spmc);
    connector = new GrpcConnector(`127.0.0.1:${await server.listen('127.0.0.1:0')}`);
  }
  const drivers: FfaDriver[] = [];
  const vm = async (vcpuCount = 1): Promise<FfaDriver> => {
    const drv = new FfaDriver(await EmulatedVm.attach(connector, { vcpuCount }));
    drv.notifier.onError = (e) => {
      throw e;
    };
    await drv.init();
    drivers.push(drv);
    return drv;
  };
  const stop = async () => {
    for (const d of drivers) {
      await d.exit().catch(() => {});
      await d.vm.detach().catch(() => {});
    }
    connector.close();
    await server?.stop(200);
  };
  return { spmc, vm, stop };
}

const device = (drv: FfaDriver, id: EndpointId) => drv.bus.devices().find((d) => d.vmId === id)!;

for (const kind of ['in-process', 'grpc-session'] as const) {
  t.test(`${kind}: a partition notifies a VM; the callback runs without polling`, async (t) => {
    const { vm, stop } = await topology(kind);
    t.teardown(stop);
    const drv = await vm();
    t.ok(drv.notificationsEnabled);
    const fired = deferred<number>();
    await drv.notifier.notifyRequest(device(drv, SP1), false, (id) => fired.resolve(id), 5);
    const r = await drv.sendDirectReq(SP1, [BigInt(CMD.NOTIFY), BigInt(drv.vmId), 1n << 5n, 0n]);
    t.equal(r[1], 0n, 'SP1 set it');
    t.equal(await fired.promise, 5, 'callback for notification 5');
    t.equal(await errnoOf(drv.notifier.notifyRequest(device(drv, SP1), false, () => {}, 5)), 'EINVAL', 'requested twice');
    await drv.notifier.notifyRelinquish(device(drv, SP1), 5);
    const again = await drv.sendDirectReq(SP1, [BigInt(CMD.NOTIFY), BigInt(drv.vmId), 1n << 5n, 0n]);
    t.equal(again[1], BigInt.asUintN(32, BigInt(FFA_ERRORS.DENIED)), 'unbound: SP1 is DENIED');
  });

  t.test(`${kind}: a VM notifies a partition; it collects on the NPI and logs on its console`, async (t) => {
    const { spmc, vm, stop } = await topology(kind);
    t.teardown(stop);
    const drv = await vm();
    t.same(await drv.sendDirectReq(SP2, [BigInt(CMD.BIND), BigInt(drv.vmId), 0b1100n, 0n]), [BigInt(CMD.BIND), 0n, 0n, 0n, 0n], 'SP2 bound 2 and 3 to us');
    const line = consoleLine(spmc, SP2, /^notified/);
    await drv.notifier.notifySend(device(drv, SP2), false, 3);
    // SET only marks it pending; SP2 takes the NPI when it is given cycles (Hafnium: FFA_RUN).
    await drv.run(SP2, 0);
    t.equal(await line, 'notified from-sp=0x0 from-vm=0x8');
    t.equal(await errnoOf(drv.notifier.notifySend(device(drv, SP1), false, 3)), 'EACCES', 'SP1 never bound it: DENIED');
  });

  t.test(`${kind}: VM to VM notifications`, async (t) => {
    const { vm, stop } = await topology(kind);
    t.teardown(stop);
    const a = await vm();
    const b = await vm(); // a is attached, so b sees it as a device
    const fired = deferred<number>();
    await b.notifier.notifyRequest(device(b, a.vmId), false, (id) => fired.resolve(id), 63);
    await a.notifier.notifySend(b.vmId, false, 63);
    t.equal(await fired.promise, 63);
    t.equal(await errnoOf(a.notifier.notifySend(b.vmId, false, 64)), 'EINVAL', 'IDs are 0..63');
  });

  t.test(`${kind}: indirect messages VM -> SP -> VM (the partition echoes), and SP -> VM by command`, async (t) => {
    const { spmc, vm, stop } = await topology(kind);
    t.teardown(stop);
    const drv = await vm();
    const fromSp1 = deferred<IndirectMessage>();
    drv.notifier.fwkNotifyRequest(device(drv, SP1), (m) => fromSp1.resolve(m));
    const logged = consoleLine(spmc, SP1, /^message from/);
    await drv.sendIndirect(device(drv, SP1), Uint8Array.from([1, 2, 3, 4, 5]));
    await drv.run(SP1, 0); // SP1 takes the NPI of its RX-full notification when it runs
    const echo = await fromSp1.promise;
    t.equal(echo.sender, SP1);
    t.same([...echo.payload], [1, 2, 3, 4, 5]);
    t.same([...echo.uuid], [...device(drv, SP1).uuid], 'the UUID travels with it');
    t.equal(await logged, `message from ${hex(drv.vmId)}: 5 bytes, echo sent`);

    const fromSp2 = deferred<IndirectMessage>();
    drv.notifier.fwkNotifyRequest(device(drv, SP2), (m) => fromSp2.resolve(m));
    const r = await drv.sendDirectReq(SP2, [BigInt(CMD.SEND2), BigInt(drv.vmId), 0x1111n, 0x2222n, 0x3333n]);
    t.equal(r[1], 0n);
    const m = await fromSp2.promise;
    const dv = new DataView(m.payload.buffer, m.payload.byteOffset);
    t.same([m.payload.length, dv.getBigUint64(0, true), dv.getBigUint64(8, true), dv.getBigUint64(16, true)], [24, 0x1111n, 0x2222n, 0x3333n]);
    t.equal(spmc.endpoint(drv.vmId)!.mailbox!.rxState, 'empty', 'the driver released RX');
  });

  t.test(`${kind}: VM <-> VM indirect messages both ways`, async (t) => {
    const { vm, stop } = await topology(kind);
    t.teardown(stop);
    const a = await vm();
    const b = await vm();
    const atB = deferred<IndirectMessage>();
    const atA = deferred<IndirectMessage>();
    b.notifier.onUnclaimedMessage = (m) => atB.resolve(m);
    a.notifier.onUnclaimedMessage = (m) => atA.resolve(m);
    await a.sendIndirect(b.vmId, new TextEncoder().encode('ping'));
    const ping = await atB.promise;
    t.same([ping.sender, new TextDecoder().decode(ping.payload)], [a.vmId, 'ping']);
    await b.sendIndirect(a.vmId, new TextEncoder().encode('pong'));
    const pong = await atA.promise;
    t.same([pong.sender, new TextDecoder().decode(pong.payload)], [b.vmId, 'pong']);
    t.equal(await errnoOf(a.sendIndirect(b.vmId, new Uint8Array(FFA_PAGE_SIZE - INDIRECT_MSG_HEADER_SIZE_V1_2 + 1))), 'ERANGE', 'larger than TX');
  });
}

t.test('16 VMs send to one receiver at once over gRPC: each message once, in order, BUSY otherwise', async (t) => {
  const { vm, stop } = await topology('grpc-session');
  t.teardown(stop);
  const receiver = await vm();
  const arrived = new Arrivals<string>();
  receiver.notifier.onUnclaimedMessage = (m) => {
    const dv = new DataView(m.payload.buffer, m.payload.byteOffset);
    arrived.push(`${m.sender}:${dv.getUint32(0, true)}`);
  };
  const PER_SENDER = 4;
  const senders = await Promise.all(Array.from({ length: 16 }, () => vm()));
  let busy = 0;
  await Promise.all(
    senders.map(async (s) => {
      for (let seq = 0; seq < PER_SENDER;) {
        const payload = new Uint8Array(8);
        new DataView(payload.buffer).setUint32(0, seq, true);
        const errno = await errnoOf(s.sendIndirect(receiver.vmId, payload));
        if (errno === 'none') seq++;
        else if (errno === 'EBUSY') {
          busy++;
          await new Promise((r) => setImmediate(r));
        } else throw new Error(`send failed: ${errno}`);
      }
    }),
  );
  // Every SUCCESS is delivered; wait for the last ones to be read.
  const seen = await arrived.atLeast(16 * PER_SENDER);
  t.equal(seen.length, 16 * PER_SENDER, 'no message lost or doubled');
  t.equal(new Set(seen).size, seen.length, 'no duplicates');
  for (const s of senders) {
    const mine = seen.filter((x) => x.startsWith(`${s.vmId}:`)).map((x) => Number(x.split(':')[1]));
    t.same(mine, [...Array(PER_SENDER).keys()], `VM ${s.vmId}: in order, exactly once`);
  }
  t.ok(busy > 0, `contention happened (${busy} BUSY answers)`);
});

t.test('a receiver that never releases its RX blocks its senders only', async (t) => {
  const { spmc, vm, stop } = await topology('in-process');
  t.teardown(stop);
  const stuck = RawVm.attach(spmc);
  stuck.mapMailbox(); // maps, then never reads, GETs or releases
  const a = await vm();
  const b = await vm();
  const atB = deferred<IndirectMessage>();
  b.notifier.onUnclaimedMessage = (m) => atB.resolve(m);
  t.equal(await errnoOf(a.sendIndirect(stuck.id, Uint8Array.of(1))), 'none', 'the first fills it');
  t.equal(await errnoOf(a.sendIndirect(stuck.id, Uint8Array.of(2))), 'EBUSY', 'then BUSY');
  t.equal(await errnoOf(b.sendIndirect(stuck.id, Uint8Array.of(3))), 'EBUSY', 'for every sender');
  await a.sendIndirect(b.vmId, Uint8Array.of(4));
  t.same([...(await atB.promise).payload], [4], 'other receivers are not affected');
  t.same(await a.sendDirectReq(SP1, [BigInt(CMD.ECHO), 9n]), [BigInt(CMD.ECHO), 9n, 0n, 0n, 0n], 'nor direct messages');
  t.same(spmc.endpoint(SP1)!.console.lines, [], 'partitions keep their own consoles');
});
