// HELO/EHLO phase. smtp-server parses and validates the command itself (501 on a bad hostname); this module owns
// what the relay does with the name: it goes into the Received: header, so it is reduced to characters that
// cannot inject a header or break the field (no CR, LF, control characters, parentheses or semicolons).
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
const safeAddress = (s: string): string =>
  s.replace(/[^\x21-\x7e\u0080-\uffff]/g, '').replace(/[<>;()]/g, '');

/** The one Received: header the relay prepends (RFC 5321 §4.4), folded, CRLF-terminated, no client byte raw. */
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
  const rcpt = info.forRecipient !== undefined ? `\r\n\tfor <${safeAddress(info.forRecipient)}>` : '';
  return `Received: ${from}${tls}\r\n\t${by}${rcpt};\r\n\t${rfc5322Date(info.date)}\r\n`;
}
