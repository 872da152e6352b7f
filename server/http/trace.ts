// The live trace over Server-Sent Events, and the recent records from the ring.

import type { FastifyPluginAsync } from 'fastify';
import type { TraceFilter, Tracer } from '../debug/tracer.js';

const filterQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    endpoint: { type: 'string', pattern: '^(0x[0-9a-fA-F]{1,4}|[0-9]{1,5})$', description: 'only this endpoint (decimal or 0x hex)' },
    function: { type: 'string', pattern: '^[A-Za-z0-9_]{1,40}$', description: 'only this function, any width (MSG_SEND_DIRECT_REQ, FFA_RUN ...)' },
    errors: { type: 'boolean', description: 'only calls answered FFA_ERROR, and memory faults' },
    limit: { type: 'integer', minimum: 1, maximum: 10000, default: 100 },
  },
} as const;

type Query = { endpoint?: string; function?: string; errors?: boolean; limit?: number };

export const toFilter = (q: Query): TraceFilter => ({
  endpoint: q.endpoint !== undefined ? Number(q.endpoint) : undefined,
  function: q.function,
  errorsOnly: q.errors ?? false,
});

export const traceRoutes: FastifyPluginAsync<{ tracer: Tracer }> = async (app, { tracer }) => {
  app.get<{ Querystring: Query }>(
    '/v1/trace/recent',
    { schema: { summary: 'The latest trace records in the ring that match, oldest first', querystring: filterQuery } },
    async (req) => tracer.recent(toFilter(req.query), req.query.limit ?? 100),
  );

  app.get<{ Querystring: Query }>(
    '/v1/trace',
    { schema: { summary: 'The live trace as Server-Sent Events (one JSON record per event)', querystring: filterQuery } },
    (req, reply) => {
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
      res.write(': remote-spmc trace\n\n');
      // One write per batch the tracer hands over, not one per call.
      const stop = tracer.subscribe(toFilter(req.query), (lines) => {
        let text = '';
        for (const l of lines) text += `id: ${l.seq}\ndata: ${l.json}\n\n`;
        res.write(text);
      });
      // A comment now and then keeps proxies from closing an idle stream.
      const keepalive = setInterval(() => res.write(': keepalive\n\n'), 15000);
      req.raw.on('close', () => {
        clearInterval(keepalive);
        stop();
      });
    },
  );
};
