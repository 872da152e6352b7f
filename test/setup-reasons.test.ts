// Every refusal of the setup, discovery, console and CPU-cycle calls says why: the exact reason code
// of each check, and the exact sentence of several.

import t from 'tap';
import { encodeCall, FFA_VERSION_1_1, FFA_VERSION_1_2, type FfaCall, fid, hex, parseUuid, toRegisters, U32, UUID_NIL } from '../proto/ffa/index.js';
import { defaultManifest, parseManifest } from '../server/manifest.js';
import { isPending, type Pending } from '../server/spmc/pending.js';
import { Spmc } from '../server/spmc/spmc.js';
import { RawVm } from './helpers.js';

const SP = 0x8010;
const PARTITIONS = [
  ...defaultManifest(),
  ...parseManifest(`
partitions:
  - name: raw-sp
    id: 0x8010
    uuids: [0badcafe-0000-4000-8000-000000000010]
    ffa-version: "1.2"
    execution-ctx-count: 1
    messaging-method: 0x607
    remote: {credential: reasons-credential}
`),
];

function setup() {
  const spmc = new Spmc({ partitions: PARTITIONS });
  const vm = RawVm.attach(spmc, { vcpuCount: 2 });
  const sp = new RawVm(spmc, SP);
  sp.negotiate(FFA_VERSION_1_2);
  /** The reason of an answer given at once. */
  const why = (ep: RawVm, c: FfaCall | (bigint | number)[]) => {
    const out = spmc.handle(ep.id, 0, Array.isArray(c) ? toRegisters(c) : encodeCall(c, ep.version));
    if (isPending(out)) throw new Error('blocked');
    return spmc.reasonFor(out);
  };
  const code = (ep: RawVm, c: FfaCall | (bigint | number)[]) => why(ep, c)?.code;
  return { spmc, vm, sp, why, code };
}

const features = (id: number, inputProperties = 0): FfaCall => ({ fn: 'FEATURES', id, inputProperties });

t.test('FFA_FEATURES', async (t) => {
  const { vm, sp, why, code } = setup();
  t.equal(code(vm, features(0x100 | 2)), 'features.feature_id_mbz');
  t.equal(code(vm, features(2, 1)), 'features.feature_properties');
  t.equal(code(vm, features(4)), 'features.unknown_feature');
  t.equal(code(vm, features(1)), 'features.feature_not_for_caller');
  t.equal(code(sp, features(2)), 'features.feature_not_for_caller');
  t.equal(code(vm, features(0x840000e0)), 'features.unknown_function');
  t.equal(code(vm, features(fid('ABORT'))), 'features.newer_version');
  t.equal(code(vm, features(fid('RX_ACQUIRE'))), 'features.not_handled');
  t.equal(code(vm, features(fid('YIELD'))), 'features.not_for_caller');
  t.equal(code(sp, features(fid('NOTIFICATION_INFO_GET', 64))), 'features.not_for_caller');
  t.equal(code(vm, features(fid('MEM_RETRIEVE_REQ', 64))), 'features.retrieve_ns_bit');
  t.equal(why(vm, features(0x840000e0))?.text, 'FEATURES: 0x840000e0 is not an FF-A function ID');
  t.equal(why(vm, features(fid('YIELD')))?.text, "FEATURES: FFA_YIELD is reported to partitions only (Hafnium's ffa_features_function)");
  t.equal(why(vm, features(fid('ABORT', 64)))?.text, 'FEATURES: FFA_ABORT_64 is from FF-A v1.3; this SPMC implements v1.2');
  t.equal(why(vm, features(1))?.text, 'FEATURES: the NPI (feature ID 1) is provided to partitions only');
});

t.test('FFA_PARTITION_INFO_GET and _REGS', async (t) => {
  const { spmc, vm, why, code } = setup();
  const get = (uuid = UUID_NIL): FfaCall => ({ fn: 'PARTITION_INFO_GET', uuid, countOnly: false });
  const regs = (startIndex: number, uuid = UUID_NIL, tag = 0): FfaCall => ({ fn: 'PARTITION_INFO_GET_REGS', uuid, startIndex, tag });
  const unknown = parseUuid('11111111-2222-3333-4444-555555555555');
  t.equal(code(vm, get(unknown)), 'partition_info_get.unknown_uuid');
  t.equal(why(vm, get())?.text, `PARTITION_INFO_GET: ${hex(vm.id)} has no RX buffer mapped`);
  t.equal(code(vm, get()), 'partition_info_get.rx_unmapped');
  vm.mapMailbox();
  vm.partitionInfoGet();
  t.equal(code(vm, get()), 'partition_info_get.rx_full');
  vm.call({ fn: 'RX_RELEASE', vmId: 0 });
  for (let i = 0; i < 4096 / 24; i++) spmc.attach({ ramBytes: 0x1000n });
  t.equal(code(vm, get()), 'partition_info_get.rx_too_small');
  t.equal(code(vm, regs(0, UUID_NIL, 1)), 'partition_info_get_regs.tag');
  t.equal(code(vm, regs(0, unknown)), 'partition_info_get_regs.unknown_uuid');
  t.equal(code(vm, regs(999)), 'partition_info_get_regs.start_index');
  t.equal(why(vm, regs(0, UUID_NIL, 1))?.text, 'PARTITION_INFO_GET_REGS: tag 0x1 was never handed out (only 0 is valid)');
  t.match(why(vm, regs(999))?.text, /^PARTITION_INFO_GET_REGS: start index 999 is not below the count \d+$/);
});

t.test('FFA_CONSOLE_LOG', async (t) => {
  const { vm, sp, why, code } = setup();
  t.equal(code(sp, { fn: 'CONSOLE_LOG', width: 64, length: 0, chars: new Uint8Array(8) }), 'console_log.char_count');
  t.equal(
    why(sp, { fn: 'CONSOLE_LOG', width: 64, length: 0, chars: new Uint8Array(8) })?.text,
    'CONSOLE_LOG_64: character count 0 is not 1..128 (a v1.2 caller)',
  );
  const v11 = RawVm.attach(vm.spmc, {}, FFA_VERSION_1_1);
  t.equal(why(v11, [fid('CONSOLE_LOG', 32), 0x125])?.code, 'console_log.mbz', 'w1[31:8] set: the codec refuses first');
  t.equal(
    why(v11, { fn: 'CONSOLE_LOG', width: 64, length: 49, chars: new Uint8Array(56) })?.text,
    'CONSOLE_LOG_64: character count 49 is not 1..48 (a v1.1 caller)',
  );
});

t.test('CPU cycles: MSG_WAIT, YIELD, RUN, INTERRUPT', async (t) => {
  const { spmc, vm, sp, why, code } = setup();
  const run = (endpoint: number, vcpu = 0): FfaCall => ({ fn: 'RUN', target: { endpoint, vcpu } });
  t.equal(code(vm, run(0x7777)), 'run.unknown_target');
  t.equal(why(vm, run(0x7777))?.text, 'RUN: no endpoint 0x7777');
  t.equal(code(vm, run(SP, 5)), 'run.vcpu');
  t.equal(code(vm, run(vm.id)), 'run.self');
  t.equal(code(sp, run(vm.id)), 'run.sp_to_vm');
  t.equal(code(vm, run(SP)), 'run.target_busy', 'its context never waited: off');
  t.equal(why(vm, run(SP))?.text, 'RUN: 0x8010 vCPU 0 is off, not waiting or preempted');
  t.equal(code(sp, { fn: 'YIELD', target: { endpoint: 0, vcpu: 0 }, timeout: 0n }), 'yield.no_cycles');
  t.equal(code(vm, [fid('INTERRUPT')]), 'interrupt.not_other_world');

  // The SP waits, a VM's request arrives; waiting again before responding is DENIED.
  const wait = spmc.handle(SP, 0, encodeCall({ fn: 'MSG_WAIT', retainRx: false }, FFA_VERSION_1_2));
  t.ok(isPending(wait));
  const req = vm.start({
    fn: 'MSG_SEND_DIRECT_REQ',
    width: 64,
    route: { source: vm.id, destination: SP },
    message: { kind: 'partition' },
    args: [1n, 0n, 0n, 0n, 0n],
  });
  t.ok(isPending(req));
  t.equal(code(sp, { fn: 'MSG_WAIT', retainRx: false }), 'msg_wait.request_ongoing');
  t.equal(why(sp, { fn: 'MSG_WAIT', retainRx: false })?.text, `MSG_WAIT: 0x8010 context 0 must answer the request from ${hex(vm.id)} first`);
  // It yields to the requester; only that vCPU may run it again.
  const y = spmc.handle(SP, 0, encodeCall({ fn: 'YIELD', target: { endpoint: 0, vcpu: 0 }, timeout: 0n }, FFA_VERSION_1_2));
  t.ok(isPending(y));
  const other = RawVm.attach(spmc, {});
  t.equal(code(other, run(SP)), 'run.not_yielded_to_caller');
  const answer = await (req as Pending).answer;
  t.equal(Number(answer[0]! & U32), fid('YIELD'), 'the requester got the yield');
});
