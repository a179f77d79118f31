// The command lines and envelope checks of the client, as nodemailer's client writes and makes them.
import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  authPlainLine,
  cramMd5Answer,
  envelopeProblem,
  mailFromLine,
  needsSmtpUtf8,
  rcptLine,
} from './commands.ts';

describe('MAIL FROM and RCPT TO', () => {
  it.each([
    ['a sender', 'a@x.example', { smtputf8: false }, 'MAIL FROM:<a@x.example>'],
    ['the null sender', '', { smtputf8: false }, 'MAIL FROM:<>'],
    ['with SIZE', 'a@x.example', { smtputf8: false, size: 1234 }, 'MAIL FROM:<a@x.example> SIZE=1234'],
    ['SIZE 0 is not announced', 'a@x.example', { smtputf8: false, size: 0 }, 'MAIL FROM:<a@x.example>'],
    [
      'SMTPUTF8 first, then SIZE',
      'ü@x.example',
      { smtputf8: true, size: 10 },
      'MAIL FROM:<ü@x.example> SMTPUTF8 SIZE=10',
    ],
  ])('%s', (_what, from, params, line) => {
    expect(mailFromLine(from, params)).toBe(line);
  });

  it('RCPT TO', () => {
    expect(rcptLine('b@y.example')).toBe('RCPT TO:<b@y.example>');
  });

  it.each([
    ['a@x', ['b@y'], false],
    ['', ['b@y'], false],
    ['ä@x', ['b@y'], true],
    ['a@x', ['b@y', 'björn@y'], true],
    ['a@x', ['b@xn--bcher-kva.example'], false],
  ])('needsSmtpUtf8(%j, %j) = %s', (from, to, needs) => {
    expect(needsSmtpUtf8(from, to)).toBe(needs);
  });
});

describe('envelopeProblem (nodemailer refuses these with EENVELOPE before writing anything)', () => {
  it.each([
    ['a@x', ['b@y'], undefined],
    ['', ['b@y'], undefined],
    ['a@x', [], 'No recipients defined'],
    ['a@x\r\nRCPT TO:<evil@z>', ['b@y'], 'Invalid sender "a@x\\r\\nRCPT TO:<evil@z>"'],
    ['a@x', ['b@y', 'c>@y'], 'Invalid recipient "c>@y"'],
    ['a@x', ['b@y', ''], 'Invalid recipient ""'],
    ['a@x', ['b\n@y'], 'Invalid recipient "b\\n@y"'],
  ])('%j -> %j: %s', (from, to, problem) => {
    expect(envelopeProblem(from, to)).toBe(problem);
  });
});

describe('AUTH', () => {
  it('PLAIN: no authorization identity, the credentials in UTF-8 base64', () => {
    const line = authPlainLine('rélay', 's3cret');
    expect(line.startsWith('AUTH PLAIN ')).toBe(true);
    expect(Buffer.from(line.slice('AUTH PLAIN '.length), 'base64').toString('utf8')).toBe('\0rélay\0s3cret');
  });

  it('CRAM-MD5: user and the HMAC-MD5 of the challenge, keyed with the password (RFC 2195)', () => {
    const challenge = '<1896.697170952@postoffice.reston.mci.net>';
    const reply = `334 ${Buffer.from(challenge).toString('base64')}`;
    const answer = cramMd5Answer(reply, 'tim', 'tanstaaftanstaaf');
    // RFC 2195's example
    expect(Buffer.from(answer ?? '', 'base64').toString()).toBe('tim b913a602c7eda7a495b4e6e7334d3890');
    expect(createHmac('md5', 'tanstaaftanstaaf').update(challenge).digest('hex')).toBe(
      'b913a602c7eda7a495b4e6e7334d3890',
    );
    expect(cramMd5Answer('500 no', 'tim', 'x')).toBeUndefined();
  });
});
