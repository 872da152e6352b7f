// `remote-spmc certs`: write a throwaway CA and a server certificate it signed, for trying TLS
// without openssl (the image has none). The compose topology's `certs` service runs it.

import { chmodSync, chownSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Command, Flags } from './command.js';
import { UsageError } from './flags.js';
import { printLines } from './terminal.js';
import { issue } from './x509.js';

export const certsCommand: Command = {
  name: 'certs',
  synopsis: '--out DIR [options]',
  summary: 'write a throwaway CA (ca.pem) and a server certificate it signed (cert.pem, key.pem): for demos and tests',
  flags: [
    { name: 'out', arg: 'DIR', help: 'the directory to write ca.pem, cert.pem and key.pem to (created if missing; files replaced)' },
    {
      name: 'names',
      arg: 'LIST',
      default: 'localhost,127.0.0.1',
      help: "the server's names, comma-separated DNS names or IPv4 addresses; clients check the one they connect to",
    },
    { name: 'days', arg: 'N', default: '30', help: 'how long the certificates are valid, 1..3650 days' },
    { name: 'owner', arg: 'UID:GID', help: 'give the files to this user (when run as root, e.g. for a non-root server in a container)' },
  ],
  async run(args) {
    const v = Flags.parse(this, args);
    const out = v.string('out');
    if (out === undefined) throw new UsageError('--out DIR is required');
    const names = v
      .string('names')!
      .split(',')
      .map((n) => n.trim())
      .filter(Boolean);
    if (names.length === 0) throw new UsageError('--names: at least one name');
    const days = v.int('days', 1, 3650)!;
    const ownerArg = v.string('owner');
    const owner = ownerArg === undefined ? undefined : /^(\d+):(\d+)$/.exec(ownerArg);
    if (owner === null) throw new UsageError(`--owner: expected UID:GID in numbers, got ${JSON.stringify(ownerArg)}`);
    let ca, server;
    try {
      ca = issue({ names: [`remote-spmc throwaway CA ${new Date().toISOString().slice(0, 10)}`], days, ca: true });
      server = issue({ names, days, issuer: { name: `remote-spmc throwaway CA ${new Date().toISOString().slice(0, 10)}`, key: ca.key, keyId: ca.keyId } });
    } catch (e) {
      throw new UsageError(`--names: ${(e as Error).message.replace(/^x509: /, '')}`);
    }
    mkdirSync(out, { recursive: true });
    const files: [string, string, number][] = [
      ['ca.pem', ca.certPem, 0o644],
      ['cert.pem', server.certPem, 0o644],
      // Only the server reads it.
      ['key.pem', server.keyPem, 0o600],
    ];
    for (const [name, text, mode] of files) {
      const f = join(out, name);
      writeFileSync(f, text, { mode });
      chmodSync(f, mode);
      if (owner) chownSync(f, Number(owner[1]), Number(owner[2]));
    }
    printLines(`${out}: ca.pem, cert.pem (${names.join(', ')}; ${days} days), key.pem`);
    return 0;
  },
};
