// The client's DATA encoder against the original per-byte algorithm of nodemailer 10.6.1
// (test/support/dot-stuffing-reference.ts): a whole body, and the same body pushed in chunks split at random
// points, give exactly its bytes; a chunk that needs no insert is passed on uncopied.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { dotStuffingReference as reference } from '../../../test/support/dot-stuffing-reference.ts';
import { splitAt } from '../../../test/support/split.ts';
import { DotStuffer, stuffWhole } from './data-encoder.ts';

const RUNS = Number(process.env['MAILROUTE_FUZZ_RUNS'] ?? 300);

/** The input pushed in the chunks between the cut points, then the end: all the bytes written. */
function streamed(input: Buffer, cuts: number[]): Buffer {
  const s = new DotStuffer();
  const parts: Buffer[] = [];
  for (const piece of splitAt(input, cuts)) parts.push(s.push(piece));
  parts.push(s.end());
  return Buffer.concat(parts);
}

const whole = (input: Buffer): Buffer => {
  const { data, end } = stuffWhole(input);
  return Buffer.concat([data, end]);
};

// CR, LF and dots most of the time: the bytes every rule is about
const byte = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(0x0d, 0x0a, 0x2e) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 255 }) },
);

describe('DotStuffer', () => {
  it('a whole body: exactly the bytes of the original algorithm', () => {
    fc.assert(
      fc.property(
        fc.array(byte, { maxLength: 400 }).map((a) => Buffer.from(a)),
        (input) => {
          expect(whole(input).equals(reference(input))).toBe(true);
        },
      ),
      { numRuns: RUNS * 10 },
    );
  });

  it('a body in chunks split anywhere: the same bytes (the state across chunks is the last byte)', () => {
    fc.assert(
      fc.property(
        fc.array(byte, { maxLength: 400 }).map((a) => Buffer.from(a)),
        fc.array(fc.nat(), { maxLength: 8 }),
        (input, cuts) => {
          expect(streamed(input, cuts).equals(reference(input))).toBe(true);
        },
      ),
      { numRuns: RUNS * 10 },
    );
  });

  it('large random bodies, whole and in chunks', () => {
    fc.assert(
      fc.property(
        fc.array(byte, { minLength: 16 * 1024, maxLength: 64 * 1024 }).map((a) => Buffer.from(a)),
        fc.array(fc.nat(), { maxLength: 5 }),
        (input, cuts) => {
          const want = reference(input);
          expect(whole(input).equals(want)).toBe(true);
          expect(streamed(input, cuts).equals(want)).toBe(true);
        },
      ),
      { numRuns: Math.max(10, Math.floor(RUNS / 10)) },
    );
  });

  it.each([
    ['a dot at the start of the data', '.hidden\r\n', '..hidden\r\n.\r\n'],
    ['a dot line in the middle', 'a\r\n.\r\nb\r\n', 'a\r\n..\r\nb\r\n.\r\n'],
    ['bare LF and bare CR', 'a\nb\rc', 'a\r\nb\r\nc\r\n.\r\n'],
    ['a bare CR before a dot (smuggling)', 'a\r.\rb', 'a\r\n..\r\nb\r\n.\r\n'],
    ['no line break at the end', 'abc', 'abc\r\n.\r\n'],
    ['ends with a bare CR', 'abc\r', 'abc\r\n.\r\n'],
    ['ends with a bare LF', 'abc\n', 'abc\r\n.\r\n'],
    ['an empty body', '', '\r\n.\r\n'],
    ['a lone dot', '.', '..\r\n.\r\n'],
  ])('%s', (_what, input, want) => {
    expect(whole(Buffer.from(input, 'latin1')).toString('latin1')).toBe(want);
    expect(streamed(Buffer.from(input, 'latin1'), [1, 2, 3]).toString('latin1')).toBe(want);
  });

  it('passes a chunk that needs nothing inserted on as it is (no copy of the body)', () => {
    const body = Buffer.from('Subject: x\r\n\r\nplain text\r\n');
    const { data, end } = stuffWhole(body);
    expect(data).toBe(body);
    expect(end.toString()).toBe('.\r\n');
    const s = new DotStuffer();
    const first = body.subarray(0, 10);
    expect(s.push(first)).toBe(first);
    // the next chunk starts with a dot after an LF at the end of the previous one: stuffed, so copied
    const s2 = new DotStuffer();
    s2.push(Buffer.from('a\r\n'));
    expect(s2.push(Buffer.from('.b')).toString()).toBe('..b');
  });
});
