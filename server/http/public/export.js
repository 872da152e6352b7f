// Exports for a bug report: the visible chart as SVG (see chart.js) and "the 50 calls around this
// error" as Markdown, each call decoded with its answer, its reason and its buffers.
/* global Blob, URL, setTimeout */

import { brief } from './model.js';

const cell = (s) =>
  String(s ?? '')
    .replace(/\|/g, '\\|')
    .replace(/\n/g, ' ');
const who = (r) => `0x${r.endpoint.toString(16)}${r.name ? ` ${r.name}` : ''}`;

function answerOf(r) {
  if (r.kind === 'call' && r.blocked) return r.waiting ? 'waiting for a message' : 'blocked';
  const res = r.result;
  if (!res) return '';
  return res.error ? `FFA_ERROR ${res.error}` : `${res.function} ${brief(res.values)}`.trim();
}

/**
 * The calls around records[at] (an error): `span` calls and answers in all, centred on it, as
 * Markdown: a table, then each refusal's reason and each decoded buffer.
 */
export function callsAroundMarkdown(records, at, buffers, span = 50) {
  const calls = records.map((r, i) => ({ r, i })).filter(({ r }) => r.kind === 'call' || r.kind === 'return' || r.kind === 'fault' || r.kind === 'lost');
  const centre = Math.max(
    0,
    calls.findIndex(({ i }) => i >= at),
  );
  const from = Math.max(0, centre - Math.floor(span / 2));
  const picked = calls.slice(from, from + span).map(({ r }) => r);
  const target = records[at];
  const lines = [
    `## ${picked.length} calls around #${target.seq}: ${target.function || target.kind} by ${who(target)}${target.result?.error ? ` (FFA_ERROR ${target.result.error})` : ''}`,
    '',
    target.reason ? `**Reason:** ${target.reason} (\`${target.reasonCode}\`)\n` : '',
    '| seq | endpoint | vCPU | call | arguments | answer | reason |',
    '|---|---|---|---|---|---|---|',
  ];
  for (const r of picked) {
    const mark = r.seq === target.seq ? '**' : '';
    if (r.kind === 'lost') {
      lines.push(`| ${r.seq} | | | ${r.count} records lost | | | |`);
      continue;
    }
    if (r.kind === 'fault') {
      lines.push(`| ${r.seq} | ${cell(who(r))} | | FAULT | ${r.access} ${r.length} bytes at ${r.address} | | |`);
      continue;
    }
    const call = r.kind === 'return' ? `↳ ${r.function} (#${r.callSeq})` : r.function;
    const args = r.kind === 'call' ? (r.args ? brief(r.args) : `x=${r.x.join(',')}`) : '';
    lines.push(
      `| ${mark}${r.seq}${mark} | ${cell(who(r))} | ${r.vcpu ?? ''} | ${mark}${cell(call)}${mark}${r.injected ? ` (injected: ${cell(r.injected)})` : ''} | ${cell(args)} | ${cell(answerOf(r))} | ${cell(r.reason ?? '')} |`,
    );
  }
  const decoded = picked.filter((r) => buffers.get(r.seq));
  if (decoded.length > 0) {
    lines.push('', '### Decoded buffers', '');
    for (const r of decoded) {
      for (const b of buffers.get(r.seq)) {
        lines.push(
          `#${r.seq} ${r.function}: ${b.what} (${b.buffer}, ${b.bytes} bytes)`,
          '',
          '```json',
          JSON.stringify(b.value ?? { invalid: b.invalid }, null, 2),
          '```',
          '',
        );
      }
    }
  }
  return lines.filter((l, i) => l !== '' || lines[i - 1] !== '').join('\n');
}

/** Offer text as a file download. */
export function download(name, type, text) {
  const a = document.createElement('a');
  a.href = URL.createObjectURL(new Blob([text], { type }));
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}
