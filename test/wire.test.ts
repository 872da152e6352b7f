// The bigint codec of CallRequest/CallReply agrees with the generic protobuf codec of the .proto.

import t from 'tap';
import {
  decodeCallReply,
  decodeCallRequest,
  encodeCallReply,
  encodeCallRequest,
  registerFile,
  spmcServiceDefinition,
  u64FromWire,
  u64ToWire,
} from '../proto/wire.js';

const generic = spmcServiceDefinition()['Call']!;
const x = [0x84000063n, 0x10002n, 0n, 0xffffffffffffffffn, 0x8000000000000000n, 0n, 0n];

t.test('requests: our bytes parse generically, and generic bytes parse here', async (t) => {
  const ours = encodeCallRequest({ session: 'sess-ü', vcpu: 300, x });
  const viaGeneric = generic.requestDeserialize(ours) as { session: string; vcpu: number; x: unknown[] };
  t.equal(viaGeneric.session, 'sess-ü');
  t.equal(viaGeneric.vcpu, 300);
  t.same(
    viaGeneric.x.map((v) => u64FromWire(v as never)),
    x.slice(0, 5),
    'trailing zeros dropped',
  );
  const theirs = generic.requestSerialize({ session: 'abc', vcpu: 3, x: x.map(u64ToWire) });
  t.same(decodeCallRequest(theirs), { session: 'abc', vcpu: 3, x });
});

t.test('replies both ways', async (t) => {
  const ours = encodeCallReply(x);
  t.same(
    (generic.responseDeserialize(ours) as { x: unknown[] }).x.map((v) => u64FromWire(v as never)),
    x.slice(0, 5),
  );
  t.same(decodeCallReply(generic.responseSerialize({ x: x.map(u64ToWire) })).x, x);
  t.same(decodeCallReply(encodeCallReply([0n, 0n])), { x: [] }, 'all zero: nothing on the wire');
});

t.test('a refusal reason rides beside the registers, both ways', async (t) => {
  const reason = { code: 'msg_send2.receiver_no_indirect', text: 'MSG_SEND2: receiver 0x8003 does not receive indirect messages ü' };
  const ours = encodeCallReply(x, reason);
  const viaGeneric = generic.responseDeserialize(ours) as { x: unknown[]; reason: { code: string; text: string } };
  t.same(
    viaGeneric.x.map((v) => u64FromWire(v as never)),
    x.slice(0, 5),
  );
  t.same(viaGeneric.reason, reason);
  t.same(decodeCallReply(generic.responseSerialize({ x: x.map(u64ToWire), reason })), { x, reason });
  t.same(decodeCallReply(ours), { x: x.slice(0, 5), reason });
  t.notOk(decodeCallReply(encodeCallReply(x)).reason, 'no reason unless there is one');
});

t.test('unpacked registers and unknown fields are read as protobuf says', async (t) => {
  // field 3, wire type 1 (unpacked fixed64) twice; an unknown varint field 9; vcpu as field 2.
  const bytes = Buffer.concat([
    Buffer.from([0x19]),
    Buffer.from('0100000000000000', 'hex'),
    Buffer.from([0x48, 0x05]),
    Buffer.from([0x19]),
    Buffer.from('0200000000000000', 'hex'),
    Buffer.from([0x10, 0x02]),
  ]);
  t.same(decodeCallRequest(bytes), { session: '', vcpu: 2, x: [1n, 2n] });
});

t.test('malformed bytes throw', async (t) => {
  for (const hex of ['1a', '1aff', '1a0501', '1a03010203', 'ff', '19010203', '0aff01', '0b']) {
    t.throws(() => decodeCallRequest(Buffer.from(hex, 'hex')), RangeError, hex);
  }
});

t.test('the register file is 18 entries', async (t) => {
  t.equal(registerFile([1n])!.length, 18);
  t.equal(registerFile(new Array(19).fill(1n)), undefined);
});
