// A personality applied: the model made with its parameters, its hooks on the core's chain.

import type { SessionCore } from '../session/core.js';
import { DEFAULT_PERSONALITY, findPersonality, type Personality, PERSONALITIES, PERSONALITY_NAMES } from './catalog.js';
import { HOOKS } from './hooks.js';

export { DEFAULT_PERSONALITY, findPersonality, type Personality, PERSONALITIES, PERSONALITY_NAMES } from './catalog.js';

/** Why `name` is not a personality, naming where it came from and the known ones. */
export const unknownPersonality = (name: string, where = '--personality'): string =>
  `${where}: unknown personality "${name}"; one of ${PERSONALITY_NAMES.join(', ')} (or "list")`;

/** The personality `name` (an unknown one throws, with the known ones in the message). */
export function personalityOrThrow(name: string): Personality {
  const p = findPersonality(name);
  if (!p) throw new Error(unknownPersonality(name));
  return p;
}

/** Put `p`'s hooks on `core`'s interceptor chain (the model already has its profile); returns their removal. */
export function installPersonality(core: SessionCore, p: Personality): () => void {
  const removals = p.hooks.map((h) => core.use(HOOKS[h]()));
  return () => removals.forEach((r) => r());
}

/** `serve --personality list`: one line each, the default first. */
export function personalityList(): string {
  const width = Math.max(...PERSONALITY_NAMES.map((n) => n.length));
  return PERSONALITIES.map((p) => `${p.name.padEnd(width)}  ${p.summary}${p.name === DEFAULT_PERSONALITY ? ' [default]' : ''}`).join('\n') + '\n';
}
