// A served model with fault injection, as `serve` wires it (trace, gRPC with the Debug service,
// HTTP with /v1/faults, the injector last in the chain), and one raw caller per transport.

import { type EndpointId, fid, FFA_VERSION_1_2, type Registers, toRegisters, U32 } from '../proto/ffa/index.js';
import { GrpcConnector } from '../client-driver/transport/grpc.js';
import type { Connector } from '../client-driver/transport/transport.js';
import { Tracer, type TracerOptions } from '../server/debug/tracer.js';
import { FaultInjector, traceFaults } from '../server/faults/index.js';
import { SpmcGrpcServer } from '../server/grpc/server.js';
import { buildHttpApp } from '../server/http/app.js';
import { SessionCore } from '../server/session/core.js';
import { InProcessConnector } from '../server/session/in-process.js';
import type { Spmc } from '../server/spmc/spmc.js';

export const SP1 = 0x8001;
export const SP2 = 0x8002;
export const SP3 = 0x8003;

export async function faultStack(spmc: Spmc, tracerOptions: TracerOptions = {}) {
  const core = SessionCore.for(spmc);
  const tracer = new Tracer(core, tracerOptions);
  const faults = new FaultInjector(core);
  traceFaults(faults, tracer);
  const grpcServer = new SpmcGrpcServer(core);
  grpcServer.addDebug(tracer, faults);
  const grpcAddr = `127.0.0.1:${await grpcServer.listen('127.0.0.1:0')}`;
  const app = await buildHttpApp({ core, tracer, faults });
  faults.install();
  await app.listen({ host: '127.0.0.1', port: 0 });
  const addr = app.server.address();
  const base = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
  const connectors: Connector[] = [];
  const stop = async () => {
    for (const c of connectors) c.close();
    faults.close();
    await app.close();
    await grpcServer.stop(200);
    await tracer.close();
  };
  const connector = (kind: 'in-process' | 'grpc'): Connector => {
    const c = kind === 'grpc' ? new GrpcConnector(grpcAddr) : new InProcessConnector(core);
    connectors.push(c);
    return c;
  };
  return { spmc, core, tracer, faults, grpcServer, grpcAddr, app, base, stop, connector };
}

export type Stack = Awaited<ReturnType<typeof faultStack>>;

/** A VM that makes raw calls over one transport (x0..x17 in and out). */
export interface RawCaller {
  id: EndpointId;
  ramBase: bigint;
  via: string;
  invoke(x: (bigint | number)[], vcpu?: number): Promise<Registers>;
  /** The VM's guest memory, through the transport's own memory access. */
  write(address: bigint, data: Uint8Array): Promise<void>;
  read(address: bigint, length: number): Promise<Uint8Array>;
}

export const TRANSPORTS = ['in-process', 'grpc', 'json'] as const;
export type TransportKind = (typeof TRANSPORTS)[number];

/** Attach a VM over `kind` and negotiate v1.2. */
export async function rawVm(s: Stack, kind: TransportKind, name = `vm-${kind}`): Promise<RawCaller> {
  let caller: RawCaller;
  if (kind === 'json') {
    const post = async (path: string, body: object) => {
      const r = await fetch(`${s.base}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      const j = (await r.json()) as Record<string, unknown>;
      if (r.status !== 200) throw new Error(`${path}: ${r.status} ${JSON.stringify(j)}`);
      return j;
    };
    const a = (await post('/v1/attach', { name })) as { session: string; endpointId: number; ramBase: string };
    caller = {
      id: a.endpointId,
      ramBase: BigInt(a.ramBase),
      via: 'http',
      invoke: async (x, vcpu = 0) => {
        const r = (await post('/v1/smccc', { session: a.session, vcpu, x: x.map((v) => `0x${BigInt(v).toString(16)}`) })) as { x: string[] };
        return toRegisters(r.x.map((v) => BigInt(v)));
      },
      write: async (address, data) =>
        void (await post('/v1/memory/write', { session: a.session, address: `0x${address.toString(16)}`, data: Buffer.from(data).toString('hex') })),
      read: async (address, length) => {
        const r = (await post('/v1/memory/read', { session: a.session, address: `0x${address.toString(16)}`, length })) as { data: string };
        return new Uint8Array(Buffer.from(r.data, 'hex'));
      },
    };
  } else {
    const a = await s.connector(kind).attach({ name });
    caller = {
      id: a.endpointId,
      ramBase: a.ramBase,
      via: kind,
      invoke: (x, vcpu = 0) => a.transport.invoke(toRegisters(x), vcpu),
      write: (address, data) => a.transport.writeMemory(address, data),
      read: (address, length) => a.transport.readMemory(address, length),
    };
  }
  const [w0] = await caller.invoke([fid('VERSION'), FFA_VERSION_1_2]);
  if (Number(w0! & U32) !== FFA_VERSION_1_2) throw new Error('version negotiation failed');
  return caller;
}

export const fnOf = (r: Registers): number => Number(r[0]! & U32);
