import { describe, expect, it } from 'vitest';
import { clip, oneLine } from './one-line.ts';

describe('oneLine', () => {
  it.each([
    ['a plain reply stays as it is', '451 4.7.1 greylisted', '451 4.7.1 greylisted'],
    [
      'a multi-line reply is joined with spaces',
      '550-5.1.1 no\r\n550 5.1.1 such user',
      '550-5.1.1 no 550 5.1.1 such user',
    ],
    ['a NUL becomes ?', '451 4.7.1 greylisted\u0000 try later', '451 4.7.1 greylisted? try later'],
    ['other controls and DEL become ?', 'a\u0001b\u001bc\u007fd', 'a?b?c?d'],
    ['a bare CR or LF is a line break', 'a\rb\nc', 'a b c'],
    ['a tab is kept', 'a\tb', 'a\tb'],
    ['the ends are trimmed', '  250 ok \r\n', '250 ok'],
    ['UTF-8 text is kept', '550 5.1.1 Empfänger unbekannt', '550 5.1.1 Empfänger unbekannt'],
  ])('%s', (_what, input, want) => {
    expect(oneLine(input)).toBe(want);
    expect(/[\r\n\0]/.test(oneLine(input))).toBe(false);
  });
});

describe('clip', () => {
  it.each([
    ['short text stays', 'abc', 5, 'abc'],
    ['text of exactly max stays', 'abcde', 5, 'abcde'],
    ['longer text is cut, with how much more', 'abcdefgh', 5, 'abcde... (3 more)'],
    ['empty', '', 5, ''],
  ])('%s', (_what, input, max, want) => {
    expect(clip(input, max)).toBe(want);
  });
});
