#!/usr/bin/env node
// `remote-spmc serve`: configuration, manifest, start and stop.

import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { pino } from 'pino';
import { buildHttpApp } from './http/app.js';
import { SpmcGrpcServer } from './grpc/server.js';
import { defaultManifest, ManifestError, parseManifest } from './manifest.js';
import { SPMC_ID } from '../proto/ffa/index.js';
import { startBuiltinPartitions } from './partitions/index.js';
import { runRemotePartition } from './partitions/remote.js';
import { SERVICES } from './partitions/test-service.js';
import { Spmc, SpmcError } from './spmc/spmc.js';
import type { PartitionManifest } from './spmc/spmc.js';
import type { SpmcLimits } from './spmc/state.js';

const USAGE = `usage: remote-spmc serve [options]
       remote-spmc partition --id ID [--server HOST:PORT] [--credential SECRET] [--serve SERVICE]

  --grpc HOST:PORT         gRPC listen address (default 127.0.0.1:50051)
  --http HOST:PORT         HTTP listen address (default 127.0.0.1:8080)
  --manifest FILE          partition manifest, YAML or JSON (default: the embedded ACS topology)
  --rxtx-max-pages N       largest RXTX_MAP page count, 1..63 (default 16)
  --mem-max-borrowers N    borrowers per memory transaction (default 4)
  --mem-max-fragments N    fragments per memory transaction descriptor (default 20)
  --mem-max-transactions N memory transactions alive at once (default 256)
  --log-level LEVEL        fatal, error, warn, info, debug, trace or silent (default info)
  -h, --help               this text

partition: serve a manifest partition marked remote from this process
  --server HOST:PORT       the SPMC's gRPC address (default 127.0.0.1:50051)
  --id ID                  the partition's id, e.g. 0x8010
  --credential SECRET      its credential (default: $REMOTE_SPMC_CREDENTIAL)
  --serve SERVICE          the service to run (default test-service)
`;

class UsageError extends Error {}

export interface HostPort {
  host: string;
  port: number;
}

/** "HOST:PORT" or "[v6]:PORT"; port 0 asks the OS for one. */
export function parseHostPort(flag: string, value: string): HostPort {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s[\]]+)):(\d{1,5})$/.exec(value);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new UsageError(`${flag}: expected HOST:PORT with a port 0..65535, got ${JSON.stringify(value)}`);
  return { host: m[1] ?? m[2]!, port };
}

const formatHostPort = (h: HostPort): string => (h.host.includes(':') ? `[${h.host}]:${h.port}` : `${h.host}:${h.port}`);

/** parseArgs, strict, with its complaints as usage errors. */
function parseFlags<T extends ParseArgsConfig['options']>(args: string[], options: T) {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false }).values;
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

function checkLogLevel(level: string): string {
  if (!LOG_LEVELS.includes(level)) throw new UsageError(`--log-level: expected one of ${LOG_LEVELS.join(', ')}`);
  return level;
}

interface ServeOptions {
  grpc: HostPort;
  http: HostPort;
  partitions: PartitionManifest[];
  limits: Partial<SpmcLimits>;
  logLevel: string;
}

function parseServe(args: string[]): ServeOptions {
  const v = parseFlags(args, {
    grpc: { type: 'string', default: '127.0.0.1:50051' },
    http: { type: 'string', default: '127.0.0.1:8080' },
    manifest: { type: 'string' },
    'rxtx-max-pages': { type: 'string', default: '16' },
    'mem-max-borrowers': { type: 'string', default: '4' },
    'mem-max-fragments': { type: 'string', default: '20' },
    'mem-max-transactions': { type: 'string', default: '256' },
    'log-level': { type: 'string', default: 'info' },
    help: { type: 'boolean', short: 'h' },
  });
  if (v.help) {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  const int = (flag: string, min: number, max: number): number => {
    const n = Number(v[flag as keyof typeof v]);
    if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`--${flag}: expected an integer ${min}..${max}`);
    return n;
  };
  const pages = int('rxtx-max-pages', 1, 63);
  const limits = {
    rxtxMaxPages: pages,
    maxBorrowers: int('mem-max-borrowers', 1, 64),
    maxFragments: int('mem-max-fragments', 1, 4096),
    maxTransactions: int('mem-max-transactions', 1, 1 << 20),
  };

  let partitions: PartitionManifest[];
  if (v.manifest !== undefined) {
    let text: string;
    try {
      text = readFileSync(v.manifest, 'utf8');
    } catch (e) {
      throw new UsageError(`--manifest: cannot read ${v.manifest}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    partitions = parseManifest(text, v.manifest);
  } else {
    partitions = defaultManifest();
  }
  return {
    grpc: parseHostPort('--grpc', v.grpc!),
    http: parseHostPort('--http', v.http!),
    partitions,
    limits,
    logLevel: checkLogLevel(v['log-level']!),
  };
}

async function serve(opts: ServeOptions): Promise<void> {
  const log = pino({ name: 'remote-spmc', level: opts.logLevel });
  // Memory handles start from a secret seed, so one VM cannot guess another's.
  const spmc = new Spmc({ partitions: opts.partitions, limits: opts.limits, handleSeed: randomBytes(8).readBigUInt64LE() });
  // Partitions' FFA_CONSOLE_LOG lines go to the log under the partition's name.
  spmc.observe({
    console: (id, line) => log.info({ partition: spmc.endpoint(id)?.name, endpoint: `0x${id.toString(16)}`, console: line }, 'partition console'),
  });
  await startBuiltinPartitions(spmc, (id, e) => log.error({ partition: id, err: String(e) }, 'built-in partition failed'));
  const grpcServer = new SpmcGrpcServer(spmc, { logger: log });
  let serving = true;
  const http = await buildHttpApp({ spmc, serving: () => serving });

  const grpcPort = await grpcServer.listen(formatHostPort(opts.grpc));
  await http.listen({ host: opts.http.host, port: opts.http.port });
  const httpAddr = http.server.address();
  const httpPort = typeof httpAddr === 'object' && httpAddr ? httpAddr.port : opts.http.port;
  log.info(
    {
      grpc: formatHostPort({ ...opts.grpc, port: grpcPort }),
      http: formatHostPort({ ...opts.http, port: httpPort }),
      partitions: opts.partitions.map((p) => `${p.name}@0x${p.id.toString(16)}`),
    },
    'listening',
  );

  const stop = async (signal: string) => {
    if (!serving) return;
    serving = false;
    log.info({ signal }, 'stopping');
    await grpcServer.stop();
    await http.close();
    log.info({}, 'stopped');
    log.flush?.();
    process.exit(0);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
}

async function partition(args: string[]): Promise<void> {
  const v = parseFlags(args, {
    server: { type: 'string', default: '127.0.0.1:50051' },
    id: { type: 'string' },
    credential: { type: 'string' },
    serve: { type: 'string', default: 'test-service' },
    'log-level': { type: 'string', default: 'info' },
  });
  const id = Number(v.id);
  if (v.id === undefined || !Number.isInteger(id) || id <= SPMC_ID || id > 0xffff) throw new UsageError('--id: expected a partition id 0x8001..0xffff');
  parseHostPort('--server', v.server!);
  const credential = v.credential ?? process.env.REMOTE_SPMC_CREDENTIAL ?? '';
  if (!credential) throw new UsageError('--credential (or REMOTE_SPMC_CREDENTIAL) is required');
  if (!(v.serve! in SERVICES)) throw new UsageError(`--serve: one of ${Object.keys(SERVICES).join(', ')}`);
  const log = pino({ name: 'remote-spmc-partition', level: checkLogLevel(v['log-level']!) });
  await runRemotePartition({
    server: v.server!,
    id,
    credential,
    service: v.serve as keyof typeof SERVICES,
    log: (msg, obj) => log.info(obj ?? {}, msg),
  });
  log.info({}, 'stopped');
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'serve':
        await serve(parseServe(rest));
        return;
      case 'partition':
        await partition(rest);
        return;
      case undefined:
      case '-h':
      case '--help':
      case 'help':
        process.stdout.write(USAGE);
        return;
      default:
        throw new UsageError(`unknown command ${JSON.stringify(command)}`);
    }
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`remote-spmc: ${e.message}\n\n${USAGE}`);
      process.exit(2);
    }
    if (e instanceof ManifestError || e instanceof SpmcError) {
      process.stderr.write(`remote-spmc: manifest error: ${e.message}\n`);
      process.exit(2);
    }
    const err = e as NodeJS.ErrnoException;
    if (e instanceof Error && e.name === 'TransportError') {
      process.stderr.write(`remote-spmc: ${e.message}\n`);
      process.exit(1);
    }
    if (err.code === 'EADDRINUSE' || err.code === 'EADDRNOTAVAIL' || /No address added|bind/i.test(err.message)) {
      process.stderr.write(`remote-spmc: cannot listen: ${err.message}\n`);
      process.exit(1);
    }
    throw e;
  }
}

await main(process.argv.slice(2));
