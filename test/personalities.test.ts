// Each personality's documented differences, as the normal world meets them over a transport
// (in-process and gRPC), plus FFA_ABORT from a partition in the model itself.

import t from 'tap';
import {
  AMD_PERM,
  decodeCall,
  decodePartitionInfo,
  decodeResourceInfo,
  encodeCall,
  FEATURE_IDS,
  FFA_ERRORS,
  FFA_FUNCTIONS,
  FFA_PAGE_SIZE,
  FFA_VERSION_1_0,
  FFA_VERSION_1_1,
  FFA_VERSION_1_2,
  FFA_VERSION_1_3,
  type FfaCall,
  type FfaVersion,
  fid,
  makeVersion,
  MEM_PERM,
  NS_RES_INFO_FLAG_TARGET_VALID,
  PARTITION_INFO_FLAG_COUNT_ONLY,
  PARTITION_INFO_SIZE_V1_1,
  PARTITION_INFO_SIZE_V1_3,
  type Registers,
  RXTX_MIN_SIZE_64K,
  rxtxMaxPages,
  SMCCC_NOT_SUPPORTED,
  toRegisters,
  U32,
  unpackPartitionInfoRegsHeader,
  UUID_NIL,
} from '../proto/ffa/index.js';
import { FfaDriver } from '../client-driver/driver.js';
import type { Answer, Connector } from '../client-driver/transport/transport.js';
import { GrpcConnector } from '../client-driver/transport/grpc.js';
import { EmulatedVm } from '../client-driver/vm.js';
import { SpmcGrpcServer } from '../server/grpc/server.js';
import { buildHttpApp } from '../server/http/app.js';
import { defaultManifest } from '../server/manifest.js';
import { startBuiltinPartitions } from '../server/partitions/index.js';
import { PARTITION_COMMANDS as CMD } from '../server/partitions/commands.js';
import { CLOBBER_PATTERN } from '../server/personalities/hooks.js';
import { installPersonality, PERSONALITY_NAMES, personalityOrThrow } from '../server/personalities/index.js';
import { SessionCore } from '../server/session/core.js';
import { InProcessConnector } from '../server/session/in-process.js';
import { isPending } from '../server/spmc/pending.js';
import { type PartitionManifest, Spmc } from '../server/spmc/spmc.js';
import { codeOf, errnoOf } from './helpers.js';

const { NOT_SUPPORTED, INVALID_PARAMETERS, DENIED, ABORTED } = FFA_ERRORS;
const SP1 = 0x8001;
const SP2 = 0x8002;
const SPS = [0x8001, 0x8002, 0x8003, 0x8004];
const ERROR = BigInt(fid('ERROR'));

type Via = 'in-process' | 'grpc';
const VIAS: Via[] = ['in-process', 'grpc'];

/** A model answering as `name`, its built-in partitions running, reached `via` a transport. */
async function serving(name: string, via: Via, partitions: PartitionManifest[] = defaultManifest()) {
  const personality = personalityOrThrow(name);
  const spmc = new Spmc({ partitions, profile: personality.profile, handleSeed: 0x1234n });
  const core = SessionCore.for(spmc);
  await startBuiltinPartitions(core, (id, e) => {
    throw new Error(`partition ${id.toString(16)} failed: ${String(e)}`);
  });
  installPersonality(core, personality);
  let connector: Connector = new InProcessConnector(core);
  let stop = async () => {};
  if (via === 'grpc') {
    const server = new SpmcGrpcServer(core);
    const port = await server.listen('127.0.0.1:0');
    const grpc = new GrpcConnector(`127.0.0.1:${port}`);
    connector = grpc;
    stop = async () => {
      grpc.close();
      await server.stop(200);
    };
  }
  return { spmc, core, connector, stop };
}

/** A normal-world endpoint driven with raw registers over a transport. */
class Wire {
  constructor(
    readonly vm: EmulatedVm,
    public version: FfaVersion = FFA_VERSION_1_2,
  ) {}

  static async attach(connector: Connector, version: FfaVersion = FFA_VERSION_1_2, opts = {}): Promise<Wire> {
    const w = new Wire(await EmulatedVm.attach(connector, opts), version);
    await w.regs([fid('VERSION'), version]);
    return w;
  }

  regs(x: (bigint | number)[]): Promise<Answer> {
    return this.vm.transport.invoke(toRegisters(x));
  }

  async call(c: FfaCall): Promise<{ r: Answer; c: FfaCall }> {
    const r = await this.vm.transport.invoke(encodeCall(c, this.version));
    const d = decodeCall(r, this.version, false);
    if (!d.ok) throw new Error(`undecodable answer ${d.why}`);
    return { r, c: d.call };
  }

  async features(id: number, inputProperties = 0) {
    return this.call({ fn: 'FEATURES', id, inputProperties });
  }

  /** RX/TX of `pages` pages at `align`-page aligned addresses in its RAM. */
  async map(pages = 1, align = 1): Promise<{ tx: bigint; rx: bigint; out: Awaited<ReturnType<Wire['call']>> }> {
    const rx = this.vm.pages.alloc(pages, align)!;
    const tx = this.vm.pages.alloc(pages, align)!;
    return { tx, rx, out: await this.call({ fn: 'RXTX_MAP', width: 64, tx, rx, pageCount: pages }) };
  }
}

const errorCode = (c: FfaCall): number | undefined => (c.fn === 'ERROR' ? c.code : undefined);
const w0 = (r: Registers): number => Number(r[0]! & U32);
const args = (c: FfaCall): bigint[] => (c.fn === 'SUCCESS' ? c.args : []);

for (const via of VIAS) {
  t.test(`${via}: hafnium (the default) still answers v1.2 and has no v1.3 calls`, async (t) => {
    const { stop, connector } = await serving('hafnium', via);
    t.teardown(stop);
    const w = await Wire.attach(connector);
    t.equal(w0(await w.regs([fid('VERSION'), FFA_VERSION_1_2])), FFA_VERSION_1_2);
    const nsRes = await w.call({ fn: 'NS_RES_INFO_GET', width: 64, raw: [0n, 0n] });
    t.equal(errorCode(nsRes.c), NOT_SUPPORTED);
    t.equal(nsRes.r.reason?.code, 'ns_res_info_get.not_supported');
    t.equal(errorCode((await w.features(FEATURE_IDS.NOTIFICATION)).c), NOT_SUPPORTED, 'no notification feature ID');
    const fresh = await Wire.attach(connector, FFA_VERSION_1_2);
    t.equal(w0(await fresh.regs([fid('VERSION'), FFA_VERSION_1_3])), SMCCC_NOT_SUPPORTED, 'v1.3 is not compatible with a v1.2 SPMC');
  });

  t.test(`${via}: hafnium-2.14 answers FFA_VERSION with 1.3 (Hafnium 2.14 api_ffa_version)`, async (t) => {
    const { stop, connector } = await serving('hafnium-2.14', via);
    t.teardown(stop);
    const a = new Wire(await EmulatedVm.attach(connector));
    t.equal(w0(await a.regs([fid('VERSION'), FFA_VERSION_1_2])), FFA_VERSION_1_3, 'a v1.2 request is compatible; the answer is 1.3');
    t.equal(w0(await a.regs([fid('VERSION'), FFA_VERSION_1_3])), FFA_VERSION_1_3, 'so is v1.3 before any other call');
    t.equal(w0(await a.regs([fid('VERSION'), makeVersion(1, 4)])), SMCCC_NOT_SUPPORTED, 'a newer minor is not');
    t.equal(w0(await a.regs([fid('VERSION'), makeVersion(2, 0)])), SMCCC_NOT_SUPPORTED, 'nor another major');
    a.version = FFA_VERSION_1_3;
    await a.call({ fn: 'ID_GET' });
    t.equal(w0(await a.regs([fid('VERSION'), FFA_VERSION_1_2])), SMCCC_NOT_SUPPORTED, 'locked at 1.3 after the first other call');
    t.equal(w0(await a.regs([fid('VERSION'), FFA_VERSION_1_3])), FFA_VERSION_1_3, 'the same version still succeeds');
  });

  t.test(`${via}: hafnium-2.14 FEATURES: NS_RES_INFO_GET to VMs, ABORT to partitions, notification feature ID (ffa_features_function/feature)`, async (t) => {
    const { stop, connector } = await serving('hafnium-2.14', via);
    t.teardown(stop);
    const w = await Wire.attach(connector, FFA_VERSION_1_3);
    t.equal((await w.features(fid('NS_RES_INFO_GET', 64))).c.fn, 'SUCCESS', 'NS_RES_INFO_GET is reported to a VM');
    for (const width of [32, 64] as const) {
      const abort = await w.features(fid('ABORT', width));
      t.equal(errorCode(abort.c), NOT_SUPPORTED, `ABORT_${width} is not reported to a VM`);
      t.equal(abort.r.reason?.code, 'features.not_for_caller');
    }
    const notif = await w.features(FEATURE_IDS.NOTIFICATION);
    t.same(args(notif.c).slice(0, 1), [3n], 'feature ID 4: per-vCPU notifications unsupported for VMs (bit 0) and SPs (bit 1)');
    t.equal(errorCode((await w.features(FEATURE_IDS.NOTIFICATION, 1)).c), NOT_SUPPORTED, 'a feature ID takes no input properties');
    const abort = await w.call({ fn: 'ABORT', width: 32, raw: [0n, 0n, 0n, 0n, 0n, 0n, 0n] });
    t.equal(errorCode(abort.c), NOT_SUPPORTED, 'a VM calling FFA_ABORT');
    t.equal(abort.r.reason?.code, 'abort.not_for_vms');
  });

  t.test(`${via}: hafnium-2.14 FFA_NS_RES_INFO_GET lists RX/TX buffers and memory shared to partitions (api_ffa_ns_res_info_get)`, async (t) => {
    const { stop, connector, spmc } = await serving('hafnium-2.14', via);
    t.teardown(stop);
    const vm = await EmulatedVm.attach(connector);
    const drv = new FfaDriver(vm);
    await drv.init();
    const pages = vm.pages.alloc(2)!;
    const handle = await drv.memShare({ receivers: [{ id: SP1, permissions: MEM_PERM.DATA_RW }], regions: [{ address: pages, pageCount: 2 }] });

    const [x2 = 0n] = await drv.success({ fn: 'NS_RES_INFO_GET', width: 64, raw: [0n, 0n] });
    const size = Number(x2 >> 32n);
    t.equal(Number(x2 & U32), 0, 'nothing remains: it fits one RX buffer');
    const amds = decodeResourceInfo(await vm.read(drv.rxBuffer, size));
    t.same(
      amds.map((a) => [a.base, a.pageCount, a.endpoint]),
      [
        [drv.rxBuffer, 1, vm.id],
        [drv.txBuffer, 1, vm.id],
        [pages, 2, SP1],
      ],
      'the VM’s RX and TX, then the shared pages with their borrower',
    );
    t.equal(amds[2]!.permissions & (AMD_PERM.PRIV_R | AMD_PERM.PRIV_W), AMD_PERM.PRIV_R | AMD_PERM.PRIV_W, 'read-write for the borrower');
    t.equal(spmc.endpoint(vm.id)!.mailbox!.rxState, 'full', 'RX is the VM’s until it releases it');
    t.equal(await errnoOf(drv.success({ fn: 'NS_RES_INFO_GET', width: 64, raw: [0n, 0n] })), 'EAGAIN', 'RX still full: RETRY');
    await drv.success({ fn: 'RX_RELEASE', vmId: 0 });

    const [only2 = 0n] = await drv.success({ fn: 'NS_RES_INFO_GET', width: 64, raw: [BigInt(SP2), BigInt(NS_RES_INFO_FLAG_TARGET_VALID)] });
    t.equal(decodeResourceInfo(await vm.read(drv.rxBuffer, Number(only2 >> 32n))).length, 2, 'asking about SP2: the buffers only, not SP1’s share');
    await drv.success({ fn: 'RX_RELEASE', vmId: 0 });

    const refused = async (raw: bigint[]) => {
      const r = await drv.call({ fn: 'NS_RES_INFO_GET', width: 64, raw });
      return r.fn === 'ERROR' ? [r.code, r.reason?.code] : [];
    };
    t.same(await refused([0n, BigInt(NS_RES_INFO_FLAG_TARGET_VALID)]), [INVALID_PARAMETERS, 'ns_res_info_get.target_zero']);
    t.same(await refused([0x1234n, BigInt(NS_RES_INFO_FLAG_TARGET_VALID)]), [INVALID_PARAMETERS, 'ns_res_info_get.target_not_sp']);
    t.same(await refused([0x8009n, BigInt(NS_RES_INFO_FLAG_TARGET_VALID)]), [INVALID_PARAMETERS, 'ns_res_info_get.unknown_target']);
    t.same(await refused([0n, 0x4n]), [INVALID_PARAMETERS, 'ns_res_info_get.resource_type']);
    t.same(await refused([0n, 0x10n]), [ABORTED, 'ns_res_info_get.nothing_to_continue'], 'continuing with nothing in progress');
    await drv.memReclaim(handle);
    await drv.exit();
  });

  t.test(`${via}: descriptor-48 returns 48-byte descriptors in RX and in PARTITION_INFO_GET_REGS (NV-Kernels #437)`, async (t) => {
    const { stop, connector } = await serving('descriptor-48', via);
    t.teardown(stop);
    const w = await Wire.attach(connector);
    const { rx } = await w.map();
    const got = await w.call({ fn: 'PARTITION_INFO_GET', uuid: UUID_NIL, countOnly: false });
    const [count = 0n, size = 0n] = args(got.c);
    t.equal(Number(size), PARTITION_INFO_SIZE_V1_3, 'w3 = 48');
    const infos = decodePartitionInfo(await w.vm.read(rx, Number(count) * PARTITION_INFO_SIZE_V1_3), Number(count), PARTITION_INFO_SIZE_V1_3);
    t.same(
      infos.map((i) => i.id),
      [w.vm.id, ...SPS],
    );
    t.same(
      infos.map((i) => i.ffaVersion),
      [FFA_VERSION_1_2, ...SPS.map(() => FFA_VERSION_1_2)],
      'the v1.3 layout tells each partition’s version',
    );
    await w.call({ fn: 'RX_RELEASE', vmId: 0 });

    const regs = await w.call({ fn: 'PARTITION_INFO_GET_REGS', uuid: UUID_NIL, startIndex: 0, tag: 0 });
    const h = unpackPartitionInfoRegsHeader(args(regs.c)[0]!);
    t.equal(h.descSize, PARTITION_INFO_SIZE_V1_3, 'x2[63:48] = 48');
    t.equal(h.currentIndex, 1, 'two descriptors a call (six registers each)');
    t.equal(Number(args(regs.c)[7]! & 0xffffn), SPS[0], 'the second descriptor starts at x9');

    const old = await Wire.attach(connector, FFA_VERSION_1_0);
    const { rx: rx0 } = await old.map();
    const [n0 = 0n] = args((await old.call({ fn: 'PARTITION_INFO_GET', uuid: UUID_NIL, countOnly: false })).c);
    t.same(decodePartitionInfo(await old.vm.read(rx0, Number(n0) * 8), Number(n0), 8).slice(-1)[0]?.id, 0x8004, 'a v1.0 caller still gets 8 bytes');
  });

  t.test(`${via}: partition-info-size-zero answers w3 = 0 after filling RX (OP-TEE before PR #6531)`, async (t) => {
    const { stop, connector } = await serving('partition-info-size-zero', via);
    t.teardown(stop);
    const w = await Wire.attach(connector);
    const { rx } = await w.map();
    const [count = 0n, size = 1n] = args((await w.call({ fn: 'PARTITION_INFO_GET', uuid: UUID_NIL, countOnly: false })).c);
    t.equal(size, 0n, 'w3 = 0');
    t.same(
      decodePartitionInfo(await w.vm.read(rx, Number(count) * PARTITION_INFO_SIZE_V1_1), Number(count), PARTITION_INFO_SIZE_V1_1).map((i) => i.id),
      [w.vm.id, ...SPS],
      'the descriptors themselves are the v1.2 ones',
    );
  });

  t.test(`${via}: min-rxtx-64k reports a 64 KiB minimum and holds RXTX_MAP to it`, async (t) => {
    const { stop, connector } = await serving('min-rxtx-64k', via);
    t.teardown(stop);
    const w = await Wire.attach(connector);
    const [w2 = 0n] = args((await w.features(fid('RXTX_MAP', 64))).c);
    t.equal(Number(w2) & 3, RXTX_MIN_SIZE_64K, 'w2[1:0] = 1: 64 KiB');
    t.equal(rxtxMaxPages(Number(w2)), 16, 'at most 16 pages');
    const small = await w.map(1);
    t.equal(errorCode(small.out.c), INVALID_PARAMETERS);
    t.equal(small.out.r.reason?.code, 'rxtx_map.below_minimum');
    w.vm.pages.alloc(1); // so that the next pages are not 64 KiB aligned by chance
    const base = w.vm.pages.alloc(32, 16)! + BigInt(FFA_PAGE_SIZE);
    const skewed = await w.call({ fn: 'RXTX_MAP', width: 64, tx: base, rx: base + 0x10000n, pageCount: 16 });
    t.equal(skewed.r.reason?.code, 'rxtx_map.min_alignment', '16 pages not on a 64 KiB boundary');
    const good = await w.map(16, 16);
    t.equal(good.out.c.fn, 'SUCCESS', '16 pages, 64 KiB aligned');
  });

  t.test(`${via}: clobber-x8-x17 leaves garbage in x8..x17 of answers to v1.2 callers (rusted-firmware-a#96)`, async (t) => {
    const { stop, connector } = await serving('clobber-x8-x17', via);
    t.teardown(stop);
    const w = await Wire.attach(connector);
    const id = await w.regs([fid('ID_GET')]);
    t.equal(id[8], CLOBBER_PATTERN | 8n, 'x8 of an 8-register answer');
    t.equal(id[17], CLOBBER_PATTERN | 17n);
    const resp = await w.regs([fid('MSG_SEND_DIRECT_REQ', 64), (BigInt(w.vm.id) << 16n) | BigInt(SP1), 0, CMD.ECHO, 1, 2, 3, 4]);
    t.same([resp[3], resp[7], resp[8]], [BigInt(CMD.ECHO), 4n, CLOBBER_PATTERN | 8n], 'a response that came later (the partition ran) is clobbered too');
    const payload = Array.from({ length: 14 }, (_, i) => BigInt(i + 1));
    const resp2 = await w.regs([fid('MSG_SEND_DIRECT_REQ2', 64), (BigInt(w.vm.id) << 16n) | BigInt(SP1), 0, 0, ...payload]);
    t.same(resp2.slice(4), payload, 'DIRECT_RESP2 carries results in x4..x17: kept');
    const older = await Wire.attach(connector, FFA_VERSION_1_1);
    const idOld = await older.regs([fid('ID_GET')]);
    t.same(idOld.slice(8), new Array(10).fill(0n), 'a v1.1 caller: x8..x17 are not part of its calls');
  });

  t.test(`${via}: physical: one normal-world endpoint, ID 0, that sees the SPs only`, async (t) => {
    const { stop, connector } = await serving('physical', via);
    t.teardown(stop);
    const w = await Wire.attach(connector);
    t.equal(w.vm.id, 0, 'the normal world is endpoint 0');
    t.same(args((await w.call({ fn: 'ID_GET' })).c).slice(0, 1), [0n], 'ID_GET answers 0');
    const { rx } = await w.map();
    const [count = 0n, size = 0n] = args((await w.call({ fn: 'PARTITION_INFO_GET', uuid: UUID_NIL, countOnly: false })).c);
    t.same(
      decodePartitionInfo(await w.vm.read(rx, Number(count * size)), Number(count), Number(size)).map((i) => i.id),
      SPS,
      'no VMs listed, not even itself',
    );
    t.equal(await codeOf(EmulatedVm.attach(connector)), 'RESOURCE_EXHAUSTED', 'a second normal-world endpoint cannot attach');
    t.equal(await codeOf(EmulatedVm.attach(connector, { endpointId: 5 })), 'INVALID_ARGUMENT', 'nor one asking for another ID');
  });

  t.test(`${via}: hafnium lists the VMs to a VM; physical does not (the hypervisor view vs the physical one)`, async (t) => {
    const { stop, connector } = await serving('hafnium', via);
    t.teardown(stop);
    const a = await Wire.attach(connector);
    await Wire.attach(connector);
    const [count = 0n] = args((await a.call({ fn: 'PARTITION_INFO_GET', uuid: UUID_NIL, countOnly: true })).c);
    t.equal(Number(count), 2 + SPS.length, 'two VMs and four SPs');
  });

  t.test(`${via}: tf-a-el3-spmc: its own version for any request, no feature IDs, arguments before DENIED (spmc_main.c)`, async (t) => {
    const { stop, connector } = await serving('tf-a-el3-spmc', via);
    t.teardown(stop);
    const w = new Wire(await EmulatedVm.attach(connector));
    t.equal(w0(await w.regs([fid('VERSION'), makeVersion(2, 0)])), FFA_VERSION_1_2, 'an incompatible request still gets its version (ffa_version_handler)');
    t.equal(w0(await w.regs([fid('VERSION'), 0x80010002])), SMCCC_NOT_SUPPORTED, 'bit 31 set: NOT_SUPPORTED');
    t.equal(w0(await w.regs([fid('VERSION'), FFA_VERSION_1_1])), FFA_VERSION_1_2);
    w.version = FFA_VERSION_1_1;
    t.equal(w.vm.id, 0, 'one normal-world endpoint, ID 0');
    t.same(args((await w.call({ fn: 'ID_GET' })).c).slice(0, 1), [0n]);
    t.equal(w0(await w.regs([fid('VERSION'), FFA_VERSION_1_2])), FFA_VERSION_1_2, 'and never locked');
    w.version = FFA_VERSION_1_2;

    const sri = await w.features(FEATURE_IDS.SRI);
    t.equal(errorCode(sri.c), NOT_SUPPORTED, 'no feature IDs');
    t.same(args((await w.features(fid('RXTX_MAP', 64))).c).slice(0, 1), [0n], 'RXTX_MAP: 4 KiB, no page maximum reported');
    t.equal((await w.features(fid('ID_GET'), 1)).r.reason?.code, 'features.input_properties', 'input properties must be 0');
    for (const fn of ['MEM_DONATE', 'MSG_SEND2', 'NOTIFICATION_BITMAP_CREATE', 'PARTITION_INFO_GET_REGS'] as const) {
      const width = fn === 'MEM_DONATE' || fn === 'PARTITION_INFO_GET_REGS' ? 64 : 32;
      t.equal(errorCode((await w.features(fid(fn, width))).c), NOT_SUPPORTED, `FEATURES(${fn}): not for the normal world`);
    }
    const send2 = await w.call({ fn: 'MSG_SEND2', senderVmId: 0, delaySri: false });
    t.equal(send2.r.reason?.code, 'msg_send2.not_supported', 'and calling it is NOT_SUPPORTED too');

    const { tx, rx } = await w.map();
    t.equal(
      errorCode((await w.call({ fn: 'RXTX_MAP', width: 64, tx, rx, pageCount: 0 })).c),
      INVALID_PARAMETERS,
      'a second map with a bad count: the count first',
    );
    t.equal(errorCode((await w.call({ fn: 'RXTX_MAP', width: 64, tx, rx, pageCount: 1 })).c), DENIED, 'a good second map: DENIED');
    const [count = 0n, size = 0n] = args((await w.call({ fn: 'PARTITION_INFO_GET', uuid: UUID_NIL, countOnly: false })).c);
    t.same(
      decodePartitionInfo(await w.vm.read(rx, Number(count * size)), Number(count), Number(size)).map((i) => i.id),
      SPS,
      'the SPs only',
    );
  });

  t.test(`${via}: hafnium refuses a second RXTX_MAP before looking at its arguments (api_ffa_rxtx_map)`, async (t) => {
    const { stop, connector } = await serving('hafnium', via);
    t.teardown(stop);
    const w = await Wire.attach(connector);
    const { tx, rx } = await w.map();
    t.equal(errorCode((await w.call({ fn: 'RXTX_MAP', width: 64, tx, rx, pageCount: 0 })).c), DENIED);
  });

  t.test(`${via}: optee: v1.0 or v1.1, FEATURES as handle_features answers, no lend/donate/retrieve (thread_spmc.c)`, async (t) => {
    const { stop, connector } = await serving('optee', via);
    t.teardown(stop);
    const w = new Wire(await EmulatedVm.attach(connector), FFA_VERSION_1_1);
    t.equal(w0(await w.regs([fid('VERSION'), FFA_VERSION_1_2])), FFA_VERSION_1_1, 'a v1.2 request settles on 1.1 (spmc_exchange_version)');
    t.same(args((await w.call({ fn: 'ID_GET' })).c).slice(0, 1), [0n], 'ID_GET works and answers 0 ...');
    const idGet = await w.features(fid('ID_GET'));
    t.equal(errorCode(idGet.c), NOT_SUPPORTED, '... though FEATURES does not report it');
    t.equal(idGet.r.reason?.code, 'features.not_reported');
    t.equal(w0(await w.regs([fid('VERSION'), FFA_VERSION_1_0])), FFA_VERSION_1_0, 'renegotiated after other calls');
    t.equal(w0(await w.regs([fid('VERSION'), FFA_VERSION_1_1])), FFA_VERSION_1_1);
    t.same(args((await w.features(fid('MEM_SHARE', 64))).c).slice(0, 1), [1n], 'MEM_SHARE: w2 bit 0, the dynamic buffer');
    t.same(args((await w.features(FEATURE_IDS.MEI)).c).slice(0, 1), [0n], 'MEI reported with w2 = 0');
    t.equal((await w.features(FEATURE_IDS.SRI)).c.fn, 'SUCCESS', 'SRI reported');
    t.equal(errorCode((await w.features(FEATURE_IDS.NPI)).c), NOT_SUPPORTED, 'NPI is not');
    for (const [fn, width] of [
      ['MEM_LEND', 64],
      ['MEM_DONATE', 64],
      ['MEM_RETRIEVE_REQ', 64],
      ['PARTITION_INFO_GET_REGS', 64],
      ['MSG_SEND_DIRECT_REQ2', 64],
    ] as const) {
      t.equal(errorCode((await w.features(fid(fn, width))).c), NOT_SUPPORTED, `FEATURES(${fn}_${width}) is NOT_SUPPORTED`);
    }
    const lend = await w.call({ fn: 'MEM_LEND', width: 64, totalLength: 0, fragmentLength: 0, buffer: { address: 0n, pageCount: 0 } });
    t.equal(lend.r.reason?.code, 'mem_lend.not_supported', 'calling MEM_LEND is NOT_SUPPORTED');
    const { tx, rx } = await w.map();
    t.equal(errorCode((await w.call({ fn: 'RXTX_MAP', width: 64, tx, rx, pageCount: 0 })).c), INVALID_PARAMETERS, 'the page count before DENIED');
    const [count = 0n, size = 0n] = args((await w.call({ fn: 'PARTITION_INFO_GET', uuid: UUID_NIL, countOnly: false })).c);
    t.equal(Number(size), PARTITION_INFO_SIZE_V1_1);
    t.same(
      decodePartitionInfo(await w.vm.read(rx, Number(count * size)), Number(count), Number(size)).map((i) => i.id),
      SPS,
      'the SPs only',
    );
    const countOnly = await w.regs([fid('PARTITION_INFO_GET'), 0, 0, 0, 0, PARTITION_INFO_FLAG_COUNT_ONLY]);
    t.same([countOnly[2], countOnly[3]], [BigInt(SPS.length), 0n], 'count-only needs no RX (still full here) and leaves w3 0');
  });
}

t.test('hafnium-2.14: FFA_ABORT from a partition answers ABORTED to the request it served (api_ffa_abort)', async (t) => {
  const remote: PartitionManifest = {
    id: 0x8005,
    name: 'remote',
    uuids: [],
    ffaVersion: FFA_VERSION_1_3,
    execContexts: 1,
    properties: 0x103,
    ramBytes: 1n << 20n,
    notificationSupport: false,
    behaviour: { kind: 'remote', credential: 'remote-credential' },
  };
  const { stop, core, connector } = await serving('hafnium-2.14', 'in-process', [...defaultManifest(), remote]);
  t.teardown(stop);
  const sp = core.attach({ endpointId: 0x8005, credential: 'remote-credential' });
  const s = core.session(sp.session);
  const spCall = (x: (bigint | number)[]) => core.call(s, 0, toRegisters(x), 'test');
  t.equal(w0(spCall([fid('VERSION'), FFA_VERSION_1_3]) as Registers), FFA_VERSION_1_3);
  const waiting = spCall([fid('MSG_WAIT')]);
  t.ok(isPending(waiting), 'the partition waits for a request');
  const vm = await Wire.attach(connector);
  const request = vm.regs([fid('MSG_SEND_DIRECT_REQ', 64), (BigInt(vm.vm.id) << 16n) | 0x8005n, 0, 1, 2, 3, 4, 5]);
  if (isPending(waiting)) await waiting.answer;
  const mbz = spCall([fid('ABORT'), 1, 0x77]) as Registers;
  t.equal(Number(mbz[2]! & U32) | 0, INVALID_PARAMETERS, 'x1 must be zero');
  t.equal(core.reasonFor(mbz)?.code, 'abort.mbz');
  const aborting = spCall([fid('ABORT'), 0, 0x77]);
  t.ok(isPending(aborting), 'FFA_ABORT does not return to the partition');
  const answer = await request;
  t.equal(Number(answer[2]! & U32) | 0, ABORTED, 'the requester gets ABORTED');
  t.equal(answer.reason?.code, 'abort.partition_aborted');
  const again = await vm.regs([fid('MSG_SEND_DIRECT_REQ', 64), (BigInt(vm.vm.id) << 16n) | 0x8005n, 0, 1, 2, 3, 4, 5]);
  t.equal(again[0], ERROR, 'a later request to the aborted partition is refused');
  t.equal(Number(again[2]! & U32) | 0, FFA_ERRORS.BUSY, 'BUSY: its context never waits again');
});

t.test('http (JSON transport): physical attaches endpoint 0; hafnium-2.14 answers v1.3', async (t) => {
  for (const [name, id, version] of [
    ['physical', 0, FFA_VERSION_1_2],
    ['hafnium-2.14', 1, FFA_VERSION_1_3],
  ] as const) {
    const { core, stop } = await serving(name, 'in-process');
    const app = await buildHttpApp({ core });
    t.teardown(async () => {
      await app.close();
      await stop();
    });
    const attached = await app.inject({ method: 'POST', url: '/v1/attach', payload: {} });
    const a = attached.json<{ session: string; endpointId: number }>();
    t.equal(a.endpointId, id, `${name}: endpoint ${id}`);
    const call = async (x: (number | bigint)[]) =>
      (await app.inject({ method: 'POST', url: '/v1/smccc', payload: { session: a.session, x: x.map((v) => `0x${v.toString(16)}`) } })).json<{ x: string[] }>()
        .x;
    t.equal(Number((await call([fid('VERSION'), FFA_VERSION_1_2]))[0]), version, `${name}: FFA_VERSION`);
    t.equal(BigInt((await call([fid('ID_GET')]))[2]!), BigInt(id), `${name}: ID_GET`);
  }
});

t.test('for VMs, FEATURES and the dispatcher agree on what each personality does not do, and differ where it hides a function', async (t) => {
  for (const name of PERSONALITY_NAMES) {
    const p = personalityOrThrow(name);
    const spmc = new Spmc({ partitions: defaultManifest(), profile: p.profile, handleSeed: 1n });
    const vm = spmc.attach({}).id;
    const core = SessionCore.for(spmc);
    const call = (x: (number | bigint)[]) => core.handle(vm, 0, toRegisters(x), 'test');
    call([fid('VERSION'), FFA_VERSION_1_2]);
    for (const fn of p.profile.vmUnsupported ?? []) {
      for (const width of FFA_FUNCTIONS[fn].widths) {
        const features = call([fid('FEATURES'), fid(fn, width)]) as Registers;
        t.equal(Number(features[2]! & U32) | 0, NOT_SUPPORTED, `${name}: FEATURES(${fn}_${width}) is NOT_SUPPORTED`);
        const out = call([fid(fn, width)]);
        t.notOk(isPending(out), `${name}: ${fn}_${width} answers at once`);
        t.equal(core.reasonFor(out as Registers)?.code, `${fn.toLowerCase()}.not_supported`, `${name}: calling ${fn}_${width} is NOT_SUPPORTED`);
      }
    }
    for (const fn of p.profile.vmFeaturesHidden ?? []) {
      const features = call([fid('FEATURES'), fid(fn)]) as Registers;
      t.equal(core.reasonFor(features)?.code, 'features.not_reported', `${name}: FEATURES(${fn}) says NOT_SUPPORTED`);
      const out = call([fid(fn)]);
      t.not(isPending(out) ? undefined : Number((out as Registers)[2]! & U32) | 0, NOT_SUPPORTED, `${name}: but ${fn} is handled`);
    }
  }
});
