// `remote-spmc trace`: the live decoded trace of a running server, one line per record.

import * as grpc from '@grpc/grpc-js';
import type { TraceRecord } from '../debug/records.js';
import { debugClientConstructor } from '../../proto/wire.js';
import { parseFlags, parseHostPort, UsageError } from './flags.js';

const COLOUR = { red: '\x1b[31m', yellow: '\x1b[33m', dim: '\x1b[2m', reset: '\x1b[0m' };

const brief = (o: unknown): string =>
  o && typeof o === 'object'
    ? Object.entries(o)
        .map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : String(v)}`)
        .join(' ')
    : '';

/** Why a refused call was refused, after its error name. */
const because = (reason: string | undefined): string => (reason ? ` (${reason})` : '');

/** One readable line: seq, endpoint, vCPU, call and its answer (and why, when refused). */
export function formatRecord(r: TraceRecord, colour: boolean): string {
  const c = (k: keyof typeof COLOUR, s: string) => (colour ? `${COLOUR[k]}${s}${COLOUR.reset}` : s);
  const who = `${r.name || '?'}(0x${r.endpoint.toString(16)})`;
  const head = `${String(r.seq).padStart(6)} ${who.padEnd(16)}`;
  switch (r.kind) {
    case 'call': {
      const call = `${r.function} ${brief(r.args)}`.trim();
      if (r.blocked) return `${head} v${r.vcpu} ${call} ${r.waiting ? c('dim', '... waiting') : c('yellow', '... blocked')}`;
      const res = r.result!;
      const ans = res.error ? c('red', `FFA_ERROR ${res.error}`) + because(r.reason) : `${res.function} ${brief(res.values)}`.trim();
      return `${head} v${r.vcpu} ${call} -> ${ans}`;
    }
    case 'return': {
      const ans = r.result.error ? c('red', `FFA_ERROR ${r.result.error}`) + because(r.reason) : `${r.result.function} ${brief(r.result.values)}`.trim();
      return `${head} v${r.vcpu} ${c('dim', `<- #${r.callSeq} ${r.function}`)} -> ${ans} ${c('dim', `(${r.latencyUs} us)`)}`;
    }
    case 'fault':
      return `${head} ${c('red', `memory fault: ${r.access} ${r.length} bytes at ${r.address}`)}`;
    case 'console':
      return `${head} console: ${r.line}`;
    case 'write':
      return `${head} ${c('dim', `write ${r.length} bytes at ${r.address}`)}`;
    case 'abandon':
      return `${head} v${r.vcpu} ${c('yellow', `abandoned #${r.callSeq} ${r.function}`)}`;
    default:
      return `${head} ${r.kind}`;
  }
}

export async function traceCommand(args: string[]): Promise<void> {
  const v = parseFlags(args, {
    server: { type: 'string', default: '127.0.0.1:50051' },
    endpoint: { type: 'string' },
    function: { type: 'string' },
    errors: { type: 'boolean', default: false },
    recent: { type: 'string', default: '0' },
    json: { type: 'boolean', default: false },
  });
  parseHostPort('--server', v.server!);
  const endpoint = v.endpoint !== undefined ? Number(v.endpoint) : undefined;
  if (endpoint !== undefined && (!Number.isInteger(endpoint) || endpoint < 0 || endpoint > 0xffff)) throw new UsageError('--endpoint: a 16-bit endpoint id');
  const recent = Number(v.recent);
  if (!Number.isInteger(recent) || recent < 0 || recent > 10000) throw new UsageError('--recent: 0..10000');
  const Client = debugClientConstructor();
  const client = new Client(v.server!, grpc.credentials.createInsecure()) as grpc.Client & Record<string, (req: object) => grpc.ClientReadableStream<{ json: string }>>;
  const stream = client['Trace']!({ endpoint, function: v.function ?? '', errors_only: v.errors, recent });
  const colour = process.stdout.isTTY === true && !v.json;
  await new Promise<void>((resolve, reject) => {
    stream.on('data', (m: { json: string }) => {
      const r = JSON.parse(m.json) as TraceRecord;
      process.stdout.write(`${v.json ? m.json : formatRecord(r, colour)}\n`);
    });
    stream.on('end', resolve);
    stream.on('error', (e: grpc.ServiceError) => (e.code === grpc.status.CANCELLED ? resolve() : reject(new Error(`trace: ${e.details || e.message}`))));
    process.once('SIGINT', () => stream.cancel());
  });
  client.close();
}
