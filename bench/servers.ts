// The servers a benchmark talks to, in their own process (as a user runs them): the SPMC and a
// bare grpc-js bidi echo of the same messages, both on 127.0.0.1.

import * as grpc from '@grpc/grpc-js';
import { spmcServiceDefinition } from '../proto/wire.js';
import { SpmcGrpcServer } from '../server/grpc/server.js';
import { defaultManifest } from '../server/manifest.js';
import { Spmc } from '../server/spmc/spmc.js';

/** The baseline: the Session method's own (de)serialisers, echoing each request's registers back. */
export function startEchoServer(address: string): Promise<{ server: grpc.Server; port: number }> {
  const session = spmcServiceDefinition()['Session']!;
  const server = new grpc.Server();
  server.addService({ Echo: session }, {
    Echo: (stream: grpc.ServerDuplexStream<{ x: unknown[] }, { x: unknown[] }>) => {
      stream.on('data', (req) => stream.write({ x: req.x }));
      stream.on('end', () => stream.end());
    },
  });
  return new Promise((resolve, reject) =>
    server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve({ server, port }))),
  );
}

if (process.argv[1]?.endsWith('servers.js')) {
  const spmc = new SpmcGrpcServer(new Spmc({ partitions: defaultManifest() }));
  const spmcPort = await spmc.listen('127.0.0.1:0');
  const echo = await startEchoServer('127.0.0.1:0');
  process.stdout.write(`${JSON.stringify({ spmc: `127.0.0.1:${spmcPort}`, echo: `127.0.0.1:${echo.port}` })}\n`);
  process.stdin.on('end', () => process.exit(0));
  process.stdin.resume();
}
