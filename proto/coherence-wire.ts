// The coherence fields of CallRequest and CallReply (CoherencePage, CoherenceUpdate) for the
// hand-made per-call codec in wire.ts. Field numbers are the .proto's (test/c-coherence checks
// these bytes against the generic protobuf codec).

const WT_VARINT = 0;
const WT_FIXED64 = 1;
const WT_LEN = 2;

export interface WirePage {
  address: bigint;
  data: Uint8Array;
}

export interface WireUpdate {
  sequence: bigint;
  mapChanged: boolean;
  map: readonly { base: bigint; limit: bigint; writable: boolean }[];
  pages: readonly WirePage[];
}

/** CoherencePage: address = 1 (fixed64), data = 2 (bytes). */
export function decodePage(buf: Buffer): WirePage {
  const page: WirePage = { address: 0n, data: new Uint8Array(0) };
  let at = 0;
  const varint = () => {
    let v = 0;
    for (let shift = 0; ; shift += 7) {
      if (at >= buf.length || shift > 63) throw new RangeError('dirty: truncated varint');
      const b = buf[at++]!;
      v += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) return v;
    }
  };
  while (at < buf.length) {
    const key = varint();
    const wt = key & 7;
    const field = Math.floor(key / 8);
    if (wt === WT_FIXED64) {
      if (at + 8 > buf.length) throw new RangeError('dirty: truncated field');
      if (field === 1) page.address = buf.readBigUInt64LE(at);
      at += 8;
    } else if (wt === WT_LEN) {
      const n = varint();
      if (at + n > buf.length) throw new RangeError('dirty: truncated field');
      if (field === 2) page.data = buf.subarray(at, at + n);
      at += n;
    } else if (wt === WT_VARINT) varint();
    else if (wt === 5) at += 4;
    else throw new RangeError(`dirty: wire type ${wt}`);
  }
  return page;
}

const varintSize = (v: number | bigint): number => {
  let n = 1;
  for (let x = BigInt(v); x > 0x7fn; x >>= 7n) n++;
  return n;
};

/** Writes into one buffer sized beforehand (an update may carry many pages: no copies but the bytes). */
class Writer {
  at = 0;
  constructor(readonly buf: Buffer) {}
  varint(v: number | bigint): this {
    let x = BigInt.asUintN(64, BigInt(v));
    while (x > 0x7fn) {
      this.buf[this.at++] = Number(x & 0x7fn) | 0x80;
      x >>= 7n;
    }
    this.buf[this.at++] = Number(x);
    return this;
  }
  key(field: number, wt: number): this {
    return this.varint((field << 3) | wt);
  }
  fixed64(field: number, v: bigint): this {
    this.key(field, WT_FIXED64);
    this.buf.writeBigUInt64LE(BigInt.asUintN(64, v), this.at);
    this.at += 8;
    return this;
  }
  bytes(field: number, data: Uint8Array): this {
    this.key(field, WT_LEN).varint(data.length);
    this.buf.set(data, this.at);
    this.at += data.length;
    return this;
  }
}

/** CoherenceRange: base 1, limit 2 (fixed64), writable 3. */
const rangeSize = (writable: boolean) => 9 + 9 + (writable ? 2 : 0);
/** CoherencePage: address 1 (fixed64), data 2. */
const pageSize = (n: number) => 9 + 1 + varintSize(n) + n;

/** CoherenceUpdate: sequence = 1, map_changed = 2, map = 3 (CoherenceRange), pages = 4 (CoherencePage). */
export function encodeUpdate(u: WireUpdate): Buffer {
  let size = (u.sequence !== 0n ? 1 + varintSize(u.sequence) : 0) + (u.mapChanged ? 2 : 0);
  for (const r of u.map) size += 1 + varintSize(rangeSize(r.writable)) + rangeSize(r.writable);
  for (const p of u.pages) size += 1 + varintSize(pageSize(p.data.length)) + pageSize(p.data.length);
  const w = new Writer(Buffer.allocUnsafe(size));
  if (u.sequence !== 0n) w.key(1, WT_VARINT).varint(u.sequence);
  if (u.mapChanged) w.key(2, WT_VARINT).varint(1);
  for (const r of u.map) {
    w.key(3, WT_LEN).varint(rangeSize(r.writable)).fixed64(1, r.base).fixed64(2, r.limit);
    if (r.writable) w.key(3, WT_VARINT).varint(1);
  }
  for (const p of u.pages) w.key(4, WT_LEN).varint(pageSize(p.data.length)).fixed64(1, p.address).bytes(2, p.data);
  return w.buf;
}
