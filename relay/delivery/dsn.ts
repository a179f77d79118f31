// Pure: builds an RFC 3464 delivery status notification (multipart/report; report-type=delivery-status).
//
// Exports: DsnRecipient, DsnInput, buildDsn(input): Buffer, rfc5322Date(date).
// The DSN goes from the null sender <> (the engine spools it with mailFrom ''), with From: MAILER-DAEMON@hostname and
// Auto-Submitted: auto-replied (RFC 3834), so it never causes another DSN. Parts:
//   1. text/plain: a human explanation;
//   2. message/delivery-status: per-message fields, then one block per reported recipient (Final-Recipient, Action
//      failed or delayed, Status, Remote-MTA, Diagnostic-Code, Last-Attempt-Date, Will-Retry-Until when delayed);
//   3. text/rfc822-headers: the original message's headers (never the body).
// Every line ends in CRLF.
import { oneLine } from '../../lib/one-line.ts';

export interface DsnRecipient {
  /** The envelope recipient that failed (after rewriting). */
  finalRecipient: string;
  /** The recipient as given in RCPT TO, when it differs. */
  originalRecipient?: string;
  /** RFC 3463, e.g. 5.1.1; 4.4.7 for an expired message. */
  status: string;
  /** The server's last reply, or what went wrong. */
  diagnostic: string;
  /** Host name (or address) of the server that answered, when one did; no port (RFC 3464 §2.3.5, remoteMtaName). */
  remoteMta?: string;
  lastAttemptAt?: Date;
  /** The failure was an expiry in the queue. */
  expired: boolean;
  /** failed (default): given up; delayed: still being retried (RFC 3464 §2.3.3), status 4.x.x. */
  action?: 'failed' | 'delayed';
  /** Delayed recipients: until when the relay keeps trying (Will-Retry-Until). */
  willRetryUntil?: Date;
}

export interface DsnInput {
  hostname: string;
  /** The envelope sender of the original message; the DSN's To:. */
  sender: string;
  /** Queue id of the original message. */
  queueId: string;
  arrivalDate: Date;
  now: Date;
  /** MIME boundary; injected so tests are deterministic. Must not occur in the content. */
  boundary: string;
  recipients: DsnRecipient[];
  /** Header block of the original message (up to the empty line). */
  originalHeaders: Buffer;
}

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** RFC 5322 date-time in UTC: "Sat, 28 Nov 2026 16:09:33 +0000". */
export function rfc5322Date(d: Date): string {
  const p = (n: number): string => String(n).padStart(2, '0');
  return (
    `${DAYS[d.getUTCDay()]}, ${d.getUTCDate()} ${MONTHS[d.getUTCMonth()]} ${d.getUTCFullYear()} ` +
    `${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} +0000`
  );
}

/** "host:port" as the engine records a leg's last server (an IPv6 address in brackets). */
export function hostPortLabel(host: string, port: number): string {
  return `${host.includes(':') ? `[${host}]` : host}:${port}`;
}

/** The MTA name of a "host:port" label: the host alone (Remote-MTA is `dns; <name>`, RFC 3464 §2.3.5). */
export function remoteMtaName(label: string): string {
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(label);
  if (bracketed?.[1]) return bracketed[1];
  const m = /^([^:]+):\d+$/.exec(label);
  return m?.[1] ?? label;
}

/** Address types: rfc822 for ASCII, utf-8 (RFC 6533) otherwise. */
function addressField(address: string): string {
  return /^[\x20-\x7e]*$/.test(address) ? `rfc822; ${address}` : `utf-8; ${address}`;
}

/** Lines with bare LF become CRLF; the result ends in CRLF. */
function crlfLines(b: Buffer): Buffer {
  const s = b.toString('latin1').replace(/\r?\n/g, '\r\n');
  return Buffer.from(s.endsWith('\r\n') ? s : `${s}\r\n`, 'latin1');
}

export function buildDsn(input: DsnInput): Buffer {
  const { hostname, boundary } = input;
  const expiredOnly = input.recipients.every((r) => r.expired);
  const delayedOnly = input.recipients.every((r) => r.action === 'delayed');
  const subject = delayedOnly
    ? 'Delayed Mail (still being retried)'
    : expiredOnly
      ? 'Undelivered Mail Returned to Sender (expired in queue)'
      : 'Undelivered Mail Returned to Sender';
  const head = [
    `From: Mail Delivery System <MAILER-DAEMON@${hostname}>`,
    `To: <${input.sender}>`,
    `Subject: ${subject}`,
    `Date: ${rfc5322Date(input.now)}`,
    `Message-ID: <${input.queueId}.dsn.${input.now.getTime().toString(36)}@${hostname}>`,
    'Auto-Submitted: auto-replied',
    'MIME-Version: 1.0',
    `Content-Type: multipart/report; report-type=delivery-status;`,
    `\tboundary="${boundary}"`,
    'Content-Transfer-Encoding: 8bit',
    '',
    'This is a MIME-encapsulated message.',
    '',
  ];
  const human = [
    `--${boundary}`,
    'Content-Type: text/plain; charset=utf-8',
    'Content-Transfer-Encoding: 8bit',
    '',
    `This is the mail system at host ${hostname}.`,
    '',
    delayedOnly
      ? 'Your message could not be delivered yet to one or more recipients. This is a warning only: the mail system' +
        ' keeps trying, and you need not send the message again. Its headers are attached below.'
      : 'Your message could not be delivered to one or more recipients. It is attached below (headers only).',
    '',
    ...input.recipients.map(
      (r) =>
        `<${r.finalRecipient}>: ${r.action === 'delayed' ? 'delayed, still trying' + (r.willRetryUntil ? ` until ${rfc5322Date(r.willRetryUntil)}` : '') + '; ' : ''}` +
        `${r.expired ? 'delivery time expired; ' : ''}${oneLine(r.diagnostic)}` +
        (r.remoteMta ? ` (server ${r.remoteMta})` : ''),
    ),
    '',
  ];
  const status = [
    `--${boundary}`,
    'Content-Type: message/delivery-status',
    '',
    `Reporting-MTA: dns; ${hostname}`,
    `X-Mailroute-Queue-ID: ${input.queueId}`,
    `Arrival-Date: ${rfc5322Date(input.arrivalDate)}`,
    '',
  ];
  for (const r of input.recipients) {
    status.push(`Final-Recipient: ${addressField(r.finalRecipient)}`);
    if (r.originalRecipient && r.originalRecipient !== r.finalRecipient) {
      status.push(`Original-Recipient: ${addressField(r.originalRecipient)}`);
    }
    status.push(`Action: ${r.action ?? 'failed'}`, `Status: ${r.status}`);
    if (r.remoteMta) status.push(`Remote-MTA: dns; ${oneLine(r.remoteMta)}`);
    const diag = oneLine(r.diagnostic);
    if (diag) status.push(`Diagnostic-Code: ${/^\d{3}\b/.test(diag) ? 'smtp' : 'x-mailroute'}; ${diag}`);
    if (r.lastAttemptAt) status.push(`Last-Attempt-Date: ${rfc5322Date(r.lastAttemptAt)}`);
    if (r.action === 'delayed' && r.willRetryUntil)
      status.push(`Will-Retry-Until: ${rfc5322Date(r.willRetryUntil)}`);
    status.push('');
  }
  const headersPart = [
    `--${boundary}`,
    'Content-Type: text/rfc822-headers',
    'Content-Transfer-Encoding: 8bit',
    '',
  ];
  const end = ['', `--${boundary}--`, ''];
  return Buffer.concat([
    Buffer.from([...head, ...human, ...status, ...headersPart].join('\r\n') + '\r\n', 'utf8'),
    crlfLines(input.originalHeaders),
    Buffer.from(end.join('\r\n'), 'utf8'),
  ]);
}
