// `remote-spmc health`: ask a server's grpc.health.v1 service; exit 0 when it is SERVING. The
// container HEALTHCHECK and the namespace runner use it.

import * as grpc from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import { type Command, Flags, SERVER_FLAG } from './command.js';
import { grpcReason } from './errors.js';
import { UsageError } from './flags.js';
import { printLines } from './terminal.js';
import { CLIENT_SECURITY_FLAGS, clientSecurity } from './tls-files.js';
import { channelCredentials, clientOptions } from '../../client-driver/transport/grpc-client.js';

export const healthCommand: Command = {
  name: 'health',
  synopsis: '[options]',
  summary: "exit 0 when the server's gRPC health service answers SERVING, else 1",
  flags: [
    SERVER_FLAG,
    { name: 'timeout', arg: 'SECONDS', default: '3', help: 'how long to wait for the answer, in seconds (at most 600)' },
    ...CLIENT_SECURITY_FLAGS,
  ],
  async run(args) {
    const v = Flags.parse(this, args);
    const server = v.server();
    const seconds = Number(v.string('timeout'));
    if (!(seconds > 0 && seconds <= 600)) throw new UsageError(`--timeout: seconds, more than 0 and at most 600, got ${JSON.stringify(v.string('timeout'))}`);
    const Client = grpc.makeGenericClientConstructor(healthService, 'Health');
    const sec = clientSecurity(v);
    const client = new Client(server, channelCredentials(sec), clientOptions(sec)) as grpc.Client &
      Record<string, (req: object, opts: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r: { status: string | number }) => void) => void>;
    const status = await new Promise<string>((resolve) =>
      client['Check']!({ service: '' }, { deadline: Date.now() + seconds * 1000 }, (e, r) => resolve(e ? grpcReason(e) : String(r.status))),
    );
    client.close();
    printLines(`${server}: ${status}`);
    return status === 'SERVING' || status === '1' ? 0 : 1;
  },
};
