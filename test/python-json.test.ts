// The JSON transport from another language: test/python/test_json_memory.py (standard library
// only) against a served model; each of its TAP lines is an assertion here. It gets the FF-A
// numbers from proto/ffa, as JSON in RSPMC_FFA.

import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { ffaConstants } from '../bench/c-ffa-header.js';
import { newSpmc, servedSpmc } from './helpers.js';

const here = dirname(fileURLToPath(import.meta.url));
// dist/test/... -> test/python (the sources are not compiled).
const script = join(here, '..', '..', 'test', 'python', 'test_json_memory.py');
const python = spawnSync('python3', ['--version']).status === 0;

t.test('a Python client attaches, writes TX, maps buffers and reads RX over JSON', { skip: python ? false : 'python3 is not installed' }, async (t) => {
  const served = await servedSpmc(newSpmc());
  t.teardown(served.stop);
  const out = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    import('node:child_process').then(({ execFile }) =>
      execFile('python3', [script, served.base], { env: { ...process.env, RSPMC_FFA: JSON.stringify(ffaConstants()) } }, (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      ),
    );
  });
  const lines = out.stdout.split('\n').filter((l) => /^(not )?ok \d+/.test(l));
  t.ok(lines.length >= 10, `the script ran its checks (stderr: ${out.stderr.trim()})`);
  for (const l of lines) t.ok(l.startsWith('ok'), l.replace(/^(not )?ok \d+ - /, ''));
  t.equal(out.code, 0, 'the script exits 0');
});
