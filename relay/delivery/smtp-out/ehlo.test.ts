// EHLO replies read as nodemailer's client reads them: the extensions the client uses and the AUTH mechanism it picks.
import { describe, expect, it } from 'vitest';
import { authMethod, HELO_EXTENSIONS, offersStartTls, parseEhlo, withoutAuth } from './ehlo.ts';

const POSTFIX =
  '250-mx.example.com\n250-PIPELINING\n250-SIZE 10240000\n250-VRFY\n250-ETRN\n250-STARTTLS\n' +
  '250-AUTH PLAIN LOGIN\n250-ENHANCEDSTATUSCODES\n250-8BITMIME\n250-DSN\n250 SMTPUTF8';

describe('parseEhlo', () => {
  it.each([
    [
      'Postfix with everything',
      POSTFIX,
      {
        pipelining: true,
        smtputf8: true,
        eightBitMime: true,
        size: true,
        maxSize: 10240000,
        auth: true,
        authMethods: ['PLAIN', 'LOGIN'],
      },
    ],
    [
      'a bare greeting line',
      '250 mx.example.com',
      {
        pipelining: false,
        smtputf8: false,
        eightBitMime: false,
        size: false,
        maxSize: 0,
        auth: false,
        authMethods: [],
      },
    ],
    [
      'SIZE without a limit, lower case, AUTH= form, mechanisms in any order and case',
      '250-mx\n250-size\n250-8bitmime\n250-pipelining\n250-AUTH=cram-md5 login\n250 AUTH XOAUTH2 cram-md5',
      {
        pipelining: true,
        smtputf8: false,
        eightBitMime: true,
        size: true,
        maxSize: 0,
        auth: true,
        authMethods: ['LOGIN', 'CRAM-MD5'],
      },
    ],
    [
      'AUTH with only mechanisms the client cannot run',
      '250-mx\n250 AUTH XOAUTH2 GSSAPI',
      {
        pipelining: false,
        smtputf8: false,
        eightBitMime: false,
        size: false,
        maxSize: 0,
        auth: true,
        authMethods: [],
      },
    ],
    [
      'the names must be whole words',
      '250-mx\n250-XPIPELINING\n250-SMTPUTF8X\n250-X8BITMIME\n250 AUTHX PLAIN',
      {
        pipelining: false,
        smtputf8: false,
        eightBitMime: false,
        size: false,
        maxSize: 0,
        auth: false,
        authMethods: [],
      },
    ],
  ])('%s', (_what, reply, want) => {
    expect(parseEhlo(reply)).toEqual(want);
  });

  it('picks PLAIN, then LOGIN, then CRAM-MD5; PLAIN when none is offered (and after HELO)', () => {
    expect(authMethod(parseEhlo(POSTFIX))).toBe('PLAIN');
    expect(authMethod(parseEhlo('250-mx\n250 AUTH LOGIN CRAM-MD5'))).toBe('LOGIN');
    expect(authMethod(parseEhlo('250-mx\n250 AUTH CRAM-MD5'))).toBe('CRAM-MD5');
    expect(authMethod(parseEhlo('250-mx\n250 AUTH GSSAPI'))).toBe('PLAIN');
    expect(HELO_EXTENSIONS.auth).toBe(true);
    expect(authMethod(HELO_EXTENSIONS)).toBe('PLAIN');
  });

  it('a session left in plain text keeps its extensions but no AUTH', () => {
    expect(withoutAuth(parseEhlo(POSTFIX))).toMatchObject({ pipelining: true, auth: false, authMethods: [] });
  });

  it.each([
    [POSTFIX, true],
    ['250-mx\n250 starttls', true],
    ['250-mx\n250 PIPELINING', false],
    ['250-mx\n250 XSTARTTLS', false],
  ])('offersStartTls(%j) = %s', (reply, offered) => {
    expect(offersStartTls(reply)).toBe(offered);
  });
});
