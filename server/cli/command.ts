// A command of the remote-spmc command line as data: its flags (with the environment variables
// they fall back to) and its help text, so the usage is generated from what the parser accepts.

import { parseFlags, parseHostPort, UsageError } from './flags.js';

export interface FlagSpec {
  /** Without the leading "--". */
  name: string;
  /** The value's placeholder (HOST:PORT, N, FILE ...); absent for a boolean flag. */
  arg?: string;
  default?: string;
  /** An environment variable used when the flag is not given (before the default). */
  env?: string;
  help: string;
}

export interface Command {
  name: string;
  /** What follows `remote-spmc NAME` in the usage line, e.g. "[options] FILE". */
  synopsis: string;
  /** One line for the list of commands. */
  summary: string;
  flags: FlagSpec[];
  /** More help after the flags (vm lists its operations here). */
  more?: string;
  /** The exit status. */
  run(args: string[]): Promise<number>;
}

/** The flag every client command has. */
export const SERVER_FLAG: FlagSpec = {
  name: 'server',
  arg: 'HOST:PORT',
  default: '127.0.0.1:50051',
  env: 'REMOTE_SPMC_SERVER',
  help: "the server's gRPC address",
};

const HELP_FLAG = '  -h, --help';

function flagLine(f: FlagSpec): [string, string] {
  const left = `  --${f.name}${f.arg ? ` ${f.arg}` : ''}`;
  const dflt = f.env ? ` (default $${f.env}${f.default !== undefined ? `, else ${f.default}` : ''})` : f.default !== undefined ? ` (default ${f.default})` : '';
  return [left, `${f.help}${dflt}`];
}

const LINE_WIDTH = 100;

/** Two columns, the right one wrapped at word boundaries to fit the line width. */
export function table(rows: readonly (readonly [string, string])[]): string {
  const left = Math.max(...rows.map(([l]) => l.length)) + 2;
  const room = Math.max(LINE_WIDTH - left, 30);
  return rows
    .map(([l, r]) => {
      const lines: string[] = [];
      let line = '';
      for (const w of r.split(/\s+/)) {
        if (line && line.length + 1 + w.length > room) {
          lines.push(line);
          line = w;
        } else line = line ? `${line} ${w}` : w;
      }
      lines.push(line);
      return lines.map((x, i) => `${(i === 0 ? l : '').padEnd(left)}${x}`).join('\n');
    })
    .join('\n');
}

/** `remote-spmc NAME --help`. */
export function commandUsage(c: Command): string {
  const rows = [...c.flags.map(flagLine), [HELP_FLAG, 'this text'] as const];
  return `usage: remote-spmc ${c.name} ${c.synopsis}\n\n${c.summary}\n\n${table(rows)}\n${c.more ? `\n${c.more.trimEnd()}\n` : ''}`;
}

/** `remote-spmc --help`: one line per command. */
export function globalUsage(commands: readonly Command[]): string {
  return `usage: remote-spmc COMMAND [options]

${table(commands.map((c) => [`  ${c.name}`, c.summary]))}

remote-spmc COMMAND --help shows a command's options.
`;
}

/** A command's parsed flags, with the environment and defaults applied, and checked accessors. */
export class Flags {
  private constructor(private readonly values: Record<string, string | boolean | undefined>) {}

  static parse(c: Pick<Command, 'flags'>, args: string[], env: NodeJS.ProcessEnv = process.env): Flags {
    const options: Record<string, { type: 'string' | 'boolean' }> = {};
    for (const f of c.flags) options[f.name] = { type: f.arg ? 'string' : 'boolean' };
    const values: Record<string, string | boolean | undefined> = { ...parseFlags(args, options) };
    for (const f of c.flags) {
      if (values[f.name] !== undefined) continue;
      const fromEnv = f.env !== undefined ? env[f.env] : undefined;
      values[f.name] = fromEnv !== undefined && fromEnv !== '' ? fromEnv : f.arg ? f.default : false;
    }
    return new Flags(values);
  }

  string(name: string): string | undefined {
    const v = this.values[name];
    return typeof v === 'string' ? v : undefined;
  }

  bool(name: string): boolean {
    return this.values[name] === true;
  }

  /** An integer flag within min..max (0x hex accepted); undefined when not given and no default. */
  int(name: string, min: number, max: number): number | undefined {
    const v = this.string(name);
    if (v === undefined) return undefined;
    const n = v.trim() === '' ? NaN : Number(v);
    if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`--${name}: expected an integer ${min}..${max}, got ${JSON.stringify(v)}`);
    return n;
  }

  /** The --server address, checked. */
  server(): string {
    const v = this.string(SERVER_FLAG.name)!;
    parseHostPort(`--${SERVER_FLAG.name}`, v);
    return v;
  }
}
