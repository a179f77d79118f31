import { describe, expect, it } from 'vitest';
import { parseReplies } from './smtp-client.ts';

describe('parseReplies', () => {
  it.each([
    ['one line', '250 ok\r\n', [{ code: 250, text: '250 ok' }], ''],
    ['partial line stays', '250 o', [], '250 o'],
    ['multi-line reply', '250-a\r\n250-b\r\n250 c\r\n', [{ code: 250, text: '250-a\n250-b\n250 c' }], ''],
    [
      'incomplete multi-line stays whole',
      '220 hi\r\n250-a\r\n250-b\r\n',
      [{ code: 220, text: '220 hi' }],
      '250-a\r\n250-b\r\n',
    ],
    [
      'two replies',
      '354 go\r\n250 queued\r\n',
      [
        { code: 354, text: '354 go' },
        { code: 250, text: '250 queued' },
      ],
      '',
    ],
  ])('%s', (_name, input, replies, rest) => {
    expect(parseReplies(input)).toEqual({ replies, rest });
  });
});
