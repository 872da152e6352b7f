// A small seeded generator (mulberry32): the same seed and rule id give the same draws, so a rule
// with a probability fires on the same calls in every run.

/** FNV-1a of a rule id, mixed with the set's seed. */
function seedFor(seed: number, id: string): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < id.length; i++) h = Math.imul(h ^ id.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/** Draws in [0, 1). */
export function seededRandom(seed: number, id: string): () => number {
  let a = seedFor(seed, id);
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
