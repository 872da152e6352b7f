// The fault rules over HTTP: GET /v1/faults lists them (with how often each matched and fired),
// POST adds one rule (or, with `rules`, replaces the whole set), DELETE /v1/faults/:id removes one
// and DELETE /v1/faults removes all. Behind the admin token (ADMIN_ROUTES). A bad rule is a 400 that
// names the field; a clash of ids a 409.

import type { FastifyPluginAsync, FastifyReply } from 'fastify';
import { FaultRuleError } from '../faults/rules.js';
import type { FaultInjector } from '../faults/injector.js';

const bad = (reply: FastifyReply, e: unknown) => {
  if (!(e instanceof FaultRuleError)) throw e;
  const clash = e.message.includes('exists already');
  return reply.code(clash ? 409 : 400).send({ error: clash ? 'ALREADY_EXISTS' : 'INVALID_ARGUMENT', message: e.message });
};

export const faultRoutes: FastifyPluginAsync<{ faults: FaultInjector }> = async (app, { faults }) => {
  app.get('/v1/faults', { schema: { summary: 'The fault rules in force, their seed, and how often each matched and fired' } }, async () => faults.list());

  app.post<{ Body: unknown }>(
    '/v1/faults',
    {
      schema: {
        summary: 'Add one fault rule ({ id, match, action, times? }); a body with `rules` (and `seed`) replaces the whole set',
        body: { type: 'object' },
      },
    },
    async (req, reply) => {
      try {
        const body = req.body as Record<string, unknown>;
        if ('rules' in body) faults.load(body);
        else faults.add(body);
      } catch (e) {
        return bad(reply, e);
      }
      return reply.code(201).send(faults.list());
    },
  );

  app.delete<{ Params: { id: string } }>(
    '/v1/faults/:id',
    { schema: { summary: 'Remove one fault rule (and what it holds: a held RX buffer)', params: { type: 'object', properties: { id: { type: 'string' } } } } },
    async (req, reply) => {
      if (!faults.remove(req.params.id)) return reply.code(404).send({ error: 'NOT_FOUND', message: `no fault rule ${JSON.stringify(req.params.id)}` });
      return faults.list();
    },
  );

  app.delete('/v1/faults', { schema: { summary: 'Remove every fault rule' } }, async () => {
    faults.clear();
    return faults.list();
  });
};
