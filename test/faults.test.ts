// Fault rules: the format and its errors, the matcher (caller, vCPU, function at any width, target,
// argument values, nth, every nth, seeded probability, time window), and each action on the model
// in process, with the `injected` mark in the trace.

import t from 'tap';
import { parse } from 'yaml';
import { errorCodeFromWord, FFA_ERRORS, fid, type Registers, toRegisters, U32 } from '../proto/ffa/index.js';
import { PARTITION_COMMANDS as CMD } from '../server/partitions/commands.js';
import { Tracer } from '../server/debug/tracer.js';
import { FaultInjector, FaultRuleError, parseRuleSet, CLOBBER_PATTERN, traceFaults } from '../server/faults/index.js';
import { SessionCore } from '../server/session/core.js';
import { isPending } from '../server/spmc/pending.js';
import { modelReaches, newSpmc, RawVm, startedSpmc } from './helpers.js';
import { startBuiltinPartitions } from '../server/partitions/index.js';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_MANIFEST_YAML, parseManifest } from '../server/manifest.js';
import { parseTrace, replay } from '../server/debug/replay.js';
import { Spmc } from '../server/spmc/spmc.js';

const { BUSY, ABORTED, DENIED, INVALID_PARAMETERS } = FFA_ERRORS;
const SP1 = 0x8001;
const SP3 = 0x8003;
const errorOf = (r: Registers) => (Number(r[0]! & U32) === fid('ERROR') ? errorCodeFromWord(r[2]!) : undefined);
const directReq = (vm: RawVm, to: number, w3: number = CMD.ECHO, w4 = 0): (bigint | number)[] => [fid('MSG_SEND_DIRECT_REQ'), (vm.id << 16) | to, 0, w3, w4];

/** A started model (built-in partitions serving), its core with a tracer and an injector. */
async function setup(clock?: () => number) {
  const spmc = newSpmc();
  const core = SessionCore.for(spmc, clock ? { clock } : {});
  await startBuiltinPartitions(core, (id, e) => {
    throw new Error(`partition ${id} failed: ${String(e)}`);
  });
  const tracer = new Tracer(core);
  const faults = new FaultInjector(core);
  faults.install();
  const vm = RawVm.attach(spmc, { vcpuCount: 2 });
  const call = async (x: (bigint | number)[], vcpu = 0) => {
    const out = core.handle(vm.id, vcpu, x.map(BigInt), 'test');
    return isPending(out) ? await out.answer : out;
  };
  t.teardown(() => tracer.close());
  return { spmc, core, tracer, faults, vm, call };
}

t.test('the minimal rule of the issue, verbatim', async (t) => {
  const spmc = await startedSpmc();
  const faults = new FaultInjector(SessionCore.for(spmc));
  faults.install();
  faults.load(
    parse(`
rules:
  - id: busy-twice
    match: { caller: 1, function: FFA_MSG_SEND_DIRECT_REQ }
    action: { error: BUSY }
    times: 2
`),
  );
  const vm = RawVm.attach(spmc);
  t.equal(vm.id, 1);
  const core = SessionCore.for(spmc);
  const req = () => core.handle(vm.id, 0, toRegisters(directReq(vm, SP1, CMD.ECHO, 7)), 'test');
  const answer = async () => {
    const out = req();
    return isPending(out) ? await out.answer : out;
  };
  t.equal(errorOf(await answer()), BUSY);
  t.equal(errorOf(await answer()), BUSY);
  const third = await answer();
  t.equal(Number(third[0]! & U32), fid('MSG_SEND_DIRECT_RESP'), 'the third passes through');
  t.equal(third[4], 7n);
  t.equal(Number((await answer())[0]! & U32), fid('MSG_SEND_DIRECT_RESP'), 'and so do the rest');
  t.same(faults.list().rules[0]!.fired, 2);
});

t.test('bad rules are clear errors, never a crash', async (t) => {
  const bad: [unknown, RegExp][] = [
    [null, /faults: must be/],
    [{ rules: 3 }, /faults.rules: must be a list/],
    [{ rules: [{ id: 'a', action: { error: 'BUSYY' } }] }, /rules\[0\].action.error: "BUSYY" is not an FF-A error name/],
    [{ rules: [{ id: 'a', match: { function: 'MSG_SEND_DIRECT_REQQ' }, action: { error: 'BUSY' } }] }, /match.function: .* is not an FF-A function name/],
    [{ rules: [{ id: 'a', match: { function: 'RUN_64' }, action: { error: 'BUSY' } }] }, /FFA_RUN has no SMC64 form/],
    [{ rules: [{ id: 'a', match: { caller: 0x10000 }, action: { error: 'BUSY' } }] }, /match.caller: 65536 is not an integer 0..65535/],
    [{ rules: [{ id: 'a', match: { probability: 2 }, action: { error: 'BUSY' } }] }, /probability: 2 is not a number 0..1/],
    [{ rules: [{ id: 'a', match: { window: { from: 5, until: 1 } }, action: { error: 'BUSY' } }] }, /until \(1\) must be after from \(5\)/],
    [{ rules: [{ id: 'a', match: { args: { x18: 1 } }, action: { error: 'BUSY' } }] }, /args.x18: not a register/],
    [{ rules: [{ id: 'a', match: { args: { x3: 'zz' } }, action: { error: 'BUSY' } }] }, /args.x3: "zz" is not a 64-bit register value/],
    [{ rules: [{ id: 'a', action: { error: 'BUSY', delay: 3 } }] }, /needs exactly one of/],
    [{ rules: [{ id: 'a', action: {} }] }, /needs exactly one of .* \(got none\)/],
    [{ rules: [{ id: 'a', action: { error: 'BUSY' }, times: 0 }] }, /times: 0 is not an integer 1\.\./],
    [{ rules: [{ id: 'a b', action: { error: 'BUSY' } }] }, /id: "a b" is not an id/],
    [{ rules: [{ id: 'a', action: { error: 'BUSY' }, extra: 1 }] }, /rules\[0\].extra: unknown field/],
    [{ rules: [{ id: 'a', action: { abort: 'target', afterwards: 'DENIED' } }] }, /the lifecycle answers BUSY, INVALID_PARAMETERS or ABORTED/],
    [{ rules: [{ id: 'a', action: { notification: 'lose' } }] }, /neither "drop" nor/],
    [{ rules: [{ id: 'a', action: { fragmentCap: 8 } }] }, /fragmentCap: 8 is not an integer 16\.\./],
    [{ rules: Array.from({ length: 257 }, (_, i) => ({ id: `r${i}`, action: { delay: 1 } })) }, /faults.rules: 257 rules; at most 256/],
    [
      {
        rules: [
          { id: 'a', action: { error: 'BUSY' } },
          { id: 'a', action: { error: 'BUSY' } },
        ],
      },
      /two rules have the id "a"/,
    ],
  ];
  const thrown = (fn: () => unknown): unknown => {
    try {
      fn();
    } catch (e) {
      return e;
    }
    return undefined;
  };
  for (const [input, want] of bad) {
    const e = thrown(() => parseRuleSet(input));
    t.ok(e instanceof FaultRuleError, `${JSON.stringify(input)}: a FaultRuleError`);
    t.match((e as Error)?.message, want);
  }
  const spmc = newSpmc();
  const faults = new FaultInjector(SessionCore.for(spmc));
  faults.load({ rules: [{ id: 'keep', action: { error: 'DENIED' } }] });
  t.ok(thrown(() => faults.load({ rules: [{ id: 'x', action: { error: 'NOPE' } }] })) instanceof FaultRuleError);
  t.equal(faults.list().rules.length, 1, 'a bad set leaves the old one');
  t.throws(() => faults.add({ id: 'keep', action: { error: 'BUSY' } }), /exists already/);
});

t.test('matching: function at any width, caller, vCPU, target, argument values', async (t) => {
  const { faults, vm, call } = await setup();
  faults.load({ rules: [{ id: 'r', match: { function: 'MSG_SEND_DIRECT_REQ', target: SP3, vcpu: 1, args: { x4: '0x2a' } }, action: { error: 'DENIED' } }] });
  const at = (x: (bigint | number)[], vcpu = 0) => call(x, vcpu).then(errorOf);
  const req64 = (to: number, w4: number) => [fid('MSG_SEND_DIRECT_REQ', 64), (vm.id << 16) | to, 0, CMD.ECHO, w4];
  t.equal(await at(req64(SP3, 0x2a), 1), DENIED, 'the 64-bit form matches the width-less name');
  t.equal(await at(directReq(vm, SP3, CMD.ECHO, 0x2a), 1), DENIED, 'so does the 32-bit one');
  t.equal(await at(req64(SP3, 0x2b), 1), undefined, 'another x4 does not');
  t.equal(await at(req64(SP1, 0x2a), 1), undefined, 'another target does not');
  t.equal(await at(req64(SP3, 0x2a), 0), undefined, 'another vCPU does not');
  faults.load({ rules: [{ id: 'r', match: { function: 'MSG_SEND_DIRECT_REQ_32', caller: 99 }, action: { error: 'DENIED' } }] });
  t.equal(await at(directReq(vm, SP3)), undefined, 'another caller does not');
  faults.load({ rules: [{ id: 'r', match: { function: 'MSG_SEND_DIRECT_REQ_32' }, action: { error: 'DENIED' } }] });
  t.equal(await at(req64(SP3, 1)), undefined, 'a width suffix picks that width only');
  t.equal(await at(directReq(vm, SP3)), DENIED);
});

t.test('matching: nth, every nth, times', async (t) => {
  const { faults, call } = await setup();
  const idGet = [fid('ID_GET')];
  const run = async (n: number) => {
    const out: boolean[] = [];
    for (let i = 0; i < n; i++) out.push(errorOf(await call(idGet)) !== undefined);
    return out;
  };
  faults.load({ rules: [{ id: 'third', match: { function: 'ID_GET', nth: 3 }, action: { error: 'BUSY' } }] });
  t.same(await run(5), [false, false, true, false, false]);
  faults.load({ rules: [{ id: 'every2', match: { function: 'ID_GET', every: 2 }, action: { error: 'BUSY' }, times: 2 }] });
  t.same(await run(8), [false, true, false, true, false, false, false, false]);
});

t.test('matching: a seeded probability fires on the same calls every time', async (t) => {
  const draws = async (seed: number) => {
    const { faults, call } = await setup();
    faults.load({ seed, rules: [{ id: 'coin', match: { function: 'ID_GET', probability: 0.5 }, action: { error: 'BUSY' } }] });
    const out: boolean[] = [];
    for (let i = 0; i < 40; i++) out.push(errorOf(await call([fid('ID_GET')])) !== undefined);
    return out;
  };
  const a = await draws(7);
  t.same(await draws(7), a, 'same seed, same calls fire');
  t.not(JSON.stringify(await draws(8)), JSON.stringify(a), 'another seed, other calls');
  t.ok(a.some((x) => x) && a.some((x) => !x), 'some fire, some do not');
});

t.test('matching: a time window on the core clock', async (t) => {
  let now = 1000;
  const { faults, call } = await setup(() => now);
  faults.load({ rules: [{ id: 'w', match: { function: 'ID_GET', window: { from: 100, until: 200 } }, action: { error: 'BUSY' } }] });
  const busy = async () => errorOf(await call([fid('ID_GET')])) === BUSY;
  t.notOk(await busy(), 'before the window');
  now = 1150;
  t.ok(await busy(), 'inside it');
  now = 1200;
  t.notOk(await busy(), 'after it');
});

t.test('error: the model never sees the call; the answer carries a reason and the trace the mark', async (t) => {
  const { spmc, faults, tracer, call } = await setup();
  faults.load({ rules: [{ id: 'no-map', match: { function: 'RXTX_MAP' }, action: { error: 'NO_MEMORY' } }] });
  const vm = RawVm.attach(spmc);
  const r = await call([fid('RXTX_MAP', 64), vm.ramBase, vm.ramBase + 0x1000n, 1]);
  t.equal(errorOf(r), FFA_ERRORS.NO_MEMORY);
  t.equal(spmc.reasonFor(r)?.code, 'fault.injected');
  t.match(spmc.reasonFor(r)?.text, /RXTX_MAP_64: FFA_ERROR\(NO_MEMORY\) \(injected by fault rule "no-map"\)/);
  const rec = tracer.recent({ function: 'RXTX_MAP' }).at(-1)!;
  t.equal(rec.kind === 'call' && rec.injected, 'no-map');
});

t.test('preempt: FFA_INTERRUPT names the target; FFA_RUN of it carries the request on (Hafnium ffa_cpu_cycles_run)', async (t) => {
  const { spmc, faults, vm, call, tracer } = await setup();
  faults.load({ rules: [{ id: 'ns-irq', match: { function: 'MSG_SEND_DIRECT_REQ', target: SP3 }, action: { preempt: true, interruptId: 42 }, times: 1 }] });
  const r = await call(directReq(vm, SP3, CMD.ECHO, 5));
  t.equal(Number(r[0]! & U32), fid('INTERRUPT'));
  t.equal(r[1], BigInt(SP3) << 16n, 'x1: the target partition and its vCPU');
  t.equal(r[2], 42n);
  t.equal(errorOf(await call(directReq(vm, SP3))), BUSY, 'the preempted target is BUSY to a new request');
  const resp = await call([fid('RUN'), r[1]!]);
  t.equal(Number(resp[0]! & U32), fid('MSG_SEND_DIRECT_RESP'), 'running the named target gets the response');
  t.equal(resp[4], 5n);
  t.equal(Number((await call(directReq(vm, SP3)))[0]! & U32), fid('MSG_SEND_DIRECT_RESP'), 'then requests pass again');
  const marks = tracer.recent({ endpoint: vm.id }).filter((x) => x.kind === 'call' && x.injected === 'ns-irq');
  t.equal(marks.length, 3, 'the INTERRUPT, the BUSY and the RUN that carried the request on');
  // A caller that leaves without running the target again does not hold it.
  faults.load({ rules: [{ id: 'ns-irq-2', match: { function: 'MSG_SEND_DIRECT_REQ', target: SP3 }, action: { preempt: true }, times: 1 }] });
  const other = RawVm.attach(spmc);
  t.equal(Number(other.regs(directReq(other, SP3))[0]! & U32), fid('INTERRUPT'));
  spmc.detach(other.id);
  t.equal(Number((await call(directReq(vm, SP3)))[0]! & U32), fid('MSG_SEND_DIRECT_RESP'), 'the target serves others again');
});

t.test('yield: the responder yields; FFA_YIELD names it; FFA_RUN gets the response', async (t) => {
  const { faults, vm, call, tracer } = await setup();
  faults.load({ rules: [{ id: 'yield-once', match: { caller: SP3, function: 'MSG_SEND_DIRECT_RESP' }, action: { yield: true }, times: 1 }] });
  const r = await call(directReq(vm, SP3, CMD.ECHO, 9));
  t.equal(Number(r[0]! & U32), fid('YIELD'));
  t.equal(r[1], BigInt(SP3) << 16n, 'x1: the partition that yielded, vCPU 0');
  const resp = await call([fid('RUN'), r[1]!]);
  t.equal(Number(resp[0]! & U32), fid('MSG_SEND_DIRECT_RESP'));
  t.equal(resp[4], 9n);
  t.equal(Number((await call(directReq(vm, SP3, CMD.ECHO, 1)))[0]! & U32), fid('MSG_SEND_DIRECT_RESP'), 'the partition serves again');
  await tracer.drained();
  t.ok(tracer.recent({ endpoint: SP3 }).some((x) => x.kind === 'call' && x.injected === 'yield-once'));
});

t.test('delay: the same answer, later', async (t) => {
  const { faults, vm, core, tracer } = await setup();
  faults.load({ rules: [{ id: 'slow', match: { function: 'ID_GET' }, action: { delay: 5 } }] });
  const out = core.handle(vm.id, 0, [BigInt(fid('ID_GET'))], 'test');
  t.ok(isPending(out), 'not answered at once');
  const r = isPending(out) ? await out.answer : out;
  t.equal(r[2], BigInt(vm.id));
  await tracer.drained();
  const rec = tracer.recent({ function: 'ID_GET' });
  t.ok(rec.some((x) => x.kind === 'call' && x.blocked && x.injected === 'slow'));
  t.ok(rec.some((x) => x.kind === 'return'));
});

t.test('clobber: x8..x17 of answers to a v1.2 caller', async (t) => {
  const { spmc, faults, vm, call } = await setup();
  faults.load({ rules: [{ id: 'x8', match: { caller: vm.id }, action: { clobber: true } }] });
  const r = await call([fid('ID_GET')]);
  t.equal(r[2], BigInt(vm.id), 'the result is intact');
  t.equal(r[8], CLOBBER_PATTERN | 8n);
  t.equal(r[17], CLOBBER_PATTERN | 17n);
  const e = await call([fid('RX_RELEASE')]);
  t.equal(errorOf(e), DENIED, 'a refusal too');
  t.equal(e[9], CLOBBER_PATTERN | 9n);
  t.equal(spmc.reasonFor(e)?.code, 'rx_release.not_mapped', "keeping the model's reason");
  const r64 = await call([fid('MSG_SEND_DIRECT_REQ', 64), (BigInt(vm.id) << 16n) | BigInt(SP1), 0, BigInt(CMD.ECHO), 0x77]);
  t.equal(Number(r64[0]! & U32), fid('MSG_SEND_DIRECT_RESP', 64), 'a 64-bit response (answered later)');
  t.equal(r64[4], 0x77n);
  t.equal(r64[10], CLOBBER_PATTERN | 10n, 'its x8..x17 clobbered too');
  const payload = Array.from({ length: 14 }, (_, i) => BigInt(0x100 + i));
  const r2 = await call([fid('MSG_SEND_DIRECT_REQ2', 64), (BigInt(vm.id) << 16n) | BigInt(SP1), 0, 0, ...payload]);
  t.equal(Number(r2[0]! & U32), fid('MSG_SEND_DIRECT_RESP2', 64));
  t.same(r2.slice(4), payload, 'a RESP2 payload in x4..x17 is left alone');
  const regs = await call([fid('PARTITION_INFO_GET_REGS', 64), 0, 0, 0]);
  t.not(regs[8]! & 0xffffffff00000000n, CLOBBER_PATTERN, 'PARTITION_INFO_GET_REGS descriptors are left alone');
  const old = RawVm.attach(spmc, {}, 0x10001);
  faults.load({ rules: [{ id: 'x8', action: { clobber: true } }] });
  t.equal(old.regs([fid('ID_GET')])[8], 0n, 'a v1.1 caller is not clobbered');
});

t.test('abort: ABORTED, then what the lifecycle answers', async (t) => {
  const { faults, vm, call } = await setup();
  faults.load({
    rules: [{ id: 'sp3-dies', match: { target: SP3, function: 'MSG_SEND_DIRECT_REQ' }, action: { abort: 'target', afterwards: 'BUSY' }, times: 1 }],
  });
  t.equal(errorOf(await call(directReq(vm, SP3))), ABORTED);
  t.equal(errorOf(await call(directReq(vm, SP3))), BUSY);
  t.equal(errorOf(await call([fid('RUN'), BigInt(SP3) << 16n])), BUSY);
  t.equal(Number((await call(directReq(vm, SP1)))[0]! & U32), fid('MSG_SEND_DIRECT_RESP'), 'others serve on');
  faults.load({ rules: [{ id: 'gone', match: { function: 'ID_GET' }, action: { abort: SP3, afterwards: 'INVALID_PARAMETERS' }, times: 1 }] });
  t.equal(Number((await call(directReq(vm, SP3)))[0]! & U32), fid('MSG_SEND_DIRECT_RESP'), 'reloading the rules ended the old abort');
  t.equal(Number((await call([fid('ID_GET')]))[0]! & U32), fid('SUCCESS'), 'a call aimed elsewhere passes, and aborts SP3');
  t.equal(errorOf(await call(directReq(vm, SP3))), INVALID_PARAMETERS, 'destroyed: INVALID_PARAMETERS');
  faults.remove('gone');
  t.equal(Number((await call(directReq(vm, SP3)))[0]! & U32), fid('MSG_SEND_DIRECT_RESP'), 'removing the rule restarts it');
});

t.test('hold RX full: producers find it BUSY until the rule goes', async (t) => {
  const { spmc, faults, vm, call } = await setup();
  vm.mapMailbox();
  faults.load({ rules: [{ id: 'rx-full', match: { caller: vm.id, function: 'PARTITION_INFO_GET' }, action: { holdRxFull: 'caller' } }] });
  const pig = [fid('PARTITION_INFO_GET'), 0, 0, 0, 0, 0];
  const r = await call(pig);
  t.equal(errorOf(r), BUSY);
  t.equal(spmc.reasonFor(r)?.code, 'partition_info_get.rx_full');
  t.equal(errorOf(await call([fid('RX_RELEASE')])), DENIED, 'the VM does not own it: nothing to release');
  faults.remove('rx-full');
  t.equal(Number((await call(pig))[0]! & U32), fid('SUCCESS'), 'released with the rule');
});

t.test('notification: dropped, or delivered later', async (t) => {
  const { spmc, faults, vm, call } = await setup();
  const bind = await call(directReq(vm, SP1, CMD.BIND, vm.id).concat([0b110, 0]));
  t.equal(bind[4], 0n, 'SP1 binds the VM as a sender');
  const set = (bit: number) => call([fid('NOTIFICATION_SET'), (vm.id << 16) | SP1, 0, bit, 0]);
  const pending = () => spmc.endpoint(SP1)!.notifications.fromVm.pending;
  faults.load({ rules: [{ id: 'lost', match: { function: 'NOTIFICATION_SET' }, action: { notification: 'drop' }, times: 1 }] });
  t.equal(Number((await set(0b10))[0]! & U32), fid('SUCCESS'), 'the sender is told it worked');
  t.equal(pending(), 0n, 'the receiver has nothing');
  faults.load({ rules: [{ id: 'late', match: { function: 'NOTIFICATION_SET' }, action: { notification: { delay: 5 } }, times: 1 }] });
  t.equal(Number((await set(0b100))[0]! & U32), fid('SUCCESS'));
  await modelReaches(spmc, () => (pending() & 0b100n) !== 0n);
  t.pass('delivered later');
});

t.test('SRI: held back, or raised later', async (t) => {
  const { spmc, faults, vm, call } = await setup();
  t.equal(Number((await call([fid('NOTIFICATION_BIND'), (BigInt(SP1) << 16n) | BigInt(vm.id), 0, 1, 0]))[0]! & U32), fid('SUCCESS'));
  const sris: number[] = [];
  spmc.observe({ interrupt: (id) => id === vm.id && sris.push(id) });
  faults.load({ rules: [{ id: 'no-sri', match: { caller: SP1, function: 'NOTIFICATION_SET' }, action: { sri: 'drop' }, times: 1 }] });
  const notify = [...directReq(vm, SP1, CMD.NOTIFY, vm.id), 1, 0];
  t.equal((await call(notify))[4], 0n, 'SP1 set it');
  t.equal(sris.length, 0, 'no SRI');
  t.equal(Number((await call([fid('NOTIFICATION_INFO_GET', 64)]))[0]! & U32), fid('SUCCESS', 64), 'yet it is pending');
  faults.load({ rules: [{ id: 'late-sri', match: { caller: SP1, function: 'NOTIFICATION_SET' }, action: { sri: { delay: 5 } }, times: 1 }] });
  const raised = new Promise<void>((resolve) => spmc.observe({ interrupt: (id) => id === vm.id && resolve() }));
  t.equal((await call(notify))[4], 0n);
  await raised;
  t.pass('raised later');
});

t.test('abort while a request is in flight: its requester gets ABORTED, the late response goes nowhere; the run replays', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rspmc-abort-'));
  const file = join(dir, 'abort.jsonl');
  const REMOTE = 0x8010;
  const yaml = `${DEFAULT_MANIFEST_YAML}  - name: remote\n    id: 0x8010\n    uuids: [0badcafe-0000-4000-8000-000000000010]\n    ffa-version: "1.2"\n    execution-ctx-count: 1\n    messaging-method: 0x603\n    remote: { credential-env: FAULTS_TEST_CREDENTIAL }\n`;
  const partitions = parseManifest(yaml, 'abort.yaml', { FAULTS_TEST_CREDENTIAL: 'secret-of-the-test' });
  const spmc = new Spmc({ partitions, handleSeed: 1n });
  const core = SessionCore.for(spmc);
  const tracer = new Tracer(core, { file, session: { partitions, limits: spmc.state.limits, handleSeed: 1n } });
  const faults = new FaultInjector(core);
  traceFaults(faults, tracer);
  faults.install();
  const sp = core.attach({ endpointId: REMOTE, credential: 'secret-of-the-test' });
  const vm = core.attach({ name: 'vm' });
  const call = (id: number, x: (bigint | number)[]) => core.handle(id, 0, toRegisters(x), 'test');
  call(vm.endpointId, [fid('VERSION'), 0x10002]);
  call(REMOTE, [fid('VERSION'), 0x10002]);
  const spWait = call(REMOTE, [fid('MSG_WAIT')]);
  t.ok(isPending(spWait), 'the remote partition waits');
  const request = call(vm.endpointId, [fid('MSG_SEND_DIRECT_REQ'), (BigInt(vm.endpointId) << 16n) | BigInt(REMOTE), 0, 1, 2]);
  t.ok(isPending(request), 'the VM is blocked in its request');
  t.equal(Number((isPending(spWait) ? await spWait.answer : spWait)[0]! & U32), fid('MSG_SEND_DIRECT_REQ'), 'the partition has it');
  faults.add({ id: 'kill', match: { caller: vm.endpointId, function: 'ID_GET' }, action: { abort: REMOTE }, times: 1 });
  t.equal(Number((call(vm.endpointId, [fid('ID_GET')]) as Registers)[0]! & U32), fid('SUCCESS'), 'the call that fired the rule passes');
  const answer = isPending(request) ? await request.answer : request;
  t.equal(errorOf(answer), ABORTED, 'the requester gets ABORTED');
  t.equal(spmc.reasonFor(answer)?.code, 'fault.injected');
  const late = call(REMOTE, [fid('MSG_SEND_DIRECT_RESP'), (BigInt(REMOTE) << 16n) | BigInt(vm.endpointId), 0, 9]);
  t.ok(isPending(late), 'the late response is taken (the partition waits again), and goes nowhere');
  t.equal(errorOf(call(vm.endpointId, [fid('MSG_SEND_DIRECT_REQ'), (BigInt(vm.endpointId) << 16n) | BigInt(REMOTE), 0, 1]) as Registers), BUSY, 'then BUSY');
  core.detach(vm.session);
  core.detach(sp.session);
  await tracer.close();
  const { header, records } = parseTrace(readFileSync(file, 'utf8'), file);
  t.equal(replay(header, records).difference, undefined, 'the run replays');
});
