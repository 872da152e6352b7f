// The server's limits (serve's flags, README "Limits"): each is refused with its reason, as
// RESOURCE_EXHAUSTED on the transport or NO_MEMORY in FF-A, and /metrics shows each one.

import * as grpc from '@grpc/grpc-js';
import t from 'tap';
import {
  encodeCall,
  encodeMemTransaction,
  FFA_ERRORS,
  FFA_PAGE_SIZE,
  type FfaCall,
  joinU64,
  MEM_ATTR_NORMAL_WB_IS,
  MEM_PERM,
  type MemDescriptorInit,
} from '../proto/ffa/index.js';
import { debugClientConstructor } from '../proto/wire.js';
import { Tracer } from '../server/debug/tracer.js';
import { SpmcGrpcServer } from '../server/grpc/server.js';
import { buildHttpApp } from '../server/http/app.js';
import { SessionCore } from '../server/session/core.js';
import { statusOf } from '../server/session/status.js';
import type { Spmc } from '../server/spmc/spmc.js';
import { errorOf, newSpmc, RawVm, startedSpmc, thrownKind } from './helpers.js';

const { NO_MEMORY } = FFA_ERRORS;
const PAGE = BigInt(FFA_PAGE_SIZE);
const RW = MEM_PERM.DATA_RW;

/** A VM with a one-page mailbox at the start of its RAM, sending descriptors from its TX buffer. */
class Sender extends RawVm {
  static make(spmc: Spmc): Sender {
    const vm = new Sender(spmc, RawVm.attach(spmc).id);
    vm.mapMailbox(1);
    return vm;
  }
  desc(to: number, page: number, d: Partial<MemDescriptorInit> = {}): Uint8Array {
    const constituents = [{ address: this.ramBase + 0x100000n + BigInt(page) * PAGE, pageCount: 1 }];
    return encodeMemTransaction(
      { sender: this.id, attributes: MEM_ATTR_NORMAL_WB_IS, flags: 0, receivers: [{ receiver: to, permissions: RW }], constituents, ...d },
      this.version,
    );
  }
  send(bytes: Uint8Array, total = bytes.length, frag = total): FfaCall {
    this.spmc.writeMemory(this.id, this.ramBase, bytes);
    return this.call({ fn: 'MEM_SHARE', width: 64, totalLength: total, fragmentLength: frag, buffer: { address: 0n, pageCount: 0 } });
  }
}

/** MEM_SHARE's registers, for asking the model why it refused them. */
const shareRegs = (vm: RawVm, total: number, frag: number) =>
  encodeCall({ fn: 'MEM_SHARE', width: 64, totalLength: total, fragmentLength: frag, buffer: { address: 0n, pageCount: 0 } }, vm.version);

const handleOf = (c: FfaCall): bigint => {
  if (c.fn !== 'SUCCESS') throw new Error(`expected SUCCESS, got FFA_${c.fn}`);
  return joinU64(c.args[0]!, c.args[1]!);
};

t.test('attach: VMs, vCPUs and RAM per VM past their limits are RESOURCE_EXHAUSTED, saying which', async (t) => {
  const spmc = newSpmc({ maxVms: 1, maxVcpus: 4, maxRamBytes: 8n << 20n });
  const status = (fn: () => unknown) => {
    try {
      fn();
      return undefined;
    } catch (e) {
      return statusOf(e);
    }
  };
  const vcpus = status(() => spmc.attach({ vcpuCount: 5 }));
  t.equal(vcpus?.status, 'RESOURCE_EXHAUSTED');
  t.match(vcpus?.message, /vcpu_count 5 .*limit of 4 vCPUs per VM/);
  t.equal(
    thrownKind(() => spmc.attach({ vcpuCount: 65 })),
    'invalid-argument',
    'past 64 the count is malformed, not a limit',
  );
  const ram = status(() => spmc.attach({ ramBytes: 9n << 20n }));
  t.equal(ram?.status, 'RESOURCE_EXHAUSTED');
  t.match(ram?.message, /ram_bytes 0x900000 .*limit of 0x800000 bytes per VM/);
  spmc.attach({ vcpuCount: 4, ramBytes: 8n << 20n });
  const vms = status(() => spmc.attach({ ramBytes: 8n << 20n }));
  t.equal(vms?.status, 'RESOURCE_EXHAUSTED');
  t.match(vms?.message, /at most 1 VMs/);
});

t.test('stored guest RAM: a write that needs a page past the limit is RESOURCE_EXHAUSTED and writes nothing', async (t) => {
  const spmc = newSpmc({ maxStoredBytes: 4n * PAGE });
  const a = RawVm.attach(spmc);
  const b = RawVm.attach(spmc);
  const core = SessionCore.for(spmc);
  const session = core.attach({});
  const c = core.session(session.session);
  const base = spmc.state.memory.storedBytes;
  t.equal(base, 0n, 'nothing stored before the first non-zero write');
  spmc.writeMemory(a.id, a.ramBase, new Uint8Array(3 * FFA_PAGE_SIZE).fill(1));
  t.equal(spmc.state.memory.storedBytes, 3n * PAGE);
  spmc.writeMemory(b.id, b.ramBase, new Uint8Array(8 * FFA_PAGE_SIZE)); // zeros store nothing
  spmc.writeMemory(a.id, a.ramBase + 16n, new Uint8Array(100).fill(2)); // nor does rewriting a stored page
  t.equal(spmc.state.memory.storedBytes, 3n * PAGE);
  let refused: unknown;
  try {
    core.writeMemory(c, session.ramBase, new Uint8Array(2 * FFA_PAGE_SIZE).fill(3));
  } catch (e) {
    refused = e;
  }
  const { status, message } = statusOf(refused);
  t.equal(status, 'RESOURCE_EXHAUSTED');
  t.match(message, /guest RAM store full: .*needs 2 new pages past the 0x4000-byte limit \(0x3000 stored\)/);
  t.equal(spmc.state.memory.storedBytes, 3n * PAGE, 'the refused write stored nothing');
  t.same(spmc.readMemory(session.endpointId, session.ramBase, 4), new Uint8Array(4), 'and wrote nothing');
  spmc.writeMemory(b.id, b.ramBase, new Uint8Array(FFA_PAGE_SIZE).fill(4));
  t.equal(spmc.state.memory.storedBytes, 4n * PAGE, 'up to the limit is fine');
});

t.test('memory transactions per endpoint: one more is NO_MEMORY (Hafnium: allocate_share_state), others may still send', async (t) => {
  const spmc = await startedSpmc({ maxTransactionsPerEndpoint: 2 });
  const a = Sender.make(spmc);
  const b = Sender.make(spmc);
  const h = handleOf(a.send(a.desc(b.id, 0)));
  handleOf(a.send(a.desc(b.id, 1)));
  const out = a.send(a.desc(b.id, 2));
  t.equal(errorOf(out), NO_MEMORY);
  handleOf(b.send(b.desc(a.id, 0)));
  t.equal(a.call({ fn: 'MEM_RECLAIM', handle: h, flags: 0 }).fn, 'SUCCESS');
  handleOf(a.send(a.desc(b.id, 2)));
  t.equal(spmc.state.shares.countBySender(a.id), 2);
});

t.test('the refusal of a transaction past the per-endpoint limit says why', async (t) => {
  const spmc = await startedSpmc({ maxTransactionsPerEndpoint: 1 });
  const a = Sender.make(spmc);
  const b = Sender.make(spmc);
  handleOf(a.send(a.desc(b.id, 0)));
  const bytes = a.desc(b.id, 1);
  spmc.writeMemory(a.id, a.ramBase, bytes);
  const out = a.regs(shareRegs(a, bytes.length, bytes.length));
  t.equal(spmc.reasonFor(out)?.code, 'mem_share.endpoint_share_states');
  t.match(spmc.reasonFor(out)?.text, /already has 1 memory transactions in progress/);
});

t.test('descriptor size: a total length past the limit is NO_MEMORY where Hafnium allocates its copy (api_ffa_mem_send)', async (t) => {
  const spmc = await startedSpmc({ maxDescriptorBytes: 8000 });
  const a = Sender.make(spmc);
  const b = Sender.make(spmc);
  const bytes = a.desc(b.id, 0);
  spmc.writeMemory(a.id, a.ramBase, bytes);
  const out = a.regs(shareRegs(a, 8016, bytes.length)); // w1, the total length, past the limit
  t.equal(spmc.reasonFor(out)?.code, 'mem_share.descriptor_too_long');
  t.match(spmc.reasonFor(out)?.text, /total length 8016 is above this server's limit of 8000 bytes/);
  t.equal(spmc.state.shares.size, 0, 'nothing kept');
  // A descriptor within the limit in two fragments, then a MEM_FRAG_TX with more constituents than
  // it announced (Hafnium does not check that) that would grow it past the limit.
  const constituents = Array.from({ length: 360 }, (_, i) => ({ address: a.ramBase + 0x100000n + BigInt(i * 2) * PAGE, pageCount: 1 }));
  const big = a.desc(b.id, 0, { constituents });
  t.ok(big.length > 4096 && big.length < 8000);
  const first = a.send(big.subarray(0, 4096), big.length, 4096);
  t.equal(first.fn, 'MEM_FRAG_RX', 'the announced total is within the limit');
  const handle = first.fn === 'MEM_FRAG_RX' ? first.handle : 0n;
  const rest = new Uint8Array(4096);
  rest.set(big.subarray(4096));
  spmc.writeMemory(a.id, a.ramBase, rest);
  const frag = a.regs(encodeCall({ fn: 'MEM_FRAG_TX', handle, fragmentLength: 4096, endpoint: 0 }, a.version));
  t.equal(spmc.reasonFor(frag)?.code, 'mem_frag_tx.descriptor_too_long');
  t.match(spmc.reasonFor(frag)?.text, /would grow to 8192 bytes, above this server's limit of 8000 bytes per descriptor; it is dropped/);
  t.equal(spmc.state.shares.size, 0, 'the transaction is dropped');
});

async function servers(limits: { maxSubscribers?: number; maxHttpSessions?: number }) {
  const spmc = newSpmc();
  const core = SessionCore.for(spmc);
  const tracer = new Tracer(core, { maxSubscribers: limits.maxSubscribers });
  const grpcServer = new SpmcGrpcServer(core);
  grpcServer.addDebug(tracer);
  const grpcAddr = `127.0.0.1:${await grpcServer.listen('127.0.0.1:0')}`;
  const app = await buildHttpApp({ core, tracer, maxHttpSessions: limits.maxHttpSessions });
  t.teardown(async () => {
    await app.close();
    await grpcServer.stop(200);
    await tracer.close();
  });
  return { spmc, core, tracer, app, grpcAddr };
}

const thrownStatus = (fn: () => unknown): string | undefined => {
  try {
    fn();
    return undefined;
  } catch (e) {
    return statusOf(e).status;
  }
};

type DebugClient = grpc.Client & Record<string, (req: object) => grpc.ClientReadableStream<{ json: string }>>;

t.test('trace subscribers: one more is 429 on SSE and RESOURCE_EXHAUSTED on gRPC, with why', async (t) => {
  const { tracer, app, grpcAddr } = await servers({ maxSubscribers: 1 });
  const stop = tracer.subscribe({ errorsOnly: false }, () => {});
  t.equal(tracer.subscriberCount, 1);
  t.equal(
    thrownStatus(() => tracer.subscribe({ errorsOnly: false }, () => {})),
    'RESOURCE_EXHAUSTED',
  );
  const sse = await app.inject({ method: 'GET', url: '/v1/trace' });
  t.equal(sse.statusCode, 429);
  t.same(sse.json(), { error: 'RESOURCE_EXHAUSTED', message: "trace: 1 live subscribers already, this server's limit" });
  const Client = debugClientConstructor();
  const dbg = new Client(grpcAddr, grpc.credentials.createInsecure()) as DebugClient;
  t.teardown(() => dbg.close());
  const stream = dbg['Trace']!({});
  const err = await new Promise<grpc.ServiceError>((resolve) => stream.on('error', resolve));
  t.equal(err.code, grpc.status.RESOURCE_EXHAUSTED);
  t.match(err.details, /1 live subscribers already/);
  stop();
  t.equal(tracer.subscriberCount, 0, 'a subscriber that leaves frees its place');
});

t.test('HTTP sessions: one more JSON attach is 429 RESOURCE_EXHAUSTED; a detach frees a place', async (t) => {
  const { core, app } = await servers({ maxHttpSessions: 2 });
  const attach = () => app.inject({ method: 'POST', url: '/v1/attach', payload: {} });
  const first = (await attach()).json() as { session: string };
  t.equal((await attach()).statusCode, 200);
  core.attach({}); // a session on another transport does not count
  const third = await attach();
  t.equal(third.statusCode, 429);
  t.same(third.json(), { error: 'RESOURCE_EXHAUSTED', message: "attach: 2 sessions are attached through the JSON transport already, this server's limit" });
  core.detach(first.session); // released on any transport
  t.equal((await attach()).statusCode, 200);
});

t.test('/metrics shows each limit and its use', async (t) => {
  const { spmc, tracer, app } = await servers({ maxSubscribers: 7, maxHttpSessions: 5 });
  const vm = await app.inject({ method: 'POST', url: '/v1/attach', payload: { vcpuCount: 3 } });
  t.equal(vm.statusCode, 200);
  const id = (vm.json() as { endpointId: number }).endpointId;
  spmc.writeMemory(id, spmc.endpoint(id)!.ram.base, new Uint8Array([1]));
  const stop = tracer.subscribe({ errorsOnly: false }, () => {});
  t.teardown(stop);
  const text = (await app.inject({ method: 'GET', url: '/metrics' })).body;
  const gauge = (metric: string, name: string) => {
    const m = new RegExp(`^${metric}\\{name="${name}"\\} (\\S+)$`, 'm').exec(text);
    return m ? Number(m[1]) : undefined;
  };
  const limits: [string, number, number | undefined][] = [
    ['vms', 256, 1],
    ['vcpus_per_vm', 64, 3],
    ['ram_bytes_per_vm', 64 * 2 ** 30, 64 * 2 ** 20],
    ['stored_ram_bytes', 2 ** 30, FFA_PAGE_SIZE],
    ['memory_transactions', 256, 0],
    ['memory_transactions_per_endpoint', 64, 0],
    ['descriptor_bytes', 2 ** 20, undefined],
    ['borrowers_per_transaction', 4, undefined],
    ['fragments_per_transaction', 20, undefined],
    ['rxtx_pages', 16, undefined],
    ['trace_subscribers', 7, 1],
    ['http_sessions', 5, 1],
  ];
  for (const [name, limit, used] of limits) {
    t.equal(gauge('remote_spmc_limit', name), limit, `${name} limit`);
    t.equal(gauge('remote_spmc_limit_used', name), used, `${name} used`);
  }
});
