// FF-A version packing: bit 31 MBZ, major in [30:16], minor in [15:0].

export type FfaVersion = number;

export const FFA_VERSION_MAJOR_SHIFT = 16;
export const FFA_VERSION_MAJOR_MASK = 0x7fff;
export const FFA_VERSION_MINOR_MASK = 0xffff;
export const FFA_VERSION_MBZ_BIT = 0x80000000;

export function makeVersion(major: number, minor: number): FfaVersion {
  return ((major & FFA_VERSION_MAJOR_MASK) << FFA_VERSION_MAJOR_SHIFT) | (minor & FFA_VERSION_MINOR_MASK);
}

export const FFA_VERSION_1_0 = makeVersion(1, 0);
export const FFA_VERSION_1_1 = makeVersion(1, 1);
export const FFA_VERSION_1_2 = makeVersion(1, 2);
export const FFA_VERSION_1_3 = makeVersion(1, 3);

/** The version this SPMC implements, and the one the driver asks for. */
export const FFA_VERSION_IMPLEMENTED = FFA_VERSION_1_2;
/** The oldest version either side accepts. */
export const FFA_VERSION_OLDEST = FFA_VERSION_1_0;

export const versionMajor = (v: FfaVersion): number => (v >>> FFA_VERSION_MAJOR_SHIFT) & FFA_VERSION_MAJOR_MASK;
export const versionMinor = (v: FfaVersion): number => v & FFA_VERSION_MINOR_MASK;

/** A well-formed version word has bit 31 clear. */
export const isVersionWord = (w: number): boolean => ((w >>> 0) & FFA_VERSION_MBZ_BIT) === 0;

/** Caller x.y is compatible with callee a.b iff x == a and y <= b (Hafnium, tf-a-tests, arm-ffa). */
export function isCompatible(caller: FfaVersion, callee: FfaVersion): boolean {
  return isVersionWord(caller) && versionMajor(caller) === versionMajor(callee) && versionMinor(caller) <= versionMinor(callee);
}

export function formatVersion(v: FfaVersion): string {
  return `${versionMajor(v)}.${versionMinor(v)}`;
}

/** Parses "1.2" into a version word; undefined if malformed. */
export function parseVersion(s: string): FfaVersion | undefined {
  const m = /^(\d{1,5})\.(\d{1,5})$/.exec(s.trim());
  if (!m) return undefined;
  const major = Number(m[1]);
  const minor = Number(m[2]);
  if (major > FFA_VERSION_MAJOR_MASK || minor > FFA_VERSION_MINOR_MASK) return undefined;
  return makeVersion(major, minor);
}
