// The servers a benchmark talks to, in their own process (as a user runs them): the SPMC and a
// bare grpc-js bidi echo of the same messages, both on 127.0.0.1.

import * as grpc from '@grpc/grpc-js';
import { fastSpmcServiceDefinition } from '../proto/wire.js';
import { createInterface } from 'node:readline';
import { Tracer } from '../server/debug/tracer.js';
import { FaultInjector } from '../server/faults/index.js';
import { SpmcGrpcServer } from '../server/grpc/server.js';
import { buildHttpApp } from '../server/http/app.js';
import { defaultManifest } from '../server/manifest.js';
import { SessionCore } from '../server/session/core.js';
import { startBuiltinPartitions } from '../server/partitions/index.js';
import { Spmc } from '../server/spmc/spmc.js';

/** The baseline: the Session method with its own (de)serialisers, echoing each request's registers. */
export function startEchoServer(address: string): Promise<{ server: grpc.Server; port: number }> {
  const session = fastSpmcServiceDefinition()['Session']!;
  const server = new grpc.Server();
  server.addService(
    { Echo: session },
    {
      Echo: (stream: grpc.ServerDuplexStream<{ x: bigint[] }, { x: bigint[] }>) => {
        stream.on('data', (req) => stream.write({ x: req.x }));
        stream.on('end', () => stream.end());
      },
    },
  );
  return new Promise((resolve, reject) =>
    server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve({ server, port }))),
  );
}

if (process.argv[1]?.endsWith('servers.js')) {
  // As `serve` runs it: the trace and the HTTP side (for an SSE subscriber; its metrics are a core
  // interceptor, always on). The trace starts off so the other figures match earlier runs. Commands
  // on stdin, each answered "ok": "trace on" / "trace off" switch the trace's recording; "chain bare"
  // lets calls skip the core's interceptor chain, "chain full" puts them through it again; "faults
  // on" / "faults off" add and remove the fault injector (no rules).
  const model = new Spmc({ partitions: defaultManifest(), limits: { maxVms: 1024 } });
  const tracer = new Tracer(model);
  tracer.setRecording(false);
  await startBuiltinPartitions(model);
  const spmc = new SpmcGrpcServer(model);
  // BENCH_BIND=0.0.0.0 serves other hosts (the namespace benchmark); loopback otherwise.
  const bind = process.env.BENCH_BIND ?? '127.0.0.1';
  const spmcPort = await spmc.listen(`${bind}:0`);
  const echo = await startEchoServer(`${bind}:0`);
  const core = SessionCore.for(model);
  const app = await buildHttpApp({ core, tracer });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const a = app.server.address();
  const http = `127.0.0.1:${typeof a === 'object' && a ? a.port : 0}`;
  // Fault injection with an empty rule set: "faults on" puts the injector in the chain, "faults off" takes it out.
  const faults = new FaultInjector(core);
  let removeFaults: (() => void) | undefined;
  const commands: Record<string, () => void> = {
    'faults on': () => void (removeFaults ??= faults.install()),
    'faults off': () => {
      removeFaults?.();
      removeFaults = undefined;
    },
    'trace on': () => tracer.setRecording(true),
    'trace off': () => tracer.setRecording(false),
    'chain bare': () => core.bypassInterceptors(true),
    'chain full': () => core.bypassInterceptors(false),
  };
  createInterface({ input: process.stdin }).on('line', (l) => {
    const command = commands[l.trim()];
    if (command) command();
    else process.stderr.write(`bench servers: unknown command ${JSON.stringify(l)}\n`);
    process.stdout.write('ok\n');
  });
  process.stdout.write(`${JSON.stringify({ spmc: `${bind}:${spmcPort}`, echo: `${bind}:${echo.port}`, http })}\n`);
  process.stdin.on('end', () => process.exit(0));
  process.stdin.resume();
}
