// The C library (clients/c) against `remote-spmc serve`: built with CMake into a temporary
// directory, its test programs run as processes, and each of their TAP lines is an assertion here.
// A C VM and a C partition written as an SP is; four C VMs on threads; the mixed topologies (a
// TypeScript VM with the C partition, a C VM with a TypeScript remote partition).

import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { buildCClient as build, cClientMissing as missing, cManifest } from '../bench/c-build.js';
import { FFA_PAGE_SIZE, MEM_PERM, splitU64 } from '../proto/ffa/index.js';
import { FfaDriver } from '../client-driver/driver.js';
import { GrpcConnector } from '../client-driver/transport/grpc.js';
import { EmulatedVm } from '../client-driver/vm.js';
import { file, lines, MAIN, startServer } from './fixtures/cli.js';
import { issue } from '../server/cli/x509.js';

// Compiling gRPC's generated code takes a while on a busy machine.
t.setTimeout(900_000);

const SP = 0x8010;
const CREDENTIAL = 'c-partition-secret';
/** The C partition's own command (clients/c/tests/testlib.h): retrieve, check, write, relinquish. */
const CMD_CHECK_MEM = 0x63686b6dn;

const MANIFEST = file('c-manifest.yaml', cManifest(SP, CREDENTIAL));

/** A program's TAP lines as assertions of `t` (and its plan, when it printed one); returns how many. */
function assertTap(t: Test, who: string, out: string[]): number {
  let n = 0;
  for (const l of out) {
    const m = /^(not )?ok \d+ - (.*)$/.exec(l);
    if (!m) continue;
    n++;
    t.ok(!m[1], `${who}: ${m[2]}`);
  }
  const plan = out.map((l) => /^1\.\.(\d+)$/.exec(l)).find((m) => m);
  if (plan) t.equal(n, Number(plan[1]), `${who}: every check it planned reported`);
  return n;
}

/** Run a test program to its end (killed if it hangs); its output lines and exit code. */
async function program(bin: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; out: string[] }> {
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
  const l = lines(child);
  const guard = setTimeout(() => child.kill('SIGKILL'), 300_000);
  const [code] = (await once(child, 'close')) as [number | null];
  clearTimeout(guard);
  return { code, out: l.seen };
}

const why = missing();
const root = process.getuid?.() === 0;

if (why && root) {
  t.fail(`${why}: .ci/run installs what the C library needs when run as root`);
} else if (why) {
  t.test('the C library', { skip: `${why} (not root: .ci/run installs them as root)` }, async () => {});
} else {
  t.test('C endpoints against remote-spmc serve', async (t) => {
    const dir = await build();
    const env = { ...process.env, LD_LIBRARY_PATH: dir };
    const server = await startServer(t, ['--manifest', MANIFEST]);

    // The C partition: a MSG_WAIT loop that serves until it is stopped.
    const sp = spawn(join(dir, 'c_sp'), [server.grpc, String(SP), CREDENTIAL], { stdio: ['ignore', 'pipe', 'pipe'], env });
    t.teardown(() => void sp.kill('SIGKILL'));
    const spOut = lines(sp);
    await spOut.until((l) => l === '# ready');

    await t.test('a C VM: discovery, messages, memory, faults, notifications, MSG_SEND2, its RAM base', async (t) => {
      const vm = await program(join(dir, 'c_vm'), [server.grpc, String(SP)], env);
      t.ok(assertTap(t, 'c_vm', vm.out) >= 42, 'c_vm made all its checks');
      t.equal(vm.code, 0, 'c_vm exits 0');
    });

    await t.test("the README's C example", async (t) => {
      const hello = await program(join(dir, 'hello'), [server.grpc], env);
      t.equal(hello.code, 0, 'exits 0');
      t.ok(hello.out.includes('partition 0x8001'), 'read the partitions through the RX pointer');
      t.ok(hello.out.includes('SP1 answered 42'), 'made a direct request');
    });

    await t.test('four C VMs on threads contend for the C partition', async (t) => {
      const th = await program(join(dir, 'c_threads'), [server.grpc, String(SP)], env);
      t.ok(assertTap(t, 'c_threads', th.out) >= 17, 'c_threads made its checks');
      t.equal(th.code, 0, 'c_threads exits 0');
    });

    await t.test('a TypeScript VM shares memory with the C partition', async (t) => {
      const connector = new GrpcConnector(server.grpc, 'session');
      t.teardown(() => connector.close());
      const vm = await EmulatedVm.attach(connector, { name: 'ts-vm' });
      const drv = new FfaDriver(vm);
      await drv.init();
      const page = vm.pages.alloc(1)!;
      await vm.write(page, new Uint8Array(FFA_PAGE_SIZE).fill(0x61));
      const handle = await drv.memShare({ receivers: [{ id: SP, permissions: MEM_PERM.DATA_RW }], regions: [{ address: page, pageCount: 1 }] });
      const r = await drv.sendDirectReq(SP, [CMD_CHECK_MEM, ...splitU64(handle), 1n, 0x61n | (0x62n << 8n)]);
      t.equal(r[1], 0n, 'the C partition found our bytes, wrote its own and relinquished');
      await drv.memReclaim(handle);
      t.ok(
        (await vm.read(page, FFA_PAGE_SIZE)).every((b) => b === 0x62),
        'its bytes are in our memory after reclaim',
      );
      await drv.exit();
      await vm.detach();
    });

    sp.kill('SIGTERM');
    await once(sp, 'close');
    t.ok(assertTap(t, 'c_sp', spOut.seen) >= 20, 'c_sp made its checks');
  });

  t.test('a C VM with a TypeScript remote partition', async (t) => {
    const dir = await build();
    const env = { ...process.env, LD_LIBRARY_PATH: dir };
    const server = await startServer(t, ['--manifest', MANIFEST]);
    const partition = spawn(process.execPath, [MAIN, 'partition', '--server', server.grpc, '--id', String(SP), '--credential', CREDENTIAL], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env,
    });
    t.teardown(() => void partition.kill('SIGKILL'));
    await lines(partition).until((l) => l.includes('"msg":"serving"'));
    const vm = await program(join(dir, 'c_vm'), [server.grpc, String(SP), 'builtin'], env);
    t.ok(assertTap(t, 'c_vm', vm.out) >= 16, 'c_vm made all its checks');
    t.equal(vm.code, 0, 'c_vm exits 0');
  });

  t.test('TLS, mTLS and the join token from C', async (t) => {
    const dir = await build();
    const env = { ...process.env, LD_LIBRARY_PATH: dir };
    const certs = mkdtempSync(join(tmpdir(), 'rspmc-c-tls-'));
    t.teardown(() => rmSync(certs, { recursive: true, force: true }));
    const at = (f: string) => join(certs, f);
    // A throwaway CA and two certificates it signs, as `remote-spmc certs` makes them.
    const ca = issue({ names: ['ca'], days: 1, ca: true });
    writeFileSync(at('ca.pem'), ca.certPem);
    for (const [name, names] of [
      ['server', ['localhost', '127.0.0.1']],
      ['client', ['client']],
    ] as const) {
      const cert = issue({ names: [...names], days: 1, issuer: { name: 'ca', key: ca.key, keyId: ca.keyId } });
      writeFileSync(at(`${name}.pem`), cert.certPem);
      writeFileSync(at(`${name}.key`), cert.keyPem, { mode: 0o600 });
    }
    const token = 'c-join-token-0123456789';
    const server = await startServer(t, ['--tls-cert', at('server.pem'), '--tls-key', at('server.key'), '--tls-ca', at('ca.pem'), '--join-token', token]);
    const r = await program(join(dir, 'c_tls'), [server.grpc, at('ca.pem'), at('client.pem'), at('client.key'), token], env);
    t.ok(assertTap(t, 'c_tls', r.out) >= 5, 'c_tls made all its checks');
    t.equal(r.code, 0, 'c_tls exits 0');
  });
}
