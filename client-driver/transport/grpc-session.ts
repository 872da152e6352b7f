// The default transport: one Session stream per vCPU, so a vCPU's calls reach the SPMC in order
// and each costs one message each way on an open stream. Replies come back in request order.

import type { Registers } from '../../proto/ffa/index.js';
import type { ReplyMessage } from '../../proto/wire.js';
import type { Answer } from './transport.js';
import { GrpcTransport, OrderedStream, replyRegisters } from './grpc-client.js';

export class GrpcSessionTransport extends GrpcTransport {
  private readonly streams = new Map<number, OrderedStream<ReplyMessage, Answer>>();

  invoke(x: Registers, vcpu = 0): Promise<Answer> {
    let s = this.streams.get(vcpu);
    // A stream that failed (say the server restarted) is replaced on the next call.
    if (!s || s.broken) {
      s = new OrderedStream(this.channel, 'Session', this.session, replyRegisters);
      this.streams.set(vcpu, s);
    }
    return s.send({ vcpu, x });
  }

  override async detach(): Promise<void> {
    try {
      await super.detach();
    } finally {
      for (const s of this.streams.values()) s.end();
      this.streams.clear();
    }
  }
}
