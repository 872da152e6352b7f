// The long fuzz run of the SPMC model (npm test runs a bounded one: test/fuzz-model.test.ts).
// Episodes of random valid and mutated calls and descriptors, each from a fresh model seeded with
// seed, seed+1, ...; the invariants are checked after every step. Exits 1 on any crash or break.
//
//   node dist/bench/fuzz.js [--seconds 60] [--seed 1] [--episode 5000]

import { parseArgs } from 'node:util';
import { Fuzzer } from './fuzz-engine.js';

const { values } = parseArgs({
  options: { seconds: { type: 'string', default: '60' }, seed: { type: 'string', default: '1' }, episode: { type: 'string', default: '5000' } },
});
const seconds = Number(values.seconds);
const seed = Number(values.seed);
const episode = Number(values.episode);
if (!(seconds > 0) || !Number.isInteger(seed) || !(episode > 0)) {
  process.stderr.write('usage: node dist/bench/fuzz.js [--seconds N>0] [--seed INTEGER] [--episode STEPS>0]\n');
  process.exit(2);
}

const deadline = Date.now() + seconds * 1000;
const totals = { episodes: 0, steps: 0, calls: 0, descriptors: 0, crashes: 0, breaks: 0, attaches: 0, detaches: 0, abandoned: 0 };
const accepted = new Map<string, number>();
const reasons = new Set<string>();
const firsts: string[] = [];
for (let s = seed; Date.now() < deadline; s++) {
  const f = new Fuzzer(s);
  const st = f.run(episode, () => Date.now() >= deadline);
  totals.episodes++;
  totals.steps += st.steps;
  totals.calls += st.calls;
  totals.descriptors += st.descriptors;
  totals.crashes += st.crashes.length;
  totals.breaks += st.breakCount;
  totals.attaches += st.attaches;
  totals.detaches += st.detaches;
  totals.abandoned += st.abandoned;
  for (const [k, n] of st.accepted) accepted.set(k, (accepted.get(k) ?? 0) + n);
  for (const k of st.reasons.keys()) reasons.add(k);
  for (const c of st.crashes.slice(0, 3)) firsts.push(`seed ${s} step ${c.step}: crash in ${c.call}\n${c.error}`);
  for (const b of st.breaks.slice(0, 3)) firsts.push(`seed ${s} ${b}`);
}

const acceptedTotal = [...accepted.values()].reduce((a, b) => a + b, 0);
const lines = [
  `fuzz: seeds ${seed}..${seed + totals.episodes - 1}, ${seconds} s, ${totals.steps} steps`,
  `calls tried        ${totals.calls}`,
  `descriptors tried  ${totals.descriptors}`,
  `crashes            ${totals.crashes}`,
  `invariant breaks   ${totals.breaks}`,
  `accepted calls     ${acceptedTotal} (${[...accepted]
    .sort((a, b) => b[1] - a[1])
    .map(([k, n]) => `${k.replace(/^FFA_/, '')} ${n}`)
    .join(', ')})`,
  `refusal reasons    ${reasons.size} distinct`,
  `VMs attached ${totals.attaches}, detached ${totals.detaches}; blocked calls abandoned ${totals.abandoned}`,
  ...firsts.slice(0, 10),
];
process.stdout.write(lines.join('\n') + '\n');
process.exitCode = totals.crashes || totals.breaks ? 1 : 0;
