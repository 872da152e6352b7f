// Manifests: the embedded default, and errors that name the file, the field and the problem.

import t from 'tap';
import { formatUuid, PARTITION_PROPERTIES as P, SPMC_ID } from '../proto/ffa/index.js';
import { defaultManifest, ManifestError, parseManifest } from '../server/manifest.js';
import { Spmc } from '../server/spmc/spmc.js';
import { SP1_UUID, SP2_UUID, SP3_UUID, SP4_UUID } from './helpers.js';

t.test('the default manifest is the reference topology', async (t) => {
  const m = defaultManifest();
  t.same(
    m.map((p) => p.id),
    [0x8001, 0x8002, 0x8003, 0x8004],
  );
  t.same(
    m.map((p) => formatUuid(p.uuids[0]!)),
    [SP1_UUID, SP2_UUID, SP3_UUID, SP4_UUID],
  );
  t.same(
    m.map((p) => p.execContexts),
    [8, 8, 1, 1],
  );
  t.ok(m.every((p) => p.ffaVersion === 0x10002 && (p.properties & P.AARCH64_EXEC) !== 0));
  t.equal(m[2]!.properties & P.INDIRECT_MSG, 0, 'SP3 has no indirect messaging');
  t.ok(m.filter((_, i) => i !== 2).every((p) => p.properties & P.INDIRECT_MSG));
});

const good = {
  partitions: [
    {
      name: 'remote-sp',
      id: 0x8010,
      uuids: ['0badcafe-0000-4000-8000-000000000001'],
      'ffa-version': '1.1',
      'execution-ctx-count': 2,
      'messaging-method': 3,
      remote: { credential: 'secret-credential' },
    },
  ],
};

t.test('a JSON manifest with a remote partition', async (t) => {
  const [p] = parseManifest(JSON.stringify(good), 'm.json');
  t.equal(p!.id, 0x8010);
  t.same(p!.behaviour, { kind: 'remote', credential: 'secret-credential' });
  t.equal(p!.properties, 3 | P.AARCH64_EXEC);
  t.ok(new Spmc({ partitions: [p!] }).endpoint(0x8010));
});

const cases: [string, unknown, RegExp][] = [
  ['not YAML', 'partitions: [', /m\.yaml: \(top level\): not valid YAML/],
  ['no partitions', {}, /\(top level\): missing field "partitions"/],
  ['unknown field', { partitions: [{ ...good.partitions[0], colour: 'red' }] }, /partitions\[0\]: unknown field "colour"/],
  ['bad UUID', { partitions: [{ ...good.partitions[0], uuids: ['nope'] }] }, /partitions\[0\]\.uuids\[0\]: "nope" is not a UUID/],
  ['duplicate UUID', { partitions: [{ ...good.partitions[0], uuids: [SP1_UUID, SP1_UUID] }] }, /uuids\[1\]: .* listed twice/],
  ['version 2.0', { partitions: [{ ...good.partitions[0], 'ffa-version': '2.0' }] }, /partitions\[0\]\.ffa-version: must be/],
  ['version 1.3', { partitions: [{ ...good.partitions[0], 'ffa-version': '1.3' }] }, /ffa-version/],
  ['bad method', { partitions: [{ ...good.partitions[0], 'messaging-method': 0x10 }] }, /messaging-method: 0x10 sets bits/],
  ['REQ2 below 1.2', { partitions: [{ ...good.partitions[0], 'messaging-method': 0x200 }] }, /direct request 2 needs ffa-version 1\.2/],
  ['zero contexts', { partitions: [{ ...good.partitions[0], 'execution-ctx-count': 0 }] }, /execution-ctx-count: must be >= 1/],
  ['id of the SPMC', { partitions: [{ ...good.partitions[0], id: SPMC_ID }] }, new RegExp(`partitions\\[0\\]\\.id: must be >= ${SPMC_ID + 1}`)],
  ['VM id', { partitions: [{ ...good.partitions[0], id: 5 }] }, /partitions\[0\]\.id/],
  ['both service and remote', { partitions: [{ ...good.partitions[0], service: 'test-service' }] }, /exactly one of/],
  ['unknown service', { partitions: [{ ...good.partitions[0], remote: undefined, service: 'nope' }] }, /service: must be one of/],
  ['short credential', { partitions: [{ ...good.partitions[0], remote: { credential: 'x' } }] }, /remote\.credential/],
  ['duplicate ids', { partitions: [good.partitions[0], { ...good.partitions[0], name: 'other' }] }, /partitions\[1\]\.id: 0x8010 is used twice/],
];
for (const [what, doc, re] of cases) {
  t.test(`bad manifest: ${what}`, async (t) => {
    const text = typeof doc === 'string' ? doc : JSON.stringify(doc);
    t.throws(() => parseManifest(text, 'm.yaml'), ManifestError);
    t.match(
      (() => {
        try {
          parseManifest(text, 'm.yaml');
        } catch (e) {
          return (e as Error).message;
        }
        return '';
      })(),
      re,
    );
  });
}
