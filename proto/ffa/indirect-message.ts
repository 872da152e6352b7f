// The partition message header of FFA_MSG_SEND2 (FF-A v1.1 §7.2.2, v1.2 adds the UUID): in the
// sender's TX buffer when it sends, in the receiver's RX buffer when it is delivered.

import type { EndpointId } from './endpoints.js';
import { type Uuid, UUID_NIL } from './uuid.js';
import { type FfaVersion, FFA_VERSION_1_1 } from './version.js';

/** v1.1 header: flags, reserved, offset, receiver/sender, size. */
export const INDIRECT_MSG_HEADER_SIZE_V1_1 = 20;
/** v1.2 header: + reserved word and the protocol UUID. */
export const INDIRECT_MSG_HEADER_SIZE_V1_2 = 40;
/** Where the v1.2 UUID sits; a payload offset of exactly this is a v1.1 message (Linux's rule). */
export const INDIRECT_MSG_UUID_OFFSET = 24;

export interface IndirectMessageHeader {
  flags: number;
  /** Where the payload starts, from the start of the buffer. */
  offset: number;
  sender: EndpointId;
  receiver: EndpointId;
  size: number;
  /** Nil for v1.1 messages and for "unspecified". */
  uuid: Uuid;
}

/** The smallest payload offset a sender of `version` may use (Hafnium: the header size). */
export const indirectMsgHeaderSize = (version: FfaVersion): number =>
  version <= FFA_VERSION_1_1 ? INDIRECT_MSG_HEADER_SIZE_V1_1 : INDIRECT_MSG_HEADER_SIZE_V1_2;

export function decodeIndirectMessageHeader(buf: Uint8Array): IndirectMessageHeader {
  if (buf.length < INDIRECT_MSG_HEADER_SIZE_V1_2) throw new RangeError('indirect message header needs 40 bytes');
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  return {
    flags: dv.getUint32(0, true),
    offset: dv.getUint32(8, true),
    receiver: dv.getUint16(12, true),
    sender: dv.getUint16(14, true),
    size: dv.getUint32(16, true),
    uuid: buf.slice(INDIRECT_MSG_UUID_OFFSET, INDIRECT_MSG_UUID_OFFSET + 16),
  };
}

/** A whole message: the header (40 bytes, or 20 for `headerSize` 20), then the payload at `offset`. */
export function encodeIndirectMessage(
  h: { sender: EndpointId; receiver: EndpointId; uuid?: Uuid; offset?: number },
  payload: Uint8Array,
  headerSize = INDIRECT_MSG_HEADER_SIZE_V1_2,
): Uint8Array {
  const offset = h.offset ?? headerSize;
  const out = new Uint8Array(Math.max(offset + payload.length, headerSize));
  const dv = new DataView(out.buffer);
  dv.setUint32(8, offset, true);
  dv.setUint16(12, h.receiver, true);
  dv.setUint16(14, h.sender, true);
  dv.setUint32(16, payload.length, true);
  if (headerSize >= INDIRECT_MSG_HEADER_SIZE_V1_2) out.set(h.uuid ?? UUID_NIL, INDIRECT_MSG_UUID_OFFSET);
  out.set(payload, offset);
  return out;
}
