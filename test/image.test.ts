// What the Docker image builds and ships: only what runs (proto, server, client-driver), never the
// tests or the benches; and bench/ stands without test/. Checked from the Dockerfile and from the
// files TypeScript pulls in from each root (no Docker engine needed).

import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const TSC = createRequire(join(REPO, 'package.json')).resolve('typescript/bin/tsc');
const RUNS = ['proto', 'server', 'client-driver'];

/** The repository's own files a program rooted at `roots` compiles (imports followed), relative to the repo. */
async function programFiles(t: { teardown(fn: () => void): void }, roots: string[]): Promise<string[]> {
  const dir = mkdtempSync(join(tmpdir(), 'rspmc-program-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const config = join(dir, 'tsconfig.json');
  // Paths in a tsconfig are its own directory's: name the repository's explicitly.
  const typeRoots = [join(REPO, 'node_modules/@types')];
  writeFileSync(
    config,
    JSON.stringify({ extends: join(REPO, 'tsconfig.json'), compilerOptions: { typeRoots }, include: roots.map((r) => join(REPO, r, '**/*.ts')) }),
  );
  const out = await new Promise<string>((resolve, reject) =>
    execFile(process.execPath, [TSC, '-p', config, '--listFilesOnly'], { maxBuffer: 16 << 20 }, (err, stdout, stderr) =>
      err
        ? reject(
            new Error(
              `${stdout}${stderr}`
                .split('\n')
                .filter((l) => l.includes('error'))
                .join('\n'),
            ),
          )
        : resolve(stdout),
    ),
  );
  return out
    .split('\n')
    .filter((f) => f.startsWith(REPO) && !f.includes('/node_modules/'))
    .map((f) => f.slice(REPO.length));
}

t.test("the image's build stage copies only what runs; .dockerignore leaves tests and benches out", async (t) => {
  const dockerfile = readFileSync(join(REPO, 'Dockerfile'), 'utf8');
  const stages = dockerfile.split(/^FROM /m).slice(1);
  const build = stages.find((s) => / AS build\b/.test(s.split('\n')[0]!));
  t.ok(build, 'a build stage');
  const copied = [...build!.matchAll(/^COPY (?!--from)(.+)$/gm)].flatMap((m) => m[1]!.trim().split(/\s+/).slice(0, -1));
  t.same(copied.sort(), ['client-driver', 'package-lock.json', 'package.json', 'proto', 'server', 'tsconfig.json']);
  const runtimeCopies = stages.slice(1).flatMap((s) => [...s.matchAll(/^COPY (.+)$/gm)].map((m) => m[1]!));
  t.notOk(
    runtimeCopies.some((c) => /\b(test|bench)\b/.test(c)),
    'the runtime stage copies no test or bench',
  );
  const ignored = readFileSync(join(REPO, '.dockerignore'), 'utf8')
    .split('\n')
    .map((l) => l.trim());
  t.ok(ignored.includes('test') && ignored.includes('bench'), '.dockerignore leaves out test and bench');
});

t.test('what runs compiles without any test or bench file', async (t) => {
  const files = await programFiles(t, RUNS);
  t.ok(
    files.some((f) => f === 'server/main.ts'),
    'the entry point is in it',
  );
  t.same(
    files.filter((f) => !RUNS.some((r) => f.startsWith(`${r}/`))),
    [],
    'nothing from outside proto, server and client-driver',
  );
});

t.test('bench/ imports nothing from test/', async (t) => {
  const files = await programFiles(t, ['bench']);
  t.ok(files.includes('bench/run.ts'));
  t.same(
    files.filter((f) => f.startsWith('test/')),
    [],
  );
});
