// SMCCC v1.2 register file: x0..x17, unsigned 64-bit.

export const REGISTER_COUNT = 18;
export type Registers = bigint[];

export const U32 = 0xffffffffn;

export function zeroRegisters(): Registers {
  // A literal: V8 copies it from a boilerplate, several times faster than new Array().fill().
  return [0n, 0n, 0n, 0n, 0n, 0n, 0n, 0n, 0n, 0n, 0n, 0n, 0n, 0n, 0n, 0n, 0n, 0n];
}

/** A fresh 18-entry copy: missing entries are zero, values are reduced to 64 bits. */
export function toRegisters(x: readonly (bigint | number)[]): Registers {
  if (x.length > REGISTER_COUNT) throw new RangeError(`at most ${REGISTER_COUNT} registers, got ${x.length}`);
  const r = zeroRegisters();
  for (let i = 0; i < x.length; i++) r[i] = BigInt.asUintN(64, BigInt(x[i]!));
  return r;
}

/** The one hex formatter: ids, addresses and register values as FF-A engineers read them. */
export const hex = (v: bigint | number): string => `0x${v.toString(16)}`;

/** The one u64 from two 32-bit halves (handles, bitmaps, timeouts that travel in w-registers). */
export const joinU64 = (lo: bigint, hi: bigint): bigint => ((hi & U32) << 32n) | (lo & U32);
/** The inverse: [low, high]. */
export const splitU64 = (v: bigint): [bigint, bigint] => [v & U32, (v >> 32n) & U32];

/** Target info / src-dst packing: high half-word in [31:16], low in [15:0]. */
export const packPair = (high: number, low: number): bigint => BigInt((((high & 0xffff) << 16) | (low & 0xffff)) >>> 0);
// asUintN then plain numbers: one BigInt operation instead of a shift and a mask (hot: every route).
export const pairHigh = (v: bigint): number => Number(BigInt.asUintN(32, v)) >>> 16;
export const pairLow = (v: bigint): number => Number(BigInt.asUintN(16, v));
