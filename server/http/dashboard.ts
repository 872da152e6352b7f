// The dashboard: one static page, no build step. It reads the state API and the SSE trace.

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { FastifyPluginAsync } from 'fastify';

/** The page lives beside the sources (this file runs from dist/server/http/). */
const PAGE_PATH = fileURLToPath(new URL('../../../server/http/public/index.html', import.meta.url));

export const dashboardRoutes: FastifyPluginAsync = async (app) => {
  const page = readFileSync(PAGE_PATH, 'utf8');
  app.get('/', { schema: { hide: true } }, async (_req, reply) => reply.type('text/html; charset=utf-8').send(page));
};
