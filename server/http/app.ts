// The HTTP side (Fastify). For now it answers health checks; the debug API grows here as plugins.

import Fastify, { type FastifyInstance, type FastifyPluginAsync } from 'fastify';
import type { Spmc } from '../spmc/spmc.js';

export interface HttpOptions {
  spmc: Spmc;
  /** Whether the service is still taking calls (false while shutting down). */
  serving: () => boolean;
  logger?: boolean | object;
}

const health: FastifyPluginAsync<HttpOptions> = async (app, opts) => {
  app.get(
    '/healthz',
    {
      schema: {
        response: {
          200: {
            type: 'object',
            properties: { status: { type: 'string' }, endpoints: { type: 'integer' } },
          },
          503: { type: 'object', properties: { status: { type: 'string' } } },
        },
      },
    },
    async (_req, reply) => {
      if (!opts.serving()) return reply.code(503).send({ status: 'NOT_SERVING' });
      return { status: 'SERVING', endpoints: opts.spmc.state.endpoints.size };
    },
  );
};

export async function buildHttpApp(opts: HttpOptions): Promise<FastifyInstance> {
  const app = Fastify({ logger: opts.logger ?? false });
  await app.register(health, opts);
  return app;
}
