// `remote-spmc state`: a readable summary of a running server's SPMC state.

import * as grpc from '@grpc/grpc-js';
import { debugClientConstructor } from '../../proto/wire.js';
import type { stateSnapshot } from '../debug/views.js';
import { type Command, Flags, SERVER_FLAG } from './command.js';
import { grpcFailure } from './errors.js';
import { escapeDeep, jsonForTerminal } from './terminal.js';
import { ADMIN_TOKEN_FLAG, CLIENT_SECURITY_FLAGS, clientSecurity } from './tls-files.js';
import { channelCredentials, clientOptions } from '../../client-driver/transport/grpc-client.js';

type Snapshot = ReturnType<typeof stateSnapshot>;

/** The snapshot as text; every string from the server is escaped (see terminal.ts). */
export function formatState(snapshot: Snapshot): string {
  const s = escapeDeep(snapshot);
  const out: string[] = ['endpoints:'];
  for (const e of s.endpoints) {
    const mb = e.mailbox
      ? `RX ${e.mailbox.rxState}${e.mailbox.rxFunction ? ` (${e.mailbox.rxFunction} from ${e.mailbox.rxProducer})` : ''}, ${e.mailbox.pageCount} page(s)`
      : 'no mailbox';
    const vcpus = e.vcpus.map((v) => (v.blockedIn ? `${v.state}:${v.blockedIn}` : v.state)).join(' ');
    const n = e.notifications;
    const pend = [n.pendingFromSp, n.pendingFromVm, n.pendingFramework].some((x) => x !== '0x0')
      ? ` notifications pending sp=${n.pendingFromSp} vm=${n.pendingFromVm} fw=${n.pendingFramework}`
      : '';
    out.push(`  ${e.idHex.padEnd(7)} ${e.name.padEnd(12)} ${e.kind} v${e.version} props ${e.properties} vCPUs [${vcpus}] ${mb}${pend}`);
  }
  out.push(`memory transactions: ${s.transactions.length}`);
  for (const t of s.transactions) {
    out.push(
      `  ${t.handle} ${t.type} from ${t.sender} to ${t.borrowers.map((b) => `${b.id}(${b.retrieved})`).join(', ')}: ${t.ranges.map((r) => `${r.address}+${r.pageCount}p`).join(' ')}`,
    );
  }
  if (s.faults.length > 0) out.push(`recent faults: ${s.faults.map((f) => `${f.endpoint} ${f.access} ${f.length}@${f.address}`).join('; ')}`);
  return `${out.join('\n')}\n`;
}

export const stateCommand: Command = {
  name: 'state',
  synopsis: '[options]',
  summary: "a readable summary of a server's SPMC state (endpoints, mailboxes, memory transactions)",
  flags: [SERVER_FLAG, { name: 'json', help: 'print the snapshot as JSON' }, ...CLIENT_SECURITY_FLAGS, ADMIN_TOKEN_FLAG],
  async run(args) {
    const v = Flags.parse(this, args);
    const server = v.server();
    const Client = debugClientConstructor();
    const sec = clientSecurity(v, ADMIN_TOKEN_FLAG.name);
    const client = new Client(server, channelCredentials(sec), clientOptions(sec)) as grpc.Client &
      Record<string, (req: object, opts: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r: { json: string }) => void) => void>;
    try {
      const rep = await new Promise<{ json: string }>((resolve, reject) =>
        client['State']!({}, { deadline: Date.now() + 10000 }, (e, r) => (e ? reject(grpcFailure('state', server, e)) : resolve(r))),
      );
      process.stdout.write(v.bool('json') ? `${jsonForTerminal(rep.json)}\n` : formatState(JSON.parse(rep.json) as Snapshot));
    } finally {
      client.close();
    }
    return 0;
  },
};
