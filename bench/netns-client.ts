// Round trips from inside a VM's namespace: the bare echo and DIRECT_REQ_64 ECHO to SP1, both to
// the SPMC's namespace across the bridge. Prints one JSON line of p50s (us).
//   node dist/bench/netns-client.js SPMC_ADDR ECHO_ADDR SAMPLES

import * as grpc from '@grpc/grpc-js';
import { fid, REGISTER_COUNT } from '../proto/ffa/index.js';
import { fastSpmcServiceDefinition } from '../proto/wire.js';
import { FfaDriver } from '../client-driver/driver.js';
import { GrpcConnector } from '../client-driver/transport/grpc.js';
import { EmulatedVm } from '../client-driver/vm.js';
import { PARTITION_COMMANDS } from '../server/partitions/commands.js';

const [spmcAddr, echoAddr, samplesArg] = process.argv.slice(2);
const samples = Number(samplesArg ?? 2000);
const EchoClient = grpc.makeGenericClientConstructor({ Echo: fastSpmcServiceDefinition()['Session']! }, 'Echo');
const echoClient = new EchoClient(echoAddr!, grpc.credentials.createInsecure()) as grpc.Client & Record<string, () => grpc.ClientDuplexStream<object, object>>;
const stream = echoClient['Echo']!();
const waiters: (() => void)[] = [];
stream.on('data', () => waiters.shift()?.());
stream.on('error', () => {});
const msg = { session: '', vcpu: 0, x: Array.from({ length: REGISTER_COUNT }, (_, i) => BigInt(fid('VERSION')) + BigInt(i)) };
const echo = () =>
  new Promise<void>((resolve) => {
    waiters.push(resolve);
    stream.write(msg);
  });
const connector = new GrpcConnector(spmcAddr!);
const drv = new FfaDriver(await EmulatedVm.attach(connector, { name: 'netns-bench' }));
await drv.init();
const args = [BigInt(PARTITION_COMMANDS.ECHO), 1n, 2n, 3n, 4n];
const req = () => drv.sendDirectReq(0x8001, args);
const lat: Record<string, number[]> = { echo: [], req: [] };
for (let i = 0; i < 300; i++) {
  await echo();
  await req();
}
for (let r = 0; r < 10; r++) {
  for (const [name, op] of [
    ['echo', echo],
    ['req', req],
  ] as const) {
    for (let i = 0; i < samples / 10; i++) {
      const t0 = process.hrtime.bigint();
      await op();
      lat[name]!.push(Number(process.hrtime.bigint() - t0) / 1000);
    }
  }
}
const p50 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
process.stdout.write(`${JSON.stringify({ echo: p50(lat.echo!), req: p50(lat.req!) })}\n`);
await drv.exit();
await drv.vm.detach();
connector.close();
stream.end();
echoClient.close();
process.exit(0);
