// Property-based tests of proto/ffa (fast-check, fixed seeds): every call kind and version
// round-trips through the register codec, any 18 registers decode or are refused without a throw,
// and the descriptor codecs round-trip and read arbitrary bytes with only their documented errors.

import fc from 'fast-check';
import { isDeepStrictEqual } from 'node:util';
import t from 'tap';
import {
  ALL_FUNCTION_IDS,
  callWidth,
  decodeCall,
  decodeCompositeHeader,
  decodeConstituents,
  decodeIndirectMessageHeader,
  decodeMemRelinquish,
  decodeMemTransaction,
  decodePartitionInfo,
  DescriptorTooShort,
  EMAD_SIZE_V1_0,
  emadSizeFor,
  encodeCall,
  encodeIndirectMessage,
  encodeMemRelinquish,
  encodeMemTransaction,
  encodePartitionInfo,
  FFA_ERRORS,
  FFA_VERSION_1_0,
  FFA_VERSION_1_1,
  FFA_VERSION_1_2,
  type FfaVersion,
  INDIRECT_MSG_HEADER_SIZE_V1_1,
  INDIRECT_MSG_HEADER_SIZE_V1_2,
  INDIRECT_MSG_UUID_OFFSET,
  memDescriptorLayout,
  memHeaderSize,
  packPartitionInfoRegsHeader,
  PARTITION_INFO_SIZE_V1_0,
  PARTITION_INFO_SIZE_V1_1,
  partitionInfoFromRegs,
  partitionInfoToRegs,
  REGISTER_COUNT,
  registersUsed,
  SMCCC_SVE_HINT,
  tryDecode,
  U32,
  unpackPartitionInfoRegsHeader,
  UUID_NIL,
} from '../proto/ffa/index.js';

const SEED = 0x14f2;
const RUNS = 300;
const VERSIONS: FfaVersion[] = [FFA_VERSION_1_0, FFA_VERSION_1_1, FFA_VERSION_1_2];
const ERROR_CODES = new Set<number>(Object.values(FFA_ERRORS));

const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
/** Register values biased to the edges (0, small, all-ones) as well as uniform. */
const reg = fc.oneof(u64, fc.constantFrom(0n, 1n, U32, (1n << 64n) - 1n), fc.bigInt({ min: 0n, max: 0xffffn }));
const version = fc.constantFrom(...VERSIONS);
const anyVersion = fc.oneof(version, fc.integer({ min: 0, max: 0xffffffff }));
const functionId = fc.constantFrom(...ALL_FUNCTION_IDS);
const uuid = fc.uint8Array({ minLength: 16, maxLength: 16 });

/** Whether a property holds, with fast-check's counterexample as the failure message. */
function holds<T>(t: { notOk(v: unknown, msg: string): unknown }, name: string, prop: fc.IProperty<T>, runs = RUNS): void {
  const out = fc.check(prop, { seed: SEED, numRuns: runs });
  t.notOk(out.failed, out.failed ? `${name}\n${fc.defaultReportMessage(out)}` : name);
}

/** 18 registers with x0 the FID of one function of the table (sometimes with the SVE hint). */
const registersFor = (id: (typeof ALL_FUNCTION_IDS)[number]) =>
  fc
    .tuple(fc.array(reg, { minLength: REGISTER_COUNT - 1, maxLength: REGISTER_COUNT - 1 }), fc.boolean(), fc.bigInt({ min: 0n, max: U32 }))
    .map(([rest, sve, hi]) => [BigInt(id.fid | (sve ? SMCCC_SVE_HINT : 0)) | (id.width === 64 ? 0n : hi << 32n), ...rest]);

t.test('calls: decode∘encode is the identity for every function, width and version', async (t) => {
  for (const id of ALL_FUNCTION_IDS) {
    for (const v of VERSIONS) {
      // A call value of this function: what the registers' fields make (the codec's canonical form).
      holds(
        t,
        `FFA_${id.fn}_${id.width} at v${v >> 16}.${v & 0xffff}`,
        fc.property(registersFor(id), (x) => {
          const first = decodeCall(x, v, false);
          if (!first.ok) return false;
          const call = first.call;
          if (call.fn !== id.fn || callWidth(call) !== id.width) return false;
          const regs = encodeCall(call, v);
          const again = decodeCall(regs, v);
          if (!again.ok) throw new Error(`re-encoded FFA_${id.fn} refused: ${again.why}`);
          if (!isDeepStrictEqual(again.call, call)) return false;
          // And encode∘decode: the registers of a well-formed call come back bit for bit.
          const back = encodeCall(again.call, v);
          return back.every((r, i) => r === regs[i]);
        }),
        40,
      );
    }
  }
});

t.test('calls: registers a call leaves clean are exactly what its value encodes', async (t) => {
  holds(
    t,
    'a decode that passes the MBZ check re-encodes to the same used registers',
    fc.property(functionId.chain(registersFor), version, (x, v) => {
      const d = decodeCall(x, v);
      if (!d.ok) return true;
      const regs = encodeCall(d.call, v);
      const used = registersUsed(d.call.fn, d.width, v);
      const mask = d.width === 32 ? U32 : (1n << 64n) - 1n;
      for (let i = 1; i < used; i++) if (regs[i] !== (x[i]! & mask)) return false;
      return true;
    }),
    2000,
  );
});

t.test('calls: any 18 registers decode or are refused, never a throw', async (t) => {
  const anyX0 = fc.oneof(
    functionId.map((f) => BigInt(f.fid)),
    u64,
    fc.integer({ min: 0, max: 0xffff }).map((n) => BigInt(0x84000000 | n)),
    fc.integer({ min: 0, max: 0xffff }).map((n) => BigInt((0xc4000000 | n) >>> 0)),
  );
  holds(
    t,
    'decodeCall on arbitrary registers and any version word',
    fc.property(anyX0, fc.array(reg, { minLength: 0, maxLength: REGISTER_COUNT - 1 }), anyVersion, fc.boolean(), (x0, rest, v, mbz) => {
      const d = decodeCall([x0, ...rest], v, mbz);
      if (d.ok) return d.width === callWidth(d.call);
      if (d.known) return ERROR_CODES.has(d.error) && d.why.length > 0 && d.call.fn === d.fn;
      return d.why.length > 0;
    }),
    5000,
  );
});

// ---- memory transaction descriptors --------------------------------------------------------------

const u16 = fc.integer({ min: 0, max: 0xffff });
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const u8 = fc.integer({ min: 0, max: 0xff });
const constituent = fc.record({ address: u64, pageCount: u32 });
const receiverInit = fc.record({ receiver: u16, permissions: u8, flags: u8, impdef: fc.tuple(u64, u64) });
const descriptorInit = fc.record({
  sender: u16,
  attributes: u16,
  flags: u32,
  handle: u64,
  tag: u64,
  receivers: fc.array(receiverInit, { minLength: 1, maxLength: 6 }),
  constituents: fc.option(fc.array(constituent, { maxLength: 8 }), { nil: undefined }),
});

t.test('memory transaction descriptors round-trip in every version', async (t) => {
  holds(
    t,
    'encodeMemTransaction then decode gives the header, access list, composite and constituents back',
    fc.property(descriptorInit, version, (d, v) => {
      const b = encodeMemTransaction(d, v);
      const tx = decodeMemTransaction(b, v);
      const layout = memDescriptorLayout(v, d.receivers.length);
      if (tx.sender !== d.sender || tx.flags !== d.flags || tx.handle !== d.handle || tx.tag !== d.tag) return false;
      if (tx.attributes !== (v === FFA_VERSION_1_0 ? d.attributes & 0xff : d.attributes)) return false;
      if (tx.reservedNonZero || tx.emadSize !== emadSizeFor(v) || tx.receiversOffset !== memHeaderSize(v)) return false;
      if (tx.receivers.length !== d.receivers.length) return false;
      const compositeAt = d.constituents ? layout.composite : 0;
      for (const [i, r] of tx.receivers.entries()) {
        const want = d.receivers[i]!;
        if (r.receiver !== want.receiver || r.permissions !== want.permissions || r.flags !== want.flags || r.reserved !== 0n) return false;
        if (r.compositeOffset !== compositeAt) return false;
        const impdef = tx.emadSize === EMAD_SIZE_V1_0 ? [0n, 0n] : want.impdef;
        if (r.impdef[0] !== impdef[0] || r.impdef[1] !== impdef[1]) return false;
      }
      if (!d.constituents) return b.length === layout.header + d.receivers.length * layout.emadSize;
      const head = decodeCompositeHeader(b, compositeAt);
      const pages = d.constituents.reduce((n, c) => n + c.pageCount, 0) % 2 ** 32;
      if (head.pageCount !== pages || head.constituentCount !== d.constituents.length || head.reserved !== 0n) return false;
      const cs = decodeConstituents(b, compositeAt + 16, head.constituentCount);
      if (cs.reservedNonZero) return false;
      return cs.constituents.every((c, i) => c.address === d.constituents![i]!.address && c.pageCount === d.constituents![i]!.pageCount);
    }),
    1000,
  );
});

/** Runs `f` on arbitrary bytes: it returns, or throws only DescriptorTooShort (which tryDecode turns into a sentence). */
const onlyTooShort = (f: () => unknown): boolean => {
  const r = tryDecode(f);
  return r.ok || r.why.length > 0;
};

/** Arbitrary bytes, plus well-formed descriptors with some bytes flipped. */
const descriptorBytes = fc.oneof(
  fc.uint8Array({ maxLength: 256 }),
  fc.tuple(descriptorInit, version, fc.array(fc.tuple(fc.nat(), u8), { maxLength: 6 }), fc.nat()).map(([d, v, flips, cut]) => {
    const b = encodeMemTransaction(d, v);
    for (const [at, x] of flips) if (b.length) b[at % b.length] = b[at % b.length]! ^ x;
    return b.subarray(0, b.length ? cut % (b.length + 1) : 0);
  }),
);

t.test('memory descriptors: arbitrary bytes decode or are too short, never another throw', async (t) => {
  holds(
    t,
    'decodeMemTransaction, decodeCompositeHeader, decodeConstituents, decodeMemRelinquish',
    fc.property(descriptorBytes, anyVersion, u32, u32, (b, v, offset, count) => {
      return (
        onlyTooShort(() => decodeMemTransaction(b, v)) &&
        onlyTooShort(() => decodeCompositeHeader(b, offset % 512)) &&
        onlyTooShort(() => decodeConstituents(b, offset % 512, count)) &&
        onlyTooShort(() => decodeMemRelinquish(b))
      );
    }),
    3000,
  );
  t.ok(tryDecode(() => decodeMemTransaction(new Uint8Array(10), FFA_VERSION_1_2)).ok === false, 'a 10-byte descriptor is too short');
  t.type(
    (() => {
      try {
        decodeMemTransaction(new Uint8Array(10), FFA_VERSION_1_0);
      } catch (e) {
        return e;
      }
    })(),
    DescriptorTooShort,
  );
});

t.test('relinquish descriptors round-trip', async (t) => {
  holds(
    t,
    'encodeMemRelinquish then decodeMemRelinquish',
    fc.property(fc.record({ handle: u64, flags: u32, endpoints: fc.array(u16, { maxLength: 20 }) }), (r) => {
      const d = decodeMemRelinquish(encodeMemRelinquish(r));
      return d.handle === r.handle && d.flags === r.flags && d.count === r.endpoints.length && d.endpoints.every((e, i) => e === r.endpoints[i]);
    }),
  );
});

// ---- partition info ------------------------------------------------------------------------------

const partitionInfo = fc.record({ id: u16, execContexts: u16, properties: u32, uuid });

t.test('partition info descriptors round-trip, in RX and in registers', async (t) => {
  holds(
    t,
    'encodePartitionInfo then decodePartitionInfo (8 and 24 bytes)',
    fc.property(fc.array(partitionInfo, { maxLength: 10 }), fc.constantFrom(PARTITION_INFO_SIZE_V1_0, PARTITION_INFO_SIZE_V1_1), (es, size) => {
      const back = decodePartitionInfo(encodePartitionInfo(es, size), es.length, size);
      return back.every((e, i) => {
        const w = es[i]!;
        const u = size === PARTITION_INFO_SIZE_V1_0 ? UUID_NIL : w.uuid;
        return e.id === w.id && e.execContexts === w.execContexts && e.properties === w.properties && Buffer.from(e.uuid).equals(Buffer.from(u));
      });
    }),
  );
  holds(
    t,
    'partitionInfoToRegs then partitionInfoFromRegs; the REGS header packs and unpacks',
    fc.property(partitionInfo, u16, u16, u16, u16, (e, lastIndex, currentIndex, tag, descSize) => {
      const [a, lo, hi] = partitionInfoToRegs(e);
      const back = partitionInfoFromRegs(a, lo, hi);
      const h = unpackPartitionInfoRegsHeader(packPartitionInfoRegsHeader({ lastIndex, currentIndex, tag, descSize }));
      return (
        back.id === e.id &&
        back.execContexts === e.execContexts &&
        back.properties === e.properties &&
        Buffer.from(back.uuid).equals(Buffer.from(e.uuid)) &&
        h.lastIndex === lastIndex &&
        h.currentIndex === currentIndex &&
        h.tag === tag &&
        h.descSize === descSize
      );
    }),
  );
  holds(
    t,
    'decodePartitionInfo on arbitrary bytes: descriptors, or a RangeError',
    fc.property(fc.uint8Array({ maxLength: 200 }), fc.integer({ min: 0, max: 40 }), fc.integer({ min: 0, max: 64 }), (b, count, size) => {
      try {
        return decodePartitionInfo(b, count, size).length === count;
      } catch (e) {
        return e instanceof RangeError;
      }
    }),
    2000,
  );
});

// ---- indirect message header ---------------------------------------------------------------------

t.test('indirect message headers round-trip, and arbitrary bytes decode or are too short', async (t) => {
  holds(
    t,
    'encodeIndirectMessage then decodeIndirectMessageHeader (v1.1 and v1.2 headers)',
    fc.property(
      u16,
      u16,
      uuid,
      fc.uint8Array({ maxLength: 64 }),
      fc.constantFrom(INDIRECT_MSG_HEADER_SIZE_V1_1, INDIRECT_MSG_HEADER_SIZE_V1_2),
      fc.integer({ min: 0, max: 64 }),
      (sender, receiver, id, payload, headerSize, extra) => {
        const offset = Math.max(headerSize, INDIRECT_MSG_UUID_OFFSET) + extra;
        const msg = encodeIndirectMessage({ sender, receiver, uuid: id, offset }, payload, headerSize);
        // The reader always takes the 40-byte view: pad a short v1.1 message.
        const buf = new Uint8Array(Math.max(msg.length, INDIRECT_MSG_HEADER_SIZE_V1_2));
        buf.set(msg);
        const h = decodeIndirectMessageHeader(buf);
        const wantUuid = headerSize >= INDIRECT_MSG_HEADER_SIZE_V1_2 ? id : UUID_NIL;
        return (
          h.sender === sender &&
          h.receiver === receiver &&
          h.size === payload.length &&
          h.offset === offset &&
          h.flags === 0 &&
          (headerSize < INDIRECT_MSG_HEADER_SIZE_V1_2 || offset < INDIRECT_MSG_HEADER_SIZE_V1_2 || Buffer.from(h.uuid).equals(Buffer.from(wantUuid))) &&
          Buffer.from(buf.subarray(offset, offset + payload.length)).equals(Buffer.from(payload))
        );
      },
    ),
  );
  holds(
    t,
    'decodeIndirectMessageHeader on arbitrary bytes',
    fc.property(fc.uint8Array({ maxLength: 80 }), (b) => {
      try {
        const h = decodeIndirectMessageHeader(b);
        return h.uuid.length === 16;
      } catch (e) {
        return e instanceof RangeError && b.length < INDIRECT_MSG_HEADER_SIZE_V1_2;
      }
    }),
    2000,
  );
});
