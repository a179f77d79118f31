// Pure: builds an RFC 3464 delivery status notification (multipart/report; report-type=delivery-status).
//
// Exports: DsnRecipient, DsnInput, buildDsn(input): Buffer, rfc5322Date(date), foldLine(line) (RFC 5322 folding).
// The DSN goes from the null sender <> (the engine spools it with mailFrom ''), with From: MAILER-DAEMON@hostname and
// Auto-Submitted: auto-replied (RFC 3834), so it never causes another DSN. Parts:
//   1. text/plain: a human explanation;
//   2. message/delivery-status: per-message fields, then one block per reported recipient (Final-Recipient, Action
//      failed or delayed, Status, Remote-MTA, Diagnostic-Code, Last-Attempt-Date, Will-Retry-Until when delayed);
//   3. text/rfc822-headers: the original message's headers (never the body); message/global-headers (RFC 6533 §6.1)
//      when they hold 8-bit bytes (UTF-8 header fields, RFC 6532).
// Every line ends in CRLF, and none is over 998 octets (RFC 5322 §2.1.1): a strict receiver refuses a longer one, and
// a refused DSN (its sender is <>) is dropped, so its sender would never learn of the failure. Fields are folded as
// header fields are (foldLine; RFC 3464 §2.1.1 fields follow RFC 822 header syntax), to 78 octets where a space allows.
//
// Non-ASCII (SMTPUTF8) addresses: message/delivery-status stays, 7-bit as RFC 3464 requires, and a non-ASCII address
// goes in it as the RFC 6533 §3 `utf-8` type in its 7-bit form (utf8AddrXtext: `j\x{F6}rg@example.com`); every other
// non-ASCII character of a field (a server's reply echoing such an address) is written \x{HEX} too. The other choice,
// message/global-delivery-status with raw UTF-8, makes the whole DSN an internationalized message: it would have to go
// with SMTPUTF8, and a sender's server without SMTPUTF8 (most senders' addresses are ASCII, their servers need not
// offer it) could not take it: the DSN would be dropped. This form reaches any server that offers 8BITMIME (the
// text/plain part is UTF-8; the returned headers are message/global-headers when 8-bit), and any server at all when
// nothing is 8-bit, which is more likely to reach the sender.
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

/** RFC 5322 §2.1.1: a line MUST be at most 998 octets (CRLF excluded) and SHOULD be at most 78. */
const MAX_LINE = 998;
const SOFT_LINE = 78;

/**
 * One line (a header field or a line of text) as lines of at most `soft` octets where whitespace allows, never over
 * 998. It breaks before a space or tab, which starts the next line: RFC 5322 §2.2.3 folding, so removing the CRLFs
 * gives the line back. A run without whitespace longer than that stays whole on its own line up to 998 octets; past
 * 998 it is cut, its rest going on with a line that starts with a space (the one change unfolding shows: a space in a
 * run no valid field has). Octets are counted in UTF-8 (latin1: one per character, for a byte string); a character is
 * never cut. Trailing whitespace of a line that needs folding is dropped.
 */
export function foldLine(line: string, opts: { soft?: number; latin1?: boolean } = {}): string[] {
  const soft = Math.min(opts.soft ?? SOFT_LINE, MAX_LINE);
  const size = (s: string): number => (opts.latin1 === true ? s.length : Buffer.byteLength(s, 'utf8'));
  if (size(line) <= soft) return [line];
  // the first word (with any whitespace before it), then each run of whitespace with the word after it
  const tokens = line.replace(/[ \t]+$/, '').match(/^[ \t]*[^ \t]*|[ \t]+[^ \t]*/g) ?? [];
  const out: string[] = [];
  let cur = '';
  for (const t of tokens) {
    if (cur !== '' && size(cur) + size(t) > soft) {
      out.push(cur);
      cur = t;
    } else cur += t;
    while (size(cur) > MAX_LINE) {
      let head = '';
      for (const ch of cur) {
        if (size(head) + size(ch) > MAX_LINE) break;
        head += ch;
      }
      out.push(head);
      cur = ` ${cur.slice(head.length)}`;
    }
  }
  out.push(cur);
  return out;
}

/** A header field (or a delivery-status field) folded: its lines joined with CRLF. */
const field = (name: string, value: string): string => foldLine(`${name}: ${value}`).join('\r\n');

/** Every non-ASCII character as \x{HEX} (RFC 6533 §3 EmbeddedUnicodeChar): message/delivery-status is 7-bit. */
function ascii(s: string): string {
  return s.replace(
    /[\u{80}-\u{10FFFF}]/gu,
    (ch) => `\\x{${(ch.codePointAt(0) ?? 0).toString(16).toUpperCase()}}`,
  );
}

/**
 * RFC 6533 §3 utf-8-addr-xtext, the 7-bit form of a `utf-8` address for message/delivery-status: every character but
 * QCHAR (printable ASCII except space, '\\', '+', '=') as \x{HEXPOINT}, upper-case hex of its code point, two digits
 * at least ("jörg@example.com" -> "j\x{F6}rg@example.com").
 */
function utf8AddrXtext(address: string): string {
  return address.replace(/[^\x21-\x2a\x2c-\x3c\x3e-\x5b\x5d-\x7e]/gu, (ch) => {
    const hex = (ch.codePointAt(0) ?? 0).toString(16).toUpperCase();
    return `\\x{${hex.padStart(2, '0')}}`;
  });
}

/** Address types: rfc822 for ASCII, utf-8 (RFC 6533) in its 7-bit form otherwise. */
function addressField(address: string): string {
  return /^[\x20-\x7e]*$/.test(address) ? `rfc822; ${address}` : `utf-8; ${utf8AddrXtext(address)}`;
}

/** Lines with bare LF become CRLF, a line over 998 octets is folded; the result ends in CRLF. */
function crlfLines(b: Buffer): Buffer {
  const lines = b.toString('latin1').replace(/\r?\n/g, '\r\n').replace(/\r\n$/, '').split('\r\n');
  const s = lines.flatMap((l) => foldLine(l, { soft: MAX_LINE, latin1: true })).join('\r\n');
  return Buffer.from(`${s}\r\n`, 'latin1');
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
    ...[
      `This is the mail system at host ${hostname}.`,
      '',
      ...(delayedOnly
        ? [
            'Your message could not be delivered yet to one or more recipients.',
            'This is a warning only: the mail system keeps trying, and you need not send',
            'the message again. Its headers are attached below.',
          ]
        : [
            'Your message could not be delivered to one or more recipients. It is',
            'attached below (headers only).',
          ]),
      '',
      ...input.recipients.map(
        (r) =>
          `<${r.finalRecipient}>: ${r.action === 'delayed' ? 'delayed, still trying' + (r.willRetryUntil ? ` until ${rfc5322Date(r.willRetryUntil)}` : '') + '; ' : ''}` +
          `${r.expired ? 'delivery time expired; ' : ''}${oneLine(r.diagnostic)}` +
          (r.remoteMta ? ` (server ${r.remoteMta})` : ''),
      ),
      '',
    ].flatMap((l) => foldLine(l)),
  ];
  // 7-bit (ascii, addressField) and folded (field): see the top of the file
  const status = [
    `--${boundary}`,
    'Content-Type: message/delivery-status',
    '',
    field('Reporting-MTA', `dns; ${ascii(hostname)}`),
    field('X-Mailroute-Queue-ID', ascii(input.queueId)),
    `Arrival-Date: ${rfc5322Date(input.arrivalDate)}`,
    '',
  ];
  for (const r of input.recipients) {
    status.push(field('Final-Recipient', addressField(r.finalRecipient)));
    if (r.originalRecipient && r.originalRecipient !== r.finalRecipient) {
      status.push(field('Original-Recipient', addressField(r.originalRecipient)));
    }
    status.push(`Action: ${r.action ?? 'failed'}`, field('Status', ascii(oneLine(r.status))));
    if (r.remoteMta) status.push(field('Remote-MTA', `dns; ${ascii(oneLine(r.remoteMta))}`));
    const diag = ascii(oneLine(r.diagnostic));
    if (diag)
      status.push(field('Diagnostic-Code', `${/^\d{3}\b/.test(diag) ? 'smtp' : 'x-mailroute'}; ${diag}`));
    if (r.lastAttemptAt) status.push(`Last-Attempt-Date: ${rfc5322Date(r.lastAttemptAt)}`);
    if (r.action === 'delayed' && r.willRetryUntil)
      status.push(`Will-Retry-Until: ${rfc5322Date(r.willRetryUntil)}`);
    status.push('');
  }
  // 8-bit header fields (RFC 6532) are message/global-headers (RFC 6533 §6.1), not text/rfc822-headers (7-bit)
  const eightBit = input.originalHeaders.some((b) => b > 0x7f);
  const headersPart = [
    `--${boundary}`,
    `Content-Type: ${eightBit ? 'message/global-headers' : 'text/rfc822-headers'}`,
    `Content-Transfer-Encoding: ${eightBit ? '8bit' : '7bit'}`,
    '',
  ];
  const end = ['', `--${boundary}--`, ''];
  return Buffer.concat([
    Buffer.from([...head, ...human, ...status, ...headersPart].join('\r\n') + '\r\n', 'utf8'),
    crlfLines(input.originalHeaders),
    Buffer.from(end.join('\r\n'), 'utf8'),
  ]);
}
