// Setup and discovery ABIs against the SPMC model: every check of the reference, one case each.

import t from 'tap';
import {
  decodePartitionInfo,
  FEATURE_IDS,
  FFA_ERRORS,
  FFA_PAGE_SIZE,
  FFA_VERSION_1_0,
  FFA_VERSION_1_1,
  FFA_VERSION_1_2,
  fid,
  hex,
  makeVersion,
  parseUuid,
  PARTITION_PROPERTIES as P,
  partitionInfoFromRegs,
  SMCCC_NOT_SUPPORTED,
  SMCCC_VERSION_FID,
  U32,
  unpackPartitionInfoRegsHeader,
  UUID_NIL,
} from '../proto/ffa/index.js';
import { MemoryFault } from '../server/spmc/spmc.js';
import { errorOf, errorOfRegs, newSpmc, RawVm, SP1_UUID, SP3_UUID, successArgs, thrownKind } from './helpers.js';

const { NOT_SUPPORTED, INVALID_PARAMETERS, DENIED, BUSY, NO_MEMORY, RETRY } = FFA_ERRORS;

function setup(version = FFA_VERSION_1_2) {
  const spmc = newSpmc();
  const vm = RawVm.attach(spmc, { vcpuCount: 2 }, version);
  return { spmc, vm };
}

t.test('SMCCC_VERSION is 1.2', async (t) => {
  const { vm } = setup();
  t.equal(vm.regs([SMCCC_VERSION_FID])[0], 0x10002n);
});

t.test('FFA_VERSION', async (t) => {
  t.test('returns the implemented version with w1..w7 zero', async (t) => {
    const { vm } = setup();
    const r = vm.regs([fid('VERSION'), FFA_VERSION_1_2]);
    t.equal(r[0], 0x10002n);
    t.ok(r.slice(1).every((v) => v === 0n));
  });
  for (const [what, req] of [
    ['bit 31 set', 0x80010002],
    ['major 2', makeVersion(2, 0)],
    ['major 0', makeVersion(0, 9)],
    ['minor 3', makeVersion(1, 3)],
  ] as const) {
    t.test(`NOT_SUPPORTED in w0 for ${what}`, async (t) => {
      const { vm } = setup();
      t.equal(vm.regs([fid('VERSION'), req])[0], BigInt(SMCCC_NOT_SUPPORTED));
    });
  }
  t.test('w2..w7 are not looked at (Hafnium api_ffa_version reads w1 only)', async (t) => {
    const { vm } = setup();
    t.equal(vm.regs([fid('VERSION'), FFA_VERSION_1_2, 1, 0, 0, 0, 0, 7])[0], 0x10002n);
  });
  t.test('may change until another call, then locks', async (t) => {
    const { spmc, vm } = setup();
    t.equal(vm.regs([fid('VERSION'), FFA_VERSION_1_0])[0], 0x10002n);
    t.equal(vm.regs([fid('VERSION'), FFA_VERSION_1_1])[0], 0x10002n);
    t.equal(spmc.endpoint(vm.id)!.version, FFA_VERSION_1_1);
    vm.regs([fid('ID_GET')]);
    t.equal(vm.regs([fid('VERSION'), FFA_VERSION_1_2])[0], BigInt(SMCCC_NOT_SUPPORTED), 'another version after lock');
    t.equal(vm.regs([fid('VERSION'), FFA_VERSION_1_1])[0], 0x10002n, 'the same version again');
    t.equal(spmc.endpoint(vm.id)!.version, FFA_VERSION_1_1);
  });
  t.test('a failed FF-A call also locks the version', async (t) => {
    const { vm } = setup();
    vm.regs([fid('RX_RELEASE')]); // DENIED: nothing to release
    t.equal(vm.regs([fid('VERSION'), FFA_VERSION_1_1])[0], BigInt(SMCCC_NOT_SUPPORTED));
  });
});

t.test('FFA_ID_GET and FFA_SPM_ID_GET', async (t) => {
  const { spmc, vm } = setup();
  t.same(successArgs(vm.call({ fn: 'ID_GET' }))[0], BigInt(vm.id));
  const other = RawVm.attach(spmc, {});
  t.same(successArgs(other.call({ fn: 'ID_GET' }))[0], BigInt(other.id));
  t.not(other.id, vm.id);
  t.same(successArgs(vm.call({ fn: 'SPM_ID_GET' }))[0], 0x8000n);
  t.equal(errorOfRegs(vm.regs([fid('ID_GET'), 1])), INVALID_PARAMETERS, 'w1 MBZ');
  t.equal(errorOfRegs(vm.regs([fid('SPM_ID_GET'), 0, 0, 0, 0, 0, 0, 7])), INVALID_PARAMETERS, 'w7 MBZ');
  const r = vm.regs([fid('ID_GET')]);
  t.ok(
    r.slice(3).every((v) => v === 0n),
    'unused output registers are zero',
  );
});

t.test('FFA_FEATURES', async (t) => {
  const features = (vm: RawVm, id: number, props = 0) => vm.call({ fn: 'FEATURES', id, inputProperties: props });
  t.test('reports every function this SPMC handles', async (t) => {
    const { vm } = setup();
    for (const id of [
      fid('ERROR'),
      fid('SUCCESS'),
      fid('SUCCESS', 64),
      fid('INTERRUPT'),
      fid('VERSION'),
      fid('FEATURES'),
      fid('RX_RELEASE'),
      fid('RXTX_MAP'),
      fid('RXTX_MAP', 64),
      fid('RXTX_UNMAP'),
      fid('PARTITION_INFO_GET'),
      fid('PARTITION_INFO_GET_REGS', 64),
      fid('ID_GET'),
      fid('SPM_ID_GET'),
    ]) {
      t.equal(features(vm, id).fn, 'SUCCESS', hex(id));
    }
  });
  t.test('NOT_SUPPORTED for what it does not handle', async (t) => {
    const { vm } = setup();
    const ids = [fid('MSG_POLL'), fid('RX_ACQUIRE'), fid('NORMAL_WORLD_RESUME'), fid('SECONDARY_EP_REGISTER', 64), fid('NS_RES_INFO_GET', 64)];
    for (const id of [...ids, 0x84000000, 0, 0x840000e0, 0xc4000063]) {
      t.equal(errorOf(features(vm, id)), NOT_SUPPORTED, hex(id));
    }
  });
  t.test('feature IDs: a VM takes the SRI only, whatever its version; bits [30:8] or w2 make them NOT_SUPPORTED', async (t) => {
    const { vm } = setup();
    t.same(successArgs(features(vm, FEATURE_IDS.SRI)).slice(0, 2), [8n, 0n], 'SRI: INTID 8');
    t.equal(errorOf(features(vm, FEATURE_IDS.NPI)), NOT_SUPPORTED, 'the NPI is for partitions');
    t.equal(errorOf(features(vm, FEATURE_IDS.MEI)), NOT_SUPPORTED, 'so is managed exit');
    t.equal(errorOf(features(vm, 4)), NOT_SUPPORTED, 'feature 4 (v1.3 notification support) is not provided');
    t.equal(errorOf(features(vm, 0x100 | FEATURE_IDS.SRI)), NOT_SUPPORTED);
    t.equal(errorOf(features(vm, FEATURE_IDS.SRI, 1)), NOT_SUPPORTED);
    // Hafnium's ffa_features_feature compares with the version it is built as, not the caller's.
    t.same(successArgs(features(setup(FFA_VERSION_1_0).vm, FEATURE_IDS.SRI)).slice(0, 1), [8n], 'a v1.0 VM is told too');
  });
  t.test('input properties are not looked at for a function ID but MEM_RETRIEVE_REQ (Hafnium ffa_features_function)', async (t) => {
    const { vm } = setup();
    t.equal(features(vm, fid('ID_GET'), 2).fn, 'SUCCESS');
    t.same(successArgs(features(vm, fid('RXTX_MAP', 64), 1)).slice(0, 1), [16n << 16n]);
  });
  t.test('RXTX_MAP: 4K minimum, and the maximum for v1.2 callers only', async (t) => {
    const { vm } = setup();
    const args = successArgs(features(vm, fid('RXTX_MAP', 64)));
    t.equal(args[0], 16n << 16n, 'w2 = 4K | 16 pages << 16');
    t.equal(args[1], 0n);
    const old = setup(FFA_VERSION_1_1).vm;
    t.equal(successArgs(features(old, fid('RXTX_MAP')))[0], 0n, 'v1.1: [31:2] MBZ');
    const small = RawVm.attach(newSpmc({ rxtxMaxPages: 1 }), {});
    t.equal(successArgs(features(small, fid('RXTX_MAP', 64)))[0], 1n << 16n, 'configured maximum');
  });
});

t.test('FFA_RXTX_MAP', async (t) => {
  const map = (vm: RawVm, tx: bigint, rx: bigint, pageCount: number, width: 32 | 64 = 64) => vm.call({ fn: 'RXTX_MAP', width, tx, rx, pageCount });
  t.test('maps, and a second map is DENIED', async (t) => {
    const { vm } = setup();
    t.equal(map(vm, vm.ramBase, vm.ramBase + 0x1000n, 1).fn, 'SUCCESS');
    t.equal(errorOf(map(vm, vm.ramBase + 0x4000n, vm.ramBase + 0x5000n, 1)), DENIED);
  });
  t.test('a second map is DENIED even with bad arguments', async (t) => {
    const { vm } = setup();
    vm.mapMailbox();
    t.equal(errorOf(map(vm, 1n, 1n, 0)), DENIED);
    t.equal(errorOfRegs(vm.regs([fid('RXTX_MAP', 64), vm.ramBase, vm.ramBase + 0x1000n, 0xffffffff])), DENIED, 'MBZ bits too');
  });
  t.test('page count 0 is INVALID_PARAMETERS', async (t) => {
    const { vm } = setup();
    t.equal(errorOf(map(vm, vm.ramBase, vm.ramBase + 0x1000n, 0)), INVALID_PARAMETERS);
  });
  t.test('page count above the maximum is INVALID_PARAMETERS', async (t) => {
    const { vm } = setup();
    t.equal(errorOf(map(vm, vm.ramBase, vm.ramBase + 0x100000n, 17)), INVALID_PARAMETERS);
  });
  t.test('w3 bits [31:6] MBZ', async (t) => {
    const { vm } = setup();
    t.equal(errorOfRegs(vm.regs([fid('RXTX_MAP', 64), vm.ramBase, vm.ramBase + 0x1000n, 0x41])), INVALID_PARAMETERS);
  });
  t.test('misaligned TX or RX is INVALID_PARAMETERS', async (t) => {
    const { vm } = setup();
    t.equal(errorOf(map(vm, vm.ramBase + 8n, vm.ramBase + 0x2000n, 1)), INVALID_PARAMETERS);
    t.equal(errorOf(map(vm, vm.ramBase, vm.ramBase + 0x2800n, 1)), INVALID_PARAMETERS);
  });
  t.test('TX == RX, or overlapping, is INVALID_PARAMETERS', async (t) => {
    const { vm } = setup();
    t.equal(errorOf(map(vm, vm.ramBase, vm.ramBase, 1)), INVALID_PARAMETERS);
    t.equal(errorOf(map(vm, vm.ramBase, vm.ramBase + 0x1000n, 2)), INVALID_PARAMETERS);
  });
  t.test('memory the caller does not own is INVALID_PARAMETERS', async (t) => {
    const { spmc, vm } = setup();
    const other = RawVm.attach(spmc, {});
    t.equal(errorOf(map(vm, other.ramBase, other.ramBase + 0x1000n, 1)), INVALID_PARAMETERS, "another VM's RAM");
    t.equal(errorOf(map(vm, vm.ramBase, other.ramBase, 1)), INVALID_PARAMETERS, "RX in another VM's RAM");
    t.equal(errorOf(map(vm, 0x1000n, 0x2000n, 1)), INVALID_PARAMETERS, 'unmapped address space');
    const end = vm.ramBase + spmc.endpoint(vm.id)!.ram.size;
    t.equal(errorOf(map(vm, end - 0x1000n, end - 0x3000n, 2)), INVALID_PARAMETERS, 'running off the end of RAM');
    t.equal(errorOf(map(vm, 0xfffffffffffff000n, vm.ramBase, 1)), INVALID_PARAMETERS, 'top of the address space');
  });
  t.test('the 32-bit form is accepted', async (t) => {
    const spmc = newSpmc();
    // A VM low enough for 32-bit addresses: the first window starts at 1 GiB.
    const vm = RawVm.attach(spmc, { ramBytes: 1n << 20n });
    t.ok(vm.ramBase < 1n << 32n);
    t.equal(map(vm, vm.ramBase, vm.ramBase + 0x1000n, 1, 32).fn, 'SUCCESS');
  });
  t.test('after mapping, RX is read-only for the owner and TX stays writable', async (t) => {
    const { spmc, vm } = setup();
    const { tx, rx } = vm.mapMailbox();
    spmc.writeMemory(vm.id, tx, new Uint8Array([1, 2, 3]));
    t.same([...spmc.readMemory(vm.id, rx, 4)], [0, 0, 0, 0]);
    t.throws(() => spmc.writeMemory(vm.id, rx, new Uint8Array([1])), MemoryFault);
  });
});

t.test('FFA_RXTX_UNMAP', async (t) => {
  const unmap = (vm: RawVm, id = 0) => vm.call({ fn: 'RXTX_UNMAP', id });
  t.test('nothing mapped is INVALID_PARAMETERS', async (t) => {
    const { vm } = setup();
    t.equal(errorOf(unmap(vm)), INVALID_PARAMETERS);
  });
  t.test('an ID in w1[31:16] is INVALID_PARAMETERS for a VM', async (t) => {
    const { vm } = setup();
    vm.mapMailbox();
    t.equal(errorOf(unmap(vm, vm.id)), INVALID_PARAMETERS);
  });
  t.test('w1[15:0] MBZ', async (t) => {
    const { vm } = setup();
    vm.mapMailbox();
    t.equal(errorOfRegs(vm.regs([fid('RXTX_UNMAP'), 1])), INVALID_PARAMETERS);
  });
  t.test('unmaps, gives the pages back, and allows a new map with another size', async (t) => {
    const { spmc, vm } = setup();
    const { rx } = vm.mapMailbox();
    t.equal(unmap(vm).fn, 'SUCCESS');
    t.equal(errorOf(unmap(vm)), INVALID_PARAMETERS, 'second unmap');
    spmc.writeMemory(vm.id, rx, new Uint8Array([9])); // RX is the VM's own again
    t.equal(vm.call({ fn: 'RXTX_MAP', width: 64, tx: vm.ramBase, rx: vm.ramBase + 0x4000n, pageCount: 4 }).fn, 'SUCCESS');
  });
});

t.test('FFA_RX_RELEASE', async (t) => {
  t.test('an empty buffer is DENIED', async (t) => {
    const { vm } = setup();
    t.equal(errorOf(vm.call({ fn: 'RX_RELEASE', vmId: 0 })), DENIED, 'not mapped');
    vm.mapMailbox();
    t.equal(errorOf(vm.call({ fn: 'RX_RELEASE', vmId: 0 })), DENIED, 'mapped, never filled');
  });
  t.test('a full buffer is released once', async (t) => {
    const { vm } = setup();
    vm.mapMailbox();
    t.equal(vm.partitionInfoGet().fn, 'SUCCESS');
    t.equal(vm.call({ fn: 'RX_RELEASE', vmId: 0 }).fn, 'SUCCESS');
    t.equal(errorOf(vm.call({ fn: 'RX_RELEASE', vmId: 0 })), DENIED);
  });
  t.test('a VM ID in w1 is INVALID_PARAMETERS for a VM', async (t) => {
    const { vm } = setup();
    vm.mapMailbox();
    vm.partitionInfoGet();
    t.equal(errorOf(vm.call({ fn: 'RX_RELEASE', vmId: vm.id })), INVALID_PARAMETERS);
  });
  t.test('v1.0: w1 is MBZ', async (t) => {
    const { vm } = setup(FFA_VERSION_1_0);
    t.equal(errorOfRegs(vm.regs([fid('RX_RELEASE'), 1])), INVALID_PARAMETERS);
  });
});

t.test('FFA_PARTITION_INFO_GET', async (t) => {
  t.test('Nil UUID: attached VMs in ID order, then the SPs, in v1.2 24-byte descriptors', async (t) => {
    const spmc = newSpmc();
    const vm3 = RawVm.attach(spmc, { endpointId: 3, vcpuCount: 4 });
    RawVm.attach(spmc, { endpointId: 1, properties: P.AARCH64_EXEC | P.DIRECT_REQ_RECV });
    const { rx } = vm3.mapMailbox();
    const [count, size] = successArgs(vm3.partitionInfoGet());
    t.equal(count, 6n);
    t.equal(size, 24n);
    const infos = decodePartitionInfo(spmc.readMemory(vm3.id, rx, 6 * 24), 6, 24);
    t.same(
      infos.map((i) => i.id),
      [1, 3, 0x8001, 0x8002, 0x8003, 0x8004],
    );
    t.equal(infos[1]!.execContexts, 4);
    t.same(
      infos.slice(2).map((i) => i.execContexts),
      [8, 8, 1, 1],
    );
    t.same([...infos[2]!.uuid], [...parseUuid(SP1_UUID)]);
    t.equal(infos[0]!.properties, P.AARCH64_EXEC | P.DIRECT_REQ_RECV, 'a VM as it attached');
    // SPs never appear able to send direct requests to a VM.
    t.equal(infos[2]!.properties & (P.DIRECT_REQ_SEND | P.DIRECT_REQ2_SEND), 0);
    t.ok(infos[2]!.properties & P.DIRECT_REQ_RECV && infos[2]!.properties & P.AARCH64_EXEC);
    t.equal(infos[4]!.properties & P.INDIRECT_MSG, 0, 'SP3 has no indirect messaging');
    t.ok(infos[3]!.properties & P.INDIRECT_MSG, 'SP2 has');
    t.equal(spmc.endpoint(vm3.id)!.mailbox!.rxState, 'full');
  });
  t.test('a specific UUID: that partition, with the UUID field zero', async (t) => {
    const { spmc, vm } = setup();
    const { rx } = vm.mapMailbox();
    const [count, size] = successArgs(vm.partitionInfoGet(parseUuid(SP3_UUID)));
    t.equal(count, 1n);
    const [info] = decodePartitionInfo(spmc.readMemory(vm.id, rx, 24), 1, Number(size));
    t.equal(info!.id, 0x8003);
    t.same([...info!.uuid], new Array(16).fill(0));
    t.same([...spmc.readMemory(vm.id, rx + 24n, 64)], new Array(64).fill(0), 'the rest of RX is zeroed');
  });
  t.test('an unknown UUID is INVALID_PARAMETERS', async (t) => {
    const { vm } = setup();
    vm.mapMailbox();
    t.equal(errorOf(vm.partitionInfoGet(parseUuid('11111111-2222-3333-4444-555555555555'))), INVALID_PARAMETERS);
    t.equal(errorOf(vm.partitionInfoGet(parseUuid('11111111-2222-3333-4444-555555555555'), true)), INVALID_PARAMETERS, 'count-only too');
  });
  t.test('count-only: w3 zero, RX untouched, works before RXTX_MAP', async (t) => {
    const { spmc, vm } = setup();
    const [count, size] = successArgs(vm.partitionInfoGet(UUID_NIL, true));
    t.equal(count, 5n);
    t.equal(size, 0n);
    vm.mapMailbox();
    successArgs(vm.partitionInfoGet(UUID_NIL, true));
    t.equal(spmc.endpoint(vm.id)!.mailbox!.rxState, 'empty');
  });
  t.test('flags bits [31:1] are INVALID_PARAMETERS', async (t) => {
    const { vm } = setup();
    vm.mapMailbox();
    t.equal(errorOfRegs(vm.regs([fid('PARTITION_INFO_GET'), 0, 0, 0, 0, 2])), INVALID_PARAMETERS);
  });
  t.test('without RX mapped: BUSY', async (t) => {
    const { vm } = setup();
    t.equal(errorOf(vm.partitionInfoGet()), BUSY);
  });
  t.test('twice without RX_RELEASE: BUSY', async (t) => {
    const { vm } = setup();
    vm.mapMailbox();
    t.equal(vm.partitionInfoGet().fn, 'SUCCESS');
    t.equal(errorOf(vm.partitionInfoGet()), BUSY);
    vm.call({ fn: 'RX_RELEASE', vmId: 0 });
    t.equal(vm.partitionInfoGet().fn, 'SUCCESS');
  });
  t.test('descriptors that do not fit RX: NO_MEMORY', async (t) => {
    const spmc = newSpmc();
    const vm = RawVm.attach(spmc, {});
    vm.mapMailbox(1);
    for (let i = 0; i < FFA_PAGE_SIZE / 24; i++) spmc.attach({ ramBytes: 0x1000n });
    t.equal(errorOf(vm.partitionInfoGet()), NO_MEMORY);
    t.equal(spmc.endpoint(vm.id)!.mailbox!.rxState, 'empty', 'RX still the producer’s');
  });
  t.test('v1.0 caller: 8-byte descriptors, w3 zero, properties [2:0] only', async (t) => {
    const { spmc, vm } = setup(FFA_VERSION_1_0);
    const { rx } = vm.mapMailbox();
    const [count, size] = successArgs(vm.partitionInfoGet());
    t.equal(size, 0n);
    const infos = decodePartitionInfo(spmc.readMemory(vm.id, rx, Number(count) * 8), Number(count), 8);
    t.same(
      infos.map((i) => i.id),
      [vm.id, 0x8001, 0x8002, 0x8003, 0x8004],
    );
    t.ok(infos.every((i) => (i.properties & ~0x7) === 0));
    t.equal(errorOfRegs(vm.regs([fid('PARTITION_INFO_GET'), 0, 0, 0, 0, 1])), INVALID_PARAMETERS, 'w5 MBZ in v1.0');
  });
  t.test('a partition with two UUIDs: one entry per UUID for v1.2, one per partition for v1.1', async (t) => {
    const spmc = newSpmc();
    const two = RawVm.attach(spmc, { uuids: [parseUuid(SP1_UUID), parseUuid('0badcafe-0000-4000-8000-000000000001')] });
    const v12 = RawVm.attach(spmc, {});
    t.equal(successArgs(v12.partitionInfoGet(UUID_NIL, true))[0], 7n);
    const v11 = RawVm.attach(spmc, {}, FFA_VERSION_1_1);
    t.equal(successArgs(v11.partitionInfoGet(UUID_NIL, true))[0], 7n, '7 partitions, one entry each');
    t.equal(successArgs(v12.partitionInfoGet(parseUuid(SP1_UUID), true))[0], 2n, 'SP1 and the VM serve that UUID');
    t.ok(two);
  });
});

t.test('FFA_PARTITION_INFO_GET_REGS', async (t) => {
  const regs = (vm: RawVm, startIndex = 0, uuid = UUID_NIL, tag = 0) => vm.call({ fn: 'PARTITION_INFO_GET_REGS', uuid, startIndex, tag });
  t.test('returns descriptors in x3.. with indices in x2', async (t) => {
    const { vm } = setup();
    const r = regs(vm);
    t.ok(r.fn === 'SUCCESS' && r.width === 64, 'FFA_SUCCESS_64');
    const args = successArgs(r);
    const h = unpackPartitionInfoRegsHeader(args[0]!);
    t.same(h, { lastIndex: 4, currentIndex: 4, tag: 0, descSize: 24 });
    const infos = [0, 1, 2, 3, 4].map((i) => partitionInfoFromRegs(args[1 + 3 * i]!, args[2 + 3 * i]!, args[3 + 3 * i]!));
    t.same(
      infos.map((i) => i.id),
      [vm.id, 0x8001, 0x8002, 0x8003, 0x8004],
    );
    t.same([...infos[1]!.uuid], [...parseUuid(SP1_UUID)]);
  });
  t.test('more than five partitions come in several calls', async (t) => {
    const spmc = newSpmc();
    const vm = RawVm.attach(spmc, {});
    RawVm.attach(spmc, {});
    RawVm.attach(spmc, {});
    let h = unpackPartitionInfoRegsHeader(successArgs(regs(vm))[0]!);
    t.same([h.lastIndex, h.currentIndex], [6, 4]);
    h = unpackPartitionInfoRegsHeader(successArgs(regs(vm, 5))[0]!);
    t.same([h.lastIndex, h.currentIndex], [6, 6]);
    const args = successArgs(regs(vm, 5));
    t.equal(args.length, 16, 'x2..x17');
    t.ok(
      args.slice(7).every((v) => v === 0n),
      'unused descriptor registers are zero',
    );
  });
  t.test('start index past the end is INVALID_PARAMETERS', async (t) => {
    const { vm } = setup();
    t.equal(errorOf(regs(vm, 5)), INVALID_PARAMETERS);
  });
  t.test('a tag is RETRY', async (t) => {
    const { vm } = setup();
    t.equal(errorOf(regs(vm, 0, UUID_NIL, 1)), RETRY);
  });
  t.test('an unknown UUID is INVALID_PARAMETERS', async (t) => {
    const { vm } = setup();
    t.equal(errorOf(regs(vm, 0, parseUuid('11111111-2222-3333-4444-555555555555'))), INVALID_PARAMETERS);
  });
  t.test('x3[63:32] and x4..x17 MBZ', async (t) => {
    const { vm } = setup();
    t.equal(errorOfRegs(vm.regs([fid('PARTITION_INFO_GET_REGS', 64), 0, 0, 1n << 40n])), INVALID_PARAMETERS);
    t.equal(errorOfRegs(vm.regs([fid('PARTITION_INFO_GET_REGS', 64), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])), INVALID_PARAMETERS);
  });
  t.test('does not touch RX', async (t) => {
    const { spmc, vm } = setup();
    vm.mapMailbox();
    regs(vm);
    t.equal(spmc.endpoint(vm.id)!.mailbox!.rxState, 'empty');
  });
});

t.test('unknown function IDs', async (t) => {
  const { vm } = setup();
  t.equal(errorOfRegs(vm.regs([0x840000e0])), NOT_SUPPORTED, 'in the FF-A range: FFA_ERROR(NOT_SUPPORTED)');
  t.equal(errorOfRegs(vm.regs([fid('RX_ACQUIRE')])), NOT_SUPPORTED, "defined but not handled: the hypervisor's call");
  const out = vm.regs([0x82000010, 1, 2, 3]);
  t.equal(out[0], BigInt(SMCCC_NOT_SUPPORTED), 'outside: -1 in x0');
  t.ok(out.slice(1).every((v) => v === 0n));
  t.equal(vm.regs([0xc400f063])[0]! & U32, BigInt(SMCCC_NOT_SUPPORTED), 'bits [23:17] set: not an FF-A call');
  t.equal(Number(vm.regs([fid('ID_GET') | 0x10000])[0]), fid('SUCCESS'), 'SVE hint is masked off');
});

t.test('the caller must be attached and its vCPU must exist', async (t) => {
  const { spmc, vm } = setup();
  t.equal(
    thrownKind(() => spmc.handle(0x7777, 0, [BigInt(fid('ID_GET'))])),
    'not-found',
  );
  t.equal(
    thrownKind(() => spmc.handle(vm.id, 2, [BigInt(fid('ID_GET'))])),
    'invalid-argument',
  );
  t.equal(
    thrownKind(() => spmc.handle(vm.id, 0, new Array(19).fill(0n))),
    'invalid-argument',
  );
});

t.test("FFA_FEATURES answers by the version the SPMC implements, not the caller's (Hafnium ffa_features_function)", async (t) => {
  const v10 = RawVm.attach(newSpmc(), {}, FFA_VERSION_1_0);
  for (const id of [fid('SPM_ID_GET'), fid('PARTITION_INFO_GET_REGS', 64)]) {
    t.equal(v10.call({ fn: 'FEATURES', id, inputProperties: 0 }).fn, 'SUCCESS', `${hex(id)} is told to a v1.0 caller`);
  }
  t.equal(v10.call({ fn: 'FEATURES', id: fid('RXTX_MAP', 64), inputProperties: 0 }).fn, 'SUCCESS');
  const v11 = RawVm.attach(newSpmc(), {}, FFA_VERSION_1_1);
  t.equal(v11.call({ fn: 'FEATURES', id: fid('SPM_ID_GET'), inputProperties: 0 }).fn, 'SUCCESS');
  t.equal(v11.call({ fn: 'FEATURES', id: fid('PARTITION_INFO_GET_REGS', 64), inputProperties: 0 }).fn, 'SUCCESS');
  t.equal(errorOf(v11.call({ fn: 'FEATURES', id: fid('ABORT'), inputProperties: 0 })), NOT_SUPPORTED, 'v1.3 functions are not');
});
