// `serve --faults FILE`: rules in YAML or JSON (JSON is YAML), checked before the server starts.

import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { FaultRuleError, type FaultRuleSet, parseRuleSet } from './rules.js';

/** The rule set in `file`; FaultRuleError (naming the file and the field) when it cannot be read or is wrong. */
export function readFaultsFile(file: string): FaultRuleSet & { raw: unknown } {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new FaultRuleError(`${file}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  let raw: unknown;
  try {
    raw = parse(text);
  } catch (e) {
    throw new FaultRuleError(`${file}: not YAML or JSON (${(e as Error).message.split('\n')[0]})`);
  }
  try {
    return { ...parseRuleSet(raw), raw };
  } catch (e) {
    throw e instanceof FaultRuleError ? new FaultRuleError(`${file}: ${e.message}`) : e;
  }
}
