// What a transaction came to, and the reply each recipient gets from it: the same kinds and texts as
// relay/delivery/transport.ts (errorReply, repliesFromNodemailer) makes of nodemailer's errors and results for the same
// situations, except where nodemailer's were wrong for the relay (a refused greeting, a SIZE limit, an unreadable body
// file, this host short of sockets: failureReply), and a recipient refused at RCPT TO keeps its own refusal when the
// transaction fails after it (nodemailer gave everyone the failure). A failure carries nodemailer's error code
// (ESOCKET, EAUTH, ...; EGREETING is the relay's own), its message and the server's reply when there was one, built
// as nodemailer's _formatError builds them. Pure.
//
// Exports:
//   FailureCode, SmtpFailure, smtpFailure(code, message, response?): a failure as nodemailer reports it.
//   failureReply(failure): its AttemptReply (EAUTH/ETLS/ESTREAM and a socket failing for want of this host's resources,
//     EMFILE and the like -> local; EGREETING, a server that greeted with anything but 220 (or refused EHLO with 421,
//     HELO with a 4xx), and an ETLS marked tlsRequired (a host that cannot give the TLS required) -> network with its
//     reply in the text; a reply code -> smtp with the full reply; else network "CODE: message", marked
//     afterEndOfData with MAY_BE_DELIVERED appended when the final dot had been written).
//   isTransient(failure): it ended the connection rather than refused what was sent (nodemailer isTransientError).
//   Rejection, TransactionResult: the outcome of one MAIL FROM .. final reply.
//   transactionReplies(recipients, addresses, result): one reply per recipient of the request.
import type { AttemptReply } from '../outcome.ts';
import { replyCode } from './reply.ts';

export type FailureCode =
  | 'ECONNECTION'
  | 'ETIMEDOUT'
  | 'ESOCKET'
  | 'ETLS'
  | 'EPROTOCOL'
  | 'EENVELOPE'
  | 'EMESSAGE'
  | 'EAUTH'
  | 'ESTREAM'
  /**
   * The relay's own (nodemailer says EPROTOCOL): the server greeted with something other than 220, usually a 554 or
   * 421 banner ("too many connections from your IP"), or answered EHLO (before or after STARTTLS) or STARTTLS with 421,
   * or HELO with a 4xx (the same refusal a command or two later). The host will not talk now; it refused no message.
   */
  | 'EGREETING';

export interface SmtpFailure {
  /** Absent for the pool's own "Connection pool was closed" when waiting sends are dropped (as nodemailer's). */
  code?: FailureCode;
  /** With the server's reply appended after ": " when there is one. */
  message: string;
  /** The server's reply (all its lines, joined by "\n"). */
  response?: string;
  /** The reply's code, when it has one. */
  responseCode?: number;
  /** The system error of a socket failure (ECONNREFUSED, EMFILE, ...), when there was one. */
  errno?: string;
  /**
   * The transaction's final dot was written before this failure (connection.ts send): without a reply to it, the
   * server may have taken the message.
   */
  afterEndOfData?: true;
  /**
   * An ETLS under a TLS mode that requires TLS (Required, RequiredVerify, credentials without allowPlaintextAuth): this
   * host does not offer STARTTLS, refused it (or EHLO), failed the handshake or its certificate did not verify. A
   * failure of the host, as EGREETING, not the relay's own problem (failureReply).
   */
  tlsRequired?: true;
}

/** What a reply without a code after the final dot says, so that the attempt log and lastReply warn of a duplicate. */
const MAY_BE_DELIVERED = 'after the end of data: the message may have been delivered';

/**
 * System errors of a connect or a socket that are this host's shortage, not the server's failure: no descriptor, no
 * buffer, no memory, no free local port. The attempt is deferred as local: the destination is not suspended for them.
 */
const LOCAL_ERRNOS: ReadonlySet<string> = new Set(['EMFILE', 'ENFILE', 'ENOBUFS', 'ENOMEM', 'EADDRNOTAVAIL']);

export function smtpFailure(code: FailureCode | undefined, message: string, response?: string): SmtpFailure {
  const f: SmtpFailure = { message: response !== undefined ? `${message}: ${response}` : message };
  if (code !== undefined) f.code = code;
  if (response !== undefined) {
    f.response = response;
    const n = replyCode(response);
    if (n > 0) f.responseCode = n;
  }
  return f;
}

export function failureReply(f: SmtpFailure): AttemptReply {
  // A host that cannot give the TLS its destination requires (not offered, refused, a failed handshake, a certificate
  // that does not verify) is that host's failure, as a refusing greeting below: Postfix's "TLS is required, but was not
  // offered by host ..." and the like are site failures, and the next host is tried. Not local (that stayed on the same
  // host until the queue lifetime ran out), and never an smtp reply (a 5xx to EHLO bounced the mail).
  if (f.tlsRequired === true && !LOCAL_ERRNOS.has(f.errno ?? ''))
    return { kind: 'network', text: `${f.code ?? 'ETLS'}: ${f.message}` };
  // Authentication and TLS problems are ours (or the peer's) to fix: retried, never bounced.
  // So is a body file the relay could not read in full: the server is not at fault, and must not be suspended.
  // And so is a socket that failed for want of this host's resources (a descriptor, a local port).
  if (f.code === 'EAUTH' || f.code === 'ETLS' || f.code === 'ESTREAM' || LOCAL_ERRNOS.has(f.errno ?? ''))
    return { kind: 'local', text: `${f.code ?? 'ESOCKET'}: ${f.message}` };
  // A host that will not talk (a 5xx or 4xx banner) refused no message: like a refused connection, it is this host's
  // failure, so the next address or MX host is tried, the address is suspended for a while (a server that says "too
  // many connections" is not called by every queued message) and, when no host takes the mail, the leg is deferred
  // with the banner in its reply. As Postfix with smtp_skip_5xx_greeting (its default), which makes a 5xx greeting a
  // 4xx; a 'network' reply also counts the destination down (recovery.ts) as a 421 does, so its queue is woken
  // when it answers again. An smtp 5xx here bounced the mail, and an smtp 4xx would count as an answer.
  if (f.code === 'EGREETING') return { kind: 'network', text: `${f.code}: ${f.message}` };
  if (f.responseCode !== undefined && f.responseCode > 0) {
    return { kind: 'smtp', code: f.responseCode, text: f.response ?? f.message };
  }
  const text = f.code !== undefined ? `${f.code}: ${f.message}`.trim() : (f.response ?? f.message);
  // No reply to the final dot (a lost connection, a timeout): the server may be holding the message. Not another
  // host's job in this attempt (it would be a duplicate); retried later, when the first host may say it has it.
  if (f.afterEndOfData === true)
    return { kind: 'network', text: `${text} ${MAY_BE_DELIVERED}`, afterEndOfData: true };
  return { kind: 'network', text };
}

export function isTransient(f: SmtpFailure): boolean {
  return f.responseCode === 421 || f.code === 'ECONNECTION' || f.code === 'ESOCKET' || f.code === 'ETIMEDOUT';
}

/** A recipient the server refused at RCPT TO. */
export interface Rejection {
  recipient: string;
  failure: SmtpFailure;
}

export type TransactionResult =
  /** The message was accepted (response: the final reply) for the accepted recipients. */
  | { ok: true; response: string; accepted: readonly string[]; rejected: readonly Rejection[] }
  /**
   * The transaction failed: every recipient gets the failure's reply, except those in rejected, refused at RCPT TO,
   * which keep their own refusal (all of them when every recipient was refused; the failure of DATA, of the final
   * reply or of the connection after RCPT TO is the accepted recipients' only). Empty when MAIL FROM was refused.
   */
  | { ok: false; failure: SmtpFailure; rejected: readonly Rejection[] };

const NO_REPLY: AttemptReply = { kind: 'local', text: 'no reply for this recipient in the SMTP transaction' };

/**
 * One reply per recipient of the request: recipients[i] was sent as the envelope addresses addresses[i] (the
 * EnvelopeShaper's, usually one; its reply is that of the first).
 */
export function transactionReplies(
  recipients: readonly string[],
  addresses: readonly (readonly string[])[],
  result: TransactionResult,
): Map<string, AttemptReply> {
  const byAddress = new Map<string, AttemptReply>();
  for (const r of result.rejected) byAddress.set(r.recipient, failureReply(r.failure));
  let fallback: AttemptReply;
  if (result.ok) {
    const code = Number(/^(\d{3})/.exec(result.response)?.[1] ?? 250);
    const reply: AttemptReply = { kind: 'smtp', code, text: result.response };
    for (const a of result.accepted) byAddress.set(a, reply);
    fallback = NO_REPLY;
  } else {
    fallback = failureReply(result.failure);
  }
  const out = new Map<string, AttemptReply>();
  recipients.forEach((r, i) => {
    const a = addresses[i]?.[0];
    out.set(r, (a === undefined ? undefined : byAddress.get(a)) ?? fallback);
  });
  return out;
}
