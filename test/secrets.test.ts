// Issue 14, items 5 and 6: secrets stay in the server, terminals are not remote-controlled, and
// attacks are visible.
// - A remote partition's credential never reaches the trace file (written as ***, mode 0600 even
//   over an existing file), a log, the state API, the Debug snapshot or /metrics; replay needs no
//   credential, and with --manifest reads it from the environment as serve does.
// - Names, console lines and reasons are printed escaped by `state` and `trace`.
// - Wrong credentials are throttled per source, logged once per interval with the count held back,
//   and counted in /metrics; a flood of memory faults is a bounded number of log lines and a count.
// Every clock here is the test's own: nothing sleeps, and nothing depends on how fast the machine is.

import { once } from 'node:events';
import { chmodSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import t from 'tap';
import { fid, toRegisters } from '../proto/ffa/index.js';
import { FfaDriver } from '../client-driver/driver.js';
import { GrpcConnector } from '../client-driver/transport/grpc.js';
import { SpmcChannel } from '../client-driver/transport/grpc-client.js';
import { TransportError } from '../client-driver/transport/transport.js';
import { EmulatedVm } from '../client-driver/vm.js';
import { escapeControl, escapeDeep, jsonForTerminal } from '../server/cli/terminal.js';
import { parseTrace, replayFile } from '../server/debug/replay.js';
import { Tracer } from '../server/debug/tracer.js';
import { SpmcGrpcServer } from '../server/grpc/server.js';
import { buildHttpApp } from '../server/http/app.js';
import { DEFAULT_MANIFEST_YAML, parseManifest } from '../server/manifest.js';
import { type Logger, SessionCore } from '../server/session/core.js';
import { peerAddress } from '../server/session/throttle.js';
import { MemoryFault, Spmc } from '../server/spmc/spmc.js';
import { file, lines, run, start, startServer, tmpPath } from './fixtures/cli.js';

const SECRET = 'the-partition-secret-4711';
const SECRET_ENV = 'SECRETS_TEST_SP_CREDENTIAL';
const REMOTE_SP = 0x8010;
const MANIFEST_YAML = `${DEFAULT_MANIFEST_YAML}  - name: remote-echo\n    id: 0x8010\n    uuids: [0badcafe-0000-4000-8000-000000000010]\n    ffa-version: "1.2"\n    execution-ctx-count: 1\n    messaging-method: 0x603\n    remote: { credential-env: ${SECRET_ENV} }\n`;
const partitions = () => parseManifest(MANIFEST_YAML, 'secrets.yaml', { [SECRET_ENV]: SECRET });

/** A logger that keeps its lines. */
function recordingLogger() {
  const lines: { level: 'info' | 'warn'; obj: Record<string, unknown>; msg: string }[] = [];
  const logger: Logger = {
    info: (obj, msg = '') => void lines.push({ level: 'info', obj: obj as Record<string, unknown>, msg }),
    warn: (obj, msg = '') => void lines.push({ level: 'warn', obj: obj as Record<string, unknown>, msg }),
  };
  return {
    lines,
    logger,
    warns: (msg: string | RegExp) => lines.filter((l) => l.level === 'warn' && (typeof msg === 'string' ? l.msg === msg : msg.test(l.msg))),
  };
}

/** A clock the test moves. */
function testClock() {
  let now = 1_000_000;
  return { clock: () => now, advance: (ms: number) => void (now += ms) };
}

/** A model, its core (with the test's logger and clock), a gRPC server and the HTTP app on port 0. */
async function stack() {
  const spmc = new Spmc({ partitions: partitions() });
  const log = recordingLogger();
  const time = testClock();
  const core = SessionCore.for(spmc, { logger: log.logger, clock: time.clock });
  const grpcServer = new SpmcGrpcServer(core);
  const address = `127.0.0.1:${await grpcServer.listen('127.0.0.1:0')}`;
  const app = await buildHttpApp({ core });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const a = app.server.address();
  const base = `http://127.0.0.1:${typeof a === 'object' && a ? a.port : 0}`;
  const channel = new SpmcChannel(address);
  const stop = async () => {
    channel.close();
    await app.close();
    await grpcServer.stop(100);
  };
  return { spmc, core, log, time, address, base, channel, stop };
}

const refusal = async (p: Promise<unknown>): Promise<{ code: string; message: string }> => {
  try {
    await p;
    return { code: 'OK', message: '' };
  } catch (e) {
    return e instanceof TransportError ? { code: e.code, message: e.message } : { code: 'not a TransportError', message: String(e) };
  }
};

const metric = (text: string, series: string): number | undefined => {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
};

// ---- the trace file --------------------------------------------------------------------------------

t.test('the trace file holds no credential and is mode 0600, also when it existed with a wider mode; replay needs no credential', async (t) => {
  const traceFile = tmpPath('secret-trace.jsonl');
  writeFileSync(traceFile, 'an older trace\n');
  chmodSync(traceFile, 0o644);
  const spmc = new Spmc({ partitions: partitions() });
  const core = SessionCore.for(spmc);
  const tracer = new Tracer(core, { file: traceFile, session: { partitions: partitions(), limits: spmc.state.limits, handleSeed: 0n } });
  t.equal(statSync(traceFile).mode & 0o777, 0o600, 'narrowed to 0600 before anything is written');
  const sp = core.attach({ endpointId: REMOTE_SP, credential: SECRET });
  const vm = core.attach({ name: 'vm-a' });
  core.call(core.session(vm.session), 0, toRegisters([BigInt(fid('VERSION')), 0x10002n]), 'test');
  core.call(core.session(sp.session), 0, toRegisters([BigInt(fid('ID_GET'))]), 'test');
  core.detach(vm.session);
  await tracer.close();

  const text = readFileSync(traceFile, 'utf8');
  t.notOk(text.includes(SECRET), 'the credential is nowhere in the file');
  t.notOk(text.includes('an older trace'), 'the old contents are gone');
  const { header, records } = parseTrace(text, traceFile);
  const remote = (header.partitions as { id: string; behaviour: { kind: string; credential?: string } }[]).find((p) => Number(p.id) === REMOTE_SP)!;
  t.same(remote.behaviour, { kind: 'remote', credential: '***' }, 'the header says the partition is remote, its credential ***');
  t.ok(
    records.some((r) => r.kind === 'attach' && r.endpoint === REMOTE_SP),
    'the remote partition attached in the trace',
  );
  t.equal(statSync(traceFile).mode & 0o777, 0o600);

  const report = replayFile(traceFile);
  t.equal(report.difference, undefined, 'the replay attaches the remote partition and matches every answer');
  t.equal(report.calls, 2);
  t.equal(report.matched, 2);
});

t.test('serve: no credential in the trace file, the logs, the state API, the Debug snapshot or /metrics; replay from the command line', async (t) => {
  const manifest = file('secrets.yaml', MANIFEST_YAML);
  const traceFile = tmpPath('served-trace.jsonl');
  const server = await startServer(t, ['--manifest', manifest, '--trace-file', traceFile], { [SECRET_ENV]: SECRET });
  let log = '';
  server.child.stdout!.on('data', (d) => (log += d));
  server.child.stderr!.on('data', (d) => (log += d));
  const env = { REMOTE_SPMC_SERVER: server.grpc };

  const wrong = await run(['partition', '--id', '0x8010', '--credential', 'a-wrong-guess-123'], env);
  t.equal(wrong.code, 1, 'a wrong credential is refused');
  const sp = start(t, ['partition', '--id', '0x8010', '--credential-env', SECRET_ENV], { ...env, [SECRET_ENV]: SECRET });
  await sp.out.until((l) => l.includes('"msg":"serving"'));
  const direct = await run(['vm', 'direct', '0x8010', 'ECHO', '0x77'], env);
  t.equal(direct.code, 0, direct.stdout);

  const answers = [
    (await run(['state', '--json'], env)).stdout,
    (await run(['state'], env)).stdout,
    await (await fetch(`http://${server.http}/v1/endpoints/0x8010`)).text(),
    await (await fetch(`http://${server.http}/v1/endpoints`)).text(),
    await (await fetch(`http://${server.http}/v1/trace/recent?limit=1000`)).text(),
    await (await fetch(`http://${server.http}/metrics`)).text(),
  ];
  for (const [i, a] of answers.entries()) t.notOk(a.includes(SECRET), `answer ${i} has no credential`);
  t.notOk(answers[0]!.includes('a-wrong-guess-123'), 'nor what was guessed');
  t.equal(metric(answers[5]!, 'remote_spmc_auth_failures_total{kind="credential"}'), 1, 'the wrong credential is counted');

  server.child.kill('SIGTERM');
  // 'close', not 'exit': the output still in the pipe is read first.
  await once(server.child, 'close');
  t.notOk(log.includes(SECRET), 'the log has no credential');
  t.notOk(log.includes('a-wrong-guess-123'), 'nor what was guessed');
  t.match(log, /"level":40,.*"source":"127\.0\.0\.1".*"msg":"failed credential"/, 'the wrong one is logged at warn with its source');
  const text = readFileSync(traceFile, 'utf8');
  t.notOk(text.includes(SECRET), 'the trace file has no credential');
  t.match(text.split('\n')[0], /"credential":"\*\*\*"/, 'the header has ***');
  t.equal(statSync(traceFile).mode & 0o777, 0o600, 'the trace file is mode 0600');

  // Replay: no credential is needed from the file or the environment.
  const replayed = await run(['replay', traceFile], { [SECRET_ENV]: '' });
  t.equal(replayed.code, 0, replayed.stdout + replayed.stderr);
  t.match(replayed.stdout, /^all \d+ calls matched/);
  // With the manifest, its credential-env is read from the environment, as serve reads it.
  const withManifest = await run(['replay', traceFile, '--manifest', manifest], { [SECRET_ENV]: SECRET });
  t.equal(withManifest.code, 0, withManifest.stdout + withManifest.stderr);
  const noEnv = await run(['replay', traceFile, '--manifest', manifest], { [SECRET_ENV]: '' });
  t.equal(noEnv.code, 2, 'without the variable the manifest is refused');
  t.match(noEnv.stderr, new RegExp(`\\$${SECRET_ENV} must hold a credential`));
});

// ---- the terminal -----------------------------------------------------------------------------------

t.test('escapeControl: C0, DEL and C1 are shown, never obeyed; the rest is kept', async (t) => {
  t.equal(escapeControl('\u001b]0;pwned\u0007'), '\\x1b]0;pwned\\x07');
  t.equal(escapeControl('a\tb\nc\rd'), 'a\\tb\\nc\\rd');
  t.equal(escapeControl('\u0000\u007f\u0080\u009b\u009f'), '\\x00\\x7f\\x80\\x9b\\x9f');
  t.equal(escapeControl('vm-1 ünïcödé ✓ \u00a0'), 'vm-1 ünïcödé ✓ \u00a0', 'printable text, from U+00A0 on, is kept');
  t.same(escapeDeep({ 'k\u001b': ['\u001b[2J', 3, null, { n: '\u0085' }] }), { 'k\\x1b': ['\\x1b[2J', 3, null, { n: '\\x85' }] }, 'keys and nested strings');
  const json = jsonForTerminal(JSON.stringify({ name: '\u001b]0;x\u0007\u009b2J\u007f' }));
  // eslint-disable-next-line no-control-regex -- looking for control characters
  t.notMatch(json, /[\u0000-\u001f\u007f-\u009f]/, 'no raw control character in JSON output');
  t.same(JSON.parse(json), { name: '\u001b]0;x\u0007\u009b2J\u007f' }, 'and it is the same JSON');
});

t.test('state, trace and the server log print an escape sequence in a VM name and a console line escaped', async (t) => {
  const server = await startServer(t);
  const serverLog = lines(server.child);
  const env = { REMOTE_SPMC_SERVER: server.grpc };
  const connector = new GrpcConnector(server.grpc);
  t.teardown(() => connector.close());
  const name = '\u001b]0;pwned\u0007';
  const vm = await EmulatedVm.attach(connector, { name });
  const drv = new FfaDriver(vm);
  await drv.init();
  await drv.consoleLog('\u001b[2Jwiped\u0007\n');
  const c1 = await EmulatedVm.attach(connector, { name: 'c1\u009b2J' });

  // eslint-disable-next-line no-control-regex -- looking for control characters
  const raw = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/;
  const st = await run(['state'], env);
  t.equal(st.code, 0, st.stderr);
  t.notMatch(st.stdout, raw, 'state prints no control character but its newlines');
  t.match(st.stdout, /^\s+0x[0-9a-f]+\s+\\x1b\]0;pwned\\x07 vm /m, 'the name, escaped');
  t.match(st.stdout, /\\x9b2J/, 'a C1 control, escaped');
  const json = await run(['state', '--json'], env);
  t.notMatch(json.stdout, raw, 'state --json neither');
  t.ok(
    (JSON.parse(json.stdout) as { endpoints: { name: string }[] }).endpoints.some((e) => e.name === name),
    'and it is still the JSON of the name',
  );

  const trace = start(t, ['trace', '--recent', '1000'], env);
  const consoleLine = await trace.out.until((l) => l.includes('console:'));
  t.match(consoleLine, /\\x1b\]0;pwned\\x07\(0x[0-9a-f]+\)\s+console: \\x1b\[2Jwiped\\x07$/, 'the console line, and its VM name, escaped');
  const attach = await trace.out.until((l) => l.includes('c1\\x9b'));
  t.match(attach, /c1\\x9b2J\(0x[0-9a-f]+\)\s+attach$/);
  for (const l of trace.out.seen) t.notMatch(l, raw, `trace line has no control character: ${JSON.stringify(l)}`);
  const logged = await serverLog.until((l) => l.includes('"msg":"endpoint attached"') && l.includes('c1'));
  t.notMatch(logged, raw, 'the server log neither (JSON leaves DEL and C1 raw)');
  t.match(logged, /"name":"c1\\\\x9b2J"/);
  const traceJson = start(t, ['trace', '--recent', '1000', '--json'], env);
  const j = await traceJson.out.until((l) => l.includes('"console"'));
  t.notMatch(j, raw, 'trace --json neither');
  t.equal((JSON.parse(j) as { line: string }).line, '\u001b[2Jwiped\u0007');
  await c1.detach();
  await drv.exit();
  await vm.detach();
});

// ---- failed credentials -----------------------------------------------------------------------------

t.test('peerAddress: one host is one source on either transport', async (t) => {
  t.equal(peerAddress('127.0.0.1:50123'), '127.0.0.1');
  t.equal(peerAddress('ipv4:10.0.0.7:443'), '10.0.0.7');
  t.equal(peerAddress('::1:50123'), '::1');
  t.equal(peerAddress('[::1]:50123'), '::1');
  t.equal(peerAddress('::1'), '::1');
  t.equal(peerAddress('::ffff:127.0.0.1'), '127.0.0.1');
  t.equal(peerAddress('::ffff:127.0.0.1:50123'), '127.0.0.1');
  t.equal(peerAddress('127.0.0.1'), '127.0.0.1');
});

t.test('wrong credentials are throttled per source, on gRPC and HTTP, logged once per interval and counted', async (t) => {
  const s = await stack();
  t.teardown(s.stop);
  const guess = (n: number) => s.channel.attach({ endpointId: REMOTE_SP, credential: `guess-number-${n}` });
  for (let n = 1; n <= 6; n++) t.equal((await refusal(guess(n))).code, 'PERMISSION_DENIED', `guess ${n} is checked and refused`);
  const throttled = await refusal(guess(7));
  t.equal(throttled.code, 'RESOURCE_EXHAUSTED', 'past five, the source must wait');
  t.match(throttled.message, /too many failed credentials from 127\.0\.0\.1, retry in 1 s/);
  t.equal((await refusal(s.channel.attach({ endpointId: REMOTE_SP, credential: SECRET }))).code, 'RESOURCE_EXHAUSTED', 'the right one too, unchecked');
  const http = await fetch(`${s.base}/v1/attach`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ endpointId: REMOTE_SP, credential: SECRET }),
  });
  t.equal(http.status, 429, 'the same source over HTTP waits as well');
  t.match(((await http.json()) as { message: string }).message, /too many failed credentials from 127\.0\.0\.1, retry in 1 s/);
  t.equal((await refusal(s.channel.attach({ name: 'a-vm' }))).code, 'OK', 'a VM attach needs no credential and is not throttled');

  t.equal(s.log.warns('failed credential').length, 1, 'six failures, one warn line in the interval');
  t.match(s.log.warns('failed credential')[0]!.obj, { source: '127.0.0.1', endpoint: '0x8010', failures: 1, suppressed: 0 });

  const m = await (await fetch(`${s.base}/metrics`)).text();
  t.equal(metric(m, 'remote_spmc_auth_failures_total{kind="credential"}'), 6);
  t.equal(metric(m, 'remote_spmc_auth_throttled_total{kind="credential"}'), 3);
  t.equal(metric(m, 'remote_spmc_log_lines_suppressed_total{subject="auth_failure"}'), 5);

  // The wait doubles with each further failure.
  s.time.advance(1000);
  t.equal((await refusal(guess(8))).code, 'PERMISSION_DENIED', 'after the wait, one more is checked');
  t.match((await refusal(guess(9))).message, /retry in 2 s/, 'and the next wait is twice as long');
  s.time.advance(2000);
  const sp = await s.channel.attach({ endpointId: REMOTE_SP, credential: SECRET });
  t.equal(sp.endpointId, REMOTE_SP, 'the right credential after the wait attaches, and clears the failures');

  // A minute later, the next failure is logged again, with the count held back meanwhile.
  s.time.advance(60_000);
  t.equal((await refusal(guess(10))).code, 'PERMISSION_DENIED');
  const lines = s.log.warns('failed credential');
  t.equal(lines.length, 2, 'one more line for the new interval');
  t.match(lines[1]!.obj, { source: '127.0.0.1', suppressed: 6, failures: 1 });
  for (const l of s.log.lines) t.notOk(JSON.stringify(l).includes(SECRET) || JSON.stringify(l).includes('guess-number'), `no credential logged: ${l.msg}`);
});

// ---- memory faults ----------------------------------------------------------------------------------

t.test('5000 faulting reads: a bounded number of log lines, then how many were suppressed', async (t) => {
  const spmc = new Spmc({ partitions: partitions() });
  const log = recordingLogger();
  const time = testClock();
  const core = SessionCore.for(spmc, { logger: log.logger, clock: time.clock });
  const app = await buildHttpApp({ core });
  t.teardown(() => app.close());
  const vm = core.attach({ name: 'faulty' });
  const s = core.session(vm.session);
  const fault = () => t.throws(() => core.readMemory(s, 0x10n, 8), MemoryFault);
  let faults = 0;
  const faultMany = (n: number) => {
    for (let i = 0; i < n; i++) {
      try {
        core.readMemory(s, 0x10n, 8);
      } catch (e) {
        if (e instanceof MemoryFault) faults++;
      }
    }
  };
  faultMany(5000);
  t.equal(faults, 5000, 'every read faulted');
  t.equal(log.warns('memory fault').length, 10, 'ten lines in the first second');
  t.equal(log.warns(/suppressed/).length, 0, 'the count comes when the second is over');

  time.advance(1000);
  fault();
  const said = log.warns(/^suppressed \d+ memory faults$/);
  t.equal(said.length, 1, 'one line for what was held back');
  t.match(said[0]!.obj, { endpoint: vm.endpointId, suppressed: 4990 });
  t.equal(said[0]!.msg, 'suppressed 4990 memory faults');
  t.equal(log.warns('memory fault').length, 11, 'and the fault that came after it');

  // What is held back when the endpoint leaves is said then.
  faultMany(20);
  core.detach(vm.session);
  t.match(log.warns(/^suppressed/).at(-1)!.obj, { endpoint: vm.endpointId, suppressed: 11 });
  t.equal(log.lines.filter((l) => l.level === 'warn').length, 10 + 1 + 1 + 9 + 1, 'in all 5021 faults made 22 lines');

  const m = await (await app.inject({ method: 'GET', url: '/metrics' })).body;
  t.equal(metric(m, 'remote_spmc_log_lines_suppressed_total{subject="memory_fault"}'), 4990 + 11);
  t.equal(metric(m, 'ffa_memory_faults_total'), 5021, 'every fault is still counted');
});
