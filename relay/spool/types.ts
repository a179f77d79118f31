// The seam between accepting and delivering: the inbound side calls accept(), the delivery side reads the spool.
// The spool is the only hand-off between the two (GUIDE §6.4).
import type { Readable } from 'node:stream';
import type { Leg } from '../../routing/model.ts';

/** One accepted envelope recipient and the legs its delivery plan names. */
export interface AcceptedRecipient {
  /** As given in RCPT TO (lowercased domain). */
  recipient: string;
  legs: Leg[];
}

export interface EnvelopeMeta {
  /** '' for the null sender <> */
  mailFrom: string;
  recipients: AcceptedRecipient[];
  clientAddress: string;
  clientHostname: string;
  helo: string;
  /** RFC 3339 */
  receivedAt: string;
  /** Routing revision the plans were made with. */
  revision: string;
  smtputf8: boolean;
  /** BODY=8BITMIME was declared */
  body8bit: boolean;
}

export type AcceptResult =
  | { ok: true; id: string }
  /** The body stream failed (the inbound layer's own error is passed through) or the disk failed. Nothing was kept. */
  | { ok: false; error: Error; storage: boolean };

export interface SpoolWriter {
  /**
   * Streams body to disk, writes the delivery plan beside it, fsyncs file and directory, and only then resolves
   * with { ok: true }. On any failure nothing remains in the spool.
   */
  accept(meta: EnvelopeMeta, body: Readable): Promise<AcceptResult>;
}
