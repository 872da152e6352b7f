// `serve --personality` and the manifest's `personality` field.

import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import t from 'tap';
import { FFA_VERSION_1_3, fid, toRegisters, U32 } from '../proto/ffa/index.js';
import { GrpcConnector } from '../client-driver/transport/grpc.js';
import { ManifestError, parseManifestFile } from '../server/manifest.js';
import { PERSONALITY_NAMES } from '../server/personalities/index.js';
import { file, run, startServer, tmpPath } from './fixtures/cli.js';

const PARTITION = {
  name: 'sp',
  uuids: ['b4b5671e-4a90-4fe1-b81f-fb13dae1dacb'],
  'execution-ctx-count': 1,
  'messaging-method': 3,
  service: 'test-service',
};
const manifest = (extra: object, version = '1.2') => JSON.stringify({ ...extra, partitions: [{ ...PARTITION, 'ffa-version': version }] });

t.test('serve --personality list prints one line each, the default marked', async (t) => {
  const r = await run(['serve', '--personality', 'list']);
  t.equal(r.code, 0);
  const out = r.stdout.trimEnd().split('\n');
  t.same(
    out.map((l) => l.split(/\s+/)[0]),
    [...PERSONALITY_NAMES],
  );
  t.match(out[0], /^hafnium\s.*\[default\]$/);
  t.match(r.stdout, /descriptor-48 .*NV-Kernels #437/);
});

t.test('an unknown personality is a usage error that names the known ones (exit 2)', async (t) => {
  const r = await run(['serve', '--personality', 'hafnum']);
  t.equal(r.code, 2);
  t.match(r.stderr, /--personality: unknown personality "hafnum"; one of hafnium, hafnium-2\.14, tf-a-el3-spmc, optee, physical/);
  const m = await run(['serve', '--manifest', file('bad-personality.yaml', manifest({ personality: 'hafnum' }))]);
  t.equal(m.code, 2);
  t.match(m.stderr, /bad-personality\.yaml: personality: must be one of \["hafnium",/);
});

t.test('the manifest field: validated, and what lets partitions declare v1.3', async (t) => {
  t.equal(parseManifestFile(manifest({ personality: 'optee' }), 'm.yaml').personality, 'optee');
  t.equal(parseManifestFile(manifest({}), 'm.yaml').personality, undefined, 'absent: the server decides');
  t.throws(() => parseManifestFile(manifest({}, '1.3'), 'm.yaml'), ManifestError, 'v1.3 needs a v1.3 personality');
  t.equal(parseManifestFile(manifest({ personality: 'hafnium-2.14' }, '1.3'), 'm.yaml').partitions[0]!.ffaVersion, FFA_VERSION_1_3);
  t.throws(() => parseManifestFile(manifest({ personality: 'hafnium-2.14' }, '1.4'), 'm.yaml'), /must be 1\.0, 1\.1, 1\.2 or 1\.3/);
});

t.test('serve answers as the manifest’s personality, and --personality overrides it', async (t) => {
  const m = file('physical.yaml', manifest({ personality: 'physical' }));
  const s = await startServer(t, ['--manifest', m]);
  const c = new GrpcConnector(s.grpc);
  t.teardown(() => c.close());
  const a = await c.attach({});
  t.equal(a.endpointId, 0, 'physical: the normal world is endpoint 0');
  await a.transport.detach();

  const over = await startServer(t, ['--manifest', m, '--personality', 'hafnium-2.14']);
  const c2 = new GrpcConnector(over.grpc);
  t.teardown(() => c2.close());
  const b = await c2.attach({});
  t.not(b.endpointId, 0, 'hafnium-2.14 has a hypervisor view');
  const v = await b.transport.invoke(toRegisters([fid('VERSION'), 0x10002]));
  t.equal(Number(v[0]! & U32), FFA_VERSION_1_3, 'FFA_VERSION answers 1.3');
  await b.transport.detach();
});

for (const name of ['optee', 'clobber-x8-x17']) {
  t.test(`a trace records the personality (${name}) and a replay answers as it did`, async (t) => {
    const traceFile = tmpPath(`${name}-trace.jsonl`);
    const server = await startServer(t, ['--personality', name, '--trace-file', traceFile]);
    const env = { REMOTE_SPMC_SERVER: server.grpc };
    const direct = await run(['vm', 'direct', '0x8001', 'ECHO', '0x77'], env);
    t.equal(direct.code, 0, direct.stdout + direct.stderr);
    server.child.kill('SIGTERM');
    await once(server.child, 'close');
    const text = readFileSync(traceFile, 'utf8');
    const field = `,"personality":"${name}"`;
    t.ok(text.split('\n')[0]!.includes(field), 'the header names it');
    const replayed = await run(['replay', traceFile]);
    t.equal(replayed.code, 0, replayed.stdout + replayed.stderr);
    t.match(replayed.stdout, /^all \d+ calls matched/);
    // Without it the model answers as Hafnium, and the answers differ.
    const differs = await run(['replay', file(`plain-${name}.jsonl`, text.replace(field, ''))]);
    t.not(differs.code, 0, 'the same calls against Hafnium do not match');
  });
}

t.test('a trace naming an unknown personality is refused', async (t) => {
  const traceFile = tmpPath('unknown-trace.jsonl');
  const server = await startServer(t, ['--personality', 'physical', '--trace-file', traceFile]);
  server.child.kill('SIGTERM');
  await once(server.child, 'close');
  const text = readFileSync(traceFile, 'utf8');
  const unknown = await run(['replay', file('unknown-trace.jsonl', text.replace('"personality":"physical"', '"personality":"nope"'))]);
  t.equal(unknown.code, 2);
  t.match(unknown.stderr, /personality "nope" is not one this server knows/);
});
