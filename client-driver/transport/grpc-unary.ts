// gRPC transport with one unary Call per SMCCC call: simplest, and what a debugger's one-off
// probe wants. Each call stands alone, so nothing orders calls but the caller's own awaits.

import type { Registers } from '../../proto/ffa/index.js';
import { GrpcTransport } from './grpc-client.js';
import type { Answer } from './transport.js';

export class GrpcUnaryTransport extends GrpcTransport {
  invoke(x: Registers, vcpu = 0): Promise<Answer> {
    return this.channel.call(this.session, vcpu, x);
  }
}
