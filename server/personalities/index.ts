// A personality applied: the model made with its parameters, its hooks on the core's chain.

import { UsageError } from '../cli/flags.js';
import type { SessionCore } from '../session/core.js';
import { DEFAULT_PERSONALITY, findPersonality, type Personality, PERSONALITIES, PERSONALITY_NAMES } from './catalog.js';
import { HOOKS } from './hooks.js';

export { DEFAULT_PERSONALITY, findPersonality, type Personality, PERSONALITIES, PERSONALITY_NAMES } from './catalog.js';

/** The personality `name`; an unknown one is a usage error that lists the known ones. */
export function personalityOrThrow(name: string, flag = '--personality'): Personality {
  const p = findPersonality(name);
  if (!p) throw new UsageError(`${flag}: unknown personality "${name}"; one of ${PERSONALITY_NAMES.join(', ')} (or "list")`);
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
