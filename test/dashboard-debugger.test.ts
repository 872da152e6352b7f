// The dashboard as a debugger, in headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core): the sequence chart of a known scenario (arrows in order on the right
// lifelines), a lend's decoded descriptor, the memory map before and after a reclaim, time travel
// through the recording to the state replay computes, the SVG and Markdown exports, and the admin
// token entered in the page. Screenshots go to /tmp/dashboard-*.png.

import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import type { Page } from 'playwright-core';
import { FfaDriver } from '../client-driver/driver.js';
import { EmulatedVm } from '../client-driver/vm.js';
import { hex, MEM_PERM } from '../proto/ffa/index.js';
import { ReplaySession } from '../server/debug/replay-session.js';
import { buildReplayApp } from '../server/http/replay.js';
import { Tokens } from '../server/session/tokens.js';
import { chromiumSkip, launchChromium, openDashboard } from './fixtures/chromium.js';
import { finishScenario, NOBODY, SP1, SP2, startScenario, tracedServer } from './dashboard-scenario.js';

const skip = chromiumSkip;

type Arrow = { seq: number; fn: string; from: string; to: string; cls: string; text: string };
const arrows = (page: Page): Promise<Arrow[]> =>
  page.locator('#chart g[data-seq]').evaluateAll((gs) =>
    gs.map((g) => ({
      seq: Number(g.getAttribute('data-seq')),
      fn: g.getAttribute('data-fn') ?? '',
      from: g.getAttribute('data-from') ?? '',
      to: g.getAttribute('data-to') ?? '',
      cls: g.getAttribute('class') ?? '',
      text: g.textContent ?? '',
    })),
  );

async function download(page: Page, button: string): Promise<string> {
  const [dl] = await Promise.all([page.waitForEvent('download'), page.click(button)]);
  return readFileSync((await dl.path())!, 'utf8');
}

t.test('live: the known scenario as a sequence chart, a decoded lend, the memory map, exports', { skip }, async (t) => {
  const srv = await tracedServer();
  t.teardown(srv.stop);
  const browser = await launchChromium(t);
  const { page, problems } = await openDashboard(browser, srv.base, /401/);
  await page.waitForSelector('#trace[data-state="live"]');

  const s = await startScenario(srv.connector);
  await finishScenario(s);
  const vm = hex(s.vm.vmId);
  const [sp1, sp2, nobody] = [hex(SP1), hex(SP2), hex(NOBODY)];
  // The lend's arrow points at its borrower once its descriptor (decoded from the TX buffer) is in.
  await page.waitForSelector(`#chart g[data-fn="FFA_MEM_LEND_64"][data-to="${sp2}"]`);
  await page.waitForSelector(`#chart g[data-fn="FFA_MEM_RECLAIM"]`);
  await page.waitForSelector(`#chart g[data-fn="FFA_MEM_RELINQUISH"][data-to="${vm}"]`);
  const all = (await arrows(page)).filter((a) => a.from === vm || a.to.split(' ').includes(vm));

  // The scenario's arrows, in this order (other rows may come between).
  const expected: [string, string, string, RegExp?][] = [
    ['FFA_MSG_SEND_DIRECT_REQ_64', vm, sp1],
    ['FFA_MSG_SEND_DIRECT_RESP_64', sp1, vm],
    ['FFA_MEM_LEND_64', vm, sp2],
    ['FFA_MSG_SEND_DIRECT_REQ_64', vm, sp2],
    ['FFA_MEM_RETRIEVE_REQ_64', sp2, vm], // the borrower retrieves from the owner
    ['FFA_MEM_RELINQUISH', sp2, vm],
    ['FFA_MSG_SEND_DIRECT_RESP_64', sp2, vm],
    ['FFA_NOTIFICATION_SET', sp1, vm],
    ['FFA_NOTIFICATION_SET', 'spmc', vm, /SRI/], // the schedule-receiver interrupt the SPMC raises
    ['FFA_MSG_SEND_DIRECT_REQ_64', vm, nobody, /INVALID_PARAMETERS/],
    ['FFA_MEM_RECLAIM', vm, 'spmc'],
  ];
  let from = all.findIndex((a) => a.fn === 'FFA_MSG_SEND_DIRECT_REQ_64' && a.to === sp1);
  const found: Arrow[] = [];
  for (const [fn, a, b, text] of expected) {
    const i = all.findIndex((x, k) => k >= from && x.fn === fn && x.from === a && x.to === b && (!text || text.test(x.text)));
    t.ok(i >= 0, `${fn} ${a} -> ${b} after the previous one`);
    if (i < 0) break;
    found.push(all[i]!);
    from = i + 1;
  }
  t.same(
    found.map((a) => a.seq),
    [...found.map((a) => a.seq)].sort((x, y) => x - y),
    'in seq order',
  );
  const refused = found.find((a) => a.to === nobody)!;
  t.match(refused.cls, /\berror\b/, 'the refused call is red');
  t.match(refused.text, /no endpoint/, 'and says why');
  // The direct request blocked the VM until SP1 answered: an activation bar, closed.
  const bar = page.locator(`#chart rect.bar[data-call="${found[0]!.seq}"]`);
  t.equal(await bar.count(), 1, 'an activation bar for the blocked request');
  t.notMatch((await bar.getAttribute('class')) ?? '', /open/, 'closed once answered');
  // The scenario's part of the chart (the page is tall here: every row is drawn).
  const top = (await page.locator(`#chart g[data-seq="${found[0]!.seq}"]`).first().boundingBox())!.y;
  await page.screenshot({ path: '/tmp/dashboard-chart.png', fullPage: true, clip: { x: 0, y: Math.max(0, top - 40), width: 1400, height: 720 } });

  // Filter by function: only the memory calls stay.
  await page.fill('#chart-function', 'MEM_');
  await page.waitForFunction(() => [...document.querySelectorAll('#chart g[data-seq]')].every((g) => /MEM_/.test(g.getAttribute('data-fn') ?? '')));
  t.ok((await arrows(page)).length >= 4, 'memory calls shown');
  await page.fill('#chart-function', '');

  // Click the lend: its registers and its decoded descriptor.
  await page.locator(`#chart g[data-fn="FFA_MEM_LEND_64"] .hit`).dispatchEvent('click');
  await page.waitForSelector('#details .buffer[data-what="memory transaction descriptor"]');
  const details = await page.locator('#details').textContent();
  t.match(details, /x0 = 0xc4000072/, 'the call registers');
  const descriptor = await page.locator('#details .buffer[data-what="memory transaction descriptor"] pre').textContent();
  const d = JSON.parse(descriptor!);
  t.equal(d.sender, vm, 'descriptor: sender');
  t.same(
    d.receivers.map((r: { receiver: string }) => r.receiver),
    [sp2],
    'descriptor: the borrower',
  );
  t.equal(d.receivers[0].permissions, MEM_PERM.DATA_RW, 'descriptor: RW');
  t.same(d.composite.constituents, [{ address: hex(s.pages), pageCount: 2 }], 'descriptor: the lent pages');
  await page.screenshot({ path: '/tmp/dashboard-details.png' });

  // Memory map: a lend to a second VM that keeps it retrieved.
  const other = new FfaDriver(await EmulatedVm.attach(srv.connector, { name: 'vm-borrower' }));
  await other.init();
  const pages = s.vm.vm.pages.alloc(1)!;
  const handle = await s.vm.memLend({ receivers: [{ id: other.vmId, permissions: MEM_PERM.DATA_RW }], regions: [{ address: pages, pageCount: 1 }] });
  await other.memRetrieve({ handle, sender: s.vm.vmId, type: 'lend' });
  const h = hex(handle);
  await page.waitForSelector(`#memmap g[data-endpoint="${vm}"] rect[data-state="lent-out"][data-handle="${h}"]`);
  await page.waitForSelector(`#memmap g[data-endpoint="${hex(other.vmId)}"] rect[data-state="borrowed-rw"][data-handle="${h}"]`);
  t.equal(await page.locator(`#memmap path[data-link="${h}"]`).count(), 1, 'the handle links owner and borrower');
  await page.locator('#memory').screenshot({ path: '/tmp/dashboard-memmap.png' });
  await other.memRelinquish(handle);
  await s.vm.memReclaim(handle);
  await page.waitForSelector(`#memmap rect[data-handle="${h}"]`, { state: 'detached' });
  t.equal(await page.locator(`#memmap g[data-endpoint="${hex(other.vmId)}"] rect[data-state^="borrowed"]`).count(), 0, 'the borrower gave it back');
  const owned = await page.locator(`#memmap g[data-endpoint="${vm}"] rect[data-state="owned"]`).evaluateAll((rs) => rs.map((r) => r.getAttribute('data-base')));
  t.ok(
    owned.some((b) => BigInt(b!) <= pages),
    'the owner owns the range again',
  );

  // The SVG export parses as SVG and holds the arrows in view.
  const svg = await download(page, '#export-svg');
  const parsed = await page.evaluate((text) => {
    const doc = new DOMParser().parseFromString(text, 'image/svg+xml');
    return {
      error: doc.querySelector('parsererror')?.textContent ?? null,
      root: doc.documentElement.localName,
      arrows: doc.querySelectorAll('g[data-seq]').length,
    };
  }, svg);
  t.equal(parsed.error, null, 'the SVG export is well-formed');
  t.equal(parsed.root, 'svg');
  t.ok(parsed.arrows > 10, `${parsed.arrows} rows in the export`);

  // The 50 calls around the refused call, as Markdown.
  await page.locator(`#chart g[data-seq="${refused.seq}"] .hit`).first().dispatchEvent('click');
  const md = await download(page, '#export-md');
  t.match(md, new RegExp(`calls around #${refused.seq}`), 'centred on the error');
  t.match(md, /\*\*Reason:\*\* MSG_SEND_DIRECT_REQ: no endpoint/, 'with its reason');
  const rows = md.split('\n').filter((l) => /^\| \**\d+/.test(l));
  t.ok(rows.length > 10 && rows.length <= 50, `${rows.length} calls`);
  t.match(md, /### Decoded buffers[\s\S]*memory transaction descriptor/, 'and the decoded buffers among them');
  t.same(problems, [], 'no exception or console error');
});

t.test('time travel: the page shows the state replay computes at a record, steps and jumps', { skip }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rspmc-dash-'));
  const file = join(dir, 'session.jsonl');
  const srv = await tracedServer({ file });
  const s = await startScenario(srv.connector);
  await finishScenario(s);
  await srv.stop();
  const session = ReplaySession.parse(file, readFileSync(file, 'utf8'));
  t.equal(session.difference, undefined, 'the recording replays');
  const app = await buildReplayApp(session);
  t.teardown(() => app.close());
  await app.listen({ host: '127.0.0.1', port: 0 });
  const addr = app.server.address();
  const base = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
  const browser = await launchChromium(t);
  const { page, problems } = await openDashboard(browser, base, /401/);
  await page.waitForSelector('body[data-opened]');
  t.equal(await page.locator('#mode').textContent(), 'replay');

  const records = session.records;
  const retrieve = records.findIndex((r) => r.kind === 'call' && r.function === 'FFA_MEM_RETRIEVE_REQ_64');
  const moveTo = async (i: number) => {
    await page.evaluate((i) => {
      const tl = document.querySelector('#timeline') as HTMLInputElement;
      tl.value = String(i);
      tl.dispatchEvent(new Event('input'));
    }, i);
    await page.waitForSelector(`#state[data-at="${records[i]!.seq}"]`);
  };
  const shown = () =>
    page.evaluate(() => ({
      endpoints: [...document.querySelectorAll('#endpoints tbody tr')].map((tr) => [...(tr as HTMLTableRowElement).cells].map((c) => c.textContent!.trim())),
      handles: [...document.querySelectorAll('#transactions tbody tr')].map((tr) => (tr as HTMLElement).dataset.handle),
      map: [...document.querySelectorAll('#memmap rect[data-handle]')].map(
        (r) => `${r.closest('g')!.getAttribute('data-endpoint')} ${r.getAttribute('data-state')}`,
      ),
    }));
  const runs = (states: string[]) => {
    const out: string[] = [];
    states.forEach((st, i) => {
      const last = out.at(-1);
      const m = last && new RegExp(`^(\\d+)(?:-(\\d+))? ${st}$`).exec(last);
      if (m && Number(m[2] ?? m[1]) === i - 1) out[out.length - 1] = `${m[1]}-${i} ${st}`;
      else out.push(`${i} ${st}`);
    });
    return out.join(', ');
  };
  const expectedAt = (i: number) => {
    const st = session.stateAt(records[i]!.seq);
    return {
      endpoints: st.endpoints.map((e) => [
        e.idHex,
        e.name,
        e.version,
        e.properties,
        runs(e.vcpus.map((v) => v.state)),
        e.rxState,
        e.pendingNotifications ? 'pending' : '',
      ]),
      handles: st.transactions.map((x) => x.handle),
      map: st.memory.endpoints.flatMap((e) => e.ranges.filter((r) => r.handle).map((r) => `${e.idHex} ${r.state}`)),
    };
  };

  // After SP2's retrieve: the VM's range lent out, SP2's borrowed, SP2's RX full with the response.
  await moveTo(retrieve);
  const at = await shown();
  t.same(at, expectedAt(retrieve), `the page shows what replay computes at #${records[retrieve]!.seq}`);
  t.same(at.map.sort(), [`${hex(s.vm.vmId)} lent-out`, `${hex(SP2)} borrowed-rw`], 'lent and borrowed');
  await page.screenshot({ path: '/tmp/dashboard-replay.png' });

  // One call forward, one back.
  await page.click('#step-fwd');
  const next = records.findIndex((r, i) => i > retrieve && (r.kind === 'call' || r.kind === 'return'));
  await page.waitForSelector(`#state[data-at="${records[next]!.seq}"]`);
  t.same(await shown(), expectedAt(next), 'one call forward');
  await page.click('#step-back');
  await page.waitForSelector(`#state[data-at="${records[retrieve]!.seq}"]`);
  t.same(await shown(), expectedAt(retrieve), 'and back (replayed again from the start)');

  // The next error from here is the refused request; then SP1's next call from the start.
  await page.click('#next-error');
  const error = records.findIndex((r, i) => i > retrieve && ((r.kind === 'call' && !!r.result?.error) || r.kind === 'fault'));
  await page.waitForSelector(`#state[data-at="${records[error]!.seq}"]`);
  t.match(await page.locator('#cursor').textContent(), /FFA_MSG_SEND_DIRECT_REQ_64/, 'the refused request');
  await moveTo(0);
  await page.selectOption('#next-ep-select', String(SP1));
  await page.click('#next-ep');
  const sp1Call = records.findIndex((r) => r.kind === 'call' && r.endpoint === SP1);
  await page.waitForSelector(`#state[data-at="${records[sp1Call]!.seq}"]`);
  t.pass("SP1's next call");

  // At the end, after the reclaim: both ranges back, no transaction.
  await moveTo(records.length - 1);
  const end = await shown();
  t.same(end, expectedAt(records.length - 1));
  t.same(end.handles, [], 'reclaimed');
  t.same(end.map, [], 'no range under a handle');

  // Opening a recording from the page (uploaded to the replay server).
  await page.setInputFiles('#open-file', file);
  await page.waitForFunction(() => /session\.jsonl/.test(document.querySelector('#health')?.textContent ?? ''));
  t.pass('a recording opened from the page');
  t.same(problems, []);
});

t.test('with serve --admin-token: the page asks for the token, then streams and inspects with it', { skip }, async (t) => {
  const srv = await tracedServer({ tokens: new Tokens({ admin: 'sesame-admin-token' }) });
  t.teardown(srv.stop);
  const browser = await launchChromium(t);
  const { page } = await openDashboard(browser, srv.base, /401/);
  await page.waitForSelector('#token:not([hidden])');
  await page.waitForSelector('#trace[data-state="unauthorized"]');
  t.match(await page.locator('#memmap-note').textContent(), /admin token/, 'the memory map says why it is empty');
  await page.fill('#admin-token', 'sesame-admin-token');
  await page.click('#token button');
  await page.waitForSelector('#trace[data-state="live"]');
  t.equal(await page.evaluate(() => sessionStorage.getItem('remote-spmc-admin-token')), 'sesame-admin-token', 'kept in sessionStorage');
  const s = await startScenario(srv.connector);
  await page.waitForSelector(`#chart g[data-fn="FFA_MEM_LEND_64"][data-to="${hex(SP2)}"]`);
  await page.waitForSelector(`#memmap g[data-endpoint="${hex(s.vm.vmId)}"] rect[data-state="lent-out"]`);
  await page.screenshot({ path: '/tmp/dashboard-token.png' });
  await finishScenario(s);
});
