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

/** A growable protobuf writer, enough for the update's few field kinds. */
class Writer {
  private parts: Buffer[] = [];
  length = 0;
  private push(b: Buffer) {
    this.parts.push(b);
    this.length += b.length;
  }
  varint(v: bigint): this {
    const bytes: number[] = [];
    let n = BigInt.asUintN(64, v);
    while (n > 0x7fn) {
      bytes.push(Number(n & 0x7fn) | 0x80);
      n >>= 7n;
    }
    bytes.push(Number(n));
    this.push(Buffer.from(bytes));
    return this;
  }
  key(field: number, wt: number): this {
    return this.varint(BigInt((field << 3) | wt));
  }
  fixed64(field: number, v: bigint): this {
    const b = Buffer.allocUnsafe(8);
    b.writeBigUInt64LE(BigInt.asUintN(64, v));
    this.key(field, WT_FIXED64).push(b);
    return this;
  }
  bytes(field: number, data: Uint8Array): this {
    this.key(field, WT_LEN).varint(BigInt(data.length));
    this.push(Buffer.from(data.buffer, data.byteOffset, data.length));
    return this;
  }
  message(field: number, inner: Writer): this {
    return this.bytes(field, inner.finish());
  }
  finish(): Buffer {
    return Buffer.concat(this.parts, this.length);
  }
}

/** CoherenceUpdate: sequence = 1, map_changed = 2, map = 3 (CoherenceRange: base 1, limit 2, writable 3), pages = 4. */
export function encodeUpdate(u: WireUpdate): Buffer {
  const w = new Writer();
  if (u.sequence !== 0n) w.key(1, WT_VARINT).varint(u.sequence);
  if (u.mapChanged) w.key(2, WT_VARINT).varint(1n);
  for (const r of u.map) {
    const inner = new Writer().fixed64(1, r.base).fixed64(2, r.limit);
    if (r.writable) inner.key(3, WT_VARINT).varint(1n);
    w.message(3, inner);
  }
  for (const p of u.pages) w.message(4, new Writer().fixed64(1, p.address).bytes(2, p.data));
  return w.finish();
}
