// `remote-spmc vm`: attach to a server as a VM and run driver operations, printing decoded results.
// One operation from the command line, a script (one per line, the same words), or a YAML
// scenario: a list of steps with expectations, so a multi-VM integration test is data.
//
// VMs coordinate through FF-A itself: barriers and memory handles travel as indirect messages.

import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import {
  type EndpointId,
  errorName,
  FFA_PAGE_SIZE,
  formatUuid,
  formatVersion,
  isSecureId,
  MEM_PERM,
  MEM_TRANSACTION_TYPES,
  parseUuid,
  UUID_NIL,
} from '../../proto/ffa/index.js';
import type { FfaDevice } from '../../client-driver/bus.js';
import { FfaDriver } from '../../client-driver/driver.js';
import { FfaDriverError } from '../../client-driver/errno.js';
import type { IndirectMessage } from '../../client-driver/notifier.js';
import { GrpcConnector } from '../../client-driver/transport/grpc.js';
import { TransportError } from '../../client-driver/transport/transport.js';
import { EmulatedVm } from '../../client-driver/vm.js';
import { PARTITION_COMMANDS, type PartitionCommand } from '../partitions/commands.js';
import { parseFlags, parseHostPort, UsageError } from './flags.js';

/** One step of a scenario (YAML) or a script line. */
export interface Step {
  op: string;
  [k: string]: unknown;
}

export interface Scenario {
  vm?: { id?: number; name?: string; vcpus?: number; properties?: number };
  /** How long a step that waits for another VM may wait (seconds, default 60). */
  timeout?: number;
  steps: Step[];
}

export class ScenarioError extends Error {}

const OPS = ['info', 'partitions', 'direct', 'direct2', 'share', 'lend', 'donate', 'retrieve', 'request', 'notify', 'wait-notification', 'send', 'receive', 'barrier', 'serve', 'sleep'] as const;

/** Numbers in a scenario: integers, 0x hex strings, or a partition command name (ECHO ...). */
function word(v: unknown, where: string): bigint {
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0) return BigInt(v);
  if (typeof v === 'string') {
    if (v in PARTITION_COMMANDS) return BigInt(PARTITION_COMMANDS[v as PartitionCommand]);
    if (/^(0x[0-9a-fA-F]+|[0-9]+)$/.test(v)) return BigInt(v);
  }
  throw new ScenarioError(`${where}: ${JSON.stringify(v)} is not a number, 0x value or command name`);
}
const id16 = (v: unknown, where: string): EndpointId => {
  const n = Number(word(v, where));
  if (n > 0xffff) throw new ScenarioError(`${where}: ${String(v)} is not a 16-bit endpoint id`);
  return n;
};
const words = (v: unknown, where: string): bigint[] => {
  if (v === undefined) return [];
  if (!Array.isArray(v)) throw new ScenarioError(`${where}: expected a list`);
  return v.map((x, i) => word(x, `${where}[${i}]`));
};
const hex = (v: bigint | number) => `0x${v.toString(16)}`;

/** Parse and check a scenario file's text; errors name the step and field. */
export function parseScenario(text: string, file = '<scenario>'): Scenario {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (e) {
    throw new ScenarioError(`${file}: not YAML: ${(e as Error).message}`);
  }
  const s = doc as Scenario;
  if (!s || typeof s !== 'object' || !Array.isArray(s.steps)) throw new ScenarioError(`${file}: needs a "steps" list`);
  s.steps.forEach((st, i) => {
    const where = `${file}: steps[${i}]`;
    if (!st || typeof st !== 'object' || typeof st.op !== 'string') throw new ScenarioError(`${where}: needs an "op"`);
    if (!(OPS as readonly string[]).includes(st.op)) throw new ScenarioError(`${where}: unknown op ${JSON.stringify(st.op)} (one of ${OPS.join(', ')})`);
  });
  return s;
}

/** A script line: "direct 0x8001 ECHO 1 2" -> {op: direct, to, args}. */
export function parseScriptLine(line: string, where: string): Step | undefined {
  const parts = line.replace(/#.*/, '').trim().split(/\s+/).filter(Boolean);
  if (parts.length === 0) return undefined;
  const [op, ...a] = parts as [string, ...string[]];
  switch (op) {
    case 'direct':
    case 'direct2':
      return { op, to: a[0], args: a.slice(1) };
    case 'share':
    case 'lend':
    case 'donate':
      return { op, to: a[0], pages: Number(a[1] ?? 1), pattern: a[2] ?? '0xa5' };
    case 'retrieve':
      return { op, from: a[0] };
    case 'request':
      return { op, from: a[0], id: Number(a[1]) };
    case 'notify':
      return { op, to: a[0], id: Number(a[1]) };
    case 'wait-notification':
      return { op, id: Number(a[0]) };
    case 'send':
      return { op, to: a[0], text: a.slice(1).join(' ') };
    case 'receive':
      return { op, from: a[0], expect: a.length > 1 ? a.slice(1).join(' ') : undefined };
    case 'barrier':
      return { op, name: a[0], with: a.slice(1) };
    case 'sleep':
      return { op, ms: Number(a[0]) };
    case 'serve':
      return { op, count: Number(a[0] ?? 1), vcpu: Number(a[1] ?? 1) };
    case 'info':
    case 'partitions':
      return { op };
    default:
      throw new ScenarioError(`${where}: unknown op ${JSON.stringify(op)} (one of ${OPS.join(', ')})`);
  }
}

/** A waitable queue of what arrives asynchronously (indirect messages, notifications). */
class Inbox<T> {
  private readonly items: T[] = [];
  private waiters: (() => void)[] = [];
  push(v: T): void {
    this.items.push(v);
    for (const w of this.waiters.splice(0)) w();
  }
  async take(pred: (v: T) => boolean, deadline: number, what: string): Promise<T> {
    for (;;) {
      const i = this.items.findIndex(pred);
      if (i >= 0) return this.items.splice(i, 1)[0]!;
      const left = deadline - Date.now();
      if (left <= 0) throw new ScenarioError(`timed out waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 1000));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }
}

const text = (m: IndirectMessage) => new TextDecoder().decode(m.payload);

/** `op` again every 20 ms while it fails in a way another endpoint's readiness explains, until the deadline. */
async function retrying<T>(deadline: number, notReady: (e: FfaDriverError) => boolean, op: () => Promise<T>): Promise<T> {
  for (;;) {
    try {
      return await op();
    } catch (e) {
      if (!(e instanceof FfaDriverError) || !notReady(e) || Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

/** The VM a scenario drives: the driver, its inboxes, and the steps. */
export class ScenarioVm {
  readonly messages = new Inbox<IndirectMessage>();
  readonly notifications = new Inbox<number>();
  private readonly timeoutMs: number;

  constructor(
    readonly drv: FfaDriver,
    timeoutS = 60,
    private readonly out: (line: string) => void = (l) => process.stdout.write(`${l}\n`),
  ) {
    this.timeoutMs = timeoutS * 1000;
    drv.notifier.onUnclaimedMessage = (m) => this.messages.push(m);
  }

  /** A device for any endpoint (VMs that attached after our discovery are not on the bus). */
  private device(id: EndpointId): FfaDevice {
    return this.drv.bus.devices().find((d) => d.vmId === id) ?? { id: 0, name: `endpoint-${hex(id)}`, vmId: id, uuid: UUID_NIL, properties: 0, mode32bit: false };
  }

  /** MSG_SEND2 to another VM that may not be attached yet or may have RX full: retry until the deadline. */
  private async sendText(to: EndpointId, body: string, deadline: number): Promise<void> {
    // A VM that has not attached (INVALID_PARAMETERS) or negotiated v1.1+ yet (DENIED), or whose
    // RX is full (BUSY), will be ready soon; a partition's refusal is final but for BUSY.
    const notReady = (e: FfaDriverError) => e.errno === 'EBUSY' || (!isSecureId(to) && (e.errno === 'EINVAL' || e.errno === 'EACCES'));
    await retrying(deadline, notReady, () => this.drv.sendIndirect(to, new TextEncoder().encode(body)));
  }

  async run(steps: Step[]): Promise<boolean> {
    for (const [i, step] of steps.entries()) {
      const label = `${i + 1} - ${step.op}`;
      try {
        const result = await this.step(step, `steps[${i}]`);
        this.out(`ok ${label}${result ? `: ${result}` : ''}`);
      } catch (e) {
        const why =
          e instanceof FfaDriverError || e instanceof ScenarioError
            ? e.message
            : e instanceof TransportError
              ? `lost the SPMC (${e.message})`
              : ((e as Error).stack ?? String(e));
        this.out(`not ok ${label}: ${why}`);
        return false;
      }
    }
    this.out(`1..${steps.length}`);
    return true;
  }

  async step(s: Step, where: string): Promise<string> {
    const drv = this.drv;
    const deadline = Date.now() + this.timeoutMs;
    switch (s.op) {
      case 'info':
        return `vm ${hex(drv.vmId)} FF-A v${formatVersion(drv.version)}, RX/TX ${drv.rxtxBufSize} bytes, notifications ${drv.notificationsEnabled ? 'on' : 'off'}`;
      case 'partitions': {
        const infos = await drv.partitionProbe(UUID_NIL);
        const exp = s.expect as { count?: number; ids?: unknown[] } | undefined;
        if (exp?.count !== undefined && infos.length !== exp.count) throw new ScenarioError(`expected ${exp.count} partitions, found ${infos.length}`);
        for (const want of exp?.ids ?? []) {
          const id = id16(want, `${where}.expect.ids`);
          if (!infos.some((p) => p.id === id)) throw new ScenarioError(`partition ${hex(id)} not found`);
        }
        return infos.map((p) => `${hex(p.id)}(${p.execContexts} ctx, props ${hex(p.properties)}, ${formatUuid(p.uuid)})`).join(' ');
      }
      case 'direct':
      case 'direct2': {
        const to = id16(s.to, `${where}.to`);
        const args = words(s.args, `${where}.args`);
        const expectError = (s.expect as { error?: string } | undefined)?.error;
        const expected = (e: unknown) => !!expectError && e instanceof FfaDriverError && e.ffaError !== undefined && errorName(e.ffaError) === expectError;
        // Another VM may not be serving (BUSY) or attached (INVALID_PARAMETERS) yet.
        const vmNotReady = (e: FfaDriverError) => !expected(e) && !isSecureId(to) && (e.errno === 'EBUSY' || e.errno === 'EINVAL');
        // A request is served on the receiver's context matching our vCPU (mod its count).
        const vcpu = Number(s.vcpu ?? 0);
        let got: bigint[];
        try {
          got = await retrying(deadline, vmNotReady, () =>
            s.op === 'direct' ? drv.sendDirectReq(to, args, { vcpu }) : drv.sendDirectReq2(to, args, { vcpu, uuid: s.uuid ? parseUuid(String(s.uuid)) : undefined }),
          );
        } catch (e) {
          if (expected(e)) return `FFA_ERROR ${expectError}, as expected`;
          throw e;
        }
        if (expectError) throw new ScenarioError(`expected FFA_ERROR ${expectError}, got a response`);
        if (Array.isArray(s.expect)) {
          const want = words(s.expect, `${where}.expect`);
          want.forEach((w, k) => {
            if (got[k] !== w) throw new ScenarioError(`response word ${k}: expected ${hex(w)}, got ${hex(got[k] ?? 0n)}`);
          });
        }
        return got.map(hex).join(' ');
      }
      case 'share':
      case 'lend':
      case 'donate':
        return this.sendMemory(s.op, s, where, deadline);
      case 'retrieve':
        return this.retrieveMemory(s, where, deadline);
      case 'request': {
        const from = id16(s.from, `${where}.from`);
        const id = Number(word(s.id, `${where}.id`));
        await drv.notifier.notifyRequest(this.device(from), false, (n) => this.notifications.push(n), id);
        return `notification ${id} from ${hex(from)} bound`;
      }
      case 'notify': {
        const to = id16(s.to, `${where}.to`);
        const id = Number(word(s.id, `${where}.id`));
        // The receiver may not have bound it (DENIED) or attached (INVALID_PARAMETERS) yet.
        await retrying(deadline, (e) => e.errno === 'EACCES' || e.errno === 'EINVAL', () => drv.notifier.notifySend(to, false, id));
        return `notification ${id} set for ${hex(to)}`;
      }
      case 'wait-notification': {
        const id = Number(word(s.id, `${where}.id`));
        await this.notifications.take((n) => n === id, deadline, `notification ${id}`);
        return `notification ${id} received`;
      }
      case 'send': {
        const to = id16(s.to, `${where}.to`);
        await this.sendText(to, String(s.text ?? ''), deadline);
        return `${JSON.stringify(String(s.text ?? ''))} sent to ${hex(to)}`;
      }
      case 'receive': {
        const from = id16(s.from, `${where}.from`);
        const m = await this.messages.take((x) => x.sender === from && !text(x).startsWith('\u0000'), deadline, `a message from ${hex(from)}`);
        if (s.expect !== undefined && text(m) !== String(s.expect)) throw new ScenarioError(`expected ${JSON.stringify(String(s.expect))}, got ${JSON.stringify(text(m))}`);
        return `${JSON.stringify(text(m))} from ${hex(from)}`;
      }
      case 'barrier': {
        const name = String(s.name ?? '');
        const peers = words(s.with, `${where}.with`).map(Number).filter((p) => p !== drv.vmId);
        const tag = `\u0000barrier ${name}`;
        for (const p of peers) await this.sendText(p, tag, deadline);
        for (const p of peers) await this.messages.take((m) => m.sender === p && text(m) === tag, deadline, `VM ${hex(p)} at barrier ${name}`);
        return `barrier ${name} with ${peers.map(hex).join(', ')}`;
      }
      case 'serve': {
        // Answer direct requests from other VMs (ECHO) on a vCPU of its own, until `count` are
        // answered; the loop itself ends when the VM detaches.
        const vcpu = Number(s.vcpu ?? 1);
        const count = Number(s.count ?? 1);
        if (!Number.isInteger(vcpu) || vcpu < 1 || vcpu >= drv.vm.vcpuCount) throw new ScenarioError(`${where}.vcpu: 1..${drv.vm.vcpuCount - 1} (attach with vcpus >= 2)`);
        let served = 0;
        const done = new Inbox<number>();
        void drv
          .serveDirectRequests((req) => {
            done.push(++served);
            return req.args;
          }, vcpu)
          .catch(() => {});
        await done.take((n) => n >= count, deadline, `${count} direct request(s)`);
        return `served ${count} direct request(s) on vCPU ${vcpu}`;
      }
      case 'sleep':
        await new Promise((r) => setTimeout(r, Number(s.ms ?? 0)));
        return '';
      default:
        throw new ScenarioError(`${where}: unknown op ${s.op}`);
    }
  }

  /**
   * Share, lend or donate `pages` pages filled with `pattern`. To a partition: its MEM command
   * retrieves, writes the pattern and checks it. To a VM: the handle goes to it in an indirect
   * message; its `retrieve` step checks the pattern, writes the complement and answers "done".
   * Either way the memory comes back (reclaim) and is checked, unless donated.
   */
  private async sendMemory(type: 'share' | 'lend' | 'donate', s: Step, where: string, deadline: number): Promise<string> {
    const drv = this.drv;
    const to = id16(s.to, `${where}.to`);
    const pages = Number(s.pages ?? 1);
    const pattern = Number(word(s.pattern ?? 0xa5, `${where}.pattern`)) & 0xff;
    if (!Number.isInteger(pages) || pages < 1 || pages > 256) throw new ScenarioError(`${where}.pages: 1..256`);
    const address = drv.vm.pages.alloc(pages);
    if (address === undefined) throw new ScenarioError('no memory left in the VM');
    const bytes = pages * FFA_PAGE_SIZE;
    await drv.vm.write(address, new Uint8Array(bytes).fill(pattern));
    const args = { receivers: [{ id: to, permissions: MEM_PERM.DATA_RW }], regions: [{ address, pageCount: pages }] };
    const handle = type === 'share' ? await drv.memShare(args) : type === 'lend' ? await drv.memLend(args) : await drv.memDonate(args);
    let expectBack = pattern;
    if (isSecureId(to)) {
      const r = await drv.sendDirectReq(to, [BigInt(PARTITION_COMMANDS.MEM), handle & 0xffffffffn, handle >> 32n, BigInt(pattern), BigInt(MEM_TRANSACTION_TYPES[type])]);
      if (r[1] !== 0n) throw new ScenarioError(`partition ${hex(to)} answered FF-A ${errorName(Number(BigInt.asIntN(32, r[1]!)))}`);
    } else {
      await this.sendText(to, `\u0000mem ${type} ${hex(handle)} ${pattern}`, deadline);
      await this.messages.take((m) => m.sender === to && text(m) === `\u0000done ${hex(handle)}`, deadline, `VM ${hex(to)} to finish with ${hex(handle)}`);
      expectBack = pattern ^ 0xff;
    }
    if (type === 'donate') return `donated ${pages} page(s) to ${hex(to)}, handle ${hex(handle)}`;
    await drv.memReclaim(handle);
    const back = await drv.vm.read(address, bytes);
    if (!back.every((b) => b === expectBack)) throw new ScenarioError(`after reclaim the memory does not hold ${hex(expectBack)}`);
    drv.vm.pages.release(address, pages);
    return `${type} of ${pages} page(s) to ${hex(to)}, handle ${hex(handle)}, pattern checked both ways`;
  }

  private async retrieveMemory(s: Step, where: string, deadline: number): Promise<string> {
    const drv = this.drv;
    const from = id16(s.from, `${where}.from`);
    const m = await this.messages.take((x) => x.sender === from && text(x).startsWith('\u0000mem '), deadline, `a memory handle from ${hex(from)}`);
    const [, type, handleHex, patternStr] = text(m).split(' ') as [string, 'share' | 'lend' | 'donate', string, string];
    const handle = BigInt(handleHex);
    const pattern = Number(patternStr);
    const mem = await drv.memRetrieve({ handle, sender: from, type });
    for (const c of mem.constituents) {
      const n = c.pageCount * FFA_PAGE_SIZE;
      const got = await drv.vm.read(c.address, n);
      if (!got.every((b) => b === pattern)) throw new ScenarioError(`retrieved memory does not hold ${hex(pattern)}`);
      await drv.vm.write(c.address, new Uint8Array(n).fill(pattern ^ 0xff));
    }
    if (type !== 'donate') await drv.memRelinquish(handle);
    await this.sendText(from, `\u0000done ${hex(handle)}`, deadline);
    return `${type} ${hex(handle)} from ${hex(from)}: pattern ${hex(pattern)} checked, complement written`;
  }
}

export async function vmCommand(args: string[]): Promise<number> {
  const flagArgs: string[] = [];
  const positional: string[] = [];
  // Flags first, then the operation and its words.
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (positional.length === 0 && a.startsWith('--')) {
      flagArgs.push(a);
      if (!a.includes('=') && i + 1 < args.length) flagArgs.push(args[++i]!);
    } else positional.push(a);
  }
  const v = parseFlags(flagArgs, {
    server: { type: 'string', default: process.env.REMOTE_SPMC_SERVER ?? '127.0.0.1:50051' },
    id: { type: 'string' },
    name: { type: 'string' },
    vcpus: { type: 'string' },
    properties: { type: 'string' },
    scenario: { type: 'string' },
    script: { type: 'string' },
    timeout: { type: 'string' },
  });
  parseHostPort('--server', v.server!);
  let scenario: Scenario;
  try {
    if (v.scenario !== undefined) scenario = parseScenario(readFileSync(v.scenario, 'utf8'), v.scenario);
    else if (v.script !== undefined) {
      const lines = readFileSync(v.script, 'utf8').split('\n');
      scenario = { steps: lines.flatMap((l, i) => parseScriptLine(l, `${v.script}:${i + 1}`) ?? []) };
    } else if (positional.length > 0) {
      scenario = { steps: [parseScriptLine(positional.join(' '), 'command line')!] };
    } else scenario = { steps: [{ op: 'info' }, { op: 'partitions' }] };
  } catch (e) {
    if (e instanceof ScenarioError) throw new UsageError(e.message);
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new UsageError(`cannot read ${(e as NodeJS.ErrnoException).path}`);
    throw e;
  }
  const num = (flag: string, val: string | undefined, fallback: number | undefined, max: number) => {
    if (val === undefined) return fallback;
    const n = Number(val);
    if (!Number.isInteger(n) || n < 0 || n > max) throw new UsageError(`--${flag}: expected an integer 0..${max}`);
    return n;
  };
  const id = num('id', v.id, scenario.vm?.id, 0x7fff);
  const vcpus = num('vcpus', v.vcpus, scenario.vm?.vcpus, 64);
  const timeout = num('timeout', v.timeout, scenario.timeout ?? 60, 3600)!;
  const properties = num('properties', v.properties, scenario.vm?.properties, 0x7ff);

  const connector = new GrpcConnector(v.server!);
  let vm: EmulatedVm;
  try {
    vm = await EmulatedVm.attach(connector, { endpointId: id, name: v.name ?? scenario.vm?.name, vcpuCount: vcpus, properties });
  } catch (e) {
    connector.close();
    process.stdout.write(`not ok 0 - attach to ${v.server}: ${(e as Error).message}\n`);
    return 1;
  }
  const drv = new FfaDriver(vm);
  // Messages may arrive while the driver initialises: the inbox must be there first.
  const runner = new ScenarioVm(drv, timeout);
  let ok = false;
  try {
    await drv.init();
    ok = await runner.run(scenario.steps);
  } catch (e) {
    process.stdout.write(`not ok 0 - driver init: ${(e as Error).message}\n`);
  }
  await drv.exit().catch(() => {});
  await vm.detach().catch(() => {});
  connector.close();
  return ok ? 0 : 1;
}
