// The JSON transport: attach, one SMCCC call, detach, with the semantics of the gRPC ones. A call
// that blocks keeps the request open until it is answered; a client that goes away abandons it.

import type { FastifyPluginAsync, FastifyReply } from 'fastify';
import { hex, REGISTER_COUNT, type Registers, toRegisters } from '../../proto/ffa/index.js';
import { MAX_MEMORY_ACCESS } from '../../proto/wire.js';
import type { SessionCore } from '../session/core.js';
import { SessionError, statusOf, type TransportStatus } from '../session/status.js';
import { peerAddress } from '../session/throttle.js';
import { isPending } from '../spmc/pending.js';

const HEX64 = '^0x[0-9a-fA-F]{1,16}$';

/** The session core's statuses as HTTP statuses. */
export const HTTP_STATUS: Record<TransportStatus, number> = {
  INVALID_ARGUMENT: 400,
  UNAUTHENTICATED: 401,
  PERMISSION_DENIED: 403,
  ALREADY_EXISTS: 409,
  RESOURCE_EXHAUSTED: 429,
  UNAVAILABLE: 503,
  INTERNAL: 500,
};

function refuse(reply: FastifyReply, e: unknown) {
  const { status, message } = statusOf(e);
  return reply.code(HTTP_STATUS[status]).send({ error: status, message });
}

/** Sessions the JSON transport holds at once by default. */
export const DEFAULT_MAX_HTTP_SESSIONS = 64;

/**
 * Sessions attached through the JSON transport and still alive (a session ends by detach on any
 * transport, or by the core releasing it): one more attach past `max` is RESOURCE_EXHAUSTED.
 */
export class HttpSessions {
  private readonly tokens = new Set<string>();
  constructor(
    private readonly core: SessionCore,
    readonly max = DEFAULT_MAX_HTTP_SESSIONS,
  ) {}

  /** Live ones now (those released elsewhere, or by their lease, are forgotten here; at most `max` to look at). */
  get count(): number {
    for (const t of this.tokens) if (!this.core.has(t)) this.tokens.delete(t);
    return this.tokens.size;
  }

  /** Attach through `attach` unless `max` are live already. */
  attach<T extends { session: string }>(attach: () => T): T {
    if (this.count >= this.max)
      throw new SessionError('RESOURCE_EXHAUSTED', `attach: ${this.max} sessions are attached through the JSON transport already, this server's limit`);
    const a = attach();
    this.tokens.add(a.session);
    return a;
  }
}

export interface SmcccOptions {
  core: SessionCore;
  /** The JSON transport's session limit (default: one of DEFAULT_MAX_HTTP_SESSIONS). */
  sessions?: HttpSessions;
}

export const smcccRoutes: FastifyPluginAsync<SmcccOptions> = async (app, { core, sessions = new HttpSessions(core) }) => {
  /** x0..x17 as hex, and why when the answer is FFA_ERROR. */
  const answer = (x: Registers) => {
    const reason = core.reasonFor(x);
    return reason ? { x: x.map(hex), reason: reason.text, reasonCode: reason.code } : { x: x.map(hex) };
  };

  app.post<{
    Body: {
      endpointId?: number;
      name?: string;
      vcpuCount?: number;
      ramBytes?: string;
      ramBase?: string;
      properties?: number;
      uuids?: string[];
      credential?: string;
    };
  }>(
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
            ramBase: { type: 'string', pattern: HEX64, description: "where the VM's RAM window must lie (4 KiB aligned); default: the server places it" },
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
        const a = sessions.attach(() => core.attach({ ...b, ramBytes: BigInt(b.ramBytes ?? '0x0'), ramBase: BigInt(b.ramBase ?? '0x0') }, peerAddress(req.ip)));
        return { session: a.session, endpointId: a.endpointId, ramBase: hex(a.ramBase), ramBytes: hex(a.ramBytes), ffaVersion: a.ffaVersion };
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
        core.detach(req.body.session);
        return {};
      } catch (e) {
        return refuse(reply, e);
      }
    },
  );

  // Guest memory of a session, with the checks of gRPC ReadMemory/WriteMemory (the session core's):
  // 1..MAX_MEMORY_ACCESS bytes, inside what the endpoint may read (or write); a fault is 403.
  app.post<{ Body: { session: string; address: string; length: number } }>(
    '/v1/memory/read',
    {
      schema: {
        summary: "Read the session's guest memory: the bytes as hex",
        body: {
          type: 'object',
          required: ['session', 'address', 'length'],
          additionalProperties: false,
          properties: {
            session: { type: 'string', minLength: 1 },
            address: { type: 'string', pattern: HEX64 },
            length: { type: 'integer', minimum: 1, maximum: MAX_MEMORY_ACCESS },
          },
        },
        response: { 200: { type: 'object', properties: { data: { type: 'string', description: 'the bytes, two hex digits each' } } } },
      },
    },
    async (req, reply) => {
      try {
        const s = core.session(req.body.session);
        return { data: Buffer.from(core.readMemory(s, BigInt(req.body.address), req.body.length)).toString('hex') };
      } catch (e) {
        return refuse(reply, e);
      }
    },
  );

  app.post<{ Body: { session: string; address: string; data: string } }>(
    '/v1/memory/write',
    {
      // Hex doubles the bytes: room for the largest write and the rest of the body.
      bodyLimit: 2 * MAX_MEMORY_ACCESS + 4096,
      schema: {
        summary: "Write the session's guest memory: data as hex (two digits a byte)",
        body: {
          type: 'object',
          required: ['session', 'address', 'data'],
          additionalProperties: false,
          properties: {
            session: { type: 'string', minLength: 1 },
            address: { type: 'string', pattern: HEX64 },
            data: { type: 'string', minLength: 2, maxLength: 2 * MAX_MEMORY_ACCESS, pattern: '^([0-9a-fA-F]{2})+$' },
          },
        },
      },
    },
    async (req, reply) => {
      try {
        const s = core.session(req.body.session);
        core.writeMemory(s, BigInt(req.body.address), Buffer.from(req.body.data, 'hex'));
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
        response: {
          200: {
            type: 'object',
            properties: {
              x: { type: 'array', items: { type: 'string' } },
              reason: { type: 'string', description: 'when x0 is FFA_ERROR: the check that refused the call, with its values' },
              reasonCode: { type: 'string', description: 'the stable code of that reason' },
            },
          },
        },
      },
    },
    async (req, reply) => {
      let out;
      try {
        out = core.call(core.session(req.body.session), req.body.vcpu ?? 0, toRegisters(req.body.x.map((v) => BigInt(v))), 'http');
      } catch (e) {
        return refuse(reply, e);
      }
      if (!isPending(out)) return answer(out);
      const pending = out;
      req.raw.on('close', () => {
        if (!reply.sent) pending.abandon();
      });
      return answer(await pending.answer);
    },
  );
};
