// The in-process connector: the driver's Transport straight onto the session core, without a
// network. Same semantics, statuses and interceptors as the gRPC transports; the built-in
// partitions run on it, and tests and benches use it.

import { hex, type Registers } from '../../proto/ffa/index.js';
import { type Answer, type AttachOptions, type Attachment, type Connector, type Transport, TransportError } from '../../client-driver/transport/transport.js';
import { isPending } from '../spmc/pending.js';
import type { Spmc } from '../spmc/spmc.js';
import { coreOf, type Session, type SessionCore } from './core.js';
import { statusOf } from './status.js';

const transportError = (e: unknown): TransportError => {
  if (e instanceof TransportError) return e;
  const { status, message } = statusOf(e);
  return new TransportError(status, message);
};

class InProcessTransport implements Transport {
  private attached = true;
  private readonly lines: (() => void)[] = [];

  constructor(
    private readonly core: SessionCore,
    private readonly endpointId: number,
    /** A VM's session; a built-in partition has none (it is the manifest's, never detached). */
    private readonly session?: Session,
  ) {}

  private check(): void {
    if (!this.attached) throw new TransportError('UNAUTHENTICATED', 'detached');
  }

  invoke(x: Registers, vcpu = 0): Promise<Answer> {
    let out;
    try {
      this.check();
      out = this.core.handle(this.endpointId, vcpu, x, 'in-process');
    } catch (e) {
      return Promise.reject(transportError(e));
    }
    // A blocked vCPU (MSG_WAIT, a direct request, RUN) resumes when another endpoint's call completes it.
    return isPending(out) ? out.answer.then((r) => this.withReason(r)) : Promise.resolve(this.withReason(out));
  }

  private withReason(r: Registers): Answer {
    const reason = this.core.reasonFor(r);
    return reason ? Object.assign(r, { reason }) : r;
  }

  async readMemory(address: bigint, length: number): Promise<Uint8Array> {
    this.check();
    try {
      return this.session ? this.core.readMemory(this.session, address, length) : this.core.spmc.readMemory(this.endpointId, address, length);
    } catch (e) {
      throw transportError(e);
    }
  }

  async writeMemory(address: bigint, data: Uint8Array): Promise<void> {
    this.check();
    try {
      if (this.session) this.core.writeMemory(this.session, address, data);
      else this.core.spmc.writeMemory(this.endpointId, address, data);
    } catch (e) {
      throw transportError(e);
    }
  }

  async detach(): Promise<void> {
    this.check();
    this.attached = false;
    for (const stop of this.lines.splice(0)) stop();
    try {
      if (this.session) this.core.detach(this.session.token);
      else this.core.spmc.detach(this.endpointId);
    } catch (e) {
      throw transportError(e);
    }
  }

  connectInterrupts(handler: (intid: number, vcpu: number) => void): () => void {
    this.check();
    // The model raises interrupts inside a call; deliver them after it, as a real line would.
    const deliver = (intid: number, vcpu: number) => queueMicrotask(() => handler(intid, vcpu));
    let stop: () => void;
    if (this.session) {
      stop = this.core.interrupts(this.session, deliver);
    } else {
      const id = this.endpointId;
      stop = this.core.spmc.observe({ interrupt: (to, intid) => to === id && deliver(intid, 0) });
      this.core.spmc.resignal(id);
    }
    this.lines.push(stop);
    return () => {
      stop();
      const i = this.lines.indexOf(stop);
      if (i >= 0) this.lines.splice(i, 1);
    };
  }
}

export class InProcessConnector implements Connector {
  private readonly core: SessionCore;

  /** Attach to a model's session core (given it, or the model). */
  constructor(target: SessionCore | Spmc) {
    this.core = coreOf(target);
  }

  async attach(opts: AttachOptions): Promise<Attachment> {
    try {
      const a = this.core.attach(opts);
      const session = this.core.session(a.session);
      const transport = new InProcessTransport(this.core, a.endpointId, session);
      // The transport lives in this process: it keeps its session (no lease) until it detaches.
      this.core.hold(session, transport);
      return { endpointId: a.endpointId, ramBase: a.ramBase, ramBytes: a.ramBytes, ffaVersion: a.ffaVersion || undefined, transport };
    } catch (e) {
      throw transportError(e);
    }
  }

  /** Drive a built-in partition of the manifest: it is already an endpoint, nothing to attach. */
  partition(id: number): Attachment {
    const ep = this.core.spmc.endpoint(id);
    if (!ep || ep.kind !== 'sp') throw new TransportError('INVALID_ARGUMENT', `${hex(id)} is not a partition`);
    return { endpointId: id, ramBase: ep.ram.base, ramBytes: ep.ram.size, transport: new InProcessTransport(this.core, id) };
  }

  close(): void {}
}
