// In-process transport: calls go straight into an SPMC instance handed to it. Same semantics
// and errors as the gRPC transports, without the network.

import { parseUuid, type Registers } from '../../proto/ffa/index.js';
import { isPending } from '../../server/spmc/pending.js';
import { MemoryFault, type Spmc, SpmcError } from '../../server/spmc/spmc.js';
import { type AttachOptions, type Attachment, type Connector, type Transport, TransportError } from './transport.js';

const CODE_OF_KIND = {
  'invalid-argument': 'INVALID_ARGUMENT',
  'already-exists': 'ALREADY_EXISTS',
  'permission-denied': 'PERMISSION_DENIED',
  'not-found': 'UNAUTHENTICATED',
  'resource-exhausted': 'RESOURCE_EXHAUSTED',
} as const;

function toTransportError(e: unknown): unknown {
  if (e instanceof SpmcError) return new TransportError(CODE_OF_KIND[e.kind], e.message);
  if (e instanceof MemoryFault) return new TransportError('PERMISSION_DENIED', e.message);
  return e;
}

function translate(e: unknown): never {
  throw toTransportError(e);
}

class InProcessTransport implements Transport {
  private attached = true;

  constructor(
    private readonly spmc: Spmc,
    private readonly endpointId: number,
  ) {}

  private check(): void {
    if (!this.attached) throw new TransportError('UNAUTHENTICATED', 'detached');
  }

  invoke(x: Registers, vcpu = 0): Promise<Registers> {
    let out;
    try {
      this.check();
      out = this.spmc.handle(this.endpointId, vcpu, x, 'in-process');
    } catch (e) {
      return Promise.reject(toTransportError(e));
    }
    // A blocked vCPU (MSG_WAIT, a direct request, RUN) resumes when another endpoint's call completes it.
    return isPending(out) ? out.answer : Promise.resolve(out);
  }

  async readMemory(address: bigint, length: number): Promise<Uint8Array> {
    this.check();
    try {
      return this.spmc.readMemory(this.endpointId, address, length);
    } catch (e) {
      translate(e);
    }
  }

  async writeMemory(address: bigint, data: Uint8Array): Promise<void> {
    this.check();
    try {
      this.spmc.writeMemory(this.endpointId, address, data);
    } catch (e) {
      translate(e);
    }
  }

  async detach(): Promise<void> {
    this.check();
    this.attached = false;
    for (const stop of this.lines.splice(0)) stop();
    this.spmc.detach(this.endpointId);
  }

  private readonly lines: (() => void)[] = [];

  connectInterrupts(handler: (intid: number, vcpu: number) => void): () => void {
    this.check();
    // The model raises interrupts inside a call; deliver them after it, as a real line would.
    const stop = this.spmc.observe({
      interrupt: (id, intid) => {
        if (id === this.endpointId) queueMicrotask(() => handler(intid, 0));
      },
    });
    this.lines.push(stop);
    this.spmc.resignal(this.endpointId);
    return () => {
      stop();
      const i = this.lines.indexOf(stop);
      if (i >= 0) this.lines.splice(i, 1);
    };
  }
}

export class InProcessConnector implements Connector {
  constructor(private readonly spmc: Spmc) {}

  async attach(opts: AttachOptions): Promise<Attachment> {
    try {
      const ep = this.spmc.attach({ ...opts, uuids: opts.uuids?.map(parseUuid) });
      return {
        endpointId: ep.id,
        ramBase: ep.ram.base,
        ramBytes: ep.ram.size,
        transport: new InProcessTransport(this.spmc, ep.id),
      };
    } catch (e) {
      if (e instanceof TypeError) throw new TransportError('INVALID_ARGUMENT', e.message);
      translate(e);
    }
  }

  /** Drive a built-in partition of the manifest: it is already an endpoint, nothing to attach. */
  partition(id: number): Attachment {
    const ep = this.spmc.endpoint(id);
    if (!ep || ep.kind !== 'sp') throw new TransportError('INVALID_ARGUMENT', `0x${id.toString(16)} is not a partition`);
    return { endpointId: id, ramBase: ep.ram.base, ramBytes: ep.ram.size, transport: new InProcessTransport(this.spmc, id) };
  }

  close(): void {}
}
