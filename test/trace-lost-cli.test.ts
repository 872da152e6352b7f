// `remote-spmc trace` prints a `lost` record (issue 14, backpressure) as what it is: how many
// records the server dropped for this client, and which.

import t from 'tap';
import { formatRecord } from '../server/cli/trace.js';
import { lostLine } from '../server/debug/feed.js';
import type { TraceRecord } from '../server/debug/records.js';

t.test('a lost record is printed with its count and range', async (t) => {
  const line = formatRecord(JSON.parse(lostLine(5, 10, 14).json) as TraceRecord, false);
  t.match(line, /^\s+14 lost 5 records \(#10\.\.#14\): this client read too slowly$/);
  t.notMatch(line, /\?\(0x0000\)/, 'not shown as a record of endpoint 0');
  t.match(formatRecord(JSON.parse(lostLine(1, 3, 3).json) as TraceRecord, false), /lost 1 record \(#3\.\.#3\)/);
});
