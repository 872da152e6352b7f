// Shared fixtures: an SPMC with the default manifest, raw calls by value, register helpers.

import {
  decodeCall,
  encodeCall,
  type EndpointId,
  errorCodeFromWord,
  type FfaCall,
  type FfaVersion,
  fid,
  FFA_VERSION_1_2,
  type Registers,
  toRegisters,
  U32,
  UUID_NIL,
} from '../proto/ffa/index.js';
import { FfaDriverError } from '../client-driver/errno.js';
import { TransportError } from '../client-driver/transport/transport.js';
import { defaultManifest } from '../server/manifest.js';
import { startBuiltinPartitions } from '../server/partitions/index.js';
import { SessionCore } from '../server/session/core.js';
import { isPending, type Pending } from '../server/spmc/pending.js';
import { type AttachParams, Spmc } from '../server/spmc/spmc.js';
import type { SpmcLimits } from '../server/spmc/state.js';

export const SP1_UUID = 'b4b5671e-4a90-4fe1-b81f-fb13dae1dacb';
export const SP2_UUID = 'd1582309-f023-47b9-827c-4464f5578fc8';
export const SP3_UUID = '79b55c73-1d8c-44b9-8593-61e1770ad8d2';
export const SP4_UUID = 'a4cd5826-e113-67cf-f910-cd491368ef31';

export function newSpmc(limits: Partial<SpmcLimits> = {}): Spmc {
  return new Spmc({ partitions: defaultManifest(), limits });
}

/** A VM endpoint driven with raw registers, as a test harness or an ACS client would. */
export class RawVm {
  constructor(
    readonly spmc: Spmc,
    readonly id: EndpointId,
    public version: FfaVersion = FFA_VERSION_1_2,
  ) {}

  /** Attach and negotiate `version` (FFA_VERSION does not lock it: tests may still change it). */
  static attach(spmc: Spmc, params: AttachParams = {}, version: FfaVersion = FFA_VERSION_1_2): RawVm {
    const vm = new RawVm(spmc, spmc.attach(params).id, version);
    vm.negotiate(version);
    return vm;
  }

  get ramBase(): bigint {
    return this.spmc.endpoint(this.id)!.ram.base;
  }

  /** A call that must answer at once. */
  regs(x: (bigint | number)[], vcpu = 0): Registers {
    const out = this.viaCore(toRegisters(x), vcpu);
    if (isPending(out)) throw new Error(`call 0x${x[0]!.toString(16)} blocked`);
    return out;
  }

  /** Through the model's session core, as a transport calls (its interceptors see the call). */
  private viaCore(x: Registers, vcpu: number): Registers | Pending {
    return SessionCore.for(this.spmc).handle(this.id, vcpu, x, 'direct');
  }

  /** A call that may block: the answer now, or the Pending one. */
  start(c: FfaCall, vcpu = 0): Registers | Pending {
    return this.viaCore(encodeCall(c, this.version), vcpu);
  }

  /** Send a call value and decode what comes back. */
  call(c: FfaCall, vcpu = 0): FfaCall {
    const out = this.viaCore(encodeCall(c, this.version), vcpu);
    if (isPending(out)) throw new Error(`FFA_${c.fn} blocked`);
    const d = decodeCall(out, this.version);
    if (!d.ok) throw new Error(`undecodable reply ${out.map((v) => v.toString(16))}`);
    return d.call;
  }

  negotiate(version: FfaVersion = this.version): void {
    this.version = version;
    const [w0] = this.regs([fid('VERSION'), version]);
    if (Number(w0! & U32) !== FFA_VERSION_1_2) throw new Error('negotiation failed');
  }

  /** RXTX_MAP at the start of the RAM window (TX) and the page after the buffers (RX). */
  mapMailbox(pages = 1): { tx: bigint; rx: bigint } {
    const tx = this.ramBase;
    const rx = this.ramBase + BigInt(pages) * 4096n;
    const r = this.call({ fn: 'RXTX_MAP', width: 64, tx, rx, pageCount: pages });
    if (r.fn !== 'SUCCESS') throw new Error(`RXTX_MAP failed: ${JSON.stringify(r, (_k, v) => (typeof v === 'bigint' ? v.toString() : v))}`);
    return { tx, rx };
  }

  partitionInfoGet(uuid = UUID_NIL, countOnly = false): FfaCall {
    return this.call({ fn: 'PARTITION_INFO_GET', uuid, countOnly });
  }
}

/** The FF-A error code of a reply, or undefined when it is not FFA_ERROR. */
/** The SpmcError kind `fn` throws, or 'none'. */
export function thrownKind(fn: () => unknown): string {
  try {
    fn();
    return 'none';
  } catch (e) {
    return (e as { kind?: string }).kind ?? (e as Error).name;
  }
}

export function errorOf(c: FfaCall): number | undefined {
  return c.fn === 'ERROR' ? c.code : undefined;
}

export function errorOfRegs(r: Registers): number | undefined {
  return Number(r[0]! & U32) === fid('ERROR') ? errorCodeFromWord(r[2]!) : undefined;
}

export const successArgs = (c: FfaCall): bigint[] => {
  if (c.fn !== 'SUCCESS') throw new Error(`expected FFA_SUCCESS, got FFA_${c.fn}`);
  return c.args;
};

/** An SPMC whose built-in partitions are running their receive loops. */
export async function startedSpmc(limits: Partial<SpmcLimits> = {}, partitions = defaultManifest()): Promise<Spmc> {
  const spmc = new Spmc({ partitions, limits });
  await startBuiltinPartitions(spmc, (id, e) => {
    throw new Error(`partition 0x${id.toString(16)} failed: ${String(e)}`);
  });
  return spmc;
}

/** Settle a call that may block into its decoded answer. */
export async function settle(out: Registers | Pending, version: FfaVersion = FFA_VERSION_1_2): Promise<FfaCall> {
  const r = isPending(out) ? await out.answer : out;
  const d = decodeCall(r, version);
  if (!d.ok) throw new Error(`undecodable ${r.map((v) => v.toString(16))}`);
  return d.call;
}

/** The errno a driver operation failed with, or 'none'. */
export async function errnoOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'none';
  } catch (e) {
    return e instanceof FfaDriverError ? e.errno : `not an FfaDriverError: ${(e as Error).message}`;
  }
}

/** The transport status a call failed with, or 'OK'. */
export async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'OK';
  } catch (e) {
    return e instanceof TransportError ? e.code : `not a TransportError: ${(e as Error).message}`;
  }
}
