// The command lines the client writes, built as nodemailer's client builds them (smtp-connection/index.js
// _setEnvelope, login): MAIL FROM with its parameters, RCPT TO, the AUTH exchanges; and the envelope checks it makes
// before writing any of them. A caller's own ESMTP parameters (the drain's hand-off, relay/inbound/handoff.ts) follow
// the client's on MAIL FROM and RCPT TO, each checked first as one esmtp-param (RFC 5321 §4.1.2). Pure.
//
// Exports:
//   envelopeProblem(from, to): why nodemailer would refuse this envelope (EENVELOPE), or undefined.
//   needsSmtpUtf8(from, to): an address is not ASCII (MAIL FROM gets SMTPUTF8 when the server offers it).
//   isAsciiAddress(address), smtpUtf8Required(address, host): a non-ASCII address is not sent to a server that does
//     not offer SMTPUTF8; smtpUtf8Required is the permanent refusal it gets instead (connection.ts send).
//   esmtpParamsProblem(params, own?): why these extra parameters cannot be written (naming the bad one), or undefined.
//   MAIL_OWN_PARAMS: the parameters mailFromLine writes itself, which a caller's may not repeat.
//   mailFromLine(from, params, extra?), rcptLine(to, extra?).
//   authPlainLine(user, pass), base64(text), cramMd5Answer(challengeReply, user, pass).
import { createHmac } from 'node:crypto';

/** CR, LF or angle brackets would end or break the command line (nodemailer refuses them). */
const BREAKS_LINE = /[\r\n<>]/;
const NON_ASCII = /[\x80-\uFFFF]/;

export function envelopeProblem(from: string, to: readonly string[]): string | undefined {
  if (to.length === 0) return 'No recipients defined';
  if (from !== '' && BREAKS_LINE.test(from)) return `Invalid sender ${JSON.stringify(from)}`;
  for (const r of to) if (r === '' || BREAKS_LINE.test(r)) return `Invalid recipient ${JSON.stringify(r)}`;
  return undefined;
}

export function needsSmtpUtf8(from: string, to: readonly string[]): boolean {
  return NON_ASCII.test(from) || to.some((r) => NON_ASCII.test(r));
}

export function isAsciiAddress(address: string): boolean {
  return !NON_ASCII.test(address);
}

/**
 * RFC 6531 §3.2: a non-ASCII address goes only into a transaction whose MAIL FROM carries SMTPUTF8, so never to a server
 * that does not offer it. Written raw, as nodemailer writes it, the server may refuse it, store the mail under a mangled
 * mailbox name, or take it for another mailbox. The mail is refused for that address instead, permanently, as Postfix's
 * client does ("SMTPUTF8 is required, but was not offered by host"), with RFC 6531 §3.6's reply (553 5.6.7). Only the
 * envelope counts: a UTF-8 header with ASCII addresses still goes (Postfix bounces that too when the client asked for
 * SMTPUTF8; servers without it take such headers in practice, and bouncing them would lose mail that flows today).
 */
export function smtpUtf8Required(address: string, host: string): string {
  return `553 5.6.7 SMTPUTF8 is required for <${address}>, but was not offered by host ${host}`;
}

/**
 * esmtp-param = esmtp-keyword ["=" esmtp-value]; esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-");
 * esmtp-value = 1*(%d33-60 / %d62-126), here without "<" and ">" too (they end or start an address for careless
 * parsers), and ASCII only (UTF-8 values need SMTPUTF8, RFC 6531, which the client cannot promise).
 */
const ESMTP_PARAM = /^([A-Za-z0-9][A-Za-z0-9-]*)(?:=[\x21-\x3b\x3f-\x7e]+)?$/;

/** What mailFromLine adds itself (from the envelope and the server's extensions). */
export const MAIL_OWN_PARAMS: readonly string[] = ['SIZE', 'SMTPUTF8', 'BODY'];

/**
 * Why a caller's parameters cannot go on a command line, or undefined: one that is not a single esmtp-param (a space,
 * CR, LF, "<", ">", a control or non-ASCII character, an empty value), a keyword given twice, or one of own (the
 * client's own on that command). Keywords compare without case (RFC 5321 §2.4).
 */
export function esmtpParamsProblem(
  params: readonly string[],
  own: readonly string[] = [],
): string | undefined {
  const seen = new Set<string>();
  for (const p of params) {
    const keyword = ESMTP_PARAM.exec(p)?.[1]?.toUpperCase();
    if (keyword === undefined) return `Invalid ESMTP parameter ${JSON.stringify(p)}`;
    if (own.includes(keyword)) return `ESMTP parameter ${JSON.stringify(p)}: ${keyword} is the client's own`;
    if (seen.has(keyword)) return `ESMTP parameter ${JSON.stringify(p)}: ${keyword} given twice`;
    seen.add(keyword);
  }
  return undefined;
}

export interface MailParams {
  /** The envelope needs SMTPUTF8 and the server offers it. */
  smtputf8: boolean;
  /** BODY=8BITMIME: the message was received with it and the server offers 8BITMIME (RFC 6152). */
  body8bit?: boolean;
  /** SIZE= to announce: the server offers SIZE and the size is known (> 0). */
  size?: number;
}

/** extra: the caller's parameters, after the client's (checked with esmtpParamsProblem, own MAIL_OWN_PARAMS). */
export function mailFromLine(from: string, params: MailParams, extra?: readonly string[]): string {
  let line = `MAIL FROM:<${from}>`;
  if (params.smtputf8) line += ' SMTPUTF8';
  if (params.body8bit === true) line += ' BODY=8BITMIME';
  if (params.size !== undefined && params.size > 0) line += ` SIZE=${params.size}`;
  return extra === undefined ? line : withExtra(line, extra);
}

/** extra: the caller's parameters for this recipient (checked with esmtpParamsProblem). */
export function rcptLine(to: string, extra?: readonly string[]): string {
  const line = `RCPT TO:<${to}>`;
  return extra === undefined ? line : withExtra(line, extra);
}

function withExtra(line: string, extra: readonly string[]): string {
  return extra.length === 0 ? line : `${line} ${extra.join(' ')}`;
}

export function base64(text: string): string {
  return Buffer.from(text, 'utf8').toString('base64');
}

/** AUTH PLAIN with the credentials inline, without an authorization identity (nodemailer: some servers refuse one). */
export function authPlainLine(user: string, pass: string): string {
  return `AUTH PLAIN ${base64(`\u0000${user}\u0000${pass}`)}`;
}

/** The answer to a CRAM-MD5 challenge ("334 <base64>"), or undefined when the reply is not one. */
export function cramMd5Answer(reply: string, user: string, pass: string): string | undefined {
  const m = /^334\s+(.+)$/.exec(reply);
  if (!m) return undefined;
  const challenge = Buffer.from(m[1] ?? '', 'base64').toString('ascii');
  const digest = createHmac('md5', pass).update(challenge).digest('hex');
  return base64(`${user} ${digest}`);
}
