import { describe, expect, it } from 'vitest';
import { MAIL_PARAMS, RCPT_PARAMS, unsupportedParameter } from './params.ts';

describe('unsupportedParameter', () => {
  it.each<[string, Record<string, string | true> | false, ReadonlySet<string>, string | undefined]>([
    ['no parameters', false, MAIL_PARAMS, undefined],
    [
      'SIZE, BODY and SMTPUTF8 at MAIL FROM',
      { SIZE: '10', BODY: '8BITMIME', SMTPUTF8: true },
      MAIL_PARAMS,
      undefined,
    ],
    [
      'the hand-off origin at MAIL FROM (its sender is checked apart)',
      { 'X-MAILROUTE-ORIGIN': 'x' },
      MAIL_PARAMS,
      undefined,
    ],
    ['RET at MAIL FROM', { SIZE: '10', RET: 'HDRS' }, MAIL_PARAMS, 'Unsupported parameter RET'],
    ['AUTH at MAIL FROM (AUTH is not offered)', { AUTH: '<>' }, MAIL_PARAMS, 'Unsupported parameter AUTH'],
    ['the hand-off legs at RCPT TO', { 'X-MAILROUTE-LEGS': 'copy' }, RCPT_PARAMS, undefined],
    ['NOTIFY at RCPT TO', { NOTIFY: 'NEVER' }, RCPT_PARAMS, 'Unsupported parameter NOTIFY'],
    ['SIZE at RCPT TO', { SIZE: '10' }, RCPT_PARAMS, 'Unsupported parameter SIZE'],
  ])('%s', (_, args, supported, text) => {
    const r = unsupportedParameter(args, supported);
    if (text === undefined) return expect(r).toBeUndefined();
    expect(r).toMatchObject({ verdict: 'reject', reply: { code: 555, enhanced: '5.5.4', text } });
  });
});
