// Which call a rule fires on: the filters (caller, vCPU, function, target, argument values), then
// the counters (nth, every nth, times), the time window and the seeded probability, in that order,
// so that the same calls in the same order fire the same rules.

import { FFA_VERSION_1_2, normalizeFid, type EndpointId } from '../../proto/ffa/index.js';
import type { InterceptedCall } from '../session/interceptors.js';
import { seededRandom } from './prng.js';
import type { FaultAction, FaultRule } from './rules.js';

/** What one rule has counted so far. */
export class RuleState {
  /** Calls that passed the filters. */
  seen = 0;
  /** Times it fired. */
  fired = 0;
  readonly random: () => number;
  constructor(
    readonly rule: FaultRule,
    seed: number,
    /** Core clock (ms) when the rule was loaded: its window counts from here. */
    readonly since: number,
  ) {
    this.random = seededRandom(seed, rule.id);
  }
}

/** The endpoint a call is aimed at: a message's receiver, a RUN's target; undefined for the rest. */
export function targetOf(call: InterceptedCall): EndpointId | undefined {
  const d = call.decoded();
  if (!d.ok) return undefined;
  const c = d.call as { route?: { destination: number }; target?: { endpoint: number } };
  if (c.route) return c.route.destination;
  if (d.call.fn === 'RUN') return c.target!.endpoint;
  return undefined;
}

const fnOf = (call: InterceptedCall): string | undefined => {
  const d = call.decoded();
  return d.ok ? d.call.fn : undefined;
};

/** The calls an action can act on at all (others pass by it, uncounted). */
function applies(action: FaultAction, call: InterceptedCall): boolean {
  switch (action.kind) {
    case 'preempt': {
      const fn = fnOf(call);
      return fn === 'MSG_SEND_DIRECT_REQ' || fn === 'MSG_SEND_DIRECT_REQ2';
    }
    case 'yield': {
      const fn = fnOf(call);
      return fn === 'MSG_SEND_DIRECT_RESP' || fn === 'MSG_SEND_DIRECT_RESP2';
    }
    case 'fragment-cap': {
      const fn = fnOf(call);
      return fn === 'MEM_RETRIEVE_REQ' || fn === 'MEM_FRAG_RX';
    }
    case 'notification':
    case 'sri':
      return fnOf(call) === 'NOTIFICATION_SET';
    case 'clobber':
      return call.version >= FFA_VERSION_1_2;
    default:
      return true;
  }
}

function filtersPass(rule: FaultRule, call: InterceptedCall): boolean {
  const m = rule.match;
  if (m.caller && !m.caller.includes(call.endpoint)) return false;
  if (m.vcpu !== undefined && m.vcpu !== call.vcpu) return false;
  if (m.fids && !m.fids.has(normalizeFid(call.x[0] ?? 0n))) return false;
  if (m.args) for (const [i, v] of m.args) if ((call.x[i] ?? 0n) !== v) return false;
  if (m.target) {
    const t = targetOf(call);
    if (t === undefined || !m.target.includes(t)) return false;
  }
  return applies(rule.action, call);
}

/** Whether `s`'s rule fires on this call (counting it when it passes the filters). */
export function fires(s: RuleState, call: InterceptedCall, now: () => number): boolean {
  const rule = s.rule;
  if (rule.times !== undefined && s.fired >= rule.times) return false;
  if (!filtersPass(rule, call)) return false;
  const n = ++s.seen;
  const m = rule.match;
  if (m.nth !== undefined && n !== m.nth) return false;
  if (m.every !== undefined && n % m.every !== 0) return false;
  if (m.window) {
    const t = now() - s.since;
    if (t < m.window.from || t >= m.window.until) return false;
  }
  // Drawn only for calls that got this far: the draws follow the calls, not the clock.
  if (m.probability !== undefined && !(s.random() < m.probability)) return false;
  s.fired++;
  return true;
}
