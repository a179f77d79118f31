// HELO/EHLO phase. smtp-server parses and validates the command itself (501 on a bad hostname); this module owns
// what the relay does with the name: it goes into the Received: header, so it is reduced to characters that
// cannot inject a header or break the field (no CR, LF, control characters, parentheses or semicolons).
//
// The header is sent as UTF-8 (receivedHeaderBytes). Every part of it the client controls is ASCII except the
// recipient in `for`, which keeps its Unicode letters only in an SMTPUTF8 message (RFC 6532) and never keeps a control
// character, a line or paragraph separator, any other white space, a bidirectional-text control or a lone surrogate.
// So its bytes hold no CR, LF, NUL or other control byte but the CRLF-tab folds written here, whatever the client
// sent.
import { isNonAscii } from '../../routing/address.ts';
import { traceComment } from './trace.ts';

const MAX_NAME = 255;

/** A HELO name safe to put inside a Received: header; "unknown" when nothing usable is left. */
export function sanitizeHelo(name: string | false | undefined): string {
  if (typeof name !== 'string') return 'unknown';
  const cleaned = name.replace(/[^A-Za-z0-9.\-_:[\]]/g, '').slice(0, MAX_NAME);
  return cleaned === '' ? 'unknown' : cleaned;
}

export interface ReceivedInfo {
  helo: string | false | undefined;
  clientAddress: string;
  /** Reverse-resolved name, or '' */
  clientHostname: string;
  byHostname: string;
  /** The relay's trace (trace.ts): `(mailroute <clusterId>)` after `by <byHostname>`; undefined: `(mailroute)`. */
  clusterId?: string;
  /** RFC 3848 protocol: ESMTP, ESMTPS, ... */
  protocol: string;
  id: string;
  /** Only with exactly one recipient (as Postfix does), never a list. */
  forRecipient?: string;
  /** The message came with SMTPUTF8: a non-ASCII recipient may appear in `for` (RFC 6532); else it is left out. */
  smtputf8?: boolean;
  tls?: { protocol?: string; cipher?: string };
  date: Date;
}

/** RFC 3848: SMTP for HELO, ESMTP for EHLO, +S with TLS, +A with authentication. */
export function protocolName(
  opening: string | false | undefined,
  secure: boolean,
  authenticated: boolean,
): string {
  const base = opening === 'HELO' ? 'SMTP' : 'ESMTP';
  if (base === 'SMTP' && !secure && !authenticated) return 'SMTP';
  return `ESMTP${secure ? 'S' : ''}${authenticated ? 'A' : ''}`;
}

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const pad = (n: number): string => String(n).padStart(2, '0');

/** RFC 5322 date-time in UTC: "Sat, 28 Nov 2026 16:05:38 +0000". */
export function rfc5322Date(d: Date): string {
  return `${DAYS[d.getUTCDay()]}, ${d.getUTCDate()} ${MONTHS[d.getUTCMonth()]} ${d.getUTCFullYear()} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())} +0000`;
}

const safeToken = (s: string): string => s.replace(/[^A-Za-z0-9.\-_:]/g, '');

/**
 * What the `for <...>` clause never keeps of an address: control characters (C0, DEL, C1), white space of any kind
 * (space, tab, CR, LF, U+0085, U+2028, U+2029, no-break and other spaces), bidirectional-text controls, lone
 * surrogates (no UTF-8 form), and `<>;()`, which would end the clause or the field's value.
 */
const NOT_IN_FOR = /[\p{Cc}\p{Cs}\p{White_Space}\p{Bidi_Control}<>;()]/gu;

/**
 * The recipient as the `for` clause shows it: what is left after NOT_IN_FOR; '' (no clause) when nothing is, or when
 * it is not ASCII and the message is not SMTPUTF8. Pure.
 */
export function forAddress(recipient: string, smtputf8: boolean): string {
  const s = recipient.replace(NOT_IN_FOR, '');
  return !smtputf8 && isNonAscii(s) ? '' : s;
}

/**
 * The one Received: header the relay prepends (RFC 5321 §4.4), folded, CRLF-terminated, no client byte raw. Sent as
 * UTF-8: ASCII unless an SMTPUTF8 recipient with Unicode letters is named in `for`.
 */
export function receivedHeader(info: ReceivedInfo): string {
  const ip = safeToken(info.clientAddress);
  const rdns = safeToken(info.clientHostname);
  const from = `from ${sanitizeHelo(info.helo)} (${rdns !== '' && rdns !== ip ? `${rdns} ` : ''}[${ip}])`;
  const tls =
    info.tls?.protocol !== undefined || info.tls?.cipher !== undefined
      ? `\r\n\t(using ${safeToken(info.tls.protocol ?? 'TLS')} with cipher ${safeToken(info.tls.cipher ?? 'unknown')})`
      : '';
  const comment = info.clusterId !== undefined ? traceComment(safeToken(info.clusterId)) : '(mailroute)';
  const by = `by ${safeToken(info.byHostname)} ${comment} with ${safeToken(info.protocol)} id ${safeToken(info.id)}`;
  const to = info.forRecipient !== undefined ? forAddress(info.forRecipient, info.smtputf8 === true) : '';
  const rcpt = to !== '' ? `\r\n\tfor <${to}>` : '';
  return `Received: ${from}${tls}\r\n\t${by}${rcpt};\r\n\t${rfc5322Date(info.date)}\r\n`;
}

/** receivedHeader() as the bytes the relay prepends: UTF-8, never latin1, which keeps only each character's low byte. */
export function receivedHeaderBytes(info: ReceivedInfo): Buffer {
  return Buffer.from(receivedHeader(info), 'utf8');
}
