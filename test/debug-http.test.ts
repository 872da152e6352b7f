// The debugging surface over the network: HTTP routes (schemas, state, SMCCC JSON transport,
// SSE, metrics, OpenAPI) and the gRPC Debug service. The dashboard page: dashboard.test.ts.

import * as grpc from '@grpc/grpc-js';
import t from 'tap';
import { FFA_VERSION_1_2, fid, hex } from '../proto/ffa/index.js';
import { debugClientConstructor } from '../proto/wire.js';
import { FfaDriver } from '../client-driver/driver.js';
import { GrpcConnector } from '../client-driver/transport/grpc.js';
import { EmulatedVm } from '../client-driver/vm.js';
import { PARTITION_COMMANDS as CMD } from '../server/partitions/commands.js';
import { Arrivals, servedSpmc, sseTrace, startedSpmc } from './helpers.js';

async function stack() {
  const served = await servedSpmc(await startedSpmc());
  const connector = new GrpcConnector(served.grpcAddr);
  const stop = async () => {
    connector.close();
    await served.stop();
  };
  return { ...served, connector, stop };
}

t.test('every route rejects bad input with a 400 that names the field', async (t) => {
  const { app, stop } = await stack();
  t.teardown(stop);
  const cases: [string, string, unknown, RegExp][] = [
    ['GET', '/v1/endpoints/zz', undefined, /params\/id/],
    ['GET', '/v1/endpoints/0x8001/memory?length=4', undefined, /address/],
    ['GET', '/v1/endpoints/0x8001/memory?address=0x1000&length=70000', undefined, /querystring\/length/],
    ['GET', '/v1/endpoints/0x8001/memory?address=4096&length=4', undefined, /querystring\/address/],
    ['GET', '/v1/endpoints/0x8001/memory?address=0x1000&length=4&format=png', undefined, /querystring\/format/],
    ['GET', '/v1/trace/recent?endpoint=vm1', undefined, /querystring\/endpoint/],
    ['GET', '/v1/trace/recent?function=a%20b', undefined, /querystring\/function/],
    ['GET', '/v1/trace/recent?limit=0', undefined, /querystring\/limit/],
    ['GET', '/v1/trace/recent?errors=maybe', undefined, /querystring\/errors/],
    ['GET', '/v1/trace?nope=1', undefined, /querystring/],
    ['POST', '/v1/smccc', { x: ['0x1'] }, /session/],
    ['POST', '/v1/smccc', { session: 's', x: new Array(19).fill('0x0') }, /body\/x/],
    ['POST', '/v1/smccc', { session: 's', x: ['84000063'] }, /body\/x\/0/],
    ['POST', '/v1/smccc', { session: 's', x: ['0x1'], vcpu: -1 }, /body\/vcpu/],
    ['POST', '/v1/attach', { uuids: ['not-a-uuid'] }, /body\/uuids\/0/],
    ['POST', '/v1/attach', { vcpuCount: 65 }, /body\/vcpuCount/],
    ['POST', '/v1/attach', { colour: 'red' }, /additional/],
    ['POST', '/v1/detach', {}, /session/],
  ];
  for (const [method, url, body, field] of cases) {
    const r = await app.inject({ method: method as 'GET' | 'POST', url, payload: body as object | undefined });
    t.equal(r.statusCode, 400, `${method} ${url} ${JSON.stringify(body) ?? ''}`);
    t.match(r.json().message, field);
    t.equal(r.json().error, 'INVALID_ARGUMENT');
  }
  t.equal(
    (await app.inject({ method: 'POST', url: '/v1/smccc', headers: { 'content-type': 'application/json' }, payload: '{nope' })).statusCode,
    400,
    'broken JSON',
  );
});

t.test('the JSON transport: attach, calls (a blocked one too), detach; sessions shared with gRPC', async (t) => {
  const { app, spmc, stop } = await stack();
  t.teardown(stop);
  const post = async (url: string, body: object) => app.inject({ method: 'POST', url, payload: body });
  const a = (await post('/v1/attach', { name: 'json-vm', vcpuCount: 1 })).json();
  t.match(a, { session: /.+/, endpointId: 1, ramBase: /^0x/ });
  const idGet = (await post('/v1/smccc', { session: a.session, x: [hex(fid('ID_GET'))] })).json();
  t.same(idGet.x.slice(0, 3), [hex(fid('SUCCESS')), '0x0', '0x1'], 'FFA_SUCCESS with the caller id');
  t.equal(idGet.x.length, 18);
  await post('/v1/smccc', { session: a.session, x: [hex(fid('VERSION')), hex(FFA_VERSION_1_2)] });
  const req = (await post('/v1/smccc', { session: a.session, x: [hex(fid('MSG_SEND_DIRECT_REQ', 64)), '0x18001', '0x0', hex(CMD.ECHO), '0x5'] })).json();
  t.same(req.x.slice(0, 5), [hex(fid('MSG_SEND_DIRECT_RESP', 64)), '0x80010001', '0x0', hex(CMD.ECHO), '0x5'], 'blocked until SP1 answered, then its response');
  t.equal((await post('/v1/smccc', { session: 'nope', x: [hex(fid('ID_GET'))] })).statusCode, 401, 'an unknown session');
  t.equal((await post('/v1/smccc', { session: a.session, vcpu: 3, x: [hex(fid('ID_GET'))] })).statusCode, 400, 'no such vCPU');
  t.equal((await post('/v1/attach', { endpointId: 0x8001 })).statusCode, 403, 'a partition needs its credential');
  t.equal((await post('/v1/detach', { session: a.session })).statusCode, 200);
  t.equal(spmc.endpoint(1), undefined, 'released');
  t.equal((await post('/v1/detach', { session: a.session })).statusCode, 401);
});

t.test('state routes: endpoints, mailboxes, notifications, transactions, access table, memory', async (t) => {
  const { app, connector, stop } = await stack();
  t.teardown(stop);
  const drv = new FfaDriver(await EmulatedVm.attach(connector, { name: 'inspected' }));
  await drv.init();
  const page = drv.vm.pages.alloc(1)!;
  await drv.vm.write(page, new TextEncoder().encode('hello, FF-A'));
  const handle = await drv.memShare({ receivers: [{ id: 0x8001, permissions: 2 }], regions: [{ address: page, pageCount: 1 }] });
  const get = async (url: string) => (await app.inject({ method: 'GET', url })).json();
  const eps = await get('/v1/endpoints');
  t.same(
    eps.map((e: { idHex: string }) => e.idHex),
    ['0x1', '0x8001', '0x8002', '0x8003', '0x8004'],
  );
  const me = await get('/v1/endpoints/1');
  t.match(me, {
    name: 'inspected',
    kind: 'vm',
    version: '1.2',
    mailbox: { pageCount: 1, rxState: 'empty', rxOwner: 'spmc' },
    notifications: { enabled: true },
  });
  const sp3 = await get('/v1/endpoints/0x8003');
  t.same(
    sp3.vcpus.map((v: { state: string }) => v.state),
    ['waiting'],
  );
  t.equal(sp3.vcpus[0].blockedIn, 'FFA_MSG_WAIT');
  const txs = await get('/v1/memory/transactions');
  t.match(txs, [
    {
      handle: hex(handle),
      type: 'share',
      sender: '0x1',
      borrowers: [{ id: '0x8001', retrieved: 'no' }],
      ranges: [{ address: hex(page), pageCount: 1 }],
    },
  ]);
  t.equal(txs[0].handle, hex(handle));
  const access = await get('/v1/memory/access');
  t.ok(access.find((a: { endpoint: string }) => a.endpoint === '0x1').ranges.some((r: { state: string }) => r.state === 'shared'));
  const mem = await get(`/v1/endpoints/1/memory?address=${hex(page)}&length=11`);
  t.match(mem.data, /68 65 6c 6c 6f 2c 20 46 46 2d 41 +hello, FF-A/);
  const b64 = await get(`/v1/endpoints/1/memory?address=${hex(page)}&length=11&format=base64`);
  t.equal(Buffer.from(b64.data, 'base64').toString(), 'hello, FF-A');
  const denied = await app.inject({ method: 'GET', url: `/v1/endpoints/0x8001/memory?address=${hex(page)}&length=4` });
  t.equal(denied.statusCode, 403, 'not retrieved yet: SP1 may not read it');
  t.equal((await app.inject({ method: 'GET', url: '/v1/endpoints/0x7777' })).statusCode, 404);
  await drv.memReclaim(handle);
  await drv.exit();
  await drv.vm.detach();
});

t.test('SSE and gRPC Debug subscribers get the calls of several VMs, with filters; /metrics counts them', async (t) => {
  const { app, base, grpcAddr, connector, tracer, stop } = await stack();
  t.teardown(stop);
  const a = new FfaDriver(await EmulatedVm.attach(connector, { name: 'a' }));
  const b = new FfaDriver(await EmulatedVm.attach(connector, { name: 'b' }));
  await a.init();
  await b.init();

  // SSE, filtered to VM a's direct requests: live from the moment the stream is open.
  const sse = await sseTrace(`${base}/v1/trace?endpoint=${a.vmId}&function=MSG_SEND_DIRECT_REQ`);

  // gRPC Debug, filtered to errors. It sends the `recent` records and subscribes in one go, so
  // once the last error made before it (b's probe below) has arrived, the subscription is live.
  await b.call({ fn: 'FEATURES', id: 0x7f, inputProperties: 0 }); // NOT_SUPPORTED: no such feature
  await tracer.drained(); // handed to the subscribers there are (SSE), not to the one to come
  const Client = debugClientConstructor();
  const dbg = new Client(grpcAddr, grpc.credentials.createInsecure()) as grpc.Client &
    Record<string, (req: object) => grpc.ClientReadableStream<{ kind: string; endpoint: number; error: string; json: string }>>;
  const errs = new Arrivals<{ endpoint: number; error: string }>();
  const stream = dbg['Trace']!({ errors_only: true, recent: 1 });
  stream.on('data', (m: { endpoint: number; error: string }) => errs.push({ endpoint: m.endpoint, error: m.error }));
  stream.on('error', () => {});
  t.same(await errs.atLeast(1), [{ endpoint: b.vmId, error: 'NOT_SUPPORTED' }], 'the recent error first');

  await a.sendDirectReq(0x8001, [BigInt(CMD.ECHO), 1n]);
  await b.sendDirectReq(0x8002, [BigInt(CMD.ECHO), 2n]);
  await a.call({ fn: 'RX_RELEASE', vmId: 0 }); // DENIED
  await b.call({ fn: 'RX_RELEASE', vmId: 0 }); // DENIED
  const records = await sse.records.atLeast(2);
  t.same(
    records.map((r) => [r.kind, r.endpoint, 'function' in r ? r.function : '']),
    [
      ['call', a.vmId, 'FFA_MSG_SEND_DIRECT_REQ_64'],
      ['return', a.vmId, 'FFA_MSG_SEND_DIRECT_REQ_64'],
    ],
  );
  t.same(await errs.atLeast(3), [
    { endpoint: b.vmId, error: 'NOT_SUPPORTED' },
    { endpoint: a.vmId, error: 'DENIED' },
    { endpoint: b.vmId, error: 'DENIED' },
  ]);
  await sse.close();
  stream.cancel();

  const recent = (await app.inject({ method: 'GET', url: `/v1/trace/recent?endpoint=${b.vmId}&errors=true&function=RX_RELEASE` })).json();
  t.same(
    recent.map((r: { result: { error: string } }) => r.result.error),
    ['DENIED'],
  );

  const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body;
  t.match(metrics, /ffa_calls_total\{function="FFA_MSG_SEND_DIRECT_REQ_64",result="MSG_SEND_DIRECT_RESP_64"\} 2/);
  t.match(metrics, /ffa_calls_total\{function="FFA_RX_RELEASE",result="ERROR:DENIED"\} 2/);
  t.match(metrics, /ffa_endpoints_attached\{kind="vm"\} 2/);
  t.match(metrics, /ffa_call_latency_seconds_bucket/);
  // Cumulative buckets: never decreasing, and +Inf is the count (both direct requests).
  const buckets = metrics
    .split('\n')
    .filter((l) => l.startsWith('ffa_call_latency_seconds_bucket{') && l.includes('function="FFA_MSG_SEND_DIRECT_REQ_64"'))
    .map((l) => [/le="([^"]+)"/.exec(l)![1], Number(l.split(' ').at(-1))] as const);
  t.equal(buckets.at(-1)?.[0], '+Inf');
  t.equal(buckets.at(-1)?.[1], 2);
  t.ok(
    buckets.every(([, n], i) => i === 0 || n >= buckets[i - 1]![1]),
    `cumulative: ${buckets.map(([, n]) => n).join(' ')}`,
  );

  const state = await new Promise<{ json: string }>((resolve, reject) =>
    (dbg as unknown as Record<string, (r: object, cb: (e: Error | null, v: { json: string }) => void) => void>)['State']!({}, (e, v) =>
      e ? reject(e) : resolve(v),
    ),
  );
  t.same(
    JSON.parse(state.json).endpoints.map((e: { name: string }) => e.name),
    ['a', 'b', 'sp1', 'sp2', 'sp3', 'sp4'],
  );
  dbg.close();
  for (const d of [a, b]) {
    await d.exit();
    await d.vm.detach();
  }
});

t.test('OpenAPI at /docs', async (t) => {
  const { app, stop } = await stack();
  t.teardown(stop);
  const spec = (await app.inject({ method: 'GET', url: '/docs/json' })).json();
  for (const p of [
    '/v1/smccc',
    '/v1/endpoints',
    '/v1/endpoints/{id}',
    '/v1/endpoints/{id}/memory',
    '/v1/memory/transactions',
    '/v1/memory/access',
    '/v1/trace',
    '/v1/trace/recent',
    '/metrics',
    '/healthz',
  ]) {
    t.ok(spec.paths[p], p);
  }
  t.match((await app.inject({ method: 'GET', url: '/docs/' })).body, /swagger/i);
});
