// gRPC transport with one unary Call per SMCCC call: simplest, and what a debugger's one-off
// probe wants. Each call stands alone, so nothing orders calls but the caller's own awaits.

import type { Registers } from '../../proto/ffa/index.js';
import type { SpmcChannel } from './grpc-client.js';
import type { Transport, TransportError } from './transport.js';

export class GrpcUnaryTransport implements Transport {
  constructor(
    private readonly channel: SpmcChannel,
    private readonly session: string,
  ) {}

  invoke(x: Registers, vcpu = 0): Promise<Registers> {
    return this.channel.call(this.session, vcpu, x);
  }

  connectInterrupts(handler: (intid: number, vcpu: number) => void, onLost?: (e: TransportError) => void): () => void {
    return this.channel.interrupts(this.session, handler, onLost);
  }

  readMemory(address: bigint, length: number): Promise<Uint8Array> {
    return this.channel.readMemory(this.session, address, length);
  }

  writeMemory(address: bigint, data: Uint8Array): Promise<void> {
    return this.channel.writeMemory(this.session, address, data);
  }

  detach(): Promise<void> {
    return this.channel.detach(this.session);
  }
}
