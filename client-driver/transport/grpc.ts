// Attaching over gRPC: pick the session (default) or unary transport.

import { type ChannelSecurity, SpmcChannel } from './grpc-client.js';
import { GrpcSessionTransport } from './grpc-session.js';
import { GrpcUnaryTransport } from './grpc-unary.js';
import type { AttachOptions, Attachment, Connector } from './transport.js';

export type GrpcMode = 'session' | 'unary';

export class GrpcConnector implements Connector {
  private readonly channel: SpmcChannel;

  constructor(
    address: string,
    private readonly mode: GrpcMode = 'session',
    /** TLS (CA, client certificate, server name) and the join token; none: plaintext, no token. */
    security: ChannelSecurity = {},
  ) {
    this.channel = new SpmcChannel(address, {}, security);
  }

  async attach(opts: AttachOptions): Promise<Attachment> {
    const a = await this.channel.attach(opts);
    const transport = this.mode === 'session' ? new GrpcSessionTransport(this.channel, a.session) : new GrpcUnaryTransport(this.channel, a.session);
    return { endpointId: a.endpointId, ramBase: a.ramBase, ramBytes: a.ramBytes, ffaVersion: a.ffaVersion, transport };
  }

  close(): void {
    this.channel.close();
  }
}
