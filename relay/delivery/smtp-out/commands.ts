// The command lines the client writes, built as nodemailer's client builds them (smtp-connection/index.js
// _setEnvelope, login): MAIL FROM with its parameters, RCPT TO, the AUTH exchanges; and the envelope checks it makes
// before writing any of them. Pure.
//
// Exports:
//   envelopeProblem(from, to): why nodemailer would refuse this envelope (EENVELOPE), or undefined.
//   needsSmtpUtf8(from, to): an address is not ASCII (MAIL FROM gets SMTPUTF8 when the server offers it; when it
//     does not, the addresses go as they are, UTF-8, as nodemailer sends them).
//   mailFromLine(from, params), rcptLine(to).
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

export interface MailParams {
  /** The envelope needs SMTPUTF8 and the server offers it. */
  smtputf8: boolean;
  /** SIZE= to announce: the server offers SIZE and the size is known (> 0). */
  size?: number;
}

export function mailFromLine(from: string, params: MailParams): string {
  let line = `MAIL FROM:<${from}>`;
  if (params.smtputf8) line += ' SMTPUTF8';
  if (params.size !== undefined && params.size > 0) line += ` SIZE=${params.size}`;
  return line;
}

export function rcptLine(to: string): string {
  return `RCPT TO:<${to}>`;
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
