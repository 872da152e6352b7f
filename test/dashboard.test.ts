// The dashboard page in headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core):
// its first page lists the ring's recent trace, rows of blocked calls take their answers, the
// endpoint table fits a 1400-pixel window, and the page loads without a failed request.
// DASHBOARD_SCREENSHOT=file.png saves what the page looks like at that width.

import t from 'tap';
import { FfaDriver } from '../client-driver/driver.js';
import { InProcessConnector } from '../server/session/in-process.js';
import { EmulatedVm } from '../client-driver/vm.js';
import { Tracer, type TraceRecord } from '../server/debug/tracer.js';
import { buildHttpApp } from '../server/http/app.js';
import { PARTITION_COMMANDS as CMD } from '../server/partitions/commands.js';
import { SessionCore } from '../server/session/core.js';
import { startedSpmc } from './helpers.js';
import { chromiumSkip, launchChromium } from './fixtures/chromium.js';

const WIDTH = 1400;
/** The longest name an endpoint may have (64 characters), with no space to break at. */
const LONG_NAME = `vm-${'n'.repeat(61)}`;
const UUID_NAME = 'vm-0b2e6a3f-9c41-4d7e-8a5b-2f6c1d9e7a40';
const SP1 = 0x8001;

type CallRecord = Extract<TraceRecord, { kind: 'call' }>;
const isCall = (r: TraceRecord, endpoint: number, fn: string): r is CallRecord => r.kind === 'call' && r.endpoint === endpoint && r.function === fn;

t.test('the dashboard in headless Chromium at 1400 pixels', { skip: chromiumSkip }, async (t) => {
  const spmc = await startedSpmc();
  const tracer = new Tracer(spmc);
  const app = await buildHttpApp({ core: SessionCore.for(spmc), tracer });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const addr = app.server.address();
  const base = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
  const browser = await launchChromium(t);
  t.teardown(async () => {
    // The page's live trace stream must end before the server can close.
    await browser.close();
    await app.close();
    await tracer.close();
  });

  // Calls made before the page is opened: it must find them in the ring.
  const connector = new InProcessConnector(spmc);
  const vm = new FfaDriver(await EmulatedVm.attach(connector, { name: LONG_NAME }));
  await vm.init();
  await new FfaDriver(await EmulatedVm.attach(connector, { name: UUID_NAME })).init();
  await vm.sendDirectReq(SP1, [BigInt(CMD.ECHO), 1n]);
  await vm.sendDirectReq(SP1, [BigInt(CMD.ECHO), 2n]);

  // SP1's first DIRECT_RESP was answered by the second request; its second waits for the next.
  const before = tracer.recent({}, 10000);
  const [answered, waiting] = before.filter((r) => isCall(r, SP1, 'FFA_MSG_SEND_DIRECT_RESP_64'));
  t.ok(answered && waiting, 'two direct responses from SP1 in the ring');
  t.match(answered, { blocked: true, waiting: true }, 'a direct response parks SP1 waiting for its next message, not blocked on anyone');
  t.ok(
    before.some((r) => r.kind === 'return' && r.callSeq === answered!.seq && r.result.function === 'FFA_MSG_SEND_DIRECT_REQ_64'),
    'the first one is answered by the next request',
  );
  t.ok(!before.some((r) => r.kind === 'return' && r.callSeq === waiting!.seq), 'the second is still waiting');
  const request = before.find((r) => isCall(r, vm.vmId, 'FFA_MSG_SEND_DIRECT_REQ_64'))!;
  t.match(request, { blocked: true }, 'a direct request is blocked on SP1');
  t.notOk(request.waiting, 'not waiting');

  const page = await browser.newPage({ viewport: { width: WIDTH, height: 900 } });
  // Anything that went wrong loading the page: console errors, exceptions, failed or refused requests.
  const problems: string[] = [];
  page.on('console', (m) => void (m.type() === 'error' && problems.push(`console: ${m.text()}`)));
  page.on('pageerror', (e) => void problems.push(`exception: ${e.message}`));
  page.on('requestfailed', (r) => void problems.push(`failed: ${r.url()} ${r.failure()?.errorText ?? ''}`));
  page.on('response', (r) => void (r.status() >= 400 && problems.push(`${r.status()}: ${r.url()}`)));

  await page.goto(base);
  // Loaded from the ring and following the live stream, with no call made since.
  await page.waitForSelector('#trace[data-state="live"]');
  const row = (seq: number) => page.locator(`#records tr[data-seq="${seq}"]`);
  const shownSeqs = (await page.locator('#records tr').evaluateAll((trs) => trs.map((tr) => Number((tr as HTMLElement).dataset.seq)))).sort((a, b) => a - b);
  t.same(
    shownSeqs,
    before.map((r) => r.seq),
    'every record of the ring is listed, none twice',
  );
  t.equal(await row(request.seq).locator('td').nth(1).textContent(), `0x${vm.vmId.toString(16)} ${LONG_NAME}`, 'who made the call');
  t.equal(await row(request.seq).getAttribute('data-state'), 'answered', 'the request row shows its response');
  t.match(await row(request.seq).locator('td').nth(4).textContent(), /^FFA_MSG_SEND_DIRECT_RESP_64 /);

  // Direct responses are never shown blocked: answered, or waiting for the next message.
  t.equal(await row(answered!.seq).getAttribute('data-state'), 'answered');
  t.match(await row(answered!.seq).locator('td').nth(4).textContent(), /^FFA_MSG_SEND_DIRECT_REQ_64 /, 'shows the request that answered it');
  t.equal(await row(waiting!.seq).getAttribute('data-state'), 'waiting');
  t.match(await row(waiting!.seq).textContent(), /waiting for a message/);
  for (const seq of [answered!.seq, waiting!.seq]) {
    t.notMatch(await row(seq).textContent(), /blocked/, `#${seq} is not marked blocked`);
    t.equal(await row(seq).locator('.blk').count(), 0);
  }

  // A live call answers the waiting response: its row takes the new request.
  await vm.sendDirectReq(SP1, [BigInt(CMD.ECHO), 3n]);
  await page.waitForSelector(`#records tr[data-seq="${waiting!.seq}"][data-state="answered"]`);
  t.match(await row(waiting!.seq).locator('td').nth(4).textContent(), /^FFA_MSG_SEND_DIRECT_REQ_64 /);
  const latest = tracer
    .recent({ endpoint: vm.vmId, function: 'MSG_SEND_DIRECT_REQ' })
    .filter((r) => r.kind === 'call')
    .at(-1)!;
  t.ok(latest.seq > waiting!.seq);
  await page.waitForSelector(`#records tr[data-seq="${latest.seq}"][data-state="answered"]`);
  // SP1's new response came over the stream (decoded in the decoder thread): waiting too.
  const next = tracer
    .recent({ endpoint: SP1 })
    .filter((r) => isCall(r, SP1, 'FFA_MSG_SEND_DIRECT_RESP_64'))
    .at(-1)!;
  t.ok(next.seq > latest.seq);
  await page.waitForSelector(`#records tr[data-seq="${next.seq}"][data-state="waiting"]`);

  // The endpoint table (a 64-character name, UUIDs in the trace) fits its column; the page fits the window.
  await page.waitForSelector(`#endpoints tbody tr:has-text("${UUID_NAME}")`);
  const widths = await page.evaluate(() => {
    const table = document.querySelector('#endpoints') as HTMLElement;
    const trace = document.querySelector('#records')!.closest('table') as HTMLElement;
    return {
      table: table.scrollWidth,
      column: table.closest('section')!.clientWidth,
      trace: trace.scrollWidth,
      traceColumn: trace.closest('section')!.clientWidth,
      page: document.documentElement.scrollWidth,
    };
  });
  t.ok(widths.table <= widths.column, `the endpoint table (${widths.table} px) fits its column (${widths.column} px)`);
  t.ok(widths.trace <= widths.traceColumn, `the trace table (${widths.trace} px) fits its column (${widths.traceColumn} px)`);
  t.ok(widths.page <= WIDTH, `the page (${widths.page} px) fits a ${WIDTH}-pixel window`);
  if (process.env['DASHBOARD_SCREENSHOT']) await page.screenshot({ path: process.env['DASHBOARD_SCREENSHOT'] });

  // The icon the page names (and browsers ask for unprompted) is there.
  t.equal(await page.evaluate(async () => (await fetch((document.querySelector('link[rel=icon]') as HTMLLinkElement).href)).status), 200);
  const icon = await fetch(`${base}/favicon.ico`);
  t.equal(icon.status, 200, '/favicon.ico');
  t.match(icon.headers.get('content-type'), /^image\/svg\+xml/);
  t.match(await icon.text(), /^<svg /);

  // A state refresh after all of that, then nothing went wrong on the way.
  await page.waitForResponse((r) => r.url().endsWith('/v1/memory/transactions'));
  t.same(problems, [], 'no console error, exception or failed request');
});
