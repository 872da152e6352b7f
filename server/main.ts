#!/usr/bin/env node
// The remote-spmc command line: the commands, their help, and how any of them fails (one line on
// stderr: status 2 for a command-line or manifest mistake, 1 for anything else; never a stack).

import { TransportError } from '../client-driver/transport/transport.js';
import { type Command, commandUsage, globalUsage } from './cli/command.js';
import { CommandError, ConfigError, oneLine, transportReason } from './cli/errors.js';
import { UsageError } from './cli/flags.js';
import { escapeControl } from './cli/terminal.js';

/**
 * The commands, each loaded only when it runs or its help is asked for: `health` (the container's
 * health check, every few seconds) should not load the HTTP server.
 */
const COMMANDS: Record<string, () => Promise<Command>> = {
  serve: async () => (await import('./cli/serve.js')).serveCommand,
  partition: async () => (await import('./cli/partition.js')).partitionCommand,
  vm: async () => (await import('./cli/vm.js')).vmCommand,
  trace: async () => (await import('./cli/trace.js')).traceCommand,
  state: async () => (await import('./cli/state.js')).stateCommand,
  health: async () => (await import('./cli/health.js')).healthCommand,
  replay: async () => (await import('./cli/replay.js')).replayCommand,
  certs: async () => (await import('./cli/certs.js')).certsCommand,
};
const allCommands = () => Promise.all(Object.values(COMMANDS).map((load) => load()));
const HELP = new Set(['-h', '--help', 'help']);

/** A message may quote a server or a file: it is escaped (see cli/terminal.ts). */
function fail(message: string, status: number): never {
  process.stderr.write(`remote-spmc: ${escapeControl(message)}\n`);
  process.exit(status);
}

/** Every error that reaches the top, as one line and an exit status. */
async function report(e: unknown, command: Command | undefined): Promise<never> {
  if (e instanceof UsageError) {
    const usage = command
      ? `usage: remote-spmc ${command.name} ${command.synopsis}\n(remote-spmc ${command.name} --help lists the options)`
      : globalUsage(await allCommands()).trimEnd();
    process.stderr.write(`remote-spmc: ${escapeControl(e.message)}\n${usage}\n`);
    process.exit(2);
  }
  if (e instanceof ConfigError) fail(e.message, 2);
  if (e instanceof CommandError) fail(e.message, 1);
  if (e instanceof TransportError) fail(`${command ? `${command.name}: ` : ''}${transportReason(e)}`, 1);
  const err = e as NodeJS.ErrnoException;
  if (err?.syscall === 'listen' || err?.syscall === 'bind' || /No address added/.test(err?.message ?? ''))
    fail(`cannot listen: ${err.message.split('\n')[0]}`, 1);
  if (err?.code !== undefined && err.path !== undefined) fail(`cannot ${err.syscall ?? 'use'} ${err.path}: ${err.code}`, 1);
  fail(`internal error: ${oneLine(e)}`, 1);
}

/** `cmd | head`: once the reader is gone there is nobody to tell; stop quietly. */
function quietOnClosedPipe(): void {
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
      throw e;
    });
  }
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined) {
    process.stderr.write(globalUsage(await allCommands()));
    return 2;
  }
  if (HELP.has(name)) {
    const about = rest[0] !== undefined && Object.hasOwn(COMMANDS, rest[0]) ? await COMMANDS[rest[0]]!() : undefined;
    process.stdout.write(about ? commandUsage(about) : globalUsage(await allCommands()));
    return 0;
  }
  let command: Command | undefined;
  try {
    if (!Object.hasOwn(COMMANDS, name)) throw new UsageError(`unknown command ${JSON.stringify(name)}`);
    command = await COMMANDS[name]!();
    if (rest.some((a) => a === '-h' || a === '--help')) {
      process.stdout.write(commandUsage(command));
      return 0;
    }
    return await command.run(rest);
  } catch (e) {
    return report(e, command);
  }
}

quietOnClosedPipe();
process.on('uncaughtException', (e) => void report(e, undefined));
process.on('unhandledRejection', (e) => void report(e, undefined));
process.exitCode = await main(process.argv.slice(2));
