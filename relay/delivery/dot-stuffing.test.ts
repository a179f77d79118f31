// nodemailer's SMTP DATA encoder (smtp-connection/data-stream.js) is patched (patches/nodemailer+10.6.1.patch) to
// visit only the bytes that can need an insert (CR, LF, dot) instead of every byte, and to send its last chunk and the
// final dot line in one push (one socket write) when that chunk is at most 16 KiB; a larger one goes on as it is,
// uncopied, and the dot line after it. This checks the patched stream against the original per-byte algorithm
// (test/support/dot-stuffing-reference.ts), on random bytes split at random points, and counts its pushes; and the
// patch's one-call form for a body held in memory (DataStream.encode) against the stream. Since 5 December only the
// benchmark floor's nodemailer part uses this encoder; the relay's client has its own (smtp-out/data-encoder.ts).
import { join } from 'node:path';
import type { Transform } from 'node:stream';
import { pathToFileURL } from 'node:url';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { dotStuffingReference as reference } from '../../test/support/dot-stuffing-reference.ts';
import { splitAt } from '../../test/support/split.ts';

const RUNS = Number(process.env['MAILROUTE_FUZZ_RUNS'] ?? 300);

type DataStreamClass = (new () => Transform) & { encode(body: Buffer): Buffer[] };
const dataStreamUrl = pathToFileURL(
  join(import.meta.dirname, '../../node_modules/nodemailer/dist/esm/smtp-connection/data-stream.js'),
).href;
const { default: DataStream } = (await import(dataStreamUrl)) as { default: DataStreamClass };

/** The encoded bytes, the chunks the encoder pushed (each is one socket write), and how many were written. */
async function encode(
  input: Buffer,
  cuts: number[],
): Promise<{ out: Buffer; pushes: number; writes: number; parts: Buffer[]; written: Buffer[] }> {
  const s = new DataStream();
  const parts: Buffer[] = [];
  s.on('data', (c: Buffer) => parts.push(c));
  const done = new Promise<void>((resolve, reject) => {
    s.once('end', resolve);
    s.once('error', reject);
  });
  const written: Buffer[] = [];
  for (const chunk of splitAt(input, cuts)) {
    written.push(chunk);
    s.write(chunk);
  }
  s.end();
  await done;
  return { out: Buffer.concat(parts), pushes: parts.length, writes: written.length, parts, written };
}

const byte = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(0x0d, 0x0a, 0x2e) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 255 }) },
);

describe('nodemailer DATA encoder (patched)', () => {
  it('gives exactly the bytes of the original per-byte algorithm however the input is split, in one push per chunk written (the final dot line travels with the last one)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(byte, { maxLength: 300 }).map((a) => Buffer.from(a)),
        fc.array(fc.nat(), { maxLength: 6 }),
        async (input, cuts) => {
          const { out, pushes, writes } = await encode(input, cuts);
          expect(out.equals(reference(input))).toBe(true);
          expect(pushes).toBe(Math.max(1, writes));
        },
      ),
      { numRuns: RUNS * 10 },
    );
  });

  it.each([
    ['a dot at the start of the data', '.hidden\r\n', '..hidden\r\n.\r\n'],
    ['a dot line in the middle', 'a\r\n.\r\nb\r\n', 'a\r\n..\r\nb\r\n.\r\n'],
    ['bare LF and bare CR', 'a\nb\rc', 'a\r\nb\r\nc\r\n.\r\n'],
    ['a bare CR before a dot', 'a\r.b', 'a\r\n..b\r\n.\r\n'],
    ['no line break at the end', 'abc', 'abc\r\n.\r\n'],
  ])('%s', async (_what, input, want) => {
    expect((await encode(Buffer.from(input, 'latin1'), [])).out.toString('latin1')).toBe(want);
  });

  // A last chunk of up to 16 KiB travels with the dot line; a larger one is pushed as it is (no copy of the body).
  it.each([
    {
      what: 'a 16 KiB last chunk: one push with the dot line',
      size: 16 * 1024,
      dotted: false,
      pushes: 1,
      same: false,
    },
    {
      what: 'a 16 KiB + 1 last chunk: itself, then the dot line',
      size: 16 * 1024 + 1,
      dotted: false,
      pushes: 2,
      same: true,
    },
    {
      what: 'a 100 KiB body in one chunk: itself, then the dot line',
      size: 100 * 1024,
      dotted: false,
      pushes: 2,
      same: true,
    },
    {
      what: 'a 100 KiB body that needs dots stuffed: its encoding, then the dot line',
      size: 100 * 1024,
      dotted: true,
      pushes: 2,
      same: false,
    },
  ])('$what', async ({ size, dotted, pushes, same }) => {
    const line = dotted ? '.a dot line\r\n' : 'a line of text\r\n';
    const input = Buffer.from(line.repeat(Math.ceil(size / line.length)).slice(0, size), 'latin1');
    const r = await encode(input, []);
    expect(r.out.equals(reference(input))).toBe(true);
    expect(r.pushes).toBe(pushes);
    expect(r.parts[0] === r.written[0]).toBe(same);
  });

  it('keeps the bytes of the original on large random bodies split at random points', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(byte, { minLength: 16 * 1024, maxLength: 40 * 1024 }).map((a) => Buffer.from(a)),
        fc.array(fc.nat(), { maxLength: 4 }),
        async (input, cuts) => {
          const { out, pushes, writes, parts } = await encode(input, cuts);
          expect(out.equals(reference(input))).toBe(true);
          // one push per chunk written, and one more for the dot line when the last encoded chunk is over 16 KiB:
          // then that chunk went on alone and the last push is the dot line by itself
          const last = parts.at(-1) ?? Buffer.alloc(0);
          if (pushes === writes + 1) {
            expect(parts.at(-2)?.length ?? 0).toBeGreaterThan(16 * 1024);
            expect(['.\r\n', '\n.\r\n', '\r\n.\r\n']).toContain(last.toString('latin1'));
          } else {
            expect(pushes).toBe(writes);
            expect(last.length).toBeLessThanOrEqual(16 * 1024 + '\r\n.\r\n'.length);
          }
        },
      ),
      { numRuns: Math.max(10, Math.floor(RUNS / 10)) },
    );
  });

  it("encode(body), the client's path for a body in memory, gives the chunks the stream pushes for it written at once", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.array(byte, { maxLength: 300 }),
          fc.array(byte, { minLength: 16 * 1024 - 8, maxLength: 16 * 1024 + 8 }),
          fc.array(byte, { minLength: 16 * 1024, maxLength: 40 * 1024 }),
        ),
        async (bytes) => {
          const input = Buffer.from(bytes);
          const chunks = DataStream.encode(input);
          expect(Buffer.concat(chunks).equals(reference(input))).toBe(true);
          const streamed = await encode(input, []);
          expect(chunks.map((c) => c.toString('latin1'))).toEqual(
            streamed.parts.map((c) => c.toString('latin1')),
          );
        },
      ),
      { numRuns: Math.max(30, Math.floor(RUNS / 3)) },
    );
  });

  it('is the patched version (visits candidates, not every byte)', () => {
    const proto = DataStream.prototype as unknown as { _transform: (...args: unknown[]) => void };
    expect(proto._transform.toString()).toContain('nextDot');
  });
});
