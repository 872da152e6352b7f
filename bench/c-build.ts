// Building the C library (clients/c) and its programs with CMake, once per source tree: the C tests
// and the C benchmark share it. The build lives in the temporary directory, named by a hash of the
// sources, the .proto and the FF-A header, so an unchanged tree reuses it. CMake writes the FF-A
// header (rspmc_ffa.h) with the compiled bench/c-ffa-header.ts: this file runs from dist/, so it
// is there; CMake is told where, and which node to run it with.

import { execFile, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { ffaCHeader } from './c-ffa-header.js';

const run = promisify(execFile);
/** The repository (this file runs from dist/bench/). */
const REPO = fileURLToPath(new URL('../../', import.meta.url));
export const C_CLIENT_SRC = join(REPO, 'clients', 'c');
const PROTO = join(REPO, 'proto', 'remote_spmc.proto');
const FFA_HEADER_GENERATOR = fileURLToPath(new URL('./c-ffa-header.js', import.meta.url));

/** What is missing to build the library (a tool, the gRPC C++ development files), if anything. */
export function cClientMissing(): string | undefined {
  for (const tool of ['cmake', 'c++', 'cc', 'pkg-config', 'protoc', 'grpc_cpp_plugin'])
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) return `${tool} is not installed`;
  if (spawnSync('pkg-config', ['--exists', 'grpc++', 'protobuf']).status !== 0) return 'grpc++ and protobuf development files are not installed';
  return undefined;
}

function sourceHash(buildType: string): string {
  const h = createHash('sha256').update(buildType);
  const walk = (dir: string) => {
    for (const name of readdirSync(dir).sort()) {
      const p = join(dir, name);
      if (statSync(p).isDirectory()) walk(p);
      else h.update(p).update(readFileSync(p));
    }
  };
  walk(C_CLIENT_SRC);
  h.update(readFileSync(PROTO)).update(ffaCHeader());
  return h.digest('hex').slice(0, 16);
}

/**
 * Build clients/c and return the directory holding librspmc and the test programs (run them with
 * LD_LIBRARY_PATH set to it: the directory was renamed after the build).
 */
export async function buildCClient(buildType: '' | 'Release' = ''): Promise<string> {
  const dir = join(tmpdir(), `rspmc-c-${sourceHash(buildType)}`);
  if (existsSync(join(dir, '.built'))) return dir;
  const work = `${dir}.${process.pid}`;
  rmSync(work, { recursive: true, force: true });
  if (!existsSync(FFA_HEADER_GENERATOR)) throw new Error(`${FFA_HEADER_GENERATOR} is missing: run npm run build first`);
  const cmakeArgs = [`-DCMAKE_BUILD_TYPE=${buildType}`, `-DNODE=${process.execPath}`, `-DFFA_HEADER_GENERATOR=${FFA_HEADER_GENERATOR}`];
  await run('cmake', ['-S', C_CLIENT_SRC, '-B', work, ...cmakeArgs], { maxBuffer: 1 << 24 });
  await run('cmake', ['--build', work, '-j2'], { maxBuffer: 1 << 24 });
  writeFileSync(join(work, '.built'), '');
  try {
    renameSync(work, dir);
  } catch {
    rmSync(work, { recursive: true, force: true }); // another run built it meanwhile
  }
  return dir;
}

/** A manifest with SP1 (built in) and a remote partition `id` for a C (or TypeScript) process. */
export const cManifest = (id: number, credential: string): string => `partitions:
  - name: sp1
    uuids: [b4b5671e-4a90-4fe1-b81f-fb13dae1dacb]
    ffa-version: "1.2"
    execution-ctx-count: 8
    messaging-method: 0x607
    notification-support: true
    service: test-service
  - name: c-sp
    id: ${id}
    uuids: [0badcafe-0000-4000-8000-000000000010]
    ffa-version: "1.2"
    execution-ctx-count: 1
    messaging-method: 0x607
    notification-support: true
    remote: { credential: ${credential} }
`;
