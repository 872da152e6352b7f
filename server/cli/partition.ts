// `remote-spmc partition`: serve a manifest partition marked remote from this process.

import { pino } from 'pino';
import { SPMC_ID } from '../../proto/ffa/index.js';
import { runRemotePartition } from '../partitions/remote.js';
import { SERVICES } from '../partitions/test-service.js';
import { type Command, Flags, SERVER_FLAG } from './command.js';
import { checkLogLevel, LOG_LEVELS, UsageError } from './flags.js';
import { terminalSafeLog } from './terminal.js';
import { CLIENT_SECURITY_FLAGS, clientSecurity, JOIN_TOKEN_FLAG } from './tls-files.js';

/** Where the credential comes from unless --credential-env names another variable. */
export const DEFAULT_CREDENTIAL_ENV = 'REMOTE_SPMC_CREDENTIAL';

export const partitionCommand: Command = {
  name: 'partition',
  synopsis: '--id ID [options]',
  summary: 'serve a manifest partition marked remote from this process',
  flags: [
    SERVER_FLAG,
    { name: 'id', arg: 'ID', help: "the partition's id, e.g. 0x8010" },
    { name: 'credential', arg: 'SECRET', help: 'its credential (better: from the environment, see --credential-env)' },
    {
      name: 'credential-env',
      arg: 'NAME',
      default: DEFAULT_CREDENTIAL_ENV,
      help: "the environment variable holding the credential when --credential is not given: the name the server's manifest gives in credential-env",
    },
    { name: 'serve', arg: 'SERVICE', default: 'test-service', help: `the service to run: ${Object.keys(SERVICES).join(', ')}` },
    { name: 'log-level', arg: 'LEVEL', default: 'info', help: LOG_LEVELS.join(', ') },
    ...CLIENT_SECURITY_FLAGS,
    JOIN_TOKEN_FLAG,
  ],
  async run(args) {
    const v = Flags.parse(this, args);
    const id = v.string('id') === undefined ? undefined : Number(v.string('id'));
    if (id === undefined || !Number.isInteger(id) || id <= SPMC_ID || id > 0xffff) throw new UsageError('--id: expected a partition id 0x8001..0xffff');
    const server = v.server();
    const envName = v.string('credential-env')!;
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(envName)) throw new UsageError(`--credential-env: ${JSON.stringify(envName)} is not an environment variable name`);
    const credential = v.string('credential') ?? process.env[envName] ?? '';
    if (!credential) throw new UsageError(`a credential is required: --credential SECRET, or $${envName} (set --credential-env to read another variable)`);
    const security = clientSecurity(v, JOIN_TOKEN_FLAG.name);
    const service = v.string('serve')!;
    if (!Object.hasOwn(SERVICES, service)) throw new UsageError(`--serve: one of ${Object.keys(SERVICES).join(', ')}`);
    const log = pino({ name: 'remote-spmc-partition', level: checkLogLevel(v.string('log-level')!), ...terminalSafeLog });
    await runRemotePartition({
      server,
      id,
      credential,
      service: service as keyof typeof SERVICES,
      log: (msg, obj) => log.info(obj ?? {}, msg),
      security,
    });
    log.info({}, 'stopped');
    return 0;
  },
};
