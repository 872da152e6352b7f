// How a command fails: one line on stderr, never a stack trace.

import * as grpc from '@grpc/grpc-js';
import type { TransportError } from '../../client-driver/transport/transport.js';

/** A failure outside the command line (server unreachable, refused): one line, exit status 1. */
export class CommandError extends Error {}

/** A mistake in a file the command line names (a manifest): one line, exit status 2. */
export class ConfigError extends Error {}

/** grpc-js status details, shortened: "No connection established. Last error: Error: connect ECONNREFUSED ..." -> "connect ECONNREFUSED ...". */
export function shortDetails(details: string): string {
  const last = /Last error: (?:[A-Za-z]*Error: )?(.*?)\.?\s*(?:Resolution note:.*)?$/s.exec(details);
  return (last?.[1] ?? details).trim() || 'no details';
}

/** A failed gRPC call: "unreachable (why)" when the server is not there, else "STATUS: why". */
export function grpcReason(e: Pick<grpc.ServiceError, 'code' | 'details' | 'message'>): string {
  const why = shortDetails(e.details || e.message || '');
  return e.code === grpc.status.UNAVAILABLE ? `unreachable (${why})` : `${grpc.status[e.code] ?? e.code}: ${why}`;
}

/** The driver's transport error, shortened the same way: "UNAVAILABLE: connect ECONNREFUSED ...". */
export function transportReason(e: TransportError): string {
  return `${e.code}: ${shortDetails(e.message.startsWith(`${e.code}: `) ? e.message.slice(e.code.length + 2) : e.message)}`;
}

/** A gRPC call's failure as the one line a command prints. */
export function grpcFailure(command: string, server: string, e: grpc.ServiceError): CommandError {
  return new CommandError(`${command}: ${server}: ${grpcReason(e)}`);
}

/** What to print for an error nobody expected: its message and where it was thrown, on one line. */
export function oneLine(e: unknown): string {
  if (!(e instanceof Error)) return String(e);
  const at = /\n\s+at (?:.*\()?(.*?:\d+:\d+)\)?/.exec(e.stack ?? '')?.[1];
  return `${e.message.split('\n')[0]}${at ? ` (at ${at})` : ''}`;
}
