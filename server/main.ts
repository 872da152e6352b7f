#!/usr/bin/env node
// `remote-spmc serve`: configuration, manifest, start and stop.

import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { pino } from 'pino';
import { checkLogLevel, formatHostPort, type HostPort, parseFlags, parseHostPort, UsageError } from './cli/flags.js';
import { healthCommand } from './cli/health.js';
import { stateCommand } from './cli/state.js';
import { traceCommand } from './cli/trace.js';
import { vmCommand } from './cli/vm.js';
import { Tracer } from './debug/tracer.js';
import { replayFile, TraceFormatError } from './debug/replay.js';
import { buildHttpApp } from './http/app.js';
import { SpmcGrpcServer } from './grpc/server.js';
import { defaultManifest, ManifestError, parseManifest, parseManifestFile } from './manifest.js';
import type { LogicalPartition } from './spmc/logical-partitions.js';
import { SPMC_ID } from '../proto/ffa/index.js';
import { startBuiltinPartitions } from './partitions/index.js';
import { runRemotePartition } from './partitions/remote.js';
import { SERVICES } from './partitions/test-service.js';
import { SessionCore } from './session/core.js';
import { Spmc, SpmcError } from './spmc/spmc.js';
import type { PartitionManifest } from './spmc/spmc.js';
import type { SpmcLimits } from './spmc/state.js';

const USAGE = `usage: remote-spmc serve [options]
       remote-spmc partition --id ID [--server HOST:PORT] [--credential SECRET] [--serve SERVICE]
       remote-spmc trace [--server HOST:PORT] [--endpoint ID] [--function NAME] [--errors] [--recent N] [--json]
       remote-spmc state [--server HOST:PORT] [--json]
       remote-spmc vm [--server HOST:PORT] [--id ID] [--vcpus N] [--scenario FILE | --script FILE | OP ARGS...]
       remote-spmc replay FILE [--manifest FILE]
       remote-spmc health [--server HOST:PORT]

  --grpc HOST:PORT         gRPC listen address (default 127.0.0.1:50051)
  --http HOST:PORT         HTTP listen address (default 127.0.0.1:8080)
  --manifest FILE          partition manifest, YAML or JSON (default: the embedded ACS topology)
  --rxtx-max-pages N       largest RXTX_MAP page count, 1..63 (default 16)
  --mem-max-borrowers N    borrowers per memory transaction (default 4)
  --mem-max-fragments N    fragments per memory transaction descriptor (default 20)
  --mem-max-transactions N memory transactions alive at once (default 256)
  --log-level LEVEL        fatal, error, warn, info, debug, trace or silent (default info)
  --trace-size N           trace records kept in memory (default 10000)
  --trace-file FILE        also write every trace record to FILE as JSON lines (for replay)
  --strict                 also refuse fields the spec calls MBZ that Hafnium never checks (default: as Hafnium)
  -h, --help               this text

partition: serve a manifest partition marked remote from this process
  --server HOST:PORT       the SPMC's gRPC address (default 127.0.0.1:50051)
  --id ID                  the partition's id, e.g. 0x8010
  --credential SECRET      its credential (default: $REMOTE_SPMC_CREDENTIAL)
  --serve SERVICE          the service to run (default test-service)

trace: the live decoded trace of a server (gRPC Debug service); --recent N first shows the last N
state: a readable summary of a server's SPMC state
vm: attach as a VM and run driver operations (see the README: "remote-spmc vm")
health: exit 0 when the server's gRPC health service answers SERVING
replay: run a recorded trace against a fresh SPMC; exit 0 if all results matched, 1 at the first difference
`;

interface ServeOptions {
  grpc: HostPort;
  http: HostPort;
  partitions: PartitionManifest[];
  logicalPartitions: LogicalPartition[];
  limits: Partial<SpmcLimits>;
  strict: boolean;
  logLevel: string;
  traceSize: number;
  traceFile?: string;
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
    'trace-size': { type: 'string', default: '10000' },
    'trace-file': { type: 'string' },
    strict: { type: 'boolean', default: false },
  });
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
  let logicalPartitions: LogicalPartition[] = [];
  if (v.manifest !== undefined) {
    let text: string;
    try {
      text = readFileSync(v.manifest, 'utf8');
    } catch (e) {
      throw new UsageError(`--manifest: cannot read ${v.manifest}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    ({ partitions, logicalPartitions } = parseManifestFile(text, v.manifest));
  } else {
    partitions = defaultManifest();
  }
  return {
    grpc: parseHostPort('--grpc', v.grpc!),
    http: parseHostPort('--http', v.http!),
    partitions,
    logicalPartitions,
    limits,
    strict: v.strict === true,
    logLevel: checkLogLevel(v['log-level']!),
    traceSize: int('trace-size', 1, 10_000_000),
    traceFile: v['trace-file'],
  };
}

async function serve(opts: ServeOptions): Promise<void> {
  const log = pino({ name: 'remote-spmc', level: opts.logLevel });
  // Memory handles start from a secret seed, so one VM cannot guess another's.
  const handleSeed = randomBytes(8).readBigUInt64LE();
  const spmc = new Spmc({ partitions: opts.partitions, logicalPartitions: opts.logicalPartitions, limits: opts.limits, handleSeed, strict: opts.strict });
  const core = SessionCore.for(spmc, { logger: log });
  // The trace sees everything from the first call on (the built-in partitions' setup included).
  const tracer = new Tracer(core, {
    ringSize: opts.traceSize,
    file: opts.traceFile,
    session: { partitions: opts.partitions, limits: spmc.state.limits, handleSeed },
  });
  // Partitions' FFA_CONSOLE_LOG lines go to the log under the partition's name.
  spmc.observe({
    console: (id, line) => log.info({ partition: spmc.endpoint(id)?.name, endpoint: `0x${id.toString(16)}`, console: line }, 'partition console'),
  });
  await startBuiltinPartitions(core, (id, e) => log.error({ partition: id, err: String(e) }, 'built-in partition failed'));
  const grpcServer = new SpmcGrpcServer(core);
  grpcServer.addDebug(tracer);
  let serving = true;
  const http = await buildHttpApp({ core, tracer });

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
    await tracer.close();
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

/** `remote-spmc replay FILE [--manifest FILE]`: 0 when every result matched, 1 at the first difference. */
function replayCommand(args: string[]): number {
  const [file, ...rest] = args;
  if (!file || file.startsWith('-')) throw new UsageError('replay: a trace file (from serve --trace-file) is required');
  const v = parseFlags(rest, { manifest: { type: 'string' } });
  let manifest: PartitionManifest[] | undefined;
  if (v.manifest !== undefined) manifest = parseManifest(readFileSync(v.manifest, 'utf8'), v.manifest);
  let report;
  try {
    report = replayFile(file, manifest);
  } catch (e) {
    if (e instanceof TraceFormatError || (e as NodeJS.ErrnoException).code === 'ENOENT') throw new UsageError(`replay: ${(e as Error).message}`);
    throw e;
  }
  const d = report.difference;
  if (!d) {
    process.stdout.write(`all ${report.calls} calls matched (${report.records} records)\n`);
    return 0;
  }
  process.stdout.write(
    `first difference at seq ${d.seq}, endpoint 0x${d.endpoint.toString(16)}: ${d.what}\n  recorded: ${d.recorded}\n  replayed: ${d.replayed}\n(${report.matched} of ${report.calls} calls matched before it)\n`,
  );
  return 1;
}

const COMMANDS = new Set(['serve', 'partition', 'trace', 'state', 'vm', 'health', 'replay']);

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  // `remote-spmc COMMAND --help` is help for every command, not an unknown option.
  if (command !== undefined && COMMANDS.has(command) && rest.some((a) => a === '-h' || a === '--help')) {
    process.stdout.write(USAGE);
    return;
  }
  try {
    switch (command) {
      case 'serve':
        await serve(parseServe(rest));
        return;
      case 'partition':
        await partition(rest);
        return;
      case 'trace':
        await traceCommand(rest);
        return;
      case 'state':
        await stateCommand(rest);
        return;
      case 'vm':
        process.exitCode = await vmCommand(rest);
        return;
      case 'health':
        process.exitCode = await healthCommand(rest);
        return;
      case 'replay':
        process.exitCode = replayCommand(rest);
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
