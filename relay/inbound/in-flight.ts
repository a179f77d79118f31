// The recipients held in transactions not yet ended, across every session of the process (--max-recipients-in-flight).
// --max-recipients bounds one transaction and --max-connections the sessions, but their product did not bound memory:
// 40 sessions each holding 1000 recipients of 64 characters before DATA grew the relay's RSS by 114 MiB (about
// 2.9 KiB a recipient: smtp-server's parsed address, the routed recipient and its legs, two index entries). At the
// bound the next RCPT TO gets 452 4.5.3 (RFC 5321 §4.5.3.1.10: the client sends the rest later).
//
// A transaction's recipients leave the count when it ends: RSET, EHLO/HELO, STARTTLS, the end of DATA (accepted or
// refused; smtp-server starts a new envelope for each of these) and the session's close, once. A RCPT answered after
// its session closed (a callout still running) is not counted: nothing would ever release it.
import { tempfail, type Refusal } from './verdict.ts';

/** 50,000 x ~2.9 KiB is ~145 MiB of held recipients at worst: with the ~170 MiB the relay runs at, under the chart's 512 MiB. */
export const DEFAULT_MAX_RECIPIENTS_IN_FLIGHT = 50_000;

export const tooManyRecipientsInFlight = (): Refusal =>
  tempfail('TooManyRecipientsInFlight', 452, '4.5.3', 'Too many recipients in flight, try again later');

/** One transaction's part of the count. */
export interface Held {
  /** Recipients of the transaction in the count. */
  held: number;
  /** The transaction ended: its recipients left the count, and no later one joins it. */
  ended: boolean;
}

export const openTransaction = (): Held => ({ held: 0, ended: false });

export class RecipientsInFlight {
  private n = 0;
  private readonly max: number;

  constructor(max: number) {
    this.max = max;
  }

  /** Recipients held now, in every transaction not yet ended. */
  get count(): number {
    return this.n;
  }

  /** Whether the next RCPT TO is refused: the bound is reached. */
  get full(): boolean {
    return this.n >= this.max;
  }

  /** `t` holds `size` recipients now (a repeated address replaces its entry: the same size, nothing added). */
  hold(t: Held, size: number): void {
    if (t.ended) return;
    this.n += size - t.held;
    t.held = size;
  }

  /** `t` ended: its recipients leave the count. A second end (RSET, then the close) releases nothing. */
  end(t: Held): void {
    if (t.ended) return;
    t.ended = true;
    this.n -= t.held;
    t.held = 0;
  }
}
