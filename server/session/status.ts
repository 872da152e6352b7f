// The one mapping from a refusal of a request (not an FF-A error: those travel in registers) to
// the status every transport reports. gRPC uses the names as its status codes, the JSON transport
// turns them into HTTP statuses, the in-process connector into the driver's TransportError.

import { MemoryFault, SpmcError, type SpmcErrorKind } from '../spmc/spmc.js';

/** Transport statuses, named as gRPC names them. */
export type TransportStatus =
  'INVALID_ARGUMENT' | 'UNAUTHENTICATED' | 'PERMISSION_DENIED' | 'ALREADY_EXISTS' | 'RESOURCE_EXHAUSTED' | 'UNAVAILABLE' | 'INTERNAL';

/** A refusal the session core makes itself (unknown session, shutting down, a bad field). */
export class SessionError extends Error {
  constructor(
    readonly status: TransportStatus,
    message: string,
  ) {
    super(message);
    this.name = 'SessionError';
  }
}

const STATUS_OF_KIND: Record<SpmcErrorKind, TransportStatus> = {
  'invalid-argument': 'INVALID_ARGUMENT',
  'already-exists': 'ALREADY_EXISTS',
  'permission-denied': 'PERMISSION_DENIED',
  // The endpoint behind a session is gone: to the client, its session is.
  'not-found': 'UNAUTHENTICATED',
  'resource-exhausted': 'RESOURCE_EXHAUSTED',
};

/** What a thrown refusal means on the wire, with the message that says which field or session. */
export function statusOf(e: unknown): { status: TransportStatus; message: string } {
  if (e instanceof SessionError) return { status: e.status, message: e.message };
  if (e instanceof MemoryFault) return { status: 'PERMISSION_DENIED', message: e.message };
  if (e instanceof SpmcError) return { status: STATUS_OF_KIND[e.kind], message: e.message };
  return { status: 'INTERNAL', message: e instanceof Error ? e.message : String(e) };
}
