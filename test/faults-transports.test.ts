// Every fault action on every transport (in process, gRPC, the JSON transport), the rule APIs
// (HTTP /v1/faults behind the admin token, the gRPC Debug service), determinism (the same rules and
// seed give the same trace) and replay of a run with injections.

import * as grpc from '@grpc/grpc-js';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import {
  decodeMemTransaction,
  encodeMemRelinquish,
  encodeMemTransaction,
  errorCodeFromWord,
  FFA_ERRORS,
  FFA_PAGE_SIZE,
  FFA_VERSION_1_2,
  fid,
  joinU64,
  MEM_ATTR,
  MEM_FLAGS,
  MEM_PERM,
  MEM_TRANSACTION_TYPES,
  type Registers,
  U32,
} from '../proto/ffa/index.js';
import { FfaDriver } from '../client-driver/driver.js';
import { EmulatedVm } from '../client-driver/vm.js';
import { InProcessConnector } from '../server/session/in-process.js';
import { debugClientConstructor } from '../proto/wire.js';
import { parseTrace, replay } from '../server/debug/replay.js';
import type { TraceRecord } from '../server/debug/records.js';
import { formatRecord } from '../server/cli/trace.js';
import { CLOBBER_PATTERN } from '../server/faults/index.js';
import { buildHttpApp } from '../server/http/app.js';
import { defaultManifest } from '../server/manifest.js';
import { PARTITION_COMMANDS as CMD } from '../server/partitions/commands.js';
import { startBuiltinPartitions } from '../server/partitions/index.js';
import { SessionCore } from '../server/session/core.js';
import { Tokens } from '../server/session/tokens.js';
import { Spmc } from '../server/spmc/spmc.js';
import { FaultInjector } from '../server/faults/index.js';
import { modelReaches } from './helpers.js';
import { faultStack, fnOf, type RawCaller, rawVm, SP1, SP3, type Stack, TRANSPORTS } from './faults-stack.js';

const { BUSY, ABORTED } = FFA_ERRORS;
const errorOf = (r: Registers) => (fnOf(r) === fid('ERROR') ? errorCodeFromWord(r[2]!) : undefined);
const req = (c: RawCaller, to: number, w3: number = CMD.ECHO, ...rest: number[]) => [fid('MSG_SEND_DIRECT_REQ'), (c.id << 16) | to, 0, w3, ...rest];
const RESP = fid('MSG_SEND_DIRECT_RESP');
/** Two 16-bit IDs in one register (a secure ID high would make a 32-bit JS number negative). */
const pair = (hi: number, lo: number) => (BigInt(hi) << 16n) | BigInt(lo);

async function started(handleSeed = 0x5eedn, file?: string) {
  const partitions = defaultManifest();
  const spmc = new Spmc({ partitions, handleSeed });
  const s = await faultStack(spmc, file ? { file, session: { partitions, limits: spmc.state.limits, handleSeed } } : {});
  await startBuiltinPartitions(s.core, (id, e) => {
    throw new Error(`partition ${id} failed: ${String(e)}`);
  });
  return s;
}

/** Each action, as a VM on one transport meets it. */
const ACTIONS: Record<string, (s: Stack, c: RawCaller, t: Test) => Promise<void>> = {
  async error(s, c, t) {
    s.faults.load({ rules: [{ id: 'busy-twice', match: { caller: c.id, function: 'FFA_MSG_SEND_DIRECT_REQ' }, action: { error: 'BUSY' }, times: 2 }] });
    t.equal(errorOf(await c.invoke(req(c, SP1))), BUSY);
    t.equal(errorOf(await c.invoke(req(c, SP1))), BUSY);
    t.equal(fnOf(await c.invoke(req(c, SP1))), RESP, 'then it passes');
  },
  async preempt(s, c, t) {
    s.faults.load({ rules: [{ id: 'irq', match: { caller: c.id, target: SP3 }, action: { preempt: true }, times: 1 }] });
    const r = await c.invoke(req(c, SP3, CMD.ECHO, 11));
    t.equal(fnOf(r), fid('INTERRUPT'));
    t.equal(r[1], BigInt(SP3) << 16n);
    const resp = await c.invoke([fid('RUN'), r[1]!]);
    t.equal(fnOf(resp), RESP);
    t.equal(resp[4], 11n);
  },
  async yield(s, c, t) {
    s.faults.load({ rules: [{ id: 'yld', match: { caller: SP3, function: 'MSG_SEND_DIRECT_RESP' }, action: { yield: true }, times: 1 }] });
    const r = await c.invoke(req(c, SP3, CMD.ECHO, 12));
    t.equal(fnOf(r), fid('YIELD'));
    const resp = await c.invoke([fid('RUN'), r[1]!]);
    t.equal(fnOf(resp), RESP);
    t.equal(resp[4], 12n);
  },
  async delay(s, c, t) {
    s.faults.load({ rules: [{ id: 'slow', match: { caller: c.id, function: 'ID_GET' }, action: { delay: 5 } }] });
    const r = await c.invoke([fid('ID_GET')]);
    t.equal(r[2], BigInt(c.id), 'the answer, later');
  },
  async clobber(s, c, t) {
    s.faults.load({ rules: [{ id: 'x8', match: { caller: c.id }, action: { clobber: true } }] });
    const r = await c.invoke([fid('ID_GET')]);
    t.equal(r[2], BigInt(c.id));
    t.equal(r[8], CLOBBER_PATTERN | 8n);
    t.equal(r[17], CLOBBER_PATTERN | 17n);
  },
  async abort(s, c, t) {
    s.faults.load({ rules: [{ id: 'die', match: { caller: c.id, target: SP3 }, action: { abort: 'target' }, times: 1 }] });
    t.equal(errorOf(await c.invoke(req(c, SP3))), ABORTED);
    t.equal(errorOf(await c.invoke(req(c, SP3))), BUSY, 'afterwards BUSY (the default)');
  },
  async holdRxFull(s, c, t) {
    t.equal(fnOf(await c.invoke([fid('RXTX_MAP', 64), c.ramBase, c.ramBase + 0x1000n, 1])), fid('SUCCESS'));
    s.faults.load({ rules: [{ id: 'full', match: { caller: c.id, function: 'PARTITION_INFO_GET' }, action: { holdRxFull: 'caller' } }] });
    t.equal(errorOf(await c.invoke([fid('PARTITION_INFO_GET'), 0, 0, 0, 0, 0])), BUSY);
    s.faults.clear();
    t.equal(fnOf(await c.invoke([fid('PARTITION_INFO_GET'), 0, 0, 0, 0, 0])), fid('SUCCESS'));
  },
  async notification(s, c, t) {
    t.equal((await c.invoke(req(c, SP1, CMD.BIND, c.id, 0b11, 0)))[4], 0n, 'SP1 binds the VM');
    const pending = () => s.spmc.endpoint(SP1)!.notifications.fromVm.pending;
    const before = pending();
    s.faults.load({ rules: [{ id: 'drop', match: { caller: c.id }, action: { notification: 'drop' }, times: 1 }] });
    t.equal(fnOf(await c.invoke([fid('NOTIFICATION_SET'), (c.id << 16) | SP1, 0, 0b1, 0])), fid('SUCCESS'));
    t.equal(pending(), before, 'dropped');
    s.faults.load({ rules: [{ id: 'late', match: { caller: c.id }, action: { notification: { delay: 5 } }, times: 1 }] });
    t.equal(fnOf(await c.invoke([fid('NOTIFICATION_SET'), (c.id << 16) | SP1, 0, 0b10, 0])), fid('SUCCESS'));
    await modelReaches(s.spmc, () => (pending() & 0b10n) !== 0n);
    t.pass('delivered later');
  },
  async sri(s, c, t) {
    t.equal(fnOf(await c.invoke([fid('NOTIFICATION_BIND'), pair(SP1, c.id), 0, 1, 0])), fid('SUCCESS'));
    let sris = 0;
    const stop = s.spmc.observe({ interrupt: (id) => void (id === c.id && sris++) });
    t.teardown(stop);
    s.faults.load({ rules: [{ id: 'no-sri', match: { caller: SP1, target: c.id }, action: { sri: 'drop' }, times: 1 }] });
    t.equal((await c.invoke(req(c, SP1, CMD.NOTIFY, c.id, 1, 0)))[4], 0n, 'SP1 set it');
    t.equal(sris, 0, 'no SRI');
  },
  async fragmentCap(s, c, t) {
    // An owner in process shares eight scattered pages with this VM; capped at 128 bytes, the retrieve
    // response needs several MEM_FRAG_RX/MEM_FRAG_TX steps, which the VM takes over its transport.
    const owner = new FfaDriver(await EmulatedVm.attach(new InProcessConnector(s.spmc), { name: `frag-owner-${c.via}` }));
    await owner.init();
    t.teardown(() => owner.exit());
    const base = owner.vm.pages.alloc(16)!;
    const regions = Array.from({ length: 8 }, (_, i) => ({ address: base + BigInt(2 * i * FFA_PAGE_SIZE), pageCount: 1 }));
    const handle = await owner.memShare({ receivers: [{ id: c.id, permissions: MEM_PERM.DATA_RW }], regions });
    const tx = c.ramBase;
    const rx = c.ramBase + BigInt(FFA_PAGE_SIZE);
    t.equal(fnOf(await c.invoke([fid('RXTX_MAP', 64), tx, rx, 1])), fid('SUCCESS'));
    s.faults.load({ rules: [{ id: 'frag', match: { caller: c.id }, action: { fragmentCap: 128 } }] });
    const request = encodeMemTransaction(
      {
        sender: owner.vmId,
        attributes: MEM_ATTR.TYPE_NOT_SPECIFIED,
        flags: MEM_TRANSACTION_TYPES.share << MEM_FLAGS.TYPE_SHIFT,
        handle,
        tag: 0n,
        receivers: [{ receiver: c.id, permissions: MEM_PERM.DATA_RW }],
      },
      FFA_VERSION_1_2,
    );
    await c.write(tx, request);
    const first = await c.invoke([fid('MEM_RETRIEVE_REQ', 64), request.length, request.length, 0, 0]);
    t.equal(fnOf(first), fid('MEM_RETRIEVE_RESP'));
    const total = Number(first[1]! & U32);
    let fragment = Number(first[2]! & U32);
    t.ok(fragment <= 128 && fragment < total, `first fragment ${fragment} of ${total} bytes, within the cap`);
    const response = new Uint8Array(total);
    let got = 0;
    let steps = 0;
    for (;;) {
      response.set(await c.read(rx, fragment), got);
      got += fragment;
      steps++;
      t.equal(fnOf(await c.invoke([fid('RX_RELEASE')])), fid('SUCCESS'));
      if (got === total) break;
      const next = await c.invoke([fid('MEM_FRAG_RX'), handle & U32, handle >> 32n, got, 0]);
      t.equal(fnOf(next), fid('MEM_FRAG_TX'), `MEM_FRAG_RX at offset ${got}`);
      t.equal(joinU64(next[1]!, next[2]!), handle, 'the handle comes back');
      fragment = Number(next[3]! & U32);
      if (fragment === 0 || fragment > 128) {
        t.fail(`fragment of ${fragment} bytes`);
        return;
      }
    }
    t.ok(steps > 1, `${steps} fragments`);
    t.equal(decodeMemTransaction(response, FFA_VERSION_1_2).handle, handle, 'the fragments make one retrieve response');
    s.faults.clear();
    await c.write(tx, encodeMemRelinquish({ handle, flags: 0, endpoints: [c.id] }));
    t.equal(fnOf(await c.invoke([fid('MEM_RELINQUISH')])), fid('SUCCESS'));
    await owner.memReclaim(handle);
  },
};

for (const kind of TRANSPORTS) {
  t.test(`every action over ${kind}`, async (t) => {
    const s = await started();
    t.teardown(s.stop);
    for (const [name, run] of Object.entries(ACTIONS)) {
      await t.test(name, async (t) => {
        const c = await rawVm(s, kind, `${kind}-${name}`);
        await run(s, c, t);
        s.faults.clear();
        await s.tracer.drained();
        const marked = s.tracer.recent({}, 10000).filter((r) => r.kind === 'call' && r.injected !== undefined && (r.endpoint === c.id || r.endpoint >= 0x8000));
        t.ok(marked.length > 0, 'the trace marks the injected answers');
      });
    }
  });
}

t.test('HTTP /v1/faults: list, add, replace, remove; bad rules are 400 naming the field; behind the admin token', async (t) => {
  const spmc = new Spmc({ partitions: defaultManifest() });
  const core = SessionCore.for(spmc);
  const faults = new FaultInjector(core);
  faults.install();
  const app = await buildHttpApp({ core, faults, tokens: new Tokens({ admin: 'let-me-in' }) });
  t.teardown(() => app.close());
  const go = async (method: string, url: string, body?: unknown, token = 'let-me-in') => {
    const r = await app.inject({ method: method as 'GET', url, payload: body as object, headers: token ? { authorization: `Bearer ${token}` } : {} });
    return { status: r.statusCode, body: r.body ? (JSON.parse(r.body) as Record<string, unknown>) : {} };
  };
  t.equal((await go('GET', '/v1/faults', undefined, '')).status, 401, 'no token: refused');
  t.equal((await go('POST', '/v1/faults', { id: 'x', action: { error: 'BUSY' } }, 'wrong')).status, 401);
  t.same((await go('GET', '/v1/faults')).body, { seed: 0, rules: [] });
  const added = await go('POST', '/v1/faults', {
    id: 'busy-twice',
    match: { caller: 1, function: 'FFA_MSG_SEND_DIRECT_REQ' },
    action: { error: 'BUSY' },
    times: 2,
  });
  t.equal(added.status, 201);
  t.equal((added.body.rules as { rule: { id: string } }[])[0]!.rule.id, 'busy-twice');
  const bad = await go('POST', '/v1/faults', { id: 'b', action: { error: 'BUSYY' } });
  t.equal(bad.status, 400);
  t.match(bad.body.message, /rule.action.error: "BUSYY" is not an FF-A error name/);
  t.equal((await go('POST', '/v1/faults', { id: 'busy-twice', action: { error: 'BUSY' } })).status, 409, 'an id in use');
  const replaced = await go('POST', '/v1/faults', {
    seed: 9,
    rules: [
      { id: 'a', action: { delay: 1 } },
      { id: 'b', action: { clobber: true } },
    ],
  });
  t.equal(replaced.status, 201);
  t.equal(replaced.body.seed, 9);
  t.equal((await go('DELETE', '/v1/faults/a')).status, 200);
  t.equal((await go('DELETE', '/v1/faults/a')).status, 404);
  t.equal(((await go('GET', '/v1/faults')).body.rules as unknown[]).length, 1);
  t.equal(((await go('DELETE', '/v1/faults')).body.rules as unknown[]).length, 0);
});

t.test('gRPC Debug: FaultList, FaultAdd, FaultRemove', async (t) => {
  const s = await started();
  t.teardown(s.stop);
  const Debug = debugClientConstructor();
  const client = new Debug(s.grpcAddr, grpc.credentials.createInsecure()) as unknown as Record<
    string,
    (req: object, cb: (e: grpc.ServiceError | null, r: { json: string }) => void) => void
  >;
  t.teardown(() => (client as unknown as grpc.Client).close());
  const rpc = (name: string, req: object) =>
    new Promise<{ err: grpc.ServiceError | null; set?: { seed: number; rules: { rule: { id: string }; fired: number }[] } }>((resolve) =>
      client[name]!.call(client, req, (err, r) => resolve({ err, set: r ? JSON.parse(r.json) : undefined })),
    );
  const added = await rpc('FaultAdd', { rule_json: JSON.stringify({ id: 'g', match: { function: 'ID_GET' }, action: { error: 'DENIED' }, times: 1 }) });
  t.equal(added.err, null);
  t.equal(added.set!.rules[0]!.rule.id, 'g');
  const c = await rawVm(s, 'grpc');
  t.equal(errorOf(await c.invoke([fid('ID_GET')])), FFA_ERRORS.DENIED);
  t.equal((await rpc('FaultList', {})).set!.rules[0]!.fired, 1);
  const bad = await rpc('FaultAdd', { rule_json: '{"id":"h","action":{"preempt":1}}' });
  t.equal(bad.err?.code, grpc.status.INVALID_ARGUMENT);
  t.match(bad.err?.details, /rule.action.preempt: must be true/);
  t.equal((await rpc('FaultAdd', { rule_json: 'not json' })).err?.code, grpc.status.INVALID_ARGUMENT);
  // Debug.Trace carries the mark in its own field.
  const stream = (client as unknown as Record<string, (req: object) => grpc.ClientReadableStream<{ injected: string; function: string }>>)['Trace']!({
    recent: 1000,
  });
  const marked = await new Promise<{ injected: string; function: string }>((resolve) =>
    stream.on('data', (r: { injected: string; function: string }) => r.injected && resolve(r)),
  );
  stream.cancel();
  stream.on('error', () => {});
  t.same([marked.injected, marked.function], ['g', 'FFA_ID_GET']);
  t.equal((await rpc('FaultRemove', { id: 'nope' })).err?.code, grpc.status.NOT_FOUND);
  t.equal((await rpc('FaultRemove', { id: 'g' })).set!.rules.length, 0);
});

/** A scripted run with rules that use every kind of decision; its trace, without times and latencies. */
async function scriptedRun(seed: number, file?: string) {
  const s = await started(0x5eedn, file);
  s.faults.load({
    seed,
    rules: [
      { id: 'coin', match: { function: 'ID_GET', probability: 0.5 }, action: { error: 'BUSY' } },
      { id: 'every3', match: { function: 'MSG_SEND_DIRECT_REQ', target: SP1, every: 3 }, action: { preempt: true } },
      { id: 'yld', match: { caller: SP3, function: 'MSG_SEND_DIRECT_RESP', nth: 2 }, action: { yield: true } },
      { id: 'x8', match: { function: 'FEATURES' }, action: { clobber: true } },
      { id: 'slow', match: { function: 'SPM_ID_GET' }, action: { delay: 1 } },
      { id: 'die', match: { target: 0x8004 }, action: { abort: 'target', afterwards: 'INVALID_PARAMETERS' }, times: 1 },
      { id: 'drop', match: { function: 'NOTIFICATION_SET', caller: 0x8002 }, action: { notification: 'drop' } },
    ],
  });
  const c = await rawVm(s, 'in-process', 'scripted');
  const loop = async (r: Registers): Promise<Registers> => {
    while (fnOf(r) === fid('INTERRUPT') || fnOf(r) === fid('YIELD')) r = await c.invoke([fid('RUN'), r[1]!]);
    return r;
  };
  await c.invoke([fid('NOTIFICATION_BIND'), pair(0x8002, c.id), 0, 1, 0]);
  for (let i = 0; i < 12; i++) {
    // Rules change mid-run: the others keep their counters and what they did (the abort).
    if (i === 6) {
      s.faults.remove('x8');
      s.faults.add({ id: 'late-busy', match: { function: 'SPM_ID_GET', every: 2 }, action: { error: 'BUSY' } });
    }
    await c.invoke([fid('ID_GET')]);
    await loop(await c.invoke(req(c, SP1, CMD.ECHO, i)));
    await loop(await c.invoke(req(c, SP3, CMD.ECHO, i)));
    await c.invoke([fid('FEATURES'), fid('RUN')]);
    await c.invoke([fid('SPM_ID_GET')]);
    await c.invoke(req(c, 0x8004));
    await c.invoke(req(c, 0x8002, CMD.NOTIFY, c.id, 1, 0));
  }
  await s.tracer.drained();
  const records = s.tracer.recent({}, 100000).map((r) => {
    const { time: _t, ...rest } = r as TraceRecord & { latencyUs?: number };
    delete (rest as { latencyUs?: number }).latencyUs;
    return JSON.stringify(rest);
  });
  await s.stop();
  return records;
}

t.test('determinism: the same rules and seed give the same trace; another seed another', async (t) => {
  const a = await scriptedRun(1);
  const b = await scriptedRun(1);
  t.ok(a.length > 100, `${a.length} records`);
  t.same(b, a, 'identical traces');
  t.ok(a.filter((r) => r.includes('"injected"')).length > 10, 'with many injections');
  const other = await scriptedRun(2);
  t.not(JSON.stringify(other), JSON.stringify(a), 'another seed draws other calls');
});

t.test('replay of a run with injections matches, and `remote-spmc trace` prints the marks', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rspmc-faults-'));
  const file = join(dir, 'run.jsonl');
  await scriptedRun(3, file);
  const { header, records } = parseTrace(readFileSync(file, 'utf8'), file);
  const marked = records.filter((r) => r.kind === 'call' && r.injected);
  t.ok(marked.length > 10, `${marked.length} injected answers in the file`);
  t.ok(
    records.some((r) => r.kind === 'faults' && r.rules.length === 7),
    'the rules are in the trace',
  );
  const report = replay(header, records);
  t.equal(report.difference, undefined, JSON.stringify(report.difference));
  const immediate = records.filter((r) => r.kind === 'call' && !r.blocked).length;
  const returns = records.filter((r) => r.kind === 'return').length;
  t.equal(report.matched, immediate + returns, 'every answer compared equal');
  const line = formatRecord(marked[0]!, false);
  t.match(line, /\[injected: [a-z0-9-]+\]/);
  // A trace whose mark names a rule the replay does not have is a difference, not a crash.
  const tampered = records.map((r) => (r === marked[0] ? { ...r, injected: 'no-such-rule' } : r));
  t.ok(replay(header, tampered as TraceRecord[]).difference, 'a wrong mark is a difference');
});
