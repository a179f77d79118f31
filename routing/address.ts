// Envelope recipient parsing for routing. Safe for any string: an address either parses into (local, domain) or
// is refused. The domain is the part after the one '@' that ends the local part, so `user%other.com@example.com`
// is a recipient at example.com (the % is part of the local part; no percent hack), `"a@b"@example.com` is a
// quoted local part at example.com, and source routes (`@a,@b:user@c`) do not parse.
//
// Domains are A-labels throughout (IDNA, RFC 5890): an internationalised domain in Unicode (U-labels, sent with
// SMTPUTF8) becomes its punycode form (xn--...) here, and an ASCII domain, A-labels included, is only lowercased.
// domainToASCII (node:url, the WHATWG/UTS #46 mapping) is pure: no I/O.
import { domainToASCII } from 'node:url';

export type ParsedAddress =
  | {
      ok: true;
      /** As given (quotes kept unless the quoted content is a plain dot-atom). */
      local: string;
      /** Lowercase. */
      domain: string;
      /** local@domain with the domain lowercased: the envelope recipient legs carry. */
      address: string;
      /** Lowercased and in Unicode NFC (cacheSpelling): the lookup key for accounts and TestRecipients. */
      key: string;
    }
  | { ok: false; reason: string };

// RFC 5322 atext, plus any non-ASCII character (SMTPUTF8, RFC 6531). No `u` flag: non-ASCII is matched per UTF-16
// code unit, which is all these checks need, and is faster on the RCPT hot path.
const DOT_ATOM =
  /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~\u0080-\uFFFF-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~\u0080-\uFFFF-]+)*$/;
// qtext or quoted-pair (RFC 5321 §4.1.2), plus non-ASCII.
const QUOTED = /^"([\x20\x21\x23-\x5B\x5D-\x7E\u0080-\uFFFF]|\\[\x20-\x7E])*"$/;
const DOMAIN_NAME =
  /^[A-Za-z0-9\u0080-\uFFFF]([-A-Za-z0-9\u0080-\uFFFF]{0,61}[A-Za-z0-9\u0080-\uFFFF])?(\.[A-Za-z0-9\u0080-\uFFFF]([-A-Za-z0-9\u0080-\uFFFF]{0,61}[A-Za-z0-9\u0080-\uFFFF])?)*$/;
const ADDRESS_LITERAL = /^\[[A-Za-z0-9:.-]+\]$/;

const MAX_ADDRESS_LENGTH = 254;
const MAX_LOCAL_LENGTH = 64;

function fail(reason: string): ParsedAddress {
  return { ok: false, reason };
}

export function parseAddress(input: string): ParsedAddress {
  if (typeof input !== 'string') return fail('not a string');
  let s = input;
  if (s.startsWith('<') && s.endsWith('>')) s = s.slice(1, -1);
  if (s.length === 0) return fail('empty address');
  if (s.length > MAX_ADDRESS_LENGTH) return fail(`longer than ${MAX_ADDRESS_LENGTH} characters`);
  if (s.startsWith('@')) return fail('source routes are not accepted');
  let local: string;
  let rest: string;
  if (s.startsWith('"')) {
    let i = 1;
    for (; i < s.length; i++) {
      const c = s[i];
      if (c === '\\') i++;
      else if (c === '"') break;
    }
    if (i >= s.length) return fail('unterminated quoted local part');
    local = s.slice(0, i + 1);
    if (s[i + 1] !== '@') return fail('quoted local part must be followed by @');
    rest = s.slice(i + 2);
    if (!QUOTED.test(local)) return fail('invalid quoted local part');
    const inner = local.slice(1, -1);
    if (DOT_ATOM.test(inner)) local = inner; // "alice"@x is alice@x
  } else {
    const at = s.indexOf('@');
    if (at < 0) return fail('no @ in address');
    local = s.slice(0, at);
    rest = s.slice(at + 1);
    if (!DOT_ATOM.test(local)) return fail('invalid local part');
  }
  // A UTF-16 code unit is at most 3 UTF-8 octets: only long local parts need counting.
  if (local.length * 3 > MAX_LOCAL_LENGTH && utf8Length(local) > MAX_LOCAL_LENGTH) {
    return fail(`local part longer than ${MAX_LOCAL_LENGTH} octets`);
  }
  if (rest.length === 0) return fail('empty domain');
  if (rest.length > 253 || !(DOMAIN_NAME.test(rest) || ADDRESS_LITERAL.test(rest)))
    return fail('invalid domain');
  const domain = asciiDomain(rest);
  if (domain === undefined) return fail('invalid internationalised domain name');
  if (domain.length > 253) return fail('domain longer than 253 characters in A-label form');
  const address = `${local}@${domain}`;
  return { ok: true, local, domain, address, key: cacheSpelling(address) };
}

/** A local part split at its first recipient delimiter: `alice+news` is `alice`, `+`, `news`. */
export interface Extension {
  base: string;
  delimiter: string;
  extension: string;
}

/**
 * Subaddressing (RFC 5233; Postfix's `recipient_delimiter`): the local part cut at the first of its characters that
 * is one of `delimiters`. Undefined without a delimiter set, without a delimiter in the local part, when the local part
 * starts with one (nothing would be left to look up), and for a quoted local part (a delimiter inside quotes is text).
 */
export function splitExtension(local: string, delimiters: string): Extension | undefined {
  if (delimiters === '' || local.startsWith('"') || delimiters.includes(local[0] ?? '')) return undefined;
  for (let i = 1; i < local.length; i++) {
    const c = local[i]!;
    if (delimiters.includes(c))
      return { base: local.slice(0, i), delimiter: c, extension: local.slice(i + 1) };
  }
  return undefined;
}

/**
 * `to` with the extension `ext` of the recipient it was looked up for (Postfix's `propagate_unmatched_extensions`):
 * a TestRecipient `alice` forwarded to `alice@new.example` forwards `alice+news` to `alice+news@new.example`, so that
 * the mailbox's own rules for `+news` keep working. `to` is returned unchanged when its local part already has an
 * extension, is quoted, or would be longer than 64 octets with it.
 */
export function withExtension(to: string, ext: Extension, delimiters: string): string {
  const at = to.lastIndexOf('@');
  if (at <= 0) return to;
  const local = to.slice(0, at);
  if (local.startsWith('"') || splitExtension(local, delimiters) !== undefined) return to;
  const extended = `${local}${ext.delimiter}${ext.extension}`;
  // over 64 octets the address would not parse (RFC 5321 §4.5.3.1.1): the mailbox without the extension instead
  return utf8Length(extended) > MAX_LOCAL_LENGTH ? to : `${extended}${to.slice(at)}`;
}

// eslint-disable-next-line no-control-regex
const NON_ASCII = /[^\x00-\x7f]/;

/** True when a string has a character outside US-ASCII (an RFC 6531 address needs SMTPUTF8). */
export function isNonAscii(s: string): boolean {
  return NON_ASCII.test(s);
}

/**
 * The A-label (ASCII) form of a domain, lowercased: an ASCII domain (A-labels included: `xn--` is never decoded) is
 * only lowercased; a domain with U-labels is converted with IDNA (`bücher.example` -> `xn--bcher-kva.example`).
 * undefined when a Unicode domain is not a valid IDN.
 */
export function asciiDomain(domain: string): string | undefined {
  if (!NON_ASCII.test(domain)) return domain.toLowerCase();
  const ascii = domainToASCII(domain);
  return ascii === '' || NON_ASCII.test(ascii) ? undefined : ascii;
}

/**
 * The one spelling of an address that lookups use: lowercase, and in Unicode NFC. `josé@` typed as é (U+00E9) or as
 * e + U+0301 (NFD, as some macOS input produces) is one mailbox to every server a migration targets: one accounts
 * entry, one TestRecipient (routing/compile.ts, routing/resolve.ts buildIndex and parseAddress().key) and one cache
 * entry of the verification callouts (relay/inbound/verify.ts). Only the key: legs and callouts carry the address as
 * written. The domain is an A-label by then (ASCII: NFC leaves it as it is), so this is the local part's normalization.
 * An ASCII address, nearly every one, is not normalized: NFC leaves it as it is.
 */
export function cacheSpelling(address: string): string {
  const lower = address.toLowerCase();
  return isNonAscii(lower) ? lower.normalize('NFC') : lower;
}

const encoder = new TextEncoder();
function utf8Length(s: string): number {
  return encoder.encode(s).length;
}

/**
 * The domain of an envelope address, lowercased: what follows the last "@" ('' without one). A percent hack or a bang
 * path in the local part never decides the domain. No validation: parseAddress() does that.
 */
export function domainOf(address: string): string {
  const at = address.lastIndexOf('@');
  return at < 0 ? '' : address.slice(at + 1).toLowerCase();
}

// Characters no envelope sender may carry, whatever it came from (an SMTP client, a spool file): C0 controls (a CR or
// LF would end the MAIL command downstream and start another one), DEL, C1 controls, zero-width and BOM characters,
// whitespace and angle brackets. smtp-server refuses the same set at MAIL FROM.
// eslint-disable-next-line no-control-regex
const UNSAFE_SENDER_CHAR = /[\x00-\x20\x7f-\x9f<>\u200b\u2060\ufeff]/;
/** RFC 5321 §4.5.3.1.4: a command line is at most 512 octets, so no path can be longer. */
const MAX_SENDER_LENGTH = 512;

/**
 * Why an envelope sender (MAIL FROM, '' for <>) cannot be relayed, or undefined when it can. Looser than
 * parseAddress() on purpose: senders are never routed by, and real senders use local parts RFC 5322 does not allow,
 * so only what would break the SMTP dialogue or the DSN is refused.
 */
export function senderProblem(address: string): string | undefined {
  if (address === '') return undefined;
  if (address.length > MAX_SENDER_LENGTH) return `longer than ${MAX_SENDER_LENGTH} characters`;
  if (UNSAFE_SENDER_CHAR.test(address))
    return 'contains a control character, white space or an angle bracket';
  const at = address.lastIndexOf('@');
  if (at <= 0 || at === address.length - 1) return 'not local@domain';
  return undefined;
}
