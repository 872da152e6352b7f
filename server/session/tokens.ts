// Bearer tokens: the join token a VM needs to attach, the admin token inspection needs. A wrong or
// missing token is refused UNAUTHENTICATED and counted by the attack watch, so guessing is
// throttled per source like a wrong credential. No token configured: nothing is asked.

import { timingSafeEqual } from 'node:crypto';
import type { AttackWatch } from './attacks.js';
import { SessionError } from './status.js';

export type TokenKind = 'join' | 'admin';

export interface TokenOptions {
  /** Attaching as a VM needs it (gRPC Attach). */
  join?: string;
  /** Inspection of guest memory and state needs it (memory dump, access tables, details, traces, JSON attach). */
  admin?: string;
}

/** The token in an `authorization: Bearer TOKEN` value, or undefined. */
export function bearer(header: string | string[] | undefined): string | undefined {
  const v = Array.isArray(header) ? header[0] : header;
  const m = v !== undefined ? /^Bearer\s+(\S+)\s*$/i.exec(v) : null;
  return m?.[1];
}

const same = (a: string, b: string) => {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
};

export class Tokens {
  constructor(
    private readonly opts: TokenOptions,
    private readonly attacks?: AttackWatch,
  ) {}

  /** Whether a `kind` token is configured (else check() lets everything through). */
  required(kind: TokenKind): boolean {
    return this.opts[kind] !== undefined;
  }

  /** Throws UNAUTHENTICATED (with why) unless `presented` is the configured `kind` token; throttled per source. */
  check(kind: TokenKind, presented: string | undefined, source: string): void {
    const want = this.opts[kind];
    if (want === undefined) return;
    this.attacks?.checkAllowed(source, `${kind} token`);
    if (presented !== undefined && same(presented, want)) {
      this.attacks?.succeeded(source);
      return;
    }
    const why = presented === undefined ? `no ${kind} token presented (authorization: Bearer TOKEN)` : `wrong ${kind} token`;
    this.attacks?.failed(source, { why }, `${kind} token`);
    throw new SessionError('UNAUTHENTICATED', why);
  }
}
