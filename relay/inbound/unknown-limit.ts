// Limits on unknown recipients (Postfix's smtpd_hard_error_limit and "too many unknown recipients"): a client that
// keeps naming recipients the relay refuses is harvesting a directory or probing for an open relay, and every RCPT
// may cost a verification callout. After `perSession` such refusals in one session, or `perAddress` from one client
// address within `windowMs`, its next RCPT gets 421 4.7.0 and the connection is closed. An accepted message starts the
// session's count again (the server does it, as Postfix counts errors "without delivering mail"); the address's is kept.
//
// Counted: RCPT refusals that say something about the recipient (UnknownRecipient 550 5.1.1, RelayDenied 554 5.7.1,
// RecipientRejected e.g. 553 5.1.3). Not counted: tempfails (451 4.4.3 when a callout was inconclusive or busy,
// 451 4.3.x): their cause is the relay's or the downstream server's, and the callout pool bounds their cost.
import type { Refusal } from './verdict.ts';
import { tempfail } from './verdict.ts';

const UNKNOWN_WINDOW_MS = 10 * 60_000;

const COUNTED = new Set(['UnknownRecipient', 'RelayDenied', 'RecipientRejected']);

export function countsAsUnknown(reason: string): boolean {
  return COUNTED.has(reason);
}

export const tooManyUnknownRecipients = (): Refusal =>
  tempfail('TooManyUnknownRecipients', 421, '4.7.0', 'Too many unknown recipients, closing connection');

export interface UnknownLimitOptions {
  /** 0: no limit. */
  perSession: number;
  /** 0: no limit. */
  perAddress: number;
  windowMs?: number;
  /** Client addresses remembered at most (oldest windows dropped first). Default 10,000. */
  maxAddresses?: number;
  /** Monotonic milliseconds (default performance.now()): a step of the wall clock must not stretch a window. */
  now?: () => number;
}

/** Per-address counts in fixed windows; per-session counts are kept by the caller (one number per session). */
export class UnknownRecipientLimiter {
  private readonly byAddress = new Map<string, { start: number; count: number }>();
  private readonly o: Required<UnknownLimitOptions>;

  constructor(o: UnknownLimitOptions) {
    this.o = { windowMs: UNKNOWN_WINDOW_MS, maxAddresses: 10_000, now: () => performance.now(), ...o };
  }

  /** Whether the next RCPT of a session with `sessionCount` refusals, from `address`, is refused with 421. */
  exceeded(address: string, sessionCount: number): boolean {
    if (this.o.perSession > 0 && sessionCount >= this.o.perSession) return true;
    if (this.o.perAddress <= 0) return false;
    const e = this.byAddress.get(address);
    return e !== undefined && this.o.now() - e.start < this.o.windowMs && e.count >= this.o.perAddress;
  }

  /** Counts one unknown recipient from `address`. */
  record(address: string): void {
    if (this.o.perAddress <= 0) return;
    const now = this.o.now();
    const e = this.byAddress.get(address);
    if (e !== undefined && now - e.start < this.o.windowMs) {
      e.count++;
      return;
    }
    this.byAddress.delete(address);
    this.byAddress.set(address, { start: now, count: 1 });
    if (this.byAddress.size > this.o.maxAddresses) {
      const oldest = this.byAddress.keys().next();
      if (oldest.done !== true) this.byAddress.delete(oldest.value);
    }
  }
}
