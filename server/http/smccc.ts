// The JSON transport: attach, one SMCCC call, detach, with the semantics of the gRPC ones. A call
// that blocks keeps the request open until it is answered; a client that goes away abandons it.

import type { FastifyPluginAsync, FastifyReply } from 'fastify';
import { parseUuid, REGISTER_COUNT, toRegisters } from '../../proto/ffa/index.js';
import { type SpmcGrpcServer, toStatus } from '../grpc/server.js';
import { isPending } from '../spmc/pending.js';
import type { Spmc } from '../spmc/spmc.js';

const HEX64 = '^0x[0-9a-fA-F]{1,16}$';
const hex = (v: bigint) => `0x${v.toString(16)}`;

/** gRPC status -> HTTP status, for the same refusals. */
const HTTP_OF: Record<number, number> = { 3: 400, 5: 404, 6: 409, 7: 403, 8: 429, 14: 503, 16: 401 };
const NAME_OF: Record<number, string> = { 3: 'INVALID_ARGUMENT', 5: 'NOT_FOUND', 6: 'ALREADY_EXISTS', 7: 'PERMISSION_DENIED', 8: 'RESOURCE_EXHAUSTED', 14: 'UNAVAILABLE', 16: 'UNAUTHENTICATED' };

function refuse(reply: FastifyReply, e: unknown) {
  const s = toStatus(e);
  return reply.code(HTTP_OF[s.code] ?? 500).send({ error: NAME_OF[s.code] ?? 'INTERNAL', message: s.details });
}

export interface SmcccOptions {
  spmc: Spmc;
  sessions: Pick<SpmcGrpcServer, 'openSession' | 'sessionEndpoint' | 'closeSession'>;
}

export const smcccRoutes: FastifyPluginAsync<SmcccOptions> = async (app, { spmc, sessions }) => {
  app.post<{ Body: { endpointId?: number; name?: string; vcpuCount?: number; ramBytes?: string; properties?: number; uuids?: string[]; credential?: string } }>(
    '/v1/attach',
    {
      schema: {
        summary: 'Attach as a VM (or a remote partition); the session works on gRPC too',
        body: {
          type: 'object',
          additionalProperties: false,
          properties: {
            endpointId: { type: 'integer', minimum: 0, maximum: 0xffff },
            name: { type: 'string', maxLength: 64 },
            vcpuCount: { type: 'integer', minimum: 0, maximum: 64 },
            ramBytes: { type: 'string', pattern: HEX64 },
            properties: { type: 'integer', minimum: 0, maximum: 0xffffffff },
            uuids: { type: 'array', maxItems: 8, items: { type: 'string', format: 'uuid' } },
            credential: { type: 'string', maxLength: 256 },
          },
        },
      },
    },
    async (req, reply) => {
      try {
        const b = req.body ?? {};
        const a = sessions.openSession({
          endpoint_id: b.endpointId ?? 0,
          name: b.name ?? '',
          vcpu_count: b.vcpuCount ?? 0,
          ram_bytes: BigInt(b.ramBytes ?? '0x0'),
          properties: b.properties ?? 0,
          uuids: (b.uuids ?? []).map((u) => (parseUuid(u), u)),
          credential: b.credential ?? '',
          regions: [],
        });
        return { session: a.session, endpointId: a.endpointId, ramBase: hex(a.ramBase), ramBytes: hex(a.ramBytes) };
      } catch (e) {
        return refuse(reply, e);
      }
    },
  );

  app.post<{ Body: { session: string } }>(
    '/v1/detach',
    {
      schema: {
        summary: 'Leave: the SPMC releases the endpoint',
        body: { type: 'object', required: ['session'], additionalProperties: false, properties: { session: { type: 'string', minLength: 1 } } },
      },
    },
    async (req, reply) => {
      try {
        sessions.closeSession(req.body.session);
        return {};
      } catch (e) {
        return refuse(reply, e);
      }
    },
  );

  app.post<{ Body: { session: string; vcpu?: number; x: string[] } }>(
    '/v1/smccc',
    {
      schema: {
        summary: 'One SMCCC call: x0..x17 as hex strings (missing ones are zero); the answer is x0..x17',
        body: {
          type: 'object',
          required: ['session', 'x'],
          additionalProperties: false,
          properties: {
            session: { type: 'string', minLength: 1 },
            vcpu: { type: 'integer', minimum: 0, maximum: 63, default: 0 },
            x: { type: 'array', minItems: 1, maxItems: REGISTER_COUNT, items: { type: 'string', pattern: HEX64 } },
          },
        },
        response: { 200: { type: 'object', properties: { x: { type: 'array', items: { type: 'string' } } } } },
      },
    },
    async (req, reply) => {
      let out;
      try {
        const endpoint = sessions.sessionEndpoint(req.body.session);
        out = spmc.handle(endpoint, req.body.vcpu ?? 0, toRegisters(req.body.x.map((v) => BigInt(v))), 'http');
      } catch (e) {
        return refuse(reply, e);
      }
      if (!isPending(out)) return { x: out.map(hex) };
      const pending = out;
      req.raw.on('close', () => {
        if (!reply.sent) pending.abandon();
      });
      return { x: (await pending.answer).map(hex) };
    },
  );
};
