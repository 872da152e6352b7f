// What a trace file's header must carry for replay to rebuild the model a run had: `serve --strict`
// and the manifest's logical partitions. Without them the replayed answers differ (a reclaim the
// strict model refused succeeds; a direct request the logical partition echoed is refused).

import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { FfaDriver } from '../client-driver/driver.js';
import { EmulatedVm } from '../client-driver/vm.js';
import { fid, MEM_PERM, parseUuid, toRegisters, U32 } from '../proto/ffa/index.js';
import { PARTITION_COMMANDS as CMD } from '../server/partitions/commands.js';
import { parseTrace, replay } from '../server/debug/replay.js';
import { Tracer } from '../server/debug/tracer.js';
import { defaultManifest } from '../server/manifest.js';
import { startBuiltinPartitions } from '../server/partitions/index.js';
import { SessionCore } from '../server/session/core.js';
import { InProcessConnector } from '../server/session/in-process.js';
import type { LogicalPartition } from '../server/spmc/logical-partitions.js';
import { Spmc } from '../server/spmc/spmc.js';

const LOGICAL: LogicalPartition = { id: 0xffc0, name: 'el3-service', uuids: [parseUuid('0badcafe-0000-4000-8000-0000000000c0')], answers: { kind: 'echo' } };

t.test('a strict run with a logical partition replays as recorded', async (t) => {
  const file = join(mkdtempSync(join(tmpdir(), 'rspmc-replay-')), 'run.jsonl');
  const partitions = defaultManifest();
  const handleSeed = 0x1234n;
  const spmc = new Spmc({ partitions, handleSeed, strict: true, logicalPartitions: [LOGICAL] });
  const core = SessionCore.for(spmc);
  const tracer = new Tracer(core, { file, session: { partitions, limits: spmc.state.limits, handleSeed, strict: true, logicalPartitions: [LOGICAL] } });
  await startBuiltinPartitions(core, (id, e) => t.fail(`partition ${id}: ${String(e)}`));

  const vm = new FfaDriver(await EmulatedVm.attach(new InProcessConnector(spmc), { name: 'vm' }));
  await vm.init();
  // SP1 forwards an ECHO to the logical partition, which answers it (from a VM it would be refused).
  const forwarded = await vm.sendDirectReq(0x8001, [BigInt(CMD.FORWARD), BigInt(LOGICAL.id), 7n, 8n, 9n]);
  t.not(forwarded[0], BigInt(CMD.ERROR), `SP1 reached the logical partition (${forwarded.map((w) => w.toString(16)).join(' ')})`);
  const page = vm.vm.pages.alloc(1)!;
  const handle = await vm.memShare({ receivers: [{ id: 0x8001, permissions: MEM_PERM.DATA_RW }], regions: [{ address: page, pageCount: 1 }] });
  // Reclaim flags bits [31:2] are MBZ in the spec; Hafnium never reads them, strict mode refuses them.
  const refused = await vm.invokeFfaFn(toRegisters([fid('MEM_RECLAIM'), handle & U32, handle >> 32n, 0x100]));
  t.equal(spmc.reasonFor(refused)?.code, 'mem_reclaim.flags', 'strict: reclaim flags refused');
  await vm.memReclaim(handle);
  await vm.exit();
  await tracer.close();

  const { header, records } = parseTrace(readFileSync(file, 'utf8'), file);
  t.equal(header.strict, true, 'the header says strict');
  t.match(header.logicalPartitions, [{ id: '0xffc0', name: 'el3-service', answers: { kind: 'echo' } }], 'and lists the logical partition');
  const report = replay(header, records);
  t.equal(report.difference, undefined, JSON.stringify(report.difference));
  t.ok(report.matched > 0, `${report.matched} answers compared equal`);

  // The same records against a header without them: the replay finds the difference.
  const bare = { ...header };
  delete bare.strict;
  delete bare.logicalPartitions;
  t.ok(replay(bare, records).difference, 'without them the replay differs');
});
