// `remote-spmc certs`, the compose topology's throwaway CA: certificates a TLS peer accepts (Node's
// X509 checks, openssl's when it is there, and `serve` with them answering health and a VM over TLS
// with a join token), the key file private, and bad flags refused in one line.

import { execFileSync } from 'node:child_process';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { run, STACK, startServer, tmpPath } from './fixtures/cli.js';

t.test('certs writes a CA and a server certificate it signed, for the names asked', async (t) => {
  const out = tmpPath('certs-ok');
  const r = await run(['certs', '--out', out, '--names', 'spmc,localhost,127.0.0.1', '--days', '7']);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /ca\.pem, cert\.pem \(spmc, localhost, 127\.0\.0\.1; 7 days\), key\.pem/);
  const ca = new X509Certificate(readFileSync(join(out, 'ca.pem')));
  const cert = new X509Certificate(readFileSync(join(out, 'cert.pem')));
  t.ok(ca.ca, 'the CA is a CA');
  t.notOk(cert.ca, 'the server certificate is not');
  t.ok(ca.verify(ca.publicKey), 'the CA is self-signed');
  t.ok(cert.verify(ca.publicKey), 'the CA signed the server certificate');
  t.notOk(cert.verify(cert.publicKey), 'not self-signed');
  t.equal(cert.checkHost('spmc'), 'spmc', 'valid for spmc');
  t.equal(cert.checkHost('localhost'), 'localhost');
  t.equal(cert.checkIP('127.0.0.1'), '127.0.0.1');
  t.equal(cert.checkHost('other'), undefined, 'not for another name');
  t.ok(cert.checkIssued(ca), 'issued by the CA');
  const days = (Date.parse(cert.validTo) - Date.now()) / 86400_000;
  t.ok(days > 6.9 && days <= 7, `valid for 7 days (${days.toFixed(2)})`);
  t.ok(cert.checkPrivateKey(createPrivateKey(readFileSync(join(out, 'key.pem')))), 'key.pem is its key');
  t.equal(statSync(join(out, 'key.pem')).mode & 0o777, 0o600, 'key.pem is 0600');
  t.equal(statSync(join(out, 'ca.pem')).mode & 0o777, 0o644);
  let openssl = true;
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
  } catch {
    openssl = false;
  }
  if (openssl) {
    const verified = execFileSync('openssl', ['verify', '-CAfile', join(out, 'ca.pem'), join(out, 'cert.pem')]).toString();
    t.match(verified, /: OK/, 'openssl verify');
  }
});

t.test('serve with them: health and a VM over TLS, with the join token', async (t) => {
  const out = tmpPath('certs-serve');
  t.equal((await run(['certs', '--out', out, '--names', 'spmc'])).code, 0);
  const server = await startServer(t, ['--tls-cert', join(out, 'cert.pem'), '--tls-key', join(out, 'key.pem')], {
    REMOTE_SPMC_JOIN_TOKEN: 'certs-test-join-token',
  });
  const tls = ['--server', server.grpc, '--tls-ca', join(out, 'ca.pem'), '--tls-server-name', 'spmc'];
  const health = await run(['health', ...tls]);
  t.equal(health.code, 0, `health over TLS: ${health.stdout}${health.stderr}`);
  const vm = await run(['vm', ...tls, 'info'], { REMOTE_SPMC_JOIN_TOKEN: 'certs-test-join-token' });
  t.equal(vm.code, 0, `a VM attaches over TLS with the token: ${vm.stdout}${vm.stderr}`);
  const wrongName = await run(['health', '--server', server.grpc, '--tls-ca', join(out, 'ca.pem'), '--tls-server-name', 'other']);
  t.equal(wrongName.code, 1, 'another name is not accepted');
});

t.test('bad flags: one line, status 2', async (t) => {
  for (const [args, why] of [
    [[], /--out DIR is required/],
    [['--out', tmpPath('c1'), '--names', 'a b'], /--names: "a b" is not a DNS name or an IPv4 address/],
    [['--out', tmpPath('c2'), '--names', ','], /--names: at least one name/],
    [['--out', tmpPath('c3'), '--days', '0'], /--days: expected an integer 1\.\.3650/],
    [['--out', tmpPath('c4'), '--owner', 'node'], /--owner: expected UID:GID/],
  ] as const) {
    const r = await run(['certs', ...args]);
    t.equal(r.code, 2, `certs ${args.join(' ')}`);
    t.match(r.stderr, why);
    t.notMatch(r.stderr, STACK);
  }
});
