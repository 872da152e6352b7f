// Direct messaging and CPU cycles against the SPMC model with its built-in partitions running.

import t from 'tap';
import {
  encodeCall,
  errorCodeFromWord,
  FFA_ERRORS,
  FFA_VERSION_1_1,
  FFA_VERSION_1_2,
  type FfaCall,
  fid,
  PARTITION_PROPERTIES as P,
  parseUuid,
  type Uuid,
  UUID_NIL,
} from '../proto/ffa/index.js';
import { parseManifest } from '../server/manifest.js';
import { PARTITION_COMMANDS as CMD, packHops } from '../server/partitions/commands.js';
import { visiblePartitions, visibleProperties } from '../server/spmc/partitions.js';
import { isPending } from '../server/spmc/pending.js';
import { errorOf, errorOfRegs, RawVm, settle, SP1_UUID, SP3_UUID, startedSpmc, vcpuReaches } from './helpers.js';

const { INVALID_PARAMETERS, DENIED, BUSY, ABORTED } = FFA_ERRORS;
const SP1 = 0x8001;
const SP2 = 0x8002;
const SP3 = 0x8003;

const req = (vm: RawVm, to: number, args: bigint[], width: 32 | 64 = 64): FfaCall => ({
  fn: 'MSG_SEND_DIRECT_REQ',
  width,
  route: { source: vm.id, destination: to },
  message: { kind: 'partition' },
  args,
});
const req2 = (vm: RawVm, to: number, args: bigint[], uuid: Uuid = UUID_NIL): FfaCall => ({
  fn: 'MSG_SEND_DIRECT_REQ2',
  route: { source: vm.id, destination: to },
  uuid,
  args,
});
const resp = (vm: RawVm, to: number, args: bigint[], width: 32 | 64 = 64): FfaCall => ({
  fn: 'MSG_SEND_DIRECT_RESP',
  width,
  route: { source: vm.id, destination: to },
  message: { kind: 'partition' },
  args,
});
const send = (vm: RawVm, c: FfaCall, vcpu = 0) => settle(vm.start(c, vcpu), vm.version);
const argsOf = (c: FfaCall): bigint[] => {
  if (c.fn !== 'MSG_SEND_DIRECT_RESP' && c.fn !== 'MSG_SEND_DIRECT_RESP2')
    throw new Error(`expected a response, got FFA_${c.fn} ${JSON.stringify(c, (_k, v) => (typeof v === 'bigint' ? v.toString(16) : v))}`);
  return c.args;
};

async function setup() {
  const spmc = await startedSpmc();
  const vm = RawVm.attach(spmc, { vcpuCount: 4 });
  return { spmc, vm };
}

t.test('ECHO: 64-bit values back as sent', async (t) => {
  const { vm } = await setup();
  const r = await send(vm, req(vm, SP1, [BigInt(CMD.ECHO), 0x1122334455667788n, 2n, 3n, 0xffffffffffffffffn]));
  t.equal(r.fn, 'MSG_SEND_DIRECT_RESP');
  t.ok(r.fn === 'MSG_SEND_DIRECT_RESP' && r.width === 64 && r.route.source === SP1 && r.route.destination === vm.id);
  t.same(argsOf(r), [BigInt(CMD.ECHO), 0x1122334455667788n, 2n, 3n, 0xffffffffffffffffn]);
});

t.test('32-bit requests carry only the low halves of x3..x7', async (t) => {
  const { vm } = await setup();
  const x = encodeCall(req(vm, SP1, [BigInt(CMD.ECHO), 1n, 2n, 3n, 4n], 32), FFA_VERSION_1_2);
  x[4] = 0xdeadbeef00000011n; // upper half set by a sloppy caller
  const out = vm.spmc.handle(vm.id, 0, x);
  const r = await settle(out);
  t.ok(r.fn === 'MSG_SEND_DIRECT_RESP' && r.width === 32, 'answered with RESP_32');
  t.same(argsOf(r), [BigInt(CMD.ECHO), 0x11n, 2n, 3n, 4n]);
});

t.test('unknown commands are echoed', async (t) => {
  const { vm } = await setup();
  t.same(argsOf(await send(vm, req(vm, SP2, [0x12345678n, 9n]))), [0x12345678n, 9n, 0n, 0n, 0n]);
});

t.test('ERROR returns the FF-A code given', async (t) => {
  const { vm } = await setup();
  const r = argsOf(await send(vm, req(vm, SP2, [BigInt(CMD.ERROR), 0n, 0xfffffffcn])));
  t.equal(r[0], BigInt(CMD.ERROR));
  t.equal(errorCodeFromWord(r[1]!), FFA_ERRORS.BUSY);
});

t.test('request checks', async (t) => {
  const { spmc, vm } = await setup();
  t.equal(
    errorOf(await send(vm, { ...req(vm, SP1, []), route: { source: vm.id + 1, destination: SP1 } } as FfaCall)),
    INVALID_PARAMETERS,
    'sender is not the caller',
  );
  t.equal(errorOf(await send(vm, req(vm, 0x8099, []))), INVALID_PARAMETERS, 'unknown receiver');
  t.equal(errorOf(await send(vm, req(vm, vm.id, []))), INVALID_PARAMETERS, 'to itself');
  t.equal(errorOfRegs(vm.regs([fid('MSG_SEND_DIRECT_REQ', 64), (vm.id << 16) | SP1, 1])), INVALID_PARAMETERS, 'w2 MBZ for a partition message');
  const framework = { ...req(vm, SP1, []), message: { kind: 'framework', type: 4 } } as FfaCall;
  t.equal(errorOf(await send(vm, framework)), INVALID_PARAMETERS, 'a VM may not send framework messages');
  t.equal(errorOfRegs(vm.regs([fid('MSG_SEND_DIRECT_REQ', 64), (vm.id << 16) | SP1, 0, 0, 0, 0, 0, 0, 1])), INVALID_PARAMETERS, 'x8 from a v1.2 caller');
  const plain = RawVm.attach(spmc, {});
  t.equal(errorOf(await send(vm, req(vm, plain.id, []))), DENIED, 'a VM that did not attach with the receive property');
});

t.test('FFA_MSG_SEND_DIRECT_REQ2', async (t) => {
  const { spmc, vm } = await setup();
  const payload = Array.from({ length: 14 }, (_, i) => BigInt(i + 1) << 40n);
  const r = await send(vm, req2(vm, SP1, payload, parseUuid(SP1_UUID)));
  t.equal(r.fn, 'MSG_SEND_DIRECT_RESP2');
  t.same(argsOf(r), payload, 'x4..x17 echoed');
  t.same(argsOf(await send(vm, req2(vm, SP2, payload))), payload, 'Nil UUID: the default service');
  t.equal(errorOf(await send(vm, req2(vm, SP1, payload, parseUuid(SP3_UUID)))), INVALID_PARAMETERS, 'a UUID the receiver does not serve');
  const old = RawVm.attach(spmc, {}, FFA_VERSION_1_1);
  t.equal(errorOf(await send(old, req2(old, SP1, payload))), DENIED, 'a v1.1 caller');
  const noReq2 = await startedSpmc(
    {},
    parseManifest(`partitions:\n  - {name: a, uuids: [${SP1_UUID}], ffa-version: "1.2", execution-ctx-count: 1, messaging-method: 3, service: test-service}\n`),
  );
  const v = RawVm.attach(noReq2, {});
  t.equal(errorOf(await send(v, req2(v, SP1, payload))), DENIED, 'receiver without the REQ2 receive property');
  t.equal((await send(v, req(v, SP1, [0n]))).fn, 'MSG_SEND_DIRECT_RESP', 'the same partition takes a REQ');
});

t.test('FORWARD: nested call chains and loops', async (t) => {
  const { vm } = await setup();
  const chain = argsOf(await send(vm, req(vm, SP1, [BigInt(CMD.FORWARD), packHops([SP2, SP3]), 5n, 6n, 7n])));
  t.same(chain, [BigInt(CMD.ECHO), 5n, 6n, 7n, 0n], 'VM -> SP1 -> SP2 -> SP3 and back');
  const loop = argsOf(await send(vm, req(vm, SP1, [BigInt(CMD.FORWARD), packHops([SP2, SP1]), 5n])));
  t.equal(loop[0], BigInt(CMD.ERROR));
  // SP1's context still serves the VM's request: BUSY before any runtime-model (loop) check, as in
  // Hafnium's api_ffa_msg_send_direct_req and its test fails_direct_req_to_waiting_sp.
  t.equal(errorCodeFromWord(loop[1]!), BUSY, 'SP2 -> SP1, which serves the request: BUSY');
  const toVm = argsOf(await send(vm, req(vm, SP1, [BigInt(CMD.FORWARD), BigInt(vm.id), 5n])));
  t.equal(errorCodeFromWord(toVm[1]!), INVALID_PARAMETERS, 'an SP may not send a direct request to a VM');
  const self = argsOf(await send(vm, req(vm, SP1, [BigInt(CMD.FORWARD), BigInt(SP1)])));
  t.equal(errorCodeFromWord(self[1]!), INVALID_PARAMETERS, 'an SP may not send to itself');
});

t.test('YIELD, then RUN from the VM', async (t) => {
  const { spmc, vm } = await setup();
  const y = await send(vm, req(vm, SP3, [BigInt(CMD.YIELD), 42n]));
  t.ok(y.fn === 'YIELD' && y.target.endpoint === SP3 && y.target.vcpu === 0, 'FFA_YIELD with the target info');
  const other = RawVm.attach(spmc, {});
  t.equal(errorOf(await send(other, req(other, SP3, [BigInt(CMD.ECHO)]))), BUSY, 'SP3 is held');
  t.equal(errorOf(await send(other, { fn: 'RUN', target: { endpoint: SP3, vcpu: 0 } })), DENIED, 'only the VM it yielded to may run it');
  t.equal(errorOf(await send(vm, { fn: 'RUN', target: { endpoint: SP3, vcpu: 0 } }, 1)), DENIED, 'nor another vCPU of it');
  const done = await send(vm, { fn: 'RUN', target: { endpoint: SP3, vcpu: 0 } });
  t.same(argsOf(done), [BigInt(CMD.YIELD), 42n, 0n, 0n, 0n], 'the partition resumed and answered');
  t.same(argsOf(await send(other, req(other, SP3, [BigInt(CMD.ECHO)]))), [BigInt(CMD.ECHO), 0n, 0n, 0n, 0n], 'free again');
});

t.test('several VMs and vCPUs against the single-context SP3', async (t) => {
  const { spmc, vm } = await setup();
  const others = [RawVm.attach(spmc, { vcpuCount: 2 }), RawVm.attach(spmc, { vcpuCount: 2 })];
  t.equal((await send(vm, req(vm, SP3, [BigInt(CMD.YIELD)]), 2)).fn, 'YIELD', 'vm vCPU 2 holds SP3');
  const attempts = others.flatMap((o) => [0, 1].map((v) => send(o, req(o, SP3, [BigInt(CMD.ECHO), BigInt(v)]), v)));
  for (const r of await Promise.all(attempts)) t.equal(errorOf(r), BUSY);
  t.equal(errorOf(await send(vm, req(vm, SP3, [BigInt(CMD.ECHO)]), 0)), BUSY, 'even from the holder’s other vCPUs');
  // Multi-context SP1 serves vCPU 1's request on its own context while vCPU 2 holds another.
  t.equal((await send(vm, req(vm, SP1, [BigInt(CMD.YIELD)]), 2)).fn, 'YIELD');
  t.equal((await send(vm, req(vm, SP1, [BigInt(CMD.ECHO)]), 1)).fn, 'MSG_SEND_DIRECT_RESP', 'SP1 context 1 is free');
  await send(vm, { fn: 'RUN', target: { endpoint: SP1, vcpu: 2 } }, 2);
  t.equal((await send(vm, { fn: 'RUN', target: { endpoint: SP3, vcpu: 0 } }, 2)).fn, 'MSG_SEND_DIRECT_RESP');
  for (const o of others) {
    for (const v of [0, 1]) t.equal((await send(o, req(o, SP3, [BigInt(CMD.ECHO), BigInt(v)]), v)).fn, 'MSG_SEND_DIRECT_RESP', 'succeeds after RUN');
  }
});

t.test('FFA_RUN checks', async (t) => {
  const { vm } = await setup();
  const run = (endpoint: number, vcpu: number, from = 0) => send(vm, { fn: 'RUN', target: { endpoint, vcpu } }, from);
  t.equal(errorOf(await run(0x8099, 0)), INVALID_PARAMETERS, 'unknown target');
  t.equal(errorOf(await run(SP3, 1)), INVALID_PARAMETERS, 'vCPU past the count');
  t.equal(errorOf(await run(vm.id, 1)), INVALID_PARAMETERS, 'itself');
  t.equal(errorOfRegs(vm.regs([fid('RUN'), SP3 << 16, 0, 0, 0, 0, 0, 0, 0, 1])), INVALID_PARAMETERS, 'x8 from a v1.2 caller');
  t.equal(errorOfRegs(vm.regs([fid('RUN'), SP3 << 16, 1])), INVALID_PARAMETERS, 'w2 MBZ');
  // An idle partition given cycles waits again at once: the caller sees FFA_MSG_WAIT.
  t.equal((await run(SP2, 0)).fn, 'MSG_WAIT');
});

t.test('FFA_MSG_WAIT, FFA_YIELD and FFA_INTERRUPT from VMs', async (t) => {
  const { spmc, vm } = await setup();
  t.equal(errorOf(vm.call({ fn: 'INTERRUPT', target: { endpoint: 0, vcpu: 0 }, interruptId: 0 })), DENIED, 'FFA_INTERRUPT');
  t.equal(vm.call({ fn: 'YIELD', target: { endpoint: 0, vcpu: 0 }, timeout: 0n }).fn, 'SUCCESS', "a VM's own yield is a no-op");
  t.equal(errorOfRegs(vm.regs([fid('YIELD'), 0, 0, 0, 1])), INVALID_PARAMETERS, 'YIELD w4 MBZ');
  t.equal(errorOfRegs(vm.regs([fid('MSG_WAIT'), 1])), INVALID_PARAMETERS, 'MSG_WAIT w1 MBZ');
  t.equal(errorOfRegs(vm.regs([fid('MSG_WAIT'), 0, 2])), INVALID_PARAMETERS, 'MSG_WAIT w2[15:1] MBZ');
  // MSG_WAIT releases RX unless asked to keep it.
  const rcv = RawVm.attach(spmc, { properties: P.DIRECT_REQ_RECV | P.AARCH64_EXEC });
  rcv.mapMailbox();
  rcv.partitionInfoGet();
  t.ok(isPending(rcv.start({ fn: 'MSG_WAIT', retainRx: true })));
  t.equal(spmc.endpoint(rcv.id)!.mailbox!.rxState, 'full', 'retained');
  const rcv2 = RawVm.attach(spmc, { properties: P.DIRECT_REQ_RECV | P.AARCH64_EXEC });
  rcv2.mapMailbox();
  rcv2.partitionInfoGet();
  t.ok(isPending(rcv2.start({ fn: 'MSG_WAIT', retainRx: false })));
  t.equal(spmc.endpoint(rcv2.id)!.mailbox!.rxState, 'empty', 'released');
  t.throws(() => rcv2.regs([fid('ID_GET')]), /waiting in FFA_MSG_WAIT/, 'a vCPU blocked in MSG_WAIT makes no other call');
});

t.test('VM to VM direct messages, and the response checks', async (t) => {
  const { spmc, vm: a } = await setup();
  const b = RawVm.attach(spmc, { properties: P.DIRECT_REQ_RECV | P.DIRECT_REQ2_RECV | P.AARCH64_EXEC, vcpuCount: 2 });
  t.equal(errorOf(await send(a, req(a, b.id, [1n]))), BUSY, 'receiver not waiting yet');
  t.equal(errorOf(b.call(resp(b, a.id, []))), DENIED, 'a response with no request outstanding');

  const bWait = b.start({ fn: 'MSG_WAIT', retainRx: false });
  const aReq = a.start(req(a, b.id, [7n, 8n]));
  t.ok(isPending(aReq), 'the sender blocks');
  const got = await settle(bWait);
  t.ok(got.fn === 'MSG_SEND_DIRECT_REQ' && got.route.source === a.id && got.args[0] === 7n, 'the receiver gets the request');
  t.equal(errorOf(b.call({ fn: 'MSG_WAIT', retainRx: false })), DENIED, 'MSG_WAIT while handling a request');
  t.equal(errorOf(b.call({ fn: 'MSG_SEND_DIRECT_RESP2', route: { source: b.id, destination: a.id }, args: [] })), DENIED, 'RESP2 for a REQ');
  t.equal(errorOf(b.call(resp(b, SP1, []))), DENIED, 'responding to someone other than the requester');
  t.equal(errorOf(b.call({ ...resp(b, a.id, []), route: { source: SP1, destination: a.id } } as FfaCall)), INVALID_PARAMETERS, 'sender is not the caller');
  t.equal(errorOf(b.call({ ...resp(b, a.id, []), message: { kind: 'framework', type: 5 } } as FfaCall)), DENIED, 'framework response to a partition message');
  const bNext = b.start(resp(b, a.id, [9n]));
  t.ok(isPending(bNext), 'the responder waits for its next request');
  t.same(argsOf(await settle(aReq)), [9n, 0n, 0n, 0n, 0n]);

  // REQ2 answered with RESP: DENIED; then properly.
  const aReq2 = a.start(req2(a, b.id, [1n, 2n]));
  const got2 = await settle(bNext);
  t.equal(got2.fn, 'MSG_SEND_DIRECT_REQ2');
  t.equal(errorOf(b.call(resp(b, a.id, []))), DENIED, 'RESP for a REQ2');
  b.start({ fn: 'MSG_SEND_DIRECT_RESP2', route: { source: b.id, destination: a.id }, args: [3n] });
  const r2 = await settle(aReq2);
  t.ok(r2.fn === 'MSG_SEND_DIRECT_RESP2' && r2.args[0] === 3n);
  t.equal(encodeCall(r2, FFA_VERSION_1_2)[2], 0n, 'RESP2 clears x2/x3');
});

t.test('a receiver that leaves answers its blocked requester ABORTED', async (t) => {
  const { spmc, vm: a } = await setup();
  const b = RawVm.attach(spmc, { properties: P.DIRECT_REQ_RECV | P.AARCH64_EXEC });
  const bWait = b.start({ fn: 'MSG_WAIT', retainRx: false });
  const aReq = a.start(req(a, b.id, [1n]));
  await settle(bWait);
  spmc.detach(b.id);
  t.equal(errorOf(await settle(aReq)), ABORTED);
  t.equal(a.call({ fn: 'ID_GET' }).fn, 'SUCCESS', 'the requester runs again');
});

t.test('a requester that leaves disturbs nobody: its answer is dropped', async (t) => {
  const { spmc, vm: a } = await setup();
  const y = await send(a, req(a, SP3, [BigInt(CMD.YIELD)]));
  t.equal(y.fn, 'YIELD');
  spmc.detach(a.id); // SP3 had yielded to it: it gets its cycles back and finishes
  const b = RawVm.attach(spmc, {});
  await vcpuReaches(spmc, SP3, 0, 'waiting'); // its receive loop waits again
  t.same(argsOf(await send(b, req(b, SP3, [BigInt(CMD.ECHO), 1n]))), [BigInt(CMD.ECHO), 1n, 0n, 0n, 0n], 'SP3 serves the next VM');
  t.ok(spmc.state.dropped >= 1, 'the response to the departed VM was dropped');
});

t.test('PARTITION_INFO_GET shows each caller what it may do', async (t) => {
  const { spmc, vm } = await setup();
  const b = RawVm.attach(spmc, { properties: P.DIRECT_REQ_RECV | P.DIRECT_REQ_SEND | P.AARCH64_EXEC });
  // VMs see SPs as receivers only; SPs are never shown sending to the normal world.
  const sp1 = visibleProperties(spmc.endpoint(SP1)!, spmc.endpoint(vm.id)!);
  t.ok(sp1 & P.DIRECT_REQ_RECV && sp1 & P.DIRECT_REQ2_RECV);
  t.equal(sp1 & (P.DIRECT_REQ_SEND | P.DIRECT_REQ2_SEND), 0);
  t.notOk(
    visiblePartitions(spmc.state, spmc.endpoint(SP1)!).some((ep) => ep.kind === 'vm'),
    'an SP never sees a VM at all',
  );
  t.ok(visibleProperties(spmc.endpoint(b.id)!, spmc.endpoint(vm.id)!) & P.DIRECT_REQ_RECV, 'another VM does');
  t.ok(visibleProperties(spmc.endpoint(SP2)!, spmc.endpoint(SP1)!) & P.DIRECT_REQ_SEND, 'an SP sees another SP as a sender');
});

t.test('messaging methods: the calls follow the caller’s properties; FEATURES reports them to all (Hafnium)', async (t) => {
  const spmc = await startedSpmc();
  const feature = (vm: RawVm, fn: Parameters<typeof fid>[0], width: 32 | 64 = 64) => vm.call({ fn: 'FEATURES', id: fid(fn, width), inputProperties: 0 }).fn;
  const plain = RawVm.attach(spmc, {}); // the default guest: AArch64, sends both forms, indirect messages and notifications
  t.same(
    spmc.endpoint(plain.id)!.properties,
    P.AARCH64_EXEC | P.DIRECT_REQ_SEND | P.DIRECT_REQ2_SEND | P.INDIRECT_MSG | P.NOTIFICATION_RECV,
    'default VM properties',
  );
  t.equal(feature(plain, 'MSG_SEND_DIRECT_REQ'), 'SUCCESS');
  t.equal(feature(plain, 'MSG_SEND_DIRECT_REQ', 32), 'SUCCESS');
  t.equal(feature(plain, 'MSG_SEND_DIRECT_REQ2'), 'SUCCESS');
  // Hafnium's ffa_features_function reports DIRECT_REQ/RESP (and REQ2/RESP2) to every caller,
  // whatever its messaging method; the call itself checks the method.
  t.equal(feature(plain, 'MSG_SEND_DIRECT_RESP'), 'SUCCESS', 'it receives none, yet is told of RESP');
  t.equal(feature(plain, 'MSG_SEND_DIRECT_RESP2'), 'SUCCESS');
  const receiver = RawVm.attach(spmc, { properties: P.DIRECT_REQ_RECV | P.AARCH64_EXEC });
  t.equal(feature(receiver, 'MSG_SEND_DIRECT_RESP'), 'SUCCESS');
  t.equal(feature(receiver, 'MSG_SEND_DIRECT_REQ'), 'SUCCESS', 'it sends none, yet is told of REQ');
  t.equal(errorOf(await send(receiver, req(receiver, SP1, [BigInt(CMD.ECHO)]))), DENIED, 'a VM without the send property');
  t.equal(errorOf(await send(receiver, req2(receiver, SP1, [1n]))), DENIED);
});
