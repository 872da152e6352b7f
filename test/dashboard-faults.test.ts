// The dashboard's fault rules panel, in headless Chromium (as test/dashboard-debugger.test.ts):
// issue 16's minimal rule added through the page answers the VM's direct request BUSY and the chart
// marks the injected answer; a bad rule shows the server's message (it names the field); removing
// the rule through the page lets the next request through; with --admin-token the panel works once
// the token is entered; `replay --serve` shows no panel.

import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import type { Browser, Page } from 'playwright-core';
import { FfaDriver } from '../client-driver/driver.js';
import { FfaDriverError } from '../client-driver/errno.js';
import { EmulatedVm } from '../client-driver/vm.js';
import { FFA_ERRORS, hex } from '../proto/ffa/index.js';
import { ReplaySession } from '../server/debug/replay-session.js';
import { Tracer } from '../server/debug/tracer.js';
import { FaultInjector, traceFaults } from '../server/faults/index.js';
import { buildHttpApp } from '../server/http/app.js';
import { buildReplayApp } from '../server/http/replay.js';
import { defaultManifest } from '../server/manifest.js';
import { PARTITION_COMMANDS as CMD } from '../server/partitions/commands.js';
import { startBuiltinPartitions } from '../server/partitions/index.js';
import { SessionCore } from '../server/session/core.js';
import { InProcessConnector } from '../server/session/in-process.js';
import { Tokens } from '../server/session/tokens.js';
import { Spmc } from '../server/spmc/spmc.js';
import { SP1, tracedServer } from './dashboard-scenario.js';

const CHROMIUM = '/usr/bin/chromium';
const skip = existsSync(CHROMIUM) ? false : `needs ${CHROMIUM} (Debian's chromium; .ci/run installs it)`;
const ADMIN = 'sesame-admin-token';

/** As `serve` wires it: traced model, the fault injector last in the chain, its rules traced, /v1/faults served. */
async function faultServer(opts: { file?: string; tokens?: Tokens } = {}) {
  const partitions = defaultManifest();
  const handleSeed = 0x5eed5n;
  const spmc = new Spmc({ partitions, handleSeed });
  const core = SessionCore.for(spmc);
  const tracer = new Tracer(core, { file: opts.file, session: { partitions, limits: spmc.state.limits, handleSeed } });
  await startBuiltinPartitions(core);
  const faults = new FaultInjector(core);
  const untrace = traceFaults(faults, tracer);
  const app = await buildHttpApp({ core, tracer, tokens: opts.tokens, faults });
  faults.install();
  await app.listen({ host: '127.0.0.1', port: 0 });
  const addr = app.server.address();
  const base = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
  const connector = new InProcessConnector(spmc);
  const stop = async () => {
    connector.close();
    await app.close();
    untrace();
    faults.close();
    await tracer.close();
  };
  return { faults, base, connector, stop };
}

async function launch(t: { teardown: (f: () => Promise<void>) => void }): Promise<Browser> {
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  t.teardown(() => browser.close());
  return browser;
}

async function openPage(browser: Browser, url: string): Promise<{ page: Page; problems: string[] }> {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const problems: string[] = [];
  page.on('pageerror', (e) => void problems.push(`exception: ${e.message}`));
  // The refused requests (401 before the token, 400 for the bad rule) are logged by the browser itself.
  page.on('console', (m) => void (m.type() === 'error' && !/40[01]/.test(m.text()) && problems.push(`console: ${m.text()}`)));
  await page.goto(url);
  await page.addStyleTag({ content: '#chart { height: 6000px !important; }' });
  return { page, problems };
}

const busyTwice = (caller: number) => ({ id: 'busy-twice', match: { caller, function: 'FFA_MSG_SEND_DIRECT_REQ' }, action: { error: 'BUSY' }, times: 2 });

async function addRule(page: Page, rule: unknown) {
  await page.fill('#fault-rule', typeof rule === 'string' ? rule : JSON.stringify(rule, null, 2));
  await page.click('#fault-add button[type="submit"]');
}

/** The FF-A error a direct request to SP1 ends in ('OK' when answered). */
async function echo(vm: FfaDriver): Promise<string> {
  try {
    await vm.sendDirectReq(SP1, [BigInt(CMD.ECHO), 7n]);
    return 'OK';
  } catch (e) {
    if (e instanceof FfaDriverError && e.ffaError !== undefined) return Object.entries(FFA_ERRORS).find(([, v]) => v === e.ffaError)?.[0] ?? String(e.ffaError);
    throw e;
  }
}

t.test('the panel adds busy-twice, the chart marks its answer, a bad rule says why, remove lets calls through', { skip }, async (t) => {
  const srv = await faultServer();
  t.teardown(srv.stop);
  const browser = await launch(t);
  const { page, problems } = await openPage(browser, srv.base);
  await page.waitForSelector('#faults[data-state="ready"]');
  t.equal(await page.locator('#fault-rules tbody tr').count(), 0, 'no rule yet');

  const vm = new FfaDriver(await EmulatedVm.attach(srv.connector, { name: 'vm-faulted' }));
  await vm.init();
  await addRule(page, busyTwice(vm.vmId));
  const row = page.locator('#fault-rules tr[data-id="busy-twice"]');
  await row.waitFor();
  t.same(
    srv.faults.list().rules.map((r) => r.rule),
    [busyTwice(vm.vmId)],
    'the server holds the rule as given',
  );
  t.equal(await page.inputValue('#fault-rule'), '', 'the textarea is cleared');
  t.match(await row.textContent(), /FFA_MSG_SEND_DIRECT_REQ/, 'the row shows the match');

  t.equal(await echo(vm), 'BUSY', 'the direct request is answered BUSY');
  const mark = page.locator(`#chart g.injected[data-from="${hex(vm.vmId)}"][data-fn^="FFA_MSG_SEND_DIRECT_REQ"]`);
  await mark.first().waitFor();
  t.match(await mark.first().textContent(), /injected by busy-twice/, 'the chart marks the injected answer');
  // The counters follow the trace (the injected record refreshes the list).
  await page.waitForSelector('#fault-rules tr[data-id="busy-twice"] td.fired:text-is("1")');
  t.equal(await row.locator('td.seen').textContent(), '1', 'matched once');
  await page.locator('#faults').screenshot({ path: '/tmp/dashboard-faults.png' });

  // A bad rule: the server's 400 message, naming the field, under the textarea; nothing added.
  const bad = { id: 'bad', match: { function: 'FFA_NO_SUCH_CALL' }, action: { error: 'BUSY' } };
  const res = await fetch(`${srv.base}/v1/faults`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(bad) });
  t.equal(res.status, 400);
  const { message } = (await res.json()) as { message: string };
  t.match(message, /match\.function/, 'the server names the field');
  await addRule(page, bad);
  await page.waitForSelector('#faults .fault-note.err');
  t.equal(await page.locator('#faults .fault-note').textContent(), message, "the page shows the server's message");
  t.equal(await page.locator('#fault-rules tbody tr').count(), 1, 'still one rule');
  await addRule(page, '{ "id": ');
  await page.waitForSelector('#faults .fault-note.err:text-matches("not JSON")');
  t.pass('text that is not JSON is refused in the page');

  // Removed through the page: the rule had one BUSY left, the next request passes.
  await row.locator('button.remove').click();
  await row.waitFor({ state: 'detached' });
  t.same(srv.faults.list().rules, [], 'the server dropped it');
  t.equal(await echo(vm), 'OK', 'the next request passes');
  t.same(problems, [], 'no exception or console error');
});

t.test('with serve --admin-token: the panel asks for the token, then adds and removes with it', { skip }, async (t) => {
  const srv = await faultServer({ tokens: new Tokens({ admin: ADMIN }) });
  t.teardown(srv.stop);
  const browser = await launch(t);
  const { page, problems } = await openPage(browser, srv.base);
  await page.waitForSelector('#faults[data-state="unauthorized"]');
  t.match(await page.locator('#faults .fault-note').textContent(), /admin token/, 'the panel says why it is empty');
  await page.fill('#admin-token', ADMIN);
  await page.click('#token button');
  await page.waitForSelector('#faults[data-state="ready"]');

  const vm = new FfaDriver(await EmulatedVm.attach(srv.connector, { name: 'vm-faulted' }));
  await vm.init();
  await addRule(page, busyTwice(vm.vmId));
  const row = page.locator('#fault-rules tr[data-id="busy-twice"]');
  await row.waitFor();
  t.equal(srv.faults.list().rules.length, 1, 'added with the token');
  t.equal(await echo(vm), 'BUSY', 'and in force');
  await row.locator('button.remove').click();
  await row.waitFor({ state: 'detached' });
  t.same(srv.faults.list().rules, [], 'removed with the token');
  t.equal(await echo(vm), 'OK');
  t.same(problems, []);
});

t.test('a live server without fault injection: no panel, and no request for /v1/faults', { skip }, async (t) => {
  const srv = await tracedServer();
  t.teardown(srv.stop);
  const browser = await launch(t);
  const { page, problems } = await openPage(browser, srv.base);
  const asked: string[] = [];
  page.on('request', (r) => void (r.url().includes('/v1/faults') && asked.push(r.url())));
  await page.waitForSelector('#trace[data-state="live"]');
  // Two state refreshes (each second) after the page knew what the server serves.
  await page.waitForResponse((r) => r.url().endsWith('/v1/memory/map'));
  await page.waitForResponse((r) => r.url().endsWith('/v1/memory/map'));
  t.equal(await page.locator('#faults').isHidden(), true, 'the panel is hidden');
  t.same(asked, [], 'never asked');
  t.same(problems, []);
});

t.test('replay --serve: no fault rules panel', { skip }, async (t) => {
  const file = join(mkdtempSync(join(tmpdir(), 'rspmc-dash-faults-')), 'session.jsonl');
  const srv = await faultServer({ file });
  const vm = new FfaDriver(await EmulatedVm.attach(srv.connector, { name: 'vm-recorded' }));
  await vm.init();
  t.equal(await echo(vm), 'OK');
  await srv.stop();
  const app = await buildReplayApp(ReplaySession.parse(file, readFileSync(file, 'utf8')));
  t.teardown(() => app.close());
  await app.listen({ host: '127.0.0.1', port: 0 });
  const addr = app.server.address();
  const browser = await launch(t);
  const { page } = await openPage(browser, `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`);
  await page.waitForSelector('body[data-opened]');
  t.equal(await page.locator('#mode').textContent(), 'replay');
  t.equal(await page.locator('#faults').isHidden(), true, 'the panel is hidden');
});
