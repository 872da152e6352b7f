// Server and VMs as separate processes over TCP on 127.0.0.1, as a user runs them.

import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { sseTrace } from './helpers.js';

const MAIN = fileURLToPath(new URL('../server/main.js', import.meta.url));
const VM = fileURLToPath(new URL('./fixtures/vm-process.js', import.meta.url));

/** Lines of a child's stdout, parsed as JSON where they are. */
function jsonLines(child: ChildProcess) {
  const queue: Record<string, unknown>[] = [];
  const waiters: ((o: Record<string, unknown>) => void)[] = [];
  createInterface({ input: child.stdout! }).on('line', (l) => {
    let o: Record<string, unknown>;
    try {
      o = JSON.parse(l);
    } catch {
      return;
    }
    const w = waiters.shift();
    if (w) w(o);
    else queue.push(o);
  });
  return {
    async until(pred: (o: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> {
      for (;;) {
        const o = queue.shift() ?? (await new Promise<Record<string, unknown>>((r) => waiters.push(r)));
        if (pred(o)) return o;
      }
    },
  };
}

async function startServer(args: string[] = []) {
  const child = spawn(process.execPath, [MAIN, 'serve', '--grpc', '127.0.0.1:0', '--http', '127.0.0.1:0', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const out = jsonLines(child);
  const listening = await out.until((o) => o.msg === 'listening');
  return { child, out, grpc: listening.grpc as string, http: listening.http as string };
}

async function endpoints(http: string): Promise<number> {
  const r = await fetch(`http://${http}/healthz`);
  return ((await r.json()) as { endpoints: number }).endpoints;
}

async function run(args: string[]): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(process.execPath, [MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stdout!.resume();
  child.stderr!.on('data', (d) => (stderr += d));
  // A command that should fail at once but keeps running is a failure, not a hung test.
  const guard = setTimeout(() => child.kill('SIGKILL'), 20_000);
  const [code] = await once(child, 'exit');
  clearTimeout(guard);
  return { code, stderr };
}

t.test('a server and two VM processes', async (t) => {
  const server = await startServer();
  t.teardown(() => void server.child.kill('SIGKILL'));
  t.equal(await endpoints(server.http), 4, 'the four SPs of the default manifest');

  const vms = ['vm-a', 'vm-b'].map((name) => {
    const child = spawn(process.execPath, [VM, server.grpc, name], { stdio: ['pipe', 'pipe', 'inherit'] });
    t.teardown(() => void child.kill('SIGKILL'));
    return { child, out: jsonLines(child) };
  });
  const ready = await Promise.all(vms.map((v) => v.out.until((o) => o.event === 'ready')));
  const ids = ready.map((r) => r.vmId as number);
  t.not(ids[0], ids[1], 'each VM has its own id');
  t.ok(ready.every((r) => r.version === 0x10002));
  t.equal(await endpoints(server.http), 6);
  for (const v of vms) v.child.stdin!.write('go\n');
  const seen = await Promise.all(vms.map((v) => v.out.until((o) => o.event === 'partitions')));
  for (const s of seen) t.same(s.ids, [...ids].sort((a, b) => a - b).concat([0x8001, 0x8002, 0x8003, 0x8004]), 'each sees both VMs, then the SPs');
  const exits = vms.map((v) => once(v.child, 'exit'));
  for (const v of vms) v.child.stdin!.write('exit\n');
  const codes = await Promise.all(exits);
  t.same(
    codes.map(([c]) => c),
    [0, 0],
  );
  t.equal(await endpoints(server.http), 4, 'both detached');

  server.child.kill('SIGTERM');
  const [code] = await once(server.child, 'exit');
  t.equal(code, 0, 'SIGTERM stops the server cleanly');
});

t.test('a VM process that dies is released; the others carry on', async (t) => {
  const server = await startServer();
  t.teardown(() => void server.child.kill('SIGKILL'));
  const start = (name: string) => {
    const child = spawn(process.execPath, [VM, server.grpc, name], { stdio: ['pipe', 'pipe', 'inherit'] });
    t.teardown(() => void child.kill('SIGKILL'));
    return { child, out: jsonLines(child) };
  };
  const doomed = start('doomed');
  const survivor = start('survivor');
  const doomedId = (await doomed.out.until((o) => o.event === 'ready')).vmId;
  await survivor.out.until((o) => o.event === 'ready');
  t.equal(await endpoints(server.http), 6);
  doomed.child.kill('SIGKILL');
  const release = await server.out.until((o) => o.msg === 'endpoint released' && o.endpoint === doomedId);
  t.equal(release.why, 'session stream cancelled', 'the dead VM was released when its stream broke');
  t.equal(await endpoints(server.http), 5, 'and is gone');
  survivor.child.stdin!.write('go\n');
  const seen = await survivor.out.until((o) => o.event === 'partitions');
  t.equal((seen.ids as number[]).length, 5, 'the survivor sees itself and the SPs');
  const exited = once(survivor.child, 'exit');
  survivor.child.stdin!.write('exit\n');
  const [code] = await exited;
  t.equal(code, 0);
  server.child.kill('SIGINT');
  t.equal((await once(server.child, 'exit'))[0], 0, 'SIGINT stops it cleanly');
});

t.test('bad flags and bad manifests: a clear error and exit status 2', async (t) => {
  const cases: [string[], RegExp][] = [
    [['serve', '--grpc', 'nohost'], /--grpc: expected HOST:PORT/],
    [['serve', '--http', '127.0.0.1:70000'], /--http: expected HOST:PORT/],
    [['serve', '--bogus'], /Unknown option '--bogus'/],
    [['serve', '--rxtx-max-pages', '64'], /--rxtx-max-pages: expected an integer 1\.\.63/],
    [['serve', '--log-level', 'loud'], /--log-level/],
    [['serve', '--manifest', '/nonexistent/manifest.yaml'], /cannot read \/nonexistent\/manifest\.yaml: ENOENT/],
    [['serve', 'extra'], /Unexpected argument/],
    [['frobnicate'], /unknown command "frobnicate"/],
    [['partition', '--credential', 'abcdefgh'], /--id: expected a partition id/],
    [['partition', '--id', '0x8010', '--credential', 'abcdefgh', '--log-level', 'loud'], /--log-level/],
    [['partition', '--id', '0x8010', '--credential', 'abcdefgh', '--serve', 'nope'], /--serve: one of test-service/],
  ];
  for (const [args, re] of cases) {
    const r = await run(args);
    t.equal(r.code, 2, args.join(' '));
    t.match(r.stderr, re);
  }
  const { writeFileSync, mkdtempSync } = await import('node:fs');
  const { join } = await import('node:path');
  const { tmpdir } = await import('node:os');
  const file = join(mkdtempSync(join(tmpdir(), 'rspmc-')), 'bad.yaml');
  writeFileSync(
    file,
    'partitions:\n  - name: sp\n    uuids: [not-a-uuid]\n    ffa-version: "1.2"\n    execution-ctx-count: 1\n    messaging-method: 3\n    service: test-service\n',
  );
  const r = await run(['serve', '--manifest', file, '--grpc', '127.0.0.1:0', '--http', '127.0.0.1:0']);
  t.equal(r.code, 2);
  t.match(r.stderr, new RegExp(`${file}: partitions\\[0\\]\\.uuids\\[0\\]: "not-a-uuid" is not a UUID`));
});

t.test('--help on any command prints the usage and exits 0', async (t) => {
  for (const args of [['--help'], ['serve', '-h'], ['trace', '--help'], ['vm', '--help'], ['replay', '--help']]) {
    const r = await run(args);
    t.equal(r.code, 0, args.join(' '));
    t.equal(r.stderr, '');
  }
});

t.test('an address in use is a clear error', async (t) => {
  const server = await startServer();
  t.teardown(() => void server.child.kill('SIGKILL'));
  const r = await run(['serve', '--grpc', server.grpc, '--http', '127.0.0.1:0']);
  t.equal(r.code, 1);
  t.match(r.stderr, /cannot listen/);
});

t.test('a remote partition in its own process serves VMs, dies mid-request, and comes back', async (t) => {
  const { DEFAULT_MANIFEST_YAML } = await import('../server/manifest.js');
  const { writeFileSync, mkdtempSync } = await import('node:fs');
  const { join } = await import('node:path');
  const { tmpdir } = await import('node:os');
  const { FfaDriver } = await import('../client-driver/driver.js');
  const { GrpcConnector } = await import('../client-driver/transport/grpc.js');
  const { EmulatedVm } = await import('../client-driver/vm.js');
  const { PARTITION_COMMANDS: CMD } = await import('../server/partitions/commands.js');
  const { FfaDriverError } = await import('../client-driver/errno.js');

  const file = join(mkdtempSync(join(tmpdir(), 'rspmc-')), 'manifest.yaml');
  writeFileSync(
    file,
    `${DEFAULT_MANIFEST_YAML}  - name: remote-echo\n    id: 0x8010\n    uuids: [0badcafe-0000-4000-8000-000000000001]\n    ffa-version: "1.2"\n    execution-ctx-count: 2\n    messaging-method: 0x603\n    remote: {credential: remote-secret-1}\n`,
  );
  const server = await startServer(['--manifest', file]);
  t.teardown(() => void server.child.kill('SIGKILL'));
  const startPartition = () => {
    const child = spawn(process.execPath, [MAIN, 'partition', '--server', server.grpc, '--id', '0x8010'], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, REMOTE_SPMC_CREDENTIAL: 'remote-secret-1' },
    });
    t.teardown(() => void child.kill('SIGKILL'));
    return { child, out: jsonLines(child) };
  };
  let sp = startPartition();
  const serving = await sp.out.until((o) => o.msg === 'serving');
  t.equal(serving.contexts, 2, 'one loop per execution context');

  const connector = new GrpcConnector(server.grpc);
  t.teardown(() => connector.close());
  const drivers = [];
  for (const name of ['vm-a', 'vm-b']) {
    const vm = await EmulatedVm.attach(connector, { name, vcpuCount: 2 });
    const d = new FfaDriver(vm);
    await d.init();
    drivers.push(d);
  }
  const [a, b] = drivers as [InstanceType<typeof FfaDriver>, InstanceType<typeof FfaDriver>];
  t.same(await a.sendDirectReq(0x8010, [BigInt(CMD.ECHO), 1n]), [BigInt(CMD.ECHO), 1n, 0n, 0n, 0n], 'vm-a');
  t.same(await b.sendDirectReq(0x8010, [BigInt(CMD.ECHO), 2n], { vcpu: 1 }), [BigInt(CMD.ECHO), 2n, 0n, 0n, 0n], 'vm-b on the second context');
  t.same(await a.sendDirectReq(0x8001, [BigInt(CMD.FORWARD), 0x8010n, 3n]), [BigInt(CMD.ECHO), 3n, 0n, 0n, 0n], 'SP1 forwards to the remote partition');

  // Freeze the partition so the next request is in flight when it dies: it has reached the
  // model, and is delivered to the partition, which cannot answer.
  sp.child.kill('SIGSTOP');
  const requests = await sseTrace(`http://${server.http}/v1/trace?endpoint=${a.vmId}&function=MSG_SEND_DIRECT_REQ`);
  const inFlight = a.sendDirectReq(0x8010, [BigInt(CMD.ECHO), 4n]).then(
    () => 'answered',
    (e: unknown) => (e instanceof FfaDriverError ? e.errno : String(e)),
  );
  const delivered = await requests.records.first((r) => r.kind === 'call');
  await requests.close();
  t.ok(delivered.kind === 'call' && delivered.blocked, 'the request blocks its caller');
  const waits = await sseTrace(`http://${server.http}/v1/trace?endpoint=0x8010&function=MSG_WAIT`);
  sp.child.kill('SIGKILL');
  t.equal(await inFlight, 'ECANCELED', 'the blocked caller is answered ABORTED');
  const whileGone = await b.sendDirectReq(0x8010, [0n]).then(
    () => 'answered',
    (e: unknown) => (e as InstanceType<typeof FfaDriverError>).errno,
  );
  t.equal(whileGone, 'EBUSY', 'requests while it is away are BUSY');
  t.same(await b.sendDirectReq(0x8002, [BigInt(CMD.ECHO), 5n]), [BigInt(CMD.ECHO), 5n, 0n, 0n, 0n], 'the server and the rest carry on');

  sp = startPartition();
  await sp.out.until((o) => o.msg === 'serving');
  // BUSY until its contexts have made their first FFA_MSG_WAIT, as for any partition starting:
  // wait for both to reach the model.
  await waits.records.when((rs) => new Set(rs.flatMap((r) => (r.kind === 'call' ? [r.vcpu] : []))).size === 2);
  await waits.close();
  t.same(await a.sendDirectReq(0x8010, [BigInt(CMD.ECHO), 6n]), [BigInt(CMD.ECHO), 6n, 0n, 0n, 0n], 'attached again and serving');
  t.same(await b.sendDirectReq(0x8010, [BigInt(CMD.ECHO), 7n], { vcpu: 1 }), [BigInt(CMD.ECHO), 7n, 0n, 0n, 0n], 'on both contexts');
  for (const d of drivers) {
    await d.exit();
    await d.vm.detach();
  }
});
