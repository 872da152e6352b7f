// From trace records to what the sequence chart draws: lifelines (VMs, the SPMC, SPs) and rows,
// each row an arrow (a call from caller to target, an answer back, a signal the SPMC raised) or a
// note on a lifeline (attach, fault, lost records), and activation bars for blocked calls.
// Pure: the same records in the same order give the same chart, live or from a recording.

/** The SPMC's lifeline key (no endpoint has this ID). */
export const SPMC = -1;

const num = (h) => (typeof h === 'number' ? h : h === undefined ? undefined : Number(h));
/** "FFA_MSG_SEND_DIRECT_REQ_64" -> "MSG_SEND_DIRECT_REQ". */
export const base = (fn) => (fn || '').replace(/^FFA_/, '').replace(/_(32|64)$/, '');
const handleOf = (lo, hi) => (BigInt(hi || '0') << 32n) | BigInt(lo || '0');
const hex = (n) => `0x${n.toString(16)}`;

/** A decoded value, compact: "{source=0x1 destination=0x8001}". */
export const brief = (v) =>
  Array.isArray(v)
    ? `[${v.map(brief).join(' ')}]`
    : v && typeof v === 'object'
      ? Object.entries(v)
          .map(([k, x]) => `${k}=${brief(x)}`)
          .join(' ')
      : String(v ?? '');

/** The direct message's payload registers as a short label. */
const payload = (args) => (args?.args ? args.args.filter((a, i) => i < 2 || a !== '0x0').join(',') : '');

export class ChartModel {
  constructor(filter = {}) {
    this.filter = filter;
    /** Lifelines in drawing order. */
    this.lifelines = [{ id: SPMC, label: 'SPMC', kind: 'spmc' }];
    this.names = new Map();
    this.rows = [];
    /** Activation bars: { endpoint, callSeq, from: row, to: row | undefined (still open) }. */
    this.bars = [];
    this.openBars = new Map();
    /** Call rows by seq (a return or a buffer finds its call). */
    this.callRows = new Map();
    /** Memory handles: their owner and borrowers, from sends, buffers and retrieves. */
    this.handles = new Map();
    /** Decoded buffers by seq (filled as they come; a send's borrowers come from them). */
    this.buffers = new Map();
    this.lastSeq = 0;
  }

  lane(id) {
    if (id === SPMC || id === undefined) return SPMC;
    if (!this.lifelines.some((l) => l.id === id)) {
      this.lifelines.push({ id, label: `${hex(id)} ${this.names.get(id) || ''}`.trim(), kind: id >= 0x8000 ? 'sp' : 'vm' });
      // VMs left of the SPMC, partitions right of it, each in ID order.
      this.lifelines.sort((a, b) => (a.id === SPMC ? (b.id >= 0x8000 ? -1 : 1) : b.id === SPMC ? (a.id >= 0x8000 ? 1 : -1) : a.id - b.id));
    }
    return id;
  }

  name(id, name) {
    if (!name || this.names.get(id) === name) return;
    this.names.set(id, name);
    const l = this.lifelines.find((x) => x.id === id);
    if (l) l.label = `${hex(id)} ${name}`;
  }

  /** Whether a row passes the endpoint and function filters. */
  keep(row) {
    const f = this.filter;
    if (f.endpoint !== undefined && row.from !== f.endpoint && !row.to.includes(f.endpoint)) return false;
    if (f.function && !(row.fn || '').toUpperCase().includes(f.function.toUpperCase())) return false;
    return true;
  }

  push(row) {
    row.to ??= [row.from];
    if (!this.keep(row)) return false;
    row.index = this.rows.length;
    this.lane(row.from);
    for (const t of row.to) this.lane(t);
    this.rows.push(row);
    return true;
  }

  /** The borrowers a send names (its descriptor), else the SPMC until the descriptor is known. */
  sendTargets(seq) {
    const d = this.buffers.get(seq)?.find((b) => b.what === 'memory transaction descriptor')?.value;
    const ids = d?.receivers?.map((r) => num(r.receiver)).filter((x) => x !== undefined);
    return ids?.length ? ids : [SPMC];
  }

  /** Buffers arrived for a seq: a send's or message's arrow may now point at its receivers. */
  addBuffers(seq, buffers) {
    this.buffers.set(Number(seq), buffers);
    const row = this.callRows.get(Number(seq));
    if (!row) return false;
    const fn = base(row.fn);
    if (/^MEM_(SHARE|LEND|DONATE)$/.test(fn)) {
      row.to = this.sendTargets(row.seq);
      const h = row.handle !== undefined && this.handles.get(row.handle);
      if (h) h.borrowers = row.to.filter((t) => t !== SPMC);
    } else if (fn === 'MEM_RETRIEVE_REQ' || fn === 'MEM_RELINQUISH') {
      const h = buffers.find((b) => b.buffer === 'TX')?.value?.handle;
      const owner = h !== undefined ? this.handles.get(h)?.owner : undefined;
      if (h === undefined) return false;
      row.handle = h;
      row.to = [owner ?? SPMC];
      row.label = `${fn.replace('MEM_', '')} ${h}`;
    } else if (fn === 'MSG_SEND2') {
      const r = num(buffers.find((b) => b.what === 'indirect message')?.value?.receiver);
      if (r !== undefined) row.to = [r];
    } else return false;
    for (const t of row.to) this.lane(t);
    return true;
  }

  /** Add one record (in seq order); returns whether a row was added or changed. */
  add(r) {
    if (r.seq <= this.lastSeq) return false;
    this.lastSeq = r.seq;
    if (r.name) this.name(r.endpoint, r.name);
    switch (r.kind) {
      case 'call':
        return this.call(r);
      case 'return':
        return this.answer(r);
      case 'abandon':
        this.closeBar(r.callSeq);
        return this.push({ seq: r.seq, kind: 'note', from: r.endpoint, fn: r.function, label: `abandoned #${r.callSeq}`, rec: r });
      case 'attach':
        return this.push({ seq: r.seq, kind: 'note', from: r.endpoint, label: `attached (${r.endpointKind}, RAM ${r.ramBase})`, rec: r });
      case 'detach':
        return this.push({ seq: r.seq, kind: 'note', from: r.endpoint, label: 'detached', rec: r });
      case 'fault':
        return this.push({ seq: r.seq, kind: 'note', from: r.endpoint, label: `FAULT ${r.access} ${r.length} bytes at ${r.address}`, error: true, rec: r });
      case 'lost':
        return this.push({
          seq: r.seq,
          kind: 'lost',
          from: SPMC,
          to: this.lifelines.map((l) => l.id),
          label: `${r.count} records lost (#${r.fromSeq}–#${r.seq})`,
          error: true,
          rec: r,
        });
      default:
        return false; // console lines and guest writes are in the table, not the chart
    }
  }

  call(r) {
    const fn = base(r.function);
    const a = r.args || {};
    const dest = num(a.route?.destination);
    const error = !!r.result?.error;
    const row = { seq: r.seq, kind: 'call', from: r.endpoint, fn: r.function, error, reason: r.reason, injected: r.injected, rec: r };
    const result = r.result ? (error ? `ERROR ${r.result.error}` : base(r.result.function)) : '';
    switch (fn) {
      case 'MSG_SEND_DIRECT_REQ':
      case 'MSG_SEND_DIRECT_REQ2':
        Object.assign(row, { to: [dest ?? SPMC], label: `${fn.replace('MSG_SEND_', '')}(${payload(a)})` });
        break;
      case 'MSG_SEND_DIRECT_RESP':
      case 'MSG_SEND_DIRECT_RESP2':
        Object.assign(row, { to: [dest ?? SPMC], label: `${fn.replace('MSG_SEND_', '')}(${payload(a)})`, response: true });
        break;
      case 'MSG_SEND2': {
        const rcv = num(this.buffers.get(r.seq)?.find((b) => b.what === 'indirect message')?.value?.receiver);
        Object.assign(row, { to: [rcv ?? SPMC], label: 'MSG_SEND2' });
        break;
      }
      case 'MEM_SHARE':
      case 'MEM_LEND':
      case 'MEM_DONATE': {
        const v = r.result?.values?.args;
        if (!error && v) row.handle = hex(handleOf(v[0], v[1]));
        row.to = this.sendTargets(r.seq);
        if (row.handle) this.handles.set(row.handle, { owner: r.endpoint, borrowers: row.to.filter((t) => t !== SPMC), type: fn });
        row.label = `${fn}${row.handle ? ` ${row.handle}` : ''}`;
        break;
      }
      case 'MEM_RETRIEVE_REQ':
      case 'MEM_RELINQUISH': {
        const d = this.buffers.get(r.seq)?.find((b) => b.buffer === 'TX')?.value;
        const h = d?.handle;
        const owner = h !== undefined ? this.handles.get(h)?.owner : undefined;
        Object.assign(row, { to: [owner ?? SPMC], handle: h, label: `${fn.replace('MEM_', '')}${h ? ` ${h}` : ''}` });
        break;
      }
      case 'MEM_RECLAIM':
        Object.assign(row, { to: [SPMC], handle: a.handle, label: `MEM_RECLAIM ${a.handle}` });
        break;
      case 'NOTIFICATION_SET':
        Object.assign(row, { to: [dest ?? SPMC], label: `NOTIFICATION_SET ${a.bitmap ?? ''}` });
        break;
      case 'RUN':
        Object.assign(row, { to: [num(a.target?.endpoint) ?? SPMC], label: `RUN vCPU ${a.target?.vcpu ?? 0}` });
        break;
      default:
        Object.assign(row, { to: [SPMC], label: `${fn}${result && !error ? ` → ${result}` : ''}` });
    }
    if (error) row.label += ` ✗ ${r.result.error}`;
    const added = this.push(row);
    if (added) this.callRows.set(r.seq, row);
    // Blocked on someone (not parked waiting for its next message): an open bar until answered.
    if (r.blocked && !r.waiting && added) {
      const bar = { endpoint: r.endpoint, callSeq: r.seq, from: row.index, to: undefined };
      this.bars.push(bar);
      this.openBars.set(r.seq, bar);
    }
    // The SPMC raises the schedule-receiver interrupt for a VM's notification, the NPI for an SP's.
    if (fn === 'NOTIFICATION_SET' && !error && dest !== undefined) {
      const sri = dest < 0x8000 && !a.delaySri;
      this.push({
        seq: r.seq,
        kind: 'signal',
        from: SPMC,
        to: [dest],
        fn: r.function,
        label: sri ? 'SRI (schedule receiver)' : 'NPI pending',
        rec: r,
        derived: true,
      });
    }
    return added;
  }

  closeBar(callSeq) {
    const bar = this.openBars.get(callSeq);
    if (!bar) return;
    bar.to = Math.max(bar.from, this.rows.length - 1);
    this.openBars.delete(callSeq);
  }

  answer(r) {
    this.closeBar(r.callSeq);
    const fn = base(r.function);
    const res = base(r.result?.function);
    const error = !!r.result?.error;
    // The partition gave the CPU back to whoever ran it or asked it (YIELD, INTERRUPT, MSG_WAIT ...);
    // a direct response as the answer is the partition's own arrow, already drawn.
    const back = fn === 'RUN' ? !/^MSG_SEND_DIRECT_RESP/.test(res) : /^MSG_SEND_DIRECT_REQ/.test(fn) && /^(YIELD|INTERRUPT)$/.test(res);
    if (back && !error) {
      const call = this.callRows.get(r.callSeq);
      const from = call?.to[0] ?? SPMC;
      return this.push({
        seq: r.seq,
        kind: 'return',
        from,
        to: [r.endpoint],
        fn: r.function,
        label: error ? `ERROR ${r.result.error}` : res,
        error,
        reason: r.reason,
        rec: r,
      });
    }
    // A refused blocked call (an aborted request ...) comes back from the SPMC; a good answer is the
    // other side's arrow (the response, the next request), already drawn.
    if (error || r.dropped) {
      return this.push({
        seq: r.seq,
        kind: 'return',
        from: SPMC,
        to: [r.endpoint],
        fn: r.function,
        label: `${fn} ✗ ${r.result?.error ?? 'dropped'}`,
        error,
        reason: r.reason,
        rec: r,
      });
    }
    return false;
  }
}
