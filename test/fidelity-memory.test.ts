// Issue 13, items 4, 5 and 7 (regions): memory sharing checked against Hafnium's src/ffa_memory.c,
// src/ffa/spmc/ffa_memory.c and src/api.c. Each case names the Hafnium function it follows. The
// table STRICT_ONLY lists every check that differs between the default (Hafnium) and strict modes.

import t from 'tap';
import {
  COMPOSITE_HEADER_SIZE,
  type Constituent,
  decodeCall,
  decodeCompositeHeader,
  decodeConstituents,
  decodeMemTransaction,
  encodeCall,
  encodeMemRelinquish,
  encodeMemTransaction,
  type EndpointId,
  FFA_ERRORS,
  FFA_PAGE_SIZE,
  FFA_VERSION_1_0,
  FFA_VERSION_1_1,
  FFA_VERSION_1_2,
  type FfaCall,
  type FfaVersion,
  fid,
  hex,
  joinU64,
  MEM_ATTR,
  MEM_ATTR_DEVICE_NGNRNE_IS,
  MEM_ATTR_NORMAL_WB_IS,
  MEM_FLAGS,
  MEM_PERM,
  type MemDescriptorInit,
  type MemTransaction,
  type Reason,
  type Registers,
  toRegisters,
} from '../proto/ffa/index.js';
import { u64FromWire, u64ToWire } from '../proto/wire.js';
import { SpmcChannel } from '../client-driver/transport/grpc-client.js';
import { SpmcGrpcServer } from '../server/grpc/server.js';
import { DEFAULT_MANIFEST_YAML, ManifestError, parseManifest } from '../server/manifest.js';
import { isPending } from '../server/spmc/pending.js';
import { type AttachParams, Spmc } from '../server/spmc/spmc.js';
import { RawVm, thrownKind } from './helpers.js';

const { INVALID_PARAMETERS, DENIED, BUSY } = FFA_ERRORS;
const RO = MEM_PERM.DATA_RO;
const RW = MEM_PERM.DATA_RW;
const NX = MEM_PERM.INSTRUCTION_NX << MEM_PERM.INSTRUCTION_SHIFT;
const X = MEM_PERM.INSTRUCTION_X << MEM_PERM.INSTRUCTION_SHIFT;
const TYPE = (t: 'share' | 'lend' | 'donate') => ({ share: 1, lend: 2, donate: 3 })[t] << MEM_FLAGS.TYPE_SHIFT;
const PAGE = BigInt(FFA_PAGE_SIZE);

/** Remote partitions this test drives with raw registers: one per version, and 0x8013 for SP-to-SP. */
const SP = { v12: 0x8010, v11: 0x8011, v10: 0x8012, other: 0x8013 } as const;
const DEVICE_BASE = 0x0900_0000n;
const SP_REGIONS = `
    memory-regions:
      - {description: ro-data, load-address-relative-offset: 0x200000, pages-count: 2, attributes: 0x1}
      - {description: rw-data, load-address-relative-offset: 0x300000, pages-count: 2, attributes: 0x3}
    device-regions:
      - {description: uart, base-address: ${DEVICE_BASE}, pages-count: 2, attributes: 0x3}`;
const remote = (id: number, version: string, extra = '') =>
  `  - name: r${id.toString(16)}
    id: ${id}
    uuids: [0badcafe-0000-4000-8000-00000000${id.toString(16)}]
    ffa-version: "${version}"
    execution-ctx-count: 1
    messaging-method: 3
    remote: {credential: credential-${id}}${extra}
`;
const MANIFEST = `${DEFAULT_MANIFEST_YAML}${remote(SP.v12, '1.2', SP_REGIONS)}${remote(SP.v11, '1.1')}${remote(SP.v10, '1.0')}${remote(SP.other, '1.2')}`;

type SendFn = 'MEM_SHARE' | 'MEM_LEND' | 'MEM_DONATE';

/** An endpoint driven with raw registers, with a one-page mailbox at the start of its RAM. */
class Ep extends RawVm {
  readonly tx: bigint;
  readonly rx: bigint;
  constructor(spmc: Spmc, id: EndpointId, version: FfaVersion) {
    super(spmc, id, version);
    ({ tx: this.tx, rx: this.rx } = this.mapMailbox(1));
  }
  /** A page of its RAM well past the mailbox. */
  page(i: number, pageCount = 1): Constituent {
    return { address: this.ramBase + 0x100000n + BigInt(i) * PAGE, pageCount };
  }
  desc(d: Partial<MemDescriptorInit> & Pick<MemDescriptorInit, 'receivers'>): Uint8Array {
    return encodeMemTransaction({ sender: this.id, attributes: MEM_ATTR_NORMAL_WB_IS, flags: 0, constituents: [this.page(0)], ...d }, this.version);
  }
  /** A call and why it was refused, if it was. */
  raw(c: FfaCall | Registers): { call: FfaCall; reason?: Reason } {
    const out = this.spmc.handle(this.id, 0, Array.isArray(c) ? c : encodeCall(c, this.version));
    if (isPending(out)) throw new Error('blocked');
    return { call: decodeReply(out, this.version), reason: this.spmc.reasonFor(out) };
  }
  send(fn: SendFn | 'MEM_RETRIEVE_REQ', bytes: Uint8Array, o: { total?: number; frag?: number } = {}) {
    this.spmc.writeMemory(this.id, this.tx, bytes);
    const total = o.total ?? bytes.length;
    return this.raw({ fn, width: 64, totalLength: total, fragmentLength: o.frag ?? total, buffer: { address: 0n, pageCount: 0 } });
  }
  handle(fn: SendFn, d: Partial<MemDescriptorInit> & Pick<MemDescriptorInit, 'receivers'>): bigint {
    return handleOf(this.send(fn, this.desc(d)).call);
  }
  retrieveDesc(handle: bigint, sender: number, d: Partial<MemDescriptorInit> = {}): Uint8Array {
    return encodeMemTransaction({ sender, attributes: 0, flags: 0, handle, receivers: [{ receiver: this.id, permissions: RW }], ...d }, this.version);
  }
  retrieve(handle: bigint, sender: number, d: Partial<MemDescriptorInit> = {}) {
    return this.send('MEM_RETRIEVE_REQ', this.retrieveDesc(handle, sender, d));
  }
  /** Retrieve, read the whole response from RX (one fragment), release RX. */
  response(handle: bigint, sender: number, d: Partial<MemDescriptorInit> = {}): Response {
    const { call, reason } = this.retrieve(handle, sender, d);
    if (call.fn !== 'MEM_RETRIEVE_RESP') throw new Error(`retrieve gave ${call.fn} ${reason?.text ?? ''}`);
    const bytes = this.spmc.readMemory(this.id, this.rx, call.fragmentLength);
    this.call({ fn: 'RX_RELEASE', vmId: 0 });
    const tx = decodeMemTransaction(bytes, this.version);
    const own = tx.receivers[0]!;
    const head = decodeCompositeHeader(bytes, own.compositeOffset);
    return { bytes, tx, own, constituents: decodeConstituents(bytes, own.compositeOffset + COMPOSITE_HEADER_SIZE, head.constituentCount).constituents };
  }
  relinquish(handle: bigint, flags = 0) {
    this.spmc.writeMemory(this.id, this.tx, encodeMemRelinquish({ handle, flags, endpoints: [this.id] }));
    return this.raw({ fn: 'MEM_RELINQUISH' });
  }
  reclaim(handle: bigint, flags = 0) {
    return this.raw({ fn: 'MEM_RECLAIM', handle, flags });
  }
}

interface Response {
  bytes: Uint8Array;
  tx: MemTransaction;
  own: MemTransaction['receivers'][number];
  constituents: Constituent[];
}

/** An answer of the SPMC, read without MBZ judgement (it is the SPMC's own encoding). */
function decodeReply(out: Registers, version: FfaVersion): FfaCall {
  const d = decodeCall(out, version, false);
  if (!d.ok) throw new Error(`undecodable answer ${out.map((v) => v.toString(16))}`);
  return d.call;
}

function handleOf(c: FfaCall): bigint {
  if (c.fn !== 'SUCCESS') throw new Error(`expected SUCCESS, got ${JSON.stringify(c, (_k, v) => (typeof v === 'bigint' ? v.toString(16) : v))}`);
  return joinU64(c.args[0]!, c.args[1]!);
}

const errorOf = (r: { call: FfaCall }) => (r.call.fn === 'ERROR' ? r.call.code : undefined);
const codeOf = (r: { reason?: Reason }) => r.reason?.code;

const patch = (bytes: Uint8Array, offset: number, value: number, size: 1 | 2 | 4 = 1) => {
  const out = bytes.slice();
  const dv = new DataView(out.buffer);
  if (size === 1) dv.setUint8(offset, value);
  else if (size === 2) dv.setUint16(offset, value, true);
  else dv.setUint32(offset, value, true);
  return out;
};

/** An SPMC with the remote partitions attached and mailboxes mapped, and `vms` VMs of the given versions. */
function world(opts: { strict?: boolean; vms?: FfaVersion[]; vmParams?: AttachParams[] } = {}) {
  const spmc = new Spmc({ partitions: parseManifest(MANIFEST), strict: opts.strict, limits: { maxBorrowers: 4 } });
  const sp = (id: number, v: FfaVersion) => {
    spmc.attach({ endpointId: id, credential: `credential-${id}` });
    return new Ep(spmc, id, v);
  };
  const sps = { v12: sp(SP.v12, FFA_VERSION_1_2), v11: sp(SP.v11, FFA_VERSION_1_1), v10: sp(SP.v10, FFA_VERSION_1_0), other: sp(SP.other, FFA_VERSION_1_2) };
  const vms = (opts.vms ?? [FFA_VERSION_1_2, FFA_VERSION_1_2]).map((v, i) => {
    const raw = RawVm.attach(spmc, opts.vmParams?.[i] ?? {}, v);
    return new Ep(spmc, raw.id, v);
  });
  return { spmc, sps, vms };
}

// ---- Item 4: what the retrieve response says -------------------------------------------------

t.test('ffa_memory_add_security_bit_from_mode: an SP retrieving a VM share sees 0x6f, in every layout', async (t) => {
  const { sps, vms } = world();
  const [vm] = vms;
  for (const [name, sp] of Object.entries(sps).filter(([k]) => k !== 'other')) {
    const h = vm!.handle('MEM_SHARE', { receivers: [{ receiver: sp.id, permissions: RW }], constituents: [vm!.page(Number(sp.id & 0xf))] });
    const r = sp.response(h, vm!.id);
    t.equal(r.tx.attributes, MEM_ATTR_NORMAL_WB_IS | MEM_ATTR.NS, `${name}: NS bit set (0x6f)`);
    t.equal(r.tx.flags, TYPE('share'), `${name}: flags = the transaction type`);
    t.equal(r.tx.tag, 0n, `${name}: tag 0 (ffa_partition_retrieve_response_init passes 0)`);
    t.equal(r.tx.handle, h, `${name}: the handle`);
    t.equal(r.own.permissions, RW | NX, `${name}: RW and NX granted (a share is NX)`);
    t.equal(r.tx.receivers.length, 1, `${name}: only the retriever's descriptor`);
    t.same(r.constituents, [vm!.page(Number(sp.id & 0xf))], `${name}: the constituents`);
  }
});

t.test('the NS bit is a partition view of VM memory: VM-to-VM and SP-to-SP responses have none', async (t) => {
  const { sps, vms } = world();
  const [a, b] = vms;
  const h = a!.handle('MEM_SHARE', { receivers: [{ receiver: b!.id, permissions: RW }] });
  t.equal(b!.response(h, a!.id).tx.attributes, MEM_ATTR_NORMAL_WB_IS, 'VM to VM (the hypervisor, ffa_memory_add_security_bit_from_mode is a no-op there)');
  const h2 = sps.v12.handle('MEM_SHARE', { receivers: [{ receiver: SP.other, permissions: RW }] });
  t.equal(sps.other.response(h2, SP.v12).tx.attributes, MEM_ATTR_NORMAL_WB_IS, 'SP to SP: secure memory');
});

t.test('ffa_memory_retrieve_is_memory_access_valid: an unspecified instruction access in a multi-borrower lend is granted NX', async (t) => {
  const { sps, vms } = world();
  const [vm, vm2] = vms;
  const both = [
    { receiver: SP.v12, permissions: RW },
    { receiver: SP.other, permissions: RW },
  ];
  const h = vm!.handle('MEM_LEND', { receivers: both });
  const r = sps.v12.response(h, vm!.id, { flags: TYPE('lend'), receivers: both });
  t.equal(r.own.permissions, RW | NX, 'NX, not the unspecified value asked for (the sent_instruction_access switch)');
  t.equal(r.tx.attributes, MEM_ATTR_NORMAL_WB_IS | MEM_ATTR.NS, 'and the NS bit');
  // Between VMs (the hypervisor) the same rule.
  const c = new Ep(vm!.spmc, RawVm.attach(vm!.spmc).id, FFA_VERSION_1_2);
  const vmsBoth = [
    { receiver: vm2!.id, permissions: RW },
    { receiver: c.id, permissions: RO },
  ];
  const h2 = vm!.handle('MEM_LEND', { receivers: vmsBoth, constituents: [vm!.page(4)] });
  const r2 = c.response(h2, vm!.id, {
    receivers: [
      { receiver: vm2!.id, permissions: 0 },
      { receiver: c.id, permissions: 0 },
    ],
  });
  t.equal(r2.own.permissions, RO | NX, 'RO as sent, NX for the unspecified instruction access');
  t.equal(r2.tx.attributes, MEM_ATTR_NORMAL_WB_IS, 'no NS bit between VMs');
});

t.test('single-borrower lend: the borrower chooses X or NX; X on non-secure memory is refused to a partition', async (t) => {
  const { sps, vms } = world();
  const [vm, vm2] = vms;
  const h = vm!.handle('MEM_LEND', { receivers: [{ receiver: SP.v12, permissions: RW }], attributes: 0 });
  const x = sps.v12.retrieve(h, vm!.id, { receivers: [{ receiver: SP.v12, permissions: RW | X }] });
  t.equal(errorOf(x), INVALID_PARAMETERS, 'X on NS memory (ffa_memory_retrieve_is_memory_access_valid, no PAS change)');
  t.equal(codeOf(x), 'mem_retrieve_req.execute_non_secure');
  t.equal(x.reason?.text, 'MEM_RETRIEVE_REQ: receiver 0x8010 asks for X on non-secure memory');
  const none = sps.v12.retrieve(h, vm!.id, { receivers: [{ receiver: SP.v12, permissions: RW }] });
  t.equal(codeOf(none), 'mem_retrieve_req.instruction_access_missing');
  const r = sps.v12.response(h, vm!.id, { receivers: [{ receiver: SP.v12, permissions: RW | NX }] });
  t.equal(r.own.permissions, RW | NX);
  t.equal(r.tx.attributes, MEM_ATTR.NS, "the sender's attributes (type unspecified in a single lend) with the NS bit: 0x40");
  // A VM may take X on a VM's lent memory (the hypervisor has no NS memory).
  const h2 = vm!.handle('MEM_LEND', { receivers: [{ receiver: vm2!.id, permissions: RW }], attributes: 0, constituents: [vm!.page(6)] });
  t.equal(vm2!.response(h2, vm!.id, { receivers: [{ receiver: vm2!.id, permissions: RW | X }] }).own.permissions, RW | X);
  // SP to SP: secure memory, X may be granted.
  const h3 = sps.other.handle('MEM_LEND', { receivers: [{ receiver: SP.v12, permissions: RW }], attributes: 0 });
  t.equal(
    sps.v12.response(h3, SP.other, { receivers: [{ receiver: SP.v12, permissions: RO | X }] }).own.permissions,
    RO | X,
    'RO asked of an RW grant, X on secure memory',
  );
});

t.test("ffa_partition_retrieve_response_init: the sender's EMAD flags and impdef value come back; the retriever repeats the impdef", async (t) => {
  const { sps, vms } = world();
  const [vm] = vms;
  const impdef: [bigint, bigint] = [0x1122334455667788n, 0x99aabbccddeeff00n];
  const both = [
    { receiver: SP.v12, permissions: RW, flags: 1, impdef },
    { receiver: SP.other, permissions: RW },
  ];
  const h = vm!.handle('MEM_SHARE', { receivers: both });
  const mismatch = sps.v12.retrieve(h, vm!.id, {
    receivers: [
      { receiver: SP.v12, permissions: RW },
      { receiver: SP.other, permissions: RW },
    ],
  });
  t.equal(errorOf(mismatch), INVALID_PARAMETERS, 'impdef differs (ffa_memory_retrieve_validate_memory_access_list)');
  t.equal(codeOf(mismatch), 'mem_retrieve_req.impdef');
  const r = sps.v12.response(h, vm!.id, {
    receivers: [
      { receiver: SP.v12, permissions: RW, impdef },
      { receiver: SP.other, permissions: RW },
    ],
  });
  t.same(r.own.impdef, impdef, 'impdef echoed');
  t.equal(r.own.flags, 1, "the sender's EMAD flags echoed");
  // A v1.1 retriever sees the 16-byte EMAD: no impdef, nor any check of it.
  const h2 = vm!.handle('MEM_SHARE', { receivers: [{ receiver: SP.v11, permissions: RO, impdef }], constituents: [vm!.page(3)] });
  const r11 = sps.v11.response(h2, vm!.id, { receivers: [{ receiver: SP.v11, permissions: RO }] });
  t.equal(r11.tx.emadSize, 16);
  t.equal(r11.own.permissions, RO | NX);
});

t.test('donated memory stays non-secure: an SP that shares what a VM donated hands out the NS bit', async (t) => {
  const { sps, vms } = world();
  const [vm] = vms;
  const h = vm!.handle('MEM_DONATE', { receivers: [{ receiver: SP.v12, permissions: 0 }], attributes: 0 });
  const r = sps.v12.response(h, vm!.id, { flags: TYPE('donate'), receivers: [{ receiver: SP.v12, permissions: NX }] });
  t.equal(r.tx.attributes, MEM_ATTR.NS, 'the donate response: 0x40');
  t.equal(r.own.permissions, RW | NX, 'unspecified data access in a donate is RW');
  const h2 = sps.v12.handle('MEM_SHARE', { receivers: [{ receiver: SP.other, permissions: RO }], constituents: [vm!.page(0)] });
  t.equal(
    sps.other.response(h2, SP.v12, { receivers: [{ receiver: SP.other, permissions: RO }] }).tx.attributes,
    MEM_ATTR_NORMAL_WB_IS | MEM_ATTR.NS,
    'Hafnium keeps MM_MODE_NS in the mode',
  );
});

t.test('the clear flag of the sender is in the response flags', async (t) => {
  const { sps, vms } = world();
  const [vm] = vms;
  const h = vm!.handle('MEM_LEND', { receivers: [{ receiver: SP.v10, permissions: RW }], attributes: 0, flags: MEM_FLAGS.CLEAR });
  const r = sps.v10.response(h, vm!.id, { receivers: [{ receiver: SP.v10, permissions: RW | NX }], flags: MEM_FLAGS.CLEAR });
  t.equal(r.tx.flags, TYPE('lend') | MEM_FLAGS.CLEAR, 'v1.0 layout: lend, cleared');
  t.equal(r.tx.attributes, MEM_ATTR.NS);
});

// ---- Item 5: never stricter than Hafnium ------------------------------------------------------

t.test('a constituent reserved word with garbage is accepted (ffa_send_check_update never reads it)', async (t) => {
  const { sps, vms } = world();
  const [vm] = vms;
  const d = vm!.desc({ receivers: [{ receiver: SP.v12, permissions: RW }] });
  const garbage = patch(d, d.length - 4, 0xdeadbeef, 4);
  const h = handleOf(vm!.send('MEM_SHARE', garbage).call);
  t.ok(h > 0n, 'shared');
  t.equal(sps.v12.response(h, vm!.id).tx.attributes & 0xff, 0x6f, 'and retrieved');
  t.equal(sps.v12.relinquish(h).call.fn, 'SUCCESS');
  t.equal(vm!.reclaim(h).call.fn, 'SUCCESS', 'no cascade: the page comes back');
});

t.test('attribute bits [15:8] are padding (ffa_memory_attributes_t): ignored on send and on retrieve', async (t) => {
  const { sps, vms } = world();
  const [vm] = vms;
  const h = handleOf(vm!.send('MEM_SHARE', vm!.desc({ receivers: [{ receiver: SP.v12, permissions: RW }], attributes: 0xab00 | MEM_ATTR_NORMAL_WB_IS })).call);
  const r = sps.v12.response(h, vm!.id, { attributes: 0xcd00 | MEM_ATTR_NORMAL_WB_IS });
  t.equal(r.tx.attributes & 0xff, 0x6f, 'only type, cacheability, shareability and security are compared (ffa_memory_retrieve_validate)');
  t.equal(r.tx.attributes >> 8, 0xab, "Hafnium copies the sender's attribute word whole");
  // Bit 7 is part of Hafnium's 2-bit security field: it is checked.
  const bit7 = vm!.send(
    'MEM_SHARE',
    vm!.desc({ receivers: [{ receiver: SP.v12, permissions: RW }], attributes: 0x80 | MEM_ATTR_NORMAL_WB_IS, constituents: [vm!.page(2)] }),
  );
  t.equal(codeOf(bit7), 'mem_share.ns_bit', 'the security field (bits [7:6]) must be 0 in a send (ffa_memory_send_validate)');
});

t.test('ffa_memory_attributes_validate: the type, cacheability and shareability fields, not the whole byte', async (t) => {
  const { sps, vms } = world();
  const [vm] = vms;
  const one = [{ receiver: SP.v12, permissions: RW }];
  const cases: [string, number, number | undefined, string | undefined][] = [
    ['Normal write-back inner shareable', MEM_ATTR_NORMAL_WB_IS, undefined, undefined],
    ['type not specified, inner shareable (Hafnium checks only the shareability then)', MEM_ATTR.INNER_SHAREABLE, undefined, undefined],
    [
      'Normal non-cacheable',
      MEM_ATTR.TYPE_NORMAL | (1 << 2) | MEM_ATTR.INNER_SHAREABLE,
      DENIED,
      'MEM_SHARE: attributes 0x27: Normal memory must be write-back cacheable, not non-cacheable',
    ],
    [
      'Normal write-back outer shareable',
      MEM_ATTR.TYPE_NORMAL | MEM_ATTR.WRITE_BACK | 2,
      DENIED,
      'MEM_SHARE: attributes 0x2e: memory must be inner shareable, not outer shareable',
    ],
    ['Device nGnRE', MEM_ATTR.TYPE_DEVICE | (1 << 2) | MEM_ATTR.INNER_SHAREABLE, DENIED, 'MEM_SHARE: attributes 0x17: Device memory must be nGnRnE, not nGnRE'],
  ];
  cases.forEach(([what, attributes, error, text], i) => {
    const r = vm!.send('MEM_SHARE', vm!.desc({ receivers: one, attributes, constituents: [vm!.page(10 + i)] }));
    t.equal(errorOf(r), error, what);
    if (text) t.equal(r.reason?.text, text, `${what}: the reason`);
  });
  const h = vm!.handle('MEM_SHARE', { receivers: one, constituents: [vm!.page(20)] });
  const bad = sps.v12.retrieve(h, vm!.id, { attributes: MEM_ATTR.TYPE_NORMAL | MEM_ATTR.INNER_SHAREABLE });
  t.equal(errorOf(bad), DENIED, 'a retriever asking for Normal non-write-back');
  t.equal(codeOf(bad), 'mem_retrieve_req.attributes');
});

/**
 * Every check that differs between the default mode (Hafnium's behaviour) and strict mode, and
 * why. `act` runs the case in a fresh world and returns the answer; default expects `lenient`, strict
 * expects INVALID_PARAMETERS with `code`.
 */
interface StrictRow {
  check: string;
  why: string;
  code: string;
  act: (w: ReturnType<typeof world>) => { call: FfaCall; reason?: Reason };
  /** What the default (Hafnium) mode answers. */
  lenient: FfaCall['fn'];
}

const shareTo = (w: ReturnType<typeof world>, d: Partial<MemDescriptorInit> = {}) =>
  w.vms[0]!.desc({ receivers: [{ receiver: SP.v12, permissions: RW }], ...d });
const sharedHandle = (w: ReturnType<typeof world>) => w.vms[0]!.handle('MEM_SHARE', { receivers: [{ receiver: SP.v12, permissions: RW }] });
const retrievedHandle = (w: ReturnType<typeof world>) => {
  const h = sharedHandle(w);
  w.sps.v12.response(h, w.vms[0]!.id);
  return h;
};

const STRICT_ONLY: StrictRow[] = [
  {
    check: 'constituent reserved word (offset 12)',
    why: 'ffa_send_check_update reads address and page count only; FF-A v1.1 Table 10.14 says MBZ',
    code: 'mem_share.constituent_reserved',
    act: (w) => w.vms[0]!.send('MEM_SHARE', patch(shareTo(w), shareTo(w).length - 4, 0x5a5a5a5a, 4)),
    lenient: 'SUCCESS',
  },
  {
    check: 'composite descriptor reserved bytes 8..15',
    why: 'ffa_memory_send_validate reads page and constituent counts only; FF-A v1.1 Table 10.13 says MBZ',
    code: 'mem_share.composite_reserved',
    act: (w) => w.vms[0]!.send('MEM_SHARE', patch(shareTo(w), 48 + 32 + 8, 1)),
    lenient: 'SUCCESS',
  },
  {
    check: 'memory region attributes bits [15:8] on a send',
    why: "padding in Hafnium's ffa_memory_attributes_t; FF-A v1.1 Table 10.18 says [15:7] MBZ",
    code: 'mem_share.attributes_reserved',
    act: (w) => w.vms[0]!.send('MEM_SHARE', shareTo(w, { attributes: 0x100 | MEM_ATTR_NORMAL_WB_IS })),
    lenient: 'SUCCESS',
  },
  {
    check: 'memory region attributes bits [15:8] on a retrieve request',
    why: 'ffa_memory_retrieve_validate compares security and type/cacheability/shareability only',
    code: 'mem_retrieve_req.attributes_reserved',
    act: (w) => w.sps.v12.retrieve(sharedHandle(w), w.vms[0]!.id, { attributes: 0x100 }),
    lenient: 'MEM_RETRIEVE_RESP',
  },
  {
    check: 'EMAD permissions bits [7:4] on a send',
    why: "Hafnium's ffa_memory_access_permissions_t is a 4-bit field; FF-A v1.1 Table 10.15 says reserved",
    code: 'mem_share.permissions_reserved',
    act: (w) => w.vms[0]!.send('MEM_SHARE', shareTo(w, { receivers: [{ receiver: SP.v12, permissions: 0x10 | RW }] })),
    lenient: 'SUCCESS',
  },
  {
    check: 'EMAD permissions bits [7:4] in a retrieve request',
    why: 'ffa_memory_retrieve_is_memory_access_valid reads the data and instruction fields only',
    code: 'mem_retrieve_req.emad_reserved',
    act: (w) => w.sps.v12.retrieve(sharedHandle(w), w.vms[0]!.id, { receivers: [{ receiver: SP.v12, permissions: 0x20 | RW }] }),
    lenient: 'MEM_RETRIEVE_RESP',
  },
  {
    check: 'EMAD flags on a send',
    why: 'ffa_memory_send_validate never reads them (they come back in the retrieve response)',
    code: 'mem_share.emad_flags',
    act: (w) => w.vms[0]!.send('MEM_SHARE', shareTo(w, { receivers: [{ receiver: SP.v12, permissions: RW, flags: 1 }] })),
    lenient: 'SUCCESS',
  },
  {
    check: 'EMAD flags bits [7:1] in a retrieve request',
    why: "Hafnium never reads a retriever's EMAD flags",
    code: 'mem_retrieve_req.emad_reserved',
    act: (w) => w.sps.v12.retrieve(sharedHandle(w), w.vms[0]!.id, { receivers: [{ receiver: SP.v12, permissions: RW, flags: 0x80 }] }),
    lenient: 'MEM_RETRIEVE_RESP',
  },
  {
    check: 'retrieve flag bit 10 (bypass borrower check) from a v1.1 caller',
    why: 'ffa_memory_retrieve_validate masks ~0x7ff whatever the version; in FF-A v1.1 bits [31:10] are MBZ',
    code: 'mem_retrieve_req.flags',
    act: (w) => {
      const both = [
        { receiver: SP.v11, permissions: RW },
        { receiver: SP.v12, permissions: RW },
      ];
      const h = w.vms[0]!.handle('MEM_SHARE', { receivers: both });
      return w.sps.v11.retrieve(h, w.vms[0]!.id, { flags: MEM_FLAGS.BYPASS_MULTI_BORROWER, receivers: [{ receiver: SP.v11, permissions: RW }] });
    },
    lenient: 'MEM_RETRIEVE_RESP',
  },
  {
    check: 'receivers offset not 16-byte aligned',
    why: 'ffa_memory_region_sanity_check requires only offset >= 48; FF-A v1.1 Table 10.20 wants alignment',
    code: 'mem_share.receivers_offset',
    act: (w) => w.vms[0]!.send('MEM_SHARE', shiftReceivers(shareTo(w), 8)),
    lenient: 'SUCCESS',
  },
  {
    check: 'relinquish flags bits [31:2]',
    why: 'ffa_memory_relinquish reads the clear flag only; FF-A v1.1 Table 16.25 says reserved',
    code: 'mem_relinquish.flags',
    act: (w) => w.sps.v12.relinquish(retrievedHandle(w), 0x100),
    lenient: 'SUCCESS',
  },
  {
    check: 'reclaim flags bits [31:2]',
    why: 'api_ffa_mem_reclaim passes w3 on and only the clear bit is read',
    code: 'mem_reclaim.flags',
    act: (w) => w.vms[0]!.reclaim(sharedHandle(w), 0x100),
    lenient: 'SUCCESS',
  },
  {
    check: 'unused registers of a memory call (w5 of MEM_SHARE)',
    why: 'ffa_handler passes only the fields of a memory call on; SMCCC says unused registers MBZ',
    code: 'mem_share.mbz',
    act: (w) => {
      const d = shareTo(w);
      w.spmc.writeMemory(w.vms[0]!.id, w.vms[0]!.tx, d);
      return w.vms[0]!.raw(toRegisters([fid('MEM_SHARE', 32), d.length, d.length, 0, 0, 0x77]));
    },
    lenient: 'SUCCESS',
  },
  {
    check: 'unused registers of MEM_RELINQUISH (w1)',
    why: 'api_ffa_mem_relinquish takes no register argument and reads none',
    code: 'mem_relinquish.mbz',
    act: (w) => {
      const h = retrievedHandle(w);
      w.spmc.writeMemory(SP.v12, w.sps.v12.tx, encodeMemRelinquish({ handle: h, flags: 0, endpoints: [SP.v12] }));
      return w.sps.v12.raw(toRegisters([fid('MEM_RELINQUISH'), 1]));
    },
    lenient: 'SUCCESS',
  },
  {
    check: 'MEM_FRAG_TX past the total length',
    why: 'ffa_memory_send_continue completes on an exact constituent count; past it the transaction never completes (FRAG_RX goes on until MAX_FRAGMENTS)',
    code: 'mem_frag_tx.past_total_length',
    act: (w) => {
      const vm = w.vms[0]!;
      const d = vm.desc({ receivers: [{ receiver: SP.v12, permissions: RW }], constituents: [vm.page(0), vm.page(1)] });
      const first = vm.send('MEM_SHARE', d.subarray(0, d.length - 16), { total: d.length, frag: d.length - 16 }).call;
      const handle = first.fn === 'MEM_FRAG_RX' ? first.handle : 0n;
      const two = new Uint8Array(32);
      new DataView(two.buffer).setBigUint64(0, vm.page(1).address, true);
      new DataView(two.buffer).setUint32(8, 1, true);
      new DataView(two.buffer).setBigUint64(16, vm.page(2).address, true);
      new DataView(two.buffer).setUint32(24, 1, true);
      w.spmc.writeMemory(vm.id, vm.tx, two);
      return vm.raw({ fn: 'MEM_FRAG_TX', handle, fragmentLength: 32, endpoint: 0 });
    },
    lenient: 'MEM_FRAG_RX',
  },
];

/** The same descriptor with its access descriptors `by` bytes further on (and the composite after them). */
function shiftReceivers(d: Uint8Array, by: number): Uint8Array {
  const dv = new DataView(d.buffer, d.byteOffset);
  const offset = dv.getUint32(32, true);
  const count = dv.getUint32(28, true);
  const size = dv.getUint32(24, true);
  const emads = d.slice(offset, offset + count * size);
  const composite = dv.getUint32(offset + 4, true);
  const rest = d.slice(composite);
  const newOffset = offset + by;
  const newComposite = Math.ceil((newOffset + count * size) / 16) * 16;
  const out = new Uint8Array(newComposite + rest.length);
  out.set(d.subarray(0, 48));
  out.set(emads, newOffset);
  out.set(rest, newComposite);
  const ov = new DataView(out.buffer);
  ov.setUint32(32, newOffset, true);
  for (let i = 0; i < count; i++) ov.setUint32(newOffset + i * size + 4, newComposite, true);
  return out;
}

t.test('checks that differ between default (Hafnium) and strict mode', async (t) => {
  for (const row of STRICT_ONLY) {
    const lenient = row.act(world());
    t.equal(lenient.call.fn, row.lenient, `default: ${row.check} (${row.why})`);
    const strict = row.act(world({ strict: true }));
    t.equal(errorOf(strict), INVALID_PARAMETERS, `strict: ${row.check}`);
    t.equal(codeOf(strict), row.code, `strict: ${row.check} says ${row.code}`);
    if (!row.code.endsWith('.mbz')) t.match(strict.reason?.text, /\(strict mode: FF-A v1\.1 /, 'and cites the spec');
  }
  // The default mode still follows Hafnium where it does check: the EMAD reserved bytes and the header's.
  const w = world();
  const d = shareTo(w);
  t.equal(codeOf(w.vms[0]!.send('MEM_SHARE', patch(d, 48 + 24, 1))), 'mem_share.emad_reserved', 'EMAD reserved bytes (ffa_memory_region_sanity_check)');
  t.equal(codeOf(w.vms[0]!.send('MEM_SHARE', patch(d, 40, 1))), 'mem_share.reserved_header', 'header reserved bytes');
});

t.test('deliberate differences from Hafnium, the same in both modes', async (t) => {
  // constituents_get_mode compares modes only from the second fragment on (it indexes by fragment),
  // so within one fragment Hafnium would apply the last constituent's mode to all: here every
  // constituent must have the same mode, or a sender could send pages it does not own.
  for (const strict of [false, true]) {
    const { vms, sps } = world({ strict });
    const [a, b] = vms;
    const r = a!.send('MEM_SHARE', a!.desc({ receivers: [{ receiver: SP.v12, permissions: RW }], constituents: [b!.page(0), a!.page(0)] }));
    t.equal(codeOf(r), 'mem_share.mode_inconsistent', `strict=${strict}: another VM's page first`);
    const mixed = sps.v12.send(
      'MEM_SHARE',
      sps.v12.desc({
        receivers: [{ receiver: SP.other, permissions: RO }],
        constituents: [sps.v12.page(0), { address: sps.v12.ramBase + 0x200000n, pageCount: 1 }],
      }),
    );
    t.equal(codeOf(mixed), 'mem_share.mode_differs', `strict=${strict}: RW RAM and a read-only region`);
    // A retrieve request without access descriptors is the hypervisor's; Hafnium asserts the caller is.
    const h = a!.handle('MEM_SHARE', { receivers: [{ receiver: b!.id, permissions: RW }], constituents: [a!.page(8)] });
    const hyp = b!.send('MEM_RETRIEVE_REQ', encodeMemTransaction({ sender: 0, attributes: 0, flags: 0, handle: h, receivers: [] }, FFA_VERSION_1_2));
    t.equal(codeOf(hyp), 'mem_retrieve_req.receiver_count', `strict=${strict}: a hypervisor retrieve request from a VM`);
  }
});

// ---- Item 7: memory and device regions --------------------------------------------------------

t.test('manifest memory-regions and device-regions are checked as Hafnium parses them', async (t) => {
  const with_ = (regions: string) => () => parseManifest(`${DEFAULT_MANIFEST_YAML}${remote(0x8020, '1.2', regions)}`, 'm.yaml');
  const bad: [string, string, RegExp][] = [
    [
      'both addresses',
      `\n    memory-regions:\n      - {base-address: 0x7000000, load-address-relative-offset: 0x1000, pages-count: 1, attributes: 1}`,
      /memory-regions\[0\]: needs exactly one/,
    ],
    ['no address', `\n    memory-regions:\n      - {pages-count: 1, attributes: 1}`, /needs exactly one of "base-address" or "load-address-relative-offset"/],
    [
      'write-only (parse_ffa_region_attributes)',
      `\n    memory-regions:\n      - {base-address: 0x7000000, pages-count: 1, attributes: 2}`,
      /must be read, read-write, read-execute or read-write-execute/,
    ],
    [
      'executable device',
      `\n    device-regions:\n      - {base-address: 0x9000000, pages-count: 1, attributes: 5}`,
      /device-regions\[0\]: attributes 0x5 must be read or read-write/,
    ],
    ['zero pages', `\n    memory-regions:\n      - {base-address: 0x7000000, pages-count: 0, attributes: 1}`, /pages-count/],
    ['unaligned', `\n    memory-regions:\n      - {base-address: 0x7000010, pages-count: 1, attributes: 1}`, /not 4 KiB aligned/],
    [
      'overlap (MANIFEST_ERROR_MEM_REGION_OVERLAP)',
      `\n    memory-regions:\n      - {base-address: 0x7000000, pages-count: 2, attributes: 1}\n    device-regions:\n      - {base-address: 0x7001000, pages-count: 1, attributes: 1}`,
      /overlaps partitions\[4\]\.memory-regions\[0\]/,
    ],
    [
      'device region relative',
      `\n    device-regions:\n      - {load-address-relative-offset: 0x1000, pages-count: 1, attributes: 1}`,
      /device-regions\[0\]: missing field "base-address"/,
    ],
  ];
  for (const [what, regions, re] of bad) {
    t.throws(with_(regions), ManifestError, what);
    t.throws(with_(regions), re, what);
  }
  const ok = parseManifest(MANIFEST).find((p) => p.id === SP.v12)!;
  t.same(
    ok.regions?.map((r) => [r.relative, r.device, r.pages, r.attributes]),
    [
      [true, false, 2, 1],
      [true, false, 2, 3],
      [false, true, 2, 3],
    ],
  );
  t.equal(
    thrownKind(
      () =>
        new Spmc({
          partitions: parseManifest(
            `${MANIFEST}${remote(0x8021, '1.2', `\n    device-regions:\n      - {base-address: ${DEVICE_BASE + PAGE}, pages-count: 1, attributes: 1}`)}`,
          ),
        }),
    ),
    'ManifestError',
    'two partitions on one device page',
  );
});

t.test('ffa_send_check_transition: read-only memory is never sent with write access', async (t) => {
  const { spmc, sps } = world();
  const sp = sps.v12;
  const ro = (i = 0): Constituent => ({ address: sp.ramBase + 0x200000n + BigInt(i) * PAGE, pageCount: 1 });
  t.throws(() => spmc.writeMemory(sp.id, ro().address, new Uint8Array([1])), /may not write/, 'the partition itself may not write it');
  const rw = sp.send('MEM_SHARE', sp.desc({ receivers: [{ receiver: SP.other, permissions: RW }], constituents: [ro()] }));
  t.equal(errorOf(rw), DENIED, 'share RO memory RW');
  t.equal(rw.reason?.text, 'MEM_SHARE: receiver 0x8013 would get RW access to memory that is read-only for the sender');
  t.equal(
    codeOf(sp.send('MEM_LEND', sp.desc({ receivers: [{ receiver: SP.other, permissions: RW }], constituents: [ro()], attributes: 0 }))),
    'mem_lend.permissions_exceed',
    'lend RO memory RW',
  );
  const clear = sp.send(
    'MEM_LEND',
    sp.desc({ receivers: [{ receiver: SP.other, permissions: RO }], constituents: [ro()], attributes: 0, flags: MEM_FLAGS.CLEAR }),
  );
  t.equal(errorOf(clear), DENIED, 'lend RO memory with the clear flag');
  t.equal(clear.reason?.text, 'MEM_LEND: the memory is read-only for the sender, so it cannot be cleared');
  // Read-only shares work, and the borrower gets read-only access.
  const h = sp.handle('MEM_SHARE', { receivers: [{ receiver: SP.other, permissions: RO }], constituents: [ro()] });
  t.equal(codeOf(sps.other.retrieve(h, sp.id)), 'mem_retrieve_req.data_access', 'RW asked of an RO grant');
  t.equal(sps.other.response(h, sp.id, { receivers: [{ receiver: SP.other, permissions: RO }] }).own.permissions, RO | NX);
  t.throws(() => spmc.writeMemory(SP.other, ro().address, new Uint8Array([1])), /may not write/);
  t.doesNotThrow(() => spmc.readMemory(SP.other, ro().address, 1));
  t.equal(sps.other.relinquish(h).call.fn, 'SUCCESS');
  t.equal(sp.reclaim(h).call.fn, 'SUCCESS');
  t.throws(() => spmc.writeMemory(sp.id, ro().address, new Uint8Array([1])), /may not write/, 'still read-only after reclaim');
  // Donate takes the sender's mode and the borrower's unspecified data access is RW (Hafnium).
  const d = sp.handle('MEM_DONATE', { receivers: [{ receiver: SP.other, permissions: 0 }], constituents: [ro(1)], attributes: 0 });
  t.equal(sps.other.response(d, sp.id, { receivers: [{ receiver: SP.other, permissions: NX }] }).own.permissions, RW | NX);
  t.doesNotThrow(() => spmc.writeMemory(SP.other, ro(1).address, new Uint8Array([1])), 'the new owner maps it RW, as Hafnium maps it');
});

t.test('ffa_send_check_transition: device memory is only lent, to one borrower, and never as Normal memory', async (t) => {
  const { sps } = world();
  const sp = sps.v12;
  const dev: Constituent = { address: DEVICE_BASE, pageCount: 1 };
  const cases: [string, SendFn, Partial<MemDescriptorInit>, number, string][] = [
    ['share as Normal', 'MEM_SHARE', {}, DENIED, 'mem_share.device_as_normal'],
    ['share as Device', 'MEM_SHARE', { attributes: MEM_ATTR_DEVICE_NGNRNE_IS }, DENIED, 'mem_share.device_memory'],
    [
      'lend to two',
      'MEM_LEND',
      {
        attributes: MEM_ATTR_DEVICE_NGNRNE_IS,
        receivers: [
          { receiver: SP.other, permissions: RW },
          { receiver: SP.v11, permissions: RW },
        ],
      },
      DENIED,
      'mem_lend.device_memory',
    ],
    ['donate', 'MEM_DONATE', { attributes: 0, receivers: [{ receiver: SP.other, permissions: 0 }] }, DENIED, 'mem_donate.device_memory'],
    ['device and RAM together', 'MEM_LEND', { attributes: 0, constituents: [dev, sp.page(0)] }, DENIED, 'mem_lend.mode_differs'],
  ];
  for (const [what, fn, d, error, code] of cases) {
    const r = sp.send(fn, sp.desc({ receivers: [{ receiver: SP.other, permissions: RW }], constituents: [dev], ...d }));
    t.equal(errorOf(r), error, what);
    t.equal(codeOf(r), code, `${what}: ${code}`);
  }
  t.equal(
    sp.send('MEM_SHARE', sp.desc({ receivers: [{ receiver: SP.other, permissions: RW }], constituents: [dev] })).reason?.text,
    'MEM_SHARE: device memory may not be sent as Normal memory',
  );
  const h = sp.handle('MEM_LEND', { receivers: [{ receiver: SP.other, permissions: RW }], constituents: [dev], attributes: 0 });
  const normal = sps.other.retrieve(h, sp.id, { attributes: MEM_ATTR_NORMAL_WB_IS, receivers: [{ receiver: SP.other, permissions: RW | NX }] });
  t.equal(errorOf(normal), DENIED, 'retrieved as Normal (ffa_partition_retrieve_request)');
  t.equal(normal.reason?.text, 'MEM_RETRIEVE_REQ: device memory may not be retrieved as Normal memory');
  const r = sps.other.response(h, sp.id, { attributes: MEM_ATTR_DEVICE_NGNRNE_IS, receivers: [{ receiver: SP.other, permissions: RW | NX }] });
  t.equal(r.tx.attributes, 0, "the sender's attributes: type not specified");
  t.equal(sps.other.relinquish(h).call.fn, 'SUCCESS');
  t.equal(sp.reclaim(h).call.fn, 'SUCCESS');
});

t.test('a VM declares its regions at attach; sharing follows them, and a partition sees them non-secure', async (t) => {
  const vmParams: AttachParams[] = [
    {
      regions: [
        { base: 0x400000n, relative: true, pages: 4, device: false, attributes: 1, description: 'rodata' },
        { base: 0x0a00_0000n, relative: false, pages: 1, device: true, attributes: 3, description: 'mmio' },
      ],
    },
  ];
  const { spmc, sps, vms } = world({ vms: [FFA_VERSION_1_1], vmParams });
  const [vm] = vms;
  const ro: Constituent = { address: vm!.ramBase + 0x400000n, pageCount: 2 };
  t.throws(() => spmc.writeMemory(vm!.id, ro.address, new Uint8Array([1])), /may not write/, 'the VM cannot write its read-only pages');
  t.equal(codeOf(vm!.send('MEM_SHARE', vm!.desc({ receivers: [{ receiver: SP.v12, permissions: RW }], constituents: [ro] }))), 'mem_share.permissions_exceed');
  const h = vm!.handle('MEM_LEND', {
    receivers: [{ receiver: SP.v12, permissions: RW }],
    constituents: [{ address: 0x0a00_0000n, pageCount: 1 }],
    attributes: 0,
  });
  const r = sps.v12.response(h, vm!.id, { attributes: MEM_ATTR_DEVICE_NGNRNE_IS, receivers: [{ receiver: SP.v12, permissions: RW | NX }] });
  t.equal(r.tx.attributes, MEM_ATTR.NS, 'the VM device page lent to a partition: 0x40');
  // Bad regions fail the attach, and leave nothing reserved behind.
  const bad: [string, AttachParams][] = [
    ['executable device', { regions: [{ base: 0x0b00_0000n, relative: false, pages: 1, device: true, attributes: 5 }] }],
    ['zero pages', { regions: [{ base: 0x0b00_0000n, relative: false, pages: 0, device: false, attributes: 1 }] }],
    ["another VM's device page", { regions: [{ base: 0x0a00_0000n, relative: false, pages: 1, device: true, attributes: 3 }] }],
    ['a partition device page', { regions: [{ base: DEVICE_BASE, relative: false, pages: 1, device: true, attributes: 3 }] }],
    [
      'overlapping its own',
      {
        regions: [
          { base: 0x1000n, relative: true, pages: 2, device: false, attributes: 1 },
          { base: 0x2000n, relative: true, pages: 1, device: false, attributes: 3 },
        ],
      },
    ],
  ];
  for (const [what, p] of bad)
    t.equal(
      thrownKind(() => spmc.attach(p)),
      'invalid-argument',
      what,
    );
  const again = spmc.attach({ regions: [{ base: 0x0b00_0000n, relative: false, pages: 1, device: true, attributes: 3 }] });
  t.ok(again.access.modeOf(0x0b00_0000n, 0x0b00_1000n), 'the page refused above is free');
  spmc.detach(again.id);
  t.ok(spmc.attach({ regions: [{ base: 0x0b00_0000n, relative: false, pages: 1, device: true, attributes: 3 }] }), 'and free again after detach');
});

t.test('over gRPC: AttachRequest.regions, a read-only region refused RW, a garbage reserved word accepted, and 0x6f for a partition', async (t) => {
  const spmc = new Spmc({ partitions: parseManifest(MANIFEST) });
  const server = new SpmcGrpcServer(spmc);
  const port = await server.listen('127.0.0.1:0');
  t.teardown(() => server.stop());
  const ch = new SpmcChannel(`127.0.0.1:${port}`);
  t.teardown(() => ch.close());
  const rep = await ch.unary<object, { session: string; endpoint_id: number; ram_base: unknown }>('Attach', {
    endpoint_id: 0,
    vcpu_count: 1,
    regions: [{ base: u64ToWire(0x200000n), pages: 2, read_only: true, relative: true, description: 'rodata' }],
  });
  const vmBase = u64FromWire(rep.ram_base as never);
  const sp = await ch.attach({ endpointId: SP.v12, credential: `credential-${SP.v12}` });
  const call = async (session: string, c: FfaCall) => decodeReply(await ch.call(session, 0, encodeCall(c, FFA_VERSION_1_2)), FFA_VERSION_1_2);
  t.equal(Number((await ch.call(rep.session, 0, toRegisters([fid('VERSION'), FFA_VERSION_1_2])))[0]), FFA_VERSION_1_2, 'negotiated v1.2');
  t.equal((await call(rep.session, { fn: 'RXTX_MAP', width: 64, tx: vmBase, rx: vmBase + PAGE, pageCount: 1 })).fn, 'SUCCESS');
  t.equal((await call(sp.session, { fn: 'RXTX_MAP', width: 64, tx: sp.ramBase, rx: sp.ramBase + PAGE, pageCount: 1 })).fn, 'SUCCESS');
  t.equal(
    await ch.writeMemory(rep.session, vmBase + 0x200000n, new Uint8Array([1])).then(
      () => 'OK',
      (e: { code: string }) => e.code,
    ),
    'PERMISSION_DENIED',
    'the read-only region',
  );
  const send = async (fn: SendFn, d: MemDescriptorInit, garbage = false) => {
    const encoded = encodeMemTransaction(d, FFA_VERSION_1_2);
    // Item 5: stack garbage in the last constituent's reserved word.
    const bytes = garbage ? patch(encoded, encoded.length - 4, 0xcafef00d, 4) : encoded;
    await ch.writeMemory(rep.session, vmBase, bytes);
    return call(rep.session, { fn, width: 64, totalLength: bytes.length, fragmentLength: bytes.length, buffer: { address: 0n, pageCount: 0 } });
  };
  const refused = await send('MEM_SHARE', {
    sender: rep.endpoint_id,
    attributes: MEM_ATTR_NORMAL_WB_IS,
    flags: 0,
    receivers: [{ receiver: SP.v12, permissions: RW }],
    constituents: [{ address: vmBase + 0x200000n, pageCount: 1 }],
  });
  t.ok(refused.fn === 'ERROR' && refused.code === DENIED, 'RW share of read-only memory: DENIED');
  const ok = await send(
    'MEM_SHARE',
    {
      sender: rep.endpoint_id,
      attributes: MEM_ATTR_NORMAL_WB_IS,
      flags: 0,
      receivers: [{ receiver: SP.v12, permissions: RW }],
      constituents: [{ address: vmBase + 0x100000n, pageCount: 1 }],
    },
    true,
  );
  const handle = handleOf(ok); // a reserved word with garbage is accepted over the wire too
  const req = encodeMemTransaction(
    { sender: rep.endpoint_id, attributes: 0, flags: 0, handle, receivers: [{ receiver: SP.v12, permissions: RW }] },
    FFA_VERSION_1_2,
  );
  await ch.writeMemory(sp.session, sp.ramBase, req);
  const resp = await call(sp.session, {
    fn: 'MEM_RETRIEVE_REQ',
    width: 64,
    totalLength: req.length,
    fragmentLength: req.length,
    buffer: { address: 0n, pageCount: 0 },
  });
  t.equal(resp.fn, 'MEM_RETRIEVE_RESP');
  const bytes = await ch.readMemory(sp.session, sp.ramBase + PAGE, resp.fn === 'MEM_RETRIEVE_RESP' ? resp.fragmentLength : 0);
  t.equal(decodeMemTransaction(bytes, FFA_VERSION_1_2).attributes, 0x6f, 'the NS bit over the wire');
  t.equal(
    await ch.unary<object, object>('Attach', { regions: [{ base: u64ToWire(0x0c00_0000n), pages: 1, device: true, executable: true }] }).then(
      () => 'OK',
      (e: { code: string }) => e.code,
    ),
    'INVALID_ARGUMENT',
    'an executable device region',
  );
});

// ---- Reasons: every converted check says why, in Hafnium's order ---------------------------------

t.test('reasons of the memory ABIs, in Hafnium order', async (t) => {
  const { spmc, sps, vms } = world();
  const [a, b] = vms;
  const sp = sps.v12;
  const one = [{ receiver: SP.v12, permissions: RW }];
  const d = a!.desc({ receivers: one });
  type Case = [string, () => { call: FfaCall; reason?: Reason }, number, string, string?];
  const h = a!.handle('MEM_SHARE', { receivers: one, constituents: [a!.page(30)] });
  const nomap = new RawVm(spmc, RawVm.attach(spmc).id, FFA_VERSION_1_2);
  const raw = (vm: RawVm, c: FfaCall) => {
    const out = spmc.handle(vm.id, 0, encodeCall(c, vm.version)) as Registers;
    return { call: decodeReply(out, vm.version), reason: spmc.reasonFor(out) };
  };
  const cases: Case[] = [
    // api_ffa_mem_send
    [
      'buffer in w3/w4',
      () => a!.raw({ fn: 'MEM_SHARE', width: 64, totalLength: 80, fragmentLength: 80, buffer: { address: 0x1000n, pageCount: 1 } }),
      INVALID_PARAMETERS,
      'mem_share.buffer',
      'MEM_SHARE: descriptors travel in the TX buffer only; w3/w4 name a buffer at 0x1000 of 1 page',
    ],
    [
      'fragment longer than total',
      () => a!.send('MEM_SHARE', d, { total: 64, frag: 80 }),
      INVALID_PARAMETERS,
      'mem_share.fragment_length',
      'MEM_SHARE: fragment length 80 is greater than the total length 64',
    ],
    [
      'no TX buffer',
      () => raw(nomap, { fn: 'MEM_LEND', width: 32, totalLength: 96, fragmentLength: 96, buffer: { address: 0n, pageCount: 0 } }),
      INVALID_PARAMETERS,
      'mem_lend.no_tx_buffer',
      `MEM_LEND: ${hex(nomap.id)} has no TX buffer mapped`,
    ],
    [
      'fragment longer than TX',
      () => a!.send('MEM_SHARE', d, { total: 8192, frag: 8192 }),
      INVALID_PARAMETERS,
      'mem_share.fragment_too_long',
      'MEM_SHARE: fragment length 8192 exceeds the 4096-byte TX buffer',
    ],
    [
      'too short to decode',
      () => a!.send('MEM_SHARE', d.subarray(0, 32)),
      INVALID_PARAMETERS,
      'mem_share.descriptor',
      'MEM_SHARE: the v1.1 transaction header ends at byte 48 but the descriptor has 32',
    ],
    // ffa_memory_region_sanity_check
    [
      'EMAD size',
      () => a!.send('MEM_SHARE', patch(d, 24, 24, 4)),
      INVALID_PARAMETERS,
      'mem_share.emad_size',
      'MEM_SHARE: memory access descriptor size 24 is not 16 or 32 for a v1.2 caller',
    ],
    ['no receivers', () => a!.send('MEM_SHARE', patch(d, 28, 0, 4)), INVALID_PARAMETERS, 'mem_share.receiver_count', 'MEM_SHARE: receiver count 0 is not 1..4'],
    ['composite offset 0', () => a!.send('MEM_SHARE', patch(d, 52, 0, 4)), INVALID_PARAMETERS, 'mem_share.composite_offset'],
    // api_memory_region_check_flags, then the receivers (ffa_memory_is_send_valid)
    [
      'clear on a share',
      () => a!.send('MEM_SHARE', a!.desc({ receivers: one, flags: MEM_FLAGS.CLEAR })),
      INVALID_PARAMETERS,
      'mem_share.clear_on_share',
      'MEM_SHARE: the clear flag is set, but the owner keeps access to shared memory',
    ],
    [
      'unknown receiver',
      () => a!.send('MEM_SHARE', a!.desc({ receivers: [{ receiver: 0x7777, permissions: RW }] })),
      INVALID_PARAMETERS,
      'mem_share.receiver',
      'MEM_SHARE: receiver 0x7777 does not exist',
    ],
    [
      'lend to a VM and a partition',
      () => a!.send('MEM_LEND', a!.desc({ receivers: [...one, { receiver: b!.id, permissions: RW }] })),
      DENIED,
      'mem_lend.receiver_world',
    ],
    ['partition to VM', () => sp.send('MEM_SHARE', sp.desc({ receivers: [{ receiver: a!.id, permissions: RW }] })), DENIED, 'mem_share.receiver_world'],
    // ffa_memory_send_validate
    [
      'sender',
      () => a!.send('MEM_SHARE', a!.desc({ receivers: one, sender: b!.id })),
      DENIED,
      'mem_share.sender',
      `MEM_SHARE: the descriptor names sender ${hex(b!.id)}, but the caller is ${hex(a!.id)}`,
    ],
    [
      'time slicing',
      () => a!.send('MEM_LEND', a!.desc({ receivers: one, flags: MEM_FLAGS.TIME_SLICE, attributes: 0 })),
      INVALID_PARAMETERS,
      'mem_lend.flags',
      'MEM_LEND: flags 0x2: time slicing is not supported',
    ],
    ['repeated receiver', () => a!.send('MEM_SHARE', a!.desc({ receivers: [one[0]!, one[0]!] })), INVALID_PARAMETERS, 'mem_share.repeated_receiver'],
    [
      'sender instruction access',
      () => a!.send('MEM_SHARE', a!.desc({ receivers: [{ receiver: SP.v12, permissions: RW | NX }] })),
      INVALID_PARAMETERS,
      'mem_share.instruction_access',
    ],
    [
      'donate with data access',
      () => a!.send('MEM_DONATE', a!.desc({ receivers: one, attributes: 0 })),
      INVALID_PARAMETERS,
      'mem_donate.data_access',
      'MEM_DONATE: receiver 0x8010: data access RW in a donate (the borrower chooses it)',
    ],
    [
      'NS bit',
      () => a!.send('MEM_SHARE', a!.desc({ receivers: one, attributes: MEM_ATTR_NORMAL_WB_IS | MEM_ATTR.NS })),
      INVALID_PARAMETERS,
      'mem_share.ns_bit',
    ],
    [
      'single-lend type',
      () => a!.send('MEM_LEND', a!.desc({ receivers: one })),
      INVALID_PARAMETERS,
      'mem_lend.memory_type',
      'MEM_LEND: memory type Normal given by the sender of a single-borrower lend; the borrower gives it',
    ],
    // ffa_send_check_update / ffa_send_check_transition
    [
      'overlap',
      () => a!.send('MEM_SHARE', a!.desc({ receivers: one, constituents: [a!.page(40, 2), a!.page(41)] })),
      INVALID_PARAMETERS,
      'mem_share.constituents_overlap',
    ],
    [
      'page count',
      () => a!.send('MEM_SHARE', patch(d, 80, 2, 4)),
      INVALID_PARAMETERS,
      'mem_share.page_count',
      'MEM_SHARE: the constituents hold 1 page, the composite descriptor says 2',
    ],
    [
      'unaligned',
      () => a!.send('MEM_SHARE', a!.desc({ receivers: one, constituents: [{ address: a!.page(42).address + 8n, pageCount: 1 }] })),
      INVALID_PARAMETERS,
      'mem_share.constituent_unaligned',
    ],
    [
      'not the owner',
      () => a!.send('MEM_SHARE', a!.desc({ receivers: one, constituents: [a!.page(30)] })),
      DENIED,
      'mem_share.not_owner',
      `MEM_SHARE: ${hex(a!.id)} does not own ${hex(a!.page(30).address)} (1 page) exclusively (it is already shared)`,
    ],
    // MEM_FRAG_TX (api_ffa_mem_frag_tx, ffa_memory_send_continue_validate)
    [
      'FRAG_TX unknown handle',
      () => a!.raw({ fn: 'MEM_FRAG_TX', handle: 0x1234n, fragmentLength: 16, endpoint: 0 }),
      INVALID_PARAMETERS,
      'mem_frag_tx.unknown_handle',
      'MEM_FRAG_TX: no memory transaction has handle 0x1234',
    ],
    // api_ffa_mem_retrieve_req, ffa_memory_retrieve_validate
    [
      'retrieve fragmented',
      () => sp.send('MEM_RETRIEVE_REQ', sp.retrieveDesc(h, a!.id), { total: 96, frag: 80 }),
      INVALID_PARAMETERS,
      'mem_retrieve_req.fragmented',
    ],
    [
      'retrieve unknown handle',
      () => sp.retrieve(0x4242n, a!.id),
      INVALID_PARAMETERS,
      'mem_retrieve_req.unknown_handle',
      'MEM_RETRIEVE_REQ: no memory transaction has handle 0x4242',
    ],
    ['retrieve wrong sender', () => sp.retrieve(h, b!.id), DENIED, 'mem_retrieve_req.sender'],
    [
      'retrieve wrong type',
      () => sp.retrieve(h, a!.id, { flags: TYPE('lend') }),
      INVALID_PARAMETERS,
      'mem_retrieve_req.transaction_type',
      `MEM_RETRIEVE_REQ: transaction type 2 was asked for, but ${hex(h)} is a share (1)`,
    ],
    [
      'retrieve wrong tag',
      () => sp.retrieve(h, a!.id, { tag: 9n }),
      INVALID_PARAMETERS,
      'mem_retrieve_req.tag',
      "MEM_RETRIEVE_REQ: tag 0x9 does not match the sender's 0x0",
    ],
    ['retrieve by a non-borrower', () => sps.other.retrieve(h, a!.id), INVALID_PARAMETERS, 'mem_retrieve_req.not_a_borrower'],
    ['retrieve address hint', () => sp.retrieve(h, a!.id, { flags: MEM_FLAGS.HINT_VALID }), INVALID_PARAMETERS, 'mem_retrieve_req.address_hint'],
    ['retrieve flags [31:11]', () => sp.retrieve(h, a!.id, { flags: 1 << 12 }), INVALID_PARAMETERS, 'mem_retrieve_req.flags'],
    ['retrieve clear of a share', () => sp.retrieve(h, a!.id, { flags: MEM_FLAGS.CLEAR_RELINQUISH }), INVALID_PARAMETERS, 'mem_retrieve_req.clear_on_share'],
    ['retrieve NS bit', () => sp.retrieve(h, a!.id, { attributes: MEM_ATTR.NS }), INVALID_PARAMETERS, 'mem_retrieve_req.ns_bit'],
    // ffa_memory_retrieve_validate_memory_access_list
    [
      'retrieve borrower count',
      () => sp.retrieve(h, a!.id, { receivers: [...one, { receiver: SP.other, permissions: 0 }] }),
      INVALID_PARAMETERS,
      'mem_retrieve_req.receiver_count_differs',
    ],
    [
      'retrieve instruction on a share',
      () => sp.retrieve(h, a!.id, { receivers: [{ receiver: SP.v12, permissions: RW | NX }] }),
      INVALID_PARAMETERS,
      'mem_retrieve_req.instruction_access',
    ],
    // FRAG_RX (api_ffa_mem_frag_rx, ffa_memory_retrieve_continue)
    ['FRAG_RX not started', () => sp.raw({ fn: 'MEM_FRAG_RX', handle: h, fragmentOffset: 0, endpoint: 0 }), INVALID_PARAMETERS, 'mem_frag_rx.not_in_progress'],
    // api_ffa_mem_relinquish, ffa_memory_relinquish
    [
      'relinquish before retrieve',
      () => sp.relinquish(h),
      INVALID_PARAMETERS,
      'mem_relinquish.not_retrieved',
      `MEM_RELINQUISH: 0x8010 has not retrieved ${hex(h)}`,
    ],
    ['relinquish unknown handle', () => sp.relinquish(0x55n), INVALID_PARAMETERS, 'mem_relinquish.unknown_handle'],
    // ffa_memory_reclaim
    [
      'reclaim by the borrower',
      () => sp.reclaim(h),
      INVALID_PARAMETERS,
      'mem_reclaim.not_owner',
      `MEM_RECLAIM: 0x8010 did not send ${hex(h)} (${hex(a!.id)} did)`,
    ],
  ];
  let exact = 0;
  for (const [what, act, error, code, text] of cases) {
    const r = act();
    t.equal(errorOf(r), error, what);
    t.equal(codeOf(r), code, `${what}: ${code}`);
    if (text !== undefined) {
      t.equal(r.reason?.text, text, `${what}: the sentence`);
      exact++;
    } else {
      t.match(r.reason?.text, new RegExp(`^${code.split('.')[0]!.toUpperCase()}: .+`), `${what}: a sentence`);
    }
  }
  t.ok(exact >= 8, `${exact} exact sentences`);
  // The retrieve that succeeds, then the refusals that need it.
  t.equal(sp.retrieve(h, a!.id).call.fn, 'MEM_RETRIEVE_RESP');
  const busy = sp.retrieve(h, a!.id);
  t.equal(errorOf(busy), BUSY);
  t.equal(busy.reason?.text, 'MEM_RETRIEVE_REQ: the RX buffer of 0x8010 is still full');
  sp.call({ fn: 'RX_RELEASE', vmId: 0 });
  t.equal(codeOf(sp.retrieve(h, a!.id)), 'mem_retrieve_req.already_mapped', 'a second retrieve (ffa_retrieve_check_transition)');
  const still = a!.reclaim(h);
  t.equal(errorOf(still), DENIED);
  t.equal(still.reason?.text, `MEM_RECLAIM: borrower 0x8010 still holds ${hex(h)}`);
  t.equal(codeOf(sp.relinquish(h, 1)), 'mem_relinquish.clear_on_share', 'clear on relinquishing a share');
});
