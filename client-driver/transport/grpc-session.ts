// The default transport: one Session stream per vCPU, so a vCPU's calls reach the SPMC in order
// and each costs one message each way on an open stream. Replies come back in request order.

import type { Registers } from '../../proto/ffa/index.js';
import type { ReplyMessage } from '../../proto/wire.js';
import type { Answer } from './transport.js';
import { GrpcTransport, OrderedStream, replyRegisters } from './grpc-client.js';

export class GrpcSessionTransport extends GrpcTransport {
  private readonly streams = new Map<number, OrderedStream<ReplyMessage, Answer>>();
  /** The last call number per vCPU (CallRequest.seq). */
  private readonly seqs: number[] = [];

  invoke(x: Registers, vcpu = 0): Promise<Answer> {
    // Numbered, so a call resent after a dropped connection is answered once, not made twice. The
    // numbers start anywhere: another client of the session (say this process before a restart)
    // must not have used the same one last.
    const seq = (this.seqs[vcpu] = ((this.seqs[vcpu] ?? Math.floor(Math.random() * 0x7fffffff)) % 0xffffffff) + 1);
    return this.stream(vcpu).send({ vcpu, x, seq });
  }

  /**
   * The vCPU's stream. One that failed (the connection dropped, or the server restarted) is replaced
   * on the next call; the new stream's first request names the session, which resumes it if the
   * server kept it. Calls a dropped connection left unanswered are resent on the new one at once.
   */
  private stream(vcpu: number): OrderedStream<ReplyMessage, Answer> {
    let s = this.streams.get(vcpu);
    if (!s || s.broken) {
      s = new OrderedStream(this.channel, 'Session', this.session, replyRegisters, (unanswered) => this.stream(vcpu).sendAgain(unanswered));
      this.streams.set(vcpu, s);
    }
    return s;
  }

  /**
   * Give up the open Session streams and the memory stream, as a lost connection does (calls waiting
   * on them fail with CANCELLED, their answers dropped); the next call resumes the session on a new stream.
   */
  dropStreams(): void {
    for (const s of this.streams.values()) s.cancel();
    this.streams.clear();
    this.dropMemory();
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
