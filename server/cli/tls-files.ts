// TLS and token files the command line names: read and checked up front, so a bad one is one line
// and exit status 2, not a failure at the first connection.

import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import { ConfigError } from './errors.js';
import type { Flags } from './command.js';
import { UsageError } from './flags.js';
import type { ChannelSecurity } from '../../client-driver/transport/grpc-client.js';

function readPem(flag: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (e) {
    throw new ConfigError(`--${flag}: cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

export interface TlsFiles {
  cert?: Buffer;
  key?: Buffer;
  ca?: Buffer;
}

/** --tls-cert/--tls-key/--tls-ca; `needCert`: a server, which must have cert and key to use a CA. */
export function tlsFiles(v: Flags, needCert: boolean): TlsFiles {
  const [cert, key, ca] = ['tls-cert', 'tls-key', 'tls-ca'].map((f) => v.string(f));
  if ((cert === undefined) !== (key === undefined)) throw new UsageError('--tls-cert and --tls-key go together');
  if (needCert && ca !== undefined && cert === undefined) throw new UsageError('--tls-ca needs --tls-cert and --tls-key');
  const out: TlsFiles = {
    cert: cert !== undefined ? readPem('tls-cert', cert) : undefined,
    key: key !== undefined ? readPem('tls-key', key) : undefined,
    ca: ca !== undefined ? readPem('tls-ca', ca) : undefined,
  };
  // Node parses the PEM here, and checks the key matches the certificate.
  try {
    createSecureContext({ cert: out.cert, key: out.key, ca: out.ca });
  } catch (e) {
    throw new ConfigError(`--tls-cert/--tls-key/--tls-ca: ${(e as Error).message.split('\n')[0]}`);
  }
  return out;
}

/** A token from --NAME or --NAME-file (its first line); undefined when neither is given. */
export function tokenFlag(v: Flags, name: string): string | undefined {
  const direct = v.string(name);
  const file = v.string(`${name}-file`);
  if (direct !== undefined && file !== undefined) throw new UsageError(`--${name} and --${name}-file: give one`);
  let token = direct;
  if (file !== undefined) {
    try {
      token = readFileSync(file, 'utf8').split('\n')[0]!.trim();
    } catch (e) {
      throw new ConfigError(`--${name}-file: cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  }
  if (token !== undefined && !/^[\x21-\x7e]{8,4096}$/.test(token)) throw new UsageError(`--${name}: a token is 8..4096 printable characters without spaces`);
  return token;
}

/** Client-side TLS and token flags shared by every client command. */
export const CLIENT_SECURITY_FLAGS = [
  {
    name: 'tls-ca',
    arg: 'FILE',
    env: 'REMOTE_SPMC_TLS_CA',
    help: "CA certificate (PEM) the server's certificate must chain to; given, the connection uses TLS",
  },
  { name: 'tls-cert', arg: 'FILE', env: 'REMOTE_SPMC_TLS_CERT', help: 'client certificate (PEM), for a server with --tls-ca (mTLS)' },
  { name: 'tls-key', arg: 'FILE', env: 'REMOTE_SPMC_TLS_KEY', help: "the client certificate's private key (PEM)" },
  { name: 'tls-server-name', arg: 'NAME', env: 'REMOTE_SPMC_TLS_SERVER_NAME', help: "the name the server's certificate carries, when not the --server host" },
];

export const JOIN_TOKEN_FLAG = {
  name: 'join-token',
  arg: 'TOKEN',
  env: 'REMOTE_SPMC_JOIN_TOKEN',
  help: "the server's join token, sent to attach (better: from the environment)",
};
export const ADMIN_TOKEN_FLAG = {
  name: 'admin-token',
  arg: 'TOKEN',
  env: 'REMOTE_SPMC_ADMIN_TOKEN',
  help: "the server's admin token, sent to read state and traces (better: from the environment)",
};

/** How a client command connects: TLS from CLIENT_SECURITY_FLAGS, and the token flag `token` if it has one. */
export function clientSecurity(v: Flags, token?: string): ChannelSecurity {
  const files = tlsFiles(v, false);
  const serverName = v.string('tls-server-name');
  const t = token !== undefined ? v.string(token) : undefined;
  return { ...files, ...(serverName !== undefined ? { serverName } : {}), ...(t !== undefined ? { token: t } : {}) };
}
