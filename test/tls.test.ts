// Issue 14, item 4: TLS, mTLS and tokens. A throwaway CA, a server and two client certificates
// (one from another CA) are made with the openssl CLI for this run. gRPC and HTTPS work over TLS
// and refuse a plaintext client, a client without a certificate under mTLS, and a server or client
// from the wrong CA; the join token guards attach and the admin token inspection, each refused
// UNAUTHENTICATED (401) when missing or wrong and throttled per source; a non-loopback listen
// without TLS or tokens warns on every start.

import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import t, { type Test } from 'tap';
import { type ChannelSecurity, channelCredentials, clientOptions, SpmcChannel } from '../client-driver/transport/grpc-client.js';
import { GrpcConnector } from '../client-driver/transport/grpc.js';
import { TransportError } from '../client-driver/transport/transport.js';
import { exposureWarning } from '../server/cli/serve.js';
import { SpmcGrpcServer, type SpmcGrpcOptions } from '../server/grpc/server.js';
import { buildHttpApp } from '../server/http/app.js';
import { defaultManifest } from '../server/manifest.js';
import { SessionCore } from '../server/session/core.js';
import { Tokens } from '../server/session/tokens.js';
import { Tracer } from '../server/debug/tracer.js';
import type { SessionError } from '../server/session/status.js';
import { Spmc } from '../server/spmc/spmc.js';
import { debugClientConstructor } from '../proto/wire.js';
import { run, start, startServer } from './fixtures/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'rspmc-tls-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const at = (f: string) => join(dir, f);
const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

function makeCa(name: string): void {
  ssl('req', '-x509', ...EC, '-keyout', `${name}.key`, '-out', `${name}.pem`, '-days', '1', '-subj', `/CN=${name}`);
}
function makeCert(name: string, ca: string, san: string): void {
  writeFileSync(at(`${name}.ext`), `subjectAltName=${san}\n`);
  ssl('req', ...EC, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
  ssl(
    'x509',
    '-req',
    '-in',
    `${name}.csr`,
    '-CA',
    `${ca}.pem`,
    '-CAkey',
    `${ca}.key`,
    '-CAcreateserial',
    '-out',
    `${name}.pem`,
    '-days',
    '1',
    '-extfile',
    `${name}.ext`,
  );
}
makeCa('ca');
makeCa('other-ca');
makeCert('server', 'ca', 'DNS:localhost,IP:127.0.0.1');
makeCert('client', 'ca', 'DNS:client');
makeCert('stranger', 'other-ca', 'DNS:stranger');
const pem = (f: string) => readFileSync(at(`${f}.pem`));
const key = (f: string) => readFileSync(at(`${f}.key`));
const SERVER_TLS = { cert: pem('server'), key: key('server') };
const CLIENT = { ca: pem('ca'), cert: pem('client'), key: key('client') };

const JOIN = 'join-token-1234';
const ADMIN = 'admin-token-5678';

/** A gRPC server of a fresh model on a free loopback port; stopped when the test ends. */
async function grpcServer(tt: Test, opts: (core: SessionCore) => SpmcGrpcOptions = () => ({}), debug = false) {
  const core = SessionCore.for(new Spmc({ partitions: defaultManifest() }), { attacks: { throttle: { free: 1000 } } });
  const server = new SpmcGrpcServer(core, opts(core));
  if (debug) {
    const tracer = new Tracer(core);
    tt.teardown(() => tracer.close());
    server.addDebug(tracer);
  }
  const port = await server.listen('127.0.0.1:0');
  tt.teardown(() => server.stop(0));
  return { core, server, address: `127.0.0.1:${port}` };
}

/** Attach over gRPC with `sec`: the status of the refusal, or 'ok'. */
async function attach(address: string, sec: ChannelSecurity): Promise<string> {
  const c = new GrpcConnector(address, 'unary', sec);
  try {
    const a = await c.attach({ name: 'vm' });
    await a.transport.detach();
    return 'ok';
  } catch (e) {
    return e instanceof TransportError ? e.code : String(e);
  } finally {
    c.close();
  }
}

t.test('gRPC over TLS: a client trusting the CA attaches; plaintext and the wrong CA are refused', async (tt) => {
  const { address } = await grpcServer(tt, () => ({ tls: SERVER_TLS }));
  tt.equal(await attach(address, { ca: pem('ca') }), 'ok', 'the certificate names 127.0.0.1');
  tt.equal(await attach(address, { ca: pem('ca'), serverName: 'localhost' }), 'ok', 'or, by override, localhost');
  tt.equal(await attach(address, {}), 'UNAVAILABLE', 'a plaintext client does not get through');
  tt.equal(await attach(address, { ca: pem('other-ca') }), 'UNAVAILABLE', 'a server certificate the client does not trust is refused');
});

t.test('gRPC mTLS: only a client certificate from the CA gets through', async (tt) => {
  const { address } = await grpcServer(tt, () => ({ tls: { ...SERVER_TLS, ca: pem('ca') } }));
  tt.equal(await attach(address, CLIENT), 'ok');
  tt.equal(await attach(address, { ca: pem('ca') }), 'UNAVAILABLE', 'no client certificate');
  tt.equal(await attach(address, { ca: pem('ca'), cert: pem('stranger'), key: key('stranger') }), 'UNAVAILABLE', 'a certificate from another CA');
});

/** GET over HTTPS: the status code, or the error's code when the handshake fails. */
function httpsGet(port: number, path: string, opts: { ca?: Buffer; cert?: Buffer; key?: Buffer }): Promise<number | string> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path, ...opts, rejectUnauthorized: true }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    req.end();
  });
}

t.test('HTTPS with mTLS: /healthz answers a client with a certificate from the CA, and nobody else', async (tt) => {
  const core = SessionCore.for(new Spmc({ partitions: defaultManifest() }));
  const app = await buildHttpApp({ core, https: { ...SERVER_TLS, ca: pem('ca') } });
  tt.teardown(() => app.close());
  await app.listen({ host: '127.0.0.1', port: 0 });
  const port = (app.server.address() as { port: number }).port;
  tt.equal(await httpsGet(port, '/healthz', CLIENT), 200);
  tt.not(await httpsGet(port, '/healthz', { ca: pem('ca') }), 200, 'no client certificate');
  tt.not(await httpsGet(port, '/healthz', { ca: pem('ca'), cert: pem('stranger'), key: key('stranger') }), 200, 'a client certificate from another CA');
  tt.match(await httpsGet(port, '/healthz', { ca: pem('other-ca'), cert: pem('client'), key: key('client') }), /CERT/, 'a server the client does not trust');
});

t.test('join token: attach needs it; missing or wrong is UNAUTHENTICATED and counted', async (tt) => {
  const { address, core } = await grpcServer(tt, (c) => ({ tokens: new Tokens({ join: JOIN }, c.attacks) }));
  tt.equal(await attach(address, {}), 'UNAUTHENTICATED');
  tt.equal(await attach(address, { token: 'wrong-token-0000' }), 'UNAUTHENTICATED');
  tt.equal(await attach(address, { token: JOIN }), 'ok');
  tt.equal(core.attacks.counts.authFailures.get('join token'), 2);
  const ch = new SpmcChannel(address);
  tt.teardown(() => ch.close());
  await tt.rejects(ch.attach({}), { code: 'UNAUTHENTICATED', message: /no join token presented/ }, 'the refusal says why');
});

t.test('tokens with TLS together, and no token configured asks for none', async (tt) => {
  const { address } = await grpcServer(tt, (c) => ({ tls: SERVER_TLS, tokens: new Tokens({ join: JOIN }, c.attacks) }));
  tt.equal(await attach(address, { ca: pem('ca'), token: JOIN }), 'ok');
  tt.equal(await attach(address, { ca: pem('ca') }), 'UNAUTHENTICATED');
  const plain = await grpcServer(tt);
  tt.equal(await attach(plain.address, {}), 'ok');
  tt.equal(await attach(plain.address, { token: 'anything-at-all' }), 'ok');
});

t.test('failed tokens are throttled per source (the attack watch)', async (tt) => {
  const core = SessionCore.for(new Spmc({ partitions: defaultManifest() }), { clock: () => 0, attacks: { throttle: { free: 2 } } });
  const tokens = new Tokens({ join: JOIN }, core.attacks);
  const check = (token: string, source: string) => {
    try {
      tokens.check('join', token, source);
      return 'ok';
    } catch (e) {
      return (e as SessionError).status;
    }
  };
  tt.equal(check('nope-nope', '10.0.0.1'), 'UNAUTHENTICATED');
  tt.equal(check('nope-nope', '10.0.0.1'), 'UNAUTHENTICATED');
  tt.equal(check('nope-nope', '10.0.0.1'), 'UNAUTHENTICATED', 'past the free failures: it must wait now');
  tt.equal(check(JOIN, '10.0.0.1'), 'RESOURCE_EXHAUSTED', 'refused unchecked while it must wait, even the right token');
  tt.equal(check(JOIN, '10.0.0.2'), 'ok', 'another source is not held back');
  tt.equal(core.attacks.counts.authThrottled.get('join token'), 1);
  tt.equal(core.attacks.counts.authFailures.get('join token'), 3);
});

t.test('admin token: Debug.State and Trace need it over gRPC', async (tt) => {
  const { address } = await grpcServer(tt, (c) => ({ tokens: new Tokens({ admin: ADMIN }, c.attacks) }), true);
  const Client = debugClientConstructor();
  const state = (token?: string) => {
    const sec = token ? { token } : {};
    const client = new Client(address, channelCredentials(sec), clientOptions(sec)) as grpc.Client &
      Record<string, (req: object, cb: (e: grpc.ServiceError | null, r: { json: string }) => void) => void>;
    return new Promise<string>((resolve) =>
      client['State']!({}, (e) => {
        client.close();
        resolve(e ? grpc.status[e.code]! : 'ok');
      }),
    ).finally(() => client.close());
  };
  tt.equal(await state(), 'UNAUTHENTICATED');
  tt.equal(await state('wrong-admin-000'), 'UNAUTHENTICATED');
  tt.equal(await state(ADMIN), 'ok');
  const tc = new Client(address, grpc.credentials.createInsecure()) as grpc.Client & Record<string, (req: object) => grpc.ClientReadableStream<object>>;
  tt.teardown(() => tc.close());
  const trace = tc['Trace']!({ recent: 1 });
  const [err] = (await once(trace, 'error')) as [grpc.ServiceError];
  tt.equal(grpc.status[err.code], 'UNAUTHENTICATED', 'the Trace stream too');
  // The attach needs no admin token: only the join token guards it.
  tt.equal(await attach(address, {}), 'ok');
});

t.test('admin token: the HTTP inspection routes and the JSON attach answer 401 without it', async (tt) => {
  const core = SessionCore.for(new Spmc({ partitions: defaultManifest() }), { attacks: { throttle: { free: 1000 } } });
  const tracer = new Tracer(core);
  tt.teardown(() => tracer.close());
  const app = await buildHttpApp({ core, tracer, tokens: new Tokens({ admin: ADMIN }, core.attacks) });
  tt.teardown(() => app.close());
  const auth = { authorization: `Bearer ${ADMIN}` };
  for (const [method, url] of [
    ['GET', '/v1/endpoints/0x8001'],
    ['GET', '/v1/endpoints/0x8001/memory?address=0x0&length=16'],
    ['GET', '/v1/memory/access'],
    ['GET', '/v1/trace/recent'],
    ['GET', '/v1/trace'],
    ['POST', '/v1/attach'],
  ] as const) {
    const payload = method === 'POST' ? {} : undefined;
    const none = await app.inject({ method, url, payload });
    tt.equal(none.statusCode, 401, `${method} ${url} without a token`);
    tt.equal(none.json().error, 'UNAUTHENTICATED');
    const wrong = await app.inject({ method, url, payload, headers: { authorization: 'Bearer not-the-token' } });
    tt.equal(wrong.statusCode, 401, `${method} ${url} with a wrong token`);
    // The live trace never ends by itself: its 401s are what is asserted here.
    if (url === '/v1/trace') continue;
    const right = await app.inject({ method, url, payload, headers: auth });
    tt.not(right.statusCode, 401, `${method} ${url} with the admin token`);
  }
  tt.equal((await app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200, 'health needs no token');
  tt.equal((await app.inject({ method: 'GET', url: '/v1/endpoints' })).statusCode, 200, 'the endpoint list needs no token');
});

t.test('the exposure warning: non-loopback without TLS or tokens', async (tt) => {
  const lo = { host: '127.0.0.1', port: 1 };
  const any = { host: '0.0.0.0', port: 1 };
  tt.equal(exposureWarning([lo, lo], false, {}), undefined, 'loopback: none');
  tt.equal(exposureWarning([any, lo], true, { join: JOIN }), undefined, 'TLS and a token: none');
  tt.match(exposureWarning([any, lo], false, {}), /0\.0\.0\.0:1 without TLS or tokens/);
  tt.match(exposureWarning([lo, any], true, {}), /without tokens/);
  tt.match(exposureWarning([any, lo], false, { admin: ADMIN }), /without TLS/);
});

t.test('serve on 0.0.0.0 without TLS or tokens logs the warning at start', async (tt) => {
  const s = start(tt, ['serve', '--grpc', '0.0.0.0:0', '--http', '127.0.0.1:0']);
  const line = await s.out.until((l) => l.includes('"level":40'));
  tt.match(line, /0\.0\.0\.0:\d+ without TLS or tokens/);
  s.child.kill('SIGTERM');
  await s.exited;
});

t.test('serve: a missing or bad TLS file is one line and exit status 2', async (tt) => {
  const missing = await run(['serve', '--tls-cert', at('nope.pem'), '--tls-key', at('server.key')]);
  tt.equal(missing.code, 2);
  tt.match(missing.stderr.trim(), /^[^\n]*--tls-cert: cannot read .*nope\.pem: ENOENT$/);
  const mismatched = await run(['serve', '--tls-cert', at('server.pem'), '--tls-key', at('client.key')]);
  tt.equal(mismatched.code, 2);
  tt.equal(mismatched.stderr.trim().split('\n').length, 1, mismatched.stderr);
  const alone = await run(['serve', '--tls-cert', at('server.pem')]);
  tt.equal(alone.code, 2);
  tt.match(alone.stderr, /--tls-cert and --tls-key go together/);
});

t.test('the CLI over mTLS with tokens: state, vm and health', async (tt) => {
  const s = await startServer(tt, [
    '--tls-cert',
    at('server.pem'),
    '--tls-key',
    at('server.key'),
    '--tls-ca',
    at('ca.pem'),
    '--join-token',
    JOIN,
    '--admin-token',
    ADMIN,
  ]);
  const tls = ['--tls-ca', at('ca.pem'), '--tls-cert', at('client.pem'), '--tls-key', at('client.key')];
  const state = await run(['state', '--server', s.grpc, ...tls, '--admin-token', ADMIN]);
  tt.equal(state.code, 0, state.stderr);
  tt.match(state.stdout, /endpoints:/);
  const noAdmin = await run(['state', '--server', s.grpc, ...tls]);
  tt.equal(noAdmin.code, 1);
  tt.match(noAdmin.stderr, /UNAUTHENTICATED: no admin token presented/);
  const vm = await run(['vm', '--server', s.grpc, ...tls, 'info'], { REMOTE_SPMC_JOIN_TOKEN: JOIN });
  tt.equal(vm.code, 0, vm.stdout + vm.stderr);
  const noJoin = await run(['vm', '--server', s.grpc, ...tls, 'info']);
  tt.equal(noJoin.code, 1);
  tt.match(noJoin.stdout, /UNAUTHENTICATED/);
  const health = await run(['health', '--server', s.grpc, ...tls]);
  tt.equal(health.code, 0, health.stdout + health.stderr);
  const plain = await run(['health', '--server', s.grpc]);
  tt.equal(plain.code, 1);
});
