// FFA_NS_RES_INFO_GET (FF-A v1.3 §13.13): the normal-world resources the SPMC knows of, as a resource
// information descriptor (a header, then address map descriptors) written to the caller's RX buffer.

import type { EndpointId } from './endpoints.js';

/** x1 [15:0]: the partition asked about, when x2 bit 0 says it is valid. */
export const NS_RES_INFO_TARGET_MASK = 0xffff;
/** x2 bit 0: x1 names a target partition. */
export const NS_RES_INFO_FLAG_TARGET_VALID = 0x01;
/** x2 [3:2]: resource type (0: memory, the only one defined). */
export const NS_RES_INFO_RESOURCE_TYPE_MASK = 0x0c;
/** x2 bit 4: continue a previous request (0: start a new one). */
export const NS_RES_INFO_FLAG_CONTINUE = 0x10;

/** Header (Table 13.61): AMD size, AMD count, offset of the first AMD, reserved. */
export const NS_RES_INFO_HEADER_SIZE = 16;
/** Address map descriptor (Table 13.62): base (8), page count (4), permissions (1), endpoint (2), flags (1). */
export const NS_RES_INFO_AMD_SIZE = 16;

/** AMD permissions (Table 13.63): [3:0] unprivileged, [7:4] privileged. */
export const AMD_PERM = { UNPRIV_R: 1 << 0, UNPRIV_W: 1 << 1, UNPRIV_X: 1 << 2, PRIV_R: 1 << 4, PRIV_W: 1 << 5, PRIV_X: 1 << 6 } as const;
/** AMD flags bit 0: the endpoint reaches the memory indirectly (0: directly). */
export const AMD_FLAG_INDIRECT = 0x01;

export interface AddressMapDescriptor {
  base: bigint;
  pageCount: number;
  permissions: number;
  endpoint: EndpointId;
  flags: number;
}

/** The whole resource information descriptor (to be handed out in RX-sized pieces). */
export function encodeResourceInfo(amds: readonly AddressMapDescriptor[]): Uint8Array {
  const out = new Uint8Array(NS_RES_INFO_HEADER_SIZE + amds.length * NS_RES_INFO_AMD_SIZE);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, NS_RES_INFO_AMD_SIZE, true);
  dv.setUint32(4, amds.length, true);
  dv.setUint32(8, NS_RES_INFO_HEADER_SIZE, true);
  amds.forEach((a, i) => {
    const o = NS_RES_INFO_HEADER_SIZE + i * NS_RES_INFO_AMD_SIZE;
    dv.setBigUint64(o, a.base, true);
    dv.setUint32(o + 8, a.pageCount >>> 0, true);
    dv.setUint8(o + 12, a.permissions & 0xff);
    // Packed: the endpoint ID sits at byte 13, unaligned.
    dv.setUint16(o + 13, a.endpoint & 0xffff, true);
    dv.setUint8(o + 15, a.flags & 0xff);
  });
  return out;
}

/** Read a resource information descriptor back (tests, the trace). */
export function decodeResourceInfo(buf: Uint8Array): AddressMapDescriptor[] {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const size = dv.getUint32(0, true);
  const count = dv.getUint32(4, true);
  const offset = dv.getUint32(8, true);
  if (size < NS_RES_INFO_AMD_SIZE || offset + count * size > buf.length)
    throw new RangeError(`${count} AMDs of ${size} bytes at ${offset} overrun ${buf.length}`);
  const out: AddressMapDescriptor[] = [];
  for (let i = 0; i < count; i++) {
    const o = offset + i * size;
    out.push({
      base: dv.getBigUint64(o, true),
      pageCount: dv.getUint32(o + 8, true),
      permissions: dv.getUint8(o + 12),
      endpoint: dv.getUint16(o + 13, true),
      flags: dv.getUint8(o + 15),
    });
  }
  return out;
}
