// `remote-spmc replay FILE`: run a recorded trace against a fresh SPMC.

import { readFileSync } from 'node:fs';
import { hex } from '../../proto/ffa/index.js';
import { replayFile, TraceFormatError } from '../debug/replay.js';
import { ReplaySession } from '../debug/replay-session.js';
import { buildReplayApp } from '../http/replay.js';
import type { PartitionManifest } from '../spmc/spmc.js';
import { type Command, Flags } from './command.js';
import { formatHostPort, type HostPort, parseHostPort, UsageError } from './flags.js';
import { asConfigError, readManifestFile } from './manifest-file.js';
import { printLines } from './terminal.js';

export const replayCommand: Command = {
  name: 'replay',
  synopsis: 'FILE [--manifest FILE] [--serve [--http HOST:PORT]]',
  summary: 'run a recorded trace (serve --trace-file) against a fresh SPMC; exit 0 if every answer matched, 1 at the first difference',
  flags: [
    { name: 'manifest', arg: 'FILE', help: 'build the SPMC from this manifest instead of the recorded one' },
    { name: 'serve', help: "serve the dashboard over the recording instead: its sequence chart, and the model's state at any record (time travel)" },
    { name: 'http', arg: 'HOST:PORT', default: '127.0.0.1:8090', help: 'where --serve listens' },
  ],
  more: `A trace file never holds a remote partition's credential (its header says ***). A replay needs
none: the recorded attaches all succeeded, and the replayed SPMC gives the partition a stand-in. With
--manifest, a credential-env the manifest names is read from the environment, as serve reads it.`,
  async run(args) {
    const [file, ...rest] = args;
    if (!file || file.startsWith('-')) throw new UsageError('replay: a trace file (from serve --trace-file) is required');
    const v = Flags.parse(this, rest);
    const manifestFile = v.string('manifest');
    const manifest: PartitionManifest[] | undefined = manifestFile !== undefined ? readManifestFile(manifestFile) : undefined;
    if (v.bool('serve')) return serveReplay(file, parseHostPort('--http', v.string('http')!), manifest);
    let report;
    try {
      report = replayFile(file, manifest);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (e instanceof TraceFormatError) throw new UsageError(`replay: ${e.message}`);
      if (asConfigError(e) !== e) throw asConfigError(e);
      if (code === 'ENOENT' || code === 'EACCES' || code === 'EISDIR') throw new UsageError(`replay: cannot read ${file}: ${code}`);
      throw e;
    }
    const d = report.difference;
    if (!d) {
      printLines(`all ${report.calls} calls matched (${report.records} records)`);
      return 0;
    }
    // The fields come from the file: each line is escaped on its own.
    printLines(
      `first difference at seq ${d.seq}, endpoint ${hex(d.endpoint)}: ${d.what}`,
      `  recorded: ${d.recorded}`,
      `  replayed: ${d.replayed}`,
      `(${report.matched} of ${report.calls} calls matched before it)`,
    );
    return 1;
  },
};

/** `replay --serve`: the dashboard over the recording until SIGINT or SIGTERM. */
async function serveReplay(file: string, at: HostPort, manifest?: PartitionManifest[]): Promise<number> {
  let session: ReplaySession;
  try {
    session = ReplaySession.parse(file, readFileSync(file, 'utf8'), manifest);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (e instanceof TraceFormatError) throw new UsageError(`replay: ${e.message}`);
    if (code === 'ENOENT' || code === 'EACCES' || code === 'EISDIR') throw new UsageError(`replay: cannot read ${file}: ${code}`);
    throw e;
  }
  const app = await buildReplayApp(session);
  await app.listen({ host: at.host, port: at.port });
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : at.port;
  const s = session.summary();
  printLines(
    `${s.records} records (${s.calls} calls) of ${file}; dashboard at http://${formatHostPort({ ...at, port })}/`,
    ...(s.difference ? [`the replay differs from the recording at seq ${s.difference.seq}: ${s.difference.what}`] : []),
  );
  return new Promise((resolve) => {
    const stop = () => void app.close().then(() => resolve(0));
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
}
