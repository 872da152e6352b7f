// Loading proto/remote_spmc.proto for grpc-js, and the register conversion both ends share.

import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { Long } from '@grpc/proto-loader';
import { decodePage, encodeUpdate, type WirePage, type WireUpdate } from './coherence-wire.js';
import { joinU64, type Reason, REGISTER_COUNT, type Registers, splitU64 } from './ffa/index.js';

/** The .proto beside the package root (this file runs from dist/proto/). */
export const SPMC_PROTO_PATH = fileURLToPath(new URL('../../proto/remote_spmc.proto', import.meta.url));
export const SPMC_SERVICE_NAME = 'remote_spmc.v1.Spmc';

/** Largest ReadMemory/WriteMemory payload. */
export const MAX_MEMORY_ACCESS = 1 << 20;

const LOADER_OPTIONS: protoLoader.Options = { keepCase: true, defaults: true };

let loaded: protoLoader.PackageDefinition | undefined;
const packageDefinition = () => (loaded ??= protoLoader.loadSync(SPMC_PROTO_PATH, LOADER_OPTIONS));

export function spmcServiceDefinition(): grpc.ServiceDefinition {
  return packageDefinition()[SPMC_SERVICE_NAME] as grpc.ServiceDefinition;
}

export const DEBUG_SERVICE_NAME = 'remote_spmc.v1.Debug';
export function debugServiceDefinition(): grpc.ServiceDefinition {
  return packageDefinition()[DEBUG_SERVICE_NAME] as grpc.ServiceDefinition;
}

/** The field list of a message of the contract, as the loader read it from the .proto. */
function messageFields(name: string): { name: string; number: number }[] {
  return (packageDefinition()[`remote_spmc.v1.${name}`] as unknown as { type: { field: { name: string; number: number }[] } }).type.field;
}

export function debugClientConstructor(): grpc.ServiceClientConstructor {
  return grpc.makeGenericClientConstructor(debugServiceDefinition(), 'Debug');
}

export function spmcClientConstructor(): grpc.ServiceClientConstructor {
  return grpc.makeGenericClientConstructor(fastSpmcServiceDefinition(), 'Spmc');
}

export type WireU64 = Long | { low: number; high: number; unsigned: boolean } | number | string;

export function u64FromWire(v: WireU64 | undefined): bigint {
  if (v === undefined || v === null) return 0n;
  if (typeof v === 'number' || typeof v === 'string') return BigInt.asUintN(64, BigInt(v));
  return joinU64(BigInt(v.low >>> 0), BigInt(v.high >>> 0));
}

export function u64ToWire(v: bigint): { low: number; high: number; unsigned: boolean } {
  const [low, high] = splitU64(v);
  return { low: Number(low) | 0, high: Number(high) | 0, unsigned: true };
}

// ---- The per-call messages, without Long objects ---------------------------------------------
//
// CallRequest and CallReply carry every SMCCC call, so they are (de)serialised here straight
// between protobuf bytes and bigint registers. Field numbers are read from the .proto, and the
// tests check these bytes against the generic protobuf codec both ways.

/** A CallRequest with its registers as bigint (any count: the 18 limit is the service's check). */
export interface CallMessage {
  session: string;
  vcpu: number;
  x: bigint[];
  /** A Session stream call's number on its vCPU (0 or absent: not numbered); see the .proto. */
  seq?: number;
  /** Coherent guest memory asked for (cclient fields; see coherence-wire.ts). */
  coherent?: boolean;
  dirty?: WirePage[];
}

const WT_VARINT = 0;
const WT_FIXED64 = 1;
const WT_LEN = 2;
const WT_FIXED32 = 5;

let fields:
  | {
      session: number;
      vcpu: number;
      x: number;
      seq: number;
      coherent: number;
      dirty: number;
      replyX: number;
      replyReason: number;
      replyCoherence: number;
      reasonCode: number;
      reasonText: number;
    }
  | undefined;
function fieldNumbers() {
  if (!fields) {
    const num = (list: { name: string; number: number }[], name: string) => list.find((f) => f.name === name)!.number;
    const req = messageFields('CallRequest');
    const reply = messageFields('CallReply');
    const refusal = messageFields('Refusal');
    fields = {
      session: num(req, 'session'),
      vcpu: num(req, 'vcpu'),
      x: num(req, 'x'),
      seq: num(req, 'seq'),
      coherent: num(req, 'coherent'),
      dirty: num(req, 'dirty'),
      replyX: num(reply, 'x'),
      replyReason: num(reply, 'reason'),
      replyCoherence: num(reply, 'coherence'),
      reasonCode: num(refusal, 'code'),
      reasonText: num(refusal, 'text'),
    };
  }
  return fields;
}

class Cursor {
  pos = 0;
  constructor(readonly buf: Buffer) {}
  varint(): number {
    let result = 0;
    let shift = 0;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.buf.length) throw new RangeError('truncated varint');
      const b = this.buf[this.pos++]!;
      if (shift < 32) result += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) return result;
      shift += 7;
    }
    throw new RangeError('varint too long');
  }
  need(n: number): void {
    if (n < 0 || this.pos + n > this.buf.length) throw new RangeError('truncated field');
  }
  skip(wireType: number): void {
    let n: number;
    if (wireType === WT_VARINT) return void this.varint();
    else if (wireType === WT_FIXED64) n = 8;
    else if (wireType === WT_LEN) n = this.varint();
    else if (wireType === WT_FIXED32) n = 4;
    else throw new RangeError(`wire type ${wireType}`);
    this.need(n);
    this.pos += n;
  }
}

/** Repeated fixed64, packed or not, appended to `out`. */
function readFixed64s(c: Cursor, wireType: number, out: bigint[]): void {
  if (wireType === WT_FIXED64) {
    c.need(8);
    out.push(c.buf.readBigUInt64LE(c.pos));
    c.pos += 8;
    return;
  }
  if (wireType !== WT_LEN) throw new RangeError('x: wrong wire type');
  const n = c.varint();
  c.need(n);
  if (n % 8 !== 0) throw new RangeError('x: packed length is not a multiple of 8');
  for (const end = c.pos + n; c.pos < end; c.pos += 8) out.push(c.buf.readBigUInt64LE(c.pos));
}

export function decodeCallRequest(buf: Buffer): CallMessage {
  const f = fieldNumbers();
  const c = new Cursor(buf);
  const m: CallMessage = { session: '', vcpu: 0, x: [] };
  while (c.pos < buf.length) {
    const key = c.varint();
    const field = Math.floor(key / 8);
    const wt = key & 7;
    if (field === f.session && wt === WT_LEN) {
      const n = c.varint();
      c.need(n);
      m.session = buf.toString('utf8', c.pos, c.pos + n);
      c.pos += n;
    } else if (field === f.vcpu && wt === WT_VARINT) {
      m.vcpu = c.varint() >>> 0;
    } else if (field === f.x) {
      readFixed64s(c, wt, m.x);
    } else if (field === f.seq && wt === WT_VARINT) {
      m.seq = c.varint() >>> 0;
    } else if (field === f.coherent && wt === WT_VARINT) {
      m.coherent = c.varint() !== 0;
    } else if (field === f.dirty && wt === WT_LEN) {
      const n = c.varint();
      c.need(n);
      (m.dirty ??= []).push(decodePage(buf.subarray(c.pos, c.pos + n)));
      c.pos += n;
    } else {
      c.skip(wt);
    }
  }
  return m;
}

const varintLength = (v: number): number => (v < 0x80 ? 1 : v < 0x4000 ? 2 : v < 0x200000 ? 3 : v < 0x10000000 ? 4 : 5);

function putVarint(buf: Buffer, at: number, v: number): number {
  let n = v >>> 0;
  while (n > 0x7f) {
    buf[at++] = (n & 0x7f) | 0x80;
    n >>>= 7;
  }
  buf[at++] = n;
  return at;
}

/** Registers without trailing zeros ("missing entries are zero"). */
function significant(x: readonly bigint[]): number {
  let n = x.length;
  while (n > 0 && x[n - 1] === 0n) n--;
  return n;
}

/** Packed registers as field `field`, written at `at`; returns the end. */
function putRegisters(buf: Buffer, at: number, field: number, x: readonly bigint[], n: number): number {
  if (n === 0) return at;
  at = putVarint(buf, at, (field << 3) | WT_LEN);
  at = putVarint(buf, at, n * 8);
  for (let i = 0; i < n; i++, at += 8) buf.writeBigUInt64LE(BigInt.asUintN(64, x[i]!), at);
  return at;
}

const registersSize = (field: number, n: number) => (n === 0 ? 0 : varintLength((field << 3) | WT_LEN) + varintLength(n * 8) + n * 8);

export function encodeCallRequest(m: CallMessage): Buffer {
  const f = fieldNumbers();
  const session = m.session ? Buffer.from(m.session, 'utf8') : undefined;
  const n = significant(m.x);
  const size =
    (session ? varintLength((f.session << 3) | WT_LEN) + varintLength(session.length) + session.length : 0) +
    (m.vcpu ? varintLength((f.vcpu << 3) | WT_VARINT) + varintLength(m.vcpu) : 0) +
    registersSize(f.x, n) +
    (m.seq ? varintLength((f.seq << 3) | WT_VARINT) + varintLength(m.seq) : 0);
  const buf = Buffer.allocUnsafe(size);
  let at = 0;
  if (session) {
    at = putVarint(buf, at, (f.session << 3) | WT_LEN);
    at = putVarint(buf, at, session.length);
    at += session.copy(buf, at);
  }
  if (m.vcpu) {
    at = putVarint(buf, at, (f.vcpu << 3) | WT_VARINT);
    at = putVarint(buf, at, m.vcpu);
  }
  at = putRegisters(buf, at, f.x, m.x, n);
  if (m.seq) {
    at = putVarint(buf, at, (f.seq << 3) | WT_VARINT);
    putVarint(buf, at, m.seq);
  }
  return buf;
}

/** A CallReply: the answer's registers, and why when the answer is a refusal. */
export interface ReplyMessage {
  x: bigint[];
  reason?: Reason;
  /** What changed in a coherent caller's view of guest memory (cclient). */
  coherence?: WireUpdate;
}

const stringFieldSize = (field: number, b: Buffer) => varintLength((field << 3) | WT_LEN) + varintLength(b.length) + b.length;

function putString(buf: Buffer, at: number, field: number, b: Buffer): number {
  at = putVarint(buf, at, (field << 3) | WT_LEN);
  at = putVarint(buf, at, b.length);
  return at + b.copy(buf, at);
}

export function encodeCallReply(x: readonly bigint[], reason?: Reason, coherence?: WireUpdate): Buffer {
  const base = encodeCallReplyRegisters(x, reason);
  if (!coherence) return base;
  const update = encodeUpdate(coherence);
  const key = (fieldNumbers().replyCoherence << 3) | WT_LEN;
  const head = Buffer.allocUnsafe(varintLength(key) + varintLength(update.length));
  putVarint(head, putVarint(head, 0, key), update.length);
  return Buffer.concat([base, head, update]);
}

function encodeCallReplyRegisters(x: readonly bigint[], reason?: Reason): Buffer {
  const f = fieldNumbers();
  const n = significant(x);
  let size = registersSize(f.replyX, n);
  let code: Buffer | undefined;
  let text: Buffer | undefined;
  let inner = 0;
  if (reason) {
    code = Buffer.from(reason.code, 'utf8');
    text = Buffer.from(reason.text, 'utf8');
    inner = stringFieldSize(f.reasonCode, code) + stringFieldSize(f.reasonText, text);
    size += varintLength((f.replyReason << 3) | WT_LEN) + varintLength(inner) + inner;
  }
  const buf = Buffer.allocUnsafe(size);
  let at = putRegisters(buf, 0, f.replyX, x, n);
  if (code && text) {
    at = putVarint(buf, at, (f.replyReason << 3) | WT_LEN);
    at = putVarint(buf, at, inner);
    at = putString(buf, at, f.reasonCode, code);
    putString(buf, at, f.reasonText, text);
  }
  return buf;
}

function readString(c: Cursor): string {
  const n = c.varint();
  c.need(n);
  const s = c.buf.toString('utf8', c.pos, c.pos + n);
  c.pos += n;
  return s;
}

export function decodeCallReply(buf: Buffer): ReplyMessage {
  const f = fieldNumbers();
  const c = new Cursor(buf);
  const m: ReplyMessage = { x: [] };
  while (c.pos < buf.length) {
    const key = c.varint();
    const field = Math.floor(key / 8);
    if (field === f.replyX) readFixed64s(c, key & 7, m.x);
    else if (field === f.replyReason && (key & 7) === WT_LEN) {
      const n = c.varint();
      c.need(n);
      const inner = new Cursor(buf.subarray(c.pos, c.pos + n));
      c.pos += n;
      const reason: Reason = { code: '', text: '' };
      while (inner.pos < inner.buf.length) {
        const k = inner.varint();
        const kf = Math.floor(k / 8);
        if (kf === f.reasonCode && (k & 7) === WT_LEN) reason.code = readString(inner);
        else if (kf === f.reasonText && (k & 7) === WT_LEN) reason.text = readString(inner);
        else inner.skip(k & 7);
      }
      m.reason = reason;
    } else c.skip(key & 7);
  }
  return m;
}

/** The service definition with the per-call messages on the bigint codec above. */
export function fastSpmcServiceDefinition(): grpc.ServiceDefinition {
  const def = spmcServiceDefinition();
  const out: Record<string, grpc.MethodDefinition<unknown, unknown>> = { ...def };
  for (const name of ['Call', 'Session']) {
    out[name] = {
      ...def[name]!,
      requestSerialize: (m: CallMessage) => encodeCallRequest(m),
      requestDeserialize: decodeCallRequest,
      responseSerialize: (m: ReplyMessage) => encodeCallReply(m.x, m.reason, m.coherence),
      responseDeserialize: decodeCallReply,
    } as grpc.MethodDefinition<unknown, unknown>;
  }
  return out as grpc.ServiceDefinition;
}

/**
 * A decoded message's registers as the 18-entry register file, padded in place (the array is the
 * message's own, fresh from the decoder: no copy on every call); undefined if there are more than 18.
 */
export function registerFile(x: bigint[]): Registers | undefined {
  if (x.length > REGISTER_COUNT) return undefined;
  while (x.length < REGISTER_COUNT) x.push(0n);
  return x;
}
