// Partitions declared v1.0, v1.1 and v1.2 are served (issue 13 item 1): `remote-spmc partition`
// processes negotiate the version their manifest declares, and the built-in test-service works
// at each version (descriptor layouts, direct messages, memory, notifications, indirect messages).

import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import {
  type EndpointId,
  errorCodeFromWord,
  FFA_ERRORS,
  FFA_VERSION_1_0,
  FFA_VERSION_1_1,
  FFA_VERSION_1_2,
  hex,
  MEM_PERM,
  splitU64,
} from '../proto/ffa/index.js';
import { FfaDriver } from '../client-driver/driver.js';
import { GrpcConnector } from '../client-driver/transport/grpc.js';
import { InProcessConnector } from '../server/session/in-process.js';
import { SessionCore } from '../server/session/core.js';
import { EmulatedVm } from '../client-driver/vm.js';
import { SpmcGrpcServer } from '../server/grpc/server.js';
import { parseManifest } from '../server/manifest.js';
import { PARTITION_COMMANDS as CMD, packHops } from '../server/partitions/commands.js';
import { Spmc } from '../server/spmc/spmc.js';
import { startedSpmc } from './helpers.js';

const MAIN = fileURLToPath(new URL('../server/main.js', import.meta.url));
const CREDENTIAL = 'versions-credential';
const ECHO = BigInt(CMD.ECHO);

const DECLARED = [
  { id: 0x8010, version: '1.0', word: FFA_VERSION_1_0, method: '0x3' },
  { id: 0x8011, version: '1.1', word: FFA_VERSION_1_1, method: '0x7' },
  { id: 0x8012, version: '1.2', word: FFA_VERSION_1_2, method: '0x607' },
];

/** Resolves once `id`'s first `n` contexts wait in FFA_MSG_WAIT: its receive loops are up. */
function contextsWaiting(spmc: Spmc, id: EndpointId, n: number): Promise<void> {
  const ready = () =>
    spmc
      .endpoint(id)!
      .vcpus.slice(0, n)
      .every((v) => v.state === 'waiting');
  return new Promise((resolve) => {
    const stop = SessionCore.for(spmc).use({
      name: 'contexts-waiting',
      after: () => {
        if (!ready()) return;
        stop();
        resolve();
      },
    });
  });
}

/** The JSON log lines of a child, awaited by predicate. */
function logLines(child: ChildProcess) {
  const seen: Record<string, unknown>[] = [];
  const waiters: [(o: Record<string, unknown>) => boolean, (o: Record<string, unknown>) => void][] = [];
  createInterface({ input: child.stdout! }).on('line', (l) => {
    let o: Record<string, unknown>;
    try {
      o = JSON.parse(l);
    } catch {
      return;
    }
    const i = waiters.findIndex(([p]) => p(o));
    if (i >= 0) waiters.splice(i, 1)[0]![1](o);
    else seen.push(o);
  });
  return (pred: (o: Record<string, unknown>) => boolean) =>
    new Promise<Record<string, unknown>>((resolve) => {
      const i = seen.findIndex(pred);
      if (i >= 0) resolve(seen.splice(i, 1)[0]!);
      else waiters.push([pred, resolve]);
    });
}

t.test("remote-spmc partition serves partitions declared v1.0, v1.1 and v1.2; a VM's direct request reaches each", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rspmc-versions-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'manifest.yaml');
  writeFileSync(
    file,
    `partitions:\n${DECLARED.map(
      (p) =>
        `  - name: remote-v${p.version}\n    id: ${p.id}\n    uuids: [0badcafe-0000-4000-8000-0000000000${p.id.toString(16).slice(2)}]\n` +
        `    ffa-version: "${p.version}"\n    execution-ctx-count: 2\n    messaging-method: ${p.method}\n    remote: {credential: ${CREDENTIAL}}\n`,
    ).join('')}`,
  );
  const spmc = new Spmc({ partitions: parseManifest(readFileSync(file, 'utf8'), file) });
  const server = new SpmcGrpcServer(spmc);
  const address = `127.0.0.1:${await server.listen('127.0.0.1:0')}`;
  t.teardown(() => server.stop(200));

  const up = DECLARED.map((p) => contextsWaiting(spmc, p.id, 2));
  const partitions = DECLARED.map((p) => {
    const child = spawn(process.execPath, [MAIN, 'partition', '--server', address, '--id', hex(p.id), '--credential', CREDENTIAL], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    t.teardown(() => void child.kill('SIGKILL'));
    return { ...p, child, log: logLines(child) };
  });
  for (const p of partitions) {
    const serving = await p.log((o) => o.msg === 'serving');
    t.equal(serving.ffaVersion, p.version, `${hex(p.id)} says it negotiated v${p.version}`);
  }
  await Promise.all(up);
  for (const p of DECLARED) t.equal(spmc.endpoint(p.id)!.version, p.word, `${hex(p.id)} is v${p.version} in the SPMC`);

  const connector = new GrpcConnector(address);
  t.teardown(() => connector.close());
  const vm = await EmulatedVm.attach(connector, { name: 'caller', vcpuCount: 2 });
  const drv = new FfaDriver(vm);
  await drv.init();
  for (const p of DECLARED) {
    t.same(await drv.sendDirectReq(p.id, [ECHO, BigInt(p.id), 7n]), [ECHO, BigInt(p.id), 7n, 0n, 0n], `ECHO from v${p.version}`);
    t.same(await drv.sendDirectReq(p.id, [ECHO, 9n], { vcpu: 1, width: 32 }), [ECHO, 9n, 0n, 0n, 0n], `32-bit ECHO on the second context of v${p.version}`);
  }
  await drv.exit();
  await vm.detach();
});

t.test('the built-in test-service at v1.0 and v1.1', async (t) => {
  const manifest = parseManifest(`
partitions:
  - name: old
    id: 0x8001
    uuids: [0badcafe-0000-4000-8000-000000000010]
    ffa-version: "1.0"
    execution-ctx-count: 2
    messaging-method: 0x3
    service: test-service
  - name: mid
    id: 0x8002
    uuids: [0badcafe-0000-4000-8000-000000000011]
    ffa-version: "1.1"
    execution-ctx-count: 2
    messaging-method: 0x7
    notification-support: true
    service: test-service
`);
  const spmc = await startedSpmc({}, manifest);
  const [OLD, MID] = [0x8001, 0x8002];
  t.equal(spmc.endpoint(OLD)!.version, FFA_VERSION_1_0, 'the built-in driver negotiated the declared v1.0');
  t.equal(spmc.endpoint(MID)!.version, FFA_VERSION_1_1);
  const connector = new InProcessConnector(spmc);
  const vm = await EmulatedVm.attach(connector, { vcpuCount: 2 });
  const drv = new FfaDriver(vm);
  await drv.init();
  t.teardown(() => drv.exit());

  t.same(await drv.sendDirectReq(OLD, [ECHO, 1n]), [ECHO, 1n, 0n, 0n, 0n], 'v1.0 ECHO');
  t.same(await drv.sendDirectReq(OLD, [BigInt(CMD.FORWARD), packHops([MID]), 5n]), [ECHO, 5n, 0n, 0n, 0n], 'v1.0 forwards to v1.1 (SP to SP)');
  t.same(await drv.sendDirectReq(MID, [BigInt(CMD.FORWARD), packHops([OLD]), 6n]), [ECHO, 6n, 0n, 0n, 0n], 'v1.1 forwards to v1.0');

  // Memory in the borrower's own layout: the v1.0 retrieve descriptor, then the v1.1 one.
  for (const sp of [OLD, MID]) {
    const pages = vm.pages.alloc(1)!;
    const handle = await drv.memShare({ receivers: [{ id: sp, permissions: MEM_PERM.DATA_RW }], regions: [{ address: pages, pageCount: 1 }] });
    const r = await drv.sendDirectReq(sp, [BigInt(CMD.MEM), ...splitU64(handle), 0x5an, 1n]);
    t.equal(r[1], 0n, `${hex(sp)} retrieved, wrote and relinquished`);
    t.equal((await vm.read(pages, 1))[0], 0x5a);
    await drv.memReclaim(handle);
  }

  // Notifications and indirect messages exist from v1.1: the v1.0 partition's calls are refused.
  const code = (w: bigint) => errorCodeFromWord(w);
  t.same((await drv.sendDirectReq(MID, [BigInt(CMD.BIND), BigInt(drv.vmId), 1n, 0n]))[1], 0n, 'v1.1 BIND');
  t.equal(code((await drv.sendDirectReq(OLD, [BigInt(CMD.BIND), BigInt(drv.vmId), 1n, 0n]))[1]!), FFA_ERRORS.NOT_SUPPORTED, 'v1.0 BIND');
  // A v1.0 partition at either end of an indirect message: the SPMC's DENIED
  // (src/ffa/spmc/indirect_messaging.c, plat_ffa_is_indirect_msg_supported).
  t.equal(code((await drv.sendDirectReq(OLD, [BigInt(CMD.SEND2), BigInt(drv.vmId), 1n]))[1]!), FFA_ERRORS.DENIED, 'v1.0 SEND2');
  t.equal((await drv.sendDirectReq(MID, [BigInt(CMD.SEND2), BigInt(drv.vmId), 1n, 2n, 3n]))[1], 0n, 'v1.1 SEND2 to the VM');
});
