// The trace, record and replay: records decode through the codec, filters, and a recorded
// multi-VM session replays to the same answers (and a changed manifest to its first difference).

import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Worker } from 'node:worker_threads';
import t from 'tap';
import { encodeCall, FFA_PAGE_SIZE, FFA_VERSION_1_2, type FfaCall, fid, hex, MEM_PERM, splitU64, UUID_NIL } from '../proto/ffa/index.js';
import { FfaDriver } from '../client-driver/driver.js';
import { InProcessConnector } from '../server/session/in-process.js';
import { EmulatedVm } from '../client-driver/vm.js';
import { parseTrace, replay, replayFile } from '../server/debug/replay.js';
import { type TraceLine, type TraceRecord, Tracer } from '../server/debug/tracer.js';
import { defaultManifest } from '../server/manifest.js';
import { PARTITION_COMMANDS as CMD } from '../server/partitions/commands.js';
import { startBuiltinPartitions } from '../server/partitions/index.js';
import { Spmc } from '../server/spmc/spmc.js';
import { modelReaches, RawVm } from './helpers.js';

type CallRecord = Extract<TraceRecord, { kind: 'call' }>;

/** Resolves once the tracer's decoder thread has said it has loaded (its 'ready' message). */
function decoderLoaded(inside: { decoder: Worker; decoderReady: boolean; atDecoder: unknown[] }): Promise<void> {
  if (inside.decoderReady) return Promise.resolve();
  // An idle decoder does not keep the process alive: this wait must.
  inside.decoder.ref();
  return new Promise((resolve) => {
    const ready = (m: unknown) => {
      if (m !== 'ready') return;
      inside.decoder.off('message', ready);
      if (inside.atDecoder.length === 0) inside.decoder.unref();
      resolve();
    };
    inside.decoder.on('message', ready);
  });
}

t.test('every call is one record, decoded by the codec: names, arguments, results, errors', async (t) => {
  const spmc = new Spmc({ partitions: defaultManifest() });
  const tracer = new Tracer(spmc);
  const vm = RawVm.attach(spmc);
  const { tx } = vm.mapMailbox();
  // One of each kind of call a VM makes; the record must name it and decode it for the caller.
  const calls: FfaCall[] = [
    { fn: 'ID_GET' },
    { fn: 'SPM_ID_GET' },
    { fn: 'FEATURES', id: fid('RXTX_MAP', 64), inputProperties: 0 },
    { fn: 'PARTITION_INFO_GET', uuid: UUID_NIL, countOnly: true },
    { fn: 'PARTITION_INFO_GET_REGS', uuid: UUID_NIL, startIndex: 0, tag: 0 },
    { fn: 'RX_RELEASE', vmId: 0 },
    { fn: 'NOTIFICATION_BIND', route: { source: 0x8001, destination: vm.id }, perVcpu: false, bitmap: 1n },
    { fn: 'NOTIFICATION_GET', receiver: vm.id, vcpu: 0, bitmaps: { sp: true, vm: true, spmFramework: true, hypFramework: true } },
    { fn: 'NOTIFICATION_INFO_GET', width: 64 },
    { fn: 'MSG_SEND2', senderVmId: 0, delaySri: false },
    { fn: 'MEM_RECLAIM', handle: 0x1234n, flags: 0 },
    { fn: 'MSG_SEND_DIRECT_REQ', width: 64, route: { source: vm.id, destination: 0x8001 }, message: { kind: 'partition' }, args: [1n, 2n, 3n, 4n, 5n] },
    { fn: 'RUN', target: { endpoint: 0x8003, vcpu: 0 } },
    { fn: 'RXTX_UNMAP', id: 0 },
  ];
  void tx;
  for (const c of calls) vm.call(c);
  const recs = tracer.recent({}, 1000).filter((r): r is CallRecord => r.kind === 'call');
  t.same(
    recs.map((r) => r.function),
    [
      'FFA_VERSION', // from RawVm.attach
      'FFA_RXTX_MAP_64',
      'FFA_ID_GET',
      'FFA_SPM_ID_GET',
      'FFA_FEATURES',
      'FFA_PARTITION_INFO_GET',
      'FFA_PARTITION_INFO_GET_REGS',
      'FFA_RX_RELEASE',
      'FFA_NOTIFICATION_BIND',
      'FFA_NOTIFICATION_GET',
      'FFA_NOTIFICATION_INFO_GET_64',
      'FFA_MSG_SEND2',
      'FFA_MEM_RECLAIM',
      'FFA_MSG_SEND_DIRECT_REQ_64',
      'FFA_RUN',
      'FFA_RXTX_UNMAP',
    ],
  );
  const by = (fn: string) => recs.find((r) => r.function === fn)!;
  t.same(by('FFA_ID_GET').result, {
    function: 'FFA_SUCCESS_32',
    values: { args: [hex(vm.id)] },
    r: [hex(fid('SUCCESS')), '0x0', hex(vm.id)],
  });
  t.same(by('FFA_NOTIFICATION_BIND').args, { route: { source: '0x8001', destination: hex(vm.id) }, perVcpu: false, bitmap: '0x1' });
  t.equal(by('FFA_NOTIFICATION_INFO_GET_64').result?.error, 'NO_DATA');
  t.equal(by('FFA_MSG_SEND2').result?.error, 'INVALID_PARAMETERS', 'an empty TX: the header names nobody');
  t.equal(by('FFA_MEM_RECLAIM').result?.error, 'INVALID_PARAMETERS');
  t.equal(by('FFA_MSG_SEND_DIRECT_REQ_64').result?.error, 'BUSY', 'SP1 is not running in this SPMC');
  t.same(by('FFA_MSG_SEND_DIRECT_REQ_64').args, {
    route: { source: hex(vm.id), destination: '0x8001' },
    message: { kind: 'partition' },
    args: ['0x1', '0x2', '0x3', '0x4', '0x5'],
  });
  t.equal(by('FFA_MSG_SEND_DIRECT_REQ_64').via, 'direct');
  t.ok(recs.every((r) => r.endpoint === vm.id && r.name === `vm${vm.id}` && r.vcpu === 0 && typeof r.time === 'string'));
  // Registers that do not decode are shown as such.
  vm.regs([fid('RX_RELEASE'), 0, 1]);
  const bad = tracer.recent({ function: 'RX_RELEASE' }, 1)[0] as CallRecord;
  t.match(bad.invalid, /MBZ|must be zero|w2/i);
  t.equal(bad.result?.error, 'INVALID_PARAMETERS');
  await tracer.close();
});

t.test('blocked calls: the call, then its return with the latency; attaches, detaches, console lines, faults', async (t) => {
  const spmc = new Spmc({ partitions: defaultManifest() });
  const tracer = new Tracer(spmc);
  await startBuiltinPartitions(spmc);
  const drv = new FfaDriver(await EmulatedVm.attach(new InProcessConnector(spmc), { name: 'guest' }));
  await drv.init();
  await drv.sendDirectReq(0x8002, [BigInt(CMD.BIND), BigInt(drv.vmId), 1n, 0n]);
  await drv.notifier.notifySend(0x8002, false, 0);
  await drv.run(0x8002, 0); // it takes the NPI when given cycles
  await modelReaches(spmc, () => spmc.endpoint(0x8002)!.console.lines.length > 0); // SP2 collected it and logged
  await drv.vm.read(0x1000n, 4).catch(() => {});
  const mine = tracer.recent({ endpoint: drv.vmId }, 1000);
  t.equal(mine[0]!.kind, 'attach');
  const req = mine.find((r): r is CallRecord => r.kind === 'call' && r.function === 'FFA_MSG_SEND_DIRECT_REQ_64' && r.blocked === true)!;
  t.ok(req, 'the request blocked');
  const ret = mine.find((r) => r.kind === 'return' && r.callSeq === req.seq);
  t.ok(ret && ret.kind === 'return' && ret.result.function === 'FFA_MSG_SEND_DIRECT_RESP_64' && ret.latencyUs >= 0, 'and returned with the response');
  t.ok(
    mine.some((r) => r.kind === 'fault' && r.access === 'read' && r.address === '0x1000'),
    'the fault',
  );
  const sp2 = tracer.recent({ endpoint: 0x8002 }, 1000);
  t.ok(
    sp2.some((r) => r.kind === 'console' && r.line === 'notified from-sp=0x0 from-vm=0x1'),
    'the console line',
  );
  t.ok(
    sp2.some((r) => r.kind === 'call' && r.function === 'FFA_CONSOLE_LOG_64'),
    'and the call that wrote it',
  );
  await drv.exit();
  await drv.vm.detach();
  t.equal(tracer.recent({ endpoint: drv.vmId }, 1).at(-1)!.kind, 'detach');
  // Filters.
  t.ok(tracer.recent({ errorsOnly: true }, 1000).every((r) => r.kind === 'fault' || ('result' in r && r.result?.error)));
  t.ok(tracer.recent({ function: 'ffa_msg_wait' }, 1000).every((r) => 'function' in r && r.function === 'FFA_MSG_WAIT'));
  t.ok(tracer.recent({ function: 'MSG_SEND_DIRECT_REQ' }, 1000).length > 0, 'a name without width matches both');
  await tracer.close();
});

t.test('live subscribers get the calls of several VMs, each with its filter', async (t) => {
  const spmc = new Spmc({ partitions: defaultManifest() });
  const tracer = new Tracer(spmc);
  const all: TraceLine[] = [];
  const onlyA: TraceLine[] = [];
  const errors: TraceLine[] = [];
  const a = RawVm.attach(spmc);
  const b = RawVm.attach(spmc);
  tracer.subscribe({}, (lines) => all.push(...lines));
  tracer.subscribe({ endpoint: a.id }, (lines) => onlyA.push(...lines));
  tracer.subscribe({ errorsOnly: true }, (lines) => errors.push(...lines));
  a.call({ fn: 'ID_GET' });
  b.call({ fn: 'ID_GET' });
  b.call({ fn: 'RX_RELEASE', vmId: 0 }); // DENIED: nothing to release
  // Decoded on the tracer's decoder thread: the lines arrive once it has answered.
  t.same(all, [], 'nothing is decoded on the call path');
  await tracer.drained();
  t.same(
    all.map((r) => r.endpoint),
    [a.id, b.id, b.id],
  );
  t.same(
    onlyA.map((r) => r.endpoint),
    [a.id],
  );
  t.same(
    errors.map((r) => r.error),
    ['DENIED'],
  );
  // The line carries the whole record: what a subscriber parses is the same as the ring's record.
  const parsed = all.map((l) => JSON.parse(l.json) as TraceRecord);
  t.same(
    parsed.map((r) => r.kind === 'call' && r.function),
    ['FFA_ID_GET', 'FFA_ID_GET', 'FFA_RX_RELEASE'],
  );
  t.same(parsed, tracer.recent({}, 3), 'streamed and on-demand decoding agree');
  await tracer.close();
});

t.test('a recorded multi-VM session replays with every result matching; a changed manifest shows the first difference', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rspmc-trace-'));
  const file = join(dir, 'session.jsonl');
  const partitions = defaultManifest();
  const spmc = new Spmc({ partitions, handleSeed: 0x1234567n });
  const tracer = new Tracer(spmc, { file, session: { partitions, limits: spmc.state.limits, handleSeed: 0x1234567n } });
  await startBuiltinPartitions(spmc);
  const connector = new InProcessConnector(spmc);
  const drivers = await Promise.all(
    [1, 2, 3].map(async (i) => {
      const d = new FfaDriver(await EmulatedVm.attach(connector, { name: `vm${i}`, vcpuCount: 2 }));
      await d.init();
      return d;
    }),
  );
  const [a, b, c] = drivers as [FfaDriver, FfaDriver, FfaDriver];
  // Direct messages (nested), memory sharing to an SP and between VMs, notifications, indirect messages.
  await a.sendDirectReq(0x8001, [BigInt(CMD.FORWARD), 0x8002n, 7n]);
  await b.sendDirectReq(0x8003, [BigInt(CMD.YIELD), 1n], { vcpu: 1 });
  const page = a.vm.pages.alloc(1)!;
  await a.vm.write(page, new Uint8Array(FFA_PAGE_SIZE).fill(0x11));
  const handle = await a.memShare({ receivers: [{ id: 0x8002, permissions: MEM_PERM.DATA_RW }], regions: [{ address: page, pageCount: 1 }] });
  await a.sendDirectReq(0x8002, [BigInt(CMD.MEM), ...splitU64(handle), 0x22n, 1n]);
  await a.memReclaim(handle);
  const got = new Promise<void>((resolve) => (c.notifier.onUnclaimedMessage = () => resolve()));
  await b.sendIndirect(c.vmId, Uint8Array.of(1, 2, 3));
  await got;
  let collected!: () => void;
  const notified = new Promise<void>((resolve) => (collected = resolve));
  await c.notifier.notifyRequest({ id: 0, name: 'b', vmId: b.vmId, uuid: UUID_NIL, properties: 0, mode32bit: false }, false, () => collected(), 9);
  await b.notifier.notifySend(c.vmId, false, 9);
  await notified; // c was interrupted and collected it
  for (const d of drivers) {
    await d.exit();
    await d.vm.detach();
  }
  await tracer.close();

  const { header, records } = parseTrace(readFileSync(file, 'utf8'), file);
  t.ok(records.length > 100, `${records.length} records`);
  const report = replay(header, records);
  t.equal(report.difference, undefined, 'no difference');
  const immediate = records.filter((r) => r.kind === 'call' && !r.blocked).length;
  const returns = records.filter((r) => r.kind === 'return').length;
  t.equal(report.matched, immediate + returns, 'every answer, immediate or after blocking, compared equal');
  t.ok(report.calls > 50, `${report.calls} calls re-issued`);

  // The same session against a manifest where SP2 takes no direct requests.
  const changed = partitions.map((p) => (p.id === 0x8002 ? { ...p, properties: p.properties & ~0x1 } : p));
  const diff = replayFile(file, changed).difference;
  t.ok(diff, 'a difference is found');
  t.match(diff!.what, /PARTITION_INFO_GET_REGS|MSG_SEND_DIRECT_REQ/);
  t.not(diff!.recorded, diff!.replayed);
});

t.test('a decoder thread that stops leaves the trace running, decoded on the main thread', async (t) => {
  const spmc = new Spmc({ partitions: defaultManifest() });
  const tracer = new Tracer(spmc);
  const vm = RawVm.attach(spmc);
  const got: TraceLine[] = [];
  tracer.subscribe({}, (lines) => got.push(...lines));
  const inside = tracer as unknown as { decoder: Worker; decoderReady: boolean; atDecoder: unknown[] };
  await decoderLoaded(inside);
  vm.call({ fn: 'ID_GET' });
  const drained = tracer.drained(); // hands the batch over now
  t.equal(inside.atDecoder.length, 1, 'the batch went to the decoder thread');
  await drained;
  t.equal(got.length, 1, 'and came back decoded');
  const warned = new Promise<string>((resolve) => process.once('warning', (w) => resolve(w.message)));
  await inside.decoder.terminate();
  t.match(await warned, /trace decoder thread exited/);
  vm.call({ fn: 'SPM_ID_GET' });
  await tracer.drained();
  t.same(
    got.map((l) => l.function),
    ['FFA_ID_GET', 'FFA_SPM_ID_GET'],
    'and then on the main thread',
  );
  await tracer.close();
});

t.test('past its backlog the decoder thread is helped, and records still go out in order', async (t) => {
  const spmc = new Spmc({ partitions: defaultManifest() });
  const tracer = new Tracer(spmc, { decoderBacklog: 1 });
  const vm = RawVm.attach(spmc);
  const got: TraceLine[] = [];
  tracer.subscribe({}, (lines) => got.push(...lines));
  const inside = tracer as unknown as { decoder: Worker; decoderReady: boolean; atDecoder: unknown[] };
  await decoderLoaded(inside);
  vm.call({ fn: 'ID_GET' });
  void tracer.drained(); // one record: to the thread
  t.equal(inside.atDecoder.length, 1);
  vm.call({ fn: 'SPM_ID_GET' });
  vm.call({ fn: 'FEATURES', id: fid('MSG_SEND2'), inputProperties: 0 });
  const drained = tracer.drained(); // two more: past the backlog, decoded here, held for the first
  t.equal(inside.atDecoder.length, 1, 'the second batch did not go to the thread');
  t.same(got, [], 'and waits for the first');
  await drained;
  t.same(
    got.map((l) => l.function),
    ['FFA_ID_GET', 'FFA_SPM_ID_GET', 'FFA_FEATURES'],
  );
  t.same(
    got.map((l) => l.seq),
    [...got.map((l) => l.seq)].sort((a, b) => a - b),
    'in capture order',
  );
  await tracer.close();
});

t.test('replay refuses what is not a trace', async (t) => {
  t.throws(() => parseTrace('', 'x'), /empty/);
  t.throws(() => parseTrace('{"kind":"call"}\n', 'x'), /not a remote-spmc trace/);
  const header = JSON.stringify({ kind: 'session', format: 1, partitions: [], limits: {}, handleSeed: '0x0' });
  t.throws(() => parseTrace(`${header}\nnope\n`, 'x'), /x:2: not JSON/);
  t.throws(() => parseTrace(`${header}\n${JSON.stringify({ kind: 'lost', batches: 1, why: 'exited (code 1)' })}\n`, 'x'), /x:2: the recording lost records/);
});

t.test('tracing does not change answers', async (t) => {
  const plain = RawVm.attach(new Spmc({ partitions: defaultManifest() }));
  const spmc = new Spmc({ partitions: defaultManifest() });
  const tracer = new Tracer(spmc, { ringSize: 4 });
  const traced = RawVm.attach(spmc);
  for (const c of [{ fn: 'ID_GET' }, { fn: 'FEATURES', id: fid('MSG_SEND2'), inputProperties: 0 }] as FfaCall[]) {
    t.same(traced.regs(encodeCall(c, FFA_VERSION_1_2)), plain.regs(encodeCall(c, FFA_VERSION_1_2)));
  }
  t.equal(tracer.recent({}, 100).length, 4, 'the ring keeps its size');
  await tracer.close();
});
