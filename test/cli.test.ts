// The remote-spmc command line as a user meets it, run as processes: help, one-line failures with
// the right exit status, closed pipes, the credential variable the deployment files agree on, and
// what `npm start` and `npm install` do. (The vm operations against a server: cli-vm.test.ts.)

import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { parse as parseYaml } from 'yaml';
import { OPS } from '../server/cli/scenario.js';
import { COMMANDS, deadAddress, file, lines, MAIN, REPO, run, STACK, startServer, tmpPath } from './fixtures/cli.js';

// ---- help and usage ----------------------------------------------------------------------------

t.test('no arguments: the usage on stderr and a non-zero exit', async (t) => {
  const r = await run([]);
  t.equal(r.code, 2);
  t.equal(r.stdout, '');
  t.match(r.stderr, /^usage: remote-spmc COMMAND/);
  for (const c of COMMANDS) t.match(r.stderr, new RegExp(`^  ${c} `, 'm'), `lists ${c}`);
});

/** Each command's --help, run once for the tests that read them. */
let helps: Promise<Record<string, Awaited<ReturnType<typeof run>>>> | undefined;
const helpOf = async (c: string) => {
  helps ??= Promise.all(COMMANDS.map(async (x) => [x, await run([x, '--help'])] as const)).then(Object.fromEntries);
  return (await helps)[c]!;
};

t.test("COMMAND --help prints that command's usage; vm --help lists its operations", async (t) => {
  const seen = new Set<string>();
  for (const c of COMMANDS) {
    const r = await helpOf(c);
    t.equal(r.code, 0, `${c} --help`);
    t.equal(r.stderr, '');
    t.match(r.stdout, new RegExp(`^usage: remote-spmc ${c} `), `${c} --help: its own usage`);
    seen.add(r.stdout);
  }
  t.equal(seen.size, COMMANDS.length, 'one text per command, not the global one');
  t.equal((await run(['state', '-h'])).stdout, (await helpOf('state')).stdout, '-h');
  t.equal((await run(['help', 'vm'])).stdout, (await helpOf('vm')).stdout, 'help vm');
  t.equal((await run(['vm', 'direct', '0x8001', '--help'])).stdout, (await helpOf('vm')).stdout, '--help after an operation');
  const global = await run(['--help']);
  t.equal(global.code, 0);
  t.match(global.stdout, /^usage: remote-spmc COMMAND/);

  const vm = (await helpOf('vm')).stdout;
  for (const op of Object.keys(OPS)) t.match(vm, new RegExp(`^  ${op}( |$)`, 'm'), `vm --help lists ${op}`);
  for (const flag of ['--timeout', '--properties', '--name', '--vcpus', '--id', '--script', '--scenario', 'REMOTE_SPMC_SERVER'])
    t.ok(vm.includes(flag), `vm --help: ${flag}`);
  t.match((await helpOf('serve')).stdout, /--max-vms N\s+VMs attached at once.*\(default 256\)/s);
  t.match((await helpOf('partition')).stdout, /--credential-env NAME.*\(default\s+REMOTE_SPMC_CREDENTIAL\)/s);
});

/** Every .ts file under a directory of the repository. */
function sources(sub: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const n of readdirSync(d)) {
      const p = join(d, n);
      if (statSync(p).isDirectory()) walk(p);
      else if (n.endsWith('.ts') && !n.endsWith('.d.ts')) out.push(p);
    }
  };
  walk(join(REPO, sub));
  return out;
}

t.test('every flag and environment variable the code reads is in the usage and the README', async (t) => {
  const readme = readFileSync(join(REPO, 'README.md'), 'utf8');
  let usage = '';
  for (const c of COMMANDS) {
    const text = (await helpOf(c)).stdout;
    usage += text;
    for (const [, flag] of text.matchAll(/^\s+(--[a-z][a-z0-9-]*)/gm)) {
      if (flag === '--help') continue;
      t.match(readme, new RegExp(`${flag}(?![a-z0-9-])`), `README: ${c} ${flag}`);
    }
  }
  // Environment variables: read directly, or as a flag's fallback, or as a named default.
  const env = new Set<string>();
  for (const f of [...sources('server'), ...sources('client-driver')]) {
    const src = readFileSync(f, 'utf8');
    for (const re of [/process\.env\.([A-Z][A-Z0-9_]*)/g, /\benv: '([A-Z][A-Z0-9_]*)'/g, /_ENV = '([A-Z][A-Z0-9_]*)'/g])
      for (const [, name] of src.matchAll(re)) env.add(name!);
  }
  t.ok(env.has('REMOTE_SPMC_SERVER') && env.has('REMOTE_SPMC_CREDENTIAL'), `found ${[...env].join(', ')}`);
  for (const name of env) {
    t.ok(usage.includes(name), `usage: ${name}`);
    t.ok(readme.includes(name), `README: ${name}`);
  }
});

// ---- failures: one line, the right status, no stack ---------------------------------------------

t.test('state, trace and health against a server that is not there (and serve with a file it cannot write): one line, exit 1', async (t) => {
  const nowhere = await deadAddress();
  for (const c of ['state', 'trace', 'health']) {
    const r = await run([c, '--server', nowhere]);
    t.equal(r.code, 1, c);
    const out = c === 'health' ? r.stdout : r.stderr;
    t.equal(out.trim().split('\n').length, 1, `${c}: one line: ${out}`);
    t.match(out, new RegExp(`${nowhere.replace(/\./g, '\\.')}: unreachable \\(connect ECONNREFUSED`), c);
    t.notMatch(r.stdout + r.stderr, STACK, `${c}: no stack`);
  }
  // The same from the environment.
  const r = await run(['state'], { REMOTE_SPMC_SERVER: nowhere });
  t.equal(r.code, 1);
  t.match(r.stderr, nowhere, 'REMOTE_SPMC_SERVER is the default --server');
  // A file the server cannot write is one line too.
  const f = await run(['serve', '--grpc', '127.0.0.1:0', '--http', '127.0.0.1:0', '--log-level', 'silent', '--trace-file', tmpPath('no-such-dir/trace.jsonl')]);
  t.equal(f.code, 1);
  t.match(f.stderr, /^remote-spmc: cannot open .*no-such-dir\/trace\.jsonl: ENOENT\n$/);
});

t.test('command-line mistakes: one line in command-line words, the usage line, exit 2', async (t) => {
  const script = file('bad.script', 'info\ndirect 0x8001 ECHO\nnotify 1 99\n');
  const scenario = file('bad.yaml', 'steps:\n  - { op: info }\n  - { op: direct, to: nowhere }\n');
  const typo = file('typo.yaml', 'steps:\n  - { op: share, too: 0x8001 }\n');
  const cases: [string[], RegExp][] = [
    // Issue 12: a missing manifest for replay is a command-line mistake, as for serve.
    [['replay', file('empty.jsonl', ''), '--manifest', tmpPath('missing.yaml')], /--manifest: cannot read .*missing\.yaml: ENOENT/],
    [['replay', tmpPath('missing.jsonl')], /replay: cannot read .*missing\.jsonl: ENOENT/],
    [['replay'], /a trace file .* is required/],
    [['vm', 'direct', 'foo'], /^remote-spmc: direct TARGET: "foo" is not an endpoint id/],
    [['vm', 'direct', '0x8001', '1', '2', '3', '4', '5', '6'], /direct W3\.\.W7: at most 5 words, got 6/],
    [['vm', 'share', '0x8001', 'many'], /share PAGES: "many" is not a page count 1\.\.256/],
    [['vm', 'notify', '0x8001'], /notify ID: required \(notify TARGET ID\)/],
    [['vm', 'retrieve', '1', '2'], /retrieve: unexpected "2" \(usage: retrieve FROM\)/],
    [['vm', 'frobnicate'], /unknown operation "frobnicate"/],
    [['vm', '--script', script], /bad\.script:3: notify ID: "99" is not a notification id 0\.\.63/],
    [['vm', '--scenario', scenario], /bad\.yaml: steps\[1\]\.to: "nowhere" is not an endpoint id/],
    [['vm', '--scenario', typo], /typo\.yaml: steps\[0\]\.too: share has no field "too"/],
    [['vm', '--scenario', tmpPath('nope.yaml')], /--scenario: cannot read .*nope\.yaml: ENOENT/],
    [['vm', '--scenario', scenario, 'info'], /give one of/],
    [['vm', '--id', '99999', 'info'], /--id: expected an integer 0\.\.32767/],
    [['vm', '--timeout', 'soon', 'info'], /--timeout: expected an integer 0\.\.3600/],
    [['vm', '--server', 'nohost', 'info'], /--server: expected HOST:PORT/],
    [['state', '--bogus'], /Unknown option '--bogus'/],
    [['trace', '--recent', '-1'], /--recent/],
    [['health', '--timeout', '0'], /--timeout: seconds/],
    [['serve', '--max-vms', '0'], /--max-vms: expected an integer 1\.\.32767/],
    [['serve', '--max-vms', 'lots'], /--max-vms: expected an integer/],
    [['partition', '--id', '0x8010'], /a credential is required: --credential SECRET, or \$REMOTE_SPMC_CREDENTIAL/],
    [['partition', '--id', '0x8010', '--credential-env', 'NOT-A-NAME'], /--credential-env: "NOT-A-NAME" is not an environment variable name/],
  ];
  for (const [args, re] of cases) {
    const r = await run(args, { REMOTE_SPMC_CREDENTIAL: '' });
    t.equal(r.code, 2, args.join(' '));
    t.match(r.stderr, re, args.join(' '));
    t.notMatch(r.stderr, STACK, 'no stack');
    t.equal(r.stdout, '', 'nothing on stdout');
    if (!args.includes('--scenario')) t.notMatch(r.stderr, /steps\[/, 'no scenario words for a command-line mistake');
    t.match(r.stderr.split('\n')[1] ?? '', /^usage: remote-spmc /, 'then the usage line');
  }
});

t.test('writing to a closed pipe ends quietly (trace | head -n 1)', async (t) => {
  const server = await startServer(t);
  // bash reports the trace's own exit status after head has gone.
  const sh = spawn(
    'bash',
    ['-c', `"${process.execPath}" "${MAIN}" trace --server ${server.grpc} --recent 3 | head -n 1; echo "trace exit \${PIPESTATUS[0]}" >&2`],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  t.teardown(() => void sh.kill('SIGKILL'));
  let stderr = '';
  sh.stderr!.on('data', (d) => (stderr += d));
  const done = once(sh, 'exit');
  const first = await lines(sh).until(() => true);
  t.match(first, /^\s+\d+ /, 'the first record went through');
  // Every new call is a record the trace must write, into the pipe head has closed.
  let ended = false;
  void done.then(() => (ended = true));
  while (!ended) await run(['vm', '--server', server.grpc, 'info']);
  await done;
  t.equal(stderr, 'trace exit 0\n', 'no EPIPE error, no stack, status 0');
});

t.test('docker-compose.yml and deploy/manifest.yaml name one credential variable', async (t) => {
  const compose = parseYaml(readFileSync(join(REPO, 'docker-compose.yml'), 'utf8')) as {
    services: Record<string, { command: string[]; environment?: Record<string, string> }>;
  };
  const manifest = parseYaml(readFileSync(join(REPO, 'deploy/manifest.yaml'), 'utf8')) as {
    partitions: { name: string; id?: number; remote?: Record<string, string> }[];
  };
  const remote = manifest.partitions.find((p) => p.remote)!;
  const name = remote.remote!['credential-env']!;
  t.ok(name, 'the manifest names a variable');
  const sp = compose.services['sp-remote']!;
  t.equal(sp.command[sp.command.indexOf('--credential-env') + 1], name, 'sp-remote reads that variable');
  t.equal(sp.command[sp.command.indexOf('--id') + 1], `0x${remote.id!.toString(16)}`, 'as that partition');
  t.ok(sp.environment?.[name], 'sp-remote is given it');
  t.equal(sp.environment?.[name], compose.services.spmc!.environment?.[name], 'with the value the server gets');
});

// ---- first use -----------------------------------------------------------------------------------

t.test('npm start only starts (prepare builds); no locked package wants a Node newer than 20', async (t) => {
  const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
  t.equal(pkg.scripts.start, 'node dist/server/main.js serve');
  t.match(pkg.scripts.prepare, /npm run build/);
  const lock = JSON.parse(readFileSync(join(REPO, 'package-lock.json'), 'utf8')) as { packages: Record<string, { engines?: { node?: string } }> };
  const tooNew = Object.entries(lock.packages)
    .filter(([, p]) => {
      const m = /^\s*>=?\s*v?(\d+)/.exec(p.engines?.node ?? '');
      return m !== null && Number(m[1]) > 20;
    })
    .map(([k, p]) => `${k} (${p.engines!.node})`);
  t.same(tooNew, [], 'npm install on Node 20 prints no EBADENGINE');
});
