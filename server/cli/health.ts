// `remote-spmc health`: ask a server's grpc.health.v1 service; exit 0 when it is SERVING. The
// container HEALTHCHECK and the namespace runner use it.

import * as grpc from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import { parseFlags, parseHostPort, UsageError } from './flags.js';

export async function healthCommand(args: string[]): Promise<number> {
  const v = parseFlags(args, {
    server: { type: 'string', default: process.env.REMOTE_SPMC_SERVER ?? '127.0.0.1:50051' },
    timeout: { type: 'string', default: '3' },
  });
  parseHostPort('--server', v.server!);
  const seconds = Number(v.timeout);
  if (!(seconds > 0 && seconds <= 600)) throw new UsageError('--timeout: seconds, 0..600');
  const Client = grpc.makeGenericClientConstructor(healthService, 'Health');
  const client = new Client(v.server!, grpc.credentials.createInsecure()) as grpc.Client &
    Record<string, (req: object, opts: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r: { status: string | number }) => void) => void>;
  const status = await new Promise<string>((resolve) =>
    client['Check']!({ service: '' }, { deadline: Date.now() + seconds * 1000 }, (e, r) => resolve(e ? `unreachable: ${e.details || e.message}` : String(r.status))),
  );
  client.close();
  process.stdout.write(`${v.server}: ${status}\n`);
  return status === 'SERVING' || status === '1' ? 0 : 1;
}
