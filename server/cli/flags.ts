// Command-line plumbing every remote-spmc command shares: strict flags, HOST:PORT, log levels.

import { parseArgs, type ParseArgsConfig } from 'node:util';

export class UsageError extends Error {}

export interface HostPort {
  host: string;
  port: number;
}

/** "HOST:PORT" or "[v6]:PORT"; port 0 asks the OS for one. */
export function parseHostPort(flag: string, value: string): HostPort {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s[\]]+)):(\d{1,5})$/.exec(value);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new UsageError(`${flag}: expected HOST:PORT with a port 0..65535, got ${JSON.stringify(value)}`);
  return { host: m[1] ?? m[2]!, port };
}

export const formatHostPort = (h: HostPort): string => (h.host.includes(':') ? `[${h.host}]:${h.port}` : `${h.host}:${h.port}`);

/** What parseArgs gives for `options`, strict (named, so that type declarations can be emitted). */
type StrictValues<T extends ParseArgsConfig['options']> = ReturnType<
  typeof parseArgs<{ args: string[]; options: T; strict: true; allowPositionals: false }>
>['values'];

/** parseArgs, strict, with its complaints as usage errors. */
export function parseFlags<T extends ParseArgsConfig['options']>(args: string[], options: T): StrictValues<T> {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false }).values;
  } catch (e) {
    // One line: node's parser explains some mistakes over several.
    throw new UsageError((e as Error).message.replace(/\s*\n\s*/g, ' '));
  }
}

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export function checkLogLevel(level: string): string {
  if (!LOG_LEVELS.includes(level)) throw new UsageError(`--log-level: expected one of ${LOG_LEVELS.join(', ')}`);
  return level;
}
