// The session core under every transport: one refusal -> status mapping (gRPC, JSON, in-process),
// refusal reasons reaching every consumer (gRPC caller, JSON answer, SSE, the Debug stream, the
// CLI's trace line, the driver's log), and interceptors that observe or answer instead of the model.

import * as grpc from '@grpc/grpc-js';
import t from 'tap';
import { errorRegisters, FFA_ERRORS, fid, toRegisters } from '../proto/ffa/index.js';
import { debugClientConstructor } from '../proto/wire.js';
import { FfaDriver } from '../client-driver/driver.js';
import { GrpcConnector } from '../client-driver/transport/grpc.js';
import type { Answer, Connector } from '../client-driver/transport/transport.js';
import { EmulatedVm } from '../client-driver/vm.js';
import { formatRecord } from '../server/cli/trace.js';
import type { TraceRecord } from '../server/debug/records.js';
import { HTTP_STATUS } from '../server/http/smccc.js';
import { defaultManifest } from '../server/manifest.js';
import { InProcessConnector } from '../server/session/in-process.js';
import { Spmc } from '../server/spmc/spmc.js';
import { codeOf, newSpmc, servedSpmc } from './helpers.js';

/** A server with both transports over one core; `limits` for the model. */
async function stack(spmc = newSpmc()) {
  const served = await servedSpmc(spmc);
  const connectors: Connector[] = [];
  const grpcConnector = () => {
    const c = new GrpcConnector(served.grpcAddr);
    connectors.push(c);
    return c;
  };
  const stop = async () => {
    for (const c of connectors) c.close();
    await served.stop();
  };
  return { ...served, address: served.grpcAddr, grpcConnector, stop };
}

const post = async (base: string, path: string, body: object) => {
  const r = await fetch(`${base}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: r.status, body: (await r.json()) as Record<string, unknown> };
};

t.test('every refusal kind has one status, on gRPC, the JSON transport and in process', async (t) => {
  // [refusal, how to provoke it through a connector, the same over JSON, expected status]
  const s = await stack(new Spmc({ partitions: defaultManifest(), limits: { maxVms: 2 } }));
  t.teardown(s.stop);
  const inProcess = new InProcessConnector(s.core);
  const grpcC = s.grpcConnector();
  type Case = [string, (c: Connector) => Promise<unknown>, () => Promise<{ status: number; body: Record<string, unknown> }>, string];
  const taken = await inProcess.attach({ name: 'holder' });
  const cases: Case[] = [
    [
      'SpmcError invalid-argument (vcpu_count)',
      (c) => c.attach({ vcpuCount: 1000 }),
      () => post(s.base, '/v1/attach', { vcpuCount: 64, ramBytes: '0xffffffffffffffff' }),
      'INVALID_ARGUMENT',
    ],
    [
      'SpmcError already-exists (id in use)',
      (c) => c.attach({ endpointId: taken.endpointId }),
      () => post(s.base, '/v1/attach', { endpointId: taken.endpointId }),
      'ALREADY_EXISTS',
    ],
    [
      'SpmcError permission-denied (partition without credential)',
      (c) => c.attach({ endpointId: 0x8001 }),
      () => post(s.base, '/v1/attach', { endpointId: 0x8001 }),
      'PERMISSION_DENIED',
    ],
    [
      'SessionError invalid-argument (a UUID that is not one)',
      (c) => c.attach({ uuids: ['not-a-uuid'] }),
      // Over JSON the route's schema refuses it first, with the same status.
      () => post(s.base, '/v1/attach', { uuids: ['not-a-uuid'] }),
      'INVALID_ARGUMENT',
    ],
  ];
  for (const [what, viaConnector, viaJson, status] of cases) {
    t.equal(await codeOf(viaConnector(inProcess)), status, `in-process: ${what}`);
    t.equal(await codeOf(viaConnector(grpcC)), status, `gRPC: ${what}`);
    const r = await viaJson();
    t.equal(r.status, HTTP_STATUS[status as keyof typeof HTTP_STATUS], `JSON: ${what}`);
    t.equal(r.body['error'], status, `JSON names the status: ${what}`);
  }

  // A memory fault (MemoryFault) is PERMISSION_DENIED on every transport.
  const other = await grpcC.attach({ name: 'other' });
  t.equal(await codeOf(taken.transport.readMemory(other.ramBase, 16)), 'PERMISSION_DENIED', 'in-process: memory fault');
  t.equal(await codeOf(other.transport.readMemory(taken.ramBase, 16)), 'PERMISSION_DENIED', 'gRPC: memory fault');
  // A bad access length is the session core's INVALID_ARGUMENT everywhere.
  t.equal(await codeOf(taken.transport.readMemory(taken.ramBase, 0)), 'INVALID_ARGUMENT', 'in-process: zero-length read');
  t.equal(await codeOf(other.transport.readMemory(other.ramBase, 0)), 'INVALID_ARGUMENT', 'gRPC: zero-length read');

  // No room for another VM: RESOURCE_EXHAUSTED (the limit is 2, both are taken).
  t.equal(await codeOf(inProcess.attach({})), 'RESOURCE_EXHAUSTED', 'in-process: VM limit');
  t.equal(await codeOf(grpcC.attach({})), 'RESOURCE_EXHAUSTED', 'gRPC: VM limit');
  const full = await post(s.base, '/v1/attach', {});
  t.same([full.status, full.body['error']], [429, 'RESOURCE_EXHAUSTED'], 'JSON: VM limit');

  // An unknown or detached session: UNAUTHENTICATED.
  const unknown = await post(s.base, '/v1/smccc', { session: 'nobody', x: ['0x84000063'] });
  t.same(
    [unknown.status, unknown.body['error'], unknown.body['message']],
    [401, 'UNAUTHENTICATED', 'session: unknown (never attached, or released)'],
    'JSON: unknown session, named as the field at fault',
  );
  await taken.transport.detach();
  t.equal(await codeOf(taken.transport.invoke(toRegisters([fid('ID_GET')]))), 'UNAUTHENTICATED', 'in-process: detached');

  // Shutting down: UNAVAILABLE.
  s.core.stop();
  t.equal(await codeOf(inProcess.attach({})), 'UNAVAILABLE', 'in-process: stopping');
  t.equal(await codeOf(other.transport.invoke(toRegisters([fid('ID_GET')]))), 'UNAVAILABLE', 'gRPC: stopping');
  const down = await post(s.base, '/v1/attach', {});
  t.same([down.status, down.body['error']], [503, 'UNAVAILABLE'], 'JSON: stopping');
});

t.test('a refusal reason reaches the gRPC caller, the JSON answer, SSE, the Debug stream, the CLI line and the driver log', async (t) => {
  const s = await stack();
  t.teardown(s.stop);
  const expected = { code: 'rxtx_unmap.not_mapped', text: '' };

  // SSE: subscribed once its first comment arrives.
  const ctl = new AbortController();
  t.teardown(() => ctl.abort());
  const res = await fetch(`${s.base}/v1/trace?errors=true`, { signal: ctl.signal });
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let sseText = '';
  const sseUntil = async (pred: (text: string) => boolean) => {
    while (!pred(sseText)) {
      const { value, done } = await reader.read();
      if (done) throw new Error('SSE ended');
      sseText += decoder.decode(value);
    }
  };
  await sseUntil((x) => x.includes(': remote-spmc trace'));

  // gRPC caller: RXTX_UNMAP with nothing mapped is refused with its reason.
  const logged: { obj: object; msg?: string }[] = [];
  const vm = await EmulatedVm.attach(s.grpcConnector(), { name: 'why' });
  const answer: Answer = await vm.transport.invoke(toRegisters([fid('RXTX_UNMAP'), 0n]));
  t.equal(Number(answer[2]! & 0xffffffffn) | 0, FFA_ERRORS.INVALID_PARAMETERS);
  t.equal(answer.reason?.code, expected.code, 'gRPC: the reason code rides with the registers');
  expected.text = answer.reason!.text;
  t.equal(expected.text, `RXTX_UNMAP: 0x${vm.id.toString(16)} has no RX/TX buffers mapped`);

  // The driver logs it at debug level, and its error says why.
  const drv = new FfaDriver(vm, { log: { debug: (obj, msg) => logged.push({ obj, msg }) } });
  const err = await drv.success({ fn: 'RXTX_UNMAP', id: 0 }).catch((e: Error) => e);
  t.match((err as Error).message, expected.text, 'the driver error carries the reason');
  t.same(logged, [{ obj: { fn: 'RXTX_UNMAP', error: 'INVALID_PARAMETERS', reason: expected.code }, msg: expected.text }]);

  // The Debug stream, errors only: the ring's record of that refusal first, then live ones.
  const debug = new (debugClientConstructor())(s.address, grpc.credentials.createInsecure());
  t.teardown(() => debug.close());
  const trace = (debug as unknown as Record<string, (req: object) => grpc.ClientReadableStream<Record<string, string>>>)['Trace']!({
    errors_only: true,
    recent: 1,
  });
  t.teardown(() => trace.cancel());
  trace.on('error', () => {});
  const nextRecord = () => new Promise<Record<string, string>>((resolve) => trace.once('data', resolve));
  const fromRing = await nextRecord();
  t.equal(fromRing['reason_code'], expected.code, 'Debug stream (recent): reason_code');
  t.equal(fromRing['reason'], expected.text, 'Debug stream (recent): reason');
  // The live record of the JSON VM's refusal (made below).
  const recordOf = (endpoint: () => number) =>
    new Promise<Record<string, string>>((resolve) => {
      const see = (r: Record<string, string>) => {
        if (Number(r['endpoint']) !== endpoint()) return;
        trace.off('data', see);
        resolve(r);
      };
      trace.on('data', see);
    });
  let jsonVm = -1;
  const live = recordOf(() => jsonVm);

  // JSON transport.
  const att = await post(s.base, '/v1/attach', { name: 'json' });
  jsonVm = att.body['endpointId'] as number;
  const r = await post(s.base, '/v1/smccc', { session: att.body['session'], x: [`0x${fid('RXTX_UNMAP').toString(16)}`] });
  t.equal(r.status, 200);
  t.equal(r.body['reasonCode'], expected.code, 'JSON: reasonCode');
  t.equal(r.body['reason'], `RXTX_UNMAP: 0x${(att.body['endpointId'] as number).toString(16)} has no RX/TX buffers mapped`, 'JSON: reason');
  const ok = await post(s.base, '/v1/smccc', { session: att.body['session'], x: [`0x${fid('ID_GET').toString(16)}`] });
  t.notOk('reason' in ok.body, 'no reason on a success');

  // The Debug stream's live record of the JSON refusal, and SSE.
  const rec = await live;
  t.equal(rec['reason_code'], expected.code, 'Debug stream (live): reason_code');
  t.equal(rec['reason'], r.body['reason'], 'Debug stream (live): reason');
  await sseUntil((x) => x.includes('"reasonCode"'));
  const sseRecord = JSON.parse(
    sseText
      .split('\n')
      .find((l) => l.startsWith('data: '))!
      .slice(6),
  ) as TraceRecord & { reason?: string };
  t.equal(sseRecord.reason, expected.text, 'SSE: the record says why');

  // The CLI's trace line (remote-spmc trace prints formatRecord of each record).
  t.match(formatRecord(JSON.parse(fromRing['json']!) as TraceRecord, false), `FFA_ERROR INVALID_PARAMETERS (${expected.text})`);
});

t.test('interceptors: run in order around every transport, and one may answer instead of the model', async (t) => {
  const s = await stack();
  t.teardown(s.stop);
  const seen: string[] = [];
  const injected = { code: 'inject.busy', text: 'ID_GET: injected BUSY' };
  // Outermost first: the recorder sees what the injector answered.
  const stopRecorder = s.core.use({
    name: 'recorder',
    before: (c) => void seen.push(`before ${c.via}`),
    after: (c, _out, reason) => void seen.push(`after ${c.answeredBy ?? 'model'} ${reason?.code ?? ''}`),
  });
  const stopInjector = s.core.use({
    name: 'injector',
    before: (c) => {
      const d = c.decoded();
      return d.ok && d.call.fn === 'ID_GET' ? { x: errorRegisters(FFA_ERRORS.BUSY), reason: injected } : undefined;
    },
  });
  const inProcess = await new InProcessConnector(s.core).attach({});
  const viaGrpc = await s.grpcConnector().attach({});
  const a = await inProcess.transport.invoke(toRegisters([fid('ID_GET')]));
  const b = await viaGrpc.transport.invoke(toRegisters([fid('ID_GET')]));
  for (const [who, x] of [
    ['in-process', a],
    ['gRPC', b],
  ] as const) {
    t.equal(Number(x[0]! & 0xffffffffn), fid('ERROR'), `${who}: the injected answer`);
    t.same(x.reason, injected, `${who}: with the injector's reason`);
  }
  t.same(seen, ['before in-process', 'after injector inject.busy', 'before grpc-session', 'after injector inject.busy']);
  // The trace (the first link) recorded the injected answers with their reason.
  const traced = s.tracer.recent({ function: 'ID_GET' }, 10);
  t.same(
    traced.map((r) => 'reasonCode' in r && r.reasonCode),
    ['inject.busy', 'inject.busy'],
  );
  // Removed, the model answers again.
  stopInjector();
  stopRecorder();
  const c = await inProcess.transport.invoke(toRegisters([fid('ID_GET')]));
  t.equal(Number(c[0]! & 0xffffffffn), fid('SUCCESS', 32), 'the model answers once the injector is gone');
  t.equal(c[2], BigInt(inProcess.endpointId));
});
