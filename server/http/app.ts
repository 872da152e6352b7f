// The HTTP side (Fastify): health, the JSON SMCCC transport, the state API, the live trace, metrics,
// OpenAPI at /docs and the dashboard at /. Each concern is its own plugin; routes carry JSON schemas,
// so bad input is a 400 that names the field.

import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import Fastify, { type FastifyError, type FastifyInstance, type FastifyPluginAsync } from 'fastify';
import type { Tracer } from '../debug/tracer.js';
import type { SessionCore } from '../session/core.js';
import { statusOf } from '../session/status.js';
import { peerAddress } from '../session/throttle.js';
import { bearer, type Tokens } from '../session/tokens.js';
import type { FaultInjector } from '../faults/injector.js';
import { dashboardRoutes } from './dashboard.js';
import { faultRoutes } from './faults.js';
import { metricsRoutes } from './metrics.js';
import { HTTP_STATUS, HttpSessions, smcccRoutes } from './smccc.js';
import { stateRoutes } from './state.js';
import { traceRoutes } from './trace.js';

export interface HttpOptions {
  /** The session core: sessions shared with the gRPC side, and the model behind it. */
  core: SessionCore;
  /** The trace (state routes work without it; /v1/trace needs it). */
  tracer?: Tracer;
  logger?: boolean | object;
  /** Sessions attached through the JSON transport at once (default DEFAULT_MAX_HTTP_SESSIONS). */
  maxHttpSessions?: number;
  /** Serve HTTPS (PEM); with `ca`, clients must present a certificate it signed (mTLS). */
  https?: { cert: Buffer; key: Buffer; ca?: Buffer };
  /** The admin token inspection needs (ADMIN_ROUTES); none configured: not asked. */
  tokens?: Tokens;
  /** Fault injection: /v1/faults lists, adds and removes its rules (not served without it). */
  faults?: FaultInjector;
}

/**
 * Routes that read guest memory or state, and the JSON attach (anyone who reaches it could fill the
 * VM slots): they need the admin token when one is configured.
 */
export const ADMIN_ROUTES = new Set([
  'GET /v1/endpoints/:id',
  'GET /v1/endpoints/:id/memory',
  'GET /v1/memory/access',
  // The dashboard's memory map and decoded buffers (debugger).
  'GET /v1/memory/map',
  'GET /v1/trace/buffers',
  'GET /v1/trace',
  'GET /v1/trace/recent',
  'POST /v1/attach',
  'GET /v1/faults',
  'POST /v1/faults',
  'DELETE /v1/faults',
  'DELETE /v1/faults/:id',
]);

const health: FastifyPluginAsync<HttpOptions> = async (app, opts) => {
  app.get(
    '/healthz',
    {
      schema: {
        summary: 'Liveness: SERVING with the number of endpoints, 503 while stopping',
        response: {
          200: { type: 'object', properties: { status: { type: 'string' }, endpoints: { type: 'integer' } } },
          503: { type: 'object', properties: { status: { type: 'string' } } },
        },
      },
    },
    async (_req, reply) => {
      if (!opts.core.serving) return reply.code(503).send({ status: 'NOT_SERVING' });
      return { status: 'SERVING', endpoints: opts.core.spmc.state.endpoints.size };
    },
  );
};

export async function buildHttpApp(opts: HttpOptions): Promise<FastifyInstance> {
  const https = opts.https
    ? { cert: opts.https.cert, key: opts.https.key, ...(opts.https.ca ? { ca: opts.https.ca, requestCert: true, rejectUnauthorized: true } : {}) }
    : null;
  // One instance type whether or not it serves HTTPS: routes and hooks do not care.
  const app = Fastify({ https, logger: opts.logger ?? false, ajv: { customOptions: { allErrors: false, coerceTypes: true, removeAdditional: false } } });
  // Validation errors name the field ("querystring/length must be <= 65536").
  app.setErrorHandler((e, _req, reply) => {
    const err = e as FastifyError;
    if (err.validation) return reply.code(400).send({ error: 'INVALID_ARGUMENT', message: err.message });
    const code = err.statusCode && err.statusCode >= 400 ? err.statusCode : 500;
    return reply.code(code).send({ error: code === 500 ? 'INTERNAL' : (err.code ?? 'ERROR'), message: err.message });
  });
  const tokens = opts.tokens;
  if (tokens?.required('admin')) {
    app.addHook('onRequest', async (req, reply) => {
      if (!ADMIN_ROUTES.has(`${req.method} ${req.routeOptions.url}`)) return;
      try {
        tokens.check('admin', bearer(req.headers.authorization), peerAddress(req.ip));
      } catch (e) {
        const { status, message } = statusOf(e);
        return reply.code(HTTP_STATUS[status]).header('www-authenticate', 'Bearer').send({ error: status, message });
      }
    });
  }
  await app.register(swagger, {
    openapi: { info: { title: 'remote-spmc', description: 'FF-A SPMC model: JSON SMCCC transport, state, trace, metrics', version: '1' } },
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });
  await app.register(health, opts);
  await app.register(stateRoutes, { spmc: opts.core.spmc });
  if (opts.tracer) await app.register(traceRoutes, { tracer: opts.tracer });
  const sessions = new HttpSessions(opts.core, opts.maxHttpSessions);
  await app.register(smcccRoutes, { core: opts.core, sessions });
  await app.register(metricsRoutes, { core: opts.core, tracer: opts.tracer, httpSessions: sessions });
  if (opts.faults) await app.register(faultRoutes, { faults: opts.faults });
  await app.register(dashboardRoutes, { core: opts.core, tracer: opts.tracer, adminToken: tokens?.required('admin') ?? false, faults: !!opts.faults });
  return app;
}
