#!/usr/bin/env node
// The remote-spmc command line: the commands, their help, and how any of them fails (one line on
// stderr: status 2 for a command-line or manifest mistake, 1 for anything else; never a stack).

import { TransportError } from '../client-driver/transport/transport.js';
import { type Command, commandUsage, globalUsage } from './cli/command.js';
import { CommandError, oneLine, transportReason } from './cli/errors.js';
import { UsageError } from './cli/flags.js';
import { healthCommand } from './cli/health.js';
import { partitionCommand } from './cli/partition.js';
import { replayCommand } from './cli/replay.js';
import { serveCommand } from './cli/serve.js';
import { stateCommand } from './cli/state.js';
import { traceCommand } from './cli/trace.js';
import { vmCommand } from './cli/vm.js';
import { ManifestError } from './manifest.js';
import { SpmcError } from './spmc/spmc.js';

const COMMANDS: readonly Command[] = [serveCommand, partitionCommand, vmCommand, traceCommand, stateCommand, healthCommand, replayCommand];
const HELP = new Set(['-h', '--help', 'help']);

function fail(message: string, status: number): never {
  process.stderr.write(`remote-spmc: ${message}\n`);
  process.exit(status);
}

/** Every error that reaches the top, as one line and an exit status. */
function report(e: unknown, command: Command | undefined): never {
  if (e instanceof UsageError) {
    const usage = command ? `usage: remote-spmc ${command.name} ${command.synopsis}\n(remote-spmc ${command.name} --help lists the options)` : globalUsage(COMMANDS).trimEnd();
    process.stderr.write(`remote-spmc: ${e.message}\n${usage}\n`);
    process.exit(2);
  }
  if (e instanceof ManifestError || e instanceof SpmcError) fail(`manifest error: ${e.message}`, 2);
  if (e instanceof CommandError) fail(e.message, 1);
  if (e instanceof TransportError) fail(`${command ? `${command.name}: ` : ''}${transportReason(e)}`, 1);
  const err = e as NodeJS.ErrnoException;
  if (err?.code === 'EADDRINUSE' || err?.code === 'EADDRNOTAVAIL' || err?.code === 'EACCES' || /No address added|bind/i.test(err?.message ?? '')) {
    fail(`cannot listen: ${err.message.split('\n')[0]}`, 1);
  }
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
    process.stderr.write(globalUsage(COMMANDS));
    return 2;
  }
  if (HELP.has(name)) {
    const about = COMMANDS.find((c) => c.name === rest[0]);
    process.stdout.write(about ? commandUsage(about) : globalUsage(COMMANDS));
    return 0;
  }
  const command = COMMANDS.find((c) => c.name === name);
  try {
    if (!command) throw new UsageError(`unknown command ${JSON.stringify(name)}`);
    if (rest.some((a) => a === '-h' || a === '--help')) {
      process.stdout.write(commandUsage(command));
      return 0;
    }
    return await command.run(rest);
  } catch (e) {
    report(e, command);
  }
}

quietOnClosedPipe();
process.on('uncaughtException', (e) => report(e, undefined));
process.on('unhandledRejection', (e) => report(e, undefined));
process.exitCode = await main(process.argv.slice(2));
