// The compose topology's benchmarks: the three VM scenarios with every endpoint in one process
// versus each in its own network namespace versus each in its own container (podman, through
// test/containers.sh), wall time of each in the same run; and DIRECT_REQ round trips across the
// namespace network next to the bare echo across the same network. Needs root (ip netns, podman).

import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FfaDriver } from '../client-driver/driver.js';
import { InProcessConnector } from '../server/session/in-process.js';
import { EmulatedVm } from '../client-driver/vm.js';
import { parseScenario, ScenarioVm } from '../server/cli/vm.js';
import { parseManifest } from '../server/manifest.js';
import { startBuiltinPartitions } from '../server/partitions/index.js';
import { Spmc } from '../server/spmc/spmc.js';
import { NetnsTopology, netnsUnavailable, readCompose, REPO } from './netns.js';

const VMS = ['vm1', 'vm2', 'vm3'];

/** The scenarios against one in-process SPMC, the remote partition built in: wall time in ms. */
async function inOneProcess(): Promise<number> {
  const partitions = parseManifest(readFileSync(join(REPO, 'deploy/manifest.yaml'), 'utf8'), 'deploy/manifest.yaml', {
    SP_REMOTE_CREDENTIAL: 'bench-only-credential',
  }).map((p) => (p.behaviour.kind === 'remote' ? { ...p, behaviour: { kind: 'builtin' as const, service: 'test-service' } } : p));
  const spmc = new Spmc({ partitions });
  await startBuiltinPartitions(spmc);
  const connector = new InProcessConnector(spmc);
  const t0 = performance.now();
  const results = await Promise.all(
    VMS.map(async (name) => {
      const sc = parseScenario(readFileSync(join(REPO, `deploy/scenarios/${name}.yaml`), 'utf8'), name);
      const vm = await EmulatedVm.attach(connector, { endpointId: sc.vm?.id, name, vcpuCount: sc.vm?.vcpus, properties: sc.vm?.properties });
      const drv = new FfaDriver(vm);
      const lines: string[] = [];
      const runner = new ScenarioVm(drv, sc.timeout ?? 60, (l) => lines.push(`${name}: ${l}`));
      await drv.init();
      const ok = await runner.run(sc.steps);
      return { ok, drv, lines };
    }),
  );
  const ms = performance.now() - t0;
  for (const r of results) {
    if (!r.ok) throw new Error(`a scenario failed in process:\n${results.flatMap((x) => x.lines).join('\n')}`);
    await r.drv.exit();
    await r.drv.vm.detach();
  }
  return ms;
}

/** The same scenarios with every service in its namespace: [wall time in ms from the VMs' start, from creating the topology]. */
async function inNamespaces(): Promise<[number, number]> {
  const topo = new NetnsTopology(readCompose());
  const t0 = performance.now();
  try {
    topo.create();
    const started = await topo.startAll();
    const t1 = performance.now();
    const codes = await Promise.all(VMS.map((n) => started.get(n)!.exited));
    const t2 = performance.now();
    if (codes.some((c) => c !== 0)) throw new Error(`a scenario failed in the namespaces: ${VMS.map((n) => started.get(n)!.output).join('\n')}`);
    return [t2 - t1, t2 - t0];
  } finally {
    await topo.destroy();
  }
}

/** A step of test/containers.sh (the podman CI script): its exit status and output. */
function containersStep(step: string): Promise<{ code: number; output: string }> {
  return new Promise((resolve) =>
    execFile('bash', [join(REPO, 'test/containers.sh'), step], { cwd: REPO, timeout: 900_000, maxBuffer: 64 << 20 }, (err, stdout, stderr) =>
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, output: `${stdout}${stderr}` }),
    ),
  );
}

/**
 * The same scenarios in real containers (the compose file with podman-compose): [wall time in ms
 * from the VMs' start, from `up`], or why not. Setup and the image build are not timed.
 */
async function inContainers(): Promise<[number, number] | string> {
  for (const step of ['setup', 'build']) {
    const r = await containersStep(step);
    if (r.code === 77) return /skipped: (.*)/.exec(r.output)?.[1] ?? 'unavailable';
    if (r.code !== 0) return `test/containers.sh ${step} failed: ${r.output.trim().split('\n').at(-1)}`;
  }
  try {
    const t0 = performance.now();
    const up = await containersStep('up');
    if (up.code !== 0) return `compose up failed: ${up.output.trim().split('\n').at(-1)}`;
    // `up` returns once vm3 is started: certs ran, spmc healthy, the partition and the VMs started.
    const t1 = performance.now();
    const waited = await containersStep('wait');
    const t2 = performance.now();
    if (waited.code !== 0) throw new Error(`a scenario failed in the containers:\n${waited.output}`);
    return [t2 - t1, t2 - t0];
  } finally {
    await containersStep('down');
  }
}

/** p50 round trips from a VM namespace to the SPMC namespace: the bare echo and DIRECT_REQ ECHO. */
async function acrossTheNetwork(samples: number): Promise<{ echo: number; req: number }> {
  const compose = readCompose();
  const topo = new NetnsTopology({ spmc: compose.spmc!, vm1: { ...compose.vm1!, dependsOn: {} } });
  try {
    topo.create();
    const servers = topo.spawnNode('spmc', join(REPO, 'dist/bench/servers.js'), [], { BENCH_BIND: '0.0.0.0' });
    await servers.printed('\n');
    const addr = JSON.parse(servers.output.split('\n')[0]!) as { spmc: string; echo: string };
    const host = topo.addresses.get('spmc')!;
    const at = (a: string) => a.replace(/^0\.0\.0\.0/, host);
    const client = topo.spawnNode('vm1', join(REPO, 'dist/bench/netns-client.js'), [at(addr.spmc), at(addr.echo), String(samples)]);
    if ((await client.exited) !== 0) throw new Error(`netns client failed: ${client.output}`);
    servers.proc.stdin!.end();
    return JSON.parse(client.output.trim().split('\n').pop()!) as { echo: number; req: number };
  } finally {
    await topo.destroy();
  }
}

export async function topologyBench(samples: number): Promise<void> {
  const why = netnsUnavailable();
  if (why) {
    console.log(`compose topology benchmarks skipped: ${why}`);
    return;
  }
  const oneProcess = await inOneProcess();
  const [namespaces, withSetup] = await inNamespaces();
  const containers = await inContainers();
  console.log(
    `compose scenarios (3 VMs, remote SP): one process ${oneProcess.toFixed(0)} ms; namespaces ${namespaces.toFixed(0)} ms from the VMs' start (${withSetup.toFixed(0)} ms with namespaces, server and partition start-up); ${(namespaces / oneProcess).toFixed(1)}x`,
  );
  console.log(
    typeof containers === 'string'
      ? `compose scenarios in containers: skipped: ${containers}`
      : `compose scenarios in containers (podman): ${containers[0].toFixed(0)} ms from the last VM's start (${containers[1].toFixed(0)} ms from \`up\`: certs, server healthy, partition and VMs started); ${(containers[0] / oneProcess).toFixed(1)}x one process`,
  );
  const net = await acrossTheNetwork(Math.min(samples, 4000));
  console.log(
    `across the namespace network (VM ns -> SPMC ns), p50: bare echo ${net.echo.toFixed(1)} us, DIRECT_REQ_64 ECHO VM -> SP1 ${net.req.toFixed(1)} us (${(net.req / net.echo).toFixed(2)}x)`,
  );
}
