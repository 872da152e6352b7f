// Checks the memory ABIs share (Hafnium's ffa_memory_region_sanity_check and
// ffa_memory_attributes_validate), the refusal helpers they all use, and names for the sentences.

import {
  COMPOSITE_HEADER_SIZE,
  EMAD_SIZE_V1_0,
  EMAD_SIZE_V1_2,
  FFA_ERRORS,
  FFA_VERSION_1_0,
  FFA_VERSION_1_2,
  type FfaCall,
  type FfaErrorCode,
  formatVersion,
  hex,
  MEM_ATTR,
  MEM_HEADER_SIZE_V1_1,
  MEM_PERM,
  type MemTransaction,
  memReceiverCount,
} from '../../proto/ffa/index.js';
import type { Endpoint } from './endpoint.js';
import { rxBufferSize } from './mailbox.js';
import { refuse, type SpmcState } from './state.js';

const { INVALID_PARAMETERS } = FFA_ERRORS;

export type Refusal = FfaCall & { fn: 'ERROR' };
export const isRefusal = (v: unknown): v is Refusal => typeof v === 'object' && v !== null && (v as { fn?: string }).fn === 'ERROR';

/** Refusals of one function: `no(INVALID_PARAMETERS, 'check', 'sentence')` gives code `<fn>.check`, text `<FN>: sentence`. */
export function refusals(fn: string): (error: FfaErrorCode, check: string, text: string) => Refusal {
  const code = fn.toLowerCase();
  return (error, check, text) => refuse(error, `${code}.${check}`, `${fn}: ${text}`) as Refusal;
}

/** In strict mode the sentence says which spec rule a refusal Hafnium would not make comes from. */
export const strictly = (text: string, spec: string): string => `${text} (strict mode: ${spec})`;

export const txSize = (ep: Endpoint): number => rxBufferSize(ep); // TX and RX have the same size
export const readTx = (state: SpmcState, ep: Endpoint, length: number): Uint8Array => state.memory.read(ep.mailbox!.tx, length);

export const dataAccess = (perm: number): number => perm & MEM_PERM.DATA_MASK;
export const instructionAccess = (perm: number): number => (perm & MEM_PERM.INSTRUCTION_MASK) >> MEM_PERM.INSTRUCTION_SHIFT;
export const DATA_NAMES = ['not specified', 'RO', 'RW', 'reserved'] as const;
export const INSTRUCTION_NAMES = ['not specified', 'NX', 'X', 'reserved'] as const;
const MEM_TYPE_NAMES = ['not specified', 'Device', 'Normal', 'reserved'] as const;
const SHAREABILITY_NAMES = ['non-shareable', 'reserved', 'outer shareable', 'inner shareable'] as const;
const NORMAL_CACHE_NAMES = ['reserved', 'non-cacheable', 'reserved', 'write-back'] as const;
const DEVICE_CACHE_NAMES = ['nGnRnE', 'nGnRE', 'nGRE', 'GRE'] as const;

export const memType = (attributes: number): number => attributes & MEM_ATTR.TYPE_MASK;
export const memTypeName = (attributes: number): string => MEM_TYPE_NAMES[memType(attributes) >> 4]!;

/** The memory types a reference SPMC maps (ffa_memory_attributes_validate): DENIED otherwise. */
export function attributesProblem(attributes: number): string | undefined {
  const type = memType(attributes);
  const cache = (attributes & MEM_ATTR.CACHEABILITY_MASK) >> 2;
  if (type === MEM_ATTR.TYPE_NORMAL && (attributes & MEM_ATTR.CACHEABILITY_MASK) !== MEM_ATTR.WRITE_BACK) {
    return `Normal memory must be write-back cacheable, not ${NORMAL_CACHE_NAMES[cache]}`;
  }
  if (type === MEM_ATTR.TYPE_DEVICE && (attributes & MEM_ATTR.CACHEABILITY_MASK) !== MEM_ATTR.DEVICE_NGNRNE) {
    return `Device memory must be nGnRnE, not ${DEVICE_CACHE_NAMES[cache]}`;
  }
  const share = attributes & MEM_ATTR.SHAREABILITY_MASK;
  if (share !== MEM_ATTR.INNER_SHAREABLE) return `memory must be inner shareable, not ${SHAREABILITY_NAMES[share]}`;
  return undefined;
}

/** The security field (bits [7:6]) must be clear in what endpoints send; bits [15:8] only in strict mode. */
export function attributesSecurity(state: SpmcState, fn: string, tx: MemTransaction): Refusal | undefined {
  const no = refusals(fn);
  if (tx.attributes & MEM_ATTR.SECURITY_MASK) {
    return no(
      INVALID_PARAMETERS,
      'ns_bit',
      `memory region attributes ${hex(tx.attributes)} set the security field (bits [7:6]); only the relayer sets the NS bit`,
    );
  }
  if (state.strict && tx.attributes & MEM_ATTR.PADDING_MASK) {
    return no(
      INVALID_PARAMETERS,
      'attributes_reserved',
      strictly(`memory region attributes ${hex(tx.attributes)} set bits [15:8]`, 'FF-A v1.1 Table 10.18, bits [15:7] MBZ'),
    );
  }
  return undefined;
}

/** "1 page", "3 pages". */
export const pages = (n: number): string => `${n} page${n === 1 ? '' : 's'}`;

const emadSizeValid = (size: number, version: number) => size === EMAD_SIZE_V1_0 || (size === EMAD_SIZE_V1_2 && version >= FFA_VERSION_1_2);

/**
 * Header and access-list checks of sends and retrieve requests (ffa_memory_region_sanity_check),
 * in its order. `send`: a composite descriptor must follow the access descriptors; in a retrieve
 * request every composite offset is 0.
 */
export function sanityCheck(state: SpmcState, caller: Endpoint, fn: string, buf: Uint8Array, tx: MemTransaction, send: boolean): Refusal | undefined {
  const no = refusals(fn);
  const bad = (check: string, text: string) => no(INVALID_PARAMETERS, check, text);
  const v = caller.version;
  if (tx.reservedNonZero) {
    return bad('reserved_header', v <= FFA_VERSION_1_0 ? 'reserved header byte 3 or word 24 is not zero' : 'reserved header bytes 36..47 are not zero');
  }
  if (v > FFA_VERSION_1_0) {
    if (!emadSizeValid(tx.emadSize, v)) {
      return bad(
        'emad_size',
        `memory access descriptor size ${tx.emadSize} is not ${v >= FFA_VERSION_1_2 ? '16 or 32' : '16'} for a v${formatVersion(v)} caller`,
      );
    }
    if (tx.receiversOffset < MEM_HEADER_SIZE_V1_1)
      return bad('receivers_offset', `memory access descriptors at offset ${tx.receiversOffset} overlap the 48-byte header`);
    if (state.strict && tx.receiversOffset % 16 !== 0) {
      return bad('receivers_offset', strictly(`memory access descriptors at offset ${tx.receiversOffset} are not 16-byte aligned`, 'FF-A v1.1 Table 10.20'));
    }
  }
  const count = memReceiverCount(buf);
  if (count < 1 || count > state.limits.maxBorrowers) {
    return bad(
      'receiver_count',
      count === 0 && !send
        ? 'no memory access descriptor: only the hypervisor sends a retrieve request without one'
        : `receiver count ${count} is not 1..${state.limits.maxBorrowers}`,
    );
  }
  const receiversEnd = tx.receiversOffset + count * tx.emadSize;
  if (buf.length < receiversEnd)
    return bad('receivers_truncated', `${count} memory access descriptors end at byte ${receiversEnd}, past the ${buf.length}-byte fragment`);
  const first = tx.receivers[0]!.compositeOffset;
  if (!send) {
    if (first !== 0) return bad('composite_offset', `composite offset ${first} must be 0 in a retrieve request (no address ranges from the retriever)`);
  } else {
    // Hafnium compares against the v1.1 header size and the header's descriptor size (0 in v1.0).
    const least = MEM_HEADER_SIZE_V1_1 + (v <= FFA_VERSION_1_0 ? 0 : count * tx.emadSize);
    if (first === 0 || first < least || first + COMPOSITE_HEADER_SIZE > buf.length) {
      return bad('composite_offset', `composite offset ${first} is not between the access descriptors (${least}) and the fragment's end (${buf.length} bytes)`);
    }
  }
  for (const [i, r] of tx.receivers.entries()) {
    if (r.reserved !== 0n) return bad('emad_reserved', `memory access descriptor ${i} (receiver ${hex(r.receiver)}) has reserved bytes ${hex(r.reserved)}`);
    if (r.compositeOffset !== first)
      return bad('composite_offset_differs', `memory access descriptor ${i} points at composite offset ${r.compositeOffset}, descriptor 0 at ${first}`);
  }
  return undefined;
}
