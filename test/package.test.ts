// The package as a consumer sees it: the README's "Using the driver" example type-checks in a
// project that depends on remote-spmc by name (the exports map and the emitted declarations), and
// the same names load at run time. Offline: the dependency is a symlink to this checkout.

import { execFile } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const FIXTURE = join(REPO, 'test/fixtures/consumer');
const TSC = createRequire(join(REPO, 'package.json')).resolve('typescript/bin/tsc');

/** The first ```ts block under the README's "## Using the driver". */
function readmeExample(): string {
  const readme = readFileSync(join(REPO, 'README.md'), 'utf8');
  const section = readme.split(/^## /m).find((s) => s.startsWith('Using the driver'));
  const code = section && /```ts\n([\s\S]*?)```/.exec(section)?.[1];
  if (!code) throw new Error('README.md: no ```ts block under "## Using the driver"');
  return code;
}

/** The fixture project in a temp dir, remote-spmc (this checkout) and @types/node linked in. */
function consumerProject(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'rspmc-consumer-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  cpSync(FIXTURE, dir, { recursive: true });
  mkdirSync(join(dir, 'node_modules/@types'), { recursive: true });
  symlinkSync(REPO, join(dir, 'node_modules/remote-spmc'), 'dir');
  symlinkSync(join(REPO, 'node_modules/@types/node'), join(dir, 'node_modules/@types/node'), 'dir');
  return dir;
}

function run(file: string, args: string[], cwd: string): Promise<{ code: number; output: string }> {
  return new Promise((resolve) =>
    execFile(process.execPath, [file, ...args], { cwd }, (err, stdout, stderr) =>
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, output: `${stdout}${stderr}` }),
    ),
  );
}

t.test("the README's driver example type-checks in a consumer project (tsc --noEmit)", async (t) => {
  const dir = consumerProject(t);
  const example = readmeExample();
  t.match(example, /from 'remote-spmc\//, 'it imports the package by name');
  writeFileSync(join(dir, 'main.ts'), example);
  // Beside it, a misuse, to show the check has teeth: the declarations carry real types (not any),
  // and only the exported paths resolve.
  writeFileSync(
    join(dir, 'misuse.ts'),
    [
      "import { FfaDriver } from 'remote-spmc/client-driver/driver';",
      "import { EmulatedVm } from 'remote-spmc/dist/client-driver/vm.js';",
      'declare const drv: FfaDriver;',
      'const id: string = drv.vmId;',
      'export { EmulatedVm, id };',
    ].join('\n'),
  );
  const r = await run(TSC, ['-p', dir], dir);
  const errors = r.output.split('\n').filter((l) => / error TS\d+/.test(l));
  t.same(
    errors.filter((l) => !l.startsWith('misuse.ts(')),
    [],
    'the example has no errors',
  );
  t.same(
    errors.map((l) => l.replace(/^(\S+)\((\d+),\d+\): error (TS\d+):.*$/, '$1:$2 $3')),
    ['misuse.ts:2 TS2307', 'misuse.ts:4 TS2322'],
    'the misuse fails twice: a path outside the exports map is not found, a number is not a string',
  );
});

t.test('the exported paths load at run time; the build layout stays private', async (t) => {
  const dir = consumerProject(t);
  writeFileSync(
    join(dir, 'load.mjs'),
    [
      "const { FfaDriver } = await import('remote-spmc/client-driver/driver');",
      "const { GrpcConnector } = await import('remote-spmc/client-driver/transport/grpc');",
      "const { FFA_ERRORS } = await import('remote-spmc/proto/ffa');",
      "const { Spmc } = await import('remote-spmc/server/spmc/spmc');",
      "const hidden = await import('remote-spmc/dist/client-driver/driver.js').then(() => 'loaded', (e) => e.code);",
      'console.log(JSON.stringify([typeof FfaDriver, typeof GrpcConnector, FFA_ERRORS.DENIED, typeof Spmc, hidden]));',
    ].join('\n'),
  );
  const r = await run(join(dir, 'load.mjs'), [], dir);
  t.equal(r.code, 0, `it runs${r.code ? `: ${r.output}` : ''}`);
  t.same(JSON.parse(r.output), ['function', 'function', -6, 'function', 'ERR_PACKAGE_PATH_NOT_EXPORTED']);
});
