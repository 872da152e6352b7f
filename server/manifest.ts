// The partition manifest: the embedded default topology, and YAML/JSON manifests validated with a
// JSON schema. Field names follow Hafnium's partition manifests (kebab-case). Errors name the file,
// the field and the problem.

import { Ajv, type ErrorObject } from 'ajv';
import { parse as parseYaml } from 'yaml';
import {
  FFA_VERSION_1_2,
  FFA_VERSION_IMPLEMENTED,
  FFA_PAGE_SIZE,
  formatVersion,
  hex,
  isCompatible,
  type MemoryRegionDecl,
  isUuidString,
  PARTITION_PROPERTIES as P,
  parseUuid,
  parseVersion,
  SP_ID_BASE,
  SPMC_ID,
  SPMD_LP_ID_END,
  SPMD_LP_ID_START,
  DIRECT_MSG_ARGS,
  isNilUuid,
} from '../proto/ffa/index.js';
import { findPersonality, PERSONALITY_NAMES } from './personalities/catalog.js';
import { DEFAULT_PROFILE, versionFor } from './spmc/profile.js';
import type { LogicalAnswer, LogicalPartition } from './spmc/logical-partitions.js';
import { MAX_REGIONS, regionProblem } from './spmc/regions.js';
import type { PartitionManifest } from './spmc/spmc.js';

/** Messaging-method bits a manifest may set (Hafnium: anything else is INVALID_MESSAGING_METHOD). */
const MESSAGING_METHOD_BITS = P.DIRECT_REQ_RECV | P.DIRECT_REQ_SEND | P.INDIRECT_MSG | P.DIRECT_REQ2_RECV | P.DIRECT_REQ2_SEND;
const REQ2_BITS = P.DIRECT_REQ2_RECV | P.DIRECT_REQ2_SEND;

/** Built-in partition services (server/partitions). */
export const BUILTIN_SERVICES = ['test-service'] as const;

export const DEFAULT_SP_RAM = 16n << 20n;

/**
 * `logical-partitions`: the SPMD's (EL3) partitions SPs discover with PARTITION_INFO_GET_REGS.
 * `answers`: "echo", or up to five words (integers, or 0x-hex strings for 64-bit values) for w3..w7.
 */
const logicalPartitionsSchema = {
  type: 'array',
  maxItems: SPMD_LP_ID_END - SPMD_LP_ID_START + 1,
  items: {
    type: 'object',
    additionalProperties: false,
    required: ['id', 'uuids'],
    properties: {
      id: { type: 'integer', minimum: SPMD_LP_ID_START, maximum: SPMD_LP_ID_END },
      name: { type: 'string', minLength: 1, maxLength: 64 },
      description: { type: 'string' },
      uuids: { type: 'array', minItems: 1, maxItems: 8, items: { type: 'string' } },
      answers: {}, // checked by parseLogicalPartitions, whose errors say what it may be
    },
  },
} as const;
/** Hafnium's memory-regions/device-regions nodes: attributes 1 read, 2 write, 4 execute, 8 non-secure. */
const regionSchema = (device: boolean) =>
  ({
    type: 'array',
    minItems: 1,
    maxItems: MAX_REGIONS,
    items: {
      type: 'object',
      additionalProperties: false,
      required: device ? ['base-address', 'pages-count', 'attributes'] : ['pages-count', 'attributes'],
      properties: {
        description: { type: 'string' },
        'base-address': { type: 'integer', minimum: 0, maximum: 2 ** 48 },
        ...(device ? {} : { 'load-address-relative-offset': { type: 'integer', minimum: 0, maximum: 2 ** 48 } }),
        'pages-count': { type: 'integer', minimum: 1, maximum: 2 ** 24 },
        attributes: { type: 'integer', minimum: 0, maximum: 15 },
      },
    },
  }) as const;

const schema = {
  type: 'object',
  additionalProperties: false,
  required: ['partitions'],
  properties: {
    'logical-partitions': logicalPartitionsSchema,
    // Which partition manager the server answers as (server/personalities; `serve --personality` wins).
    personality: { enum: [...PERSONALITY_NAMES] },
    partitions: {
      type: 'array',
      minItems: 1,
      maxItems: 64,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name', 'uuids', 'ffa-version', 'execution-ctx-count', 'messaging-method'],
        properties: {
          id: { type: 'integer', minimum: SPMC_ID + 1, maximum: 0xffff },
          name: { type: 'string', minLength: 1, maxLength: 64 },
          description: { type: 'string' },
          uuids: { type: 'array', minItems: 1, maxItems: 8, items: { type: 'string' } },
          'ffa-version': { type: 'string', pattern: '^\\d+\\.\\d+$' },
          'execution-ctx-count': { type: 'integer', minimum: 1, maximum: 64 },
          'execution-state': { enum: ['AArch64'] },
          'messaging-method': { type: 'integer', minimum: 1, maximum: 0xffffffff },
          'notification-support': { type: 'boolean' },
          'vm-availability-messages': { type: 'integer', minimum: 0, maximum: 3 },
          'ram-bytes': { type: 'integer', minimum: FFA_PAGE_SIZE, maximum: 2 ** 40 },
          service: { enum: [...BUILTIN_SERVICES] },
          'memory-regions': regionSchema(false),
          'device-regions': regionSchema(true),
          remote: {
            type: 'object',
            additionalProperties: false,
            properties: {
              credential: { type: 'string', minLength: 8 },
              // The name of an environment variable of the server holding it (containers, CI secrets).
              'credential-env': { type: 'string', pattern: '^[A-Za-z_][A-Za-z0-9_]*$' },
            },
          },
        },
      },
    },
  },
} as const;

const validate = new Ajv({ allErrors: false, strict: true, strictRequired: false }).compile(schema);

export class ManifestError extends Error {
  constructor(
    readonly file: string,
    readonly field: string,
    readonly problem: string,
  ) {
    super(`${file}: ${field || '(top level)'}: ${problem}`);
    this.name = 'ManifestError';
  }
}

interface RawPartition {
  id?: number;
  name: string;
  uuids: string[];
  'ffa-version': string;
  'execution-ctx-count': number;
  'messaging-method': number;
  'notification-support'?: boolean;
  'vm-availability-messages'?: number;
  'ram-bytes'?: number;
  service?: string;
  remote?: { credential?: string; 'credential-env'?: string };
  'memory-regions'?: RawRegion[];
  'device-regions'?: RawRegion[];
}

interface RawRegion {
  description?: string;
  'base-address'?: number;
  'load-address-relative-offset'?: number;
  'pages-count': number;
  attributes: number;
}

const fieldPath = (instancePath: string): string =>
  instancePath
    .split('/')
    .filter(Boolean)
    .map((s, i) => (/^\d+$/.test(s) ? `[${s}]` : i === 0 ? s : `.${s}`))
    .join('');

function schemaProblem(e: ErrorObject): [string, string] {
  const at = fieldPath(e.instancePath);
  if (e.keyword === 'additionalProperties') return [at, `unknown field "${String(e.params.additionalProperty)}"`];
  if (e.keyword === 'required') return [at, `missing field "${String(e.params.missingProperty)}"`];
  if (e.keyword === 'enum') return [at, `must be one of ${JSON.stringify(e.params.allowedValues)}`];
  return [at, e.message ?? e.keyword];
}

/** Parse and validate manifest text (YAML, of which JSON is a subset). */
export function parseManifest(text: string, file = '<manifest>', env: NodeJS.ProcessEnv = process.env): PartitionManifest[] {
  let doc: unknown;
  try {
    doc = parseYaml(text, { intAsBigInt: false, uniqueKeys: true });
  } catch (e) {
    throw new ManifestError(file, '', `not valid YAML or JSON: ${(e as Error).message.split('\n')[0]}`);
  }
  if (!validate(doc)) {
    const [field, problem] = schemaProblem(validate.errors![0]!);
    throw new ManifestError(file, field, problem);
  }
  const raw = (doc as { partitions: RawPartition[] }).partitions;
  // A v1.3 personality lets partitions declare v1.3.
  const personality = findPersonality((doc as { personality?: string }).personality ?? '');
  const newest = versionFor({ ...DEFAULT_PROFILE, ...personality?.profile }, 'sp');
  const absolute: { base: bigint; limit: bigint; field: string }[] = [];
  const seenIds = new Set<number>();
  const seenNames = new Set<string>();
  return raw.map((p, i) => {
    const at = (f: string) => `partitions[${i}].${f}`;
    const id = p.id ?? SP_ID_BASE + i;
    if (seenIds.has(id)) throw new ManifestError(file, at('id'), `${hex(id)} is used twice`);
    seenIds.add(id);
    if (seenNames.has(p.name)) throw new ManifestError(file, at('name'), `"${p.name}" is used twice`);
    seenNames.add(p.name);

    if ((p.service === undefined) === (p.remote === undefined)) {
      throw new ManifestError(file, `partitions[${i}]`, 'needs exactly one of "service" (built-in) or "remote"');
    }
    const uuids = p.uuids.map((u, j) => {
      if (!isUuidString(u)) throw new ManifestError(file, at(`uuids[${j}]`), `"${u}" is not a UUID`);
      if (p.uuids.indexOf(u) !== j) throw new ManifestError(file, at(`uuids[${j}]`), `"${u}" is listed twice`);
      return parseUuid(u);
    });
    const version = parseVersion(p['ffa-version']);
    if (version === undefined || !isCompatible(version, newest)) {
      const older = newest > FFA_VERSION_IMPLEMENTED ? `, ${formatVersion(FFA_VERSION_IMPLEMENTED)}` : '';
      throw new ManifestError(file, at('ffa-version'), `must be 1.0, 1.1${older} or ${formatVersion(newest)}`);
    }
    const method = p['messaging-method'];
    if ((method & ~MESSAGING_METHOD_BITS) !== 0) {
      throw new ManifestError(file, at('messaging-method'), `${hex(method)} sets bits other than 0, 1, 2, 9 and 10`);
    }
    if ((method & REQ2_BITS) !== 0 && version < FFA_VERSION_1_2) {
      throw new ManifestError(file, at('messaging-method'), 'direct request 2 needs ffa-version 1.2');
    }
    let credential = '';
    if (p.remote) {
      const { credential: given, 'credential-env': name } = p.remote;
      if ((given === undefined) === (name === undefined)) throw new ManifestError(file, at('remote'), 'needs exactly one of "credential" or "credential-env"');
      credential = given ?? env[name!] ?? '';
      if (credential.length < 8) throw new ManifestError(file, at('remote.credential-env'), `$${name} must hold a credential of at least 8 characters`);
    }
    const vmEvents = p['vm-availability-messages'] ?? 0;
    const properties =
      method | P.AARCH64_EXEC | (p['notification-support'] ? P.NOTIFICATION_RECV : 0) | (vmEvents & 1 ? P.VM_CREATED : 0) | (vmEvents & 2 ? P.VM_DESTROYED : 0);
    const regions = parseRegions(file, at, p, absolute);
    return {
      id,
      name: p.name,
      uuids,
      ffaVersion: version,
      execContexts: p['execution-ctx-count'],
      properties,
      ramBytes: p['ram-bytes'] !== undefined ? BigInt(p['ram-bytes']) : DEFAULT_SP_RAM,
      notificationSupport: p['notification-support'] ?? false,
      behaviour: p.remote ? { kind: 'remote', credential } : { kind: 'builtin', service: p.service! },
      ...(regions.length ? { regions } : {}),
    } satisfies PartitionManifest;
  });
}

interface RawLogicalPartition {
  id: number;
  name?: string;
  uuids: string[];
  answers?: string | unknown[];
}

const ANSWER_WORD = /^0x[0-9a-fA-F]{1,16}$/;

function logicalAnswer(file: string, at: string, raw: string | unknown[] | undefined): LogicalAnswer | undefined {
  if (raw === undefined) return undefined;
  if (raw === 'echo') return { kind: 'echo' };
  if (!Array.isArray(raw)) throw new ManifestError(file, at, `"${raw}" is neither "echo" nor a list of words`);
  if (raw.length > DIRECT_MSG_ARGS) throw new ManifestError(file, at, `${raw.length} words; a direct response carries ${DIRECT_MSG_ARGS} (w3..w7)`);
  const words = raw.map((w, j) => {
    if (typeof w === 'number' && Number.isSafeInteger(w) && w >= 0) return BigInt(w);
    if (typeof w === 'string' && ANSWER_WORD.test(w)) return BigInt(w);
    throw new ManifestError(file, `${at}[${j}]`, `${JSON.stringify(w)} is not a word (a non-negative integer or a 0x-hex string of up to 16 digits)`);
  });
  return { kind: 'fixed', words };
}

/**
 * The `logical-partitions` section of a manifest (validated against the schema by parseManifest):
 * IDs unique and clear of the partitions', UUIDs valid, not Nil, once each.
 */
export function parseLogicalPartitions(text: string, partitions: readonly PartitionManifest[], file = '<manifest>'): LogicalPartition[] {
  const doc = parseYaml(text, { intAsBigInt: false, uniqueKeys: true }) as { 'logical-partitions'?: RawLogicalPartition[] };
  const raw = doc['logical-partitions'] ?? [];
  const seen = new Set<number>(partitions.map((p) => p.id));
  return raw.map((lp, i) => {
    const at = (f: string) => `logical-partitions[${i}].${f}`;
    if (seen.has(lp.id)) throw new ManifestError(file, at('id'), `${hex(lp.id)} is already used by another partition`);
    seen.add(lp.id);
    const uuids = lp.uuids.map((u, j) => {
      if (!isUuidString(u)) throw new ManifestError(file, at(`uuids[${j}]`), `"${u}" is not a UUID`);
      if (lp.uuids.indexOf(u) !== j) throw new ManifestError(file, at(`uuids[${j}]`), `"${u}" is listed twice`);
      const uuid = parseUuid(u);
      // TF-A's SPMD refuses a logical partition with the Nil UUID (spmd_logical_sp.c).
      if (isNilUuid(uuid)) throw new ManifestError(file, at(`uuids[${j}]`), 'the Nil UUID names no service');
      return uuid;
    });
    return { id: lp.id, name: lp.name ?? `lsp-${lp.id.toString(16)}`, uuids, answers: logicalAnswer(file, at('answers'), lp.answers) };
  });
}

/** A whole manifest: its partitions and the SPMD's logical partitions. */
export function parseManifestFile(
  text: string,
  file = '<manifest>',
  env: NodeJS.ProcessEnv = process.env,
): { partitions: PartitionManifest[]; logicalPartitions: LogicalPartition[]; personality?: string } {
  const partitions = parseManifest(text, file, env);
  const { personality } = parseYaml(text, { intAsBigInt: false, uniqueKeys: true }) as { personality?: string };
  return { partitions, logicalPartitions: parseLogicalPartitions(text, partitions, file), ...(personality !== undefined ? { personality } : {}) };
}

/**
 * A partition's memory-regions and device-regions, checked as Hafnium's manifest parser does:
 * exactly one of base-address and load-address-relative-offset (an offset from the partition's RAM,
 * our load address), attributes R, RW, RX or RWX (devices R or RW) plus non-secure, and absolute
 * regions that overlap no other (MANIFEST_ERROR_MEM_REGION_OVERLAP).
 */
function parseRegions(
  file: string,
  at: (f: string) => string,
  p: RawPartition,
  absolute: { base: bigint; limit: bigint; field: string }[],
): MemoryRegionDecl[] {
  const out: MemoryRegionDecl[] = [];
  for (const [key, device] of [
    ['memory-regions', false],
    ['device-regions', true],
  ] as const) {
    for (const [j, r] of (p[key] ?? []).entries()) {
      const field = at(`${key}[${j}]`);
      const relative = r['load-address-relative-offset'];
      if ((r['base-address'] === undefined) === (relative === undefined)) {
        throw new ManifestError(file, field, 'needs exactly one of "base-address" or "load-address-relative-offset"');
      }
      const decl: MemoryRegionDecl = {
        base: BigInt(r['base-address'] ?? relative!),
        relative: relative !== undefined,
        pages: r['pages-count'],
        device,
        attributes: r.attributes,
        ...(r.description !== undefined ? { description: r.description } : {}),
      };
      const problem = regionProblem(decl);
      if (problem) throw new ManifestError(file, field, problem);
      if (!decl.relative) {
        const limit = decl.base + BigInt(decl.pages) * BigInt(FFA_PAGE_SIZE);
        const clash = absolute.find((o) => decl.base < o.limit && o.base < limit);
        if (clash) throw new ManifestError(file, field, `${hex(decl.base)}..${hex(limit)} overlaps ${clash.field}`);
        absolute.push({ base: decl.base, limit, field });
      }
      out.push(decl);
    }
  }
  return out;
}

/** The reference topology of the FF-A ACS and TF-A tests: four SPs, all v1.2 and built in. */
export const DEFAULT_MANIFEST_YAML = `
partitions:
  - name: sp1
    uuids: [b4b5671e-4a90-4fe1-b81f-fb13dae1dacb]
    ffa-version: "1.2"
    execution-ctx-count: 8
    messaging-method: 0x607   # direct req/resp send+receive, indirect, direct req2 send+receive
    notification-support: true
    service: test-service
  - name: sp2
    uuids: [d1582309-f023-47b9-827c-4464f5578fc8]
    ffa-version: "1.2"
    execution-ctx-count: 8
    messaging-method: 0x607
    notification-support: true
    service: test-service
  - name: sp3
    uuids: [79b55c73-1d8c-44b9-8593-61e1770ad8d2]
    ffa-version: "1.2"
    execution-ctx-count: 1
    messaging-method: 0x603   # no indirect messaging
    notification-support: true
    service: test-service
  - name: sp4
    uuids: [a4cd5826-e113-67cf-f910-cd491368ef31]
    ffa-version: "1.2"
    execution-ctx-count: 1
    messaging-method: 0x607
    notification-support: true
    service: test-service
`;

export const defaultManifest = (): PartitionManifest[] => parseManifest(DEFAULT_MANIFEST_YAML, '<embedded default manifest>');
