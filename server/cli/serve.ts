// `remote-spmc serve`: configuration, manifest, start and stop.

import { randomBytes } from 'node:crypto';
import { format } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import { hex, VM_ID_MAX } from '../../proto/ffa/index.js';
import { DEFAULT_SUBSCRIBER_QUEUE, DEFAULT_SUBSCRIBER_STALL_MS, type FeedOptions } from '../debug/feed.js';
import { DEFAULT_MAX_SUBSCRIBERS, Tracer } from '../debug/tracer.js';
import { DEFAULT_KEEPALIVE_MS, SpmcGrpcServer } from '../grpc/server.js';
import { FaultInjector, FaultRuleError, readFaultsFile, traceFaults } from '../faults/index.js';
import { buildHttpApp } from '../http/app.js';
import { DEFAULT_MAX_HTTP_SESSIONS } from '../http/smccc.js';
import { defaultManifest } from '../manifest.js';
import { startBuiltinPartitions } from '../partitions/index.js';
import type { PartitionManifest } from '../spmc/spmc.js';
import { DEFAULT_GRACE_MS, DEFAULT_LEASE_MS, SessionCore } from '../session/core.js';
import { DEFAULT_PERSONALITY, findPersonality, installPersonality, personalityList, personalityOrThrow, unknownPersonality } from '../personalities/index.js';
import type { LogicalPartition } from '../spmc/logical-partitions.js';
import { MAX_VCPUS, Spmc } from '../spmc/spmc.js';
import { DEFAULT_LIMITS, type SpmcLimits } from '../spmc/state.js';
import { type Command, type FlagSpec, Flags } from './command.js';
import { checkLogLevel, formatHostPort, type HostPort, LOG_LEVELS, parseHostPort, UsageError } from './flags.js';
import { ConfigError } from './errors.js';
import { asConfigError, readManifestWithLogical } from './manifest-file.js';
import { terminalSafeLog } from './terminal.js';
import { type TlsFiles, tlsFiles, tokenFlag } from './tls-files.js';
import { type TokenOptions, Tokens } from '../session/tokens.js';

const MiB = 1n << 20n;

/**
 * The SPMC's limits as flags: name, range, and the limit each sets (its default is the SPMC's).
 * Byte limits are given in MiB (`mib`).
 */
const LIMIT_FLAGS: { name: string; key: keyof SpmcLimits; min: number; max: number; help: string; mib?: true }[] = [
  { name: 'rxtx-max-pages', key: 'rxtxMaxPages', min: 1, max: 63, help: 'largest RXTX_MAP page count, reported to v1.2 callers in FEATURES(RXTX_MAP)' },
  { name: 'mem-max-borrowers', key: 'maxBorrowers', min: 1, max: 64, help: 'borrowers per memory transaction' },
  { name: 'mem-max-fragments', key: 'maxFragments', min: 1, max: 4096, help: 'fragments per memory transaction descriptor' },
  { name: 'mem-max-transactions', key: 'maxTransactions', min: 1, max: 1 << 20, help: 'memory transactions alive at once' },
  {
    name: 'mem-max-transactions-per-endpoint',
    key: 'maxTransactionsPerEndpoint',
    min: 1,
    max: 1 << 20,
    help: 'memory transactions one sender has alive at once; one more MEM_SHARE/LEND/DONATE is NO_MEMORY',
  },
  {
    name: 'mem-max-descriptor-bytes',
    key: 'maxDescriptorBytes',
    min: 4096,
    max: 1 << 30,
    help: 'largest total length of a memory transaction descriptor; a longer one is NO_MEMORY',
  },
  { name: 'max-vms', key: 'maxVms', min: 1, max: VM_ID_MAX, help: 'VMs attached at once; one more attach is RESOURCE_EXHAUSTED' },
  { name: 'max-vcpus', key: 'maxVcpus', min: 1, max: MAX_VCPUS, help: 'vCPUs per VM; an attach asking for more is RESOURCE_EXHAUSTED' },
  { name: 'max-ram-mib', key: 'maxRamBytes', min: 1, max: 1 << 30, mib: true, help: 'RAM per VM in MiB; an attach asking for more is RESOURCE_EXHAUSTED' },
  {
    name: 'max-stored-mib',
    key: 'maxStoredBytes',
    min: 1,
    max: 1 << 30,
    mib: true,
    help: 'guest RAM actually stored, all VMs together, in MiB (pages never written cost nothing); a guest write past it is RESOURCE_EXHAUSTED',
  },
];

const limitDefault = (l: (typeof LIMIT_FLAGS)[number]): string => {
  const v = DEFAULT_LIMITS[l.key];
  return String(l.mib ? BigInt(v) / MiB : v);
};

const FLAGS: FlagSpec[] = [
  { name: 'grpc', arg: 'HOST:PORT', default: '127.0.0.1:50051', help: 'gRPC listen address; port 0 picks a free one' },
  { name: 'http', arg: 'HOST:PORT', default: '127.0.0.1:8080', help: 'HTTP listen address (dashboard, JSON transport, metrics)' },
  { name: 'manifest', arg: 'FILE', help: 'partition manifest, YAML or JSON (default: the embedded ACS topology)' },
  ...LIMIT_FLAGS.map((l) => ({ name: l.name, arg: 'N', default: limitDefault(l), help: `${l.help}, ${l.min}..${l.max}` })),
  {
    name: 'max-trace-subscribers',
    arg: 'N',
    default: String(DEFAULT_MAX_SUBSCRIBERS),
    help: 'live trace clients (SSE and gRPC) at once, 1..10000; one more is RESOURCE_EXHAUSTED (HTTP 429)',
  },
  {
    name: 'max-http-sessions',
    arg: 'N',
    default: String(DEFAULT_MAX_HTTP_SESSIONS),
    help: 'sessions attached through the JSON transport at once, 1..65535; one more attach is 429 RESOURCE_EXHAUSTED',
  },
  { name: 'log-level', arg: 'LEVEL', default: 'info', help: LOG_LEVELS.join(', ') },
  { name: 'trace-size', arg: 'N', default: '10000', help: 'trace records kept in memory, 1..10000000' },
  { name: 'trace-file', arg: 'FILE', help: 'also write every trace record to FILE as JSON lines (for replay)' },
  {
    name: 'trace-subscriber-queue',
    arg: 'N',
    default: String(DEFAULT_SUBSCRIBER_QUEUE),
    help: 'trace records queued for a live trace client that reads too slowly, 1..1000000; past it they are dropped and a "lost" record says how many',
  },
  {
    name: 'trace-subscriber-stall',
    arg: 'SECONDS',
    default: String(DEFAULT_SUBSCRIBER_STALL_MS / 1000),
    help: 'disconnect a live trace client whose buffer stays full this long while its records are being dropped, 1..86400',
  },
  { name: 'tls-cert', arg: 'FILE', help: 'serve gRPC and HTTP over TLS with this certificate (PEM); needs --tls-key' },
  { name: 'tls-key', arg: 'FILE', help: "the certificate's private key (PEM)" },
  { name: 'tls-ca', arg: 'FILE', help: 'also require every client to present a certificate this CA (PEM) signed: mTLS' },
  { name: 'join-token', arg: 'TOKEN', env: 'REMOTE_SPMC_JOIN_TOKEN', help: 'attaching over gRPC needs this bearer token (VMs and remote partitions)' },
  { name: 'join-token-file', arg: 'FILE', help: 'the join token, from the first line of FILE' },
  {
    name: 'admin-token',
    arg: 'TOKEN',
    env: 'REMOTE_SPMC_ADMIN_TOKEN',
    help: 'inspection needs this bearer token: memory dump, access table, endpoint details, traces, Debug.State, and the JSON attach',
  },
  { name: 'admin-token-file', arg: 'FILE', help: 'the admin token, from the first line of FILE' },
  {
    name: 'session-lease',
    arg: 'SECONDS',
    default: String(DEFAULT_LEASE_MS / 1000),
    help: 'release a session with no open stream this long after its last call (an orphaned unary or JSON attach), 1..86400',
  },
  {
    name: 'session-grace',
    arg: 'SECONDS',
    default: String(DEFAULT_GRACE_MS / 1000),
    help: 'keep a session whose last stream was cancelled this long, for its client to resume it by its token (0: release at once; 600 for a debugger pause), 0..86400',
  },
  {
    name: 'grpc-keepalive',
    arg: 'SECONDS',
    default: String(DEFAULT_KEEPALIVE_MS / 1000),
    help: 'ping each gRPC client connection this often; one that leaves a ping unanswered for half as long is dropped (its sessions then wait out --session-grace), 1..3600',
  },
  { name: 'strict', help: 'also refuse fields the spec calls MBZ or reserved that Hafnium never checks (default: as Hafnium)' },
  {
    name: 'personality',
    arg: 'NAME',
    help: 'answer as this partition manager: hafnium (default), hafnium-2.14, tf-a-el3-spmc, optee, physical, or a quirk; "list" prints them (default: the manifest\'s personality, else hafnium)',
  },
  {
    name: 'faults',
    arg: 'FILE',
    help: 'fault injection rules, YAML or JSON (README "Fault injection"); also listed, added and removed at /v1/faults and by the Debug service',
  },
];

interface ServeOptions {
  grpc: HostPort;
  http: HostPort;
  partitions: PartitionManifest[];
  logicalPartitions: LogicalPartition[];
  limits: Partial<SpmcLimits>;
  maxTraceSubscribers: number;
  maxHttpSessions: number;
  strict: boolean;
  /** The personality's name (`list`: print them and exit). */
  personality: string;
  logLevel: string;
  traceSize: number;
  traceFile?: string;
  traceSubscribers: FeedOptions;
  tls?: Required<Pick<TlsFiles, 'cert' | 'key'>> & Pick<TlsFiles, 'ca'>;
  tokens: TokenOptions;
  leaseMs: number;
  graceMs: number;
  keepaliveMs: number;
  /** The fault rules of --faults, checked. */
  faults?: unknown;
}

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|localhost)$/i;

/** Why binding `addresses` is open to the network, or undefined when it is not (loopback, or TLS and tokens on). */
export function exposureWarning(addresses: HostPort[], tls: boolean, tokens: TokenOptions): string | undefined {
  const open = addresses.filter((a) => !LOOPBACK.test(a.host)).map(formatHostPort);
  const missing = [...(tls ? [] : ['TLS']), ...(tokens.join || tokens.admin ? [] : ['tokens'])];
  if (open.length === 0 || missing.length === 0) return undefined;
  return `listening on ${open.join(', ')} without ${missing.join(' or ')}: anyone who reaches it can attach${tokens.admin ? '' : " and read every VM's memory"}; see "Running it on a network" in the README`;
}

function parseServe(c: Command, args: string[]): ServeOptions {
  const v = Flags.parse(c, args);
  const limits: Partial<Record<keyof SpmcLimits, number | bigint>> = {};
  for (const l of LIMIT_FLAGS) {
    const n = v.int(l.name, l.min, l.max)!;
    limits[l.key] = l.mib ? BigInt(n) * MiB : n;
  }
  const manifest = v.string('manifest');
  const files = tlsFiles(v, true);
  const tokens: TokenOptions = {};
  const join = tokenFlag(v, 'join-token');
  const admin = tokenFlag(v, 'admin-token');
  if (join !== undefined) tokens.join = join;
  if (admin !== undefined) tokens.admin = admin;
  const personality = v.string('personality');
  if (personality === 'list') return { personality } as ServeOptions;
  const { personality: declaredPersonality, ...declared } =
    manifest !== undefined ? readManifestWithLogical(manifest) : { partitions: defaultManifest(), logicalPartitions: [], personality: undefined };
  const chosen = personality ?? declaredPersonality ?? DEFAULT_PERSONALITY;
  if (!findPersonality(chosen)) throw new UsageError(unknownPersonality(chosen, personality !== undefined ? '--personality' : 'manifest personality'));
  return {
    personality: chosen,
    grpc: parseHostPort('--grpc', v.string('grpc')!),
    http: parseHostPort('--http', v.string('http')!),
    ...declared,
    limits: limits as Partial<SpmcLimits>,
    maxTraceSubscribers: v.int('max-trace-subscribers', 1, 10_000)!,
    maxHttpSessions: v.int('max-http-sessions', 1, 0xffff)!,
    strict: v.bool('strict'),
    logLevel: checkLogLevel(v.string('log-level')!),
    traceSize: v.int('trace-size', 1, 10_000_000)!,
    traceFile: v.string('trace-file'),
    tls: files.cert && files.key ? { cert: files.cert, key: files.key, ca: files.ca } : undefined,
    tokens,
    traceSubscribers: { queue: v.int('trace-subscriber-queue', 1, 1_000_000)!, stallMs: v.int('trace-subscriber-stall', 1, 86_400)! * 1000 },
    leaseMs: v.int('session-lease', 1, 86_400)! * 1000,
    graceMs: v.int('session-grace', 0, 86_400)! * 1000,
    keepaliveMs: v.int('grpc-keepalive', 1, 3600)! * 1000,
    faults: faultsFlag(v.string('faults')),
  };
}

/** --faults FILE, read and checked now: a bad rule is the user's mistake (exit 2), named. */
function faultsFlag(file: string | undefined): unknown {
  if (file === undefined) return undefined;
  try {
    return readFaultsFile(file).raw;
  } catch (e) {
    throw e instanceof FaultRuleError ? new ConfigError(`--faults: ${e.message}`) : e;
  }
}

async function serve(opts: ServeOptions): Promise<void> {
  const log = pino({ name: 'remote-spmc', level: opts.logLevel, ...terminalSafeLog });
  // grpc-js writes its own errors to stderr ("E No address added ..."); the ones that matter are
  // reported by this command already, so they go to the log at debug level.
  grpc.setLogger({ error: (...args: unknown[]) => log.debug({ grpc: format(...args) }, 'grpc-js') });
  // Memory handles start from a secret seed, so one VM cannot guess another's.
  const handleSeed = randomBytes(8).readBigUInt64LE();
  const personality = personalityOrThrow(opts.personality);
  let spmc: Spmc;
  try {
    spmc = new Spmc({
      partitions: opts.partitions,
      logicalPartitions: opts.logicalPartitions,
      limits: opts.limits,
      handleSeed,
      strict: opts.strict,
      profile: personality.profile,
    });
  } catch (e) {
    throw asConfigError(e);
  }
  const core = SessionCore.for(spmc, { logger: log, leaseMs: opts.leaseMs, graceMs: opts.graceMs });
  // Leases and grace periods end on the core's sweep, once a second.
  const sweeper = setInterval(() => core.sweep(), 1000).unref();
  // The trace sees everything from the first call on (the built-in partitions' setup included).
  const tracer = new Tracer(core, {
    ringSize: opts.traceSize,
    file: opts.traceFile,
    subscribers: opts.traceSubscribers,
    maxSubscribers: opts.maxTraceSubscribers,
    session: {
      partitions: opts.partitions,
      limits: spmc.state.limits,
      handleSeed,
      ...(personality.name !== DEFAULT_PERSONALITY ? { personality: personality.name } : {}),
      strict: opts.strict,
      logicalPartitions: opts.logicalPartitions,
    },
  });
  // After the trace, so that the trace records the answers as the personality's hooks leave them.
  installPersonality(core, personality);
  // Partitions' FFA_CONSOLE_LOG lines go to the log under the partition's name.
  spmc.observe({
    console: (id, line) => log.info({ partition: spmc.endpoint(id)?.name, endpoint: hex(id), console: line }, 'partition console'),
  });
  await startBuiltinPartitions(core, (id, e) => log.error({ partition: id, err: String(e) }, 'built-in partition failed'));
  const tokens = new Tokens(opts.tokens, core.attacks);
  const grpcServer = new SpmcGrpcServer(core, { tls: opts.tls, tokens, keepaliveMs: opts.keepaliveMs });
  // Fault injection: the rules go into the trace (for replay); the injector joins the chain last,
  // so the trace and the metrics see its answers.
  const faults = new FaultInjector(core);
  if (opts.faults !== undefined) faults.load(opts.faults);
  traceFaults(faults, tracer);
  grpcServer.addDebug(tracer, faults);
  let serving = true;
  const http = await buildHttpApp({ core, tracer, https: opts.tls, tokens, maxHttpSessions: opts.maxHttpSessions, faults });
  faults.install();

  const grpcPort = await grpcServer.listen(formatHostPort(opts.grpc));
  await http.listen({ host: opts.http.host, port: opts.http.port });
  const httpAddr = http.server.address();
  const httpPort = typeof httpAddr === 'object' && httpAddr ? httpAddr.port : opts.http.port;
  log.info(
    {
      grpc: formatHostPort({ ...opts.grpc, port: grpcPort }),
      http: formatHostPort({ ...opts.http, port: httpPort }),
      tls: opts.tls ? (opts.tls.ca ? 'mtls' : 'tls') : 'off',
      partitions: opts.partitions.map((p) => `${p.name}@${hex(p.id)}`),
      personality: personality.name,
      limits: Object.fromEntries(Object.entries(spmc.state.limits).map(([k, n]) => [k, typeof n === 'bigint' ? n.toString() : n])),
    },
    'listening',
  );
  const exposed = exposureWarning([opts.grpc, opts.http], opts.tls !== undefined, opts.tokens);
  if (exposed) log.warn({ tls: opts.tls !== undefined, joinToken: opts.tokens.join !== undefined, adminToken: opts.tokens.admin !== undefined }, exposed);

  const stop = async (signal: string) => {
    if (!serving) return;
    serving = false;
    log.info({ signal }, 'stopping');
    clearInterval(sweeper);
    await grpcServer.stop();
    await http.close();
    faults.close();
    await tracer.close();
    log.info({}, 'stopped');
    log.flush?.();
    process.exit(0);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
}

export const serveCommand: Command = {
  name: 'serve',
  synopsis: '[options]',
  summary: 'serve the SPMC: gRPC (the FF-A contract, health, debug) and HTTP (dashboard, JSON transport, metrics)',
  flags: FLAGS,
  more: `A bad flag or manifest exits with status 2; an address in use with status 1. SIGINT or SIGTERM stops
the server cleanly.`,
  async run(args) {
    const opts = parseServe(this, args);
    if (opts.personality === 'list') {
      process.stdout.write(personalityList());
      return 0;
    }
    await serve(opts);
    return 0;
  },
};
