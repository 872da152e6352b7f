// FF-A status codes as they travel in w2 of FFA_ERROR (signed 32-bit).

export const FFA_ERRORS = {
  NOT_SUPPORTED: -1,
  INVALID_PARAMETERS: -2,
  NO_MEMORY: -3,
  BUSY: -4,
  INTERRUPTED: -5,
  DENIED: -6,
  RETRY: -7,
  ABORTED: -8,
  NO_DATA: -9,
  NOT_READY: -10,
} as const;

export type FfaErrorName = keyof typeof FFA_ERRORS;
export type FfaErrorCode = (typeof FFA_ERRORS)[FfaErrorName];

const nameByCode = new Map<number, FfaErrorName>((Object.entries(FFA_ERRORS) as [FfaErrorName, number][]).map(([n, c]) => [c, n]));

/** w2 as a signed 32-bit code. */
export const errorCodeFromWord = (w2: bigint | number): number => Number(BigInt.asIntN(32, BigInt(w2)));

/** The 32-bit word for a code (zero-extended, as Hafnium returns it). */
export const errorCodeToWord = (code: number): bigint => BigInt.asUintN(32, BigInt(code));

/**
 * Why a call was refused: a stable code (`msg_send2.receiver_no_indirect`) and a sentence naming
 * the failed check with its values. It travels beside the registers, never in them.
 */
export interface Reason {
  code: string;
  text: string;
}

export function errorName(code: number): string {
  return nameByCode.get(code) ?? `UNKNOWN(${code})`;
}
