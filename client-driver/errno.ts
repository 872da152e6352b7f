// FF-A status -> errno, as the Linux driver's ffa_linux_errmap. The lookup is bounded by the
// table's own length (the seed patch's review), so a code the table does not know is -EINVAL.

import { constants } from 'node:os';
import { FFA_ERRORS, type FfaErrorName, errorName, type Reason } from '../proto/ffa/index.js';

export type Errno = keyof typeof constants.errno;

const ERRNO_OF: Record<FfaErrorName, Errno> = {
  NOT_SUPPORTED: 'EOPNOTSUPP',
  INVALID_PARAMETERS: 'EINVAL',
  NO_MEMORY: 'ENOMEM',
  BUSY: 'EBUSY',
  INTERRUPTED: 'EINTR',
  DENIED: 'EACCES',
  RETRY: 'EAGAIN',
  ABORTED: 'ECANCELED',
  NO_DATA: 'ENODATA',
  NOT_READY: 'EAGAIN',
};

/** Indexed by -code; index 0 is FFA_RET_SUCCESS. */
const ERRMAP: (Errno | undefined)[] = [];
for (const [name, code] of Object.entries(FFA_ERRORS) as [FfaErrorName, number][]) ERRMAP[-code] = ERRNO_OF[name];

export function ffaToErrno(code: number): Errno {
  const idx = -code;
  return (idx > 0 && idx < ERRMAP.length && ERRMAP[idx]) || 'EINVAL';
}

/** A driver operation failed; `errno` is what the kernel would return (negated). */
export class FfaDriverError extends Error {
  constructor(
    readonly errno: Errno,
    message: string,
    /** The FF-A status behind it, when the SPMC answered FFA_ERROR. */
    readonly ffaError?: number,
    /** Why the SPMC refused, when it said. */
    readonly reason?: Reason,
  ) {
    const why = reason ? `: ${reason.text}` : '';
    super(`${errno}: ${message}${ffaError !== undefined ? ` (FFA ${errorName(ffaError)}${why})` : ''}`);
    this.name = 'FfaDriverError';
  }

  /** The negative errno value, e.g. -95 for EOPNOTSUPP. */
  get code(): number {
    return -constants.errno[this.errno];
  }
}
