// The Dockerfile and docker-compose.yml in real containers, with podman (test/containers.sh does
// the setup, the build and the compose run; the checks users expect are here): the image runs as
// non-root, its health check passes, the dashboard answers on the published port over TLS, all
// three VMs exit 0, a VM container stopped mid-session is released and its partner gets ABORTED,
// and a server container restarted under a running scenario fails it with a clear message.
// Needs root; without it, or without podman and a way to install it, it skips with the reason.
//
// What stays with the namespace runner (test/topology.test.ts): the cut link that only keepalive
// notices (here a stopped container closes its connection, the faster and more common case), and
// every machine without root or podman.

import { execFile } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { get as httpsGet } from 'node:https';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { readCompose, REPO } from '../bench/netns.js';

const SCRIPT = join(REPO, 'test/containers.sh');
const IMAGE = 'localhost/remote-spmc:latest';
const env: NodeJS.ProcessEnv = { ...process.env, REMOTE_SPMC_IMAGE: IMAGE };

interface Ran {
  code: number;
  /** stdout alone: podman writes warnings (no systemd for health check timers) to stderr. */
  stdout: string;
  output: string;
}

function run(cmd: string, args: string[], timeoutMs = 600_000): Promise<Ran> {
  return new Promise((resolve) =>
    execFile(cmd, args, { env, cwd: REPO, timeout: timeoutMs, maxBuffer: 64 << 20 }, (err, stdout, stderr) =>
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, output: `${stdout}${stderr}` }),
    ),
  );
}
const script = (step: string) => run('bash', [SCRIPT, step], 900_000);
const podman = (...args: string[]) => run('podman', args, 120_000);
const ctr = (service: string) => `${PROJECT}_${service}_1`;

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** Poll `check` until it gives a value (each poll is a podman or HTTP round trip, not a fixed wait). */
async function until<T>(what: string, check: () => Promise<T | undefined>, limitMs = 120_000): Promise<T> {
  const deadline = Date.now() + limitMs;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`not within ${limitMs / 1000} s: ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

function httpsJson(url: string, ca: Buffer, token?: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpsGet(url, { ca, headers: token ? { authorization: `Bearer ${token}` } : {} }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.setTimeout(10_000, () => req.destroy(new Error(`${url}: no answer in 10 s`)));
  });
}

// The whole file: a cold setup and build take minutes (see the README's numbers).
t.setTimeout(15 * 60_000);

const setup = await script('setup');
// The script's project name, one per checkout: its `up` first removes what an interrupted run left.
const PROJECT = (await script('project')).stdout.trim();
const skip = setup.code === 77 ? (/skipped: (.*)/.exec(setup.output)?.[1] ?? 'unavailable') : false;

t.test('setup: podman, runc, containers.conf and the base image', { skip }, async (t) => {
  t.equal(setup.code, 0, `test/containers.sh setup: ${setup.output.trim()}`);
  t.match(readFileSync('/etc/containers/containers.conf', 'utf8'), /runtime = "runc"/, 'runc selected');
  const push = await script('push');
  t.equal(push.code, 1, 'the script refuses to push');
  t.match(push.output, /refusing: the base image here is a CI stand-in/);
});

t.test('the real topology in containers', { skip, timeout: 15 * 60_000 }, async (t) => {
  t.teardown(async () => {
    await script('down');
  });
  const build = await script('build');
  if (!t.equal(build.code, 0, `podman build --format docker of the unchanged Dockerfile${build.code ? `: ${build.output}` : ''}`)) return;
  const size = /image size: (\d+) bytes/.exec(build.output)?.[1];
  t.comment(`image size ${(Number(size) / 1e6).toFixed(0)} MB, build time ${/build time: (\d+ s)/.exec(build.output)?.[1]}`);

  await t.test('the image runs as a non-root user, with the health check kept', async (t) => {
    t.equal((await podman('image', 'inspect', '--format', '{{.Config.User}}', IMAGE)).stdout.trim(), 'node', 'USER node');
    const id = await podman('run', '--rm', '--pull=never', '--no-healthcheck', '--entrypoint', 'id', IMAGE, '-u');
    t.equal(id.stdout.trim(), '1000', 'uid 1000 inside');
    t.match((await podman('image', 'inspect', '--format', '{{json .Config.Healthcheck}}', IMAGE)).output, /remote-spmc.*health/, 'HEALTHCHECK in the image');
  });

  const port = await freePort();
  env.REMOTE_SPMC_HTTP_PORT = String(port);
  const t0 = Date.now();
  const up = await script('up');
  if (!t.equal(up.code, 0, `podman-compose up, started in depends_on order: ${up.code ? up.output : up.stdout.trim()}`)) return;
  t.match(up.output, /certs completed/, 'the certs service ran first');

  const compose = readCompose();
  const spmcEnv = compose.spmc!.environment;
  const mount = (await podman('volume', 'inspect', '--format', '{{.Mountpoint}}', `${PROJECT}_tls`)).stdout.trim();
  const ca = readFileSync(join(mount, 'ca.pem'));
  const clientArgs = ['--network', `${PROJECT}_default`, '-v', `${PROJECT}_tls:/tls:ro`, '-e', `REMOTE_SPMC_JOIN_TOKEN=${spmcEnv.REMOTE_SPMC_JOIN_TOKEN}`];
  const server = ['--server', 'spmc:50051', '--tls-ca', '/tls/ca.pem'];

  await t.test('the health check reports healthy', async (t) => {
    // One run may exceed the check's 5 s timeout on a loaded machine; as the retries do in Compose.
    const check = await until('podman healthcheck run spmc passes', async () => {
      const r = await podman('healthcheck', 'run', ctr('spmc'));
      return r.code === 0 ? r : undefined;
    });
    t.equal(check.code, 0, 'podman healthcheck run spmc: healthy');
    const status = await podman('inspect', '--format', '{{.State.Healthcheck.Status}}', ctr('spmc'));
    t.equal(status.stdout.trim(), 'healthy', 'podman inspect: healthy');
  });

  await t.test('the dashboard answers on the published port, over TLS; inspection needs the admin token', async (t) => {
    const page = await httpsJson(`https://127.0.0.1:${port}/`, ca);
    t.equal(page.status, 200, 'GET / answers');
    t.match(page.body, /<html/i, 'the dashboard page');
    t.equal((await httpsJson(`https://127.0.0.1:${port}/v1/trace/recent`, ca)).status, 401, 'the trace without the token: 401');
    t.equal((await httpsJson(`https://127.0.0.1:${port}/v1/trace/recent`, ca, spmcEnv.REMOTE_SPMC_ADMIN_TOKEN)).status, 200, 'with it: 200');
  });

  await t.test('all three VMs exit 0 with their scenarios passing', async (t) => {
    const waited = await script('wait');
    t.comment(`compose run time ${((Date.now() - t0) / 1000).toFixed(0)} s (up to the VMs' exit)`);
    for (const vm of ['vm1', 'vm2', 'vm3']) t.match(waited.output, new RegExp(`${vm} exit code 0\\b`), `${vm} exits 0`);
    t.notMatch(waited.output, /^not ok/m, 'every step ok');
    t.match(waited.output, /direct: 0x6563686f 0x5005/, 'vm1 reached the remote partition in its container');
    t.match(waited.output, /receive: "hello from vm1"/, 'indirect messages between VM containers');
    t.equal(waited.code, 0, waited.code ? waited.output : 'test/containers.sh wait');
  });

  // Scenario files for the extra VMs, readable by the image's user.
  const dir = mkdtempSync(join(tmpdir(), 'rspmc-ctr-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  chmodSync(dir, 0o755);
  const scenario = (name: string, text: string) => {
    writeFileSync(join(dir, `${name}.yaml`), text, { mode: 0o644 });
    return `/scenarios/${name}.yaml`;
  };
  const vmRun = (name: string, args: string[]) =>
    podman('run', '-d', '--pull=never', '--name', ctr(name), ...clientArgs, '-v', `${dir}:/scenarios:ro`, IMAGE, 'vm', ...server, ...args);
  const exitOf = async (name: string) => Number((await podman('wait', ctr(name))).stdout.trim());
  const logsOf = async (name: string) => (await podman('logs', ctr(name))).output;

  await t.test('a VM container stopped mid-session is released; its partner gets ABORTED', async (t) => {
    // vmb serves one direct request on its vCPU 1, then sleeps: its vCPU waits for the next one.
    const serving = scenario(
      'serving',
      'vm: { id: 5, vcpus: 2, properties: 0x50f }\ntimeout: 600\nsteps:\n  - { op: serve, count: 1, vcpu: 1 }\n  - { op: sleep, ms: 600000 }\n',
    );
    t.equal((await vmRun('vmb', ['--scenario', serving])).code, 0, 'vmb started');
    const first = scenario('first', 'vm: { id: 6, vcpus: 2 }\nsteps:\n  - { op: direct, to: 5, vcpu: 1, args: [ECHO, 1], expect: [ECHO, 1] }\n');
    t.equal((await vmRun('vma1', ['--scenario', first])).code, 0);
    t.equal(await exitOf('vma1'), 0, `vma -> vmb answered: ${await logsOf('vma1')}`);
    // vmb is frozen (its serve loop would answer at once), as a VM busy or hung is: the next request
    // reaches vmb's waiting vCPU and blocks there.
    t.equal((await podman('pause', ctr('vmb'))).code, 0, 'podman pause vmb');
    const blocked = scenario(
      'blocked',
      'vm: { id: 6, vcpus: 2 }\ntimeout: 120\nsteps:\n  - { op: direct, to: 5, vcpu: 1, args: [ECHO, 0xb10c], expect: { error: ABORTED } }\n',
    );
    t.equal((await vmRun('vma2', ['--scenario', blocked])).code, 0);
    const recent = `https://127.0.0.1:${port}/v1/trace/recent?endpoint=6&function=MSG_SEND_DIRECT_REQ&limit=50`;
    await until('vma blocked on vmb in the trace', async () => {
      const r = await httpsJson(recent, ca, spmcEnv.REMOTE_SPMC_ADMIN_TOKEN);
      const records = r.status === 200 ? (JSON.parse(r.body) as { kind: string; blocked?: boolean; x?: string[] }[]) : [];
      return records.find((x) => x.kind === 'call' && x.blocked && x.x?.some((v) => /b10c$/.test(v))) ? true : undefined;
    });
    t.pass('vma is blocked on vmb');
    // Stopped for good: what `podman stop` comes to for node as PID 1 (SIGTERM ignored, then SIGKILL).
    t.equal((await podman('kill', ctr('vmb'))).code, 0, 'podman kill vmb');
    t.equal(await exitOf('vma2'), 0, `vma got ABORTED once vmb was released: ${await logsOf('vma2')}`);
    t.match(await logsOf('vma2'), /FFA_ERROR ABORTED, as expected/);
    const state = await podman(
      'exec',
      ctr('spmc'),
      'remote-spmc',
      'state',
      '--server',
      '127.0.0.1:50051',
      '--tls-ca',
      '/tls/ca.pem',
      '--tls-server-name',
      'spmc',
    );
    t.equal(state.code, 0, `remote-spmc state in the server's container: ${state.output}`);
    t.notMatch(state.output, /^\s+0x5 /m, 'vmb is gone from the SPMC');
  });

  await t.test('the server container restarted under a running scenario: the scenario fails with a clear message', async (t) => {
    const waiting = scenario('waiting', 'vm: { id: 7 }\ntimeout: 120\nsteps:\n  - { op: info }\n  - { op: barrier, name: never, with: [9] }\n');
    t.equal((await vmRun('vmc', ['--scenario', waiting])).code, 0);
    await until('vmc attached and waiting', async () => ((await logsOf('vmc')).includes('ok 1 - info') ? true : undefined));
    t.equal((await podman('restart', '-t', '2', ctr('spmc'))).code, 0, 'podman restart spmc');
    t.equal(await exitOf('vmc'), 1, 'the scenario fails');
    const logs = await logsOf('vmc');
    t.match(
      logs,
      /not ok 2 - barrier: (lost the SPMC \((UNAVAILABLE|CANCELLED|INTERNAL)|EIO: .*UNAVAILABLE)/,
      `a clear error: ${logs.split('\n').find((l) => l.startsWith('not ok'))}`,
    );
    await until('spmc healthy again', async () => ((await podman('healthcheck', 'run', ctr('spmc'))).code === 0 ? true : undefined));
    const again = await podman('run', '--rm', '--pull=never', ...clientArgs, IMAGE, 'vm', ...server, '--id', '7', 'info');
    t.equal(again.code, 0, `a VM attaches to the restarted server: ${again.code ? again.output : again.stdout.trim()}`);
  });
});
