// The fault injector: a link of the session core's interceptor chain that answers for the model, or
// changes its answer, when a rule fires. Every call it touches carries the rule's id (the trace
// records it as `injected`). A replay drives the same code with the trace's marks instead of the
// matcher (replayCall), so a run with injections replays exactly, whatever clock or draws made it.

import {
  encodeCall,
  type EndpointId,
  errorName,
  errorRegisters,
  FFA_ERRORS,
  ffaError,
  ffaSuccess,
  fidName,
  hex,
  normalizeFid,
  type Reason,
  type Registers,
} from '../../proto/ffa/index.js';
import type { SessionCore } from '../session/core.js';
import { type InjectedAnswer, InterceptedCall, type Interceptor, type Outcome } from '../session/interceptors.js';
import { isPending, Pending } from '../spmc/pending.js';
import { abortRequests } from '../spmc/fault-hooks.js';
import type { Spmc } from '../spmc/spmc.js';
import { fires, RuleState, targetOf } from './matcher.js';
import { clobbered, delayed, pipe } from './outcomes.js';
import { type FaultRule, FaultRuleError, type FaultRuleSet, MAX_RULES, parseRule, parseRuleSet } from './rules.js';

/** The transport name of calls the injector makes itself (a delayed notification): it does not inject into them. */
export const FAULTS_VIA = 'faults';

export interface FaultInjectorOptions {
  /** Replay: a call is injected into only when its record says so (replayCall); delays end at once. */
  replay?: boolean;
}

/** A direct request answered with FFA_INTERRUPT: sent on when its caller runs the target. */
interface Preempted {
  rule: string;
  caller: EndpointId;
  target: EndpointId;
  targetVcpu: number;
  x: Registers;
}

/** A partition aborted by a rule: what calls aimed at it get from now on. */
interface Aborted {
  rule: string;
  code: number;
}

/** What the listing shows of a rule: as given, with its counters. */
export interface FaultRuleView {
  rule: Record<string, unknown>;
  seen: number;
  fired: number;
}

const reason = (rule: string, what: string): Reason => ({ code: 'fault.injected', text: `${what} (injected by fault rule ${JSON.stringify(rule)})` });

export class FaultInjector {
  private states: RuleState[] = [];
  private seedValue = 0;
  /** Ongoing effects of rules that fired: checked before the rules on every call. */
  private readonly preempted = new Map<string, Preempted>();
  private readonly aborted = new Map<EndpointId, Aborted>();
  /** Endpoints whose RX a rule holds full, by rule. */
  private readonly heldRx = new Map<string, EndpointId[]>();
  private effects = 0;
  /** Undone after the model answered (a fragment cap, a held-back SRI). */
  private undo?: () => void;
  /** What the `after` of the current call does to its answer. */
  private change?: (out: Outcome, call: InterceptedCall) => Outcome;
  /** Replay: the mark of the call being replayed; and work that waits until it has been answered. */
  private forced?: string;
  private queue: (() => void)[] = [];
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly listeners = new Set<(set: { seed: number; rules: Record<string, unknown>[] }) => void>();
  private readonly spmc: Spmc;
  readonly interceptor: Interceptor;

  constructor(
    private readonly core: SessionCore,
    private readonly opts: FaultInjectorOptions = {},
  ) {
    this.spmc = core.spmc;
    this.interceptor = {
      name: 'faults',
      before: (c) => this.before(c),
      after: (c, out) => this.after(c, out),
    };
  }

  /** Add the injector at the end of the session core's chain (after the trace and metrics, which then see its answers). */
  install(): () => void {
    return this.core.use(this.interceptor);
  }

  // ---- the rule set -----------------------------------------------------------------------------

  get seed(): number {
    return this.seedValue;
  }

  /** The rules as given, with how often each matched and fired. */
  list(): { seed: number; rules: FaultRuleView[] } {
    return { seed: this.seedValue, rules: this.states.map((s) => ({ rule: s.rule.source, seen: s.seen, fired: s.fired })) };
  }

  /**
   * Replace the whole set (a file, an HTTP body, a replay's record). A rule that stays as it was
   * (same id, same text, same seed) keeps its counters and what it did (an aborted partition, a
   * held RX buffer); the others start afresh, and what removed ones did ends. Throws
   * FaultRuleError, leaving the set as it was, if any rule is bad.
   */
  load(input: unknown): FaultRuleSet {
    const set = parseRuleSet(input);
    const now = this.core.now();
    const old = new Map(set.seed === this.seedValue ? this.states.map((s) => [s.rule.id, s]) : []);
    const same = (a: FaultRule, b: FaultRule) => JSON.stringify(a.source) === JSON.stringify(b.source);
    const next = set.rules.map((r) => {
      const was = old.get(r.id);
      return was && same(was.rule, r) ? was : new RuleState(r, set.seed, now);
    });
    for (const s of this.states) if (!next.includes(s)) this.cleanUp(s.rule.id);
    this.seedValue = set.seed;
    this.states = next;
    this.changed();
    return set;
  }

  /** Add one rule; its id must be new. */
  add(input: unknown): FaultRule {
    const rule = parseRule(input);
    if (this.states.some((s) => s.rule.id === rule.id)) throw new FaultRuleError(`rule.id: a rule ${JSON.stringify(rule.id)} exists already (remove it first)`);
    if (this.states.length >= MAX_RULES) throw new FaultRuleError(`rule: ${MAX_RULES} rules in force already, the most there may be`);
    this.states = [...this.states, new RuleState(rule, this.seedValue, this.core.now())];
    this.changed();
    return rule;
  }

  /** Remove a rule (and end what it holds: a held RX buffer); false if there is none by that id. */
  remove(id: string): boolean {
    const before = this.states.length;
    this.states = this.states.filter((s) => s.rule.id !== id);
    if (this.states.length === before) return false;
    this.cleanUp(id);
    this.changed();
    return true;
  }

  /** Remove every rule. */
  clear(): void {
    this.load({ seed: this.seedValue, rules: [] });
  }

  /** Told the whole set (as given) whenever it changes: the trace records it for replay. */
  onChange(listener: (set: { seed: number; rules: Record<string, unknown>[] }) => void): () => void {
    this.listeners.add(listener);
    return () => void this.listeners.delete(listener);
  }

  /** The set as it is given (and recorded): seed and the rules' sources. */
  snapshot(): { seed: number; rules: Record<string, unknown>[] } {
    return { seed: this.seedValue, rules: this.states.map((s) => s.rule.source) };
  }

  private changed(): void {
    const snap = this.snapshot();
    for (const l of this.listeners) l(snap);
  }

  private cleanUp(id: string): void {
    for (const ep of this.heldRx.get(id) ?? []) {
      const e = this.spmc.endpoint(ep);
      if (e) e.rxHeld = false;
    }
    if (this.heldRx.delete(id)) this.effects--;
    for (const [k, p] of this.preempted) if (p.rule === id) this.dropEffect(() => this.preempted.delete(k));
    for (const [k, a] of this.aborted) if (a.rule === id) this.dropEffect(() => this.aborted.delete(k));
  }

  private dropEffect(del: () => boolean): void {
    if (del()) this.effects--;
  }

  /** Stop pending timers (delayed answers are then never given: for shutdown). */
  close(): void {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }

  // ---- the chain ----------------------------------------------------------------------------------

  private before(call: InterceptedCall): InjectedAnswer | undefined {
    if (this.states.length === 0 && this.effects === 0) return undefined;
    if (call.via === FAULTS_VIA) return undefined;
    if (this.opts.replay && this.forced === undefined) return undefined;
    const ongoing = this.effects > 0 ? this.ongoing(call) : undefined;
    if (ongoing) return ongoing;
    const s = this.opts.replay ? this.states.find((x) => x.rule.id === this.forced) : this.states.find((x) => fires(x, call, () => this.core.now()));
    if (!s) return undefined;
    call.injected = s.rule.id;
    return this.apply(s.rule, call);
  }

  private after(call: InterceptedCall, out: Outcome): Outcome | void {
    const undo = this.undo;
    const change = this.change;
    this.undo = this.change = undefined;
    undo?.();
    return change?.(out, call);
  }

  /** Effects of rules that fired earlier: a preempted request, an aborted partition. */
  private ongoing(call: InterceptedCall): InjectedAnswer | undefined {
    const d = call.decoded();
    if (!d.ok) return undefined;
    const fn = d.call.fn;
    if (fn === 'RUN') {
      const key = `${call.endpoint}:${call.vcpu}`;
      const p = this.preempted.get(key);
      if (p && d.call.target.endpoint === p.target && d.call.target.vcpu === p.targetVcpu) {
        // The caller runs the partition it was told to: the request goes on (as Hafnium resumes it).
        this.dropEffect(() => this.preempted.delete(key));
        call.injected = p.rule;
        return { x: this.spmc.handle(call.endpoint, call.vcpu, p.x) };
      }
    }
    if (fn !== 'MSG_SEND_DIRECT_REQ' && fn !== 'MSG_SEND_DIRECT_REQ2' && fn !== 'RUN') return undefined;
    const target = targetOf(call)!;
    const a = this.aborted.get(target);
    if (a) {
      call.injected = a.rule;
      const name = fidName(normalizeFid(call.x[0]!));
      return this.error(a.code, reason(a.rule, `${name}: partition ${hex(target)} was aborted; the lifecycle answers ${errorName(a.code)}`));
    }
    for (const [k, p] of this.preempted) {
      // Its caller left without running it again: nothing holds the target any more.
      if (!this.spmc.endpoint(p.caller)) {
        this.dropEffect(() => this.preempted.delete(k));
        continue;
      }
      if (p.target === target && (fn !== 'RUN' || d.call.target.vcpu === p.targetVcpu)) {
        // Hafnium: a target vCPU that is PREEMPTED is BUSY to anyone but the one it returns to.
        call.injected = p.rule;
        return this.error(FFA_ERRORS.BUSY, reason(p.rule, `${fidName(normalizeFid(call.x[0]!))}: ${hex(target)} vCPU ${p.targetVcpu} is preempted`));
      }
    }
    return undefined;
  }

  private error(code: number, why: Reason): InjectedAnswer {
    return { x: errorRegisters(code), reason: why };
  }

  /** Later: on a timer live; at once (after the call being replayed) in a replay. */
  private schedule(ms: number, run: () => void): void {
    if (this.opts.replay) {
      this.queue.push(run);
      return;
    }
    const t = setTimeout(() => {
      this.timers.delete(t);
      run();
    }, ms);
    this.timers.add(t);
  }

  /** After the current call has been answered (the model is not re-entered from inside a call). */
  private soon(run: () => void): void {
    if (this.opts.replay) this.queue.push(run);
    else queueMicrotask(run);
  }

  private apply(rule: FaultRule, call: InterceptedCall): InjectedAnswer | undefined {
    const a = rule.action;
    const name = fidName(normalizeFid(call.x[0]!));
    const spmc = this.spmc;
    switch (a.kind) {
      case 'error':
        return this.error(a.code, reason(rule.id, `${name}: FFA_ERROR(${a.name})`));
      case 'preempt': {
        const target = targetOf(call)!;
        const ep = spmc.endpoint(target);
        const targetVcpu = ep && ep.vcpuCount > 1 ? call.vcpu : 0;
        this.preempted.set(`${call.endpoint}:${call.vcpu}`, { rule: rule.id, caller: call.endpoint, target, targetVcpu, x: call.x });
        this.effects++;
        return {
          x: encodeCall({ fn: 'INTERRUPT', target: { endpoint: target, vcpu: targetVcpu }, interruptId: a.interruptId }, call.version),
        };
      }
      case 'yield': {
        // The responder yields instead of responding: its requester gets FFA_YIELD and must run it
        // again; then the response it was about to give goes out.
        const y = spmc.handle(
          call.endpoint,
          call.vcpu,
          encodeCall({ fn: 'YIELD', target: { endpoint: call.endpoint, vcpu: call.vcpu }, timeout: 0n }, call.version),
        );
        if (!isPending(y)) {
          call.injected = undefined;
          return undefined;
        }
        const answer = new Pending(name);
        const x = call.x;
        answer.onAbandon = () => y.abandon();
        y.whenComplete(() => this.soon(() => pipe(spmc.handle(call.endpoint, call.vcpu, x), answer)));
        return { x: answer };
      }
      case 'delay':
        this.change = (out) => delayed(out, name, (run) => this.schedule(a.ms, run));
        return undefined;
      case 'clobber': {
        const callFid = normalizeFid(call.x[0]!);
        this.change = (out) => {
          if (!isPending(out)) return clobbered(spmc, out, call.version, callFid);
          const p = new Pending(name);
          pipe(out, p, (r) => clobbered(spmc, r, call.version, callFid));
          return p;
        };
        return undefined;
      }
      case 'fragment-cap': {
        const was = spmc.state.fragmentCap;
        spmc.state.fragmentCap = a.bytes;
        this.undo = () => (spmc.state.fragmentCap = was);
        return undefined;
      }
      case 'hold-rx-full': {
        const id = a.endpoint === 'caller' ? call.endpoint : a.endpoint === 'target' ? targetOf(call) : a.endpoint;
        const ep = id === undefined ? undefined : spmc.endpoint(id);
        if (!ep || ep.rxHeld) {
          call.injected = undefined;
          return undefined;
        }
        ep.rxHeld = true;
        const held = this.heldRx.get(rule.id);
        if (held) held.push(ep.id);
        else {
          this.heldRx.set(rule.id, [ep.id]);
          this.effects++;
        }
        return undefined;
      }
      case 'notification': {
        // The sender is told it worked; the receiver gets nothing (drop) or gets it later.
        if (a.mode === 'delay' && !this.opts.replay) {
          const { endpoint, vcpu, x } = call;
          this.schedule(a.ms, () => {
            try {
              this.core.handle(endpoint, vcpu, x, FAULTS_VIA);
            } catch {
              // The sender left meanwhile: nothing to deliver.
            }
          });
        }
        return { x: encodeCall(ffaSuccess(), call.version) };
      }
      case 'sri': {
        const receiver = spmc.endpoint(targetOf(call)!);
        if (!receiver) return undefined;
        receiver.sriHeld = true;
        this.undo = () => {
          receiver.sriHeld = false;
          if (a.mode === 'delay' && !this.opts.replay) this.schedule(a.ms, () => spmc.resignal(receiver.id));
        };
        return undefined;
      }
      case 'abort': {
        const target = targetOf(call);
        const id = a.endpoint === 'target' ? target : a.endpoint;
        if (id === undefined) {
          call.injected = undefined;
          return undefined;
        }
        if (!this.aborted.has(id)) this.effects++;
        this.aborted.set(id, { rule: rule.id, code: a.afterwards });
        // Requests it was serving end now: their requesters get ABORTED.
        const ep = spmc.endpoint(id);
        if (ep)
          abortRequests(spmc.state, ep, () =>
            ffaError(FFA_ERRORS.ABORTED, reason(rule.id, `MSG_SEND_DIRECT_REQ: partition ${hex(id)} aborted while handling it`)),
          );
        if (target === id) return this.error(FFA_ERRORS.ABORTED, reason(rule.id, `${name}: partition ${hex(id)} aborted while handling it`));
        return undefined;
      }
    }
  }

  // ---- replay ---------------------------------------------------------------------------------------

  /**
   * One recorded call, replayed: through the injector when the record carries a rule's mark (the
   * same action, on the same state), straight to the model otherwise. Work the action left for
   * later (a delayed answer, a yielded response) is done before this returns.
   */
  // Unmarked calls, and the model under a marked one, go through the core, so a personality's hooks
  // shape them as they did when recorded (the injector itself is not in a replay's chain).
  replayCall(endpoint: EndpointId, vcpu: number, x: Registers, mark: string | undefined): Outcome {
    if (mark === undefined) {
      const out = this.core.handle(endpoint, vcpu, x, 'replay');
      this.drain();
      return out;
    }
    const version = this.spmc.endpoint(endpoint)?.version;
    if (version === undefined) return this.core.handle(endpoint, vcpu, x, 'replay');
    const call = new InterceptedCall(endpoint, vcpu, x, version, 'replay', 0);
    this.forced = mark;
    try {
      const injected = this.before(call);
      let out = injected ? injected.x : this.core.handle(endpoint, vcpu, x, 'replay');
      out = this.after(call, out) ?? out;
      if (call.injected !== mark)
        throw new FaultRuleError(
          `the trace says rule ${JSON.stringify(mark)} acted on this call; in the replay ${call.injected ? `rule ${JSON.stringify(call.injected)} did` : 'no rule did'}`,
        );
      this.drain();
      return out;
    } finally {
      this.forced = undefined;
    }
  }

  private drain(): void {
    while (this.queue.length > 0) this.queue.shift()!();
  }
}
