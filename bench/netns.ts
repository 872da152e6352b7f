// Runs docker-compose.yml without Docker: one Linux network namespace per service, each with a
// veth pair into one bridge, an address, and the service names in its /etc/hosts
// (/etc/netns/NAME/hosts); each service's command runs inside its namespace as the remote-spmc
// CLI. Everything is torn down again, on failure too. Needs root and iproute2. Used by the topology
// test and the topology benchmarks.

import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';

export const REPO = fileURLToPath(new URL('../../', import.meta.url));
export const MAIN_JS = join(REPO, 'dist/server/main.js');
/** Where the image puts the project; compose commands name files under it. */
const IMAGE_ROOT = '/opt/remote-spmc/';

export interface ComposeService {
  command: string[];
  environment: Record<string, string>;
  dependsOn: Record<string, { condition: string }>;
  healthcheck?: string[];
  /** Named volumes as [volume, path in the container]: the runner gives each volume a directory. */
  volumes: [string, string][];
}

/** ${VAR:-default} and ${VAR} as Compose interpolates them. */
function interpolate(v: string, env: NodeJS.ProcessEnv): string {
  return v.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g, (_m, name: string, def?: string) => env[name] || def || '');
}

export function readComposeDocument(file = join(REPO, 'docker-compose.yml')): unknown {
  return parseYaml(readFileSync(file, 'utf8'), { merge: true });
}

export function readCompose(file?: string, env: NodeJS.ProcessEnv = process.env): Record<string, ComposeService> {
  const doc = readComposeDocument(file) as { services: Record<string, Record<string, unknown>> };
  const out: Record<string, ComposeService> = {};
  for (const [name, s] of Object.entries(doc.services)) {
    const command = (s.command as string[] | undefined) ?? [];
    const environment: Record<string, string> = {};
    for (const [k, v] of Object.entries((s.environment as Record<string, string>) ?? {})) environment[k] = interpolate(String(v), env);
    const hc = (s.healthcheck as { test?: string[] } | undefined)?.test;
    // Short syntax "VOLUME:/path[:ro]"; bind mounts (a VOLUME with a slash) are not used here.
    const volumes = ((s.volumes as string[] | undefined) ?? []).map((v) => v.split(':')).map(([vol, path]) => [vol!, path!] as [string, string]);
    out[name] = { command, environment, dependsOn: (s.depends_on as ComposeService['dependsOn']) ?? {}, healthcheck: hc?.slice(1), volumes };
  }
  return out;
}

/** Why namespaces cannot be used here, or undefined if they can. */
export function netnsUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (ip netns)';
  try {
    execFileSync('ip', ['-V'], { stdio: 'ignore' });
  } catch {
    return 'needs iproute2 (ip)';
  }
  const probe = `rsprobe${process.pid % 10000}`;
  try {
    execFileSync('ip', ['netns', 'add', probe], { stdio: 'pipe' });
    execFileSync('ip', ['netns', 'del', probe], { stdio: 'pipe' });
  } catch (e) {
    return `cannot create a network namespace: ${(e as Error).message.split('\n')[0]}`;
  }
  return undefined;
}

const ip = (...args: string[]) => execFileSync('ip', args, { stdio: 'pipe' }).toString();
const quiet = (...args: string[]) => {
  try {
    ip(...args);
  } catch {
    // already gone
  }
};

export interface RunningService {
  name: string;
  proc: ChildProcess;
  output: string;
  exited: Promise<number>;
  /** Resolves once `text` is in its output; rejects if it exits first. */
  printed(text: string): Promise<void>;
}

/** A spawned process as a RunningService, its stdout and stderr collected into `output`. */
function running(name: string, proc: ChildProcess): RunningService {
  const r: RunningService = {
    name,
    proc,
    output: '',
    exited: new Promise((resolve) => proc.on('exit', (code, signal) => resolve(code ?? (signal ? 128 : 1)))),
    printed: (text) =>
      new Promise((resolve, reject) => {
        const check = () => {
          if (!r.output.includes(text)) return;
          off();
          resolve();
        };
        const exited = () => {
          off();
          // What it wrote last may still be in the pipes: the streams end after the exit.
          void Promise.all([proc.stdout && once(proc.stdout, 'end'), proc.stderr && once(proc.stderr, 'end')]).then(() =>
            r.output.includes(text) ? resolve() : reject(new Error(`${name} exited without printing ${JSON.stringify(text)}: ${r.output}`)),
          );
        };
        const off = () => {
          proc.stdout?.off('data', check);
          proc.stderr?.off('data', check);
          proc.off('exit', exited);
        };
        proc.stdout?.on('data', check);
        proc.stderr?.on('data', check);
        proc.on('exit', exited);
        check();
      }),
  };
  // Collected before any printed() listener runs (listeners run in the order they were added).
  proc.stdout!.on('data', (d: Buffer) => (r.output += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (r.output += d.toString()));
  return r;
}

export class NetnsTopology {
  private readonly tag = (Date.now() % 100000).toString(36) + (process.pid % 1000).toString(36);
  readonly bridge = `rsb${this.tag}`;
  readonly addresses = new Map<string, string>();
  private readonly hostVeth = new Map<string, string>();
  private readonly running: RunningService[] = [];
  private up = false;
  /** A directory per named volume, made on first use. */
  private readonly volumeDirs = new Map<string, string>();

  constructor(
    readonly services: Record<string, ComposeService>,
    /** A /24 prefix, e.g. "10.213.7": the bridge is .1, services from .10. */
    readonly subnet = `10.${200 + (process.pid % 50)}.${process.pid % 250}`,
  ) {}

  ns(service: string): string {
    return `rs${this.tag}-${service}`.slice(0, 30);
  }

  /** The bridge, then per service: namespace, veth pair, address, hosts file. */
  create(): void {
    this.up = true;
    ip('link', 'add', this.bridge, 'type', 'bridge');
    ip('addr', 'add', `${this.subnet}.1/24`, 'dev', this.bridge);
    ip('link', 'set', this.bridge, 'up');
    const names = Object.keys(this.services);
    names.forEach((name, i) => this.addresses.set(name, `${this.subnet}.${10 + i}`));
    const hosts = ['127.0.0.1 localhost', ...names.map((n) => `${this.addresses.get(n)} ${n}`)].join('\n');
    names.forEach((name, i) => {
      const ns = this.ns(name);
      const host = `rsv${this.tag}${i}`.slice(0, 15);
      const peer = `rsp${this.tag}${i}`.slice(0, 15);
      ip('netns', 'add', ns);
      ip('link', 'add', host, 'type', 'veth', 'peer', 'name', peer);
      ip('link', 'set', host, 'master', this.bridge);
      ip('link', 'set', host, 'up');
      ip('link', 'set', peer, 'netns', ns);
      ip('-n', ns, 'link', 'set', 'lo', 'up');
      ip('-n', ns, 'link', 'set', peer, 'name', 'eth0');
      ip('-n', ns, 'addr', 'add', `${this.addresses.get(name)}/24`, 'dev', 'eth0');
      ip('-n', ns, 'link', 'set', 'eth0', 'up');
      this.hostVeth.set(name, host);
      const etc = `/etc/netns/${ns}`;
      mkdirSync(etc, { recursive: true });
      writeFileSync(join(etc, 'hosts'), `${hosts}\n`);
    });
  }

  /** A container path as this host sees it: the image's files in this checkout, a named volume in its directory. */
  hostPath(service: string, arg: string): string {
    if (arg.startsWith(IMAGE_ROOT)) return join(REPO, arg.slice(IMAGE_ROOT.length));
    for (const [volume, path] of this.services[service]?.volumes ?? []) {
      if (arg !== path && !arg.startsWith(`${path}/`)) continue;
      let dir = this.volumeDirs.get(volume);
      if (!dir) {
        dir = mkdtempSync(join(tmpdir(), `rspmc-vol-${volume}-`));
        this.volumeDirs.set(volume, dir);
      }
      return dir + arg.slice(path.length);
    }
    return arg;
  }

  /** The service's command, as the remote-spmc CLI inside its namespace (image and volume paths mapped to this host's). */
  start(name: string, command = this.services[name]!.command, extraEnv: Record<string, string> = {}): RunningService {
    const args = command.map((a) => this.hostPath(name, a));
    const proc = spawn('ip', ['netns', 'exec', this.ns(name), process.execPath, MAIN_JS, ...args], {
      env: { ...process.env, ...this.services[name]?.environment, ...extraEnv },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const r = running(name, proc);
    this.running.push(r);
    return r;
  }

  /** Any node script inside a namespace (the benchmarks' servers and clients). */
  spawnNode(name: string, script: string, args: string[] = [], env: Record<string, string> = {}): RunningService {
    const proc = spawn('ip', ['netns', 'exec', this.ns(name), process.execPath, script, ...args], {
      env: { ...process.env, ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const r = running(name, proc);
    this.running.push(r);
    return r;
  }

  /** Run a command to completion inside a namespace. */
  exec(name: string, args: string[], extraEnv: Record<string, string> = {}): { code: number; output: string } {
    try {
      const out = execFileSync('ip', ['netns', 'exec', this.ns(name), process.execPath, MAIN_JS, ...args.map((a) => this.hostPath(name, a))], {
        stdio: 'pipe',
        timeout: 20000,
        env: { ...process.env, ...this.services[name]?.environment, ...extraEnv },
      });
      return { code: 0, output: out.toString() };
    } catch (e) {
      const err = e as { status?: number; stdout?: Buffer; stderr?: Buffer };
      return { code: err.status ?? 1, output: `${err.stdout ?? ''}${err.stderr ?? ''}` };
    }
  }

  /**
   * Run the service's health check (compose `healthcheck.test`) until it passes, as Compose does;
   * fails if the service's process exits first. No time limit: a loaded machine is only slower.
   */
  async waitHealthy(name: string): Promise<void> {
    const check = this.services[name]?.healthcheck;
    if (!check || check[0] !== 'remote-spmc') throw new Error(`${name} has no remote-spmc health check`);
    const service = this.running.filter((r) => r.name === name).at(-1);
    for (;;) {
      if (this.exec(name, check.slice(1)).code === 0) return;
      if (service && (service.proc.exitCode !== null || service.proc.signalCode !== null))
        throw new Error(`${name} exited before it was healthy: ${service.output}`);
      await new Promise((r) => setTimeout(r, 200)); // Compose's interval is seconds; a check takes a process start
    }
  }

  /** Start everything in depends_on order, waiting for healthy dependencies. */
  async startAll(): Promise<Map<string, RunningService>> {
    const started = new Map<string, RunningService>();
    const healthy = new Set<string>();
    const pending = new Set(Object.keys(this.services));
    while (pending.size > 0) {
      const ready = [...pending].filter((n) => Object.keys(this.services[n]!.dependsOn).every((d) => started.has(d)));
      if (ready.length === 0) throw new Error(`depends_on cycle among ${[...pending].join(', ')}`);
      for (const n of ready) {
        for (const [dep, { condition }] of Object.entries(this.services[n]!.dependsOn)) {
          if (condition === 'service_healthy' && !healthy.has(dep)) {
            await this.waitHealthy(dep);
            healthy.add(dep);
          }
          if (condition === 'service_completed_successfully') {
            const done = started.get(dep)!;
            const code = await done.exited;
            if (code !== 0) throw new Error(`${dep} exited ${code}: ${done.output}`);
          }
        }
        started.set(n, this.start(n));
        pending.delete(n);
      }
    }
    return started;
  }

  linkDown(name: string): void {
    ip('link', 'set', this.hostVeth.get(name)!, 'down');
  }

  /**
   * Bring a service's link back and wait until it carries traffic: its bridge port forwarding
   * again, and no neighbour entry left FAILED from while it was down (a connect would get
   * EHOSTUNREACH until such an entry expired).
   */
  async linkUp(name: string): Promise<void> {
    const host = this.hostVeth.get(name)!;
    ip('link', 'set', host, 'up');
    const forwarding = () => readFileSync(`/sys/class/net/${host}/brport/state`, 'utf8').trim() === '3';
    while (!forwarding()) await new Promise((r) => setTimeout(r, 5));
    for (const other of Object.keys(this.services)) quiet('-n', this.ns(other), 'neigh', 'flush', 'all');
  }

  /** Stop every process and remove every namespace, link and hosts file. Safe to call twice. */
  async destroy(): Promise<void> {
    for (const r of this.running) {
      if (r.proc.exitCode === null && r.proc.signalCode === null) r.proc.kill('SIGKILL');
    }
    await Promise.all(this.running.map((r) => Promise.race([r.exited, new Promise((res) => setTimeout(res, 2000))])));
    if (!this.up) return;
    this.up = false;
    for (const name of Object.keys(this.services)) {
      const ns = this.ns(name);
      // Anything still running in the namespace (ip netns exec's children) goes with it.
      try {
        const pids = ip('netns', 'pids', ns).split('\n').filter(Boolean);
        for (const pid of pids) process.kill(Number(pid), 'SIGKILL');
      } catch {
        // none
      }
      quiet('netns', 'del', ns);
      const etc = `/etc/netns/${ns}`;
      if (existsSync(etc)) rmSync(etc, { recursive: true, force: true });
      const host = this.hostVeth.get(name);
      if (host) quiet('link', 'del', host);
    }
    quiet('link', 'del', this.bridge);
    for (const dir of this.volumeDirs.values()) rmSync(dir, { recursive: true, force: true });
  }
}
