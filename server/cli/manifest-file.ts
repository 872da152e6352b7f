// A manifest named on the command line: unreadable or refused, it is the user's mistake (exit 2).

import { readFileSync } from 'node:fs';
import { ManifestError, parseManifestFile } from '../manifest.js';
import type { LogicalPartition } from '../spmc/logical-partitions.js';
import { type PartitionManifest, SpmcError } from '../spmc/spmc.js';
import { ConfigError } from './errors.js';
import { UsageError } from './flags.js';

/** A manifest file's partitions; an unreadable file is a command-line mistake (exit 2). */
export function readManifestFile(file: string, flag = '--manifest'): PartitionManifest[] {
  return readManifestWithLogical(file, flag).partitions;
}

/** A manifest file's partitions and the SPMD's logical partitions it declares. */
export function readManifestWithLogical(
  file: string,
  flag = '--manifest',
): { partitions: PartitionManifest[]; logicalPartitions: LogicalPartition[]; personality?: string } {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new UsageError(`${flag}: cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  try {
    return parseManifestFile(text, file);
  } catch (e) {
    throw asConfigError(e);
  }
}

/** A manifest the SPMC or its schema refuses is the user's mistake, not a crash. */
export function asConfigError(e: unknown): unknown {
  return e instanceof ManifestError || e instanceof SpmcError ? new ConfigError(`manifest error: ${e.message}`) : e;
}
