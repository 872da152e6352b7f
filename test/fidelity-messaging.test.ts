// Fidelity of messaging and notifications (issue 13, items 6 and 7's logical partitions), over
// gRPC where a client would see it, and the reason of every refusal of messaging, indirect
// messaging, notifications and CPU cycles. Hafnium's functions are cited per case.

import t from 'tap';
import {
  decodeCall,
  decodePartitionInfo,
  encodeCall,
  encodeIndirectMessage,
  type EndpointId,
  FFA_ERRORS,
  FFA_PAGE_SIZE,
  FFA_VERSION_1_0,
  FFA_VERSION_1_1,
  FFA_VERSION_1_2,
  type FfaCall,
  fid,
  hex,
  NPI_INTID,
  parseUuid,
  PARTITION_INFO_SIZE_V1_1,
  PARTITION_PROPERTIES as P,
  partitionInfoFromRegs,
  type Registers,
  toRegisters,
  U32,
  unpackPartitionInfoRegsHeader,
  UUID_NIL,
} from '../proto/ffa/index.js';
import { FfaDriver } from '../client-driver/driver.js';
import { SpmcChannel } from '../client-driver/transport/grpc-client.js';
import { GrpcConnector } from '../client-driver/transport/grpc.js';
import { EmulatedVm } from '../client-driver/vm.js';
import { SpmcGrpcServer } from '../server/grpc/server.js';
import { defaultManifest, DEFAULT_MANIFEST_YAML, ManifestError, parseManifestFile } from '../server/manifest.js';
import { PARTITION_COMMANDS as CMD } from '../server/partitions/commands.js';
import { startBuiltinPartitions } from '../server/partitions/index.js';
import { isPending, type Pending } from '../server/spmc/pending.js';
import { Spmc } from '../server/spmc/spmc.js';
import { RawVm, SP1_UUID } from './helpers.js';
import { SessionCore } from '../server/session/core.js';

const { INVALID_PARAMETERS, NOT_SUPPORTED, DENIED, BUSY, NO_DATA } = FFA_ERRORS;
const SP1 = 0x8001;
const SP2 = 0x8002;
const SP3 = 0x8003;
const REMOTE_SP = 0x8010;
const CREDENTIAL = 'fidelity-credential';
const LSP_ECHO = 0xffc0;
const LSP_FIXED = 0xffc1;
const LSP_MUTE = 0xffc2;
const LSP_ECHO_UUID = '6b1e3c7a-5d0e-4c61-9a41-2f3c1a2b0001';
const LSP_FIXED_UUID = '6b1e3c7a-5d0e-4c61-9a41-2f3c1a2b0002';
const LSP_MUTE_UUID = '6b1e3c7a-5d0e-4c61-9a41-2f3c1a2b0003';
const REMOTE_UUID = '0badcafe-0000-4000-8000-0000000000f1';

/** The default topology plus a remote SP driven by the test, and three SPMD logical partitions. */
const MANIFEST = `${DEFAULT_MANIFEST_YAML}
  - name: remote-sp
    id: 0x8010
    uuids: [${REMOTE_UUID}]
    ffa-version: "1.2"
    execution-ctx-count: 1
    messaging-method: 0x3
    notification-support: true
    remote: { credential: ${CREDENTIAL} }
logical-partitions:
  - id: 0xffc0
    name: lsp-echo
    uuids: [${LSP_ECHO_UUID}]
    answers: echo
  - id: 0xffc1
    uuids: [${LSP_FIXED_UUID}]
    answers: [0x11, "0x1122334455667788", 3]
  - id: 0xffc2
    uuids: [${LSP_MUTE_UUID}]
`;

const config = () => parseManifestFile(MANIFEST, 'fidelity.yaml');

async function grpcServer(spmc: Spmc) {
  const server = new SpmcGrpcServer(spmc);
  const address = `127.0.0.1:${await server.listen('127.0.0.1:0')}`;
  const ch = new SpmcChannel(address);
  return { server, address, ch, stop: async () => (ch.close(), await server.stop(200)) };
}

/** An endpoint driven with raw registers over gRPC (FF-A v1.2 layouts). */
class WireEndpoint {
  constructor(
    readonly ch: SpmcChannel,
    readonly session: string,
    readonly id: EndpointId,
    readonly ramBase: bigint,
  ) {}

  static async attach(ch: SpmcChannel, opts: { endpointId?: number; credential?: string } = {}): Promise<WireEndpoint> {
    const a = await ch.attach(opts);
    const ep = new WireEndpoint(ch, a.session, a.endpointId, a.ramBase);
    // A VM negotiates v1.2; a partition's version is its manifest's and the same request succeeds.
    await ch.call(a.session, 0, toRegisters([fid('VERSION'), FFA_VERSION_1_2]));
    return ep;
  }

  regs(x: (bigint | number)[]): Promise<Registers> {
    return this.ch.call(this.session, 0, toRegisters(x));
  }

  async call(c: FfaCall): Promise<FfaCall> {
    const r = await this.ch.call(this.session, 0, encodeCall(c, FFA_VERSION_1_2));
    const d = decodeCall(r, FFA_VERSION_1_2);
    if (!d.ok) throw new Error(`undecodable reply ${r.map((v) => v.toString(16))}`);
    return d.call;
  }
}

/** Resolves once the model has handled a call with function `name` from `id` (the event, not a sleep). */
function handled(spmc: Spmc, id: EndpointId, name: string): Promise<void> {
  const x0 = BigInt(fid(name as never));
  return new Promise((resolve) => {
    const stop = SessionCore.for(spmc).use({
      name: 'handled',
      after: (c) => {
        if (c.endpoint === id && c.x[0] === x0) {
          stop();
          resolve();
        }
      },
    });
  });
}

const directReq = (from: EndpointId, to: EndpointId, args: bigint[], width: 32 | 64 = 64): FfaCall => ({
  fn: 'MSG_SEND_DIRECT_REQ',
  width,
  route: { source: from, destination: to },
  message: { kind: 'partition' },
  args,
});
const directResp = (from: EndpointId, to: EndpointId, args: bigint[]): FfaCall => ({
  fn: 'MSG_SEND_DIRECT_RESP',
  width: 64,
  route: { source: from, destination: to },
  message: { kind: 'partition' },
  args,
});
const msgWait: FfaCall = { fn: 'MSG_WAIT', retainRx: false };
const allBitmaps = { sp: true, vm: true, spmFramework: true, hypFramework: true };
const errorCode = (c: FfaCall): number | undefined => (c.fn === 'ERROR' ? c.code : undefined);
const isNpi = (c: FfaCall): boolean => c.fn === 'INTERRUPT' && c.interruptId === NPI_INTID;

// ---- item 6: a notification does not make its receiver BUSY ----------------------------------------

t.test(
  'item 6 over gRPC: NOTIFICATION_SET leaves a waiting SP waiting; a direct request is delivered first, the NPI is taken on the response (api_ffa_notification_set, api_ffa_msg_send_direct_req, ffa_interrupts_intercept_call)',
  async (t) => {
    const spmc = new Spmc(config());
    const g = await grpcServer(spmc);
    t.teardown(g.stop);
    const vm = await WireEndpoint.attach(g.ch);
    const sp = await WireEndpoint.attach(g.ch, { endpointId: REMOTE_SP, credential: CREDENTIAL });
    const bit = 1n << 4n;
    t.equal((await sp.call({ fn: 'NOTIFICATION_BIND', route: { source: vm.id, destination: sp.id }, perVcpu: false, bitmap: bit })).fn, 'SUCCESS');

    const waiting = handled(spmc, sp.id, 'MSG_WAIT');
    const firstWait = sp.call(msgWait);
    await waiting;
    t.equal(
      (await vm.call({ fn: 'NOTIFICATION_SET', route: { source: vm.id, destination: sp.id }, perVcpu: false, delaySri: false, vcpu: 0, bitmap: bit })).fn,
      'SUCCESS',
    );
    t.equal(spmc.endpoint(sp.id)!.vcpus[0]!.state, 'waiting', 'SET only marks it pending: the SP is not woken');

    // The VM's direct request is delivered, not BUSY.
    const request = vm.call(directReq(vm.id, sp.id, [1n, 2n, 3n, 4n, 5n]));
    const got = await firstWait;
    t.equal(got.fn, 'MSG_SEND_DIRECT_REQ', 'the SP gets the request first');
    t.same(got.fn === 'MSG_SEND_DIRECT_REQ' && got.args, [1n, 2n, 3n, 4n, 5n]);

    // Its response: the SP takes the NPI on the requester's cycles; the requester waits until it is done.
    const onResp = await sp.call(directResp(sp.id, vm.id, [9n, 8n, 7n, 6n, 5n]));
    t.ok(isNpi(onResp), 'DIRECT_RESP returns FFA_INTERRUPT(NPI) to the SP');
    t.equal(spmc.endpoint(vm.id)!.vcpus[0]!.state, 'blocked', 'the VM is held (preempted, in Hafnium) while the SP handles it');
    const bitmaps = await sp.call({ fn: 'NOTIFICATION_GET', receiver: sp.id, vcpu: 0, bitmaps: allBitmaps });
    t.same(bitmaps.fn === 'SUCCESS' && bitmaps.args.slice(2, 4), [bit, 0n], 'the VM notification, in w4/w5');
    const secondWait = sp.call(msgWait);
    const answer = await request;
    t.same(
      answer.fn === 'MSG_SEND_DIRECT_RESP' && [answer.route.source, answer.args],
      [sp.id, [9n, 8n, 7n, 6n, 5n]],
      'the VM gets the response once the SP waits again',
    );

    // Nothing pending any more: the next request goes straight through and the SP simply waits.
    const again = vm.call(directReq(vm.id, sp.id, [7n]));
    const next = await secondWait;
    t.equal(next.fn, 'MSG_SEND_DIRECT_REQ', 'the next request is delivered too');
    const third = sp.call(directResp(sp.id, vm.id, [8n]));
    t.equal((await again).fn, 'MSG_SEND_DIRECT_RESP');
    t.equal(spmc.endpoint(sp.id)!.vcpus[0]!.state, 'waiting', 'no NPI left: after its response the SP waits for the next request');
    await g.ch.detach(sp.session);
    t.equal(errorCode(await third), FFA_ERRORS.ABORTED, 'its wait ends when it leaves');
  },
);

t.test(
  'item 6 over gRPC: FFA_RUN of a waiting SP gives it the NPI, and its MSG_WAIT gives the cycles back (api_vcpu_prepare_run injects the NPI)',
  async (t) => {
    const spmc = new Spmc(config());
    const g = await grpcServer(spmc);
    t.teardown(g.stop);
    const vm = await WireEndpoint.attach(g.ch);
    const sp = await WireEndpoint.attach(g.ch, { endpointId: REMOTE_SP, credential: CREDENTIAL });
    await sp.call({ fn: 'NOTIFICATION_BIND', route: { source: vm.id, destination: sp.id }, perVcpu: false, bitmap: 1n });
    const waiting = handled(spmc, sp.id, 'MSG_WAIT');
    const wait = sp.call(msgWait);
    await waiting;
    await vm.call({ fn: 'NOTIFICATION_SET', route: { source: vm.id, destination: sp.id }, perVcpu: false, delaySri: false, vcpu: 0, bitmap: 1n });
    const run = vm.call({ fn: 'RUN', target: { endpoint: sp.id, vcpu: 0 } });
    t.ok(isNpi(await wait), 'the SP wakes with FFA_INTERRUPT(NPI), not FFA_RUN');
    await sp.call({ fn: 'NOTIFICATION_GET', receiver: sp.id, vcpu: 0, bitmaps: allBitmaps });
    const back = sp.call(msgWait);
    t.equal((await run).fn, 'MSG_WAIT', "the VM's FFA_RUN returns when the SP waits");
    await g.ch.detach(sp.session);
    await back;
  },
);

t.test(
  'item 6 over gRPC with the built-in partitions: a VM notifies SP2, its next request is served, and SP2 has handled the NPI by the time the response arrives',
  async (t) => {
    const spmc = new Spmc({ partitions: defaultManifest() });
    await startBuiltinPartitions(spmc, (id, e) => t.fail(`partition ${hex(id)}: ${String(e)}`));
    const g = await grpcServer(spmc);
    t.teardown(g.stop);
    const connector = new GrpcConnector(g.address);
    const drv = new FfaDriver(await EmulatedVm.attach(connector, { name: 'notifier' }));
    await drv.init();
    t.teardown(async () => {
      await drv.exit();
      await drv.vm.detach();
      connector.close();
    });
    t.same(await drv.sendDirectReq(SP2, [BigInt(CMD.BIND), BigInt(drv.vmId), 0b10n, 0n]), [BigInt(CMD.BIND), 0n, 0n, 0n, 0n]);
    await drv.notifier.notifySend(SP2, false, 1);
    t.same(spmc.endpoint(SP2)!.console.lines, [], 'SET did not run SP2');
    t.same(await drv.sendDirectReq(SP2, [BigInt(CMD.ECHO), 42n]), [BigInt(CMD.ECHO), 42n, 0n, 0n, 0n], 'the request is served, not BUSY');
    t.same(spmc.endpoint(SP2)!.console.lines, ['notified from-sp=0x0 from-vm=0x2'], 'the NPI was handled before the response came back');
  },
);

t.test('item 6 in the model: a requester that leaves while its response is held loses only the response', async (t) => {
  const spmc = new Spmc({ partitions: defaultManifest() });
  const vm = RawVm.attach(spmc);
  const sp1 = new RawVm(spmc, SP1);
  sp1.call({ fn: 'NOTIFICATION_BIND', route: { source: vm.id, destination: SP1 }, perVcpu: false, bitmap: 1n });
  const wait = sp1.start(msgWait) as Pending;
  vm.call({ fn: 'NOTIFICATION_SET', route: { source: vm.id, destination: SP1 }, perVcpu: false, delaySri: false, vcpu: 0, bitmap: 1n });
  const req = vm.start(directReq(vm.id, SP1, [1n])) as Pending;
  const delivered = decodeCall(await wait.answer, FFA_VERSION_1_2);
  t.equal(delivered.ok && delivered.call.fn, 'MSG_SEND_DIRECT_REQ', 'the request is delivered');
  t.ok(isNpi(sp1.call(directResp(SP1, vm.id, [2n]))));
  spmc.detach(vm.id);
  t.equal(req.settled, true, 'the leaving VM is answered');
  t.ok(isPending(sp1.start(msgWait)), 'the SP waits again; the response went nowhere');
  t.equal(spmc.endpoint(SP1)!.vcpus[0]!.handling, undefined);
});

// ---- item 7: the SPMD's logical partitions -----------------------------------------------------------

/** Every entry of PARTITION_INFO_GET_REGS for `uuid`, following the indices. */
async function infoRegs(ep: WireEndpoint, uuid = UUID_NIL): Promise<FfaCall | ReturnType<typeof partitionInfoFromRegs>[]> {
  const out: ReturnType<typeof partitionInfoFromRegs>[] = [];
  for (let start = 0; ;) {
    const r = await ep.call({ fn: 'PARTITION_INFO_GET_REGS', uuid, startIndex: start, tag: 0 });
    if (r.fn !== 'SUCCESS') return r;
    const h = unpackPartitionInfoRegsHeader(r.args[0]!);
    for (let i = 0; i <= h.currentIndex - start; i++) out.push(partitionInfoFromRegs(r.args[1 + 3 * i]!, r.args[2 + 3 * i]!, r.args[3 + 3 * i]!));
    if (h.currentIndex >= h.lastIndex) return out;
    start = h.currentIndex + 1;
  }
}

t.test(
  'item 7 over gRPC: SPs discover the logical partitions with PARTITION_INFO_GET_REGS, after the SPs; VMs never do (api_ffa_partition_info_get_regs_forward)',
  async (t) => {
    const spmc = new Spmc(config());
    const g = await grpcServer(spmc);
    t.teardown(g.stop);
    const vm = await WireEndpoint.attach(g.ch);
    const sp = await WireEndpoint.attach(g.ch, { endpointId: REMOTE_SP, credential: CREDENTIAL });

    const seen = await infoRegs(sp);
    if (!Array.isArray(seen)) throw new Error(`PARTITION_INFO_GET_REGS failed: ${seen.fn}`);
    const lsps = seen.filter((e) => e.id >= 0xffc0);
    t.same(
      seen.slice(-3).map((e) => e.id),
      [LSP_ECHO, LSP_FIXED, LSP_MUTE],
      'the SPMD appends its partitions to the SPMC’s',
    );
    t.same(
      lsps.map((e) => [e.execContexts, e.properties]),
      [
        [1, P.DIRECT_REQ_SEND | P.AARCH64_EXEC | P.DIRECT_REQ_RECV],
        [1, P.DIRECT_REQ_SEND | P.AARCH64_EXEC | P.DIRECT_REQ_RECV],
        [1, P.DIRECT_REQ_SEND | P.AARCH64_EXEC],
      ],
      "one context, AArch64, DIRECT_REQ_SEND as TF-A's SPMD lists them; DIRECT_REQ_RECV only where the manifest gives answers",
    );
    t.same(
      lsps.map((e) => e.uuid),
      [parseUuid(LSP_ECHO_UUID), parseUuid(LSP_FIXED_UUID), parseUuid(LSP_MUTE_UUID)],
    );
    const one = await infoRegs(sp, parseUuid(LSP_FIXED_UUID));
    t.same(Array.isArray(one) && one.map((e) => [e.id, e.uuid]), [[LSP_FIXED, UUID_NIL]], 'by UUID: that partition, UUID field zero');

    const vmSeen = await infoRegs(vm);
    t.ok(Array.isArray(vmSeen) && vmSeen.every((e) => e.id < 0xffc0), 'a VM is not shown them');
    const vmByUuid = await infoRegs(vm, parseUuid(LSP_ECHO_UUID));
    t.equal(!Array.isArray(vmByUuid) && errorCode(vmByUuid), INVALID_PARAMETERS, "a VM asking for one's UUID finds nothing");

    // PARTITION_INFO_GET is not forwarded to the SPMD (ffa_setup_partition_info_get_forward): RX only.
    const [tx, rx] = [sp.ramBase, sp.ramBase + BigInt(FFA_PAGE_SIZE)];
    t.equal((await sp.call({ fn: 'RXTX_MAP', width: 64, tx, rx, pageCount: 1 })).fn, 'SUCCESS');
    const info = await sp.call({ fn: 'PARTITION_INFO_GET', uuid: UUID_NIL, countOnly: false });
    if (info.fn !== 'SUCCESS') throw new Error(`PARTITION_INFO_GET failed: ${info.fn}`);
    const count = Number(info.args[0]!);
    const entries = decodePartitionInfo(await g.ch.readMemory(sp.session, rx, count * PARTITION_INFO_SIZE_V1_1), count, PARTITION_INFO_SIZE_V1_1);
    t.ok(entries.some((e) => e.id === SP1) && entries.every((e) => e.id < 0xffc0), 'PARTITION_INFO_GET lists no logical partition');
    const byUuid = await sp.call({ fn: 'PARTITION_INFO_GET', uuid: parseUuid(LSP_ECHO_UUID), countOnly: true });
    t.equal(errorCode(byUuid), INVALID_PARAMETERS, 'nor finds one by UUID');
  },
);

t.test(
  'item 7 over gRPC: a logical partition with answers answers an SP’s direct request; others are refused as Hafnium and the SPMD refuse them',
  async (t) => {
    const spmc = new Spmc(config());
    const g = await grpcServer(spmc);
    t.teardown(g.stop);
    const vm = await WireEndpoint.attach(g.ch);
    const sp = await WireEndpoint.attach(g.ch, { endpointId: REMOTE_SP, credential: CREDENTIAL });

    const echo = await sp.call(directReq(sp.id, LSP_ECHO, [1n, 2n, 3n, 4n, 5n]));
    t.same(
      echo.fn === 'MSG_SEND_DIRECT_RESP' && [echo.width, echo.route, echo.args],
      [64, { source: LSP_ECHO, destination: sp.id }, [1n, 2n, 3n, 4n, 5n]],
      'echo',
    );
    const fixed = await sp.call(directReq(sp.id, LSP_FIXED, [9n]));
    t.same(fixed.fn === 'MSG_SEND_DIRECT_RESP' && fixed.args, [0x11n, 0x1122334455667788n, 3n, 0n, 0n], 'the declared words');
    const fixed32 = await sp.call(directReq(sp.id, LSP_FIXED, [9n], 32));
    t.same(
      fixed32.fn === 'MSG_SEND_DIRECT_RESP' && [fixed32.width, fixed32.args],
      [32, [0x11n, 0x55667788n, 3n, 0n, 0n]],
      'a 32-bit request gets a 32-bit response',
    );
    t.equal(errorCode(await sp.call(directReq(sp.id, LSP_MUTE, [1n]))), INVALID_PARAMETERS, 'no answers declared: Hafnium does not forward it (vm_find fails)');
    t.equal(errorCode(await vm.call(directReq(vm.id, LSP_ECHO, [1n]))), INVALID_PARAMETERS, 'from a VM: the SPMD refuses it (spmd_main.c)');
    t.equal(
      errorCode(await sp.call({ fn: 'MSG_SEND_DIRECT_REQ2', route: { source: sp.id, destination: LSP_ECHO }, uuid: UUID_NIL, args: [1n] })),
      DENIED,
      'REQ2: it has no DIRECT_REQ2_RECV',
    );
    t.equal(errorCode(await sp.call(directReq(sp.id, 0xffcf, [1n]))), INVALID_PARAMETERS, 'an undeclared logical partition ID is unknown');
    const bind = await sp.call({ fn: 'NOTIFICATION_BIND', route: { source: LSP_ECHO, destination: sp.id }, perVcpu: false, bitmap: 1n });
    t.equal(errorCode(bind), INVALID_PARAMETERS, 'nor a notification sender (ffa_notifications_is_bind_valid)');
  },
);

t.test('item 7: the logical-partitions section of a manifest, errors naming the field', async (t) => {
  const { logicalPartitions } = config();
  t.same(
    logicalPartitions.map((lp) => [lp.id, lp.name, lp.answers]),
    [
      [LSP_ECHO, 'lsp-echo', { kind: 'echo' }],
      [LSP_FIXED, 'lsp-ffc1', { kind: 'fixed', words: [0x11n, 0x1122334455667788n, 3n] }],
      [LSP_MUTE, 'lsp-ffc2', undefined],
    ],
  );
  const base = {
    partitions: [{ name: 'sp', id: 0x8001, uuids: [SP1_UUID], 'ffa-version': '1.2', 'execution-ctx-count': 1, 'messaging-method': 3, service: 'test-service' }],
  };
  const lsp = { id: 0xffc0, uuids: [LSP_ECHO_UUID] };
  const cases: [string, unknown, RegExp][] = [
    ['id below the SPMD range', { ...lsp, id: 0x8002 }, /logical-partitions\[0\]\.id: must be >= 65472/],
    ['the SPMD itself', { ...lsp, id: 0xffff }, /logical-partitions\[0\]\.id: must be <= 65534/],
    ['no UUID', { id: 0xffc0 }, /logical-partitions\[0\]: missing field "uuids"/],
    ['bad UUID', { ...lsp, uuids: ['nope'] }, /logical-partitions\[0\]\.uuids\[0\]: "nope" is not a UUID/],
    ['Nil UUID', { ...lsp, uuids: ['00000000-0000-0000-0000-000000000000'] }, /uuids\[0\]: the Nil UUID names no service/],
    ['unknown field', { ...lsp, colour: 'red' }, /logical-partitions\[0\]: unknown field "colour"/],
    ['bad answers', { ...lsp, answers: 'shout' }, /logical-partitions\[0\]\.answers: "shout" is neither "echo" nor a list of words/],
    ['six words', { ...lsp, answers: [1, 2, 3, 4, 5, 6] }, /answers: 6 words; a direct response carries 5/],
    ['a bad word', { ...lsp, answers: [1, -2] }, /logical-partitions\[0\]\.answers\[1\]: -2 is not a word/],
  ];
  for (const [what, item, re] of cases) {
    t.throws(() => parseManifestFile(JSON.stringify({ ...base, 'logical-partitions': [item] }), 'm.yaml'), re, what);
  }
  const twice = { ...base, 'logical-partitions': [lsp, { ...lsp, uuids: [LSP_FIXED_UUID] }] };
  t.throws(() => parseManifestFile(JSON.stringify(twice), 'm.yaml'), /logical-partitions\[1\]\.id: 0xffc0 is already used/, 'an ID used twice');
  const clash = { partitions: [{ ...base.partitions[0], id: 0xffc0 }], 'logical-partitions': [lsp] };
  t.throws(() => parseManifestFile(JSON.stringify(clash), 'm.yaml'), ManifestError, 'an ID an SP already has');
});

// ---- reasons ---------------------------------------------------------------------------------------

/** A fresh SPMC whose partitions are driven by hand (none is running), with a v1.2 VM. */
function model(quietSp2 = false) {
  const c = config();
  // SP2 without notification support, for the checks of a receiver that takes none.
  if (quietSp2) c.partitions = c.partitions.map((p) => (p.id === SP2 ? { ...p, notificationSupport: false } : p));
  const spmc = new Spmc(c);
  const vm = RawVm.attach(spmc, { vcpuCount: 2 });
  const sp = (id: EndpointId, version = FFA_VERSION_1_2) => new RawVm(spmc, id, version);
  return { spmc, vm, sp };
}

type Model = ReturnType<typeof model>;
interface ReasonCase {
  name: string;
  error: number;
  code: string;
  text?: string;
  /** SP2 takes no notifications in this case's SPMC. */
  quietSp2?: boolean;
  /** The refused call's answer, after whatever preparation the case needs. */
  run: (m: Model) => Registers | Pending;
}

const on = (e: RawVm, c: FfaCall, vcpu = 0) => e.start(c, vcpu);
const raw = (e: RawVm, x: (bigint | number)[]) => e.spmc.handle(e.id, 0, toRegisters(x));
const set = (from: RawVm, to: EndpointId, bitmap = 1n, o: Partial<Extract<FfaCall, { fn: 'NOTIFICATION_SET' }>> = {}): FfaCall => ({
  fn: 'NOTIFICATION_SET',
  route: { source: from.id, destination: to },
  perVcpu: false,
  delaySri: false,
  vcpu: 0,
  bitmap,
  ...o,
});
const bind = (receiver: RawVm, sender: EndpointId, bitmap = 1n, perVcpu = false): FfaCall => ({
  fn: 'NOTIFICATION_BIND',
  route: { source: sender, destination: receiver.id },
  perVcpu,
  bitmap,
});
const unbind = (receiver: RawVm, sender: EndpointId, bitmap = 1n): FfaCall => ({
  fn: 'NOTIFICATION_UNBIND',
  route: { source: sender, destination: receiver.id },
  bitmap,
});
/** SP `id` waiting in MSG_WAIT on context 0. */
const waitingSp = (m: Model, id: EndpointId) => {
  const s = m.sp(id);
  on(s, msgWait);
  return s;
};
/** A message in `from`'s TX buffer (mapping it first). */
function message(from: RawVm, h: { receiver: EndpointId; sender?: EndpointId; offset?: number; size?: number }, headerSize = 40): void {
  const { tx } = from.spmc.endpoint(from.id)!.mailbox ?? from.mapMailbox();
  const msg = encodeIndirectMessage({ sender: h.sender ?? from.id, receiver: h.receiver, offset: h.offset }, Uint8Array.of(1, 2, 3), headerSize);
  if (h.size !== undefined) new DataView(msg.buffer).setUint32(16, h.size >>> 0, true);
  from.spmc.writeMemory(from.id, tx, msg);
}
const send2 = (from: RawVm, delaySri = false, senderVmId = 0) => on(from, { fn: 'MSG_SEND2', senderVmId, delaySri });

const REASONS: ReasonCase[] = [
  // api_ffa_msg_send_direct_req
  {
    name: 'framework message from a VM',
    error: INVALID_PARAMETERS,
    code: 'msg_send_direct_req.framework',
    text: 'MSG_SEND_DIRECT_REQ: framework messages come from the SPMD or the hypervisor, not from 0x1',
    run: ({ vm }) => on(vm, { ...directReq(vm.id, SP1, []), message: { kind: 'framework', type: 5 } } as FfaCall),
  },
  {
    name: 'request to itself',
    error: INVALID_PARAMETERS,
    code: 'msg_send_direct_req.receiver_is_sender',
    text: 'MSG_SEND_DIRECT_REQ: sender and receiver are both 0x1',
    run: ({ vm }) => on(vm, directReq(vm.id, vm.id, [])),
  },
  {
    name: 'sender not the caller',
    error: INVALID_PARAMETERS,
    code: 'msg_send_direct_req.sender_not_caller',
    text: 'MSG_SEND_DIRECT_REQ: sender 0x8002 is not the caller 0x1',
    run: ({ vm }) => on(vm, directReq(SP2, SP1, [])),
  },
  {
    name: 'SP to a VM',
    error: INVALID_PARAMETERS,
    code: 'msg_send_direct_req.sp_to_normal_world',
    text: 'MSG_SEND_DIRECT_REQ: partition 0x8001 may not send a direct request to the normal world (0x1)',
    run: ({ vm, sp }) => on(sp(SP1), directReq(SP1, vm.id, [])),
  },
  {
    name: 'VM to a logical partition',
    error: INVALID_PARAMETERS,
    code: 'msg_send_direct_req.receiver_logical',
    text: 'MSG_SEND_DIRECT_REQ: SPMD logical partition 0xffc0 is reachable from partitions only',
    run: ({ vm }) => on(vm, directReq(vm.id, LSP_ECHO, [])),
  },
  {
    name: 'SP to a logical partition without answers',
    error: INVALID_PARAMETERS,
    code: 'msg_send_direct_req.receiver_logical',
    run: ({ sp }) => on(sp(SP1), directReq(SP1, LSP_MUTE, [])),
  },
  {
    name: 'unknown receiver',
    error: INVALID_PARAMETERS,
    code: 'msg_send_direct_req.receiver_unknown',
    text: 'MSG_SEND_DIRECT_REQ: no endpoint 0x8009',
    run: ({ vm }) => on(vm, directReq(vm.id, 0x8009, [])),
  },
  {
    name: 'REQ2 to a service the receiver lacks',
    error: INVALID_PARAMETERS,
    code: 'msg_send_direct_req2.uuid_unknown',
    run: ({ vm }) => on(vm, { fn: 'MSG_SEND_DIRECT_REQ2', route: { source: vm.id, destination: SP1 }, uuid: parseUuid(LSP_ECHO_UUID), args: [] }),
  },
  {
    name: 'REQ2 from a v1.1 VM',
    error: DENIED,
    code: 'msg_send_direct_req2.sender_version',
    text: 'MSG_SEND_DIRECT_REQ2: sender 0x2 is FF-A v1.1; REQ2 needs v1.2',
    run: ({ spmc }) => {
      const old = RawVm.attach(spmc, {}, FFA_VERSION_1_1);
      return spmc.handle(
        old.id,
        0,
        encodeCall({ fn: 'MSG_SEND_DIRECT_REQ2', route: { source: old.id, destination: SP1 }, uuid: UUID_NIL, args: [] }, FFA_VERSION_1_2),
      );
    },
  },
  {
    name: 'REQ2 to a v1.1 VM receiver',
    error: DENIED,
    code: 'msg_send_direct_req2.receiver_version',
    run: ({ spmc, vm }) => {
      const old = RawVm.attach(spmc, { properties: P.AARCH64_EXEC | P.DIRECT_REQ_RECV | P.DIRECT_REQ2_RECV }, FFA_VERSION_1_1);
      return on(vm, { fn: 'MSG_SEND_DIRECT_REQ2', route: { source: vm.id, destination: old.id }, uuid: UUID_NIL, args: [] });
    },
  },
  {
    name: 'sender without DIRECT_REQ_SEND',
    error: DENIED,
    code: 'msg_send_direct_req.sender_cannot_send',
    text: 'MSG_SEND_DIRECT_REQ: 0x2 does not send direct requests (no DIRECT_REQ_SEND property)',
    run: ({ spmc }) => {
      const mute = RawVm.attach(spmc, { properties: P.AARCH64_EXEC | P.INDIRECT_MSG });
      return on(mute, directReq(mute.id, SP1, []));
    },
  },
  {
    name: 'receiver without DIRECT_REQ_RECV',
    error: DENIED,
    code: 'msg_send_direct_req.receiver_cannot_receive',
    text: 'MSG_SEND_DIRECT_REQ: 0x2 does not receive direct requests (no DIRECT_REQ_RECV property)',
    run: ({ spmc, vm }) => {
      const other = RawVm.attach(spmc);
      return on(vm, directReq(vm.id, other.id, []));
    },
  },
  {
    name: 'receiver context serving another request',
    error: BUSY,
    code: 'msg_send_direct_req.receiver_busy',
    text: 'MSG_SEND_DIRECT_REQ: 0x8003 context 0 is serving a request from 0x1',
    run: (m) => {
      waitingSp(m, SP3);
      on(m.vm, directReq(m.vm.id, SP3, []));
      const other = RawVm.attach(m.spmc);
      return on(other, directReq(other.id, SP3, []));
    },
  },
  {
    name: 'a loop back to a partition run by FFA_RUN (the runtime model)',
    error: DENIED,
    code: 'msg_send_direct_req.call_chain_loop',
    text: 'MSG_SEND_DIRECT_REQ: 0x8001 is already in this call chain (0x8001 -> 0x8002 -> 0x8001)',
    run: (m) => {
      const sp1 = waitingSp(m, SP1);
      const sp2 = waitingSp(m, SP2);
      on(m.vm, { fn: 'RUN', target: { endpoint: SP1, vcpu: 0 } });
      on(sp1, directReq(SP1, SP2, []));
      return on(sp2, directReq(SP2, SP1, []));
    },
  },
  {
    name: 'receiver not started',
    error: BUSY,
    code: 'msg_send_direct_req.receiver_not_waiting',
    text: 'MSG_SEND_DIRECT_REQ: 0x8001 context 0 is off, not waiting for a request',
    run: ({ vm }) => on(vm, directReq(vm.id, SP1, [])),
  },
  // api_ffa_msg_send_direct_resp
  {
    name: 'response to itself',
    error: INVALID_PARAMETERS,
    code: 'msg_send_direct_resp.receiver_is_sender',
    run: ({ sp }) => on(sp(SP1), directResp(SP1, SP1, [])),
  },
  {
    name: 'response sender not the caller',
    error: INVALID_PARAMETERS,
    code: 'msg_send_direct_resp.sender_not_caller',
    run: ({ vm, sp }) => on(sp(SP1), directResp(SP2, vm.id, [])),
  },
  {
    name: 'response with no request',
    error: DENIED,
    code: 'msg_send_direct_resp.no_request',
    text: 'MSG_SEND_DIRECT_RESP: 0x8001 context 0 has no direct request to answer',
    run: ({ vm, sp }) => on(sp(SP1), directResp(SP1, vm.id, [])),
  },
  {
    name: 'response to someone else',
    error: DENIED,
    code: 'msg_send_direct_resp.not_origin',
    text: 'MSG_SEND_DIRECT_RESP: the request came from 0x1, not 0x8002',
    run: (m) => {
      const sp1 = waitingSp(m, SP1);
      on(m.vm, directReq(m.vm.id, SP1, []));
      return on(sp1, directResp(SP1, SP2, []));
    },
  },
  {
    name: 'framework response to a partition message',
    error: DENIED,
    code: 'msg_send_direct_resp.framework_mismatch',
    run: (m) => {
      const sp1 = waitingSp(m, SP1);
      on(m.vm, directReq(m.vm.id, SP1, []));
      return on(sp1, { ...directResp(SP1, m.vm.id, []), message: { kind: 'framework', type: 5 } } as FfaCall);
    },
  },
  {
    name: 'RESP2 for a REQ',
    error: DENIED,
    code: 'msg_send_direct_resp2.kind_mismatch',
    run: (m) => {
      const sp1 = waitingSp(m, SP1);
      on(m.vm, directReq(m.vm.id, SP1, []));
      return on(sp1, { fn: 'MSG_SEND_DIRECT_RESP2', route: { source: SP1, destination: m.vm.id }, args: [] });
    },
  },
  {
    name: 'a second response while the first is held for the NPI',
    error: DENIED,
    code: 'msg_send_direct_resp.no_request',
    run: (m) => {
      on(m.sp(SP1), bind(m.sp(SP1), m.vm.id));
      const sp1 = waitingSp(m, SP1);
      on(m.vm, set(m.vm, SP1));
      on(m.vm, directReq(m.vm.id, SP1, []));
      on(sp1, directResp(SP1, m.vm.id, []));
      return on(sp1, directResp(SP1, m.vm.id, []));
    },
  },
  // cpu_cycles.c
  {
    name: 'MSG_WAIT while serving a request',
    error: DENIED,
    code: 'msg_wait.request_ongoing',
    text: 'MSG_WAIT: 0x8001 context 0 must answer the request from 0x1 first',
    run: (m) => {
      const sp1 = waitingSp(m, SP1);
      on(m.vm, directReq(m.vm.id, SP1, []));
      return on(sp1, msgWait);
    },
  },
  {
    name: 'YIELD with nobody to yield to',
    error: DENIED,
    code: 'yield.no_cycles',
    run: ({ sp }) => on(sp(SP1), { fn: 'YIELD', target: { endpoint: 0, vcpu: 0 }, timeout: 0n }),
  },
  {
    name: 'RUN of nothing',
    error: INVALID_PARAMETERS,
    code: 'run.vcpu',
    text: 'RUN: 0x8001 has no vCPU 9 (it has 8)',
    run: ({ vm }) => on(vm, { fn: 'RUN', target: { endpoint: SP1, vcpu: 9 } }),
  },
  { name: 'SP runs a VM', error: DENIED, code: 'run.sp_to_vm', run: ({ vm, sp }) => on(sp(SP1), { fn: 'RUN', target: { endpoint: vm.id, vcpu: 0 } }) },
  {
    name: 'RUN of a context that yielded to someone else',
    error: DENIED,
    code: 'run.not_yielded_to_caller',
    run: (m) => {
      const sp3 = waitingSp(m, SP3);
      on(m.vm, directReq(m.vm.id, SP3, []));
      on(sp3, { fn: 'YIELD', target: { endpoint: 0, vcpu: 0 }, timeout: 0n });
      const other = RawVm.attach(m.spmc);
      return on(other, { fn: 'RUN', target: { endpoint: SP3, vcpu: 0 } });
    },
  },
  {
    name: 'RUN of a context that is off',
    error: BUSY,
    code: 'run.target_busy',
    text: 'RUN: 0x8001 vCPU 0 is off, not waiting or preempted',
    run: ({ vm }) => on(vm, { fn: 'RUN', target: { endpoint: SP1, vcpu: 0 } }),
  },
  {
    name: 'FFA_INTERRUPT from an SP',
    error: DENIED,
    code: 'interrupt.not_other_world',
    run: ({ sp }) => on(sp(SP1), { fn: 'INTERRUPT', target: { endpoint: 0, vcpu: 0 }, interruptId: 0 }),
  },
  // api_ffa_msg_send2
  { name: 'w1 names a sender', error: INVALID_PARAMETERS, code: 'msg_send2.sender_vm_id', run: ({ vm }) => send2(vm, false, 5) },
  { name: 'no TX buffer', error: DENIED, code: 'msg_send2.no_tx', text: 'MSG_SEND2: 0x1 has no TX buffer mapped', run: ({ vm }) => send2(vm) },
  {
    name: 'header sender not the caller',
    error: INVALID_PARAMETERS,
    code: 'msg_send2.header_sender',
    run: ({ vm }) => (message(vm, { receiver: SP1, sender: SP2 }), send2(vm)),
  },
  {
    name: 'message to itself',
    error: INVALID_PARAMETERS,
    code: 'msg_send2.receiver_is_sender',
    run: ({ vm }) => (message(vm, { receiver: vm.id }), send2(vm)),
  },
  { name: 'a VM delaying the SRI', error: INVALID_PARAMETERS, code: 'msg_send2.delay_sri', run: ({ vm }) => (message(vm, { receiver: SP1 }), send2(vm, true)) },
  { name: 'unknown receiver', error: INVALID_PARAMETERS, code: 'msg_send2.receiver_unknown', run: ({ vm }) => (message(vm, { receiver: 0x4321 }), send2(vm)) },
  {
    name: 'v1.0 sender to a partition (ffa_indirect_msg_is_supported)',
    error: DENIED,
    code: 'msg_send2.sender_version',
    text: 'MSG_SEND2: sender 0x2 is FF-A v1.0; indirect messages need v1.1',
    run: ({ spmc }) => {
      const old = RawVm.attach(spmc, {}, FFA_VERSION_1_0);
      message(old, { receiver: SP1 });
      return send2(old);
    },
  },
  {
    name: 'v1.0 receiver',
    error: DENIED,
    code: 'msg_send2.receiver_version',
    run: ({ spmc, vm }) => {
      const old = RawVm.attach(spmc, {}, FFA_VERSION_1_0);
      message(vm, { receiver: old.id });
      return send2(vm);
    },
  },
  {
    name: 'sender without indirect messaging',
    error: DENIED,
    code: 'msg_send2.sender_no_indirect',
    run: ({ spmc }) => {
      const plain = RawVm.attach(spmc, { properties: P.AARCH64_EXEC | P.DIRECT_REQ_SEND });
      message(plain, { receiver: SP1 });
      return send2(plain);
    },
  },
  {
    name: 'receiver without indirect messaging',
    error: DENIED,
    code: 'msg_send2.receiver_no_indirect',
    text: 'MSG_SEND2: receiver 0x8003 does not receive indirect messages',
    run: ({ vm }) => (message(vm, { receiver: SP3 }), send2(vm)),
  },
  {
    name: 'receiver RX not mapped',
    error: BUSY,
    code: 'msg_send2.receiver_rx_busy',
    text: 'MSG_SEND2: the RX buffer of 0x8001 is not mapped',
    run: ({ vm }) => (message(vm, { receiver: SP1 }), send2(vm)),
  },
  {
    name: 'v1.0 sender to a VM (the hypervisor’s copy: api_ffa_msg_send2_copy_data)',
    error: NOT_SUPPORTED,
    code: 'msg_send2.sender_v1_0',
    run: ({ spmc, vm }) => {
      vm.mapMailbox();
      const old = RawVm.attach(spmc, {}, FFA_VERSION_1_0);
      message(old, { receiver: vm.id });
      return send2(old);
    },
  },
  {
    name: 'payload inside the header',
    error: INVALID_PARAMETERS,
    code: 'msg_send2.offset',
    text: 'MSG_SEND2: payload offset 24 overlaps the 40-byte header of a v1.2 sender',
    run: ({ vm, sp }) => (sp(SP1).mapMailbox(), message(vm, { receiver: SP1, offset: 24 }), send2(vm)),
  },
  {
    name: 'payload past the buffer',
    error: INVALID_PARAMETERS,
    code: 'msg_send2.size',
    run: ({ vm, sp }) => (sp(SP1).mapMailbox(), message(vm, { receiver: SP1, size: 0xffffffff }), send2(vm)),
  },
  // notifications (api_ffa_notification_*; ffa/spmc/notifications.c)
  {
    name: 'BITMAP_CREATE',
    error: NOT_SUPPORTED,
    code: 'notification_bitmap_create.not_hypervisor',
    run: ({ vm }) => on(vm, { fn: 'NOTIFICATION_BITMAP_CREATE', vmId: vm.id, vcpuCount: 1 }),
  },
  {
    name: 'BITMAP_CREATE with MBZ bits',
    error: NOT_SUPPORTED,
    code: 'notification_bitmap_create.not_hypervisor',
    run: ({ vm }) => raw(vm, [fid('NOTIFICATION_BITMAP_CREATE'), 0xffff0001, 1]),
  },
  {
    name: 'BITMAP_DESTROY',
    error: NOT_SUPPORTED,
    code: 'notification_bitmap_destroy.not_hypervisor',
    run: ({ vm }) => on(vm, { fn: 'NOTIFICATION_BITMAP_DESTROY', vmId: vm.id }),
  },
  { name: 'BIND per vCPU', error: INVALID_PARAMETERS, code: 'notification_bind.per_vcpu', run: ({ vm }) => on(vm, bind(vm, SP1, 1n, true)) },
  {
    name: 'BIND of a logical partition',
    error: INVALID_PARAMETERS,
    code: 'notification_bind.logical_partition',
    text: 'NOTIFICATION_BIND: SPMD logical partitions take no part in notifications (sender 0xffc0, receiver 0x8001)',
    run: ({ sp }) => on(sp(SP1), bind(sp(SP1), LSP_ECHO)),
  },
  { name: 'BIND to itself', error: INVALID_PARAMETERS, code: 'notification_bind.sender_is_receiver', run: ({ vm }) => on(vm, bind(vm, vm.id)) },
  {
    name: 'BIND for another receiver',
    error: INVALID_PARAMETERS,
    code: 'notification_bind.receiver_not_caller',
    run: ({ vm }) => on(vm, { fn: 'NOTIFICATION_BIND', route: { source: SP1, destination: SP2 }, perVcpu: false, bitmap: 1n }),
  },
  { name: 'BIND of nothing', error: INVALID_PARAMETERS, code: 'notification_bind.empty_bitmap', run: ({ vm }) => on(vm, bind(vm, SP1, 0n)) },
  {
    name: 'BIND by a v1.0 VM',
    error: NOT_SUPPORTED,
    code: 'notification_bind.receiver_version',
    run: ({ spmc }) => {
      const old = RawVm.attach(spmc, {}, FFA_VERSION_1_0);
      return on(old, bind(old, SP1));
    },
  },
  {
    name: 'BIND by a partition without notifications',
    error: NOT_SUPPORTED,
    code: 'notification_bind.not_enabled',
    text: 'NOTIFICATION_BIND: 0x8002 does not receive notifications',
    quietSp2: true,
    run: ({ sp }) => on(sp(SP2), bind(sp(SP2), SP1)),
  },
  { name: 'BIND of an unknown SP', error: INVALID_PARAMETERS, code: 'notification_bind.sender_unknown', run: ({ vm }) => on(vm, bind(vm, 0x8009)) },
  {
    name: 'BIND of a bound ID',
    error: DENIED,
    code: 'notification_bind.already_bound',
    text: 'NOTIFICATION_BIND: notification IDs already bound: 0 (bound to 0x8001)',
    run: ({ vm }) => (on(vm, bind(vm, SP1, 0b1n)), on(vm, bind(vm, SP2, 0b11n))),
  },
  {
    name: 'UNBIND of an ID bound elsewhere',
    error: DENIED,
    code: 'notification_unbind.not_bound',
    run: ({ vm }) => (on(vm, bind(vm, SP1)), on(vm, unbind(vm, SP2))),
  },
  {
    name: 'UNBIND of a pending ID',
    error: DENIED,
    code: 'notification_unbind.pending',
    text: 'NOTIFICATION_UNBIND: notifications 0x1 from 0x8001 are still pending',
    run: ({ vm, sp }) => (on(vm, bind(vm, SP1)), on(sp(SP1), set(sp(SP1), vm.id)), on(vm, unbind(vm, SP1))),
  },
  { name: 'SET per vCPU', error: INVALID_PARAMETERS, code: 'notification_set.per_vcpu', run: ({ vm }) => on(vm, set(vm, SP1, 1n, { perVcpu: true })) },
  { name: 'SET with a vCPU ID', error: INVALID_PARAMETERS, code: 'notification_set.vcpu_id', run: ({ vm }) => on(vm, set(vm, SP1, 1n, { vcpu: 1 })) },
  {
    name: 'SET to a logical partition',
    error: INVALID_PARAMETERS,
    code: 'notification_set.logical_partition',
    run: ({ sp }) => on(sp(SP1), set(sp(SP1), LSP_ECHO)),
  },
  { name: 'SET to itself', error: INVALID_PARAMETERS, code: 'notification_set.sender_is_receiver', run: ({ vm }) => on(vm, set(vm, vm.id)) },
  {
    name: 'SET as someone else',
    error: INVALID_PARAMETERS,
    code: 'notification_set.sender_not_caller',
    text: 'NOTIFICATION_SET: sender 0x8001 is not the caller 0x8002',
    run: ({ vm, sp }) => on(sp(SP2), { ...set(sp(SP2), vm.id), route: { source: SP1, destination: vm.id } } as FfaCall),
  },
  { name: 'SET of nothing', error: INVALID_PARAMETERS, code: 'notification_set.empty_bitmap', run: ({ vm }) => on(vm, set(vm, SP1, 0n)) },
  {
    name: 'a VM delaying the SRI',
    error: INVALID_PARAMETERS,
    code: 'notification_set.delay_sri',
    run: ({ vm }) => on(vm, set(vm, SP1, 1n, { delaySri: true })),
  },
  { name: 'SET to nobody', error: INVALID_PARAMETERS, code: 'notification_set.receiver_unknown', run: ({ vm }) => on(vm, set(vm, 0x1234)) },
  {
    name: 'SET to a partition without notifications',
    error: DENIED,
    code: 'notification_set.not_enabled',
    quietSp2: true,
    run: ({ vm }) => on(vm, set(vm, SP2)),
  },
  {
    name: 'SET of an ID not bound to the sender',
    error: DENIED,
    code: 'notification_set.not_bound',
    text: 'NOTIFICATION_SET: notification IDs not bound to 0x1 at 0x8001: 1 (unbound)',
    run: ({ vm, sp }) => (on(sp(SP1), bind(sp(SP1), vm.id, 0b1n)), on(vm, set(vm, SP1, 0b11n))),
  },
  {
    name: 'GET for another receiver',
    error: INVALID_PARAMETERS,
    code: 'notification_get.receiver_not_caller',
    run: ({ vm }) => on(vm, { fn: 'NOTIFICATION_GET', receiver: SP1, vcpu: 0, bitmaps: allBitmaps }),
  },
  {
    name: 'GET for a vCPU it lacks',
    error: INVALID_PARAMETERS,
    code: 'notification_get.vcpu_id',
    text: "NOTIFICATION_GET: vCPU ID 2 is not below 0x1's count 2",
    run: ({ vm }) => on(vm, { fn: 'NOTIFICATION_GET', receiver: vm.id, vcpu: 2, bitmaps: allBitmaps }),
  },
  {
    name: 'INFO_GET by a partition',
    error: NOT_SUPPORTED,
    code: 'notification_info_get.not_scheduler',
    run: ({ sp }) => on(sp(SP1), { fn: 'NOTIFICATION_INFO_GET', width: 64 }),
  },
  {
    name: 'INFO_GET with nothing new',
    error: NO_DATA,
    code: 'notification_info_get.no_data',
    text: 'NOTIFICATION_INFO_GET_64: nothing pending for 0x1 that was not reported already',
    run: ({ vm }) => on(vm, { fn: 'NOTIFICATION_INFO_GET', width: 64 }),
  },
];

t.test('every refusal of messaging, indirect messaging, notifications and CPU cycles says why', async (t) => {
  for (const c of REASONS) {
    const m = model(c.quietSp2);
    const out = c.run(m);
    if (isPending(out)) {
      t.fail(`${c.name}: the call blocked`);
      continue;
    }
    const error = Number(out[0]! & U32) === fid('ERROR') ? Number(BigInt.asIntN(32, out[2]!)) : undefined;
    t.equal(error, c.error, `${c.name}: the error`);
    const reason = m.spmc.reasonFor(out);
    t.equal(reason?.code, c.code, `${c.name}: the code`);
    if (c.text !== undefined) t.equal(reason?.text, c.text, `${c.name}: the text`);
    else t.ok(reason?.text, `${c.name}: a sentence`);
  }
  const texts = REASONS.filter((c) => c.text !== undefined);
  t.ok(
    texts.filter((c) => c.code.startsWith('msg_')).length >= 8 && texts.filter((c) => c.code.startsWith('notification_')).length >= 8,
    'exact text for at least 8 messaging and 8 notification checks',
  );
});
