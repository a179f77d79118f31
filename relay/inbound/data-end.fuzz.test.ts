// smtp-server's DATA parser (smtp-stream.js _feedDataStream) is patched (patches/smtp-server+3.21.6.patch) to jump from
// dot to dot with Buffer.indexOf when it looks for the end of DATA (<CRLF>.<CRLF>) and for escape dots, instead of
// visiting every byte. This checks the patched parser against the original per-byte loop of smtp-server 3.21.6, copied
// here as the reference, on random messages split into random chunks: same body bytes, same byte count, same commands
// read after the end of DATA.
import { PassThrough } from 'node:stream';
import fc from 'fast-check';
import { SMTPStream } from 'smtp-server/lib/smtp-stream.js';
import { describe, expect, it } from 'vitest';
import { splitAt } from '../../test/support/split.ts';

const RUNS = Number(process.env['MAILROUTE_FUZZ_RUNS'] ?? 300);
const END_SEQUENCE = Buffer.from('\r\n.\r\n');

/** The fields of SMTPStream the data-mode parser uses. */
interface ParserInternals {
  _dataStream: PassThrough;
  _lastBytes: Buffer | false;
  _atDataStart: boolean;
  _countDataBytes(len: number): void;
  _endDataMode(chunk: Buffer | false, remainder: Buffer, done: () => void): void;
  _feedDataStream(chunk: Buffer, done: () => void): void;
}

/** smtp-server 3.21.6's _feedDataStream as published (dist/esm/smtp-stream.js), the per-byte search. */
function originalFeedDataStream(this: ParserInternals, input: Buffer, done: () => void): void {
  const dataStream = this._dataStream;
  let chunk = input;
  if (this._lastBytes && this._lastBytes.length) {
    chunk = Buffer.concat([this._lastBytes, chunk], this._lastBytes.length + chunk.length);
    this._lastBytes = false;
  }
  let len = chunk.length;
  if (this._atDataStart && len >= 3 && Buffer.compare(chunk.subarray(0, 3), Buffer.from('.\r\n')) === 0) {
    this._endDataMode(false, chunk.subarray(3), done);
    return;
  }
  if (this._atDataStart && len >= 2 && chunk[0] === 0x2e && chunk[1] === 0x2e) {
    chunk = chunk.subarray(1);
    len--;
    this._atDataStart = false;
  }
  for (let i = 2; i < len - 2; i++) {
    if (chunk[i] === 0x2e && chunk[i - 1] === 0x0a) {
      if (Buffer.compare(chunk.subarray(i - 2, i + 3), END_SEQUENCE) === 0) {
        const buf = chunk.subarray(0, i);
        this._countDataBytes(buf.length);
        this._endDataMode(buf, chunk.subarray(i + 3), done);
        return;
      }
      if (chunk[i + 1] === 0x2e) {
        const buf = chunk.subarray(0, i);
        this._lastBytes = false;
        this._countDataBytes(buf.length);
        if (dataStream.writable) dataStream.write(buf);
        const rest = chunk.subarray(i + 1);
        setImmediate(() => this._feedDataStream(rest, done));
        return;
      }
    }
  }
  this._lastBytes = chunk.length < 4 ? chunk : chunk.subarray(chunk.length - 4);
  if (this._lastBytes.length < chunk.length) {
    const buf = chunk.subarray(0, chunk.length - this._lastBytes.length);
    this._countDataBytes(buf.length);
    if (dataStream.writable) {
      const handled = dataStream.write(buf);
      if (!handled && !dataStream.destroyed) {
        const onDrain = (): void => {
          dataStream.removeListener('drain', onDrain);
          dataStream.removeListener('close', onDrain);
          done();
        };
        dataStream.once('drain', onDrain);
        dataStream.once('close', onDrain);
      } else done();
    } else done();
  } else done();
}

class OriginalStream extends SMTPStream {}
(OriginalStream.prototype as unknown as ParserInternals)._feedDataStream = originalFeedDataStream;

interface Parsed {
  body: string;
  dataBytes: number;
  commands: string[];
}

/** Feeds the chunks to a parser in data mode; resolves with the body it emitted and the commands read after it. */
async function parse(parser: SMTPStream, chunks: Buffer[]): Promise<Parsed> {
  const commands: string[] = [];
  parser.oncommand = (cmd: Buffer, cb?: () => void): void => {
    commands.push(cmd.toString('latin1'));
    cb?.();
  };
  const data = parser.startDataMode(Infinity);
  const body: Buffer[] = [];
  data.on('data', (b: Buffer) => body.push(b));
  const ended = new Promise<void>((resolve) => data.once('end', resolve));
  void ended.then(() => parser.continue());
  for (const c of chunks) {
    await new Promise<void>((resolve, reject) => parser.write(c, (err) => (err ? reject(err) : resolve())));
  }
  await ended;
  // what follows the end of DATA is parsed as commands once the stream continues
  await new Promise<void>((resolve) => setImmediate(resolve));
  return { body: Buffer.concat(body).toString('latin1'), dataBytes: parser.dataBytes, commands };
}

/** Message bytes rich in the characters that matter: CR, LF, dots, and a few letters. */
const message = fc
  .array(fc.constantFrom('\r\n', '.', '..', '\r', '\n', 'a', 'b.', '\r\n.', '\r\n..', 'x'.repeat(40)), {
    maxLength: 80,
  })
  .map((parts) => parts.join(''));

describe('smtp-server DATA end search (patched) matches the original per-byte loop', () => {
  it('on random messages, terminators and chunk splits', async () => {
    await fc.assert(
      fc.asyncProperty(
        message,
        fc.constantFrom('\r\n.\r\n', '.\r\n'),
        fc.constantFrom('', 'QUIT\r\n', 'RSET\r\nNOOP\r\n'),
        fc.array(fc.nat({ max: 300 }), { maxLength: 12 }),
        async (body, end, after, cuts) => {
          // ".\r\n" ends DATA only as its first line; otherwise the message ends with <CRLF>.<CRLF>
          const all = Buffer.from(body + (body === '' ? end : '\r\n.\r\n') + after, 'latin1');
          const chunks = splitAt(all, cuts);
          const patched = await parse(new SMTPStream(), chunks);
          const original = await parse(new OriginalStream(), chunks);
          expect(patched).toEqual(original);
        },
      ),
      { numRuns: RUNS },
    );
  });

  // The second speed patch: the (up to 4) bytes held back at the end of a chunk are sent on alone, not copied in front
  // of the next chunk, unless a dot line straddles the two (then the original joins them).
  it.each([
    {
      what: 'plain text across the seam: the next chunk is emitted uncopied',
      first: 'abcdefgh\r\n12',
      next: 'x'.repeat(64),
      copied: false,
    },
    {
      what: 'a dot line straddling the seam: joined as before',
      first: 'abcdefgh\r',
      next: '\n..stuffed line\r\n' + 'x'.repeat(64),
      copied: true,
    },
    {
      what: 'a next chunk under 8 bytes: joined as before',
      first: 'abcdefgh\r\n12',
      next: 'x',
      copied: true,
    },
  ])('$what', async ({ first, next, copied }) => {
    const a = Buffer.from(first, 'latin1');
    const b = Buffer.from(next + '\r\n.\r\n', 'latin1');
    const parser = new SMTPStream();
    const emitted: Buffer[] = [];
    const result = parse(parser, [a, b]);
    const data = (parser as unknown as ParserInternals)._dataStream;
    data.on('data', (c: Buffer) => emitted.push(c));
    const patched = await result;
    expect(patched).toEqual(await parse(new OriginalStream(), [a, b]));
    expect(emitted.some((c) => c.buffer === b.buffer && c.byteOffset === b.byteOffset)).toBe(!copied);
  });

  it('a 100 KiB body with dot-stuffed lines in 64 KiB chunks', async () => {
    const line = 'y'.repeat(76);
    const lines = Array.from({ length: 1300 }, (_, i) => (i % 97 === 0 ? `..${line}` : line));
    const all = Buffer.from(`${lines.join('\r\n')}\r\n.\r\nQUIT\r\n`, 'latin1');
    const chunks = [all.subarray(0, 65536), all.subarray(65536)];
    const patched = await parse(new SMTPStream(), chunks);
    expect(patched).toEqual(await parse(new OriginalStream(), chunks));
    expect(patched.commands).toEqual(['QUIT']);
  });
});
