// The state API: endpoints, memory transactions, the access table, and bounded memory inspection.

import type { FastifyPluginAsync } from 'fastify';
import { accessView, endpointDetail, endpointSummary, memoryMapView, transactionView } from '../debug/views.js';
import type { Spmc } from '../spmc/spmc.js';

/** Largest inspection read. */
export const MEMORY_VIEW_MAX = 65536;

const idParam = {
  type: 'object',
  required: ['id'],
  properties: { id: { type: 'string', pattern: '^(0x[0-9a-fA-F]{1,4}|[0-9]{1,5})$', description: 'endpoint id, decimal or 0x hex' } },
} as const;

const parseId = (s: string) => Number(s);

export const stateRoutes: FastifyPluginAsync<{ spmc: Spmc }> = async (app, { spmc }) => {
  app.get('/v1/endpoints', { schema: { summary: 'Every endpoint: VMs then partitions, in id order' } }, async () =>
    spmc.state.orderedEndpoints().map(endpointSummary),
  );

  app.get<{ Params: { id: string } }>(
    '/v1/endpoints/:id',
    { schema: { summary: 'One endpoint: version, properties, UUIDs, vCPU states, mailbox, notifications', params: idParam } },
    async (req, reply) => {
      const ep = spmc.endpoint(parseId(req.params.id));
      if (!ep) return reply.code(404).send({ error: 'NOT_FOUND', message: `no endpoint ${req.params.id}` });
      return endpointDetail(ep);
    },
  );

  app.get<{ Params: { id: string }; Querystring: { address: string; length: number; format?: 'hex' | 'base64' } }>(
    '/v1/endpoints/:id/memory',
    {
      schema: {
        summary: 'Read memory the endpoint may read (read-only, at most 64 KiB)',
        params: idParam,
        querystring: {
          type: 'object',
          required: ['address', 'length'],
          additionalProperties: false,
          properties: {
            address: { type: 'string', pattern: '^0x[0-9a-fA-F]{1,16}$' },
            length: { type: 'integer', minimum: 1, maximum: MEMORY_VIEW_MAX },
            format: { type: 'string', enum: ['hex', 'base64'], default: 'hex' },
          },
        },
      },
    },
    async (req, reply) => {
      const ep = spmc.endpoint(parseId(req.params.id));
      if (!ep) return reply.code(404).send({ error: 'NOT_FOUND', message: `no endpoint ${req.params.id}` });
      const address = BigInt(req.query.address);
      const { length } = req.query;
      // Inspection never faults the guest: it is refused instead, and not logged as a fault.
      if (!ep.access.allows(address, address + BigInt(length), 'ro')) {
        return reply.code(403).send({ error: 'PERMISSION_DENIED', message: `endpoint ${req.params.id} may not read ${length} bytes at ${req.query.address}` });
      }
      const data = Buffer.from(spmc.state.memory.read(address, length));
      return {
        address: req.query.address,
        length,
        format: req.query.format,
        data: req.query.format === 'base64' ? data.toString('base64') : hexdump(data, address),
      };
    },
  );

  app.get('/v1/memory/transactions', { schema: { summary: 'Live memory transactions: handle, type, sender, borrowers, ranges, flags' } }, async () =>
    [...spmc.state.shares.byHandle.values()].map(transactionView),
  );

  app.get('/v1/memory/map', { schema: { summary: 'Memory map of every endpoint: RAM window, ranges by state, handles, recent faults' } }, async () =>
    memoryMapView(spmc),
  );

  app.get('/v1/memory/access', { schema: { summary: 'The access table of every endpoint, as ranges' } }, async () =>
    spmc.state.orderedEndpoints().map(accessView),
  );
};

/** Classic 16-byte lines: address, hex bytes, ASCII. */
export function hexdump(data: Uint8Array, base: bigint): string {
  const lines: string[] = [];
  for (let off = 0; off < data.length; off += 16) {
    const row = data.subarray(off, off + 16);
    const hex = [...row].map((b) => b.toString(16).padStart(2, '0')).join(' ');
    const ascii = [...row].map((b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '.')).join('');
    lines.push(`${(base + BigInt(off)).toString(16).padStart(12, '0')}  ${hex.padEnd(47)}  ${ascii}`);
  }
  return lines.join('\n');
}
