// The operations of `remote-spmc vm`, and their three spellings: words on the command line, a line
// of a script, a step of a YAML scenario. Every spelling is checked here, before the VM attaches,
// and a mistake is named in the words the user wrote ("direct TARGET", "vm1.yaml: steps[2].to").

import { parse as parseYaml } from 'yaml';
import {
  DIRECT_MSG_ARGS,
  DIRECT_MSG2_ARGS,
  type EndpointId,
  FFA_ERRORS,
  type FfaErrorName,
  isUuidString,
  NOTIFICATION_COUNT,
  PARTITION_PROPERTIES_MASK_V1_1,
  parseUuid,
  type Uuid,
  VM_ID_MAX,
} from '../../proto/ffa/index.js';
import { PARTITION_COMMANDS, type PartitionCommand } from '../partitions/commands.js';
import { table } from './command.js';

export class ScenarioError extends Error {}

/** A step as written: a scenario's YAML mapping, or a command line's words put in fields. */
export interface RawStep {
  op: string;
  [field: string]: unknown;
}

export type MemSendOp = 'share' | 'lend' | 'donate';

/** A step once checked: every field converted and in range. */
export type Step =
  | { op: 'info' }
  | { op: 'partitions'; count?: number; ids: EndpointId[] }
  | { op: 'direct' | 'direct2'; to: EndpointId; args: bigint[]; vcpu: number; uuid?: Uuid; expect?: bigint[]; expectError?: FfaErrorName }
  | { op: MemSendOp; to: EndpointId; pages: number; pattern: number }
  | { op: 'retrieve'; from: EndpointId }
  | { op: 'request'; from: EndpointId; id: number }
  | { op: 'notify'; to: EndpointId; id: number }
  | { op: 'wait-notification'; id: number }
  | { op: 'send'; to: EndpointId; text: string }
  | { op: 'receive'; from: EndpointId; expect?: string }
  | { op: 'barrier'; name: string; with: EndpointId[] }
  | { op: 'serve'; count: number; vcpu: number }
  | { op: 'sleep'; ms: number };

export interface Scenario {
  vm: { id?: number; name?: string; vcpus?: number; properties?: number };
  /** How long a step that waits for another endpoint may wait (seconds). */
  timeout?: number;
  steps: Step[];
}

/** One word of an operation on a command line: the field it fills and how the usage names it. */
interface Word {
  field: string;
  word: string;
  optional?: boolean;
  /** Takes the rest of the line: as a list of words, or as text with its spaces. */
  rest?: 'list' | 'text';
}

interface OpSpec {
  words: Word[];
  /** Fields only a scenario step can have. */
  extra?: string[];
  help: string;
}

const TO: Word = { field: 'to', word: 'TARGET' };
const FROM: Word = { field: 'from', word: 'FROM' };
const MEM_WORDS: Word[] = [TO, { field: 'pages', word: 'PAGES', optional: true }, { field: 'pattern', word: 'PATTERN', optional: true }];

export const OPS: Record<Step['op'], OpSpec> = {
  info: { words: [], help: "the VM's id, FF-A version, RX/TX size and whether notifications are on" },
  partitions: { words: [], extra: ['expect'], help: 'FFA_PARTITION_INFO_GET: the attached VMs and the partitions' },
  direct: {
    words: [TO, { field: 'args', word: 'W3..W7', optional: true, rest: 'list' }],
    extra: ['vcpu', 'expect'],
    help: 'FFA_MSG_SEND_DIRECT_REQ; prints the response w3..w7',
  },
  direct2: {
    words: [TO, { field: 'args', word: 'X4..X17', optional: true, rest: 'list' }],
    extra: ['vcpu', 'uuid', 'expect'],
    help: 'FFA_MSG_SEND_DIRECT_REQ2; prints the response x4..x17',
  },
  share: { words: MEM_WORDS, help: 'FFA_MEM_SHARE PAGES pages (default 1) filled with PATTERN (default 0xa5), checked by the borrower, reclaimed' },
  lend: { words: MEM_WORDS, help: 'FFA_MEM_LEND, as share' },
  donate: { words: MEM_WORDS, help: 'FFA_MEM_DONATE, as share; nothing comes back' },
  retrieve: { words: [FROM], help: "the borrower's side of a share, lend or donate from the VM FROM: retrieve, check, write back, relinquish" },
  request: { words: [FROM, { field: 'id', word: 'ID' }], help: 'FFA_NOTIFICATION_BIND notification ID (0..63) from FROM' },
  notify: { words: [TO, { field: 'id', word: 'ID' }], help: 'FFA_NOTIFICATION_SET notification ID for TARGET' },
  'wait-notification': { words: [{ field: 'id', word: 'ID' }], help: 'wait until notification ID arrives' },
  send: { words: [TO, { field: 'text', word: 'TEXT', rest: 'text' }], help: 'FFA_MSG_SEND2 TEXT to TARGET' },
  receive: {
    words: [FROM, { field: 'expect', word: 'TEXT', optional: true, rest: 'text' }],
    help: 'wait for an indirect message from FROM (and check it is TEXT)',
  },
  barrier: {
    words: [
      { field: 'name', word: 'NAME' },
      { field: 'with', word: 'PEER...', rest: 'list' },
    ],
    help: 'wait until every VM PEER reaches barrier NAME',
  },
  serve: {
    words: [
      { field: 'count', word: 'COUNT', optional: true },
      { field: 'vcpu', word: 'VCPU', optional: true },
    ],
    help: 'answer COUNT (default 1) direct requests from VMs on vCPU VCPU (default 1) by echoing them',
  },
  sleep: { words: [{ field: 'ms', word: 'MS' }], help: 'wait MS milliseconds' },
};

const isOp = (op: string): op is Step['op'] => Object.hasOwn(OPS, op);
const opList = () => Object.keys(OPS).join(', ');

export function opSynopsis(op: Step['op']): string {
  return [op, ...OPS[op].words.map((w) => (w.optional ? `[${w.word}]` : w.word))].join(' ');
}

/** The operations, for `vm --help`. */
export function opsUsage(): string {
  return table((Object.keys(OPS) as Step['op'][]).map((op) => [`  ${opSynopsis(op)}`, OPS[op].help]));
}

/** Names a field of the step being checked, in the user's words. */
type Where = (field: string, index?: number) => string;

// ---- values --------------------------------------------------------------------------------------

const U64_MAX = (1n << 64n) - 1n;

/** A register word: an integer, a 0x hex or decimal string, or a partition command name (ECHO ...). */
function word(v: unknown, where: string): bigint {
  let n: bigint | undefined;
  if (typeof v === 'number' && Number.isSafeInteger(v)) n = BigInt(v);
  else if (typeof v === 'string' && Object.hasOwn(PARTITION_COMMANDS, v)) n = BigInt(PARTITION_COMMANDS[v as PartitionCommand]);
  else if (typeof v === 'string' && /^(0x[0-9a-fA-F]+|[0-9]+)$/.test(v)) n = BigInt(v);
  if (n === undefined || n < 0n || n > U64_MAX) throw new ScenarioError(`${where}: ${JSON.stringify(v)} is not a 64-bit number, 0x value or command name`);
  return n;
}

function int(v: unknown, where: string, min: number, max: number, what = 'an integer'): number {
  const n = typeof v === 'number' ? v : typeof v === 'string' && /^(0x[0-9a-fA-F]+|[0-9]+)$/.test(v) ? Number(v) : NaN;
  if (!Number.isInteger(n) || n < min || n > max) throw new ScenarioError(`${where}: ${JSON.stringify(v)} is not ${what} ${min}..${max}`);
  return n;
}

const endpoint = (v: unknown, where: string): EndpointId => int(v, where, 0, 0xffff, 'an endpoint id');

function list(v: unknown, where: Where, field: string): unknown[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) throw new ScenarioError(`${where(field)}: expected a list`);
  return v;
}

/** The checked form of a step; `where` names its fields for error messages. */
export function checkStep(raw: RawStep, where: Where): Step {
  const op = raw.op;
  if (!isOp(op)) throw new ScenarioError(`${where('op')}: unknown op ${JSON.stringify(op)} (one of ${opList()})`);
  const spec = OPS[op];
  const known = new Set(['op', ...spec.words.map((w) => w.field), ...(spec.extra ?? [])]);
  for (const k of Object.keys(raw)) {
    if (!known.has(k)) throw new ScenarioError(`${where(k)}: ${op} has no field "${k}" (it has ${[...known].slice(1).join(', ') || 'none'})`);
  }
  for (const w of spec.words) if (!w.optional && raw[w.field] === undefined) throw new ScenarioError(`${where(w.field)}: required (${opSynopsis(op)})`);
  const f = (field: string) => where(field);
  const notification = (field: string) => int(raw[field], f(field), 0, NOTIFICATION_COUNT - 1, 'a notification id');
  const peers = (field: string) => list(raw[field], where, field).map((x, i) => endpoint(x, where(field, i)));
  switch (op) {
    case 'info':
      return { op };
    case 'partitions': {
      const exp = raw.expect;
      if (exp !== undefined && (typeof exp !== 'object' || exp === null || Array.isArray(exp)))
        throw new ScenarioError(`${f('expect')}: expected { count: N } or { ids: [...] }`);
      const e = (exp ?? {}) as Record<string, unknown>;
      for (const k of Object.keys(e)) if (k !== 'count' && k !== 'ids') throw new ScenarioError(`${f('expect')}: unknown field "${k}" (count, ids)`);
      return {
        op,
        count: e.count === undefined ? undefined : int(e.count, `${f('expect')}.count`, 0, 0xffff),
        ids: list(e.ids, () => `${f('expect')}.ids`, 'ids').map((x, i) => endpoint(x, `${f('expect')}.ids[${i}]`)),
      };
    }
    case 'direct':
    case 'direct2': {
      const max = op === 'direct' ? DIRECT_MSG_ARGS : DIRECT_MSG2_ARGS;
      const args = list(raw.args, where, 'args').map((x, i) => word(x, where('args', i)));
      if (args.length > max) throw new ScenarioError(`${f('args')}: at most ${max} words, got ${args.length}`);
      let uuid: Uuid | undefined;
      if (raw.uuid !== undefined) {
        if (typeof raw.uuid !== 'string' || !isUuidString(raw.uuid)) throw new ScenarioError(`${f('uuid')}: ${JSON.stringify(raw.uuid)} is not a UUID`);
        uuid = parseUuid(raw.uuid);
      }
      const step: Step = { op, to: endpoint(raw.to, f('to')), args, vcpu: raw.vcpu === undefined ? 0 : int(raw.vcpu, f('vcpu'), 0, 63, 'a vCPU index') };
      if (uuid) step.uuid = uuid;
      const exp = raw.expect;
      if (Array.isArray(exp)) step.expect = exp.map((x, i) => word(x, `${f('expect')}[${i}]`));
      else if (exp !== undefined) {
        const name = (exp as { error?: unknown } | null)?.error;
        if (typeof name !== 'string' || !Object.hasOwn(FFA_ERRORS, name)) {
          throw new ScenarioError(`${f('expect')}: expected a list of words or { error: NAME } with NAME one of ${Object.keys(FFA_ERRORS).join(', ')}`);
        }
        step.expectError = name as FfaErrorName;
      }
      return step;
    }
    case 'share':
    case 'lend':
    case 'donate':
      return {
        op,
        to: endpoint(raw.to, f('to')),
        pages: raw.pages === undefined ? 1 : int(raw.pages, f('pages'), 1, 256, 'a page count'),
        pattern: raw.pattern === undefined ? 0xa5 : int(raw.pattern, f('pattern'), 0, 0xff, 'a byte'),
      };
    case 'retrieve':
      return { op, from: endpoint(raw.from, f('from')) };
    case 'request':
      return { op, from: endpoint(raw.from, f('from')), id: notification('id') };
    case 'notify':
      return { op, to: endpoint(raw.to, f('to')), id: notification('id') };
    case 'wait-notification':
      return { op, id: notification('id') };
    case 'send':
      return { op, to: endpoint(raw.to, f('to')), text: String(raw.text) };
    case 'receive':
      return raw.expect === undefined ? { op, from: endpoint(raw.from, f('from')) } : { op, from: endpoint(raw.from, f('from')), expect: String(raw.expect) };
    case 'barrier':
      return { op, name: String(raw.name), with: peers('with') };
    case 'serve':
      return {
        op,
        count: raw.count === undefined ? 1 : int(raw.count, f('count'), 1, 1_000_000, 'a count'),
        vcpu: raw.vcpu === undefined ? 1 : int(raw.vcpu, f('vcpu'), 1, 63, 'a vCPU index'),
      };
    case 'sleep':
      return { op, ms: int(raw.ms, f('ms'), 0, 86_400_000, 'milliseconds') };
  }
}

// ---- the three spellings ---------------------------------------------------------------------------

/**
 * Words ("direct 0x8001 ECHO 1 2") as a checked step. `prefix` says where they came from: '' for
 * the command line, "FILE:LINE: " for a script. Mistakes are named by the usage's words.
 */
export function parseWords(words: readonly string[], prefix = ''): Step {
  const [op, ...rest] = words;
  if (op === undefined) throw new ScenarioError(`${prefix}an operation is required (one of ${opList()})`);
  if (!isOp(op)) throw new ScenarioError(`${prefix}unknown operation ${JSON.stringify(op)} (one of ${opList()})`);
  const raw: RawStep = { op };
  const spec = OPS[op];
  let i = 0;
  for (const w of spec.words) {
    if (i >= rest.length) break;
    if (w.rest === 'list') raw[w.field] = rest.slice(i);
    else if (w.rest === 'text') raw[w.field] = rest.slice(i).join(' ');
    else raw[w.field] = rest[i];
    i = w.rest ? rest.length : i + 1;
  }
  if (i < rest.length) throw new ScenarioError(`${prefix}${op}: unexpected ${JSON.stringify(rest[i])} (usage: ${opSynopsis(op)})`);
  const wordOf = (field: string) => spec.words.find((w) => w.field === field)?.word ?? field;
  return checkStep(raw, (field) => `${prefix}${op} ${wordOf(field)}`);
}

/** A script: one operation per line, # comments. */
export function parseScript(text: string, file: string): Step[] {
  return text.split('\n').flatMap((line, i) => {
    const words = line.replace(/#.*/, '').trim().split(/\s+/).filter(Boolean);
    return words.length === 0 ? [] : [parseWords(words, `${file}:${i + 1}: `)];
  });
}

/** A YAML scenario: the VM to attach as, a timeout and the steps. Errors name the file, step and field. */
export function parseScenario(text: string, file = '<scenario>'): Scenario {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (e) {
    throw new ScenarioError(`${file}: not YAML: ${(e as Error).message.split('\n')[0]}`);
  }
  if (!doc || typeof doc !== 'object' || !Array.isArray((doc as { steps?: unknown }).steps)) throw new ScenarioError(`${file}: needs a "steps" list`);
  const d = doc as { vm?: unknown; timeout?: unknown; steps: unknown[] };
  for (const k of Object.keys(d)) if (!['vm', 'timeout', 'steps'].includes(k)) throw new ScenarioError(`${file}: unknown field "${k}" (vm, timeout, steps)`);
  const steps = d.steps.map((st, i) => {
    const at: Where = (field, index) => `${file}: steps[${i}]${field === 'op' ? '' : `.${field}`}${index === undefined ? '' : `[${index}]`}`;
    if (!st || typeof st !== 'object' || typeof (st as RawStep).op !== 'string') throw new ScenarioError(`${at('op')}: needs an "op" (one of ${opList()})`);
    return checkStep(st as RawStep, at);
  });
  const vm: Scenario['vm'] = {};
  if (d.vm !== undefined) {
    if (!d.vm || typeof d.vm !== 'object') throw new ScenarioError(`${file}: vm: expected a mapping`);
    const v = d.vm as Record<string, unknown>;
    for (const k of Object.keys(v))
      if (!['id', 'name', 'vcpus', 'properties'].includes(k)) throw new ScenarioError(`${file}: vm.${k}: unknown field (id, name, vcpus, properties)`);
    if (v.id !== undefined) vm.id = int(v.id, `${file}: vm.id`, 0, VM_ID_MAX, 'a VM id');
    if (v.name !== undefined) vm.name = String(v.name);
    if (v.vcpus !== undefined) vm.vcpus = int(v.vcpus, `${file}: vm.vcpus`, 1, 64, 'a vCPU count');
    if (v.properties !== undefined) vm.properties = int(v.properties, `${file}: vm.properties`, 0, PARTITION_PROPERTIES_MASK_V1_1, 'a properties value');
  }
  const timeout = d.timeout === undefined ? undefined : int(d.timeout, `${file}: timeout`, 0, 3600, 'seconds');
  return { vm, timeout, steps };
}
