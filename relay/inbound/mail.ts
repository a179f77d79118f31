// MAIL FROM phase. smtp-server already checks the syntax, SIZE= against the limit (552 5.3.4), BODY= and SMTPUTF8.
// The relay refuses new transactions while shutting down and without a routing table.
import { ACCEPT, REPLIES, type Verdict } from './verdict.ts';

export interface MailFacts {
  /** '' for the null sender */
  address: string;
  /** SIZE= declared by the client, if any */
  declaredSize?: number;
  maxMessageSize: number;
  draining: boolean;
  routingLoaded: boolean;
}

export function decideMail(f: MailFacts): Verdict {
  if (f.draining) return REPLIES.shuttingDown();
  if (f.declaredSize !== undefined && f.declaredSize > f.maxMessageSize)
    return REPLIES.tooLarge(f.maxMessageSize);
  if (!f.routingLoaded) return REPLIES.noRoutingTable();
  return ACCEPT;
}
