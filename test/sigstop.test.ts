// A VM paused in a debugger is not dropped (issue 14, "How it is shown"): a VM process stopped with
// SIGSTOP for longer than the server's keepalive loses its connection; continued within the grace
// period, its driver resumes the session on its own, with its RX contents and borrowed memory intact.
// Real processes: `remote-spmc serve` with a 1 s keepalive, and the VM in test/fixtures/sigstop-vm.

import t from 'tap';
import { encodeCall, FFA_ERRORS, FFA_PAGE_SIZE, FFA_VERSION_1_2, type FfaCall, MEM_PERM, UUID_NIL } from '../proto/ffa/index.js';
import { decodeCallRequest, encodeCallRequest, type ReplyMessage, spmcServiceDefinition, u64ToWire } from '../proto/wire.js';
import { FfaDriver } from '../client-driver/driver.js';
import { OrderedStream, replyRegisters, SpmcChannel } from '../client-driver/transport/grpc-client.js';
import type { Answer } from '../client-driver/transport/transport.js';
import { GrpcConnector } from '../client-driver/transport/grpc.js';
import { EmulatedVm } from '../client-driver/vm.js';
import { SpmcGrpcServer } from '../server/grpc/server.js';
import { defaultManifest } from '../server/manifest.js';
import { SessionCore } from '../server/session/core.js';
import { Spmc } from '../server/spmc/spmc.js';
import { startFixture, startServe } from './fixtures/child-process.js';
import { Arrivals, errorOfRegs } from './helpers.js';

t.test('SIGSTOP past the keepalive, SIGCONT within the grace period: the session resumes intact', async (t) => {
  const server = await startServe(['--grpc-keepalive', '1', '--session-grace', '600'], t.teardown);
  const b = startFixture('sigstop-vm', [server.grpc, 'paused'], t.teardown);
  const { vmId: bId } = (await b.until((o) => o.event === 'ready')) as { vmId: number };

  // A, the partner, in this process: it lends B a page, and later sends it a message.
  const connector = new GrpcConnector(server.grpc);
  t.teardown(() => connector.close());
  const a = new FfaDriver(await EmulatedVm.attach(connector, { name: 'partner' }));
  await a.init();
  const page = a.vm.pages.alloc(1)!;
  await a.vm.write(page, Uint8Array.of(1, 2, 3, 4));
  const handle = await a.memShare({ receivers: [{ id: bId, permissions: MEM_PERM.DATA_RW }], regions: [{ address: page, pageCount: 1 }] });

  const retrieved = await b.ask(`retrieve ${handle} ${a.vmId}`, (o) => o.event === 'retrieved' || o.event === 'error');
  t.equal(retrieved.event, 'retrieved', String(retrieved.message ?? ''));
  const filled = await b.ask('fill', (o) => o.event === 'filled' || o.event === 'error');
  t.ok(filled.ok, 'B owns its RX buffer, full of partition info');
  const rxState = async () => ((await (await fetch(`http://${server.http}/v1/endpoints/${bId}`)).json()) as { mailbox?: { rxState: string } }).mailbox?.rxState;
  t.equal(await rxState(), 'full');

  // Stopped: the server's keepalive gives up on B's connection, and the session waits for it.
  const waiting = server.log.until((o) => o.msg === 'session waiting to be resumed' && o.endpoint === bId);
  b.child.kill('SIGSTOP');
  await waiting;
  t.equal(await rxState(), 'full', 'while B is stopped its session is kept: RX still full');
  t.same([...(await a.vm.read(page, 4))], [...Buffer.from(retrieved.page as string, 'hex').subarray(0, 4)], "A sees B's writes to the page it lent");

  const resumed = server.log.until((o) => o.msg === 'session resumed' && o.endpoint === bId);
  b.child.kill('SIGCONT');
  const checked = await b.ask('check', (o) => o.event === 'checked' || o.event === 'error');
  t.equal(checked.event, 'checked', String(checked.message ?? ''));
  await resumed;
  t.equal(checked.rx, filled.rx, 'RX contents intact');
  t.equal(checked.page, retrieved.page, 'borrowed memory intact');
  t.equal(checked.id, bId, 'calls work: same endpoint');

  // Pending work goes on: B releases RX, A's indirect message reaches B through its interrupt line.
  t.equal((await b.ask('release', (o) => o.event === 'released' || o.event === 'error')).event, 'released');
  const message = b.until((o) => o.event === 'message' || o.event === 'notifier-error');
  await a.sendIndirect(bId, Buffer.from('after the pause'));
  const got = await message;
  t.match(got, { sender: a.vmId, text: 'after the pause' }, `a message sent after the resume is received ${String(got.message ?? '')}`);
  t.equal((await b.ask(`relinquish ${handle}`, (o) => o.event === 'relinquished' || o.event === 'error')).event, 'relinquished');
  await a.memReclaim(handle);
  t.notOk(
    server.log.seen((o) => o.msg === 'endpoint released' && o.endpoint === bId),
    'B was never released',
  );
  t.equal((await b.ask('exit', (o) => o.event === 'done')).event, 'done');
  await a.exit();
  await a.vm.detach();
});

t.test('a numbered call resent on a new stream is answered once, not made twice', async (t) => {
  const spmc = new Spmc({ partitions: defaultManifest() });
  // A grace period, so the session outlives its first stream whichever the server sees first.
  const server = new SpmcGrpcServer(SessionCore.for(spmc, { graceMs: 60_000 }));
  const ch = new SpmcChannel(`127.0.0.1:${await server.listen('127.0.0.1:0')}`);
  t.teardown(async () => {
    ch.close();
    await server.stop(200);
  });
  const vm = await ch.attach({ name: 'resender' });
  const stream = () => new OrderedStream(ch, 'Session', vm.session, replyRegisters);
  const call = (s: OrderedStream<ReplyMessage, Answer>, c: FfaCall, seq: number) => s.send({ vcpu: 0, x: encodeCall(c, FFA_VERSION_1_2), seq });
  const first = stream();
  const ramBase = spmc.endpoint(vm.endpointId)!.ram.base;
  await call(first, { fn: 'VERSION', requested: FFA_VERSION_1_2 }, 1);
  const map = await call(first, { fn: 'RXTX_MAP', width: 64, tx: ramBase, rx: ramBase + BigInt(FFA_PAGE_SIZE), pageCount: 1 }, 2);
  t.equal(errorOfRegs(map), undefined, 'RXTX_MAP');
  // PARTITION_INFO_GET fills RX: made a second time it would be BUSY (RX is the caller's until released).
  const info = await call(first, { fn: 'PARTITION_INFO_GET', uuid: UUID_NIL, countOnly: false }, 3);
  t.equal(errorOfRegs(info), undefined, 'the call succeeds');
  first.cancel();

  // The answer was lost with the connection, say: the driver sends the same call, same number, on a new stream.
  const second = stream();
  t.same(await call(second, { fn: 'PARTITION_INFO_GET', uuid: UUID_NIL, countOnly: false }, 3), info, 'the kept answer, not BUSY');
  const again = await call(second, { fn: 'PARTITION_INFO_GET', uuid: UUID_NIL, countOnly: false }, 4);
  t.equal(errorOfRegs(again), FFA_ERRORS.BUSY, 'a new number is a new call: BUSY, RX is still full');
  t.equal(
    errorOfRegs(await call(second, { fn: 'PARTITION_INFO_GET', uuid: UUID_NIL, countOnly: false }, 1)),
    FFA_ERRORS.BUSY,
    'so is any other number (a client that starts over)',
  );
});

t.test('a Memory stream holds its session as a Session stream does', async (t) => {
  const spmc = new Spmc({ partitions: defaultManifest() });
  const clock = { now: 0 };
  const said = new Arrivals<string>();
  const logger = { info: (_: object, msg?: string) => said.push(msg ?? ''), warn: () => {} };
  const core = SessionCore.for(spmc, { clock: () => clock.now, leaseMs: 1000, graceMs: 0, logger });
  const server = new SpmcGrpcServer(core);
  const ch = new SpmcChannel(`127.0.0.1:${await server.listen('127.0.0.1:0')}`);
  t.teardown(async () => {
    ch.close();
    await server.stop(200);
  });
  // A unary client (no Session stream) whose guest accesses go over a Memory stream.
  const vm = await ch.attach({ name: 'memory-only' });
  const ram = spmc.endpoint(vm.endpointId)!.ram.base;
  const memory = new OrderedStream<{ data: Buffer }, Buffer>(ch, 'Memory', vm.session, (r) => r.data);
  t.equal((await memory.send({ address: u64ToWire(ram), read: 4 })).length, 4);
  clock.now = 100_000;
  core.sweep();
  t.ok(spmc.endpoint(vm.endpointId), 'kept past its lease while its Memory stream is open');
  memory.cancel();
  await said.first((m) => m === 'endpoint released');
  t.equal(spmc.endpoint(vm.endpointId), undefined, 'its cancel (no grace period) releases it, as a Session stream');
});

t.test('CallRequest.seq: our bytes parse generically, and generic bytes parse here', async (t) => {
  const generic = spmcServiceDefinition()['Session']!;
  const x = [0x84000063n, 0x10002n];
  const viaGeneric = generic.requestDeserialize(encodeCallRequest({ session: '', vcpu: 1, x, seq: 0xfffffffe })) as { seq: number };
  t.equal(viaGeneric.seq, 0xfffffffe);
  t.same(decodeCallRequest(generic.requestSerialize({ session: 's', vcpu: 0, x: x.map(u64ToWire), seq: 7 })), { session: 's', vcpu: 0, x, seq: 7 });
  t.same(decodeCallRequest(encodeCallRequest({ session: 's', vcpu: 0, x })), { session: 's', vcpu: 0, x }, 'unnumbered: nothing on the wire');
});
