// Prometheus metrics (prom-client): calls by function and result, latency, endpoints, memory
// transactions and faults. Every call is counted by an interceptor on the session core, which only
// bumps numbers in plain maps; prom-client reads them when /metrics is scraped.

import type { FastifyPluginAsync } from 'fastify';
import { Counter, Gauge, type Metric, Registry } from 'prom-client';
import { errorCodeFromWord, errorName, fid, fidName, U32 } from '../../proto/ffa/index.js';
import { isPending } from '../spmc/pending.js';
import type { Tracer } from '../debug/tracer.js';
import type { SessionCore } from '../session/core.js';
import type { HttpSessions } from './smccc.js';

const ERROR_FID = fid('ERROR');
/** Latency buckets, seconds. */
const BUCKETS = [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1, 10];

/** The low 32 bits of a register as a number (w0); no BigInt made for the usual word that has no others. */
const low32 = (w: bigint): number => (w <= U32 ? Number(w) : Number(w & U32));

/** The function that answered, without FFA_: SUCCESS_32, MSG_SEND_DIRECT_RESP_64 ... */
const resultLabel = (x0: number): string => fidName(x0).replace(/^FFA_/, '');

interface FnStats {
  /** Calls by answer: key x0 of the answer, or -(error code) for FFA_ERROR. */
  results: Map<number, number>;
  buckets: number[];
  sum: number;
  count: number;
}

export interface MetricsOptions {
  core: SessionCore;
  /** For the trace subscriber limit. */
  tracer?: Tracer;
  /** For the JSON transport's session limit. */
  httpSessions?: HttpSessions;
}

/** Each limit in force, and how much of it is in use where that is cheap to know. */
function limitsInUse({ core, tracer, httpSessions }: MetricsOptions): { name: string; limit: number; used?: number }[] {
  const { state } = core.spmc;
  const l = state.limits;
  const vms = [...state.endpoints.values()].filter((e) => e.kind === 'vm');
  const perSender = new Map<number, number>();
  for (const s of state.shares.byHandle.values()) perSender.set(s.sender, (perSender.get(s.sender) ?? 0) + 1);
  const most = (xs: Iterable<number>) => Math.max(0, ...xs);
  return [
    { name: 'vms', limit: l.maxVms, used: vms.length },
    { name: 'vcpus_per_vm', limit: l.maxVcpus, used: most(vms.map((e) => e.vcpuCount)) },
    { name: 'ram_bytes_per_vm', limit: Number(l.maxRamBytes), used: most(vms.map((e) => Number(e.ram.size))) },
    { name: 'stored_ram_bytes', limit: Number(l.maxStoredBytes), used: Number(state.memory.storedBytes) },
    { name: 'memory_transactions', limit: l.maxTransactions, used: state.shares.size },
    { name: 'memory_transactions_per_endpoint', limit: l.maxTransactionsPerEndpoint, used: most(perSender.values()) },
    { name: 'descriptor_bytes', limit: l.maxDescriptorBytes },
    { name: 'borrowers_per_transaction', limit: l.maxBorrowers },
    { name: 'fragments_per_transaction', limit: l.maxFragments },
    { name: 'rxtx_pages', limit: l.rxtxMaxPages },
    ...(tracer ? [{ name: 'trace_subscribers', limit: tracer.maxSubscribers, used: tracer.subscriberCount }] : []),
    ...(httpSessions ? [{ name: 'http_sessions', limit: httpSessions.max, used: httpSessions.count }] : []),
  ];
}

export const metricsRoutes: FastifyPluginAsync<MetricsOptions> = async (app, opts) => {
  const { core } = opts;
  const spmc = core.spmc;
  const byFn = new Map<number, FnStats>();
  let faultCount = 0;
  const stats = (x0: number): FnStats => {
    let s = byFn.get(x0);
    if (!s) byFn.set(x0, (s = { results: new Map(), buckets: new Array<number>(BUCKETS.length).fill(0), sum: 0, count: 0 }));
    return s;
  };
  const record = (s: FnStats, out: readonly bigint[], seconds: number) => {
    const x0 = low32(out[0]!);
    // FF-A error codes are negative: an error is kept as its code - 1, below any function ID.
    const key = x0 === ERROR_FID ? errorCodeFromWord(out[2]!) - 1 : x0;
    s.results.set(key, (s.results.get(key) ?? 0) + 1);
    // One bucket per call (the first that holds it); they are summed into Prometheus's cumulative
    // buckets when scraped. Past the last bucket only +Inf (the count) holds it.
    let i = 0;
    while (i < BUCKETS.length && seconds > BUCKETS[i]!) i++;
    if (i < BUCKETS.length) s.buckets[i]!++;
    s.sum += seconds;
    s.count++;
  };
  const stopCounting = core.use({
    name: 'metrics',
    after: (c, out) => {
      const s = stats(low32(c.x[0]!));
      const start = c.start;
      if (!isPending(out)) return record(s, out, (c.answered - start) / 1e3);
      out.whenComplete((r) => record(s, r, (performance.now() - start) / 1e3));
    },
  });
  const stopFaults = spmc.observe({ fault: () => void faultCount++ });
  app.addHook('onClose', async () => {
    stopCounting();
    stopFaults();
  });

  const registry = new Registry();
  new Counter({
    name: 'ffa_calls_total',
    help: 'FF-A calls handled, by function and result',
    labelNames: ['function', 'result'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [x0, s] of byFn) {
        for (const [key, n] of s.results) {
          const result = key < 0 ? `ERROR:${errorName(key + 1)}` : resultLabel(key);
          this.inc({ function: fidName(x0), result }, n);
        }
      }
    },
  });
  // A histogram prom-client formats from our own buckets (its Histogram takes one observation at a time).
  const latency: Metric = {
    name: 'ffa_call_latency_seconds',
    help: 'Time from a call reaching the model to its answer (blocked calls included)',
    get: async () => ({
      name: 'ffa_call_latency_seconds',
      help: 'Time from a call reaching the model to its answer (blocked calls included)',
      type: 'histogram',
      aggregator: 'sum',
      values: [...byFn].flatMap(([x0, s]) => {
        const fn = fidName(x0);
        let below = 0;
        return [
          ...BUCKETS.map((le, i) => ({ labels: { function: fn, le }, value: (below += s.buckets[i]!), metricName: 'ffa_call_latency_seconds_bucket' })),
          { labels: { function: fn, le: '+Inf' }, value: s.count, metricName: 'ffa_call_latency_seconds_bucket' },
          { labels: { function: fn }, value: s.sum, metricName: 'ffa_call_latency_seconds_sum' },
          { labels: { function: fn }, value: s.count, metricName: 'ffa_call_latency_seconds_count' },
        ];
      }),
    }),
  } as unknown as Metric;
  registry.registerMetric(latency);
  new Counter({
    name: 'ffa_memory_faults_total',
    help: 'Guest memory accesses refused',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(faultCount);
    },
  });
  new Gauge({
    name: 'ffa_endpoints_attached',
    help: 'Endpoints known to the SPMC, by kind',
    labelNames: ['kind'],
    registers: [registry],
    collect() {
      const eps = [...spmc.state.endpoints.values()];
      this.set({ kind: 'vm' }, eps.filter((e) => e.kind === 'vm').length);
      this.set({ kind: 'sp' }, eps.filter((e) => e.kind === 'sp').length);
    },
  });
  new Gauge({
    name: 'ffa_memory_transactions',
    help: 'Live memory transactions',
    registers: [registry],
    collect() {
      this.set(spmc.state.shares.byHandle.size);
    },
  });

  // The limits in force (serve's flags) and their use: an alert can compare the two.
  new Gauge({
    name: 'remote_spmc_limit',
    help: 'Each limit in force, by name (see the README Limits table)',
    labelNames: ['name'],
    registers: [registry],
    collect() {
      for (const { name, limit } of limitsInUse(opts)) this.set({ name }, limit);
    },
  });
  new Gauge({
    name: 'remote_spmc_limit_used',
    help: 'How much of a limit is in use, by name (per-VM and per-endpoint limits: the largest use)',
    labelNames: ['name'],
    registers: [registry],
    collect() {
      for (const { name, used } of limitsInUse(opts)) if (used !== undefined) this.set({ name }, used);
    },
  });

  // Attacks made visible (see server/session/attacks.ts): wrong credentials, refusals while a source
  // must wait, and log lines held back by rate limiting.
  const counts = core.attacks.counts;
  // Every known label value is shown from the start, at 0: an alert on a rise needs the series to exist.
  const attackCounters: [string, string, string, string[], Map<string, number>][] = [
    ['remote_spmc_auth_failures_total', 'Wrong credentials presented (attach as a remote partition), by kind', 'kind', ['credential'], counts.authFailures],
    [
      'remote_spmc_auth_throttled_total',
      'Attempts refused unchecked: their source had failed too often, by kind',
      'kind',
      ['credential'],
      counts.authThrottled,
    ],
    [
      'remote_spmc_log_lines_suppressed_total',
      'Warn lines held back by rate limiting, by subject',
      'subject',
      ['auth_failure', 'memory_fault'],
      counts.logSuppressed,
    ],
  ];
  for (const [name, help, label, known, map] of attackCounters) {
    new Counter({
      name,
      help,
      labelNames: [label],
      registers: [registry],
      collect() {
        this.reset();
        for (const value of known) this.inc({ [label]: value }, 0);
        for (const [value, n] of map) this.inc({ [label]: value }, n);
      },
    });
  }

  app.get('/metrics', { schema: { summary: 'Prometheus metrics' } }, async (_req, reply) => {
    reply.header('content-type', registry.contentType);
    return registry.metrics();
  });
};
