// The VM a scenario drives: the driver, what arrives for it asynchronously, and the steps.
//
// VMs coordinate through FF-A itself: barriers and memory handles travel as indirect messages.
// A step aimed at another VM waits for it to attach (its calls answer INVALID_PARAMETERS until
// then); one aimed at a partition that does not exist fails at once.

import {
  type EndpointId,
  errorCodeFromWord,
  errorName,
  FFA_PAGE_SIZE,
  formatUuid,
  formatVersion,
  hex,
  isSecureId,
  isVmId,
  MEM_PERM,
  MEM_TRANSACTION_TYPES,
  splitU64,
  UUID_NIL,
} from '../../proto/ffa/index.js';
import type { FfaDevice } from '../../client-driver/bus.js';
import type { FfaDriver } from '../../client-driver/driver.js';
import { FfaDriverError } from '../../client-driver/errno.js';
import type { IndirectMessage } from '../../client-driver/notifier.js';
import { TransportError } from '../../client-driver/transport/transport.js';
import { PARTITION_COMMANDS } from '../partitions/commands.js';
import { transportReason } from './errors.js';
import { type MemSendOp, ScenarioError, type Step } from './scenario.js';
import { printLines } from './terminal.js';

/** A waitable queue of what arrives asynchronously (indirect messages, notifications). */
class Inbox<T> {
  private readonly items: T[] = [];
  private waiters: (() => void)[] = [];
  push(v: T): void {
    this.items.push(v);
    for (const w of this.waiters.splice(0)) w();
  }
  async take(pred: (v: T) => boolean, deadline: number, what: string): Promise<T> {
    for (;;) {
      const i = this.items.findIndex(pred);
      if (i >= 0) return this.items.splice(i, 1)[0]!;
      const left = deadline - Date.now();
      if (left <= 0) throw new ScenarioError(`timed out waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 1000));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }
}

const text = (m: IndirectMessage) => new TextDecoder().decode(m.payload);
const RETRY_MS = 20;

export class ScenarioVm {
  readonly messages = new Inbox<IndirectMessage>();
  readonly notifications = new Inbox<number>();
  private readonly timeoutMs: number;

  constructor(
    readonly drv: FfaDriver,
    timeoutS = 60,
    /** Where result lines go (escaped: they carry partitions' messages and the server's reasons). */
    private readonly out: (line: string) => void = (l) => printLines(l),
  ) {
    this.timeoutMs = timeoutS * 1000;
    drv.notifier.onUnclaimedMessage = (m) => this.messages.push(m);
  }

  /** Runs the steps, one `ok N - op` / `not ok N - op: why` line each; false at the first failure. */
  async run(steps: readonly Step[]): Promise<boolean> {
    for (const [i, step] of steps.entries()) {
      const label = `${i + 1} - ${step.op}`;
      try {
        const result = await this.step(step);
        this.out(`ok ${label}${result ? `: ${result}` : ''}`);
      } catch (e) {
        const why =
          e instanceof FfaDriverError || e instanceof ScenarioError
            ? e.message
            : e instanceof TransportError
              ? `lost the SPMC (${transportReason(e)})`
              : `${(e as Error).message ?? String(e)}`;
        this.out(`not ok ${label}: ${why}`);
        return false;
      }
    }
    this.out(`1..${steps.length}`);
    return true;
  }

  /** A device for any endpoint (VMs that attached after our discovery are not on the bus). */
  private device(id: EndpointId): FfaDevice {
    return (
      this.drv.bus.devices().find((d) => d.vmId === id) ?? { id: 0, name: `endpoint-${hex(id)}`, vmId: id, uuid: UUID_NIL, properties: 0, mode32bit: false }
    );
  }

  /** Whether `id` is attached (VMs) or exists (partitions), as PARTITION_INFO_GET lists them. */
  private async listed(id: EndpointId): Promise<boolean> {
    return (await this.drv.partitionProbe(UUID_NIL)).some((p) => p.id === id);
  }

  /**
   * `op` again every 20 ms until the deadline while `peer` is a VM that has not attached yet (the
   * call failed with EINVAL and PARTITION_INFO_GET does not list it, or did not before this
   * attempt: it may have attached in between), or while `alsoWait` says the failure is one the
   * peer's progress will end. Any other failure is final at once.
   */
  private async untilPeerReady<T>(
    peer: EndpointId,
    deadline: number,
    op: () => Promise<T>,
    alsoWait: (e: FfaDriverError) => boolean = () => false,
  ): Promise<T> {
    let noted = false;
    let listedBefore = false;
    for (;;) {
      try {
        return await op();
      } catch (e) {
        if (!(e instanceof FfaDriverError) || Date.now() > deadline) throw e;
        let absent = false;
        let again = false;
        if (e.errno === 'EINVAL' && peer !== this.drv.vmId) {
          const listed = await this.listed(peer);
          // Partitions are all there from the start: one that is not listed never will be.
          if (!listed && !isVmId(peer)) throw new ScenarioError(`${e.message}: there is no partition ${hex(peer)}`);
          absent = isVmId(peer) && !listed;
          again = isVmId(peer) && listed && !listedBefore;
          listedBefore = listed;
        }
        if (!absent && !again && !alsoWait(e)) throw e;
        if (absent && !noted) {
          noted = true;
          this.out(`# waiting for VM ${hex(peer)} to attach`);
        }
        await new Promise((r) => setTimeout(r, RETRY_MS));
      }
    }
  }

  /** MSG_SEND2 to another endpoint; a VM that has not attached, has not negotiated v1.1+ (DENIED) or has RX full (BUSY) will be ready soon. */
  private async sendText(to: EndpointId, body: string, deadline: number): Promise<void> {
    await this.untilPeerReady(
      to,
      deadline,
      () => this.drv.sendIndirect(to, new TextEncoder().encode(body)),
      (e) => e.errno === 'EBUSY' || (isVmId(to) && e.errno === 'EACCES'),
    );
  }

  async step(s: Step): Promise<string> {
    const drv = this.drv;
    const deadline = Date.now() + this.timeoutMs;
    switch (s.op) {
      case 'info':
        return `vm ${hex(drv.vmId)} FF-A v${formatVersion(drv.version)}, RX/TX ${drv.rxtxBufSize} bytes, notifications ${drv.notificationsEnabled ? 'on' : 'off'}`;
      case 'partitions': {
        const infos = await drv.partitionProbe(UUID_NIL);
        if (s.count !== undefined && infos.length !== s.count) throw new ScenarioError(`expected ${s.count} partitions, found ${infos.length}`);
        for (const id of s.ids) if (!infos.some((p) => p.id === id)) throw new ScenarioError(`partition ${hex(id)} not found`);
        return infos.map((p) => `${hex(p.id)}(${p.execContexts} ctx, props ${hex(p.properties)}, ${formatUuid(p.uuid)})`).join(' ');
      }
      case 'direct':
      case 'direct2': {
        const expected = (e: unknown) => !!s.expectError && e instanceof FfaDriverError && e.ffaError !== undefined && errorName(e.ffaError) === s.expectError;
        // BUSY is temporary by definition (a VM not serving yet, a partition's context taken or its
        // process still starting): try again until the deadline, unless BUSY is what is expected.
        // A request is served on the receiver's context matching our vCPU (mod its count).
        let got: bigint[];
        try {
          got = await this.untilPeerReady(
            s.to,
            deadline,
            () => (s.op === 'direct' ? drv.sendDirectReq(s.to, s.args, { vcpu: s.vcpu }) : drv.sendDirectReq2(s.to, s.args, { vcpu: s.vcpu, uuid: s.uuid })),
            (e) => !expected(e) && e.errno === 'EBUSY',
          );
        } catch (e) {
          if (expected(e)) return `FFA_ERROR ${s.expectError}, as expected`;
          throw e;
        }
        if (s.expectError) throw new ScenarioError(`expected FFA_ERROR ${s.expectError}, got a response`);
        s.expect?.forEach((w, k) => {
          if (got[k] !== w) throw new ScenarioError(`response word ${k}: expected ${hex(w)}, got ${hex(got[k] ?? 0n)}`);
        });
        return got.map(hex).join(' ');
      }
      case 'share':
      case 'lend':
      case 'donate':
        return this.sendMemory(s.op, s.to, s.pages, s.pattern, deadline);
      case 'retrieve':
        return this.retrieveMemory(s.from, deadline);
      case 'request': {
        // Binding a VM sender needs it attached (INVALID_PARAMETERS until then).
        await this.untilPeerReady(s.from, deadline, () => drv.notifier.notifyRequest(this.device(s.from), false, (n) => this.notifications.push(n), s.id));
        return `notification ${s.id} from ${hex(s.from)} bound`;
      }
      case 'notify': {
        // The receiver may not have attached (INVALID_PARAMETERS) or bound it (DENIED) yet.
        await this.untilPeerReady(
          s.to,
          deadline,
          () => drv.notifier.notifySend(s.to, false, s.id),
          (e) => e.errno === 'EACCES',
        );
        return `notification ${s.id} set for ${hex(s.to)}`;
      }
      case 'wait-notification':
        await this.notifications.take((n) => n === s.id, deadline, `notification ${s.id}`);
        return `notification ${s.id} received`;
      case 'send':
        await this.sendText(s.to, s.text, deadline);
        return `${JSON.stringify(s.text)} sent to ${hex(s.to)}`;
      case 'receive': {
        const m = await this.messages.take((x) => x.sender === s.from && !text(x).startsWith('\u0000'), deadline, `a message from ${hex(s.from)}`);
        if (s.expect !== undefined && text(m) !== s.expect) throw new ScenarioError(`expected ${JSON.stringify(s.expect)}, got ${JSON.stringify(text(m))}`);
        return `${JSON.stringify(text(m))} from ${hex(s.from)}`;
      }
      case 'barrier': {
        const peers = s.with.filter((p) => p !== drv.vmId);
        const tag = `\u0000barrier ${s.name}`;
        for (const p of peers) await this.sendText(p, tag, deadline);
        for (const p of peers) await this.messages.take((m) => m.sender === p && text(m) === tag, deadline, `VM ${hex(p)} at barrier ${s.name}`);
        return `barrier ${s.name} with ${peers.map(hex).join(', ')}`;
      }
      case 'serve': {
        // Answer direct requests from other VMs (ECHO) on a vCPU of its own, until `count` are
        // answered; the loop itself ends when the VM detaches.
        if (s.vcpu >= drv.vm.vcpuCount)
          throw new ScenarioError(`serve VCPU ${s.vcpu}: this VM has vCPUs 0..${drv.vm.vcpuCount - 1} (attach with --vcpus ${s.vcpu + 1} or more)`);
        let served = 0;
        const done = new Inbox<number>();
        void drv
          .serveDirectRequests((req) => {
            done.push(++served);
            return req.args;
          }, s.vcpu)
          .catch(() => {});
        await done.take((n) => n >= s.count, deadline, `${s.count} direct request(s)`);
        return `served ${s.count} direct request(s) on vCPU ${s.vcpu}`;
      }
      case 'sleep':
        await new Promise((r) => setTimeout(r, s.ms));
        return '';
    }
  }

  /**
   * Share, lend or donate `pages` pages filled with `pattern`. To a partition: its MEM command
   * retrieves, writes the pattern and checks it. To a VM: the handle goes to it in an indirect
   * message; its `retrieve` step checks the pattern, writes the complement and answers "done".
   * Either way the memory comes back (reclaim) and is checked, unless donated.
   */
  private async sendMemory(type: MemSendOp, to: EndpointId, pages: number, pattern: number, deadline: number): Promise<string> {
    const drv = this.drv;
    const address = drv.vm.pages.alloc(pages);
    if (address === undefined) throw new ScenarioError('no memory left in the VM');
    const bytes = pages * FFA_PAGE_SIZE;
    await drv.vm.write(address, new Uint8Array(bytes).fill(pattern));
    // A donor leaves the receiver's data access unspecified: Hafnium's ffa_memory_send_validate
    // refuses anything else for a donate (INVALID_PARAMETERS); share and lend grant RW.
    const permissions = type === 'donate' ? MEM_PERM.DATA_NOT_SPECIFIED : MEM_PERM.DATA_RW;
    const args = { receivers: [{ id: to, permissions }], regions: [{ address, pageCount: pages }] };
    // A VM receiver that has not attached yet is INVALID_PARAMETERS: wait for it.
    const handle = await this.untilPeerReady(to, deadline, () =>
      type === 'share' ? drv.memShare(args) : type === 'lend' ? drv.memLend(args) : drv.memDonate(args),
    );
    let expectBack = pattern;
    if (isSecureId(to)) {
      const r = await drv.sendDirectReq(to, [BigInt(PARTITION_COMMANDS.MEM), ...splitU64(handle), BigInt(pattern), BigInt(MEM_TRANSACTION_TYPES[type])]);
      if (r[1] !== 0n) throw new ScenarioError(`partition ${hex(to)} answered FF-A ${errorName(errorCodeFromWord(r[1]!))}`);
    } else {
      await this.sendText(to, `\u0000mem ${type} ${hex(handle)} ${pattern}`, deadline);
      await this.messages.take((m) => m.sender === to && text(m) === `\u0000done ${hex(handle)}`, deadline, `VM ${hex(to)} to finish with ${hex(handle)}`);
      expectBack = pattern ^ 0xff;
    }
    // Donated pages are the receiver's now: they do not go back to this VM's allocator.
    if (type === 'donate') return `donated ${pages} page(s) to ${hex(to)}, handle ${hex(handle)}`;
    await drv.memReclaim(handle);
    const back = await drv.vm.read(address, bytes);
    if (!back.every((b) => b === expectBack)) throw new ScenarioError(`after reclaim the memory does not hold ${hex(expectBack)}`);
    drv.vm.pages.release(address, pages);
    return `${type} of ${pages} page(s) to ${hex(to)}, handle ${hex(handle)}, pattern checked both ways`;
  }

  private async retrieveMemory(from: EndpointId, deadline: number): Promise<string> {
    const drv = this.drv;
    const m = await this.messages.take((x) => x.sender === from && text(x).startsWith('\u0000mem '), deadline, `a memory handle from ${hex(from)}`);
    const [, type, handleHex, patternStr] = text(m).split(' ') as [string, MemSendOp, string, string];
    const handle = BigInt(handleHex);
    const pattern = Number(patternStr);
    const mem = await drv.memRetrieve({ handle, sender: from, type });
    for (const c of mem.constituents) {
      const n = c.pageCount * FFA_PAGE_SIZE;
      const got = await drv.vm.read(c.address, n);
      if (!got.every((b) => b === pattern)) throw new ScenarioError(`retrieved memory does not hold ${hex(pattern)}`);
      await drv.vm.write(c.address, new Uint8Array(n).fill(pattern ^ 0xff));
    }
    if (type !== 'donate') await drv.memRelinquish(handle);
    await this.sendText(from, `\u0000done ${hex(handle)}`, deadline);
    return `${type} ${hex(handle)} from ${hex(from)}: pattern ${hex(pattern)} checked, complement written`;
  }
}
