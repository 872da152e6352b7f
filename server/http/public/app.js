// The dashboard: the live trace (table and sequence chart), the state (endpoints, transactions,
// memory maps), and, served by `replay --serve`, time travel through a recording.
/* global setTimeout, clearTimeout, setInterval, FormData, URLSearchParams, performance */

import { api, sse, token, whenUnauthorized } from './api.js';
import { SequenceChart } from './chart.js';
import { callsAroundMarkdown, download } from './export.js';
import { FaultPanel } from './faults.js';
import { drawMemoryMap, legend } from './memmap.js';
import { base, brief, ChartModel } from './model.js';

const $ = (s) => document.querySelector(s);
const text = (v) => (v === undefined || v === null ? '' : String(v));
const cell = (tr, v, cls) => {
  const td = tr.insertCell();
  td.textContent = text(v);
  if (cls) td.className = cls;
  return td;
};
const value = (v) => (Array.isArray(v) ? `[${v.map(value).join(' ')}]` : v && typeof v === 'object' ? `{${brief(v)}}` : text(v));
const short = (o) =>
  o
    ? Object.entries(o)
        .map(([k, v]) => `${k}=${value(v)}`)
        .join(' ')
    : '';

/** Records kept for the chart and its exports (live: the newest this many). */
const KEEP = 20000;
const page = {
  mode: 'live',
  /** Whether the server injects faults (/v1/faults): the fault rules panel. */
  faults: false,
  records: [],
  /** Decoded buffers by seq. */
  buffers: new Map(),
  paused: false,
  held: [],
  model: new ChartModel(),
  /** Replay: the index of the record the state is shown after. */
  at: 0,
};
window.dashboard = page;

// ---- admin token ----------------------------------------------------------------------------

function askToken(why) {
  $('#token').hidden = false;
  $('#token-state').textContent = why;
}
whenUnauthorized(() => askToken(token.get() ? 'token refused' : 'inspection needs the admin token'));
$('#token').addEventListener('submit', (e) => {
  e.preventDefault();
  token.set($('#admin-token').value.trim());
  $('#admin-token').value = '';
  $('#token-state').textContent = token.get() ? 'token set for this tab' : '';
  if (page.mode === 'live') {
    follow();
    refresh();
  }
});

// ---- state panels ---------------------------------------------------------------------------

/** vCPU states as runs, each unbroken: "0-7 waiting", "0 running, 1-7 waiting". */
function vcpuRuns(td, states) {
  const runs = [];
  states.forEach((s, i) => {
    const last = runs[runs.length - 1];
    if (last && last.state === s) last.to = i;
    else runs.push({ from: i, to: i, state: s });
  });
  runs.forEach((r, i) => {
    const span = document.createElement('span');
    span.textContent = `${r.from === r.to ? r.from : `${r.from}-${r.to}`} ${r.state}${i < runs.length - 1 ? ',' : ''}`;
    td.append(span, ' ');
  });
}

function showEndpoints(eps) {
  const body = $('#endpoints tbody');
  body.replaceChildren();
  for (const e of eps) {
    const tr = body.insertRow();
    tr.dataset.endpoint = e.idHex;
    tr.title = `${e.kind}, ${e.vcpuCount} vCPUs`;
    cell(tr, e.idHex);
    cell(tr, e.name, 'wrap');
    cell(tr, e.version);
    cell(tr, e.properties);
    vcpuRuns(
      cell(tr, '', 'runs'),
      e.vcpus.map((v) => (typeof v === 'string' ? v : v.state)),
    );
    cell(tr, e.rxState);
    cell(tr, e.pendingNotifications ? 'pending' : '', e.pendingNotifications ? 'blk' : '');
  }
}

function showTransactions(txs) {
  const tb = $('#transactions tbody');
  tb.replaceChildren();
  for (const t of txs) {
    const tr = tb.insertRow();
    tr.dataset.handle = t.handle;
    cell(tr, t.handle);
    cell(tr, t.type);
    cell(tr, t.sender);
    cell(tr, t.borrowers.map((b) => `${b.id}:${b.retrieved}`).join(' '), 'wrap');
    cell(tr, t.ranges.map((r) => `${r.address}+${r.pageCount}p`).join(' '), 'wrap');
  }
}

function showMemory(map) {
  const svg = $('#memmap');
  drawMemoryMap(svg, map, Math.max(500, svg.parentElement.clientWidth - 20));
  $('#memmap-note').textContent = '';
}
legend($('#legend'));
const faults = new FaultPanel($('#faults'));

async function refresh() {
  if (page.mode !== 'live') return;
  try {
    const h = await api('/healthz');
    $('#health').textContent = `${h.status}, ${h.endpoints} endpoints`;
    showEndpoints(await api('/v1/endpoints'));
    showTransactions(await api('/v1/memory/transactions'));
  } catch {
    $('#health').textContent = 'server unreachable';
    return;
  }
  try {
    showMemory(await api('/v1/memory/map'));
  } catch (e) {
    $('#memmap-note').textContent = e.status === 401 ? 'the memory map needs the admin token' : `memory map: ${e.message}`;
  }
  if (page.faults) await faults.refresh();
}

// ---- the chart ------------------------------------------------------------------------------

const chart = new SequenceChart($('#chart'), { onSelect: (row) => void select(row) });
chart.setModel(page.model);

function chartFilter() {
  const f = new FormData($('#chart-tools'));
  const ep = text(f.get('endpoint')).trim();
  const fn = text(f.get('function')).trim();
  return { endpoint: ep && $('#chart-endpoint').checkValidity() ? Number(ep) : undefined, function: fn || undefined };
}

/** Build the chart again from every kept record (a filter changed, a recording opened). */
function rebuild() {
  const m = new ChartModel(chartFilter());
  for (const [seq, b] of page.buffers) m.buffers.set(seq, b);
  for (const r of page.records) m.add(r);
  page.model = m;
  chart.setModel(m);
  counts();
}

function counts() {
  $('#chart-count').textContent =
    `${page.model.rows.length} rows of ${page.records.length} records${page.paused ? ` (paused, ${page.held.length} waiting)` : ''}`;
  $('#chart').dataset.rows = page.model.rows.length;
}

const BUFFERED = /^(MEM_(SHARE|LEND|DONATE|RETRIEVE_REQ|RELINQUISH)|MSG_SEND2|PARTITION_INFO_GET)$/;
let buffersFrom;
let buffersTimer;

/** Fetch the decoded buffers of calls that have them (live: a moment after they come). */
function wantBuffers(seq) {
  if (buffersFrom === undefined || seq < buffersFrom) buffersFrom = seq;
  buffersTimer ??= setTimeout(async () => {
    const from = buffersFrom;
    buffersFrom = undefined;
    buffersTimer = undefined;
    try {
      addBuffers(await api(`/v1/trace/buffers?from=${from}`));
    } catch {
      // no token yet, or no buffer capture on this server
    }
  }, 100);
}

function addBuffers(bySeq) {
  let changed = false;
  for (const [seq, b] of Object.entries(bySeq)) {
    page.buffers.set(Number(seq), b);
    changed = page.model.addBuffers(seq, b) || changed;
  }
  if (changed) chart.update();
  if (page.selectedRow && page.buffers.has(page.selectedRow.seq)) showDetails(page.selectedRow);
}

/** A record for the chart (live). */
function chartRecord(r) {
  page.records.push(r);
  if (page.records.length > KEEP) page.records.splice(0, page.records.length - KEEP);
  if (r.kind === 'call' && BUFFERED.test(base(r.function))) wantBuffers(r.seq);
  if (page.paused) {
    page.held.push(r);
    return counts();
  }
  if (page.model.add(r) || r.kind === 'return' || r.kind === 'abandon') chart.update();
  counts();
}

$('#chart-tools').addEventListener('input', () => rebuild());
$('#chart-tools').addEventListener('submit', (e) => e.preventDefault());
$('#pause').addEventListener('click', () => {
  page.paused = !page.paused;
  $('#pause').textContent = page.paused ? 'resume' : 'pause';
  if (!page.paused) {
    for (const r of page.held.splice(0)) page.model.add(r);
    chart.update();
  }
  counts();
});
$('#zoom-in').addEventListener('click', () => chart.setZoom(chart.zoom * 1.25));
$('#zoom-out').addEventListener('click', () => chart.setZoom(chart.zoom / 1.25));
$('#export-svg').addEventListener('click', () => download(`remote-spmc-chart-${page.model.lastSeq}.svg`, 'image/svg+xml', chart.exportSvg()));
$('#export-md').addEventListener('click', () => {
  const sel = page.selectedRow?.rec;
  const isError = (r) => r.result?.error || r.kind === 'fault' || r.kind === 'lost';
  let at = sel ? page.records.indexOf(sel) : 0;
  if (at < 0 || !isError(page.records[at])) {
    const next = page.records.findIndex((r, i) => i >= Math.max(0, at) && isError(r));
    at = next >= 0 ? next : page.records.findIndex((r) => isError(r));
  }
  if (at < 0) return void ($('#chart-count').textContent = 'no error to export around');
  download(`remote-spmc-calls-around-${page.records[at].seq}.md`, 'text/markdown', callsAroundMarkdown(page.records, at, page.buffers));
});

// ---- details of a clicked arrow -------------------------------------------------------------

const pre = (v) => {
  const p = document.createElement('pre');
  p.textContent = typeof v === 'string' ? v : JSON.stringify(v, null, 2);
  return p;
};
const h3 = (t) => {
  const h = document.createElement('h3');
  h.textContent = t;
  return h;
};
const regs = (x) => (x || []).map((v, i) => `${i < 10 ? ' ' : ''}x${i} = ${v}`).join('\n');

async function select(row) {
  page.selectedRow = row;
  showDetails(row);
  if (page.mode === 'replay') moveTo(page.records.indexOf(row.rec));
  if (page.mode === 'live' && row.kind === 'call' && BUFFERED.test(base(row.fn)) && !page.buffers.has(row.seq)) wantBuffers(row.seq);
}

function showDetails(row) {
  const r = row.rec;
  const d = $('#details');
  d.dataset.seq = r.seq;
  const title = document.createElement('div');
  title.innerHTML = '<b></b>';
  title.firstChild.textContent = `#${r.seq} ${r.function || r.kind} by 0x${r.endpoint.toString(16)} ${r.name || ''}${r.vcpu !== undefined ? ` vCPU ${r.vcpu}` : ''}`;
  const parts = [title];
  if (r.injected) parts.push(h3('Injected'), pre(`answered by fault rule ${r.injected}, not by the model`));
  if (r.reason) parts.push(h3('Reason'), pre(`${r.reason}\n(${r.reasonCode})`));
  if (r.x) parts.push(h3('Registers'), pre(regs(r.x)));
  if (r.args) parts.push(h3('Call'), pre(r.args));
  if (r.invalid) parts.push(h3('Invalid'), pre(r.invalid));
  if (r.kind === 'call' && r.blocked) parts.push(h3('Answer'), pre(r.waiting ? 'waiting for its next message' : 'blocked: answered by a later return record'));
  if (r.result)
    parts.push(
      h3(`Answer${r.latencyUs !== undefined ? ` (${r.latencyUs} µs)` : ''}`),
      pre({ function: r.result.function, error: r.result.error, values: r.result.values }),
      pre(regs(r.result.r)),
    );
  for (const b of page.buffers.get(r.seq) || []) {
    const box = document.createElement('div');
    box.className = 'buffer';
    box.dataset.what = b.what;
    box.append(h3(`${b.what} (${b.buffer}, ${b.bytes} bytes)`), pre(b.value ?? { invalid: b.invalid }));
    parts.push(box);
  }
  if (!r.x && !r.result) parts.push(pre(r));
  d.replaceChildren(...parts);
}

// ---- the live trace (table) -----------------------------------------------------------------

const MAX_ROWS = 500;
let stopStream;
/** Rows shown, by seq: a blocked call's row is updated when its answer comes. */
const rows = new Map();
let lastSeq = 0;
/** Live records that arrive while the ring is being read (null once it has been). */
let held = null;
let generation = 0;

function follow() {
  stopStream?.();
  stopStream = undefined;
  const gen = ++generation;
  $('#records').replaceChildren();
  rows.clear();
  lastSeq = 0;
  const form = $('#filters');
  if (!form.checkValidity()) return void ($('#count').textContent = 'endpoint: 0x hex or decimal; function: a name such as MSG_SEND2');
  const f = new FormData(form);
  const q = new URLSearchParams();
  if (f.get('endpoint')) q.set('endpoint', f.get('endpoint'));
  if (f.get('function')) q.set('function', f.get('function'));
  if (f.get('errors')) q.set('errors', 'true');
  const unfiltered = [...q.keys()].length === 0;
  $('#trace').dataset.state = 'loading';
  held = [];
  // Subscribed first, then the ring is read: every record is in one or the other, and one in both
  // is shown once (by seq). The same on each reconnection.
  stopStream = sse(`/v1/trace?${q}`, {
    onOpen: async () => {
      if (gen !== generation) return;
      held ??= [];
      q.set('limit', String(unfiltered ? 10000 : MAX_ROWS));
      try {
        for (const r of await api(`/v1/trace/recent?${q}`)) {
          if (gen !== generation) return;
          take(r, unfiltered);
        }
      } catch {
        // Unreachable or refused: the stream says so by ending.
      }
      if (gen !== generation) return;
      const later = held ?? [];
      held = null;
      for (const r of later) take(r, unfiltered);
      $('#trace').dataset.state = 'live';
    },
    onEvent: (data) => {
      if (gen !== generation) return;
      const r = JSON.parse(data);
      if (held) held.push(r);
      else take(r, unfiltered);
    },
    onEnd: (status) => {
      if (gen !== generation) return;
      $('#trace').dataset.state = status === 401 ? 'unauthorized' : 'reconnecting';
      held = [];
      // Refused for want of a token: wait for one. Otherwise try again shortly.
      if (status !== 401) setTimeout(() => gen === generation && follow(), 1000);
    },
  });
}

/** A record for the table, and (when the table is unfiltered: the chart follows every record) for the chart. */
function take(r, unfiltered) {
  if (r.seq <= lastSeq) return;
  show(r);
  // The rule set changed, or a rule fired: its counters moved.
  if (page.faults && (r.kind === 'faults' || r.injected)) void faults.refresh();
  if (unfiltered && r.seq > (page.records.at(-1)?.seq ?? 0)) chartRecord(r);
}

/** The answer; a refusal shows why under it (the check that failed, with its values). */
function showAnswer(td, result, cls = '', reason = '', reasonCode = '') {
  td.textContent = result.error ? `FFA_ERROR ${result.error}` : `${result.function} ${short(result.values)}`;
  td.className = `wrap ${result.error ? 'err' : cls}`;
  if (result.error && reason) {
    const why = document.createElement('div');
    why.className = 'reason';
    why.textContent = reason;
    why.title = reasonCode;
    td.append(why);
  }
}

/** A blocked call's row once its answer (a return record) or its abandonment comes. */
function answered(callSeq, r) {
  const row = rows.get(callSeq);
  if (!row || row.dataset.state === 'answered') return;
  const [res, us] = [row.cells[4], row.cells[5]];
  if (r.kind === 'return') {
    showAnswer(res, r.result, '', r.reason, r.reasonCode);
    res.textContent += ` (at #${r.seq})`;
    us.textContent = text(r.latencyUs);
    row.dataset.state = 'answered';
  } else {
    res.textContent = `abandoned (#${r.seq})`;
    res.className = 'dim';
    row.dataset.state = 'abandoned';
  }
}

function show(r) {
  if (r.seq <= lastSeq) return;
  lastSeq = r.seq;
  const tr = document.createElement('tr');
  tr.dataset.seq = r.seq;
  tr.dataset.kind = r.kind;
  cell(tr, r.seq, 'dim');
  cell(tr, `0x${r.endpoint.toString(16)} ${r.name || ''}`, 'who').title = r.name || '';
  cell(tr, r.vcpu);
  if (r.kind === 'call') {
    cell(tr, `${r.function} ${short(r.args)}${r.injected ? ` [injected: ${r.injected}]` : ''}`, 'wrap');
    if (r.blocked) {
      // Waiting (MSG_WAIT, a direct response) is a partition at rest; blocked waits on someone.
      cell(tr, r.waiting ? 'waiting for a message…' : 'blocked…', r.waiting ? 'wait' : 'blk');
      tr.dataset.state = r.waiting ? 'waiting' : 'blocked';
      cell(tr, '');
    } else {
      showAnswer(tr.insertCell(), r.result, '', r.reason, r.reasonCode);
      cell(tr, r.latencyUs);
    }
  } else if (r.kind === 'return') {
    cell(tr, `↳ ${r.function} (#${r.callSeq})`, 'ret');
    showAnswer(tr.insertCell(), r.result, 'ret', r.reason, r.reasonCode);
    cell(tr, r.latencyUs);
  } else {
    const what =
      {
        attach: 'attached',
        detach: 'detached',
        console: `console: ${r.line}`,
        fault: `FAULT ${r.access} ${r.length} bytes at ${r.address}`,
        write: `write ${r.length} bytes at ${r.address}`,
        abandon: `abandoned #${r.callSeq}`,
        lost: `LOST ${r.count} records (#${r.fromSeq}–#${r.seq}): this view read too slowly`,
      }[r.kind] || r.kind;
    cell(tr, what, r.kind === 'fault' || r.kind === 'lost' ? 'wrap err' : 'wrap dim');
    cell(tr, '');
    cell(tr, '');
  }
  const body = $('#records');
  body.prepend(tr);
  rows.set(r.seq, tr);
  if (r.kind === 'return' || r.kind === 'abandon') answered(r.callSeq, r);
  while (body.rows.length > MAX_ROWS) {
    const old = body.rows[body.rows.length - 1];
    rows.delete(Number(old.dataset.seq));
    old.remove();
  }
  $('#count').textContent = `${body.rows.length} records, up to #${lastSeq}`;
}

$('#filters').addEventListener('change', follow);
$('#filters').addEventListener('submit', (e) => {
  e.preventDefault();
  follow();
});

// ---- time travel (replay --serve) -----------------------------------------------------------

const isError = (r) => !!r.result?.error || r.kind === 'fault' || r.kind === 'lost';
const isCall = (r) => r.kind === 'call' || r.kind === 'return';
let stateTimer;

/** Show the state after records[i] (the timeline's value). */
function moveTo(i) {
  if (i < 0 || i >= page.records.length) return;
  page.at = i;
  const r = page.records[i];
  $('#timeline').value = String(i);
  $('#cursor').textContent = `#${r.seq} (${i + 1}/${page.records.length}) ${r.function || r.kind} by 0x${r.endpoint.toString(16)}`;
  chart.cursorSeq = r.seq;
  const row = page.model.rows.findIndex((x) => x.seq >= r.seq);
  if (row >= 0) chart.reveal(row);
  else chart.draw();
  clearTimeout(stateTimer);
  stateTimer = setTimeout(() => loadStateAt(r.seq), 60);
}

async function loadStateAt(seq) {
  const t0 = performance.now();
  const s = await api(`/v1/replay/state?at=${seq}`);
  if (page.records[page.at]?.seq !== seq) return; // moved on meanwhile
  showEndpoints(s.endpoints);
  showTransactions(s.transactions);
  showMemory(s.memory);
  $('#state-at').textContent = `after #${s.at} (replayed in ${Math.round(performance.now() - t0)} ms)`;
  $('#state').dataset.at = String(s.at);
}

function stepTo(pred, dir = 1) {
  for (let i = page.at + dir; i >= 0 && i < page.records.length; i += dir) if (pred(page.records[i])) return moveTo(i);
}

async function openRecording() {
  const t0 = performance.now();
  const summary = await api('/v1/replay');
  page.records = await api('/v1/replay/records');
  page.buffers = new Map(Object.entries(await api('/v1/trace/buffers?from=0')).map(([k, v]) => [Number(k), v]));
  $('#health').textContent = `${summary.name}: ${summary.records} records, ${summary.calls} calls`;
  $('#replay-note').textContent = summary.difference ? `replay differs at #${summary.difference.seq}: ${summary.difference.what}` : '';
  $('#timeline').max = String(Math.max(0, page.records.length - 1));
  const eps = new Map(page.records.map((r) => [r.endpoint, r.name]));
  $('#next-ep-select').replaceChildren(
    ...[...eps]
      .sort((a, b) => a[0] - b[0])
      .map(([id, name]) => {
        const o = document.createElement('option');
        o.value = String(id);
        o.textContent = `0x${id.toString(16)} ${name || ''}`;
        return o;
      }),
  );
  rebuild();
  moveTo(0);
  await new Promise((resolve) => setTimeout(resolve, 0));
  document.body.dataset.opened = String(Math.round(performance.now() - t0));
}

async function startReplay() {
  page.mode = 'replay';
  $('#mode').textContent = 'replay';
  $('#replay').hidden = false;
  $('#pause').hidden = true;
  $('#trace').hidden = true;
  $('#timeline').addEventListener('input', () => moveTo(Number($('#timeline').value)));
  $('#step-fwd').addEventListener('click', () => stepTo(isCall, 1));
  $('#step-back').addEventListener('click', () => stepTo(isCall, -1));
  $('#next-error').addEventListener('click', () => stepTo(isError, 1));
  $('#next-ep').addEventListener('click', () => {
    const id = Number($('#next-ep-select').value);
    stepTo((r) => r.kind === 'call' && r.endpoint === id, 1);
  });
  $('#open-file').addEventListener('change', async () => {
    const f = $('#open-file').files[0];
    if (!f) return;
    try {
      await api(`/v1/replay/open?name=${encodeURIComponent(f.name)}`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: await f.text() });
      await openRecording();
    } catch (e) {
      $('#replay-note').textContent = `could not open ${f.name}: ${e.message}`;
    }
  });
  await openRecording();
}

// ---- start ----------------------------------------------------------------------------------

(async () => {
  let info = { mode: 'live', adminToken: false };
  try {
    info = await api('/v1/dashboard');
  } catch {
    // an older server: live, no token
  }
  if (info.adminToken) {
    $('#token').hidden = false;
    $('#token-state').textContent = token.get() ? 'token set for this tab' : 'inspection needs the admin token';
  }
  if (info.mode === 'replay') return startReplay();
  // The fault rules panel, where the server injects faults (not in replay: a recording's rules are fixed).
  page.faults = !!info.faults;
  follow();
  refresh();
  setInterval(refresh, 1000);
})();
