// Issue 13, items 1 and 3, over gRPC: version negotiation locks on the first other call (not at
// attach), and secure partitions see only secure partitions. Each case names the Hafnium function
// (TF-Hafnium/hafnium at 21bfbdc1) it follows. Partitions are driven raw, as remote partitions
// attached with their credential.

import t from 'tap';
import {
  decodePartitionInfo,
  encodeCall,
  FFA_ERRORS,
  FFA_PAGE_SIZE,
  FFA_VERSION_1_0,
  FFA_VERSION_1_1,
  FFA_VERSION_1_2,
  FFA_VERSION_1_3,
  type FfaCall,
  fid,
  parseUuid,
  PARTITION_PROPERTIES as P,
  partitionInfoFromRegs,
  type Registers,
  SMCCC_NOT_SUPPORTED,
  toRegisters,
  U32,
  unpackPartitionInfoRegsHeader,
  UUID_NIL,
} from '../proto/ffa/index.js';
import { SpmcChannel } from '../client-driver/transport/grpc-client.js';
import { SpmcGrpcServer } from '../server/grpc/server.js';
import { defaultManifest, parseManifest } from '../server/manifest.js';
import { Spmc } from '../server/spmc/spmc.js';
import { errorOfRegs } from './helpers.js';

const CREDENTIAL = 'fidelity-credential';
const SP12 = 0x8011;
const SP11 = 0x8012;
const SP10 = 0x8013;
const VM_UUID = '0badcafe-0000-4000-8000-0000000000aa';

const remote = (name: string, id: number, version: string, uuid: string, method: number) => ({
  name,
  id,
  uuids: [uuid],
  'ffa-version': version,
  'execution-ctx-count': 2,
  'messaging-method': method,
  'notification-support': true,
  remote: { credential: CREDENTIAL },
});

const PARTITIONS = [
  ...defaultManifest(),
  ...parseManifest(
    JSON.stringify({
      partitions: [
        remote('declared-1.2', SP12, '1.2', '0badcafe-0000-4000-8000-000000000012', 0x607),
        remote('declared-1.1', SP11, '1.1', '0badcafe-0000-4000-8000-000000000011', 0x7),
        remote('declared-1.0', SP10, '1.0', '0badcafe-0000-4000-8000-000000000010', 0x3),
      ],
    }),
  ),
];
const SP_IDS = PARTITIONS.map((p) => p.id).sort((a, b) => a - b);

interface Ep {
  id: number;
  ramBase: bigint;
  ffaVersion?: number;
  regs(x: (bigint | number)[], vcpu?: number): Promise<Registers>;
  call(c: FfaCall, version: number): Promise<Registers>;
  detach(): Promise<void>;
}

async function world(t: { teardown(fn: () => unknown): void }) {
  const spmc = new Spmc({ partitions: PARTITIONS });
  const server = new SpmcGrpcServer(spmc);
  const port = await server.listen('127.0.0.1:0');
  const ch = new SpmcChannel(`127.0.0.1:${port}`);
  t.teardown(async () => {
    ch.close();
    await server.stop();
  });
  const attach = async (opts: { endpointId?: number; credential?: string; uuids?: string[] } = {}): Promise<Ep> => {
    const a = await ch.attach({ vcpuCount: 2, ...opts });
    return {
      id: a.endpointId,
      ramBase: a.ramBase,
      ffaVersion: a.ffaVersion,
      regs: (x, vcpu = 0) => ch.call(a.session, vcpu, toRegisters(x)),
      call: (c, version) => ch.call(a.session, 0, encodeCall(c, version)),
      detach: () => ch.detach(a.session),
    };
  };
  const sp = (id: number) => attach({ endpointId: id, credential: CREDENTIAL });
  return { spmc, ch, attach, sp };
}

const w0 = (r: Registers) => Number(r[0]! & U32);
const version = (ep: Ep, v: number) => ep.regs([fid('VERSION'), v]).then(w0);
const NOT_SUPPORTED_W0 = SMCCC_NOT_SUPPORTED;

t.test("item 1: FFA_VERSION negotiation (Hafnium api_ffa_version, ffa_handler's ffa_version_negotiated)", async (t) => {
  t.test('a partition declared v1.2 negotiates v1.1 before its first other call', async (t) => {
    const { spmc, sp } = await world(t);
    const p = await sp(SP12);
    t.equal(p.ffaVersion, FFA_VERSION_1_2, 'the attach tells it its declared version (Hafnium: the manifest at boot)');
    t.equal(spmc.endpoint(SP12)!.version, FFA_VERSION_1_2, "load.c: vm->ffa_version starts as the manifest's");
    t.equal(await version(p, FFA_VERSION_1_1), FFA_VERSION_1_2, "answered with the SPMC's version");
    t.equal(spmc.endpoint(SP12)!.version, FFA_VERSION_1_1, 'and the partition is v1.1 from now on');
    t.equal(spmc.partition(SP12)!.ffaVersion, FFA_VERSION_1_2, 'the manifest still says what it was declared as');
    // v1.1 layouts: a 24-byte descriptor size in w3, and no REQ2 properties for it as others see it.
    await p.call({ fn: 'RXTX_MAP', width: 64, tx: p.ramBase, rx: p.ramBase + BigInt(FFA_PAGE_SIZE), pageCount: 1 }, FFA_VERSION_1_1);
    const r = await p.call({ fn: 'PARTITION_INFO_GET', uuid: UUID_NIL, countOnly: false }, FFA_VERSION_1_1);
    t.equal(r[3], 24n);
    t.equal(spmc.endpoint(SP12)!.versionLocked, true, 'RXTX_MAP locked it');
  });

  t.test('a partition declared v1.2 negotiates v1.0: 8-byte descriptors, no w3', async (t) => {
    const { spmc, sp } = await world(t);
    const p = await sp(SP12);
    t.equal(await version(p, FFA_VERSION_1_0), FFA_VERSION_1_2);
    await p.call({ fn: 'RXTX_MAP', width: 64, tx: p.ramBase, rx: p.ramBase + BigInt(FFA_PAGE_SIZE), pageCount: 1 }, FFA_VERSION_1_0);
    const r = await p.call({ fn: 'PARTITION_INFO_GET', uuid: UUID_NIL, countOnly: false }, FFA_VERSION_1_0);
    t.same([w0(r), r[3]], [fid('SUCCESS'), 0n]);
    const infos = decodePartitionInfo(spmc.readMemory(SP12, p.ramBase + BigInt(FFA_PAGE_SIZE), Number(r[2]) * 8), Number(r[2]), 8);
    t.same(
      infos.map((i) => i.id),
      SP_IDS,
    );
  });

  t.test('a partition declared v1.0 may negotiate v1.2 (any compatible version, api_ffa_version)', async (t) => {
    const { spmc, sp } = await world(t);
    const p = await sp(SP10);
    t.equal(p.ffaVersion, FFA_VERSION_1_0);
    t.equal(await version(p, FFA_VERSION_1_2), FFA_VERSION_1_2);
    t.equal(spmc.endpoint(SP10)!.version, FFA_VERSION_1_2);
  });

  t.test(
    'locked after FF-A use: the same version again succeeds, another is NOT_SUPPORTED (Hafnium test "ffa_version is locked after FF-A use")',
    async (t) => {
      const { spmc, sp } = await world(t);
      const p = await sp(SP11);
      t.equal(await version(p, FFA_VERSION_1_0), FFA_VERSION_1_2);
      t.equal(w0(await p.call({ fn: 'FEATURES', id: fid('VERSION'), inputProperties: 0 }, FFA_VERSION_1_0)), fid('SUCCESS'), 'FEATURES ends negotiation');
      // Hafnium answers NOT_SUPPORTED here; TF-A's EL3 SPMC (the test's target) returns the locked version.
      t.equal(await version(p, FFA_VERSION_1_1), NOT_SUPPORTED_W0, 'another version');
      t.equal(await version(p, FFA_VERSION_1_0), FFA_VERSION_1_2, 'the negotiated one');
      t.equal(spmc.endpoint(SP11)!.version, FFA_VERSION_1_0);
    },
  );

  t.test('an incompatible request leaves the declared version (keeps_negotiated_version_incompatible_high/low)', async (t) => {
    const { spmc, sp } = await world(t);
    const p = await sp(SP11);
    t.equal(await version(p, FFA_VERSION_1_3), NOT_SUPPORTED_W0, 'v1.3 is newer than the SPMC');
    t.equal(await version(p, 0), NOT_SUPPORTED_W0, 'v0.0');
    t.equal(await version(p, 0x80010001), NOT_SUPPORTED_W0, 'bit 31 set (ffa_version_is_valid)');
    t.equal(spmc.endpoint(SP11)!.version, FFA_VERSION_1_1);
    await p.regs([fid('ID_GET')]);
    t.equal(await version(p, FFA_VERSION_1_1), FFA_VERSION_1_2, "the manifest's version is the locked one");
    t.equal(await version(p, FFA_VERSION_1_2), NOT_SUPPORTED_W0);
  });

  t.test('FFA_VERSION and FFA_INTERRUPT do not lock it (ffa_handler)', async (t) => {
    const { attach } = await world(t);
    const vm = await attach();
    t.equal(vm.ffaVersion, undefined, 'a VM is told no declared version');
    t.equal(await version(vm, FFA_VERSION_1_2), FFA_VERSION_1_2);
    t.equal(errorOfRegs(await vm.regs([fid('INTERRUPT')])), FFA_ERRORS.DENIED);
    t.equal(await version(vm, FFA_VERSION_1_1), FFA_VERSION_1_2, 'still free to change');
  });

  t.test('w2..w7 of FFA_VERSION are not read (api_ffa_version takes w1 only)', async (t) => {
    const { attach } = await world(t);
    const vm = await attach();
    t.equal(w0(await vm.regs([fid('VERSION'), FFA_VERSION_1_1, 0xff, 1, 2, 3, 4, 5])), FFA_VERSION_1_2);
  });

  t.test('a remote partition attaching again starts from its declared version, unlocked', async (t) => {
    const { spmc, sp } = await world(t);
    const p = await sp(SP11);
    await version(p, FFA_VERSION_1_0);
    await p.regs([fid('ID_GET')]);
    await p.detach();
    const again = await sp(SP11);
    t.equal(spmc.endpoint(SP11)!.version, FFA_VERSION_1_1);
    t.equal(spmc.endpoint(SP11)!.versionLocked, false);
    t.equal(await version(again, FFA_VERSION_1_2), FFA_VERSION_1_2);
  });

  t.test('what others see follows the negotiated version (api_ffa_partitions_info_get_properties reads vm->ffa_version)', async (t) => {
    const { attach, sp } = await world(t);
    const p = await sp(SP12);
    await version(p, FFA_VERSION_1_1);
    const vm = await attach();
    await version(vm, FFA_VERSION_1_2);
    const [, , x2, x3] = await vm.call(
      { fn: 'PARTITION_INFO_GET_REGS', uuid: parseUuid('0badcafe-0000-4000-8000-000000000012'), startIndex: 0, tag: 0 },
      FFA_VERSION_1_2,
    );
    t.equal(unpackPartitionInfoRegsHeader(x2!).lastIndex, 0);
    const info = partitionInfoFromRegs(x3!, 0n, 0n);
    t.equal(info.properties & (P.DIRECT_REQ2_RECV | P.DIRECT_REQ2_SEND), 0, 'a v1.1 partition offers no REQ2');
    t.ok(info.properties & P.INDIRECT_MSG, 'but indirect messages (v1.1)');
  });
});

t.test('item 3: secure partitions see only secure partitions (Hafnium SPMC: VMs live in nwd_vms, api_ffa_fill_partitions_info_array)', async (t) => {
  const setup = async (t: { teardown(fn: () => unknown): void }) => {
    const w = await world(t);
    const vm1 = await w.attach({ endpointId: 1 });
    const vm2 = await w.attach({ endpointId: 2, uuids: [VM_UUID] });
    for (const vm of [vm1, vm2]) await version(vm, FFA_VERSION_1_2);
    const p = await w.sp(SP12);
    await version(p, FFA_VERSION_1_2);
    return { ...w, vm1, vm2, p };
  };
  const infoGet = async (ep: Ep, uuid = UUID_NIL, countOnly = false) => ep.call({ fn: 'PARTITION_INFO_GET', uuid, countOnly }, FFA_VERSION_1_2);
  const regsIds = async (ep: Ep, uuid = UUID_NIL) => {
    const ids: number[] = [];
    for (let start = 0; ;) {
      const r = await ep.call({ fn: 'PARTITION_INFO_GET_REGS', uuid, startIndex: start, tag: 0 }, FFA_VERSION_1_2);
      if (w0(r) !== fid('SUCCESS', 64)) return { ids, error: errorOfRegs(r) };
      const h = unpackPartitionInfoRegsHeader(r[2]!);
      for (let i = 0; i <= h.currentIndex - start; i++) ids.push(partitionInfoFromRegs(r[3 + 3 * i]!, 0n, 0n).id);
      if (h.currentIndex === h.lastIndex) return { ids };
      start = h.currentIndex + 1;
    }
  };

  t.test('PARTITION_INFO_GET, Nil UUID: an SP gets the SPs only; a VM gets VMs then SPs', async (t) => {
    const { spmc, vm1, p } = await setup(t);
    await p.call({ fn: 'RXTX_MAP', width: 64, tx: p.ramBase, rx: p.ramBase + BigInt(FFA_PAGE_SIZE), pageCount: 1 }, FFA_VERSION_1_2);
    const r = await infoGet(p);
    const count = Number(r[2]);
    const ids = decodePartitionInfo(spmc.readMemory(SP12, p.ramBase + BigInt(FFA_PAGE_SIZE), count * 24), count, 24).map((i) => i.id);
    t.same(ids, SP_IDS, 'no VM');
    t.equal(Number((await infoGet(p, UUID_NIL, true))[2]), SP_IDS.length, 'count-only agrees');
    await vm1.call({ fn: 'RXTX_MAP', width: 64, tx: vm1.ramBase, rx: vm1.ramBase + BigInt(FFA_PAGE_SIZE), pageCount: 1 }, FFA_VERSION_1_2);
    const rv = await infoGet(vm1);
    const vmIds = decodePartitionInfo(spmc.readMemory(1, vm1.ramBase + BigInt(FFA_PAGE_SIZE), Number(rv[2]) * 24), Number(rv[2]), 24).map((i) => i.id);
    t.same(vmIds, [1, 2, ...SP_IDS]);
  });

  t.test("PARTITION_INFO_GET by a VM's UUID: unknown to an SP (INVALID_PARAMETERS), found by a VM", async (t) => {
    const { vm1, p } = await setup(t);
    t.equal(errorOfRegs(await infoGet(p, parseUuid(VM_UUID), true)), FFA_ERRORS.INVALID_PARAMETERS);
    t.same(Number((await infoGet(vm1, parseUuid(VM_UUID), true))[2]), 1);
  });

  t.test('PARTITION_INFO_GET_REGS: the same views, Nil or by UUID', async (t) => {
    const { vm1, p } = await setup(t);
    t.same((await regsIds(p)).ids, SP_IDS, 'an SP: SPs only');
    t.same((await regsIds(vm1)).ids, [1, 2, ...SP_IDS], 'a VM: VMs, then SPs');
    t.equal((await regsIds(p, parseUuid(VM_UUID))).error, FFA_ERRORS.INVALID_PARAMETERS, "a VM's UUID from an SP");
    t.same((await regsIds(vm1, parseUuid(VM_UUID))).ids, [2]);
  });
});
