// MAIL FROM phase. smtp-server already checks the syntax, SIZE= against the limit (552 5.3.4), BODY= and SMTPUTF8.
// The relay refuses new transactions while shutting down and without a routing table, an unsafe sender (553 5.1.7,
// senderProblem: the check the spool applies to senders it reads back), and a non-ASCII (UTF-8) sender address
// without the SMTPUTF8 parameter (553 5.6.7, RFC 6531 §3.4).
import { isNonAscii, senderProblem } from '../../routing/address.ts';
import { ACCEPT, REPLIES, type Verdict } from './verdict.ts';

export interface MailFacts {
  /** '' for the null sender */
  address: string;
  /** SIZE= declared by the client, if any */
  declaredSize?: number;
  maxMessageSize: number;
  draining: boolean;
  routingLoaded: boolean;
  /** The SMTPUTF8 parameter was given on this MAIL FROM. */
  smtputf8: boolean;
}

export function decideMail(f: MailFacts): Verdict {
  if (f.draining) return REPLIES.shuttingDown();
  // smtp-server already refuses these; the spool checks senders read from disk with the same function.
  const problem = senderProblem(f.address);
  if (problem !== undefined) return REPLIES.badSender(problem);
  if (!f.smtputf8 && isNonAscii(f.address)) return REPLIES.nonAsciiAddress();
  if (f.declaredSize !== undefined && f.declaredSize > f.maxMessageSize)
    return REPLIES.tooLarge(f.maxMessageSize);
  if (!f.routingLoaded) return REPLIES.noRoutingTable();
  return ACCEPT;
}
