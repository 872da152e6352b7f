// Prometheus metrics (prom-client): calls by function and result, latency, endpoints, memory
// transactions and faults. Counted from the model's observer, cheaply, on every call.

import type { FastifyPluginAsync } from 'fastify';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { errorCodeFromWord, errorName, fid, fidName, U32 } from '../../proto/ffa/index.js';
import { isPending } from '../spmc/pending.js';
import type { Spmc } from '../spmc/spmc.js';

const ERROR_FID = fid('ERROR');

/** "SUCCESS", "ERROR:BUSY", or the function that answered (FFA_MSG_SEND_DIRECT_RESP_64 ...). */
function resultLabel(out: readonly bigint[]): string {
  const x0 = Number(out[0]! & U32);
  if (x0 === ERROR_FID) return `ERROR:${errorName(errorCodeFromWord(out[2]!))}`;
  return fidName(x0).replace(/^FFA_/, '');
}

export const metricsRoutes: FastifyPluginAsync<{ spmc: Spmc }> = async (app, { spmc }) => {
  const registry = new Registry();
  const calls = new Counter({ name: 'ffa_calls_total', help: 'FF-A calls handled, by function and result', labelNames: ['function', 'result'], registers: [registry] });
  const latency = new Histogram({
    name: 'ffa_call_latency_seconds',
    help: 'Time from a call reaching the model to its answer (blocked calls included)',
    labelNames: ['function'],
    buckets: [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1, 10],
    registers: [registry],
  });
  const faults = new Counter({ name: 'ffa_memory_faults_total', help: 'Guest memory accesses refused', registers: [registry] });
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
  // Label children are cached: every call counts, so it must cost next to nothing.
  const callChildren = new Map<string, { inc(): void }>();
  const latencyChildren = new Map<number, { fn: string; observe(v: number): void }>();
  const count = (fn: string, out: readonly bigint[]) => {
    const result = resultLabel(out);
    const key = `${fn}\u0000${result}`;
    let child = callChildren.get(key);
    if (!child) callChildren.set(key, (child = calls.labels({ function: fn, result })));
    child.inc();
  };
  const fnOf = (x0: number) => {
    let child = latencyChildren.get(x0);
    if (!child) {
      const fn = fidName(x0);
      latencyChildren.set(x0, (child = { fn, observe: latency.labels({ function: fn }).observe.bind(latency.labels({ function: fn })) }));
    }
    return child;
  };
  const stop = spmc.observe({
    call: (c) => {
      const f = fnOf(Number(c.x[0]! & U32));
      if (!isPending(c.out)) {
        count(f.fn, c.out);
        f.observe(c.handledUs / 1e6);
        return;
      }
      const t0 = performance.now();
      void c.out.answer.then((out) => {
        count(f.fn, out);
        f.observe((performance.now() - t0) / 1e3);
      });
    },
    fault: () => faults.inc(),
  });
  app.addHook('onClose', async () => stop());

  app.get('/metrics', { schema: { summary: 'Prometheus metrics', hide: false } }, async (_req, reply) => {
    reply.header('content-type', registry.contentType);
    return registry.metrics();
  });
};
