// The driver's mem ops over real gRPC: VMs and the built-in partitions sharing, lending and donating.

import t from 'tap';
import { errorCodeFromWord, FFA_ERRORS, FFA_PAGE_SIZE, MEM_PERM, splitU64 } from '../proto/ffa/index.js';
import { FfaDriver } from '../client-driver/driver.js';
import { GrpcConnector } from '../client-driver/transport/grpc.js';
import { EmulatedVm } from '../client-driver/vm.js';
import { SpmcGrpcServer } from '../server/grpc/server.js';
import { PARTITION_COMMANDS as CMD } from '../server/partitions/commands.js';
import { codeOf, errnoOf, startedSpmc } from './helpers.js';

const RW = MEM_PERM.DATA_RW;
const SP1 = 0x8001;

async function topology() {
  const spmc = await startedSpmc();
  const server = new SpmcGrpcServer(spmc);
  const connector = new GrpcConnector(`127.0.0.1:${await server.listen('127.0.0.1:0')}`);
  const vm = async (name: string) => {
    const v = await EmulatedVm.attach(connector, { name });
    const d = new FfaDriver(v);
    await d.init();
    return d;
  };
  const stop = async () => {
    connector.close();
    await server.stop(200);
  };
  return { spmc, vm, stop };
}

const PAGE = BigInt(FFA_PAGE_SIZE);

const memCommand = (d: FfaDriver, to: number, handle: bigint, pattern: number, type: number) =>
  d.sendDirectReq(to, [BigInt(CMD.MEM), ...splitU64(handle), BigInt(pattern), BigInt(type)]);

t.test('VM -> SP1: share, lend and donate with the MEM command', async (t) => {
  const { spmc, vm, stop } = await topology();
  t.teardown(stop);
  const a = await vm('owner');
  const pages = a.vm.pages.alloc(3)!;
  const share = await a.memShare({ receivers: [{ id: SP1, permissions: RW }], regions: [{ address: pages, pageCount: 3 }] });
  const [, status] = await memCommand(a, SP1, share, 0xa5, 1);
  t.equal(status, 0n, 'SP1 retrieved, wrote, read back and relinquished');
  t.same([...(await a.vm.read(pages + 3n * PAGE - 2n, 2))], [0xa5, 0xa5], 'the owner reads the pattern');
  await a.memReclaim(share);

  const lend = await a.memLend({ receivers: [{ id: SP1, permissions: RW }], regions: [{ address: pages, pageCount: 1 }] });
  t.equal(await codeOf(a.vm.read(pages, 1)), 'PERMISSION_DENIED', 'lent: the owner may not read it');
  t.equal((await memCommand(a, SP1, lend, 0x3c, 2))[1], 0n);
  await a.memReclaim(lend);
  t.same([...(await a.vm.read(pages, 1))], [0x3c], 'after reclaim the owner sees what SP1 wrote');

  const donate = await a.memDonate({ receivers: [{ id: SP1, permissions: 0 }], regions: [{ address: pages + PAGE, pageCount: 1 }] });
  t.equal((await memCommand(a, SP1, donate, 0x11, 3))[1], 0n);
  t.equal(await codeOf(a.vm.read(pages + PAGE, 1)), 'PERMISSION_DENIED', 'donated for good');
  t.same(await errnoOf(a.memReclaim(donate)), 'EINVAL', 'nothing to reclaim');
  const bad = await memCommand(a, SP1, 0x1234n, 1, 1);
  t.equal(errorCodeFromWord(bad[1]!), FFA_ERRORS.INVALID_PARAMETERS, 'MEM with an unknown handle reports the error');
  t.equal(spmc.state.shares.size, 0, 'no live transactions');
});

t.test('VM -> VM share, and 4,000 constituents in fragments both ways', async (t) => {
  const { spmc, vm, stop } = await topology();
  t.teardown(stop);
  const a = await vm('owner');
  const b = await vm('borrower');
  t.equal(a.rxtxBufSize, FFA_PAGE_SIZE, '4 KiB buffers');
  const base = a.vm.pages.alloc(8000)!;
  const regions = Array.from({ length: 4000 }, (_, i) => ({ address: base + BigInt(i) * 8192n, pageCount: 1 }));
  const h = await a.memShare({ receivers: [{ id: b.vmId, permissions: RW }], regions });
  const got = await b.memRetrieve({ handle: h, sender: a.vmId });
  t.equal(got.constituents.length, 4000, 'the whole response came back in fragments');
  t.same(got.constituents[3999], regions[3999]);
  t.equal(got.permissions & MEM_PERM.DATA_MASK, RW);
  await b.vm.write(regions[1234]!.address, new Uint8Array([0x42]));
  t.same([...(await a.vm.read(regions[1234]!.address, 1))], [0x42], 'the owner reads what the borrower wrote');
  t.equal(await errnoOf(a.memReclaim(h)), 'EACCES', 'reclaim while retrieved is DENIED');
  await b.memRelinquish(h);
  t.equal(await codeOf(b.vm.read(regions[0]!.address, 1)), 'PERMISSION_DENIED', 'relinquished');
  await a.memReclaim(h);
  t.equal(spmc.state.shares.size, 0);
});
