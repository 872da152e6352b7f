// Loading proto/remote_spmc.proto for grpc-js, and the register conversion both ends share.

import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { Long } from '@grpc/proto-loader';
import { REGISTER_COUNT, type Registers, U32 } from './ffa/index.js';

/** The .proto beside the package root (this file runs from dist/proto/). */
export const SPMC_PROTO_PATH = fileURLToPath(new URL('../../proto/remote_spmc.proto', import.meta.url));
export const SPMC_SERVICE_NAME = 'remote_spmc.v1.Spmc';

/** Largest ReadMemory/WriteMemory payload. */
export const MAX_MEMORY_ACCESS = 1 << 20;

const LOADER_OPTIONS: protoLoader.Options = { keepCase: true, defaults: true };

let cached: grpc.ServiceDefinition | undefined;
export function spmcServiceDefinition(): grpc.ServiceDefinition {
  if (!cached) {
    const pkg = protoLoader.loadSync(SPMC_PROTO_PATH, LOADER_OPTIONS);
    cached = pkg[SPMC_SERVICE_NAME] as grpc.ServiceDefinition;
  }
  return cached;
}

export function spmcClientConstructor(): grpc.ServiceClientConstructor {
  return grpc.makeGenericClientConstructor(spmcServiceDefinition(), 'Spmc');
}

type WireU64 = Long | { low: number; high: number; unsigned: boolean } | number | string;

export function u64FromWire(v: WireU64 | undefined): bigint {
  if (v === undefined || v === null) return 0n;
  if (typeof v === 'number' || typeof v === 'string') return BigInt.asUintN(64, BigInt(v));
  return (BigInt(v.high >>> 0) << 32n) | BigInt(v.low >>> 0);
}

export function u64ToWire(v: bigint): { low: number; high: number; unsigned: boolean } {
  return { low: Number(v & U32) | 0, high: Number((v >> 32n) & U32) | 0, unsigned: true };
}

/** Wire registers to an 18-entry file; undefined if there are more than 18. */
export function registersFromWire(x: readonly WireU64[] | undefined): Registers | undefined {
  const n = x?.length ?? 0;
  if (n > REGISTER_COUNT) return undefined;
  const r = new Array<bigint>(REGISTER_COUNT).fill(0n);
  for (let i = 0; i < n; i++) r[i] = u64FromWire(x![i]);
  return r;
}

/** Registers for the wire, trailing zeros dropped ("missing entries are zero"). */
export function registersToWire(r: readonly bigint[]): ReturnType<typeof u64ToWire>[] {
  let n = Math.min(r.length, REGISTER_COUNT);
  while (n > 1 && r[n - 1] === 0n) n--;
  const out = new Array<ReturnType<typeof u64ToWire>>(n);
  for (let i = 0; i < n; i++) out[i] = u64ToWire(r[i]!);
  return out;
}
