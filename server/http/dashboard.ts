// The dashboard: one static page, no build step. It reads the state API and the trace (the ring's
// recent records first, then the SSE stream). Its icon is served too: a browser asks for one.

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { FastifyPluginAsync } from 'fastify';

/** The page lives beside the sources (this file runs from dist/server/http/). */
const publicFile = (name: string) => fileURLToPath(new URL(`../../../server/http/public/${name}`, import.meta.url));

export const dashboardRoutes: FastifyPluginAsync = async (app) => {
  const page = readFileSync(publicFile('index.html'), 'utf8');
  const icon = readFileSync(publicFile('favicon.svg'), 'utf8');
  app.get('/', { schema: { hide: true } }, async (_req, reply) => reply.type('text/html; charset=utf-8').send(page));
  // An SVG under the name browsers ask for unprompted; the page's <link rel=icon> names it too.
  app.get('/favicon.ico', { schema: { hide: true } }, async (_req, reply) => reply.type('image/svg+xml').header('cache-control', 'max-age=86400').send(icon));
};
