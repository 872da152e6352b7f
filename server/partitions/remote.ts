// A partition served by its own process: attach as the manifest's remote partition over
// grpc-session, then one receive loop per execution context, as a built-in one runs.

import { type FfaVersion, formatVersion, hex, UUID_NIL } from '../../proto/ffa/index.js';
import { FfaDriver } from '../../client-driver/driver.js';
import { GrpcConnector } from '../../client-driver/transport/grpc.js';
import type { ChannelSecurity } from '../../client-driver/transport/grpc-client.js';
import { EmulatedVm } from '../../client-driver/vm.js';
import { SERVICES } from './test-service.js';

export interface RemotePartitionOptions {
  server: string;
  id: number;
  credential: string;
  service: keyof typeof SERVICES;
  /** The FF-A version to ask for; default: the one the manifest declares (told at attach). */
  version?: FfaVersion;
  log?: (msg: string, obj?: object) => void;
  /** TLS and the join token (default: plaintext, none). */
  security?: ChannelSecurity;
}

/** Runs until the SPMC ends the partition's loops (it left, or the server went away). */
export async function runRemotePartition(opts: RemotePartitionOptions): Promise<void> {
  const connector = new GrpcConnector(opts.server, 'session', opts.security);
  try {
    const attached = await connector.attach({ endpointId: opts.id, credential: opts.credential });
    const probe = EmulatedVm.fromAttachment(attached, `sp-${hex(attached.endpointId)}`, 1);
    // Negotiate what the manifest declares, as an image built for that version would.
    const version = opts.version ?? attached.ffaVersion;
    const driver = new FfaDriver(probe, { version, onHandlerError: (e) => opts.log?.('handler failed', { err: String(e) }) });
    await driver.init();
    const self = (await driver.partitionProbe(UUID_NIL)).find((p) => p.id === driver.vmId);
    const contexts = self?.execContexts ?? 1;
    const service = SERVICES[opts.service](driver);
    const loops = Array.from({ length: contexts }, (_, vcpu) => driver.serveDirectRequests(service, vcpu));
    // The loops' first FFA_MSG_WAIT is on its way; requests until it lands are BUSY.
    opts.log?.('serving', { id: driver.vmId, contexts, service: opts.service, ffaVersion: formatVersion(driver.version) });
    await Promise.all(loops);
  } finally {
    connector.close();
  }
}
