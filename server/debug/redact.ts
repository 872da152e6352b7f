// Secrets never leave the server: a remote partition's credential is written as `***` wherever a
// manifest is shown or recorded (the trace file's header), and trace files are readable by their
// owner only.

import { fchmodSync, openSync } from 'node:fs';
import type { PartitionManifest } from '../spmc/spmc.js';

/** What a credential is written as. */
export const REDACTED = '***';

/** A partition as it may be recorded or shown: its credential, if any, redacted. */
export function redactPartition(p: PartitionManifest): PartitionManifest {
  return p.behaviour.kind === 'remote' ? { ...p, behaviour: { ...p.behaviour, credential: REDACTED } } : p;
}

/**
 * Open (create or truncate) a file for a trace, mode 0600: a file that already existed with a wider
 * mode is narrowed before anything is written to it. Returns the descriptor.
 */
export function openPrivateFile(file: string): number {
  const fd = openSync(file, 'w', 0o600);
  fchmodSync(fd, 0o600);
  return fd;
}
