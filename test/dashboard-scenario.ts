// The known scenario the dashboard tests and bench draw: a VM's direct request to SP1, a lend to
// SP2 (SP2 retrieves, writes, relinquishes; the VM reclaims), SP1 notifying the VM, and a refused call.

import { FfaDriver } from '../client-driver/driver.js';
import { EmulatedVm } from '../client-driver/vm.js';
import { FFA_PAGE_SIZE, MEM_PERM } from '../proto/ffa/index.js';
import { PARTITION_COMMANDS as CMD } from '../server/partitions/commands.js';
import { Tracer } from '../server/debug/tracer.js';
import { buildHttpApp } from '../server/http/app.js';
import { defaultManifest } from '../server/manifest.js';
import { startBuiltinPartitions } from '../server/partitions/index.js';
import { SessionCore } from '../server/session/core.js';
import { InProcessConnector } from '../server/session/in-process.js';
import type { Tokens } from '../server/session/tokens.js';
import { Spmc } from '../server/spmc/spmc.js';

export const SP1 = 0x8001;
export const SP2 = 0x8002;
/** No endpoint has this ID: a direct request to it is refused. */
export const NOBODY = 0x7ff0;

const splitU64 = (v: bigint) => [v & 0xffffffffn, v >> 32n];

export interface Scenario {
  vm: FfaDriver;
  handle: bigint;
  pages: bigint;
}

/** Up to the lend being retrieved by SP2 (not yet reclaimed): `finish` does the rest. */
export async function startScenario(connector: InProcessConnector, name = 'vm-debugged'): Promise<Scenario> {
  const vm = new FfaDriver(await EmulatedVm.attach(connector, { name }));
  await vm.init();
  await vm.sendDirectReq(SP1, [BigInt(CMD.ECHO), 1n]);
  const pages = vm.vm.pages.alloc(2)!;
  const handle = await vm.memLend({ receivers: [{ id: SP2, permissions: MEM_PERM.DATA_RW }], regions: [{ address: pages, pageCount: 2 }] });
  return { vm, handle, pages };
}

/** SP2 retrieves the lent pages (and gives them back), SP1 notifies the VM, a refused call, the reclaim. */
export async function finishScenario(s: Scenario): Promise<void> {
  const { vm, handle } = s;
  await vm.sendDirectReq(SP2, [BigInt(CMD.MEM), ...splitU64(handle), 0x5an, 2n]);
  const sp1 = vm.bus.devices().find((d) => d.vmId === SP1)!;
  const notified = new Promise<number>((resolve) => void vm.notifier.notifyRequest(sp1, false, (id) => resolve(id), 3));
  await vm.sendDirectReq(SP1, [BigInt(CMD.NOTIFY), BigInt(vm.vmId), 1n << 3n, 0n]);
  await notified;
  await vm.sendDirectReq(NOBODY, [BigInt(CMD.ECHO), 9n]).catch(() => undefined);
  await vm.memReclaim(handle);
}

export const PAGE = BigInt(FFA_PAGE_SIZE);

/** A model with the default manifest, traced from its first call (to `file` too, if given), served over HTTP. */
export async function tracedServer(opts: { file?: string; tokens?: Tokens } = {}) {
  const partitions = defaultManifest();
  const handleSeed = 0x5eed5n;
  const spmc = new Spmc({ partitions, handleSeed });
  const core = SessionCore.for(spmc);
  const tracer = new Tracer(core, { file: opts.file, session: { partitions, limits: spmc.state.limits, handleSeed } });
  await startBuiltinPartitions(core);
  const app = await buildHttpApp({ core, tracer, tokens: opts.tokens });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const addr = app.server.address();
  const base = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
  const connector = new InProcessConnector(spmc);
  const stop = async () => {
    connector.close();
    await app.close();
    await tracer.close();
  };
  return { spmc, core, tracer, app, base, connector, stop };
}
