// What a server's EHLO reply offers, read as nodemailer's client reads it (smtp-connection/index.js
// _parseEhloExtensions: the same patterns over the whole reply), and the AUTH mechanism it would pick. Pure.
//
// Exports:
//   Extensions: what the client uses (PIPELINING, SIZE and its limit, SMTPUTF8, 8BITMIME, AUTH and its mechanisms).
//   parseEhlo(reply), HELO_EXTENSIONS (after HELO: nothing, but AUTH is tried, as nodemailer does), withoutAuth(ext).
//   offersStartTls(reply): the EHLO reply lists STARTTLS.
//   AuthMethod, authMethod(ext): the mechanism to use (the first of PLAIN, LOGIN, CRAM-MD5 the server lists; PLAIN
//     when it lists none of them).

export type AuthMethod = 'PLAIN' | 'LOGIN' | 'CRAM-MD5';

export interface Extensions {
  pipelining: boolean;
  smtputf8: boolean;
  /** 8BITMIME offered (RFC 6152): MAIL FROM carries BODY=8BITMIME for a message received with it. */
  eightBitMime: boolean;
  /** SIZE offered (RFC 1870): MAIL FROM carries SIZE=. */
  size: boolean;
  /** The SIZE limit; 0: none given. */
  maxSize: number;
  /** AUTH is to be tried (offered, or after HELO). */
  auth: boolean;
  /** The mechanisms offered that the client can run, in its order of preference. */
  authMethods: readonly AuthMethod[];
}

/** nodemailer's order of preference (XOAUTH2, next in its list, needs a token provider the relay does not have). */
const PREFERENCE: readonly AuthMethod[] = ['PLAIN', 'LOGIN', 'CRAM-MD5'];

export const HELO_EXTENSIONS: Extensions = {
  pipelining: false,
  smtputf8: false,
  eightBitMime: false,
  size: false,
  maxSize: 0,
  // nodemailer after HELO: "assume that authentication is enabled"
  auth: true,
  authMethods: [],
};

export function parseEhlo(reply: string): Extensions {
  const lines = reply
    .split(/\r?\n/)
    .map((line) => line.replace(/^\d+[ -]/, '').trim())
    .filter((line) => line !== '')
    .slice(1);
  const mechanisms = new Set<string>();
  for (const line of lines) {
    const m = /^AUTH[\s=](.*)/i.exec(line);
    // whole tokens, never a pattern per name (nodemailer GHSA-4ffr-jq9g-5ffx: overlapping patterns backtracked)
    if (m) for (const mechanism of (m[1] ?? '').split(/[\s=]+/)) mechanisms.add(mechanism.toUpperCase());
  }
  const size = /[ -]SIZE(?:[ \t]+(\d+))?/im.exec(reply);
  return {
    pipelining: /[ -]PIPELINING\b/im.test(reply),
    smtputf8: /[ -]SMTPUTF8\b/im.test(reply),
    eightBitMime: /[ -]8BITMIME\b/im.test(reply),
    size: size !== null,
    maxSize: Number(size?.[1]) || 0,
    auth: /[ -]AUTH\b/i.test(reply),
    authMethods: PREFERENCE.filter((m) => mechanisms.has(m)),
  };
}

/** A session that stays in plain text after a failed STARTTLS keeps its extensions but never sends credentials. */
export function withoutAuth(ext: Extensions): Extensions {
  return { ...ext, auth: false, authMethods: [] };
}

export function offersStartTls(reply: string): boolean {
  return /[ -]STARTTLS\b/im.test(reply);
}

export function authMethod(ext: Extensions): AuthMethod {
  return ext.authMethods[0] ?? 'PLAIN';
}
