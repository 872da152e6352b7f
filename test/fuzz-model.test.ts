// The model under random valid and mutated calls and descriptors (a bounded, seeded run of the
// fuzzer in bench/; the long one is `node dist/bench/fuzz.js`), the invariant checker shown to
// catch what it checks, and the bug the fuzzer's checker found, as a regression.

import t from 'tap';
import {
  type EndpointId,
  encodeMemTransaction,
  FFA_VERSION_1_2,
  type FfaCall,
  MEM_ATTR_NORMAL_WB_IS,
  MEM_FLAGS,
  MEM_PERM,
  MEM_TRANSACTION_TYPES,
} from '../proto/ffa/index.js';
import { Fuzzer } from '../bench/fuzz-engine.js';
import { InvariantChecker } from '../bench/invariants.js';
import { newSpmc, RawVm } from './helpers.js';

const SP1 = 0x8001;
const PAGE = 4096n;

t.test('a bounded fuzz run: no crash, no invariant break, every refusal with its reason', async (t) => {
  for (const seed of [1, 2]) {
    const f = new Fuzzer(seed);
    const st = f.run(1000);
    t.equal(st.crashes.length, 0, `seed ${seed}: no crash${st.crashes[0] ? `\n${st.crashes[0].call}\n${st.crashes[0].error}` : ''}`);
    t.equal(st.breakCount, 0, `seed ${seed}: no invariant break${st.breaks.length ? `\n${st.breaks.slice(0, 5).join('\n')}` : ''}`);
    t.equal(f.checker.checks, st.steps, 'the invariants were checked after every step');
    // The run reaches deep enough to mean something: memory moves, and messages and refusals of many kinds.
    const ok = (fn: string) => st.accepted.get(fn) ?? 0;
    t.ok(ok('FFA_MEM_SHARE_64') + ok('FFA_MEM_LEND_64') + ok('FFA_MEM_DONATE_64') > 0, 'some memory was sent');
    t.ok(ok('FFA_MEM_RETRIEVE_REQ_64') > 0, 'and retrieved');
    t.ok(ok('FFA_MSG_SEND_DIRECT_REQ_64') + ok('FFA_MSG_SEND_DIRECT_REQ_32') + ok('FFA_MSG_SEND_DIRECT_REQ2') > 0, 'some direct requests were delivered');
    t.ok(st.reasons.size > 50, `refused for many reasons (${st.reasons.size})`);
  }
});

t.test('a seed makes the same run', async (t) => {
  const a = new Fuzzer(7).run(300);
  const b = new Fuzzer(7).run(300);
  t.same([...a.answers], [...b.answers]);
  t.same([...a.reasons], [...b.reasons]);
  t.equal(a.descriptors, b.descriptors);
});

t.test('the checker catches a page borrowed without a transaction, two owners, and a dangling block', async (t) => {
  const spmc = newSpmc();
  const checker = new InvariantChecker(spmc);
  const vm = RawVm.attach(spmc);
  t.same(checker.check(), [], 'a fresh model holds');
  const sp = spmc.endpoint(SP1)!;
  // SP1 maps one of the VM's pages as if it had retrieved it.
  sp.access.assign(vm.ramBase + 16n * PAGE, vm.ramBase + 17n * PAGE, 'borrowed', 'rw');
  t.match(checker.check().join('\n'), /borrowed by 0x8001 without a live transaction/);
  sp.access.assign(vm.ramBase + 16n * PAGE, vm.ramBase + 17n * PAGE, 'owned', 'rw');
  t.match(checker.check().join('\n'), /has 2 owners/);
  sp.access.remove(vm.ramBase + 16n * PAGE, vm.ramBase + 17n * PAGE);
  t.same(checker.check(), [], 'holds again once undone');
  const v = spmc.endpoint(vm.id)!.vcpus[0]!;
  v.state = 'blocked';
  t.match(checker.check().join('\n'), /is blocked without an outstanding call/);
  v.state = 'running';
  sp.notifications.boundSp[3] = 0x8123;
  t.match(checker.check().join('\n'), /notification 3 is bound to 0x8123, which does not exist/);
});

/** Call `c` as `id` (v1.2) through the session core. */
function as(vm: RawVm, id: EndpointId, c: FfaCall): FfaCall {
  return new RawVm(vm.spmc, id, FFA_VERSION_1_2).call(c);
}

t.test('a donation partway retrieved keeps its pages out of a new VM when its sender leaves', async (t) => {
  // Found by the fuzzer's checker: the sender's RAM window was freed (nobody had the pages mapped)
  // and given to the next VM, then the retrieval finished and the partition owned the new VM's
  // pages too. Hafnium's ffa_memory_retrieve_continue (api_ffa_mem_frag_rx) hands the rest of the
  // response to the retriever, whose ffa_retrieve_check_update then maps the pages for it alone:
  // until then they belong to the transaction, not to whoever gets the address space next.
  const spmc = newSpmc();
  const checker = new InvariantChecker(spmc);
  const a = RawVm.attach(spmc, { ramBytes: 2n << 20n });
  a.mapMailbox(2);
  const sp = spmc.endpoint(SP1)!;
  t.equal(as(a, SP1, { fn: 'RXTX_MAP', width: 64, tx: sp.ram.base, rx: sp.ram.base + PAGE, pageCount: 1 }).fn, 'SUCCESS');
  // 260 one-page constituents: the response does not fit SP1's one-page RX.
  const constituents = Array.from({ length: 260 }, (_, i) => ({ address: a.ramBase + BigInt(16 + i) * PAGE, pageCount: 1 }));
  const donate = encodeMemTransaction({ sender: a.id, attributes: 0, flags: 0, receivers: [{ receiver: SP1, permissions: 0 }], constituents }, FFA_VERSION_1_2);
  spmc.writeMemory(a.id, a.ramBase, donate);
  const sent = a.call({ fn: 'MEM_DONATE', width: 64, totalLength: donate.length, fragmentLength: donate.length, buffer: { address: 0n, pageCount: 0 } });
  if (sent.fn !== 'SUCCESS') throw new Error(`MEM_DONATE: ${sent.fn}`);
  const handle = sent.args[0]! | (sent.args[1]! << 32n);
  t.same(checker.check(), [], 'holds after the donation');
  const request = encodeMemTransaction(
    {
      sender: a.id,
      attributes: MEM_ATTR_NORMAL_WB_IS,
      flags: MEM_TRANSACTION_TYPES.donate << MEM_FLAGS.TYPE_SHIFT,
      handle,
      receivers: [{ receiver: SP1, permissions: MEM_PERM.DATA_RW | (MEM_PERM.INSTRUCTION_NX << MEM_PERM.INSTRUCTION_SHIFT) }],
    },
    FFA_VERSION_1_2,
  );
  spmc.writeMemory(SP1, sp.ram.base, request);
  const first = as(a, SP1, {
    fn: 'MEM_RETRIEVE_REQ',
    width: 64,
    totalLength: request.length,
    fragmentLength: request.length,
    buffer: { address: 0n, pageCount: 0 },
  });
  if (first.fn !== 'MEM_RETRIEVE_RESP') throw new Error(`MEM_RETRIEVE_REQ: ${first.fn}`);
  t.ok(first.fragmentLength < first.totalLength, 'the response comes in fragments');
  t.same(checker.check(), [], 'holds partway through the retrieval');

  spmc.detach(a.id);
  const c = RawVm.attach(spmc, { ramBytes: 2n << 20n });
  const cWindow = spmc.endpoint(c.id)!.ram;
  const donated = constituents.some((k) => k.address >= cWindow.base && k.address < cWindow.base + cWindow.size);
  t.notOk(donated, 'the new VM is not given the donated pages');
  t.same(checker.check(), [], 'holds once the sender left and another VM came');

  t.equal(as(a, SP1, { fn: 'RX_RELEASE', vmId: 0 }).fn, 'SUCCESS');
  const rest = as(a, SP1, { fn: 'MEM_FRAG_RX', handle, fragmentOffset: first.fragmentLength, endpoint: 0 });
  t.equal(rest.fn, 'MEM_FRAG_TX', 'the rest of the response');
  t.ok(sp.access.allows(constituents[0]!.address, constituents[0]!.address + PAGE, 'rw', ['owned']), 'SP1 owns the donated pages');
  t.same(checker.check(), [], 'no page has two owners');
});
