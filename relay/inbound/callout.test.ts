import { describe, expect, it } from 'vitest';
import { probeMailFrom } from './callout.ts';

describe('probeMailFrom: the MAIL FROM of a probe, or why the server is not asked (RFC 6531)', () => {
  const NOT_ASKED = {
    unsupported:
      'the server does not offer SMTPUTF8, so it cannot take mail for a non-ASCII address (RFC 6531): not asked',
  };
  it.each<[string, string, boolean, ReturnType<typeof probeMailFrom>]>([
    ['ASCII, SMTPUTF8 offered: not declared', 'alice@example.test', true, { line: 'MAIL FROM:<>' }],
    ['ASCII, SMTPUTF8 not offered', 'alice@example.test', false, { line: 'MAIL FROM:<>' }],
    ['an A-label domain is ASCII', 'bob@xn--mnchen-3ya.test', false, { line: 'MAIL FROM:<>' }],
    ['non-ASCII local part, offered: declared', 'josé@example.test', true, { line: 'MAIL FROM:<> SMTPUTF8' }],
    ['non-ASCII, not offered: not asked', 'josé@example.test', false, NOT_ASKED],
    ['CJK local part, offered', '用户@example.test', true, { line: 'MAIL FROM:<> SMTPUTF8' }],
    ['one non-ASCII character is enough (U+00A0)', 'a\u00a0b@example.test', false, NOT_ASKED],
    ['DEL is ASCII', 'a\u007fb@example.test', false, { line: 'MAIL FROM:<>' }],
  ])('%s', (_name, address, offered, want) => {
    expect(probeMailFrom(address, offered)).toEqual(want);
  });
});
