// The chart's model (server/http/public/model.js, plain browser JavaScript run here in Node): the
// arrows the Chromium scenario does not reach — FFA_RUN and the YIELD back, MSG_SEND2 to its
// receiver once its header is decoded, an injected answer, and a `lost` record with its count.

import t from 'tap';
import { FfaDriver } from '../client-driver/driver.js';
import { EmulatedVm } from '../client-driver/vm.js';
import { hex } from '../proto/ffa/index.js';
import type { TraceRecord } from '../server/debug/records.js';
import { PARTITION_COMMANDS as CMD } from '../server/partitions/commands.js';
import { tracedServer } from './dashboard-scenario.js';

const SP3 = 0x8003;
interface Row {
  seq: number;
  kind: string;
  from: number;
  to: number[];
  fn?: string;
  label: string;
  error?: boolean;
  injected?: string;
}
interface Model {
  rows: Row[];
  bars: { endpoint: number; callSeq: number; from: number; to?: number }[];
  add(r: unknown): boolean;
  addBuffers(seq: number | string, b: unknown): boolean;
}
// A path the compiler does not follow: the page's scripts are served as they are, not compiled.
const modelPath = new URL('../../server/http/public/model.js', import.meta.url).href;
const { ChartModel, SPMC } = (await import(modelPath)) as { ChartModel: new (f?: object) => Model; SPMC: number };

t.test('FFA_RUN and YIELD back, MSG_SEND2 to its receiver, an injected answer, lost records', async (t) => {
  const srv = await tracedServer();
  t.teardown(srv.stop);
  const vm = async (name: string) => {
    const d = new FfaDriver(await EmulatedVm.attach(srv.connector, { name }));
    await d.init();
    return d;
  };
  const a = await vm('vm-a');
  const b = await vm('vm-b');
  // SP3 yields once; the driver runs it again with FFA_RUN until it answers.
  await a.sendDirectReq(SP3, [BigInt(CMD.YIELD), 1n]);
  const got = new Promise<void>((resolve) => (a.notifier.onUnclaimedMessage = () => resolve()));
  await b.sendIndirect(a.vmId, Uint8Array.of(1, 2, 3));
  await got;
  await srv.tracer.drained();

  const records = srv.tracer.recent({}, 10000);
  const m = new ChartModel();
  for (const r of records) m.add(r);
  const buffers = (await (await fetch(`${srv.base}/v1/trace/buffers?from=0`)).json()) as Record<string, unknown>;
  for (const [seq, buf] of Object.entries(buffers)) m.addBuffers(seq, buf);

  const run = m.rows.find((r) => r.fn === 'FFA_RUN');
  t.ok(run, 'an FFA_RUN row');
  t.equal(run!.from, a.vmId, 'from the VM');
  t.same(run!.to, [SP3], 'to the partition it runs');
  const yielded = m.rows.find((r) => r.kind === 'return' && r.label === 'YIELD');
  t.ok(yielded, 'YIELD back');
  t.equal(yielded!.from, SP3);
  t.same(yielded!.to, [a.vmId], 'to the VM whose request it was running');
  t.ok(yielded!.seq < run!.seq, 'before the VM runs it again');
  const yieldCall = records.find((r) => r.kind === 'call' && r.endpoint === SP3 && r.function === 'FFA_YIELD')!;
  const bar = m.bars.find((x) => x.callSeq === yieldCall.seq);
  t.ok(bar && bar.to !== undefined, "SP3's yield is a bar, closed when it was run again");

  const send2 = m.rows.find((r) => r.fn === 'FFA_MSG_SEND2');
  t.equal(send2?.from, b.vmId);
  t.same(send2?.to, [a.vmId], 'MSG_SEND2 points at the receiver its header names');

  // An answer a fault rule gave (the field the fault injector adds), and a subscriber's lost records.
  const last = records.at(-1)!.seq;
  const injected: TraceRecord = { ...(records.find((r) => r.kind === 'call' && !r.blocked)! as Extract<TraceRecord, { kind: 'call' }>), seq: last + 1 };
  m.add({ ...injected, injected: 'rule-7', result: { function: 'FFA_ERROR', error: 'BUSY', r: ['0x84000060', '0x0', '0xfffffffc'] }, reason: 'injected' });
  t.match(m.rows.at(-1), { injected: 'rule-7', error: true }, 'an injected answer is marked with its rule');
  m.add({ seq: last + 40, time: '', endpoint: 0, name: '', kind: 'lost', count: 38, fromSeq: last + 2 });
  t.match(m.rows.at(-1), { kind: 'lost', label: `38 records lost (#${last + 2}–#${last + 40})`, error: true }, 'lost records, with their count');
  t.equal(m.rows.at(-1)!.from, SPMC);
  t.ok(
    m.rows.every((r) => r.to.length > 0),
    `${m.rows.length} rows, each with a target (${hex(a.vmId)}, ${hex(b.vmId)})`,
  );
});
