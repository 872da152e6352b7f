// The dashboard: static pages and scripts, no build step. It reads the state API and the trace (the
// ring's recent records first, then the live stream), draws the sequence chart and memory maps,
// and, served by `replay --serve`, travels through a recording. Its icon is served too: a browser
// asks for one. Live, it also keeps the decoded buffers of recent calls (see debug/buffers.ts).

import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { FastifyPluginAsync } from 'fastify';
import { BufferLog, bufferCapture, type DecodedBuffer } from '../debug/buffers.js';
import type { Tracer } from '../debug/tracer.js';
import type { SessionCore } from '../session/core.js';

/** The page lives beside the sources (this file runs from dist/server/http/). */
const publicFile = (name: string) => fileURLToPath(new URL(`../../../server/http/public/${name}`, import.meta.url));

const TYPES: Record<string, string> = { js: 'text/javascript; charset=utf-8', css: 'text/css; charset=utf-8' };

export interface DashboardOptions {
  /** 'replay': served by `replay --serve` over a recording (the page then shows its timeline). */
  mode?: 'live' | 'replay';
  /** Live: the core and trace whose calls' buffers are decoded. */
  core?: SessionCore;
  tracer?: Tracer;
  /** Whether inspection routes ask for the admin token (the page then asks for it). */
  adminToken?: boolean;
  /** Whether /v1/faults is served (the page then shows its fault rules panel). */
  faults?: boolean;
  /** Replay: decoded buffers from a seq on. */
  buffers?: (from: number) => Record<number, DecodedBuffer[]>;
}

export const dashboardRoutes: FastifyPluginAsync<DashboardOptions> = async (app, opts) => {
  const page = readFileSync(publicFile('index.html'), 'utf8');
  const icon = readFileSync(publicFile('favicon.svg'), 'utf8');
  // Scripts and styles, read once: a fixed set of names, so no path from a request reaches the disk.
  const assets = new Map<string, { type: string; body: string }>();
  for (const name of readdirSync(publicFile(''))) {
    const ext = /^[a-z0-9-]+\.(js|css)$/.exec(name)?.[1];
    if (ext) assets.set(name, { type: TYPES[ext]!, body: readFileSync(publicFile(name), 'utf8') });
  }
  app.get('/', { schema: { hide: true } }, async (_req, reply) => reply.type('text/html; charset=utf-8').send(page));
  // An SVG under the name browsers ask for unprompted; the page's <link rel=icon> names it too.
  app.get('/favicon.ico', { schema: { hide: true } }, async (_req, reply) => reply.type('image/svg+xml').header('cache-control', 'max-age=86400').send(icon));
  app.get<{ Params: { name: string } }>('/ui/:name', { schema: { hide: true } }, async (req, reply) => {
    const a = assets.get(req.params.name);
    if (!a) return reply.code(404).send({ error: 'NOT_FOUND', message: `no dashboard file ${req.params.name}` });
    return reply.type(a.type).send(a.body);
  });

  const mode = opts.mode ?? 'live';
  app.get(
    '/v1/dashboard',
    { schema: { summary: "The dashboard's mode (live or replay), whether inspection needs the admin token, and whether fault rules are served" } },
    async () => ({
      mode,
      adminToken: opts.adminToken ?? false,
      faults: opts.faults ?? false,
    }),
  );

  let buffers = opts.buffers;
  if (!buffers && opts.core && opts.tracer) {
    const log = new BufferLog();
    const tracer = opts.tracer;
    const stop = opts.core.use(bufferCapture(opts.core.spmc, log, () => tracer.nextSeq));
    app.addHook('onClose', async () => stop());
    buffers = (from) => log.since(from);
  }
  if (buffers) {
    const source = buffers;
    app.get<{ Querystring: { from?: number } }>(
      '/v1/trace/buffers',
      {
        schema: {
          summary: 'Decoded buffer content of recent calls by seq: descriptors, retrieve responses, partition-info lists, indirect-message headers',
          querystring: { type: 'object', additionalProperties: false, properties: { from: { type: 'integer', minimum: 0, default: 0 } } },
        },
      },
      async (req) => source(req.query.from ?? 0),
    );
  }
};
