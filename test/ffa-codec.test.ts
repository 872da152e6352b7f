import t from 'tap';
import {
  ALL_FUNCTION_IDS,
  decodeCall,
  decodePartitionInfo,
  encodeCall,
  encodePartitionInfo,
  errorCodeFromWord,
  FFA_ERRORS,
  FFA_FUNCTIONS,
  FFA_VERSION_1_0,
  FFA_VERSION_1_1,
  FFA_VERSION_1_2,
  fid,
  fidName,
  formatUuid,
  inFfaRange,
  isCompatible,
  makeVersion,
  packPartitionInfoRegsHeader,
  parseUuid,
  partitionInfoFromRegs,
  partitionInfoToRegs,
  REGISTER_COUNT,
  registersUsed,
  toRegisters,
  U32,
  unpackPartitionInfoRegsHeader,
  uuidFromPair,
  uuidFromWords,
  uuidToPair,
  uuidToWords,
} from '../proto/ffa/index.js';

t.test('function IDs', async (t) => {
  t.equal(fid('MEM_DONATE', 64), 0xc4000071, 'FFA_FN64_MEM_DONATE (the seed patch had it wrong)');
  t.equal(fid('MEM_LEND', 64), 0xc4000072, 'FFA_FN64_MEM_LEND');
  t.equal(fid('VERSION'), 0x84000063);
  t.equal(fid('RXTX_MAP', 64), 0xc4000066);
  t.equal(fid('PARTITION_INFO_GET_REGS', 64), 0xc400008b);
  t.equal(fid('MSG_SEND_DIRECT_REQ2', 64), 0xc400008d);
  t.throws(() => fid('VERSION', 64), /no SMC64 form/);
  t.throws(() => fid('PARTITION_INFO_GET_REGS', 32), /no SMC32 form/);
  t.equal(fidName(0xc4000066), 'FFA_RXTX_MAP_64');
  t.equal(fidName(0x84000063), 'FFA_VERSION');
  t.equal(fidName(0x80000000), 'SMCCC_VERSION');
  t.ok(inFfaRange(0x840000ef), 'top of the FF-A range');
  t.notOk(inFfaRange(0x840000f0), 'Errata ABI is not FF-A');
  t.notOk(inFfaRange(0x84000050), 'below FF-A');
  t.notOk(inFfaRange(0x04000063), 'not a fast call');
  t.notOk(inFfaRange(0x84020063), 'bits [23:17] set');
  const ids = ALL_FUNCTION_IDS.map((f) => f.fid);
  t.equal(new Set(ids).size, ids.length, 'every FID is unique');
  t.equal(
    ALL_FUNCTION_IDS.length,
    Object.values(FFA_FUNCTIONS).reduce((n, f) => n + f.widths.length, 0),
  );
});

t.test('version packing and compatibility', async (t) => {
  t.equal(makeVersion(1, 2), 0x10002);
  t.ok(isCompatible(FFA_VERSION_1_0, FFA_VERSION_1_2));
  t.ok(isCompatible(FFA_VERSION_1_2, FFA_VERSION_1_2));
  t.notOk(isCompatible(makeVersion(1, 3), FFA_VERSION_1_2), 'newer minor');
  t.notOk(isCompatible(makeVersion(2, 0), FFA_VERSION_1_2), 'other major');
  t.notOk(isCompatible(0x80010002, FFA_VERSION_1_2), 'bit 31 set');
});

t.test('UUID packing matches the reference example', async (t) => {
  const u = parseUuid('a1a2a3a4-b1b2-c1c2-d1d2-d3d4d5d6d7d8');
  t.same(uuidToWords(u), [0xa4a3a2a1n, 0xc2c1b2b1n, 0xd4d3d2d1n, 0xd8d7d6d5n]);
  t.same(uuidToPair(u), [0xc2c1b2b1a4a3a2a1n, 0xd8d7d6d5d4d3d2d1n]);
  t.equal(formatUuid(uuidFromWords(uuidToWords(u))), 'a1a2a3a4-b1b2-c1c2-d1d2-d3d4d5d6d7d8');
  t.equal(formatUuid(uuidFromPair(...uuidToPair(u))), 'a1a2a3a4-b1b2-c1c2-d1d2-d3d4d5d6d7d8');
  t.throws(() => parseUuid('not-a-uuid'));
});

t.test('error codes travel as zero-extended w2', async (t) => {
  const r = encodeCall({ fn: 'ERROR', target: { endpoint: 0, vcpu: 0 }, code: FFA_ERRORS.DENIED, errorArg: 0 }, FFA_VERSION_1_2);
  t.equal(r[2], 0xfffffffan);
  t.equal(errorCodeFromWord(r[2]!), -6);
});

/** A pseudo-random but repeatable register file. */
function noise(seed: number): bigint[] {
  let s = BigInt(seed) * 0x9e3779b97f4a7c15n;
  return Array.from({ length: REGISTER_COUNT }, () => {
    s = BigInt.asUintN(64, s * 6364136223846793005n + 1442695040888963407n);
    return s;
  });
}

t.test('every FID: decode then encode reproduces the registers the call uses', async (t) => {
  for (const version of [FFA_VERSION_1_0, FFA_VERSION_1_1, FFA_VERSION_1_2]) {
    for (const { fn, width, fid: id } of ALL_FUNCTION_IDS) {
      // Noise decodes into some value (maybe with MBZ bits refused); its encoding is well formed.
      const x = noise(id ^ version);
      x[0] = BigInt(id);
      const first = decodeCall(x, version);
      const value = first.ok || first.known ? first.call : undefined;
      if (!value) throw new Error(`${fidName(id)} unknown`);
      const shaped = encodeCall(value, version);
      const d = decodeCall(shaped, version);
      t.ok(d.ok, `${fidName(id)} v${version.toString(16)} decodes`);
      if (!d.ok) continue;
      t.equal(d.call.fn, fn);
      t.same(encodeCall(d.call, version), shaped, `${fidName(id)} round-trips at v${version.toString(16)}`);
      const used = registersUsed(fn, width, version);
      t.ok(
        shaped.slice(used).every((v) => v === 0n),
        `${fidName(id)}: registers past x${used - 1} are zero`,
      );
      if (width === 32)
        t.ok(
          shaped.slice(1, 8).every((v) => v <= U32),
          `${fidName(id)}: SMC32 values fit 32 bits`,
        );
    }
  }
});

t.test('MBZ bits are refused once, in decode', async (t) => {
  const bad = (x: (bigint | number)[], version = FFA_VERSION_1_2) => decodeCall(toRegisters(x), version);
  let d = bad([fid('ID_GET'), 1]);
  t.ok(!d.ok && d.known && d.error === FFA_ERRORS.INVALID_PARAMETERS, 'ID_GET w1');
  d = bad([fid('RXTX_MAP', 64), 0x1000, 0x2000, 0x41]);
  t.ok(!d.ok && d.known && d.error === FFA_ERRORS.INVALID_PARAMETERS, 'RXTX_MAP w3[31:6]');
  d = bad([fid('PARTITION_INFO_GET'), 0, 0, 0, 0, 2]);
  t.ok(!d.ok && d.known, 'PARTITION_INFO_GET flags [31:1]');
  d = bad([fid('PARTITION_INFO_GET'), 0, 0, 0, 0, 1], FFA_VERSION_1_0);
  t.ok(!d.ok && d.known, 'PARTITION_INFO_GET w5 in v1.0');
  d = bad([fid('PARTITION_INFO_GET'), 0, 0, 0, 0, 1], FFA_VERSION_1_1);
  t.ok(d.ok && d.call.fn === 'PARTITION_INFO_GET' && d.call.countOnly, 'count-only flag in v1.1');
  d = bad([fid('FEATURES'), 0x84000063, 0, 5]);
  t.ok(!d.ok && d.known && d.error === FFA_ERRORS.NOT_SUPPORTED, 'FEATURES w3 gives NOT_SUPPORTED');
  d = bad([fid('MSG_SEND_DIRECT_REQ'), 0x00018001, 1]);
  t.ok(!d.ok && d.known, 'partition message with w2 != 0');
  d = bad([fid('MSG_SEND_DIRECT_REQ'), 0x00018001, 0x80000008]);
  t.ok(d.ok, 'framework message type 8');
  d = bad([fid('RUN'), 0x80010000, 0, 0, 0, 0, 0, 0, 0, 1]);
  t.ok(!d.ok && d.known, 'RUN x8 non-zero at v1.2');
  d = bad([fid('RUN'), 0x80010000, 0, 0, 0, 0, 0, 0, 0, 1], FFA_VERSION_1_1);
  t.ok(d.ok, 'RUN x8 ignored below v1.2');
  d = bad([fid('ID_GET'), 0xffffffff00000000n]);
  t.ok(d.ok, 'SMC32: upper halves are ignored');
  d = bad([fid('PARTITION_INFO_GET_REGS', 64), 0, 0, 1n << 32n]);
  t.ok(!d.ok && d.known, 'GET_REGS x3[63:32]');
  d = bad([fid('ID_GET') | 0x10000]);
  t.ok(d.ok, 'SVE hint bit is masked');
  d = bad([0x840000e0]);
  t.ok(!d.ok && !d.known && d.inFfaRange, 'unknown FID inside the range');
  d = bad([0x82000000]);
  t.ok(!d.ok && !d.known && !d.inFfaRange, 'SiP call');
});

t.test('x8..x17 are used by SMC64 calls only from v1.2', async (t) => {
  t.equal(registersUsed('CONSOLE_LOG', 64, FFA_VERSION_1_1), 8);
  t.equal(registersUsed('CONSOLE_LOG', 64, FFA_VERSION_1_2), 18);
  t.equal(registersUsed('MSG_SEND_DIRECT_REQ2', 64, FFA_VERSION_1_1), 18);
  t.equal(registersUsed('ID_GET', 32, FFA_VERSION_1_2), 8);
  const x = toRegisters([fid('MSG_SEND_DIRECT_REQ', 64), 0x00018001, 0, 1, 2, 3, 4, 5, 6]);
  t.ok(decodeCall(x, FFA_VERSION_1_1).ok, 'v1.1: x8 is not part of DIRECT_REQ_64');
  t.notOk(decodeCall(x, FFA_VERSION_1_2).ok, 'v1.2: x8 is MBZ on DIRECT_REQ_64');
});

t.test('partition-info descriptors: 8 bytes (v1.0) and 24 bytes (v1.1+)', async (t) => {
  const e = [
    { id: 0x8001, execContexts: 8, properties: 0x70f, uuid: parseUuid('b4b5671e-4a90-4fe1-b81f-fb13dae1dacb') },
    { id: 1, execContexts: 2, properties: 0x100, uuid: new Uint8Array(16) },
  ];
  const v10 = encodePartitionInfo(e, 8);
  t.equal(v10.length, 16);
  t.same([...v10.slice(0, 8)], [0x01, 0x80, 8, 0, 0x0f, 0x07, 0, 0]);
  const back10 = decodePartitionInfo(v10, 2, 8);
  t.equal(back10[0]!.id, 0x8001);
  t.same([...back10[0]!.uuid], new Array(16).fill(0), 'no UUID in v1.0');
  const v11 = encodePartitionInfo(e, 24);
  t.equal(v11.length, 48);
  t.same(decodePartitionInfo(v11, 2, 24), e);
  t.throws(() => decodePartitionInfo(v11, 3, 24), RangeError);
  const regs = partitionInfoToRegs(e[0]!);
  t.equal(regs[0], 0x0000070f00088001n);
  t.same(partitionInfoFromRegs(...regs), e[0]);
  const h = { lastIndex: 6, currentIndex: 4, tag: 0, descSize: 24 };
  t.equal(packPartitionInfoRegsHeader(h), 0x0018000000040006n);
  t.same(unpackPartitionInfoRegsHeader(packPartitionInfoRegsHeader(h)), h);
});

t.test('CONSOLE_LOG characters pack little-endian from x2', async (t) => {
  const chars = new TextEncoder().encode('hello, FF-A');
  const r = encodeCall({ fn: 'CONSOLE_LOG', width: 32, length: chars.length, chars }, FFA_VERSION_1_2);
  t.equal(r[2], 0x6c6c6568n, '"hell" in w2');
  const d = decodeCall(r, FFA_VERSION_1_2);
  t.ok(d.ok && d.call.fn === 'CONSOLE_LOG' && new TextDecoder().decode(d.call.chars.slice(0, d.call.length)) === 'hello, FF-A');
});
