// A seeded fuzzer of the SPMC model: several VMs and partitions make random sequences of valid and
// mutated FF-A calls and descriptors through the session core (registers flipped, descriptor bytes
// in TX buffers flipped or cut), VMs attach and leave, transports give up on blocked calls. After
// every step the invariant checker looks at the whole state. A crash is any exception other than
// the documented transport refusals (SpmcError, a MemoryFault on a guest write); every FFA_ERROR
// must carry its reason. Deterministic for a seed: the same seed makes the same run.

import {
  ALL_FUNCTION_IDS,
  type Constituent,
  decodeCall,
  encodeCall,
  encodeIndirectMessage,
  encodeMemRelinquish,
  encodeMemTransaction,
  type EndpointId,
  FFA_PAGE_SIZE,
  FFA_VERSION_1_0,
  FFA_VERSION_1_1,
  FFA_VERSION_1_2,
  type FfaCall,
  fid,
  fidName,
  indirectMsgHeaderSize,
  MEM_ATTR_NORMAL_WB_IS,
  MEM_FLAGS,
  MEM_PERM,
  MEM_TRANSACTION_TYPES,
  type Registers,
  U32,
  UUID_NIL,
} from '../proto/ffa/index.js';
import { parseManifest } from '../server/manifest.js';
import { SessionCore } from '../server/session/core.js';
import type { Endpoint } from '../server/spmc/endpoint.js';
import { isPending, type Pending } from '../server/spmc/pending.js';
import { MemoryFault, Spmc, SpmcError } from '../server/spmc/spmc.js';
import { InvariantChecker } from './invariants.js';

const PAGE = BigInt(FFA_PAGE_SIZE);
const VM_RAM = 2n << 20n;
const MAX_VMS = 4;
/** Where descriptors' constituents are taken from: after room for any mailbox. */
const DATA_FIRST_PAGE = 16;
const ERROR_FID = fid('ERROR');

/** Three partitions of different versions and messaging methods, with small RAM so pages can be checked one by one. */
const MANIFEST = `
partitions:
  - name: fz1
    uuids: [b4b5671e-4a90-4fe1-b81f-fb13dae1dacb]
    ffa-version: "1.2"
    execution-ctx-count: 2
    messaging-method: 0x607
    notification-support: true
    ram-bytes: 2097152
    service: test-service
  - name: fz2
    uuids: [d1582309-f023-47b9-827c-4464f5578fc8]
    ffa-version: "1.1"
    execution-ctx-count: 1
    messaging-method: 0x7
    notification-support: true
    ram-bytes: 2097152
    service: test-service
  - name: fz3
    uuids: [79b55c73-1d8c-44b9-8593-61e1770ad8d2]
    ffa-version: "1.0"
    execution-ctx-count: 1
    messaging-method: 0x3
    ram-bytes: 2097152
    service: test-service
`;

/** xorshift128+: small, fast, and the same sequence for a seed on every machine. */
export class Rng {
  private a: bigint;
  private b: bigint;
  constructor(seed: number) {
    this.a = BigInt.asUintN(64, BigInt(seed) * 0x9e3779b97f4a7c15n + 1n);
    this.b = BigInt.asUintN(64, (BigInt(seed) ^ 0xdeadbeefn) * 0xbf58476d1ce4e5b9n + 7n);
    for (let i = 0; i < 8; i++) this.u64();
  }
  u64(): bigint {
    let x = this.a;
    const y = this.b;
    this.a = y;
    x = BigInt.asUintN(64, x ^ (x << 23n));
    this.b = x ^ y ^ (x >> 17n) ^ (y >> 26n);
    return BigInt.asUintN(64, this.b + y);
  }
  int(n: number): number {
    return Number(this.u64() % BigInt(Math.max(1, n)));
  }
  chance(p: number): boolean {
    return this.int(1_000_000) < p * 1_000_000;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
  bytes(n: number): Uint8Array {
    return Uint8Array.from({ length: n }, () => this.int(256));
  }
  /** A register value: often small or an edge, sometimes anything. */
  reg(): bigint {
    switch (this.int(4)) {
      case 0:
        return BigInt(this.int(16));
      case 1:
        return this.pick([0n, U32, (1n << 64n) - 1n, 1n << 63n, 0x8001n, 0x10000n]);
      case 2:
        return this.u64() & U32;
      default:
        return this.u64();
    }
  }
}

export interface Crash {
  step: number;
  call: string;
  error: string;
}

export interface FuzzStats {
  steps: number;
  calls: number;
  descriptors: number;
  crashes: Crash[];
  /** Invariant breaks, the first few kept with the step they were found at. */
  breakCount: number;
  breaks: string[];
  /** How the calls were answered (SUCCESS, ERROR, MEM_RETRIEVE_RESP, ... , BLOCKED, REFUSED for transport refusals). */
  answers: Map<string, number>;
  /** Calls answered with anything but FFA_ERROR, by function. */
  accepted: Map<string, number>;
  /** Refusals by reason code. */
  reasons: Map<string, number>;
  attaches: number;
  detaches: number;
  abandoned: number;
}

interface Actor {
  ep: Endpoint;
  token?: string;
}

/** A fragmented send in progress: what is left of the descriptor. */
interface Sending {
  ep: Endpoint;
  handle: bigint;
  rest: Uint8Array;
}

export class Fuzzer {
  readonly spmc: Spmc;
  readonly checker: InvariantChecker;
  readonly stats: FuzzStats = {
    steps: 0,
    calls: 0,
    descriptors: 0,
    crashes: [],
    breakCount: 0,
    breaks: [],
    answers: new Map(),
    reasons: new Map(),
    accepted: new Map(),
    attaches: 0,
    detaches: 0,
    abandoned: 0,
  };
  private readonly rng: Rng;
  private readonly core: SessionCore;
  private readonly vms: Actor[] = [];
  private readonly sps: Actor[];
  private pendings: Pending[] = [];
  private sending: Sending[] = [];
  /** The rest of a descriptor whose first fragment the current call sends. */
  private lastSend?: Omit<Sending, 'handle'>;
  private step = 0;

  constructor(seed: number) {
    this.rng = new Rng(seed);
    this.spmc = new Spmc({ partitions: parseManifest(MANIFEST, '<fuzz manifest>'), handleSeed: BigInt(seed) | 1n, limits: { maxTransactions: 32 } });
    this.core = SessionCore.for(this.spmc);
    this.checker = new InvariantChecker(this.spmc);
    this.sps = [...this.spmc.state.endpoints.values()].filter((e) => e.kind === 'sp').map((ep) => ({ ep }));
    for (let i = 0; i < 2; i++) this.attach();
  }

  /** Run `steps` steps, or until `until()` says stop (checked every 100 steps). */
  run(steps: number, until: () => boolean = () => false): FuzzStats {
    for (let i = 0; i < steps; i++) {
      if (i % 100 === 0 && until()) break;
      this.once();
    }
    return this.stats;
  }

  /** One step: an action, then the invariants. */
  once(): void {
    this.step++;
    this.stats.steps++;
    const r = this.rng.int(1000);
    if (r < 8) this.attach();
    else if (r < 14) this.detach();
    else if (r < 24) this.abandon();
    else this.callStep();
    const found = this.checker.check();
    if (found.length) {
      this.stats.breakCount += found.length;
      if (this.stats.breaks.length < 20) this.stats.breaks.push(...found.slice(0, 20 - this.stats.breaks.length).map((b) => `step ${this.step}: ${b}`));
    }
  }

  private count(what: string): void {
    this.stats.answers.set(what, (this.stats.answers.get(what) ?? 0) + 1);
  }

  private crash(call: string, e: unknown): void {
    this.stats.crashes.push({ step: this.step, call, error: e instanceof Error ? (e.stack ?? e.message) : String(e) });
  }

  // ---- endpoints coming and going -------------------------------------------------------------

  private attach(): void {
    if (this.vms.length >= MAX_VMS) return;
    try {
      const a = this.core.attach({ ramBytes: VM_RAM, vcpuCount: 1 + this.rng.int(2), name: `fz${this.step}` });
      this.vms.push({ ep: this.spmc.endpoint(a.endpointId)!, token: a.session });
      this.stats.attaches++;
      // Most guests negotiate first (a VM that does not is a v1.0 caller).
      const version = this.rng.pick([FFA_VERSION_1_2, FFA_VERSION_1_2, FFA_VERSION_1_1, FFA_VERSION_1_0, 0]);
      if (version) this.core.handle(a.endpointId, 0, encodeCall({ fn: 'VERSION', requested: version }, FFA_VERSION_1_0), 'fuzz');
    } catch (e) {
      if (!(e instanceof SpmcError)) this.crash('attach', e);
    }
  }

  private detach(): void {
    if (this.vms.length <= 1) return;
    const i = this.rng.int(this.vms.length);
    const vm = this.vms[i]!;
    this.vms.splice(i, 1);
    this.sending = this.sending.filter((s) => s.ep !== vm.ep);
    try {
      this.core.detach(vm.token!);
      this.stats.detaches++;
    } catch (e) {
      this.crash('detach', e);
    }
  }

  /** A transport gives up on a blocked call (its client went away or its deadline passed). */
  private abandon(): void {
    this.pendings = this.pendings.filter((p) => !p.settled && !p.abandoned);
    if (!this.pendings.length) return;
    const p = this.rng.pick(this.pendings);
    try {
      p.abandon();
      this.stats.abandoned++;
    } catch (e) {
      this.crash(`abandon FFA_${p.fn}`, e);
    }
  }

  // ---- calls -----------------------------------------------------------------------------------

  private callStep(): void {
    // Mostly a vCPU that may call; now and then a blocked one or one that is not there (the transport refuses both).
    const canCall = (ep: Endpoint) => ep.vcpus.filter((v) => v.state === 'running' || v.state === 'off');
    const actors = [...this.vms, ...this.sps].filter((a) => canCall(a.ep).length);
    const sps = actors.filter((a) => a.ep.kind === 'sp');
    const actor = actors.length && !this.rng.chance(0.02) ? (sps.length && this.rng.chance(0.45) ? this.rng.pick(sps) : this.rng.pick(actors)) : undefined;
    // Everyone waits: a transport gives up on a blocked call, or a VM arrives (as a deadlocked system would be unblocked).
    if (!actor && !actors.length && this.rng.chance(0.9)) return this.rng.chance(0.8) ? this.abandon() : this.attach();
    const ep = actor?.ep ?? this.rng.pick([...this.vms, ...this.sps]).ep;
    const vcpu = actor ? this.rng.pick(canCall(ep)).index : this.rng.int(ep.vcpuCount + 1);
    let x: Registers;
    try {
      x = this.makeCall(ep, vcpu);
    } catch (e) {
      if (e instanceof MemoryFault) return this.count('TX_FAULT');
      return this.crash(`making a call for ${ep.id}`, e);
    }
    if (this.rng.chance(0.12)) this.mutateRegisters(x);
    this.stats.calls++;
    let out: Registers | Pending;
    try {
      out = this.core.handle(ep.id, vcpu, x, 'fuzz');
    } catch (e) {
      if (e instanceof SpmcError) return this.count(`REFUSED ${e.message.replace(/[0-9]+/g, 'N')}`);
      return this.crash(`${fidName(Number(x[0]! & U32))} by ${ep.id.toString(16)} vCPU ${vcpu}: [${x.map((v) => v.toString(16)).join(' ')}]`, e);
    }
    if (isPending(out)) {
      this.count('BLOCKED');
      this.pendings.push(out);
      const name = fidName(Number(x[0]! & U32));
      out.whenComplete((r) => this.answered(name, r));
      return;
    }
    this.answered(fidName(Number(x[0]! & U32)), out);
    this.afterAnswer(ep, out);
  }

  private answered(call: string, r: Registers): void {
    const w0 = Number(r[0]! & U32);
    this.count(fidName(w0).replace(/^FFA_/, ''));
    if (w0 !== ERROR_FID) {
      if (call.startsWith('FFA_')) this.stats.accepted.set(call, (this.stats.accepted.get(call) ?? 0) + 1);
      return;
    }
    const reason = this.spmc.reasonFor(r);
    if (reason?.code && reason.text) this.stats.reasons.set(reason.code, (this.stats.reasons.get(reason.code) ?? 0) + 1);
    else {
      this.stats.breakCount++;
      if (this.stats.breaks.length < 20) this.stats.breaks.push(`step ${this.step}: ${call} answered FFA_ERROR without a reason`);
    }
  }

  /** Follow-ups the model asks for: the rest of a fragmented descriptor. */
  private afterAnswer(ep: Endpoint, out: Registers): void {
    const rest = this.lastSend;
    this.lastSend = undefined;
    if (!rest || Number(out[0]! & U32) !== fid('MEM_FRAG_RX')) return;
    const d = decodeCall(out, ep.version, false);
    if (d.ok && d.call.fn === 'MEM_FRAG_RX') this.sending.push({ ...rest, handle: d.call.handle });
  }

  private mutateRegisters(x: Registers): void {
    const n = 1 + this.rng.int(3);
    for (let i = 0; i < n; i++) {
      const at = this.rng.int(18);
      switch (this.rng.int(4)) {
        case 0:
          x[at] = x[at]! ^ (1n << BigInt(this.rng.int(64)));
          break;
        case 1:
          x[at] = this.rng.reg();
          break;
        case 2:
          x[0] = BigInt(this.rng.pick(ALL_FUNCTION_IDS).fid);
          break;
        default:
          x[at] = this.rng.u64();
      }
    }
  }

  /** Registers for a random call of `ep` (valid most of the time). */
  private makeCall(ep: Endpoint, vcpu: number): Registers {
    const v = ep.version;
    const call = (c: FfaCall): Registers => encodeCall(c, v);
    const rng = this.rng;
    const peers = [...this.vms, ...this.sps].map((a) => a.ep.id);
    const anyId = (): EndpointId => (rng.chance(0.9) ? rng.pick(peers) : rng.int(0x10000));
    const shares = [...this.spmc.state.shares.byHandle.values()];
    const handleFor = (mine: (s: (typeof shares)[number]) => boolean): bigint => {
      const ok = shares.filter(mine);
      return ok.length && rng.chance(0.9) ? rng.pick(ok).handle : rng.chance(0.5) && shares.length ? rng.pick(shares).handle : rng.u64();
    };
    const v12 = v >= FFA_VERSION_1_2;
    const me = ep.vcpus[vcpu];
    // What this endpoint has to do in memory transactions comes first now and then.
    const todo = shares.flatMap((s) => s.borrowers.filter((b) => b.id === ep.id && s.complete).map((b) => b.retrieved));
    const urgent = todo.length && rng.chance(0.35) ? { no: 12, partial: rng.pick([3, 14, 14]), yes: 15 }[rng.pick(todo)] : undefined;
    const sendingMore = this.sending.some((x) => x.ep === ep) && rng.chance(0.5) ? 11 : undefined;
    const action = sendingMore ?? urgent ?? rng.int(30);
    // Calls that need a mailbox mostly get one first.
    const needsMailbox = (action >= 5 && action <= 16) || action === 24;
    // A retrieval needs RX back from the previous message first.
    if ((action === 12 || action === 13 || action === 14) && ep.mailbox?.rxState === 'full' && rng.chance(0.8)) return call({ fn: 'RX_RELEASE', vmId: 0 });
    if (needsMailbox && !ep.mailbox && rng.chance(0.85)) {
      const pages = rng.pick([1, 1, 2, 3]);
      return call({ fn: 'RXTX_MAP', width: 64, tx: ep.ram.base, rx: ep.ram.base + BigInt(pages) * PAGE, pageCount: pages });
    }
    switch (action) {
      case 0:
        return call({ fn: 'VERSION', requested: rng.pick([FFA_VERSION_1_0, FFA_VERSION_1_1, FFA_VERSION_1_2, FFA_VERSION_1_2, rng.int(0x30000)]) });
      case 1: {
        const pages = rng.pick([1, 1, 2, 3]);
        const tx = ep.ram.base + BigInt(rng.int(6)) * PAGE;
        return call({ fn: 'RXTX_MAP', width: 64, tx, rx: tx + BigInt(pages) * PAGE, pageCount: pages });
      }
      case 2:
        return rng.chance(0.3) ? call({ fn: 'RXTX_UNMAP', id: 0 }) : call({ fn: 'ID_GET' });
      case 3:
      case 4:
        return call({ fn: 'RX_RELEASE', vmId: 0 });
      case 5:
        return rng.chance(0.5)
          ? call({ fn: 'PARTITION_INFO_GET', uuid: rng.chance(0.5) ? UUID_NIL : rng.pick(this.sps).ep.uuids[0]!, countOnly: rng.chance(0.3) })
          : call({ fn: v12 ? 'PARTITION_INFO_GET_REGS' : 'ID_GET', uuid: UUID_NIL, startIndex: rng.int(4), tag: 0 } as FfaCall);
      case 6:
        return call({ fn: rng.pick(['ID_GET', 'SPM_ID_GET'] as const) });
      case 7:
        return call({
          fn: 'FEATURES',
          id: rng.chance(0.8) ? rng.pick(ALL_FUNCTION_IDS).fid : rng.int(16),
          inputProperties: rng.pick([0, 2, rng.int(1 << 16)]),
        });
      case 8:
      case 9:
      case 10:
        return this.memSend(ep, rng.pick(['MEM_SHARE', 'MEM_LEND', 'MEM_DONATE'] as const));
      case 11:
        return this.fragTx(ep);
      case 12:
      case 13:
        return this.retrieve(
          ep,
          handleFor((s) => s.complete && s.borrowers.some((b) => b.id === ep.id && b.retrieved === 'no')),
        );
      case 14: {
        const s = shares.find((x) => x.borrowers.some((b) => b.id === ep.id && b.retrieved === 'partial'));
        const b = s?.borrowers.find((x) => x.id === ep.id);
        return call({ fn: 'MEM_FRAG_RX', handle: s?.handle ?? handleFor(() => true), fragmentOffset: b?.delivered ?? rng.int(8192), endpoint: 0 });
      }
      case 15:
        return this.relinquish(
          ep,
          handleFor((s) => s.borrowers.some((b) => b.id === ep.id && b.retrieved === 'yes')),
        );
      case 16:
        return call({
          fn: 'MEM_RECLAIM',
          handle: handleFor((s) => s.sender === ep.id && s.complete),
          flags: rng.pick([0, 0, 1]),
        });
      case 17:
      case 18: {
        const dest = rng.chance(0.8) ? rng.pick(this.sps).ep.id : anyId();
        const args = Array.from({ length: 14 }, () => rng.reg());
        if (v12 && rng.chance(0.4)) {
          const target = this.spmc.endpoint(dest);
          return call({ fn: 'MSG_SEND_DIRECT_REQ2', route: { source: ep.id, destination: dest }, uuid: target?.uuids[0] ?? UUID_NIL, args });
        }
        return call({
          fn: 'MSG_SEND_DIRECT_REQ',
          width: rng.pick([32, 64]),
          route: { source: ep.id, destination: dest },
          message: { kind: 'partition' },
          args: args.slice(0, 5),
        });
      }
      case 19:
      case 20: {
        const h = me?.handling;
        const route = { source: ep.id, destination: h ? h.origin.endpoint : anyId() };
        const args = Array.from({ length: 14 }, () => rng.reg());
        if (h?.kind === 'req2' || (!h && v12 && rng.chance(0.3))) return call({ fn: 'MSG_SEND_DIRECT_RESP2', route, args });
        return call({ fn: 'MSG_SEND_DIRECT_RESP', width: 64, route, message: { kind: 'partition' }, args: args.slice(0, 5) });
      }
      case 21:
        return call({ fn: 'MSG_WAIT', retainRx: v12 && rng.chance(0.2) });
      case 22:
        return call({ fn: 'YIELD', target: { endpoint: 0, vcpu: 0 }, timeout: 0n });
      case 23: {
        const sp = rng.pick(this.sps).ep;
        return call({ fn: 'RUN', target: { endpoint: rng.chance(0.9) ? sp.id : anyId(), vcpu: rng.int(sp.vcpuCount + 1) } });
      }
      case 24:
        return this.msgSend2(ep, anyId());
      case 25:
        return call({ fn: 'NOTIFICATION_BIND', route: { source: anyId(), destination: ep.id }, perVcpu: rng.chance(0.1), bitmap: this.bitmap() });
      case 26:
        return call({ fn: 'NOTIFICATION_UNBIND', route: { source: anyId(), destination: ep.id }, bitmap: this.bitmap() });
      case 27:
        return call({
          fn: 'NOTIFICATION_SET',
          route: { source: ep.id, destination: anyId() },
          perVcpu: false,
          delaySri: rng.chance(0.2),
          vcpu: 0,
          bitmap: this.bitmap(),
        });
      case 28:
        return rng.chance(0.6)
          ? call({
              fn: 'NOTIFICATION_GET',
              receiver: ep.id,
              vcpu: rng.int(2),
              bitmaps: { sp: true, vm: true, spmFramework: true, hypFramework: rng.chance(0.5) },
            })
          : call({ fn: 'NOTIFICATION_INFO_GET', width: 64 });
      default: {
        // Anything: a FID of the table (or not) and random registers.
        const x = Array.from({ length: 18 }, () => rng.reg());
        x[0] = rng.chance(0.9) ? BigInt(rng.pick(ALL_FUNCTION_IDS).fid) : rng.u64();
        return x;
      }
    }
  }

  private bitmap(): bigint {
    return this.rng.chance(0.5) ? 1n << BigInt(this.rng.int(64)) : this.rng.u64();
  }

  /** Write a descriptor to the caller's TX (its RAM base when it has none), mutated now and then. */
  private toTx(ep: Endpoint, bytes: Uint8Array): void {
    this.stats.descriptors++;
    let b = bytes;
    if (this.rng.chance(0.2)) {
      b = Uint8Array.from(b);
      const flips = 1 + this.rng.int(4);
      for (let i = 0; i < flips && b.length; i++) b[this.rng.int(b.length)] = this.rng.chance(0.5) ? this.rng.int(256) : b[this.rng.int(b.length)]! ^ 0xff;
    }
    const at = ep.mailbox?.tx ?? ep.ram.base;
    const room = ep.mailbox ? ep.mailbox.pageCount * FFA_PAGE_SIZE : FFA_PAGE_SIZE;
    this.spmc.writeMemory(ep.id, at, b.subarray(0, room));
  }

  /** Lengths as sent: right, or now and then off. */
  private length(n: number): number {
    if (!this.rng.chance(0.1)) return n;
    return this.rng.pick([0, n - 16, n + 16, n - 1, this.rng.int(1 << 16), 0xffffffff]) >>> 0;
  }

  private constituents(ep: Endpoint): Constituent[] {
    const rng = this.rng;
    const pages = Number(ep.ram.size / PAGE);
    const page = (n: number) => ep.ram.base + BigInt(n) * PAGE;
    if (rng.chance(0.08)) {
      // Many one-page constituents: the descriptor needs several fragments, and so does its retrieval.
      // Mostly from the largest run of pages it still owns, so that the send can succeed.
      const dataStart = page(DATA_FIRST_PAGE);
      const runs = ep.access.list().filter((r) => r.state === 'owned' && r.limit > dataStart);
      const best = runs.reduce<{ base: bigint; limit: bigint } | undefined>((a, r) => (!a || r.limit - r.base > a.limit - a.base ? r : a), undefined);
      const base = best && best.base > dataStart ? best.base : dataStart;
      const room = best && rng.chance(0.8) ? Number((best.limit - base) / PAGE) : 0;
      const n = room >= 100 ? Math.min(room, 150 + rng.int(200)) : 150 + rng.int(200);
      const first = room >= 100 ? base : page(DATA_FIRST_PAGE + rng.int(pages - DATA_FIRST_PAGE - n));
      return Array.from({ length: n }, (_, i) => ({ address: first + BigInt(i) * PAGE, pageCount: 1 }));
    }
    const out: Constituent[] = [];
    for (let i = 0, n = 1 + rng.int(3); i < n; i++) {
      const which = rng.int(20);
      if (which === 0) out.push({ address: rng.u64() & ~(PAGE - 1n), pageCount: 1 + rng.int(4) });
      else if (which === 1) {
        // Someone else's memory (or memory it has borrowed).
        const other = rng.pick([...this.vms, ...this.sps]).ep;
        out.push({ address: other.ram.base + BigInt(rng.int(Number(other.ram.size / PAGE))) * PAGE, pageCount: 1 + rng.int(3) });
      } else out.push({ address: page(DATA_FIRST_PAGE + rng.int(pages - DATA_FIRST_PAGE - 8)), pageCount: 1 + rng.int(4) });
    }
    // Borrowed pages, for a borrower that tries to pass them on.
    if (rng.chance(0.1)) {
      const r = ep.access.list().find((x) => x.state === 'borrowed');
      if (r) out.push({ address: r.base, pageCount: 1 });
    }
    return out;
  }

  private memSend(ep: Endpoint, fn: 'MEM_SHARE' | 'MEM_LEND' | 'MEM_DONATE'): Registers {
    const rng = this.rng;
    const n = fn === 'MEM_DONATE' && rng.chance(0.9) ? 1 : 1 + rng.int(3);
    const receivers = Array.from({ length: n }, () => {
      const to = rng.chance(0.7) ? rng.pick(this.sps).ep.id : rng.pick(this.vms).ep.id;
      const data = fn === 'MEM_DONATE' ? MEM_PERM.DATA_NOT_SPECIFIED : rng.pick([MEM_PERM.DATA_RW, MEM_PERM.DATA_RO]);
      return { receiver: rng.chance(0.05) ? rng.int(0x10000) : to, permissions: rng.chance(0.05) ? rng.int(256) : data };
    });
    const single = fn === 'MEM_DONATE' || (fn === 'MEM_LEND' && n === 1);
    const d = encodeMemTransaction(
      {
        sender: rng.chance(0.97) ? ep.id : rng.int(0x10000),
        attributes: rng.chance(0.05) ? rng.int(0x10000) : single ? 0 : MEM_ATTR_NORMAL_WB_IS,
        flags: rng.chance(0.1) ? (rng.chance(0.5) ? MEM_FLAGS.CLEAR : rng.int(1 << 12)) : 0,
        receivers,
        constituents: this.constituents(ep),
      },
      ep.version,
    );
    const room = ep.mailbox ? ep.mailbox.pageCount * FFA_PAGE_SIZE : FFA_PAGE_SIZE;
    const first = d.length <= room ? d.length : Math.floor(room / 16) * 16;
    this.toTx(ep, d.subarray(0, first));
    if (first < d.length) this.lastSend = { ep, rest: d.subarray(first) };
    return encodeCall(
      { fn, width: 64, totalLength: this.length(d.length), fragmentLength: this.length(first), buffer: { address: 0n, pageCount: 0 } },
      ep.version,
    );
  }

  private fragTx(ep: Endpoint): Registers {
    const i = this.sending.findIndex((s) => s.ep === ep);
    const s = i >= 0 ? this.sending[i]! : undefined;
    if (!s) return encodeCall({ fn: 'MEM_FRAG_TX', handle: this.rng.u64(), fragmentLength: 16 * this.rng.int(4), endpoint: 0 }, ep.version);
    const room = ep.mailbox ? ep.mailbox.pageCount * FFA_PAGE_SIZE : FFA_PAGE_SIZE;
    const len = Math.min(s.rest.length, Math.floor(room / 16) * 16);
    this.toTx(ep, s.rest.subarray(0, len));
    s.rest = s.rest.subarray(len);
    if (!s.rest.length) this.sending.splice(i, 1);
    return encodeCall({ fn: 'MEM_FRAG_TX', handle: s.handle, fragmentLength: this.length(len), endpoint: 0 }, ep.version);
  }

  private retrieve(ep: Endpoint, handle: bigint): Registers {
    const rng = this.rng;
    const share = this.spmc.state.shares.byHandle.get(handle);
    const type = share ? MEM_TRANSACTION_TYPES[share.type] << MEM_FLAGS.TYPE_SHIFT : 0;
    const perm =
      rng.pick([MEM_PERM.DATA_RW, MEM_PERM.DATA_RO, MEM_PERM.DATA_NOT_SPECIFIED]) |
      (rng.chance(0.3) ? MEM_PERM.INSTRUCTION_NX << MEM_PERM.INSTRUCTION_SHIFT : 0);
    const d = encodeMemTransaction(
      {
        sender: share?.sender ?? rng.int(0x10000),
        attributes: rng.chance(0.5) ? 0 : MEM_ATTR_NORMAL_WB_IS,
        flags: rng.chance(0.7) ? type : rng.int(1 << 11),
        handle,
        tag: 0n,
        receivers: [{ receiver: rng.chance(0.95) ? ep.id : rng.int(0x10000), permissions: perm }],
      },
      ep.version,
    );
    this.toTx(ep, d);
    const total = this.length(d.length);
    const fragment = this.rng.chance(0.05) ? this.length(d.length) : total;
    return encodeCall({ fn: 'MEM_RETRIEVE_REQ', width: 64, totalLength: total, fragmentLength: fragment, buffer: { address: 0n, pageCount: 0 } }, ep.version);
  }

  private relinquish(ep: Endpoint, handle: bigint): Registers {
    const endpoints = this.rng.chance(0.95) ? [ep.id] : [ep.id, this.rng.int(0x10000)];
    this.toTx(ep, encodeMemRelinquish({ handle, flags: this.rng.pick([0, 0, 1, this.rng.int(16)]), endpoints }));
    return encodeCall({ fn: 'MEM_RELINQUISH' }, ep.version);
  }

  private msgSend2(ep: Endpoint, to: EndpointId): Registers {
    const rng = this.rng;
    const headerSize = indirectMsgHeaderSize(ep.version);
    const payload = rng.bytes(rng.int(64));
    const offset = rng.chance(0.9) ? headerSize : rng.int(4200);
    this.toTx(
      ep,
      encodeIndirectMessage({ sender: rng.chance(0.95) ? ep.id : rng.int(0x10000), receiver: to, offset: Math.min(offset, 4000) }, payload, headerSize),
    );
    return encodeCall({ fn: 'MSG_SEND2', senderVmId: 0, delaySri: rng.chance(0.2) }, ep.version);
  }
}

/** Run `seed` for `steps` steps (or until `deadline`, a Date.now() value). */
export function fuzz(seed: number, steps: number, deadline = Infinity): FuzzStats {
  return new Fuzzer(seed).run(steps, () => Date.now() >= deadline);
}
