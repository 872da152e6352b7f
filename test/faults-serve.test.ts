// `serve --faults FILE` as a user runs it: a bad file is exit 2 naming the field; a good one (YAML
// or JSON) is in force from the start, listed at /v1/faults, marked in the trace, and replayable
// from the trace file.

import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { errorCodeFromWord, FFA_ERRORS, FFA_VERSION_1_2, fid } from '../proto/ffa/index.js';
import { replayFile } from '../server/debug/replay.js';
import { readFaultsFile } from '../server/faults/index.js';

const MAIN = fileURLToPath(new URL('../server/main.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'rspmc-faults-serve-'));
const file = (name: string, text: string) => {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
};

const MINIMAL = `rules:
  - id: busy-twice
    match: { caller: 1, function: FFA_MSG_SEND_DIRECT_REQ }
    action: { error: BUSY }
    times: 2
`;

t.test('a rules file, YAML or JSON', async (t) => {
  t.equal(readFaultsFile(file('min.yaml', MINIMAL)).rules[0]!.id, 'busy-twice');
  t.equal(readFaultsFile(file('min.json', JSON.stringify({ seed: 3, rules: [{ id: 'j', action: { delay: 1 } }] }))).seed, 3);
  t.throws(() => readFaultsFile(join(dir, 'missing.yaml')), /missing\.yaml: cannot read \(ENOENT\)/);
  t.throws(() => readFaultsFile(file('bad.yaml', 'rules: [')), /bad\.yaml: not YAML or JSON/);
  t.throws(() => readFaultsFile(file('wrong.yaml', 'rules: [{ id: x, action: { error: NOPE } }]')), /wrong\.yaml: faults\.rules\[0\]\.action\.error: "NOPE"/);
});

t.test('serve --faults with a bad rule exits 2 naming the file and field', async (t) => {
  const child = spawn(
    process.execPath,
    [
      MAIN,
      'serve',
      '--grpc',
      '127.0.0.1:0',
      '--http',
      '127.0.0.1:0',
      '--faults',
      file('bad-rule.yaml', 'rules: [{ id: x, match: { function: NOPE }, action: { error: BUSY } }]'),
    ],
    {
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const guard = setTimeout(() => child.kill('SIGKILL'), 20_000);
  const [code] = await once(child, 'exit');
  clearTimeout(guard);
  t.equal(code, 2);
  t.match(stderr, /--faults: .*bad-rule\.yaml: faults\.rules\[0\]\.match\.function: "NOPE" is not an FF-A function name/);
});

t.test('serve --faults: the minimal rule acts from the start, is listed, marked and replayable', async (t) => {
  const trace = join(dir, 'serve.jsonl');
  const child = spawn(
    process.execPath,
    [MAIN, 'serve', '--grpc', '127.0.0.1:0', '--http', '127.0.0.1:0', '--faults', file('serve.yaml', MINIMAL), '--trace-file', trace],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  t.teardown(() => void child.kill('SIGKILL'));
  const http = await new Promise<string>((resolve) =>
    createInterface({ input: child.stdout! }).on('line', (l) => {
      try {
        const o = JSON.parse(l) as { msg?: string; http?: string };
        if (o.msg === 'listening') resolve(o.http!);
      } catch {
        // not a log line
      }
    }),
  );
  const post = async (path: string, body: object) =>
    (await fetch(`http://${http}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })).json() as Promise<
      Record<string, unknown>
    >;
  const listed = (await (await fetch(`http://${http}/v1/faults`)).json()) as { rules: { rule: { id: string } }[] };
  t.equal(listed.rules[0]!.rule.id, 'busy-twice');
  const a = (await post('/v1/attach', { name: 'vm' })) as { session: string; endpointId: number };
  t.equal(a.endpointId, 1);
  const call = async (x: number[]) =>
    ((await post('/v1/smccc', { session: a.session, x: x.map((v) => `0x${v.toString(16)}`) })) as { x: string[] }).x.map((v) => BigInt(v));
  await call([fid('VERSION'), FFA_VERSION_1_2]);
  const req = [fid('MSG_SEND_DIRECT_REQ'), 0x18001, 0, 0x6563686f, 1];
  const busy = (r: bigint[]) => Number(r[0]! & 0xffffffffn) === fid('ERROR') && errorCodeFromWord(r[2]!) === FFA_ERRORS.BUSY;
  t.ok(busy(await call(req)));
  t.ok(busy(await call(req)));
  t.equal(Number((await call(req))[0]! & 0xffffffffn), fid('MSG_SEND_DIRECT_RESP'));
  await post('/v1/detach', { session: a.session });
  child.kill('SIGTERM');
  await once(child, 'exit');
  const lines = readFileSync(trace, 'utf8');
  t.equal((lines.match(/"injected":"busy-twice"/g) ?? []).length, 2, 'two marked answers in the file');
  t.equal(replayFile(trace).difference, undefined, 'the run replays');
});
