// A bounded run of bench/load (issue 14): a few VMs doing every kind of operation against a real
// `remote-spmc serve` process lose, duplicate and leak nothing. No timing is asserted.

import t from 'tap';
import { OPS, runLoad } from '../bench/load.js';

t.test('4 VMs, mixed operations: no message lost or duplicated, no handle or session leaked', async (t) => {
  const r = await runLoad({ vms: 4, rounds: 15, drainMs: 60_000 });
  for (const op of OPS) t.ok(r.ops[op].count > 0, `${op} ran (${r.ops[op].count})`);
  t.ok(r.messages.sent > 0, `${r.messages.sent} messages sent`);
  t.equal(r.messages.lost, 0, 'no message lost');
  t.equal(r.messages.duplicated, 0, 'no message duplicated');
  t.equal(r.handles.created, 4 * 15, 'a memory transaction per VM per round');
  t.equal(r.handles.leaked, 0, 'no memory handle leaked');
  t.equal(r.sessionsLeaked, 0, 'every session released on detach');
  // Refusals other than BUSY (a partner's RX still full after the retries) would be bugs.
  t.same(
    r.errorSamples.filter((e) => !e.includes('EBUSY')),
    [],
    'no other error',
  );
});
