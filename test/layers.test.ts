// The layers never point back (docs/architecture.md): the driver stands alone, HTTP and gRPC both sit
// on the session core, and the model imports no transport, no clock library and nothing of the driver.

import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(ROOT, dir))) {
    const path = join(dir, name);
    if (statSync(join(ROOT, path)).isDirectory()) out.push(...sources(path));
    else if (name.endsWith('.ts')) out.push(path);
  }
  return out;
}

/** Every module specifier a file imports (static imports and exports, and dynamic imports). */
function imports(file: string): string[] {
  const text = readFileSync(join(ROOT, file), 'utf8');
  return [...text.matchAll(/(?:from|import)\s*\(?\s*'([^']+)'/g)].map((m) => m[1]!);
}

/** Where a relative specifier lands, from the repository root. */
const target = (file: string, spec: string) => (spec.startsWith('.') ? relative(ROOT, join(ROOT, file, '..', spec)) : spec);

const RULES: [string, (to: string) => boolean, string][] = [
  ['client-driver', (to) => to.startsWith('server/'), 'client-driver imports nothing from server/'],
  ['server/http', (to) => to.startsWith('server/grpc/'), 'server/http does not import server/grpc'],
  [
    'server/spmc',
    (to) => /^(@grpc|fastify|pino|node:net|node:http|node:fs)|^client-driver\/|^server\/(session|grpc|http|debug)\//.test(to),
    'server/spmc imports no transport, I/O or upper layer',
  ],
  ['server/session', (to) => /^server\/(grpc|http)\//.test(to) || /^(@grpc|fastify)/.test(to), 'server/session imports no transport binding'],
  ['proto/ffa', (to) => /^(server|client-driver)\//.test(to), 'proto/ffa imports neither side'],
];

for (const [dir, forbidden, rule] of RULES) {
  t.test(rule, async (t) => {
    const files = sources(dir);
    t.ok(files.length > 0, `${dir} has sources`);
    const bad = files.flatMap((f) =>
      imports(f)
        .map((s) => target(f, s))
        .filter(forbidden)
        .map((to) => `${f} -> ${to}`),
    );
    t.same(bad, [], rule);
  });
}
