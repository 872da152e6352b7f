// `remote-spmc trace`: the live decoded trace of a running server, one line per record.

import * as grpc from '@grpc/grpc-js';
import { hex } from '../../proto/ffa/index.js';
import type { TraceRecord } from '../debug/records.js';
import { debugClientConstructor } from '../../proto/wire.js';
import { type Command, Flags, SERVER_FLAG } from './command.js';
import { grpcFailure } from './errors.js';
import { escapeDeep, jsonForTerminal } from './terminal.js';
import { ADMIN_TOKEN_FLAG, CLIENT_SECURITY_FLAGS, clientSecurity } from './tls-files.js';
import { channelCredentials, clientOptions } from '../../client-driver/transport/grpc-client.js';

const COLOUR = { red: '\x1b[31m', yellow: '\x1b[33m', dim: '\x1b[2m', reset: '\x1b[0m' };

const brief = (o: unknown): string =>
  o && typeof o === 'object'
    ? Object.entries(o)
        .map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : String(v)}`)
        .join(' ')
    : '';

/** Why a refused call was refused, after its error name. */
const because = (reason: string | undefined): string => (reason ? ` (${reason})` : '');

/**
 * One readable line: seq, endpoint, vCPU, call and its answer (and why, when refused). Every string
 * of the record is escaped first (see terminal.ts): only our own colours reach the terminal.
 */
export function formatRecord(record: TraceRecord, colour: boolean): string {
  const r = escapeDeep(record);
  const c = (k: keyof typeof COLOUR, s: string) => (colour ? `${COLOUR[k]}${s}${COLOUR.reset}` : s);
  const who = `${r.name || '?'}(${hex(r.endpoint)})`;
  const head = `${String(r.seq).padStart(6)} ${who.padEnd(16)}`;
  switch (r.kind) {
    case 'call': {
      const call = `${r.function} ${brief(r.args)}`.trim();
      // A fault rule answered (or changed the answer): say which.
      const mark = r.injected ? ` ${c('yellow', `[injected: ${r.injected}]`)}` : '';
      if (r.blocked) return `${head} v${r.vcpu} ${call} ${r.waiting ? c('dim', '... waiting') : c('yellow', '... blocked')}${mark}`;
      const res = r.result!;
      const ans = res.error ? c('red', `FFA_ERROR ${res.error}`) + because(r.reason) : `${res.function} ${brief(res.values)}`.trim();
      return `${head} v${r.vcpu} ${call} -> ${ans}${mark}`;
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
    case 'lost':
      // Not an endpoint's record: the server dropped records this client read too slowly to take.
      return `${String(r.seq).padStart(6)} ${c('yellow', `lost ${r.count} record${r.count === 1 ? '' : 's'} (#${r.fromSeq}..#${r.seq}): this client read too slowly`)}`;
    case 'faults':
      return `${head} ${c('yellow', `fault rules: ${r.rules.length} (seed ${r.seed})`)}`;
    default:
      return `${head} ${r.kind}`;
  }
}

export const traceCommand: Command = {
  name: 'trace',
  synopsis: '[options]',
  summary: 'the live decoded trace of a server (gRPC Debug service), one line per record, until interrupted',
  flags: [
    SERVER_FLAG,
    { name: 'endpoint', arg: 'ID', help: "only this endpoint's records" },
    { name: 'function', arg: 'NAME', help: 'only this function, any width (MSG_SEND_DIRECT_REQ matches both)' },
    { name: 'errors', help: 'only FFA_ERROR answers and memory faults' },
    { name: 'recent', arg: 'N', default: '0', help: 'first show the last N records of the ring, 0..10000' },
    { name: 'json', help: 'print each record as its JSON line' },
    ...CLIENT_SECURITY_FLAGS,
    ADMIN_TOKEN_FLAG,
  ],
  async run(args) {
    const v = Flags.parse(this, args);
    const server = v.server();
    const endpoint = v.int('endpoint', 0, 0xffff);
    const recent = v.int('recent', 0, 10000)!;
    const json = v.bool('json');
    const Client = debugClientConstructor();
    const sec = clientSecurity(v, ADMIN_TOKEN_FLAG.name);
    const client = new Client(server, channelCredentials(sec), clientOptions(sec)) as grpc.Client &
      Record<string, (req: object) => grpc.ClientReadableStream<{ json: string }>>;
    const stream = client['Trace']!({ endpoint, function: v.string('function') ?? '', errors_only: v.bool('errors'), recent });
    const colour = process.stdout.isTTY === true && !json;
    const stop = () => stream.cancel();
    process.once('SIGINT', stop);
    try {
      await new Promise<void>((resolve, reject) => {
        stream.on('data', (m: { json: string }) => {
          process.stdout.write(`${json ? jsonForTerminal(m.json) : formatRecord(JSON.parse(m.json) as TraceRecord, colour)}\n`);
        });
        stream.on('end', resolve);
        stream.on('error', (e: grpc.ServiceError) => (e.code === grpc.status.CANCELLED ? resolve() : reject(grpcFailure('trace', server, e))));
      });
    } finally {
      process.off('SIGINT', stop);
      client.close();
    }
    return 0;
  },
};
