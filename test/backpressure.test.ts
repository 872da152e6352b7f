// Backpressure wherever the server writes to a consumer: a trace client that does not read (SSE,
// gRPC Debug.Trace) holds a bounded queue, loses records past it and is told how many; a Session
// stream whose client does not read its answers is not read from either. Bounds are checked on the
// server's own counters (records queued, bytes unsent, calls answered and not read), and the
// process's RSS growth is kept under a fixed bound that the unbounded writes of old exceeded.

import http from 'node:http';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import * as grpc from '@grpc/grpc-js';
import t from 'tap';
import { fid, SRI_INTID, toRegisters, UUID_NIL } from '../proto/ffa/index.js';
import { debugClientConstructor } from '../proto/wire.js';
import { SpmcChannel } from '../client-driver/transport/grpc-client.js';
import type { FeedOptions, FeedStats } from '../server/debug/feed.js';
import type { TraceRecord } from '../server/debug/records.js';
import { Tracer } from '../server/debug/tracer.js';
import { SpmcGrpcServer } from '../server/grpc/server.js';
import { SessionCore } from '../server/session/core.js';
import { Arrivals, RawVm, servedSpmc, startedSpmc } from './helpers.js';

const CALLS = 50_000;
const QUEUE = 1000;
/**
 * What the process may hold more after a GC once CALLS calls were traced to six stuck clients
 * (bounded queues: under 10 MiB; the unbounded writes of old: 205 MiB): the bound that tells
 * bounded from unbounded. And how much its RSS may grow meanwhile, sampled after a GC of this
 * thread: 40-95 MiB alone, but RSS also counts the trace decoder thread's garbage, which this GC
 * does not collect; on a loaded 2-core machine running the whole suite it once reached 211 MiB.
 */
const HELD_BOUND = 48 << 20;
const RSS_BOUND = 320 << 20;

// A full GC on demand, to measure what is held rather than what is garbage.
v8.setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

type DebugClient = grpc.Client & Record<string, (req: object) => grpc.ClientReadableStream<{ json: string }>>;

async function stack(subscribers: FeedOptions) {
  const served = await servedSpmc(await startedSpmc(), { subscribers });
  const Client = debugClientConstructor();
  const dbg = new Client(served.grpcAddr, grpc.credentials.createInsecure()) as DebugClient;
  const stop = async () => {
    dbg.close();
    await served.stop();
  };
  return { ...served, dbg, stop };
}

interface StuckSse {
  /** Start reading. */
  read: () => void;
  /** The records (unnamed events), and the named events ({ event, data }). */
  records: Arrivals<TraceRecord>;
  events: Arrivals<{ event: string; data: string }>;
  ended: Promise<void>;
  close: () => void;
}

/** An SSE client that reads nothing until `read()`. */
function stuckSse(url: string): Promise<StuckSse> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false }, (res) => {
      res.pause();
      const records = new Arrivals<TraceRecord>();
      const events = new Arrivals<{ event: string; data: string }>();
      let buf = '';
      const ended = new Promise<void>((done) => res.on('close', done));
      resolve({
        read: () => {
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => {
            buf += chunk;
            for (let i = buf.indexOf('\n\n'); i >= 0; i = buf.indexOf('\n\n')) {
              const lines = buf.slice(0, i).split('\n');
              buf = buf.slice(i + 2);
              const data = lines.find((l) => l.startsWith('data: '));
              const event = lines.find((l) => l.startsWith('event: '));
              if (data && event) events.push({ event: event.slice(7), data: data.slice(6) });
              else if (data) records.push(JSON.parse(data.slice(6)) as TraceRecord);
            }
          });
          res.resume();
        },
        records,
        events,
        ended,
        close: () => req.destroy(),
      });
    });
    req.on('error', reject);
  });
}

/** A Debug.Trace stream (with its first record from the ring: subscribed once that has come) that reads nothing more until `read()`. */
function pausedTrace(dbg: DebugClient, filter: object) {
  const records = new Arrivals<TraceRecord>();
  const stream = dbg['Trace']!({ ...filter, recent: 1 });
  const status = new Promise<grpc.ServiceError>((resolve) => stream.on('error', resolve));
  stream.on('data', (m: { json: string }) => {
    if (records.items.length === 0) stream.pause();
    records.push(JSON.parse(m.json) as TraceRecord);
  });
  return { records, status, read: () => void stream.resume(), cancel: () => stream.cancel() };
}

/** Heap and buffers still held after a full GC: what a queue keeps, not garbage waiting to be collected. */
function heldAfterGc(): number {
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.external;
}

const mib = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;

/** `n` calls by `vm`, handed to the subscribers a thousand at a time; `each` runs after every thousand. */
async function traceCalls(tracer: Tracer, vm: RawVm, n: number, each: () => void = () => {}): Promise<void> {
  for (let done = 0; done < n;) {
    const batch = Math.min(1000, n - done);
    // One of the larger records (about 900 bytes of JSON): all partitions' information.
    for (let i = 0; i < batch; i++) vm.call({ fn: 'PARTITION_INFO_GET_REGS', uuid: UUID_NIL, startIndex: 0, tag: 0 });
    done += batch;
    await tracer.drained();
    each();
  }
}

/**
 * Where what a stream carried is not every seq from the first on exactly once, in order (as it must
 * be without a filter), with a `lost` record standing for the seqs it names.
 */
function gaps(recs: readonly TraceRecord[]): string[] {
  let expect = recs[0]!.seq;
  const breaks: string[] = [];
  for (const r of recs) {
    const from = r.kind === 'lost' ? r.fromSeq : r.seq;
    if (from !== expect) breaks.push(`${r.kind} ${from} where ${expect} was due`);
    if (r.kind === 'lost' && r.count !== r.seq - r.fromSeq + 1) breaks.push(`lost ${r.count} for ${r.fromSeq}..${r.seq}`);
    expect = r.seq + 1;
  }
  return breaks;
}

t.test(
  'three non-reading SSE clients and three paused gRPC Debug.Trace streams: bounded while 50k calls are traced, then told what they lost, then live',
  async (t) => {
    const { spmc, tracer, base, dbg, stop } = await stack({ queue: QUEUE, stallMs: 3_600_000 });
    t.teardown(stop);
    const vm = RawVm.attach(spmc, { name: 'busy' });
    await tracer.drained();

    // Three of each, subscribed in this order (the order of tracer.feeds()).
    const consumers: { via: string; records: Arrivals<TraceRecord>; read: () => void }[] = [];
    for (let i = 0; i < 3; i++) {
      const sse = await stuckSse(`${base}/v1/trace`);
      t.teardown(sse.close);
      consumers.push({ via: 'sse', records: sse.records, read: sse.read });
    }
    for (let i = 0; i < 3; i++) {
      const trace = pausedTrace(dbg, {});
      t.teardown(() => trace.cancel());
      await trace.records.atLeast(1);
      consumers.push({ via: 'grpc', records: trace.records, read: trace.read });
    }
    const feeds = tracer.feeds();
    t.same(
      feeds.map((f) => f.via),
      consumers.map((c) => c.via),
    );

    const held0 = heldAfterGc();
    const rss0 = process.memoryUsage().rss;
    let rssMax = rss0;
    let n = 0;
    await traceCalls(tracer, vm, CALLS, () => {
      // Every 5,000 calls, after a GC: the garbage of decoding is not what is measured.
      if (++n % 5 === 0) rssMax = Math.max(rssMax, (heldAfterGc(), process.memoryUsage().rss));
    });
    const held = heldAfterGc() - held0;
    const grown = rssMax - rss0;
    t.ok(held < HELD_BOUND, `heap and buffers held after a GC grew by ${mib(held)} (bound ${mib(HELD_BOUND)})`);
    t.ok(grown < RSS_BOUND, `RSS grew by ${mib(grown)} at most (bound ${mib(RSS_BOUND)})`);
    const lost: number[] = [];
    for (const f of feeds) {
      t.ok(f.stalled, `${f.via}: its client reads nothing`);
      t.ok(f.maxQueued <= QUEUE, `${f.via}: at most ${QUEUE} records queued (most: ${f.maxQueued})`);
      t.ok(f.lost > 0 && f.lost + f.written + f.queued >= CALLS, `${f.via}: the rest counted as lost (${f.lost})`);
      // Past the queue, what the transport holds: about one chunk past its own limit.
      if (f.via === 'sse') t.ok(f.maxBuffered <= 256 << 10, `sse: ${f.maxBuffered} bytes unsent at most`);
      else t.ok(f.maxBuffered <= 32, `grpc: ${f.maxBuffered} messages unsent at most`);
      lost.push(f.lost);
    }

    // Reading again: the queued records, then `lost` with the count, then live records.
    for (const c of consumers) c.read();
    for (const [i, c] of consumers.entries()) {
      t.match(await c.records.first((r) => r.kind === 'lost'), { kind: 'lost', count: lost[i], endpoint: 0 }, `${c.via}: told how many it lost`);
    }
    await traceCalls(tracer, vm, 10);
    const last = tracer.recent({}, 1)[0]!.seq;
    for (const c of consumers) {
      t.equal((await c.records.first((r) => r.seq === last)).kind, 'call', `${c.via}: live again`);
      // (A gRPC stream's first record is the one from the ring.)
      t.same(gaps(c.records.items.slice(c.via === 'grpc' ? 1 : 0)), [], `${c.via}: every record once, in order, the lost ones counted`);
    }
    for (const f of feeds) t.equal(f.lost, 0, `${f.via}: nothing more lost`);
  },
);

t.test('a trace client stuck while records are dropped is disconnected with the reason', async (t) => {
  const { spmc, tracer, base, dbg, stop } = await stack({ queue: 10, stallMs: 0 });
  t.teardown(stop);
  const vm = RawVm.attach(spmc, { name: 'busy' });
  await tracer.drained();
  const sse = await stuckSse(`${base}/v1/trace`);
  t.teardown(sse.close);
  const trace = pausedTrace(dbg, {});
  await trace.records.atLeast(1);
  const feeds: FeedStats[] = tracer.feeds();
  // Until both are cut off (the first record dropped does it, with no time allowed).
  for (let n = 0; feeds.some((f) => !f.disconnected); n++) {
    t.ok(n < 100, 'disconnected within 100k calls');
    if (n >= 100) break;
    await traceCalls(tracer, vm, 1000);
  }
  for (const f of feeds) t.match(f.disconnected, /buffer stayed full for \d+ s while its records were being dropped; \d+ records lost/, `${f.via}: the reason`);
  t.equal(tracer.feeds().length, 0, 'no subscriber left');
  sse.read();
  trace.read();
  const bye = await sse.events.first((e) => e.event === 'disconnect');
  t.match(JSON.parse(bye.data), { reason: /records lost/ }, 'sse: the reason is the last event');
  await sse.ended;
  const e = await trace.status;
  t.equal(grpc.status[e.code], 'RESOURCE_EXHAUSTED');
  t.match(e.details, /records lost/, 'grpc: the reason is the status');
});

t.test('a Session stream whose client reads no answers is not read from: answered-but-unread calls stay bounded', async (t) => {
  const spmc = await startedSpmc();
  const server = new SpmcGrpcServer(spmc);
  const address = `127.0.0.1:${await server.listen('127.0.0.1:0')}`;
  t.teardown(() => server.stop(200));
  const ch = new SpmcChannel(address);
  t.teardown(() => ch.close());
  const a = await ch.attach({ name: 'slow-reader' });
  // The calls the model answered on the stream, and the answers the client read: the difference is
  // what the server (and the wire) hold for it.
  const N = 20_000;
  // What flow control lets through before the server stops reading (about 2,100: HTTP/2 windows
  // and stream buffers); the unbounded reads of old answered all N.
  const BOUND = 5_000;
  let answered = 0;
  let read = 0;
  let most = 0;
  let overrun: (n: number) => void = () => {};
  const overran = new Promise<number>((resolve) => (overrun = resolve));
  const stopCount = SessionCore.for(spmc).use({
    name: 'test-count',
    after: (c) => {
      if (c.endpoint !== a.endpointId) return;
      answered++;
      most = Math.max(most, answered - read);
      if (answered - read > BOUND) overrun(answered - read);
    },
  });
  t.teardown(stopCount);
  const s = (ch.client['Session'] as () => grpc.ClientDuplexStream<object, { x: unknown[] }>).call(ch.client);
  s.on('error', () => {});
  const done = new Promise<void>((resolve) => s.on('end', resolve));
  let ids = 0;
  // The client reads the first answer, then nothing until the server has stopped reading it.
  s.on('data', (m: { x: unknown[] }) => {
    if (read++ === 0) s.pause();
    if (BigInt(m.x[2] as bigint) === BigInt(a.endpointId)) ids++;
  });
  const req = { session: a.session, vcpu: 0, x: toRegisters([fid('ID_GET')]) };
  for (let i = 0; i < N; i++) s.write(req);
  s.end();
  // The server stops reading it, or overruns.
  let looking = true;
  const paused = new Promise<void>((resolve) => {
    const look = () => (server.pausedStreams > 0 ? resolve() : looking && setImmediate(look));
    look();
  });
  const first = await Promise.race([paused.then(() => 'paused'), overran.then((n) => `overran: ${n} answers unread`)]);
  looking = false;
  t.equal(first, 'paused', 'the server stopped reading the stream');
  if (first !== 'paused') return void s.cancel();
  t.ok(answered < N, `${answered} of ${N} calls answered while one was read`);
  // Reading again: every answer comes, in order, and the server never runs far ahead.
  s.resume();
  await done;
  t.equal(read, N, 'every call answered');
  t.equal(ids, N, 'each answer is the ID_GET answer');
  t.ok(most <= BOUND, `at most ${most} answers unread at once (bound ${BOUND})`);
  t.equal(server.pausedStreams, 0);
});

t.test('an Interrupts line whose client does not read holds each pending interrupt once, not once per raise', async (t) => {
  const spmc = await startedSpmc();
  const server = new SpmcGrpcServer(spmc);
  const address = `127.0.0.1:${await server.listen('127.0.0.1:0')}`;
  t.teardown(() => server.stop(200));
  const ch = new SpmcChannel(address);
  t.teardown(() => ch.close());
  const a = await ch.attach({ name: 'sleeper' });
  // The model raising an interrupt for the VM, as notifications.ts does for the SRI.
  const raise = (intid: number) => {
    for (const o of spmc.state.observers) o.interrupt?.(a.endpointId, intid);
  };
  const got = new Arrivals<{ intid: number; vcpu: number }>();
  const observers = spmc.state.observers.size;
  const line = (ch.client['Interrupts'] as (req: object) => grpc.ClientReadableStream<{ intid: number; vcpu: number }>).call(ch.client, { session: a.session });
  line.on('error', () => {});
  // The client reads the first interrupt, then nothing while the SRI is raised again and again.
  line.on('data', (m: { intid: number; vcpu: number }) => {
    if (got.items.length === 0) line.pause();
    got.push(m);
  });
  // Connected once the server observes the model for it.
  await new Promise<void>((resolve) => {
    const look = () => (spmc.state.observers.size > observers ? resolve() : setImmediate(look));
    look();
  });
  raise(SRI_INTID);
  await got.atLeast(1);
  const RAISES = 100_000;
  for (let i = 0; i < RAISES; i++) raise(SRI_INTID);
  // Another interrupt last: once it has come, everything before it has.
  const MARK = SRI_INTID + 1;
  raise(MARK);
  line.resume();
  await got.first((m) => m.intid === MARK);
  const sris = got.items.filter((m) => m.intid === SRI_INTID).length;
  t.ok(sris < RAISES / 2, `${sris} SRIs delivered for ${RAISES + 1} raised: those raised while the client's buffer was full were one`);
  t.equal(got.items.at(-1)?.intid, MARK, 'the other interrupt after them');
  line.cancel();
});
