// The gRPC service: the driver over real gRPC, transport status codes, bad input, release.

import * as grpc from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import t from 'tap';
import { FFA_ERRORS, FFA_VERSION_1_2, fid, SMCCC_NOT_SUPPORTED, toRegisters } from '../proto/ffa/index.js';
import { SPMC_SERVICE_NAME, spmcServiceDefinition } from '../proto/wire.js';
import { FfaDriver } from '../client-driver/driver.js';
import { SpmcChannel } from '../client-driver/transport/grpc-client.js';
import { GrpcConnector } from '../client-driver/transport/grpc.js';
import { EmulatedVm } from '../client-driver/vm.js';
import { SpmcGrpcServer } from '../server/grpc/server.js';
import { SessionCore } from '../server/session/core.js';
import { parseManifest } from '../server/manifest.js';
import { Spmc } from '../server/spmc/spmc.js';
import { defaultManifest } from '../server/manifest.js';
import { abandoned, Arrivals, codeOf, errorOfRegs, nextBlockedCall, released, SP2_UUID, vcpuReaches } from './helpers.js';

const REMOTE = parseManifest(
  JSON.stringify({
    partitions: [
      {
        name: 'remote-sp',
        id: 0x8010,
        uuids: ['0badcafe-0000-4000-8000-000000000001'],
        'ffa-version': '1.2',
        'execution-ctx-count': 1,
        'messaging-method': 1,
        remote: { credential: 'let-me-in-please' },
      },
    ],
  }),
);

async function startServer() {
  const spmc = new Spmc({ partitions: [...defaultManifest(), ...REMOTE] });
  const server = new SpmcGrpcServer(spmc);
  const port = await server.listen('127.0.0.1:0');
  return { spmc, server, address: `127.0.0.1:${port}` };
}

t.test('the driver initialises over grpc-session and grpc-unary', async (t) => {
  const { server, spmc, address } = await startServer();
  t.teardown(() => server.stop());
  for (const mode of ['session', 'unary'] as const) {
    const connector = new GrpcConnector(address, mode);
    const vm = await EmulatedVm.attach(connector, { name: `vm-${mode}`, vcpuCount: 2 });
    const drv = new FfaDriver(vm);
    await drv.init();
    t.equal(drv.version, FFA_VERSION_1_2, mode);
    t.equal(drv.vmId, vm.id);
    t.ok(spmc.endpoint(vm.id)!.mailbox, `${mode}: mailbox mapped`);
    t.same(
      (await drv.partitionInfoGet(SP2_UUID)).map((p) => p.id),
      [0x8002],
    );
    t.ok(
      drv.bus.devices().some((d) => d.vmId === 0x8010),
      'the remote partition is discoverable',
    );
    await drv.exit();
    t.equal(spmc.endpoint(vm.id)!.mailbox, undefined);
    await vm.detach();
    t.equal(spmc.endpoint(vm.id), undefined, `${mode}: detach releases the VM`);
    connector.close();
  }
});

t.test('transport errors are gRPC status codes; FF-A errors stay in registers', async (t) => {
  const { server, address } = await startServer();
  t.teardown(() => server.stop());
  const ch = new SpmcChannel(address);
  t.teardown(() => ch.close());
  const a = await ch.attach({ vcpuCount: 2 });

  t.equal(await codeOf(ch.call('no-such-session', 0, toRegisters([fid('ID_GET')]))), 'UNAUTHENTICATED');
  t.equal(await codeOf(ch.call(a.session, 2, toRegisters([fid('ID_GET')]))), 'INVALID_ARGUMENT', 'vcpu >= vcpu_count');
  const tooMany = ch.unary('Call', { session: a.session, vcpu: 0, x: new Array(19).fill(1n) });
  t.equal(await codeOf(tooMany), 'INVALID_ARGUMENT', 'more than 18 registers');
  t.equal(await codeOf(ch.readMemory(a.session, a.ramBase, 0)), 'INVALID_ARGUMENT', 'zero-length read');
  t.equal(await codeOf(ch.readMemory(a.session, a.ramBase, (1 << 20) + 1)), 'INVALID_ARGUMENT', 'oversize read');
  t.equal(await codeOf(ch.writeMemory(a.session, a.ramBase, new Uint8Array(0))), 'INVALID_ARGUMENT', 'empty write');
  t.equal(await codeOf(ch.readMemory(a.session, 0x1000n, 4)), 'PERMISSION_DENIED', 'memory fault');
  t.equal(await codeOf(ch.readMemory(a.session, a.ramBase + a.ramBytes - 2n, 4)), 'PERMISSION_DENIED', 'running off the window');
  t.equal(await codeOf(ch.attach({ endpointId: a.endpointId })), 'ALREADY_EXISTS');
  t.equal(await codeOf(ch.attach({ endpointId: 0x8010 })), 'PERMISSION_DENIED', 'remote SP without credential');
  t.equal(await codeOf(ch.attach({ endpointId: 0x8010, credential: 'wrong-credential' })), 'PERMISSION_DENIED');
  t.equal(await codeOf(ch.attach({ endpointId: 0x8001, credential: 'anything' })), 'PERMISSION_DENIED', 'a built-in SP');
  t.equal(await codeOf(ch.attach({ uuids: ['nope'] })), 'INVALID_ARGUMENT');
  t.equal(await codeOf(ch.attach({ vcpuCount: 1000 })), 'INVALID_ARGUMENT');
  t.equal(await codeOf(ch.attach({ properties: 0x10 })), 'INVALID_ARGUMENT', 'non-PE partition id type');
  const sp = await ch.attach({ endpointId: 0x8010, credential: 'let-me-in-please' });
  t.equal(sp.endpointId, 0x8010, 'a remote SP attaches with its credential');
  t.equal(await codeOf(ch.attach({ endpointId: 0x8010, credential: 'let-me-in-please' })), 'ALREADY_EXISTS');

  // FF-A errors are answers, not failures.
  const out = await ch.call(a.session, 0, toRegisters([fid('RX_RELEASE')]));
  t.equal(errorOfRegs(out), FFA_ERRORS.DENIED);
  await ch.writeMemory(a.session, a.ramBase, new Uint8Array([1, 2, 3]));
  t.same([...(await ch.readMemory(a.session, a.ramBase, 3))], [1, 2, 3]);
  await ch.detach(a.session);
  t.equal(await codeOf(ch.call(a.session, 0, toRegisters([fid('ID_GET')]))), 'UNAUTHENTICATED', 'detached');
  t.equal(await codeOf(ch.detach(a.session)), 'UNAUTHENTICATED');
});

/** A client that sends raw bytes, to feed the server what no protobuf encoder would. */
function rawClient(address: string) {
  const def = spmcServiceDefinition();
  const raw: Record<string, grpc.MethodDefinition<Buffer, Buffer>> = {};
  for (const [name, m] of Object.entries(def)) {
    raw[name] = { ...m, requestSerialize: (b: Buffer) => b, responseDeserialize: (b: Buffer) => b } as grpc.MethodDefinition<Buffer, Buffer>;
  }
  const Ctor = grpc.makeGenericClientConstructor(raw as grpc.ServiceDefinition, 'Raw');
  return new Ctor(address, grpc.credentials.createInsecure()) as grpc.Client & Record<string, (...args: unknown[]) => unknown>;
}

t.test('malformed messages are INVALID_ARGUMENT and the server keeps serving', async (t) => {
  const { server, address } = await startServer();
  t.teardown(() => server.stop());
  const ch = new SpmcChannel(address);
  t.teardown(() => ch.close());
  const a = await ch.attach({});
  const raw = rawClient(address);
  t.teardown(() => raw.close());
  const garbage = [Buffer.from([0x1a, 0xff, 0xff]), Buffer.from([0xff, 0xff, 0xff, 0xff])];
  for (const method of ['Attach', 'Call', 'ReadMemory', 'WriteMemory', 'Detach']) {
    for (const g of garbage) {
      const code = await new Promise<number>((resolve) => raw[method]!(g, (err: grpc.ServiceError | null) => resolve(err ? err.code : grpc.status.OK)));
      t.equal(grpc.status[code], 'INVALID_ARGUMENT', `${method} ${g.toString('hex')}`);
    }
  }
  // A garbage stream message ends that stream only.
  for (const method of ['Session', 'Memory']) {
    const stream = raw[method]!() as grpc.ClientDuplexStream<Buffer, Buffer>;
    const status = new Promise<number>((resolve) => stream.on('error', (e: grpc.ServiceError) => resolve(e.code)));
    stream.write(Buffer.from([0x1a, 0xff]));
    t.equal(grpc.status[await status], 'INVALID_ARGUMENT', `a garbage ${method} message`);
  }
  // Garbage registers are an FF-A answer.
  const out = await ch.call(a.session, 0, toRegisters([0xdeadbeefcafen, 0xffffffffffffffffn, 7n]));
  t.equal(out[0], BigInt(SMCCC_NOT_SUPPORTED), 'SMCCC NOT_SUPPORTED');
  t.equal(errorOfRegs(await ch.call(a.session, 0, toRegisters([fid('ID_GET'), 1]))), FFA_ERRORS.INVALID_PARAMETERS);
  t.equal((await ch.call(a.session, 0, toRegisters([fid('ID_GET')])))[2], BigInt(a.endpointId), 'still serving');
});

t.test('the Memory stream: accesses answered in order, refusals answered without ending it', async (t) => {
  const { server, address } = await startServer();
  t.teardown(() => server.stop());
  const ch = new SpmcChannel(address);
  t.teardown(() => ch.close());
  const a = await ch.attach({});
  const b = await ch.attach({});
  const stream = (ch.client['Memory'] as () => grpc.ClientDuplexStream<object, { data: Buffer; status: number; details: string }>).call(ch.client);
  const replies = new Arrivals<{ data: Buffer; status: number; details: string }>();
  stream.on('data', replies.push);
  const ended = new Promise<number>((resolve) => stream.on('error', (e: grpc.ServiceError) => resolve(e.code)));
  // Written back to back: answered in order, the later read seeing the earlier write.
  stream.write({ session: a.session, address: a.ramBase + 16n, write: Buffer.from([1, 2, 3, 4]) });
  stream.write({ session: '', address: a.ramBase + 16n, read: 4 });
  stream.write({ session: '', address: 0x1000n, read: 4 }); // not its memory
  stream.write({ session: '', address: a.ramBase, read: 0 });
  stream.write({ session: '', address: a.ramBase, write: Buffer.alloc(0) });
  stream.write({ session: a.session, address: a.ramBase });
  stream.write({ session: '', address: a.ramBase + 17n, read: 2 });
  t.same(
    (await replies.atLeast(7)).map((r) => [r.status === 0 ? 'OK' : grpc.status[r.status], [...r.data]]),
    [
      ['OK', []],
      ['OK', [1, 2, 3, 4]],
      ['PERMISSION_DENIED', []],
      ['INVALID_ARGUMENT', []],
      ['INVALID_ARGUMENT', []],
      ['INVALID_ARGUMENT', []],
      ['OK', [2, 3]],
    ],
  );
  t.match(replies.items[2]!.details, /0x1000/);
  // Another session on the same stream ends it; so does a detached one.
  stream.write({ session: b.session, address: b.ramBase, read: 1 });
  t.equal(grpc.status[await ended], 'INVALID_ARGUMENT');

  const s2 = (ch.client['Memory'] as () => grpc.ClientDuplexStream<object, unknown>).call(ch.client);
  const ended2 = new Promise<number>((resolve) => s2.on('error', (e: grpc.ServiceError) => resolve(e.code)));
  s2.write({ session: 'no-such-session', address: 0n, read: 1 });
  t.equal(grpc.status[await ended2], 'UNAUTHENTICATED');

  // Through the transport: the driver's accesses go this way, and a fault is PERMISSION_DENIED.
  const connector = new GrpcConnector(address, 'session');
  t.teardown(() => connector.close());
  const vm = await EmulatedVm.attach(connector, { name: 'm' });
  t.teardown(() => vm.detach());
  await vm.write(vm.ramBase, Uint8Array.of(9, 8, 7));
  t.same([...(await vm.read(vm.ramBase, 3))], [9, 8, 7]);
  t.equal(await codeOf(vm.read(0x1000n, 1)), 'PERMISSION_DENIED');
  t.same([...(await vm.read(vm.ramBase + 1n, 1))], [8], 'the stream carries on after a fault');
});

t.test('a Session stream carries one session; a cancelled one releases its VM', async (t) => {
  const { server, spmc, address } = await startServer();
  t.teardown(() => server.stop());
  const ch = new SpmcChannel(address);
  t.teardown(() => ch.close());
  const a = await ch.attach({});
  const b = await ch.attach({});

  const s1 = (ch.client['Session'] as () => grpc.ClientDuplexStream<object, { x: unknown[] }>).call(ch.client);
  const first = new Promise((resolve) => s1.once('data', resolve));
  s1.write({ session: a.session, vcpu: 0, x: toRegisters([fid('ID_GET')]) });
  await first;
  // Later requests may leave the session out: they are the first one's.
  const second = new Promise<{ x: unknown[] }>((resolve) => s1.once('data', resolve));
  s1.write({ session: '', vcpu: 0, x: toRegisters([fid('ID_GET')]) });
  t.equal(BigInt((await second).x[2] as bigint), BigInt(a.endpointId), "an empty session is the stream's own");
  const err = new Promise<number>((resolve) => s1.on('error', (e: grpc.ServiceError) => resolve(e.code)));
  s1.write({ session: b.session, vcpu: 0, x: toRegisters([fid('ID_GET')]) });
  t.equal(grpc.status[await err], 'INVALID_ARGUMENT', 'switching sessions mid-stream');
  t.ok(spmc.endpoint(a.endpointId), 'a stream ended by the server leaves the VM');

  const s2 = (ch.client['Session'] as () => grpc.ClientDuplexStream<object, unknown>).call(ch.client);
  s2.on('error', () => {});
  const got = new Promise((resolve) => s2.once('data', resolve));
  s2.write({ session: a.session, vcpu: 0, x: toRegisters([fid('ID_GET')]) });
  await got;
  const gone = released(spmc, a.endpointId);
  s2.cancel();
  await gone;
  t.equal(spmc.endpoint(a.endpointId), undefined, 'cancelled: released');
  t.ok(spmc.endpoint(b.endpointId), 'the other VM is untouched');
  t.equal(SessionCore.for(spmc).sessionCount, 1);
});

t.test('health service and shutdown', async (t) => {
  const { server, address } = await startServer();
  const Health = grpc.makeGenericClientConstructor(healthService as grpc.ServiceDefinition, 'Health');
  const health = new Health(address, grpc.credentials.createInsecure()) as grpc.Client & Record<string, (...args: unknown[]) => unknown>;
  const check = (svc: string) =>
    new Promise<string>((resolve) =>
      health['check']!({ service: svc }, (e: grpc.ServiceError | null, r: { status: string }) => resolve(e ? `error ${e.code}` : r.status)),
    );
  t.equal(await check(''), 'SERVING');
  t.equal(await check(SPMC_SERVICE_NAME), 'SERVING');
  const ch = new SpmcChannel(address);
  const a = await ch.attach({});
  await server.stop(500);
  t.equal(await codeOf(ch.call(a.session, 0, toRegisters([fid('ID_GET')]))), 'UNAVAILABLE', 'after stop');
  health.close();
  ch.close();
});

t.test('an abandoned call leaves the model consistent', async (t) => {
  const { startedSpmc } = await import('./helpers.js');
  const spmc = await startedSpmc();
  const server = new SpmcGrpcServer(spmc);
  const address = `127.0.0.1:${await server.listen('127.0.0.1:0')}`;
  t.teardown(() => server.stop(200));
  const ch = new SpmcChannel(address);
  t.teardown(() => ch.close());
  const [waiter, receiver, sender] = await Promise.all([0x101, 0x101, 0].map((properties) => ch.attach({ properties })));
  for (const s of [waiter, receiver, sender]) await ch.call(s!.session, 0, toRegisters([fid('VERSION'), 0x10002]));
  const stateOf = (id: number) => spmc.endpoint(id)!.vcpus[0]!.state;
  const req = (to: number) => toRegisters([fid('MSG_SEND_DIRECT_REQ', 64), (sender!.endpointId << 16) | to, 0, 1]);
  // The client's deadline passes; the server learns of it on its own: wait for the server to give
  // up on the call (the model's Pending abandoned), not for a time.
  const giveUp = async (id: number, call: () => Promise<unknown>) => {
    const blocked = nextBlockedCall(spmc, id);
    const code = await codeOf(call());
    await abandoned(await blocked);
    return code;
  };

  // A waiter that gives up stops waiting: a request to it is BUSY, not lost.
  t.equal(
    await giveUp(waiter!.endpointId, () => ch.call(waiter!.session, 0, toRegisters([fid('MSG_WAIT')]), { deadline: Date.now() + 100 })),
    'DEADLINE_EXCEEDED',
  );
  t.equal(stateOf(waiter!.endpointId), 'running', 'it runs again');
  t.equal(errorOfRegs(await ch.call(sender!.session, 0, req(waiter!.endpointId))), FFA_ERRORS.BUSY);

  // A requester that gives up: the receiver is not disturbed, and the late answer is dropped.
  const receiving = nextBlockedCall(spmc, receiver!.endpointId);
  const wait = ch.call(receiver!.session, 0, toRegisters([fid('MSG_WAIT')]));
  await receiving;
  t.equal(stateOf(receiver!.endpointId), 'waiting');
  t.equal(await giveUp(sender!.endpointId, () => ch.call(sender!.session, 0, req(receiver!.endpointId), { deadline: Date.now() + 100 })), 'DEADLINE_EXCEEDED');
  const got = await wait;
  t.equal(Number(got[0]), fid('MSG_SEND_DIRECT_REQ', 64), 'the receiver still got the request');
  t.equal(stateOf(sender!.endpointId), 'blocked', 'the requester stays blocked until answered');
  const dropped = spmc.state.dropped;
  const answered = vcpuReaches(spmc, sender!.endpointId, 0, 'running');
  void ch.call(receiver!.session, 0, toRegisters([fid('MSG_SEND_DIRECT_RESP', 64), (receiver!.endpointId << 16) | sender!.endpointId, 0, 2])).catch(() => {});
  await answered;
  t.equal(stateOf(sender!.endpointId), 'running', 'the requester runs again');
  t.equal(spmc.state.dropped, dropped + 1, 'its answer was dropped');
  t.equal((await ch.call(sender!.session, 0, toRegisters([fid('ID_GET')])))[2], BigInt(sender!.endpointId));
});
