// What each SMTP phase decides: accept, or a reply to send (tempfail 4xx / reject 5xx) with the reason counted in
// mailroute_messages_rejected_total{reason}. One adapter (adapter.ts) turns verdicts into smtp-server errors.
import type { Reply } from '../../routing/model.ts';
import { clip } from '../../lib/one-line.ts';

/** The characters of a client's parameter name a reply (and the log line about it) repeats; the rest is counted. */
const MAX_PARAMETER_NAME = 64;

/**
 * The longest reply text the relay sends or logs: with the code, the enhanced code and `... (N more)` the line stays
 * under the 512 octets of RFC 5321 §4.5.3.1.5, whatever client text a reply carries (server.ts refuse).
 */
export const MAX_REPLY_TEXT = 400;

export type Verdict =
  | { verdict: 'accept' }
  | { verdict: 'tempfail'; reply: Reply; reason: string }
  | { verdict: 'reject'; reply: Reply; reason: string };

export type Refusal = Exclude<Verdict, { verdict: 'accept' }>;

export const ACCEPT: Verdict = Object.freeze({ verdict: 'accept' });

export function reject(reason: string, code: number, enhanced: string, text: string): Refusal {
  return { verdict: 'reject', reason, reply: { code, enhanced, text } };
}

export function tempfail(reason: string, code: number, enhanced: string, text: string): Refusal {
  return { verdict: 'tempfail', reason, reply: { code, enhanced, text } };
}

/** The replies the relay sends, in one place so tests and docs quote the same text. */
export const REPLIES = {
  relayDenied: () => reject('RelayDenied', 554, '5.7.1', 'Relay access denied'),
  /**
   * A MAIL FROM or RCPT TO parameter the relay does not implement, or a hand-off one from a client not a peer. The
   * name is the client's (up to a command line, 16 KiB): its first 64 characters are repeated.
   */
  unsupportedParameter: (name: string) =>
    reject('UnsupportedParameter', 555, '5.5.4', `Unsupported parameter ${clip(name, MAX_PARAMETER_NAME)}`),
  /**
   * A local part with %, ! or @ (user%other.org@managed.example): routing the sender chose, which a primary that still
   * honours the percent hack would relay onward. Refused as Postfix does by default (allow_untrusted_routing = no).
   */
  senderRouting: () =>
    reject(
      'SenderRouting',
      554,
      '5.7.1',
      'Relay access denied: sender-specified routing (%, ! or @ in the local part) is not accepted',
    ),
  unknownRecipient: (text = 'Recipient address rejected: unknown user') =>
    reject('UnknownRecipient', 550, '5.1.1', text),
  /** RFC 6531 §3.4: a non-ASCII address without the SMTPUTF8 parameter on MAIL FROM (Postfix sends the same code). */
  nonAsciiAddress: () =>
    reject('NonAsciiAddress', 553, '5.6.7', 'Must declare SMTPUTF8 to send a non-ASCII address'),
  /** A Unicode (U-label) domain that IDNA cannot convert to its A-label form. */
  badIdnDomain: () =>
    reject(
      'BadAddress',
      553,
      '5.1.3',
      'Bad address syntax: the domain is not a valid internationalised domain name',
    ),
  badSender: (problem: string) => reject('BadSender', 553, '5.1.7', `Sender address rejected: ${problem}`),
  tooManyRecipients: () => tempfail('TooManyRecipients', 452, '4.5.3', 'Too many recipients'),
  tooLarge: (max: number) =>
    reject('TooLarge', 552, '5.3.4', `Message size exceeds fixed limit of ${max} bytes`),
  /** The message already carries this relay's (or its cluster's) Received: trace: it came back (Postfix's wording). */
  mailLoop: () =>
    reject(
      'Loop',
      554,
      '5.4.6',
      "Mail loops back to myself: the message already carries this relay's Received: trace",
    ),
  /** Received: fields with the relay's own reach the hop limit (Postfix's hopcount_limit). */
  tooManyHops: (limit: number) =>
    reject(
      'TooManyHops',
      554,
      '5.4.6',
      `Too many hops: ${limit} Received: header fields with this relay's own`,
    ),
  bareLineFeed: () =>
    reject('BareLineFeed', 554, '5.6.11', 'Bare LF or bare CR in message content is not allowed'),
  lineTooLong: (max: number) =>
    reject('LineTooLong', 554, '5.6.0', `Line longer than ${max} bytes in message content`),
  nul: () => reject('NulCharacter', 554, '5.6.0', 'NUL character in message content is not allowed'),
  tooManyConnections: () =>
    tempfail('TooManyConnections', 421, '4.7.0', 'Too many connections from your address'),
  /** The connection table is full and no idle client without mail could be evicted. */
  tableFull: () =>
    tempfail('TooManyConnections', 421, '4.7.0', 'Too many connected clients, try again in a moment'),
  /** A new client needed the slot of this idle one, which has sent no mail (relay/inbound/slow.ts). */
  evicted: () =>
    tempfail(
      'Evicted',
      421,
      '4.7.0',
      'Too many connected clients: closing an idle connection, try again later',
    ),
  /**
   * More refusals in one session than --max-errors (Postfix's smtpd_hard_error_limit): the next one is replaced by this
   * and the connection is closed (server.ts).
   */
  tooManyErrors: () => tempfail('TooManyErrors', 421, '4.7.0', 'Too many errors, closing connection'),
  earlyTalker: () => tempfail('EarlyTalker', 421, '4.7.0', 'Protocol error: you talk before the greeting'),
  shuttingDown: () => tempfail('ShuttingDown', 421, '4.3.2', 'Service shutting down, try again later'),
  /** A leg of the recipient's plan goes to an address that is not valid (a forwardTo or copy address): config. */
  invalidLegAddress: (why: string) =>
    tempfail(
      'InvalidLegAddress',
      451,
      '4.3.5',
      `Configuration error: an address this recipient is delivered to is not valid (${why}); try again later`,
    ),
  noRoutingTable: () =>
    tempfail('NoRoutingTable', 451, '4.3.0', 'Routing table not loaded yet, try again later'),
  spoolError: () =>
    tempfail('SpoolError', 451, '4.3.0', 'Local error in processing: could not queue the message'),
  diskFull: () => tempfail('DiskFull', 452, '4.3.1', 'Insufficient system storage'),
  dataTimeout: () => tempfail('DataTimeout', 421, '4.4.2', 'DATA phase took too long, closing connection'),
  connectionLost: () => tempfail('ConnectionLost', 421, '4.4.2', 'Connection lost'),
} as const;
