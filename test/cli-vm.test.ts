// `remote-spmc vm` against a server, as processes: every memory operation end to end against the
// built-in partitions and between VM processes, steps that wait for a peer VM (and those that must
// not wait), serve --max-vms, and partition --credential-env.

import t from 'tap';
import { DEFAULT_MANIFEST_YAML } from '../server/manifest.js';
import { file, run, start, startServer } from './fixtures/cli.js';

// ---- vm memory operations, end to end -----------------------------------------------------------

t.test('vm share, lend and donate to built-in partitions, from the command line, a script and a scenario', async (t) => {
  const server = await startServer(t);
  const env = { REMOTE_SPMC_SERVER: server.grpc };
  for (const [op, to, pages, pattern] of [
    ['share', '0x8001', '1', '0x5a'],
    ['lend', '0x8002', '3', '0x11'],
    ['donate', '0x8001', '2', '0x22'],
    ['donate', '0x8004', '1', '0xff'],
  ] as const) {
    const r = await run(['vm', op, to, pages, pattern], env);
    t.equal(r.code, 0, `${op} ${to}: ${r.stdout}`);
    t.match(r.stdout, op === 'donate' ? `ok 1 - donate: donated ${pages} page(s) to ${to}` : `ok 1 - ${op}: ${op} of ${pages} page(s) to ${to}, handle 0x`);
    t.match(r.stdout, /^1\.\.1$/m);
  }
  const script = file(
    'mem.script',
    '# every memory op to every built-in partition\nshare 0x8003 2 0x01\nlend 0x8003\ndonate 0x8003 1 0x03\nshare 0x8004 4 0x04\n',
  );
  const s = await run(['vm', '--script', script], env);
  t.equal(s.code, 0, s.stdout);
  t.match(
    s.stdout,
    /ok 1 - share: share of 2 page\(s\) to 0x8003[^]*ok 2 - lend: lend of 1 page\(s\) to 0x8003[^]*ok 3 - donate: donated 1 page\(s\) to 0x8003[^]*ok 4 - share[^]*1\.\.4/,
  );
  const scenario = file(
    'mem.yaml',
    'vm: { name: mem-scenario }\nsteps:\n  - { op: share, to: 0x8002, pages: 2, pattern: 0xa5 }\n  - { op: lend, to: 0x8001, pattern: 0x42 }\n  - { op: donate, to: 0x8002, pages: 3 }\n',
  );
  const sc = await run(['vm', '--scenario', scenario], env);
  t.equal(sc.code, 0, sc.stdout);
  t.match(sc.stdout, /ok 3 - donate: donated 3 page\(s\) to 0x8002[^]*1\.\.3/);
  // Shares and lends were reclaimed; only donations may have left anything behind.
  const st = await run(['state', '--json'], env);
  const snap = JSON.parse(st.stdout) as { transactions: { type: string }[] };
  t.same(
    snap.transactions.filter((x) => x.type !== 'donate'),
    [],
    'no share or lend left',
  );
});

t.test('vm share, lend and donate between VM processes (retrieve, relinquish, reclaim)', async (t) => {
  const server = await startServer(t);
  const env = { REMOTE_SPMC_SERVER: server.grpc };
  // The sender first: it waits for the borrower to attach, and says so.
  for (const [op, pages, pattern] of [
    ['share', '2', '0x3c'],
    ['lend', '1', '0x44'],
    ['donate', '3', '0x55'],
  ] as const) {
    const sender = start(t, ['vm', '--id', '1', op, '2', pages, pattern], env);
    await sender.out.until((l) => l === '# waiting for VM 0x2 to attach');
    const borrower = await run(['vm', '--id', '2', 'retrieve', '1'], env);
    t.equal(borrower.code, 0, `borrower: ${borrower.stdout}`);
    t.match(borrower.stdout, new RegExp(`ok 1 - retrieve: ${op} 0x[0-9a-f]+ from 0x1: pattern ${pattern} checked, complement written`));
    t.equal(await sender.exited, 0, `sender: ${sender.out.seen.join('\n')}`);
    t.ok(
      sender.out.seen.some((l) =>
        op === 'donate'
          ? l.startsWith(`ok 1 - donate: donated ${pages} page(s) to 0x2`)
          : l.includes(`${op} of ${pages} page(s) to 0x2`) && l.includes('pattern checked both ways'),
      ),
      `${op}: sender's line`,
    );
  }
  // Scenarios: one VM sends all three in turn, the other retrieves all three.
  const a = file(
    'a.yaml',
    'vm: { id: 5, name: giver }\ntimeout: 120\nsteps:\n  - { op: share, to: 6, pages: 1, pattern: 0x10 }\n  - { op: lend, to: 6, pages: 2, pattern: 0x20 }\n  - { op: donate, to: 6, pages: 1, pattern: 0x30 }\n',
  );
  const b = file(
    'b.yaml',
    'vm: { id: 6, name: taker }\ntimeout: 120\nsteps:\n  - { op: retrieve, from: 5 }\n  - { op: retrieve, from: 5 }\n  - { op: retrieve, from: 5 }\n',
  );
  const [ra, rb] = await Promise.all([run(['vm', '--scenario', a], env), run(['vm', '--scenario', b], env)]);
  t.equal(ra.code, 0, ra.stdout);
  t.equal(rb.code, 0, rb.stdout);
  t.match(rb.stdout, /ok 1 - retrieve: share [^]*ok 2 - retrieve: lend [^]*ok 3 - retrieve: donate [^]*1\.\.3/);
  const snap = JSON.parse((await run(['state', '--json'], env)).stdout) as { transactions: { type: string }[] };
  t.same(
    snap.transactions.filter((x) => x.type !== 'donate'),
    [],
    'every share and lend was reclaimed',
  );
});

// ---- waiting for peers -----------------------------------------------------------------------------

t.test('request waits for its peer VM to attach, as notify does; a partition that does not exist fails at once', async (t) => {
  const server = await startServer(t);
  const env = { REMOTE_SPMC_SERVER: server.grpc };
  const binder = start(t, ['vm', '--id', '11', '--script', file('bind.script', 'request 12 5\nwait-notification 5\n')], env);
  await binder.out.until((l) => l === '# waiting for VM 0xc to attach');
  const setter = await run(['vm', '--id', '12', 'notify', '11', '5'], env);
  t.equal(setter.code, 0, setter.stdout);
  t.equal(await binder.exited, 0, binder.out.seen.join('\n'));
  t.ok(binder.out.seen.includes('ok 1 - request: notification 5 from 0xc bound'));
  t.ok(binder.out.seen.includes('ok 2 - wait-notification: notification 5 received'));

  // With an hour to wait, only an immediate failure ends these before the guard.
  for (const words of [
    ['notify', '0x8009', '3'],
    ['request', '0x8009', '3'],
    ['direct', '0x8009', 'ECHO'],
    ['share', '0x8009'],
  ]) {
    const r = await run(['vm', '--timeout', '3600', ...words], env, 30_000);
    t.equal(r.code, 1, words.join(' '));
    t.match(r.stdout, new RegExp(`not ok 1 - ${words[0]}: .*there is no partition 0x8009`), r.stdout);
  }
});

// ---- serve --max-vms ---------------------------------------------------------------------------

t.test('serve --max-vms N: the N+1th attach is RESOURCE_EXHAUSTED', async (t) => {
  const server = await startServer(t, ['--max-vms', '2']);
  const env = { REMOTE_SPMC_SERVER: server.grpc };
  const hold = file('hold.script', 'info\nreceive 0x63\n');
  const holders = ['first', 'second'].map((name) => start(t, ['vm', '--timeout', '600', '--name', name, '--properties', '0x50f', '--script', hold], env));
  await Promise.all(holders.map((h) => h.out.until((l) => l.startsWith('ok 1 - info'))));
  const third = await run(['vm', 'info'], env);
  t.equal(third.code, 1);
  t.match(third.stdout, /^not ok 0 - attach to 127\.0\.0\.1:\d+: RESOURCE_EXHAUSTED: /);
  // --name and --properties reached the server.
  const st = await run(['state'], env);
  t.match(st.stdout, /^\s+0x\d+\s+first\s+vm v[\d.]+ props 0x50f/m);
  t.match(st.stdout, /^\s+0x\d+\s+second\s+vm /m);
});

// ---- partition --credential-env --------------------------------------------------------------------

t.test('partition --credential-env NAME reads the variable the manifest names', async (t) => {
  const manifest = file(
    'remote.yaml',
    `${DEFAULT_MANIFEST_YAML}  - name: remote-echo\n    id: 0x8010\n    uuids: [0badcafe-0000-4000-8000-000000000010]\n    ffa-version: "1.2"\n    execution-ctx-count: 1\n    messaging-method: 0x603\n    remote: { credential-env: MY_SP_SECRET }\n`,
  );
  const server = await startServer(t, ['--manifest', manifest], { MY_SP_SECRET: 'secret-from-env-1' });
  const base = ['partition', '--server', server.grpc, '--id', '0x8010'];
  const only = { REMOTE_SPMC_CREDENTIAL: '', MY_SP_SECRET: 'secret-from-env-1' };

  const without = await run(base, only);
  t.equal(without.code, 2, 'the default variable is empty');
  t.match(without.stderr, /\$REMOTE_SPMC_CREDENTIAL \(set --credential-env to read another variable\)/);

  const wrong = await run([...base, '--credential-env', 'MY_SP_SECRET'], { ...only, MY_SP_SECRET: 'not-the-secret' });
  t.equal(wrong.code, 1, 'a wrong credential');
  t.match(wrong.stderr, /^remote-spmc: partition: PERMISSION_DENIED: /);
  t.equal(wrong.stderr.trim().split('\n').length, 1, 'one line');

  const sp = start(t, [...base, '--credential-env', 'MY_SP_SECRET'], only);
  await sp.out.until((l) => l.includes('"msg":"serving"'));
  // Its first FFA_MSG_WAIT may still be on the way: the vm command retries BUSY.
  const r = await run(['vm', '--server', server.grpc, 'direct', '0x8010', 'ECHO', '0x77']);
  t.equal(r.code, 0, r.stdout);
  t.match(r.stdout, /ok 1 - direct: 0x6563686f 0x77 0x0 0x0 0x0/);
});
