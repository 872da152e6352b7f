// Load: many VMs doing mixed operations at once against a real `remote-spmc serve` in another
// process, over gRPC (issue 14). Prints p50/p99 per operation, indirect messages lost or duplicated
// (must be 0), memory handles leaked (must be 0), sessions leaked, and the server's RSS at start and end.
//
//   node dist/bench/load.js [--vms N] [--seconds S]     (defaults: 64 VMs, 60 s)
//
// Each VM runs one operation at a time, in turn: a direct request to an SP (ECHO), an FFA_MSG_SEND2
// to the next VM (numbered, so the receiver can tell a lost or duplicated message), a memory cycle
// with the next VM (share or lend, retrieve, relinquish, reclaim), NOTIFICATION_SET to the next VM,
// and PARTITION_INFO_GET. Exit status 1 when anything was lost, duplicated or leaked.

import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { MEM_PERM } from '../proto/ffa/index.js';
import type { FfaDevice } from '../client-driver/bus.js';
import { FfaDriver } from '../client-driver/driver.js';
import { FfaDriverError } from '../client-driver/errno.js';
import { GrpcConnector } from '../client-driver/transport/grpc.js';
import { EmulatedVm } from '../client-driver/vm.js';
import { PARTITION_COMMANDS } from '../server/partitions/commands.js';

const MAIN = fileURLToPath(new URL('../server/main.js', import.meta.url));
const ECHO_ARGS = [BigInt(PARTITION_COMMANDS.ECHO), 1n, 2n, 3n, 4n];
/** The notification each VM sets for the next one. */
const NOTIFY_ID = 1;
/** How often a VM tries again an operation refused BUSY (its partner's RX was full) before moving on. */
const BUSY_TRIES = 20;

export const OPS = [
  'direct_req',
  'msg_send2',
  'mem_share',
  'mem_lend',
  'mem_retrieve',
  'mem_relinquish',
  'mem_reclaim',
  'notification_set',
  'partition_info_get',
] as const;
export type OpName = (typeof OPS)[number];

export interface LoadOptions {
  vms: number;
  /** Run for this long (ms)... */
  durationMs?: number;
  /** ... or this many rounds of operations per VM (for a bounded run). */
  rounds?: number;
  /** How long to wait, at most, for messages still in flight once the VMs stop sending (ms). */
  drainMs?: number;
}

export interface OpStats {
  count: number;
  p50Us: number;
  p99Us: number;
  /** FF-A refusals and transport failures (BUSY retries excluded). */
  errors: number;
  busy: number;
}

export interface LoadResult {
  vms: number;
  seconds: number;
  ops: Record<OpName, OpStats>;
  messages: { sent: number; received: number; lost: number; duplicated: number };
  notifications: { set: number; delivered: number };
  handles: { created: number; leaked: number };
  sessionsLeaked: number;
  rssBytes: { start: number; end: number };
  /** The first few unexpected errors, for the report. */
  errorSamples: string[];
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** The server's resident set (bytes), from /proc. */
function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

/** `remote-spmc serve` in its own process, on free loopback ports; its log is read and dropped. */
async function startServer(): Promise<{ child: ChildProcess; grpc: string; http: string }> {
  const child = spawn(process.execPath, [MAIN, 'serve', '--grpc', '127.0.0.1:0', '--http', '127.0.0.1:0', '--log-level', 'info'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: child.stdout! });
  const listening = await new Promise<{ grpc: string; http: string }>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`remote-spmc serve exited (${code}) before listening`)));
    lines.on('line', (l) => {
      try {
        const o = JSON.parse(l) as { msg?: string; grpc?: string; http?: string };
        if (o.msg === 'listening') resolve({ grpc: o.grpc!, http: o.http! });
      } catch {
        // not a log line
      }
    });
  });
  return { child, ...listening };
}

const getJson = async <T>(url: string): Promise<T> => (await fetch(url)).json() as Promise<T>;

export async function runLoad(opts: LoadOptions): Promise<LoadResult> {
  const server = await startServer();
  try {
    return await drive(server, opts);
  } finally {
    const exited = once(server.child, 'exit');
    server.child.kill('SIGTERM');
    await exited;
  }
}

async function drive(server: { child: ChildProcess; grpc: string; http: string }, opts: LoadOptions): Promise<LoadResult> {
  const n = opts.vms;
  const http = `http://${server.http}`;
  const baseline = {
    handles: new Set((await getJson<{ handle: string }[]>(`${http}/v1/memory/transactions`)).map((t) => t.handle)),
    endpoints: (await getJson<{ endpoints: number }>(`${http}/healthz`)).endpoints,
  };
  const rssStart = rssOf(server.child.pid!);
  const connector = new GrpcConnector(server.grpc);

  // Every VM attaches before any driver starts, so each one's partition discovery sees them all.
  const vms = await Promise.all(Array.from({ length: n }, (_, i) => EmulatedVm.attach(connector, { name: `load-${i}`, vcpuCount: 2 })));
  const drivers = vms.map((vm) => new FfaDriver(vm));
  const latencies = Object.fromEntries(OPS.map((o) => [o, [] as number[]])) as Record<OpName, number[]>;
  const errors = Object.fromEntries(OPS.map((o) => [o, 0])) as Record<OpName, number>;
  const busy = Object.fromEntries(OPS.map((o) => [o, 0])) as Record<OpName, number>;
  const errorSamples: string[] = [];

  // Messages: sent[i] counts what VM i sent to VM i+1; received[i+1] holds the numbers it got.
  const sent = new Array<number>(n).fill(0);
  const received = drivers.map(() => new Set<number>());
  let duplicated = 0;
  let delivered = 0;
  let notificationsSet = 0;
  let drained: (() => void) | undefined;
  const receivedCount = () => received.reduce((a, s) => a + s.size, 0);
  const sentCount = () => sent.reduce((a, b) => a + b, 0);

  await Promise.all(drivers.map((d) => d.init()));
  for (const [i, d] of drivers.entries()) {
    const prev = drivers[(i + n - 1) % n]!;
    d.notifier.onUnclaimedMessage = (m) => {
      const text = Buffer.from(m.payload).toString();
      const match = /^load (\d+) (\d+)$/.exec(text);
      if (!match || Number(match[1]) !== prev.vmId || m.sender !== prev.vmId) {
        errorSamples.push(`VM ${d.vmId}: unexpected message ${JSON.stringify(text)} from ${m.sender}`);
        return;
      }
      const seq = Number(match[2]);
      if (received[i]!.has(seq)) duplicated++;
      else received[i]!.add(seq);
      if (drained && receivedCount() >= sentCount()) drained();
    };
    d.notifier.onError = (e) => errorSamples.push(`VM ${d.vmId} notifier: ${String(e)}`);
    if (n > 1) {
      const dev = d.bus.devices().find((x) => x.vmId === prev.vmId) ?? ({ vmId: prev.vmId } as FfaDevice);
      await d.notifier.notifyRequest(dev, false, () => void delivered++, NOTIFY_ID);
    }
  }

  const deadline = opts.durationMs !== undefined ? performance.now() + opts.durationMs : Infinity;
  const rounds = opts.rounds ?? Infinity;
  const started = performance.now();
  let created = 0;

  /** One timed call; BUSY (the partner's RX is full) is tried again; other failures are counted. */
  const timed = async <T>(op: OpName, fn: () => Promise<T>): Promise<T | undefined> => {
    for (let tries = 0; ; tries++) {
      const t0 = performance.now();
      try {
        const out = await fn();
        latencies[op].push((performance.now() - t0) * 1000);
        return out;
      } catch (e) {
        if (e instanceof FfaDriverError && e.errno === 'EBUSY' && tries < BUSY_TRIES) {
          busy[op]++;
          await new Promise((r) => setImmediate(r));
          continue;
        }
        errors[op]++;
        if (errorSamples.length < 10) errorSamples.push(`${op}: ${String(e)}`);
        return undefined;
      }
    }
  };

  const runVm = async (i: number) => {
    const d = drivers[i]!;
    const next = drivers[(i + 1) % n]!;
    const page = d.vm.pages.alloc(1)!;
    let seq = 0;
    for (let round = 0; round < rounds && performance.now() < deadline; round++) {
      await timed('direct_req', () => d.sendDirectReq(0x8001 + (i % 2), ECHO_ARGS));
      if (n > 1) {
        const number = seq++;
        const delivered = await timed('msg_send2', async () => {
          await d.sendIndirect(next.vmId, Buffer.from(`load ${d.vmId} ${number}`));
          return true;
        });
        if (delivered) sent[i]!++;
        // Share on even rounds, lend on odd ones; whatever fails on the way, the lender reclaims.
        const lend = round % 2 === 1;
        const handle = await timed(lend ? 'mem_lend' : 'mem_share', () =>
          (lend ? d.memLend.bind(d) : d.memShare.bind(d))({
            receivers: [{ id: next.vmId, permissions: MEM_PERM.DATA_RW }],
            regions: [{ address: page, pageCount: 1 }],
          }),
        );
        if (handle !== undefined) {
          created++;
          const got = await timed('mem_retrieve', () => next.memRetrieve({ handle, sender: d.vmId, type: lend ? 'lend' : 'share' }));
          if (got) await timed('mem_relinquish', () => next.memRelinquish(handle));
          await timed('mem_reclaim', () => d.memReclaim(handle));
        }
        const set = await timed('notification_set', async () => {
          await d.notifier.notifySend(next.vmId, false, NOTIFY_ID);
          return true;
        });
        if (set) notificationsSet++;
      }
      await timed('partition_info_get', () => d.partitionInfoGet('00000000-0000-0000-0000-000000000000'));
    }
  };
  await Promise.all(drivers.map((_, i) => runVm(i)));
  const seconds = (performance.now() - started) / 1000;

  // Messages still on their way: wait until every one sent has arrived, or the drain time is up.
  if (receivedCount() < sentCount()) {
    await new Promise<void>((resolve) => {
      drained = resolve;
      setTimeout(resolve, opts.drainMs ?? 10_000).unref();
    });
  }
  const receivedTotal = receivedCount();
  const sentTotal = sentCount();

  // Every cycle is over: a transaction the server still has that was not there before is leaked.
  const leaked = (await getJson<{ handle: string }[]>(`${http}/v1/memory/transactions`)).filter((t) => !baseline.handles.has(t.handle)).length;

  await Promise.all(
    drivers.map(async (d) => {
      await d.exit();
      await d.vm.detach();
    }),
  );
  connector.close();
  const sessionsLeaked = (await getJson<{ endpoints: number }>(`${http}/healthz`)).endpoints - baseline.endpoints;

  const ops = {} as Record<OpName, OpStats>;
  for (const op of OPS) {
    const xs = latencies[op].sort((a, b) => a - b);
    ops[op] = { count: xs.length, p50Us: percentile(xs, 50), p99Us: percentile(xs, 99), errors: errors[op], busy: busy[op] };
  }
  return {
    vms: n,
    seconds,
    ops,
    messages: { sent: sentTotal, received: receivedTotal, lost: Math.max(0, sentTotal - receivedTotal), duplicated },
    notifications: { set: notificationsSet, delivered },
    handles: { created, leaked },
    sessionsLeaked,
    rssBytes: { start: rssStart, end: rssOf(server.child.pid!) },
    errorSamples,
  };
}

const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;

export function formatLoad(r: LoadResult): string {
  const out = [`load: ${r.vms} VMs over grpc-session against remote-spmc serve in another process, ${r.seconds.toFixed(1)} s`];
  out.push(`${'operation'.padEnd(20)}${'count'.padStart(9)}${'p50 us'.padStart(11)}${'p99 us'.padStart(11)}${'errors'.padStart(8)}${'busy'.padStart(7)}`);
  for (const op of OPS) {
    const s = r.ops[op];
    out.push(
      `${op.padEnd(20)}${String(s.count).padStart(9)}${s.p50Us.toFixed(0).padStart(11)}${s.p99Us.toFixed(0).padStart(11)}${String(s.errors).padStart(8)}${String(s.busy).padStart(7)}`,
    );
  }
  const total = OPS.reduce((a, op) => a + r.ops[op].count, 0);
  out.push(`operations: ${total} (${(total / r.seconds).toFixed(0)}/s)`);
  out.push(`messages (MSG_SEND2): sent ${r.messages.sent}, received ${r.messages.received}, lost ${r.messages.lost}, duplicated ${r.messages.duplicated}`);
  out.push(`notifications: set ${r.notifications.set}, callbacks ${r.notifications.delivered} (pending bits coalesce)`);
  out.push(`memory handles: created ${r.handles.created}, leaked ${r.handles.leaked}`);
  out.push(`sessions leaked after detach: ${r.sessionsLeaked}`);
  out.push(`server RSS: start ${mib(r.rssBytes.start)}, end ${mib(r.rssBytes.end)}`);
  for (const e of r.errorSamples) out.push(`error: ${e}`);
  return out.join('\n');
}

export const loadHealthy = (r: LoadResult): boolean => r.messages.lost === 0 && r.messages.duplicated === 0 && r.handles.leaked === 0 && r.sessionsLeaked === 0;

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({ options: { vms: { type: 'string', default: '64' }, seconds: { type: 'string', default: '60' } } });
  const vms = Number(values.vms);
  const seconds = Number(values.seconds);
  if (!(Number.isInteger(vms) && vms >= 1 && vms <= 1000 && seconds > 0)) {
    console.error(`load: --vms takes 1..1000 and --seconds a positive number (got ${values.vms}, ${values.seconds})`);
    process.exit(2);
  }
  const r = await runLoad({ vms, durationMs: seconds * 1000 });
  console.log(formatLoad(r));
  process.exit(loadHealthy(r) ? 0 : 1);
}
