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

/** How long a disconnected client has to read its last event before its connection is closed. */
const DISCONNECT_GRACE_MS = 5000;

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
      // Past the subscriber limit: refused before the stream starts, with why.
      if (tracer.subscriberCount >= tracer.maxSubscribers) return reply.code(429).send({ error: 'RESOURCE_EXHAUSTED', message: tracer.refusal().message });
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
      res.write(': remote-spmc trace\n\n');
      // One write per chunk of a batch, not one per call; none while the client's buffer is full
      // (the feed queues, then drops and counts: see debug/feed.ts).
      const stop = tracer.subscribe(toFilter(req.query), {
        via: 'sse',
        write: (lines) => {
          let text = '';
          for (const l of lines) text += `id: ${l.seq}\ndata: ${l.json}\n\n`;
          return res.write(text);
        },
        buffered: () => res.writableLength,
        disconnect: (reason) => {
          // Said once the client reads what it has; one that never does is cut off.
          res.end(`event: disconnect\ndata: ${JSON.stringify({ reason })}\n\n`);
          const cut = setTimeout(() => res.destroy(), DISCONNECT_GRACE_MS).unref();
          res.once('finish', () => clearTimeout(cut));
        },
      });
      res.on('drain', () => stop.feed.resume());
      // A comment now and then keeps proxies from closing an idle stream (not needed by a full one).
      const keepalive = setInterval(() => {
        if (!res.writableNeedDrain) res.write(': keepalive\n\n');
      }, 15000);
      req.raw.on('close', () => {
        clearInterval(keepalive);
        stop();
      });
    },
  );
};
