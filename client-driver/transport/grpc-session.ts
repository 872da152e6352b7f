// The default transport: one Session stream per vCPU, so a vCPU's calls reach the SPMC in order
// and each costs one message each way on an open stream. Replies come back in request order.

import type * as grpc from '@grpc/grpc-js';
import type { Registers } from '../../proto/ffa/index.js';
import type { CallMessage } from '../../proto/wire.js';
import { GrpcTransport, type SpmcChannel, replyRegisters, transportError } from './grpc-client.js';
import { TransportError } from './transport.js';

interface Waiter {
  resolve(r: Registers): void;
  reject(e: Error): void;
}

class VcpuStream {
  private readonly stream: grpc.ClientDuplexStream<CallMessage, { x: bigint[] }>;
  private readonly waiting: Waiter[] = [];
  broken = false;

  constructor(
    channel: SpmcChannel,
    private readonly session: string,
    private readonly vcpu: number,
  ) {
    this.stream = (channel.client['Session'] as () => grpc.ClientDuplexStream<CallMessage, { x: bigint[] }>).call(channel.client);
    this.stream.on('data', (reply: { x: bigint[] }) => {
      const w = this.waiting.shift();
      if (!w) return;
      try {
        w.resolve(replyRegisters(reply));
      } catch (e) {
        w.reject(e as Error);
      }
    });
    this.stream.on('error', (e) => this.fail(transportError(e)));
    this.stream.on('end', () => this.fail(new TransportError('UNAVAILABLE', 'session stream ended')));
  }

  private fail(e: TransportError): void {
    this.broken = true;
    for (const w of this.waiting.splice(0)) w.reject(e);
  }

  /** The stream's first request names the session; the rest leave it out (bytes on every call). */
  private named = false;

  invoke(x: Registers): Promise<Registers> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      this.stream.write({ session: this.named ? '' : this.session, vcpu: this.vcpu, x });
      this.named = true;
    });
  }

  end(): void {
    this.broken = true;
    this.stream.end();
  }
}

export class GrpcSessionTransport extends GrpcTransport {
  private readonly streams = new Map<number, VcpuStream>();

  invoke(x: Registers, vcpu = 0): Promise<Registers> {
    let s = this.streams.get(vcpu);
    // A stream that failed (say the server restarted) is replaced on the next call.
    if (!s || s.broken) {
      s = new VcpuStream(this.channel, this.session, vcpu);
      this.streams.set(vcpu, s);
    }
    return s.invoke(x);
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
