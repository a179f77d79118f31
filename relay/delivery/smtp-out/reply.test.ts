// The reply parser: whole replies out of bytes however the server split them, multi-line replies joined with "\n",
// blank lines skipped, UTF-8 decoded unless invalid, the size limit, what is left unterminated at a close.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeReply, isClosing, ReplyParser, replyCode } from './reply.ts';

const RUNS = Number(process.env['MAILROUTE_FUZZ_RUNS'] ?? 300);

/** Feeds the chunks in order and collects every reply. */
function parse(chunks: (string | Buffer)[], max?: number): string[] {
  const p = new ReplyParser(max);
  const out: string[] = [];
  for (const c of chunks) {
    const r = p.push(Buffer.isBuffer(c) ? c : Buffer.from(c, 'latin1'));
    if (r === undefined) {
      out.push('too large');
      break;
    }
    out.push(...r);
  }
  return out;
}

describe('ReplyParser', () => {
  it.each([
    ['one reply', ['250 ok\r\n'], ['250 ok']],
    ['LF alone ends a line too', ['250 ok\n'], ['250 ok']],
    [
      'a multi-line reply is one reply',
      ['250-mx.example\r\n250-PIPELINING\r\n250 SIZE 100\r\n'],
      ['250-mx.example\n250-PIPELINING\n250 SIZE 100'],
    ],
    ['several replies in one chunk', ['250 a\r\n250 b\r\n354 go\r\n'], ['250 a', '250 b', '354 go']],
    ['a reply in pieces', ['2', '50 o', 'k\r', '\n'], ['250 ok']],
    ['a multi-line reply across chunks', ['250-a\r\n25', '0-b\r\n', '250 c\r\n'], ['250-a\n250-b\n250 c']],
    ['blank lines between replies are skipped', ['\r\n250 a\r\n\r\n250 b\r\n'], ['250 a', '250 b']],
    ['a code without text', ['250\r\n'], ['250']],
    ['a line without a code ends a reply', ['hello\r\n'], ['hello']],
    ['nothing until the line ends', ['250 ok'], []],
  ])('%s', (_what, chunks, want) => {
    expect(parse(chunks)).toEqual(want);
  });

  it('gives the same replies however the bytes are split', () => {
    const wire = '220 hi\r\n250-mx\r\n250-PIPELINING\r\n250 8BITMIME\r\n\r\n250 2.1.0 ok\r\n550 5.1.1 no\r\n';
    const whole = parse([wire]);
    fc.assert(
      fc.property(fc.array(fc.nat({ max: wire.length }), { maxLength: 8 }), (cuts) => {
        const points = [...new Set([0, ...cuts, wire.length])].sort((a, b) => a - b);
        const chunks = points.slice(1).map((end, i) => wire.slice(points[i], end));
        expect(parse(chunks)).toEqual(whole);
      }),
      { numRuns: RUNS },
    );
  });

  it('decodes UTF-8 split between chunks, and keeps bytes that are not UTF-8 as they are', () => {
    const utf8 = Buffer.from('250 grüße\r\n', 'utf8');
    expect(parse([utf8.subarray(0, 7), utf8.subarray(7)])).toEqual(['250 grüße']);
    expect(parse([Buffer.from([0x32, 0x35, 0x30, 0x20, 0xfc, 0x0d, 0x0a])])).toEqual(['250 \u00fc']);
  });

  it('refuses a reply over the size limit, whether its lines end or not', () => {
    expect(parse(['250 ', 'x'.repeat(20)], 16)).toEqual(['too large']);
    expect(parse(['250-aaaaaa\r\n250-bbbbbb\r\n250-cccccc\r\n'], 16)).toEqual(['too large']);
    expect(parse(['250 a\r\n', '250-b\r\n', '250 c\r\n'], 16)).toEqual(['250 a', '250-b\n250 c']);
  });

  it('keeps what arrived after the last line end (a reply the server did not finish before closing)', () => {
    const p = new ReplyParser();
    expect(p.push(Buffer.from('250 ok\r\n421 going away'))).toEqual(['250 ok']);
    expect(p.remainder()).toBe('421 going away');
    p.reset();
    expect(p.remainder()).toBe('');
    expect(p.push(Buffer.from('-b\r\n250 c\r\n'))).toEqual(['-b', '250 c']);
  });
});

describe('reply helpers', () => {
  it.each([
    ['250 ok', 250],
    ['421-x\n421 y', 421],
    ['4210 odd', 4210],
    ['hello', 0],
  ])('replyCode(%j) = %d', (reply, code) => {
    expect(replyCode(reply)).toBe(code);
  });

  it.each([
    ['421 4.3.2 shutting down', true],
    ['421-a\n421 b', true],
    ['4210 x', false],
    ['450 busy', false],
  ])('isClosing(%j) = %s', (reply, closing) => {
    expect(isClosing(reply)).toBe(closing);
  });

  it('decodeReply leaves ASCII alone', () => {
    expect(decodeReply('250 ok')).toBe('250 ok');
  });
});
