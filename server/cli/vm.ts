// `remote-spmc vm`: attach to a server as a VM and run driver operations, printing decoded results.
// One operation from the command line, a script (one per line, the same words), or a YAML
// scenario: a list of steps with expectations, so a multi-VM integration test is data.

import { readFileSync } from 'node:fs';
import { hex, PARTITION_PROPERTIES_MASK_V1_1, VM_ID_MAX } from '../../proto/ffa/index.js';
import { FfaDriver } from '../../client-driver/driver.js';
import { GrpcConnector } from '../../client-driver/transport/grpc.js';
import { TransportError } from '../../client-driver/transport/transport.js';
import { EmulatedVm } from '../../client-driver/vm.js';
import { VM_DEFAULT_PROPERTIES } from '../spmc/spmc.js';
import { type Command, Flags, SERVER_FLAG } from './command.js';
import { transportReason } from './errors.js';
import { UsageError } from './flags.js';
import { printLines } from './terminal.js';
import { opsUsage, parseScenario, parseScript, parseWords, type Scenario, ScenarioError } from './scenario.js';
import { ScenarioVm } from './scenario-vm.js';
import { CLIENT_SECURITY_FLAGS, clientSecurity, JOIN_TOKEN_FLAG } from './tls-files.js';

export { parseScenario, ScenarioError } from './scenario.js';
export { ScenarioVm } from './scenario-vm.js';

const DEFAULT_TIMEOUT_S = 60;

function readText(file: string, flag: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    throw new UsageError(`${flag}: cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

/** Flags come first; the first word that is not one starts the operation. */
function splitArgs(c: Command, args: string[]): { flags: string[]; words: string[] } {
  const takesValue = new Set(c.flags.filter((f) => f.arg).map((f) => `--${f.name}`));
  let i = 0;
  while (i < args.length && args[i]!.startsWith('-')) i += takesValue.has(args[i]!) ? 2 : 1;
  return { flags: args.slice(0, i), words: args.slice(i) };
}

export const vmCommand: Command = {
  name: 'vm',
  synopsis: '[options] [OP ARGS... | --script FILE | --scenario FILE]',
  summary: 'attach as a VM and run driver operations: one from the command line, a script, or a YAML scenario',
  flags: [
    SERVER_FLAG,
    { name: 'id', arg: 'ID', help: `the VM id to attach as, 1..${VM_ID_MAX} (default, or 0: the server picks one)` },
    { name: 'name', arg: 'NAME', help: 'its name, as the trace and the dashboard show it (default vmID)' },
    { name: 'vcpus', arg: 'N', help: 'its vCPU count, 1..64 (default 1; serve needs 2)' },
    {
      name: 'properties',
      arg: 'BITS',
      help: `its partition properties and messaging methods, 0..${hex(PARTITION_PROPERTIES_MASK_V1_1)} (default 0: the usual guest, ${hex(VM_DEFAULT_PROPERTIES)})`,
    },
    { name: 'script', arg: 'FILE', help: 'operations, one per line (# comments)' },
    { name: 'scenario', arg: 'FILE', help: 'a YAML scenario (see the README: "Writing a scenario")' },
    { name: 'timeout', arg: 'SECONDS', help: `how long a step waits for another endpoint, 0..3600 (default: the scenario's, else ${DEFAULT_TIMEOUT_S})` },
    ...CLIENT_SECURITY_FLAGS,
    JOIN_TOKEN_FLAG,
  ],
  more: `Without an operation: info, then partitions. Operations (numbers are decimal or 0x hex;
partition command names, ECHO, FORWARD ..., may stand for a word):
${opsUsage()}

Each operation prints "ok N - OP: result" or "not ok N - OP: why"; the exit status is 0 when all passed.`,

  async run(args) {
    const { flags, words } = splitArgs(this, args);
    const v = Flags.parse(this, flags);
    const server = v.server();
    const sources = [v.string('scenario') !== undefined, v.string('script') !== undefined, words.length > 0].filter(Boolean).length;
    if (sources > 1) throw new UsageError('give one of: an operation, --script FILE, --scenario FILE');
    let scenario: Scenario;
    try {
      const scenarioFile = v.string('scenario');
      const scriptFile = v.string('script');
      if (scenarioFile !== undefined) scenario = parseScenario(readText(scenarioFile, '--scenario'), scenarioFile);
      else if (scriptFile !== undefined) scenario = { vm: {}, steps: parseScript(readText(scriptFile, '--script'), scriptFile) };
      else if (words.length > 0) scenario = { vm: {}, steps: [parseWords(words)] };
      else scenario = { vm: {}, steps: [{ op: 'info' }, { op: 'partitions', ids: [] }] };
    } catch (e) {
      if (e instanceof ScenarioError) throw new UsageError(e.message);
      throw e;
    }
    const id = v.int('id', 0, VM_ID_MAX) ?? scenario.vm.id;
    const vcpus = v.int('vcpus', 1, 64) ?? scenario.vm.vcpus;
    const properties = v.int('properties', 0, PARTITION_PROPERTIES_MASK_V1_1) ?? scenario.vm.properties;
    const timeout = v.int('timeout', 0, 3600) ?? scenario.timeout ?? DEFAULT_TIMEOUT_S;

    const connector = new GrpcConnector(server, 'session', clientSecurity(v, JOIN_TOKEN_FLAG.name));
    let vm: EmulatedVm;
    try {
      vm = await EmulatedVm.attach(connector, { endpointId: id, name: v.string('name') ?? scenario.vm.name, vcpuCount: vcpus, properties });
    } catch (e) {
      connector.close();
      printLines(`not ok 0 - attach to ${server}: ${e instanceof TransportError ? transportReason(e) : (e as Error).message}`);
      return 1;
    }
    const drv = new FfaDriver(vm);
    // Messages may arrive while the driver initialises: the inbox must be there first.
    const runner = new ScenarioVm(drv, timeout);
    let ok = false;
    try {
      await drv.init();
      ok = await runner.run(scenario.steps);
    } catch (e) {
      printLines(`not ok 0 - driver init: ${e instanceof TransportError ? transportReason(e) : (e as Error).message}`);
    }
    await drv.exit().catch(() => {});
    await vm.detach().catch(() => {});
    connector.close();
    return ok ? 0 : 1;
  },
};
