// The dashboard in the browser (headless Chromium via playwright-core, /usr/bin/chromium):
//  - frame time while scrolling the sequence chart of 10,000 live records (only visible rows drawn);
//  - time to open a recorded session of 10,000 records with `replay --serve` (parse and replay on
//    the server, then records, buffers, chart and the first state in the page).
//
//   npm run build && node dist/bench/dashboard.js [--records N]

import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { FfaDriver } from '../client-driver/driver.js';
import { EmulatedVm } from '../client-driver/vm.js';
import { ReplaySession } from '../server/debug/replay-session.js';
import { buildReplayApp } from '../server/http/replay.js';
import { PARTITION_COMMANDS as CMD } from '../server/partitions/commands.js';
import { Tracer } from '../server/debug/tracer.js';
import { buildHttpApp } from '../server/http/app.js';
import { defaultManifest } from '../server/manifest.js';
import { startBuiltinPartitions } from '../server/partitions/index.js';
import { SessionCore } from '../server/session/core.js';
import { InProcessConnector } from '../server/session/in-process.js';
import { Spmc } from '../server/spmc/spmc.js';

const { values } = parseArgs({ options: { records: { type: 'string', default: '10000' } } });
const RECORDS = Number(values.records);
const CHROMIUM = '/usr/bin/chromium';

const q = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))]!;
const ms = (n: number) => `${n.toFixed(1)} ms`;

const file = join(mkdtempSync(join(tmpdir(), 'rspmc-dash-bench-')), 'session.jsonl');
// A model traced from its first call into `file`, served as serve serves it.
const partitions = defaultManifest();
const spmc = new Spmc({ partitions, handleSeed: 0x5eed5n });
const core = SessionCore.for(spmc);
const tracer = new Tracer(core, { file, session: { partitions, limits: spmc.state.limits, handleSeed: 0x5eed5n } });
await startBuiltinPartitions(core);
const http = await buildHttpApp({ core, tracer });
await http.listen({ host: '127.0.0.1', port: 0 });
const httpAddr = http.server.address();
const connector = new InProcessConnector(spmc);
const srv = {
  tracer,
  connector,
  base: `http://127.0.0.1:${typeof httpAddr === 'object' && httpAddr ? httpAddr.port : 0}`,
  stop: async () => {
    connector.close();
    await http.close();
    await tracer.close();
  },
};
const vm = new FfaDriver(await EmulatedVm.attach(srv.connector, { name: 'bench-vm' }));
await vm.init();
// Direct requests to SP1 and SP2 (4 records each: two calls, two answers) until the ring is full.
for (let i = 0; srv.tracer.nextSeq <= RECORDS; i++) await vm.sendDirectReq(i % 2 ? 0x8001 : 0x8002, [BigInt(CMD.ECHO), BigInt(i)]);
await srv.tracer.drained();
console.error(`# ${srv.tracer.nextSeq - 1} records made`);

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
try {
  // Live: the page reads the ring (10,000 records) and draws the chart; then scroll it, frame by frame.
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const t0 = performance.now();
  await page.goto(srv.base);
  await page.waitForSelector('#trace[data-state="live"]');
  const lastSeq = srv.tracer.nextSeq - 1;
  await page.waitForFunction((seq) => (window as unknown as { dashboard: { model: { lastSeq: number } } }).dashboard.model.lastSeq >= seq, lastSeq, {
    timeout: 300_000,
  });
  const liveLoad = performance.now() - t0;
  const rows = Number(await page.locator('#chart').getAttribute('data-rows'));
  const frames = await page.evaluate(
    () =>
      new Promise<number[]>((resolve) => {
        const chart = document.querySelector('#chart') as HTMLElement;
        chart.scrollTop = 0;
        const times: number[] = [];
        let last = performance.now();
        const step = () => {
          const now = performance.now();
          times.push(now - last);
          last = now;
          chart.scrollTop += 250;
          if (times.length < 240 && chart.scrollTop + chart.clientHeight < chart.scrollHeight) requestAnimationFrame(step);
          else resolve(times.slice(1));
        };
        requestAnimationFrame(step);
      }),
  );
  const drawn = await page.locator('#chart g[data-seq]').count();
  console.log(`live chart: ${rows} rows from ${RECORDS} records, loaded in ${ms(liveLoad)}; ${drawn} rows in the DOM`);
  console.log(`  scrolling ${frames.length} frames: median ${ms(q(frames, 0.5))}, p95 ${ms(q(frames, 0.95))}, max ${ms(Math.max(...frames))}`);
  await page.close();

  // Replay: the same session from its file.
  const t1 = performance.now();
  const session = ReplaySession.parse(file, readFileSync(file, 'utf8'));
  const parsed = performance.now() - t1;
  const app = await buildReplayApp(session);
  await app.listen({ host: '127.0.0.1', port: 0 });
  const addr = app.server.address();
  const rpage = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const t2 = performance.now();
  await rpage.goto(`http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`);
  await rpage.waitForSelector('body[data-opened]');
  await rpage.waitForSelector(`#state[data-at="${session.records[0]!.seq}"]`);
  const opened = performance.now() - t2;
  const t3 = performance.now();
  const last = session.records.at(-1)!.seq;
  await rpage.evaluate((i) => {
    const tl = document.querySelector('#timeline') as HTMLInputElement;
    tl.value = String(i);
    tl.dispatchEvent(new Event('input'));
  }, session.records.length - 1);
  await rpage.waitForSelector(`#state[data-at="${last}"]`);
  const toEnd = performance.now() - t3;
  console.log(`recorded session: ${session.records.length} records; parse, replay and decode on the server ${ms(parsed)}`);
  console.log(`  page open (records, buffers, chart, first state): ${ms(opened)}; jump to the last record's state: ${ms(toEnd)}`);
  await app.close();
} finally {
  await browser.close();
  await srv.stop();
}
process.exit(0);
