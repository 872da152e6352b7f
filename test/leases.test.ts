// Session leases and resume (issue 14, item 2): a session is kept by its open streams or by calls
// made within its lease; one whose last stream was cancelled waits its grace period for the client
// to resume it by its token. The core's clock is the test's: nothing here sleeps.

import t from 'tap';
import { fid, FFA_PAGE_SIZE, MEM_PERM, PARTITION_PROPERTIES as P, toRegisters, UUID_NIL } from '../proto/ffa/index.js';
import { FfaDriver } from '../client-driver/driver.js';
import { SpmcChannel } from '../client-driver/transport/grpc-client.js';
import { GrpcConnector } from '../client-driver/transport/grpc.js';
import { GrpcSessionTransport } from '../client-driver/transport/grpc-session.js';
import { EmulatedVm } from '../client-driver/vm.js';
import { SpmcGrpcServer } from '../server/grpc/server.js';
import { buildHttpApp } from '../server/http/app.js';
import { defaultManifest } from '../server/manifest.js';
import { InProcessConnector } from '../server/session/in-process.js';
import { SessionCore } from '../server/session/core.js';
import { Spmc } from '../server/spmc/spmc.js';
import { Arrivals, codeOf, errnoOf, vcpuReaches } from './helpers.js';

const LEASE = 30_000;
const GRACE = 60_000;

/** A server whose core runs on a clock the test moves; `said` holds the core's log messages. */
async function stack(graceMs = 0) {
  const spmc = new Spmc({ partitions: defaultManifest() });
  const clock = { now: 0 };
  const said = new Arrivals<string>();
  const logger = { info: (_: object, msg?: string) => said.push(msg ?? ''), warn: (_: object, msg?: string) => said.push(msg ?? '') };
  const core = SessionCore.for(spmc, { clock: () => clock.now, leaseMs: LEASE, graceMs, logger });
  const server = new SpmcGrpcServer(core);
  const address = `127.0.0.1:${await server.listen('127.0.0.1:0')}`;
  const app = await buildHttpApp({ core });
  t.teardown(async () => {
    await app.close();
    await server.stop(200);
  });
  return { spmc, core, clock, said, address, app };
}

t.test('an orphaned unary attach and an orphaned HTTP attach are released after the lease', async (t) => {
  const { spmc, core, clock, address, app } = await stack();
  const ch = new SpmcChannel(address);
  t.teardown(() => ch.close());
  const post = (url: string, body: object) => app.inject({ method: 'POST', url, payload: body });
  const unary = await ch.attach({ name: 'unary' });
  const http = (await post('/v1/attach', { name: 'json' })).json() as { session: string; endpointId: number };
  t.ok(spmc.endpoint(unary.endpointId) && spmc.endpoint(http.endpointId), 'both attached');

  clock.now = 10_000;
  t.equal((await ch.call(unary.session, 0, toRegisters([fid('ID_GET')])))[2], BigInt(unary.endpointId), 'a call renews the lease');
  clock.now = LEASE - 1;
  core.sweep();
  t.ok(spmc.endpoint(http.endpointId), 'the JSON session is kept within its lease');
  clock.now = LEASE;
  core.sweep();
  t.equal(spmc.endpoint(http.endpointId), undefined, 'the JSON session is released when its lease runs out');
  t.equal((await post('/v1/smccc', { session: http.session, x: ['0x84000069'] })).statusCode, 401, 'its token is gone');
  t.ok(spmc.endpoint(unary.endpointId), 'the unary session called at 10 s: kept');

  clock.now = 10_000 + LEASE;
  core.sweep();
  t.equal(spmc.endpoint(unary.endpointId), undefined, 'the unary session is released a lease after its last call');
  t.equal(await codeOf(ch.call(unary.session, 0, toRegisters([fid('ID_GET')]))), 'UNAUTHENTICATED', 'as a detach releases it');
  t.equal(core.sessionCount, 0);
});

t.test('a blocked unary call holds its session past the lease', async (t) => {
  const { spmc, core, clock, address } = await stack();
  const ch = new SpmcChannel(address);
  t.teardown(() => ch.close());
  const vm = await ch.attach({ name: 'waiter', properties: P.DIRECT_REQ_RECV | P.AARCH64_EXEC });
  const wait = codeOf(ch.call(vm.session, 0, toRegisters([fid('MSG_WAIT')])));
  await vcpuReaches(spmc, vm.endpointId, 0, 'waiting');
  clock.now = 10 * LEASE;
  core.sweep();
  t.ok(spmc.endpoint(vm.endpointId), 'its MSG_WAIT is still waiting: kept');
  await ch.detach(vm.session);
  await wait;
});

t.test('a session with an open stream or an in-process transport needs no lease', async (t) => {
  const { spmc, core, clock, address } = await stack();
  const connector = new GrpcConnector(address);
  t.teardown(() => connector.close());
  const streamed = new FfaDriver(await EmulatedVm.attach(connector, { name: 'streamed' }));
  await streamed.init();
  const local = new FfaDriver(await EmulatedVm.attach(new InProcessConnector(core), { name: 'local' }));
  await local.init();
  clock.now = 100 * LEASE;
  core.sweep();
  t.ok(spmc.endpoint(streamed.vmId), 'its Session stream keeps it');
  t.ok(spmc.endpoint(local.vmId), 'an in-process transport keeps it');
  await streamed.vm.detach();
  await local.vm.detach();
});

t.test('with no grace period, a cancelled stream releases its session at once (the default)', async (t) => {
  const { spmc, core, said, address } = await stack();
  t.equal(core.graceMs, 0, 'the test stack uses the default');
  const connector = new GrpcConnector(address);
  t.teardown(() => connector.close());
  const b = new FfaDriver(await EmulatedVm.attach(connector, { name: 'b' }));
  await b.init();
  (b.vm.transport as GrpcSessionTransport).dropStreams();
  await said.first((m) => m === 'endpoint released');
  t.equal(spmc.endpoint(b.vmId), undefined);
});

t.test('a cancelled stream keeps its session for the grace period; a new stream naming it resumes it', async (t) => {
  const { spmc, core, clock, said, address } = await stack(GRACE);
  const connector = new GrpcConnector(address);
  t.teardown(() => connector.close());
  // A: in process, the partner. B: over gRPC Session streams, the one whose connection drops.
  const a = new FfaDriver(await EmulatedVm.attach(new InProcessConnector(core), { name: 'a' }));
  await a.init();
  const b = new FfaDriver(await EmulatedVm.attach(connector, { name: 'b', properties: P.DIRECT_REQ_RECV | P.DIRECT_REQ_SEND | P.AARCH64_EXEC }));
  await b.init();
  t.ok(b.vm.transport instanceof GrpcSessionTransport);
  const transport = b.vm.transport as GrpcSessionTransport;

  // B borrows a page of A's and writes to it.
  const page = a.vm.pages.alloc(1)!;
  const h = await a.memShare({ receivers: [{ id: b.vmId, permissions: MEM_PERM.DATA_RW }], regions: [{ address: page, pageCount: 1 }] });
  await b.memRetrieve({ handle: h, sender: a.vmId });
  await b.vm.write(page, Uint8Array.of(0x42));

  // B serves direct requests; each waits in its handler until the test lets it answer.
  const requests = new Arrivals<{ args: bigint[]; answer: (v: bigint[]) => void }>();
  const serving = b.serveDirectRequests((req) => new Promise<bigint[]>((answer) => requests.push({ args: [...req.args], answer })));
  serving.catch(() => {});
  await vcpuReaches(spmc, b.vmId, 0, 'waiting');
  const first = a.sendDirectReq(b.vmId, [7n]);
  const [req1] = await requests.atLeast(1);
  // B owns its RX buffer, filled by PARTITION_INFO_GET (a raw call: the driver does not release it).
  await b.call({ fn: 'PARTITION_INFO_GET', uuid: UUID_NIL, countOnly: false });
  t.equal(spmc.endpoint(b.vmId)!.mailbox!.rxState, 'full');
  const rx = await b.vm.read(b.rxBuffer, FFA_PAGE_SIZE);

  // The connection drops: the server sees its stream cancelled and keeps the session.
  transport.dropStreams();
  await said.first((m) => m === 'session waiting to be resumed');
  clock.now += GRACE - 1;
  core.sweep();
  t.ok(spmc.endpoint(b.vmId), 'kept within the grace period');

  // B answers A: the driver's next call opens a new stream naming the session, which resumes it.
  req1!.answer([req1!.args[0]! + 1n]);
  t.same((await first).slice(0, 1), [8n], "A's request is answered by the resumed session");
  t.ok(said.items.includes('session resumed'));
  clock.now += GRACE;
  core.sweep();
  t.ok(spmc.endpoint(b.vmId), 'resumed: no longer on a grace period (its stream keeps it)');
  t.equal(spmc.endpoint(b.vmId)!.mailbox!.rxState, 'full', 'RX still owned by B');
  t.same([...(await b.vm.read(b.rxBuffer, FFA_PAGE_SIZE))], [...rx], 'RX contents intact');
  t.same([...(await b.vm.read(page, 1))], [0x42], 'borrowed memory intact');
  t.same([...(await a.vm.read(page, 1))], [0x42], 'and still shared with its owner');

  // Dropped again while A waits on B, and never resumed: released when the grace period ends, and
  // only then does A's request end, ABORTED.
  await vcpuReaches(spmc, b.vmId, 0, 'waiting');
  const second = errnoOf(a.sendDirectReq(b.vmId, [9n]));
  await requests.atLeast(2);
  transport.dropStreams();
  await said.when((m) => m.filter((x) => x === 'session waiting to be resumed').length === 2);
  clock.now += GRACE - 1;
  core.sweep();
  t.ok(spmc.endpoint(b.vmId), 'kept within the grace period');
  clock.now += 1;
  core.sweep();
  t.equal(spmc.endpoint(b.vmId), undefined, 'released when the grace period is over');
  t.equal(await second, 'ECANCELED', "the partner's blocked request is answered ABORTED");
  t.ok(said.items.includes('endpoint released'));
});
