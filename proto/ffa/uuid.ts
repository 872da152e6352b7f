// UUIDs as FF-A carries them: the 16 RFC 4122 bytes in string order, packed little-endian into
// registers (w1..w4, or x1/x2 and x2/x3 for the SMC64 forms) and stored raw in descriptors.

export type Uuid = Uint8Array; // always 16 bytes

export const UUID_NIL: Uuid = new Uint8Array(16);
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isUuidString(s: string): boolean {
  return UUID_RE.test(s);
}

export function parseUuid(s: string): Uuid {
  if (!isUuidString(s)) throw new TypeError(`not a UUID: ${JSON.stringify(s)}`);
  return Uint8Array.from(Buffer.from(s.replace(/-/g, ''), 'hex'));
}

export function formatUuid(u: Uuid): string {
  const h = Buffer.from(u).toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

export const isNilUuid = (u: Uuid): boolean => u.every((b) => b === 0);

export const uuidEquals = (a: Uuid, b: Uuid): boolean => a.length === b.length && a.every((v, i) => v === b[i]);

/** Four 32-bit words (w1..w4): byte 0 in bits [7:0] of the first word. */
export function uuidToWords(u: Uuid): [bigint, bigint, bigint, bigint] {
  const dv = new DataView(u.buffer, u.byteOffset, 16);
  return [0, 4, 8, 12].map((o) => BigInt(dv.getUint32(o, true))) as [bigint, bigint, bigint, bigint];
}

export function uuidFromWords(w: readonly bigint[]): Uuid {
  const out = new Uint8Array(16);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < 4; i++) dv.setUint32(i * 4, Number(w[i]! & 0xffffffffn), true);
  return out;
}

/** Two 64-bit registers: bytes 0-7 then bytes 8-15, each little-endian. */
export function uuidToPair(u: Uuid): [bigint, bigint] {
  const dv = new DataView(u.buffer, u.byteOffset, 16);
  return [dv.getBigUint64(0, true), dv.getBigUint64(8, true)];
}

export function uuidFromPair(lo: bigint, hi: bigint): Uuid {
  const out = new Uint8Array(16);
  const dv = new DataView(out.buffer);
  dv.setBigUint64(0, BigInt.asUintN(64, lo), true);
  dv.setBigUint64(8, BigInt.asUintN(64, hi), true);
  return out;
}
