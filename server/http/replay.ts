// The dashboard over a recorded session (`remote-spmc replay --serve FILE`): the recording's
// records, the model's state at any record as replay computes it, and opening another recording
// from the page (its text as the request body).

import Fastify, { type FastifyError, type FastifyInstance, type FastifyPluginAsync } from 'fastify';
import { ReplaySession } from '../debug/replay-session.js';
import { TraceFormatError } from '../debug/replay.js';
import { dashboardRoutes } from './dashboard.js';

/** The largest recording the page may upload. */
export const REPLAY_UPLOAD_MAX = 256 * 1024 * 1024;

const replayRoutes: FastifyPluginAsync<{ holder: { session: ReplaySession } }> = async (app, { holder }) => {
  app.get('/v1/replay', { schema: { summary: 'The open recording: name, records, calls, seq range, the first replay difference' } }, async () =>
    holder.session.summary(),
  );
  app.get('/v1/replay/records', { schema: { summary: 'Every record of the open recording, in seq order' } }, async () => holder.session.records);
  app.get<{ Querystring: { at: number } }>(
    '/v1/replay/state',
    {
      schema: {
        summary: 'The model after every record up to seq `at`, as replay computes it: endpoints, transactions, memory maps, faults',
        querystring: { type: 'object', required: ['at'], additionalProperties: false, properties: { at: { type: 'integer', minimum: 0 } } },
      },
    },
    async (req) => holder.session.stateAt(req.query.at),
  );
  app.post<{ Body: string; Querystring: { name?: string } }>(
    '/v1/replay/open',
    {
      bodyLimit: REPLAY_UPLOAD_MAX,
      schema: {
        summary: 'Open another recording (the JSONL text of serve --trace-file as the body)',
        querystring: { type: 'object', additionalProperties: false, properties: { name: { type: 'string', maxLength: 200 } } },
      },
    },
    async (req, reply) => {
      if (typeof req.body !== 'string') return reply.code(400).send({ error: 'INVALID_ARGUMENT', message: 'body: the trace file as text/plain' });
      try {
        holder.session = ReplaySession.parse(req.query.name ?? 'uploaded', req.body);
      } catch (e) {
        if (e instanceof TraceFormatError) return reply.code(400).send({ error: 'INVALID_ARGUMENT', message: e.message });
        throw e;
      }
      return holder.session.summary();
    },
  );
};

export async function buildReplayApp(session: ReplaySession, logger: boolean | object = false): Promise<FastifyInstance> {
  const app = Fastify({ logger, ajv: { customOptions: { allErrors: false, coerceTypes: true } } });
  app.setErrorHandler((e, _req, reply) => {
    const err = e as FastifyError;
    if (err.validation) return reply.code(400).send({ error: 'INVALID_ARGUMENT', message: err.message });
    const code = err.statusCode && err.statusCode >= 400 ? err.statusCode : 500;
    return reply.code(code).send({ error: code === 500 ? 'INTERNAL' : (err.code ?? 'ERROR'), message: err.message });
  });
  // A recording as uploaded from the page is JSONL; take it as text whatever the browser calls it.
  app.addContentTypeParser(['application/x-ndjson', 'application/octet-stream', 'application/jsonl'], { parseAs: 'string' }, (_req, body, done) =>
    done(null, body),
  );
  const holder = { session };
  await app.register(replayRoutes, { holder });
  await app.register(dashboardRoutes, { mode: 'replay', buffers: (from) => holder.session.buffersFrom(from) });
  return app;
}
