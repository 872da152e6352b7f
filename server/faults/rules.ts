// Fault rules: the format (YAML or JSON, the HTTP body, the gRPC Debug service's JSON) and its
// validation. A bad rule is a FaultRuleError naming the field and what was wrong; nothing here throws
// anything else, whatever the input.

import {
  type EndpointId,
  FFA_ERRORS,
  FFA_FUNCTION_NAMES,
  FFA_FUNCTIONS,
  type FfaErrorName,
  type FfaFunction,
  fid,
  hex,
  REGISTER_COUNT,
  type Width,
} from '../../proto/ffa/index.js';

export class FaultRuleError extends Error {}

/** What a rule looks at; every field given must match. */
export interface FaultMatch {
  caller?: EndpointId[];
  vcpu?: number;
  /** FIDs (every width of a name without a width suffix). */
  fids?: Set<number>;
  /** Names as written, for listing. */
  functions?: string[];
  target?: EndpointId[];
  /** Register index -> value. */
  args?: Map<number, bigint>;
  /** Only the nth matching call (1-based). */
  nth?: number;
  /** Every nth matching call. */
  every?: number;
  /** Fire with this probability (0..1), from the rule set's seeded generator. */
  probability?: number;
  /** Only between these times, ms since the rule set was loaded (the session core's clock). */
  window?: { from: number; until: number };
}

export type FaultAction =
  | { kind: 'error'; code: number; name: FfaErrorName }
  | { kind: 'preempt'; interruptId: number }
  | { kind: 'yield' }
  | { kind: 'delay'; ms: number }
  | { kind: 'fragment-cap'; bytes: number }
  | { kind: 'hold-rx-full'; endpoint: EndpointId | 'caller' | 'target' }
  | { kind: 'notification'; mode: 'drop' | 'delay'; ms: number }
  | { kind: 'sri'; mode: 'drop' | 'delay'; ms: number }
  | { kind: 'abort'; endpoint: EndpointId | 'target'; afterwards: number; afterwardsName: FfaErrorName }
  | { kind: 'clobber' };

export interface FaultRule {
  id: string;
  match: FaultMatch;
  action: FaultAction;
  /** Fire at most this many times (then the call passes through). */
  times?: number;
  /** The rule as given (normalised), for listing and for the trace. */
  source: Record<string, unknown>;
}

export interface FaultRuleSet {
  seed: number;
  rules: FaultRule[];
}

const ERROR_NAMES = Object.keys(FFA_ERRORS) as FfaErrorName[];
const ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const MAX_DELAY_MS = 60_000;
/** Rules in force at once: every call is matched against each. */
export const MAX_RULES = 256;

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const show = (v: unknown) => (typeof v === 'bigint' ? hex(v) : (JSON.stringify(v) ?? String(v)));

function fail(path: string, msg: string): never {
  throw new FaultRuleError(`${path}: ${msg}`);
}

function only(obj: Record<string, unknown>, path: string, allowed: readonly string[]): void {
  for (const k of Object.keys(obj)) if (!allowed.includes(k)) fail(`${path}.${k}`, `unknown field (expected one of ${allowed.join(', ')})`);
}

/** A non-negative integer, given as a number or a decimal/hex string. */
function integer(v: unknown, path: string, max = Number.MAX_SAFE_INTEGER, min = 0): number {
  const n = typeof v === 'string' && /^(0x[0-9a-f]+|\d+)$/i.test(v.trim()) ? Number(v.trim()) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max) fail(path, `${show(v)} is not an integer ${min}..${max}`);
  return n;
}

function register(v: unknown, path: string): bigint {
  try {
    if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return BigInt(v);
    if (typeof v === 'bigint' && v >= 0n && v < 1n << 64n) return v;
    if (typeof v === 'string' && /^(0x[0-9a-f]{1,16}|\d{1,20})$/i.test(v.trim())) {
      const b = BigInt(v.trim());
      if (b < 1n << 64n) return b;
    }
  } catch {
    // fall through to the error below
  }
  fail(path, `${show(v)} is not a 64-bit register value (a number or a "0x..." string)`);
}

const endpointId = (v: unknown, path: string): EndpointId => integer(v, path, 0xffff);
const endpoints = (v: unknown, path: string): EndpointId[] => (Array.isArray(v) ? v.map((e, i) => endpointId(e, `${path}[${i}]`)) : [endpointId(v, path)]);

function errorCode(v: unknown, path: string): { code: number; name: FfaErrorName } {
  const name = typeof v === 'string' ? (v.toUpperCase().replace(/^FFA_/, '') as FfaErrorName) : undefined;
  if (name && ERROR_NAMES.includes(name)) return { code: FFA_ERRORS[name], name };
  fail(path, `${show(v)} is not an FF-A error name (one of ${ERROR_NAMES.join(', ')})`);
}

/** The FIDs a function name stands for: FFA_ optional, _32/_64 picks a width, none means both. */
export function functionFids(v: unknown, path: string): number[] {
  if (typeof v !== 'string') fail(path, `${show(v)} is not a function name`);
  let name = v.trim().toUpperCase().replace(/^FFA_/, '');
  let widths: Width[] | undefined;
  const w = /_(32|64)$/.exec(name);
  if (w && !FFA_FUNCTION_NAMES.includes(name as FfaFunction)) {
    name = name.slice(0, -3);
    widths = [Number(w[1]) as Width];
  }
  if (!FFA_FUNCTION_NAMES.includes(name as FfaFunction))
    fail(path, `${show(v)} is not an FF-A function name (e.g. MSG_SEND_DIRECT_REQ, FFA_RUN, MEM_SHARE_64)`);
  const fn = name as FfaFunction;
  const exists: readonly Width[] = FFA_FUNCTIONS[fn].widths;
  const chosen = (widths ?? exists).filter((x) => exists.includes(x));
  if (chosen.length === 0) fail(path, `FFA_${fn} has no SMC${widths![0]} form`);
  return chosen.map((x) => fid(fn, x));
}

function parseMatch(v: unknown, path: string): FaultMatch {
  if (v === undefined) return {};
  if (!isObject(v)) fail(path, 'must be an object');
  only(v, path, ['caller', 'vcpu', 'function', 'target', 'args', 'nth', 'every', 'probability', 'window']);
  const m: FaultMatch = {};
  if (v.caller !== undefined) m.caller = endpoints(v.caller, `${path}.caller`);
  if (v.vcpu !== undefined) m.vcpu = integer(v.vcpu, `${path}.vcpu`, 0xffff);
  if (v.function !== undefined) {
    const names = Array.isArray(v.function) ? v.function : [v.function];
    if (names.length === 0) fail(`${path}.function`, 'an empty list matches nothing');
    m.fids = new Set(names.flatMap((n, i) => functionFids(n, Array.isArray(v.function) ? `${path}.function[${i}]` : `${path}.function`)));
    m.functions = names.map(String);
  }
  if (v.target !== undefined) m.target = endpoints(v.target, `${path}.target`);
  if (v.args !== undefined) {
    if (!isObject(v.args)) fail(`${path}.args`, 'must map registers (x1..x17) to values');
    m.args = new Map();
    for (const [k, val] of Object.entries(v.args)) {
      const r = /^[xw](\d+)$/.exec(k);
      const n = r ? Number(r[1]) : -1;
      if (n < 1 || n >= REGISTER_COUNT) fail(`${path}.args.${k}`, `not a register x1..x${REGISTER_COUNT - 1}`);
      m.args.set(n, register(val, `${path}.args.${k}`));
    }
  }
  if (v.nth !== undefined) m.nth = integer(v.nth, `${path}.nth`, Number.MAX_SAFE_INTEGER, 1);
  if (v.every !== undefined) m.every = integer(v.every, `${path}.every`, Number.MAX_SAFE_INTEGER, 1);
  if (v.probability !== undefined) {
    const p = v.probability;
    if (typeof p !== 'number' || !(p >= 0 && p <= 1)) fail(`${path}.probability`, `${show(p)} is not a number 0..1`);
    m.probability = p;
  }
  if (v.window !== undefined) {
    const w = v.window;
    if (!isObject(w)) fail(`${path}.window`, 'must be { from: ms, until: ms }');
    only(w, `${path}.window`, ['from', 'until']);
    const from = w.from === undefined ? 0 : integer(w.from, `${path}.window.from`);
    const until = w.until === undefined ? Number.MAX_SAFE_INTEGER : integer(w.until, `${path}.window.until`);
    if (until <= from) fail(`${path}.window`, `until (${until}) must be after from (${from})`);
    m.window = { from, until };
  }
  return m;
}

/** `drop`, or `{ delay: ms }`. */
function dropOrDelay(v: unknown, path: string): { mode: 'drop' | 'delay'; ms: number } {
  if (v === 'drop') return { mode: 'drop', ms: 0 };
  if (isObject(v) && Object.keys(v).length === 1 && v.delay !== undefined) return { mode: 'delay', ms: integer(v.delay, `${path}.delay`, MAX_DELAY_MS) };
  fail(path, `${show(v)} is neither "drop" nor { delay: ms }`);
}

const ACTIONS = ['error', 'preempt', 'yield', 'delay', 'fragmentCap', 'holdRxFull', 'notification', 'sri', 'abort', 'clobber'] as const;

function parseAction(v: unknown, path: string): FaultAction {
  if (!isObject(v)) fail(path, `must be an object with one of ${ACTIONS.join(', ')}`);
  const keys = Object.keys(v).filter((k) => k !== 'afterwards' && k !== 'interruptId');
  if (keys.length !== 1 || !(ACTIONS as readonly string[]).includes(keys[0]!))
    fail(path, `needs exactly one of ${ACTIONS.join(', ')} (got ${keys.join(', ') || 'none'})`);
  const kind = keys[0] as (typeof ACTIONS)[number];
  const val = v[kind];
  const at = `${path}.${kind}`;
  if (kind !== 'abort' && v.afterwards !== undefined) fail(`${path}.afterwards`, 'only an abort has an afterwards');
  if (kind !== 'preempt' && v.interruptId !== undefined) fail(`${path}.interruptId`, 'only a preempt has an interruptId');
  switch (kind) {
    case 'error':
      return { kind, ...errorCode(val, at) };
    case 'preempt':
      if (val !== true) fail(at, 'must be true');
      return { kind, interruptId: v.interruptId === undefined ? 0 : integer(v.interruptId, `${path}.interruptId`, 0xffffffff) };
    case 'yield':
      if (val !== true) fail(at, 'must be true');
      return { kind };
    case 'delay':
      return { kind, ms: integer(val, at, MAX_DELAY_MS) };
    case 'fragmentCap':
      // Below one constituent (16 bytes) no fragment after the first could carry anything.
      return { kind: 'fragment-cap', bytes: integer(val, at, 0xffffffff, 16) };
    case 'holdRxFull':
      return { kind: 'hold-rx-full', endpoint: val === 'caller' || val === 'target' ? val : endpointId(val, at) };
    case 'notification':
    case 'sri':
      return { kind, ...dropOrDelay(val, at) };
    case 'abort': {
      const after = v.afterwards === undefined ? errorCode('BUSY', '') : errorCode(v.afterwards, `${path}.afterwards`);
      if (!['BUSY', 'INVALID_PARAMETERS', 'ABORTED'].includes(after.name))
        fail(`${path}.afterwards`, `${after.name}: the lifecycle answers BUSY, INVALID_PARAMETERS or ABORTED`);
      return { kind, endpoint: val === 'target' || val === true ? 'target' : endpointId(val, at), afterwards: after.code, afterwardsName: after.name };
    }
    case 'clobber':
      if (val !== true && val !== 'x8-x17') fail(at, 'must be true (x8..x17 of answers to v1.2 callers)');
      return { kind };
  }
}

/** One rule, checked. `path` names it in errors (`rules[2]`). */
export function parseRule(v: unknown, path = 'rule'): FaultRule {
  if (!isObject(v)) fail(path, 'must be an object with id, match, action');
  only(v, path, ['id', 'match', 'action', 'times', 'description']);
  if (typeof v.id !== 'string' || !ID.test(v.id)) fail(`${path}.id`, `${show(v.id)} is not an id (letters, digits, . _ -; at most 64)`);
  if (v.description !== undefined && typeof v.description !== 'string') fail(`${path}.description`, 'must be text');
  const rule: FaultRule = {
    id: v.id,
    match: parseMatch(v.match, `${path}.match`),
    action: parseAction(v.action, `${path}.action`),
    source: JSON.parse(JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? hex(x) : x))) as Record<string, unknown>,
  };
  if (v.times !== undefined) rule.times = integer(v.times, `${path}.times`, Number.MAX_SAFE_INTEGER, 1);
  return rule;
}

/** A whole set: `{ seed?, rules: [...] }` (or a bare list of rules). */
export function parseRuleSet(v: unknown, path = 'faults'): FaultRuleSet {
  const obj = Array.isArray(v) ? { rules: v } : v;
  if (!isObject(obj)) fail(path, 'must be { seed?, rules: [...] }');
  only(obj, path, ['seed', 'rules']);
  const seed = obj.seed === undefined ? 0 : integer(obj.seed, `${path}.seed`, 0xffffffff);
  if (!Array.isArray(obj.rules)) fail(`${path}.rules`, 'must be a list of rules');
  if (obj.rules.length > MAX_RULES) fail(`${path}.rules`, `${obj.rules.length} rules; at most ${MAX_RULES}`);
  const rules = obj.rules.map((r, i) => parseRule(r, `${path}.rules[${i}]`));
  const seen = new Set<string>();
  for (const r of rules) {
    if (seen.has(r.id)) fail(`${path}.rules`, `two rules have the id ${JSON.stringify(r.id)}`);
    seen.add(r.id);
  }
  return { seed, rules };
}
