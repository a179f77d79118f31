// The command lines and envelope checks of the client, as nodemailer's client writes and makes them.
import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  authPlainLine,
  cramMd5Answer,
  envelopeProblem,
  esmtpParamsProblem,
  MAIL_OWN_PARAMS,
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
    [
      'BODY=8BITMIME after SMTPUTF8, before SIZE',
      'ü@x.example',
      { smtputf8: true, body8bit: true, size: 10 },
      'MAIL FROM:<ü@x.example> SMTPUTF8 BODY=8BITMIME SIZE=10',
    ],
    [
      'a 7-bit body: no BODY=',
      'a@x.example',
      { smtputf8: false, body8bit: false },
      'MAIL FROM:<a@x.example>',
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

describe("the caller's ESMTP parameters", () => {
  it.each([
    ['none', 'a@x.example', { smtputf8: false }, [], 'MAIL FROM:<a@x.example>'],
    [
      "one, after the client's own",
      'ü@x.example',
      { smtputf8: true, size: 10 },
      ['X-MAILROUTE-ORIGIN=0mx0qz1k20001a7f@relay-0.example'],
      'MAIL FROM:<ü@x.example> SMTPUTF8 SIZE=10 X-MAILROUTE-ORIGIN=0mx0qz1k20001a7f@relay-0.example',
    ],
    ['two, in order', '', { smtputf8: false }, ['B=2', 'A'], 'MAIL FROM:<> B=2 A'],
  ])('MAIL FROM, %s', (_what, from, params, extra, line) => {
    expect(mailFromLine(from, params, extra)).toBe(line);
  });

  it.each([
    [undefined, 'RCPT TO:<b@y.example>'],
    [[], 'RCPT TO:<b@y.example>'],
    [['X-MAILROUTE-LEGS=primary,copy'], 'RCPT TO:<b@y.example> X-MAILROUTE-LEGS=primary,copy'],
    [
      ['NOTIFY=NEVER', 'ORCPT=rfc822;b+2B@y.example'],
      'RCPT TO:<b@y.example> NOTIFY=NEVER ORCPT=rfc822;b+2B@y.example',
    ],
  ])('RCPT TO with %j', (extra, line) => {
    expect(rcptLine('b@y.example', extra)).toBe(line);
  });

  it.each([
    [['X-MAILROUTE-LEGS=copy'], undefined],
    [['X-MAILROUTE-ORIGIN=0mx0qz1k20001a7f@relay-0.example'], undefined],
    [['NOTIFY=SUCCESS,FAILURE', 'ORCPT=rfc822;a+2Bb@x'], undefined],
    [['SMTPUTF8-LIKE', '8BIT'], undefined],
    [["K=!#$%&'()*+,-./09:;?@AZ[\\]^_`az{|}~"], undefined],
    [[], undefined],
    [['X-LEGS=primary copy'], 'Invalid ESMTP parameter "X-LEGS=primary copy"'],
    [['X-LEGS=copy\r\nRCPT TO:<evil@z>'], 'Invalid ESMTP parameter "X-LEGS=copy\\r\\nRCPT TO:<evil@z>"'],
    [['X-LEGS=copy\n'], 'Invalid ESMTP parameter "X-LEGS=copy\\n"'],
    [['X-A=<b>'], 'Invalid ESMTP parameter "X-A=<b>"'],
    [['X-A=b>'], 'Invalid ESMTP parameter "X-A=b>"'],
    [['X-A=b=c'], 'Invalid ESMTP parameter "X-A=b=c"'],
    [['X-A='], 'Invalid ESMTP parameter "X-A="'],
    [['X-A=\t'], 'Invalid ESMTP parameter "X-A=\\t"'],
    [['X-A=\u0000'], 'Invalid ESMTP parameter "X-A=\\u0000"'],
    [['X-A=ü'], 'Invalid ESMTP parameter "X-A=ü"'],
    [['=b'], 'Invalid ESMTP parameter "=b"'],
    [['-A=b'], 'Invalid ESMTP parameter "-A=b"'],
    [['X_A=b'], 'Invalid ESMTP parameter "X_A=b"'],
    [[''], 'Invalid ESMTP parameter ""'],
    [[' X-A=b'], 'Invalid ESMTP parameter " X-A=b"'],
    [['X-A=b', 'x-a=c'], 'ESMTP parameter "x-a=c": X-A given twice'],
  ])('%j: %j', (params, problem) => {
    expect(esmtpParamsProblem(params)).toBe(problem);
  });

  it('on MAIL FROM, not the parameters the client writes itself', () => {
    expect(esmtpParamsProblem(['size=10'], MAIL_OWN_PARAMS)).toBe(
      'ESMTP parameter "size=10": SIZE is the client\'s own',
    );
    expect(esmtpParamsProblem(['SMTPUTF8'], MAIL_OWN_PARAMS)).toBe(
      'ESMTP parameter "SMTPUTF8": SMTPUTF8 is the client\'s own',
    );
    expect(esmtpParamsProblem(['BODY=7BIT'], MAIL_OWN_PARAMS)).toBe(
      'ESMTP parameter "BODY=7BIT": BODY is the client\'s own',
    );
    // on RCPT TO the client writes none of its own
    expect(esmtpParamsProblem(['SIZE=10'])).toBeUndefined();
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
