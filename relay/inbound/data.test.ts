// receiveData's vouch to the spool (wireReady, relay/spool/wire-ready.ts): true only for bytes that DATA can send as
// they are, i.e. exactly when the delivery client's own encoder would insert nothing and the body ends in a line end.
// Property-tested against that encoder over any body, split anywhere, in both bare-LF modes.
import { PassThrough } from 'node:stream';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { splitAt } from '../../test/support/split.ts';
import type { BareLfMode } from '../config.ts';
import { passWhole, stuffWhole } from '../delivery/smtp-out/data-encoder.ts';
import type { EnvelopeMeta, SpoolWriter } from '../spool/types.ts';
import { receiveData } from './data.ts';
import { receivedHeaderBytes } from './helo.ts';

const RUNS = Number(process.env['MAILROUTE_FUZZ_RUNS'] ?? 300);
const HEADER = Buffer.from('Received: from client by relay; Sat, 5 Dec 2026 12:00:00 +0000\r\n');

const meta: EnvelopeMeta = {
  mailFrom: 'a@example.com',
  recipients: [],
  clientAddress: '127.0.0.1',
  clientHostname: 'client',
  helo: 'client',
  receivedAt: '2026-12-05T12:00:00.000Z',
  revision: 'r1',
  smtputf8: false,
  body8bit: false,
};

/** Runs one body through receiveData in the given pieces; what the spool got and whether it was vouched for. */
async function run(
  pieces: Buffer[],
  bareLf: BareLfMode,
  header: Buffer = HEADER,
): Promise<{ accepted: boolean; bytes: Buffer; ready: boolean | undefined; size?: number; pieces: number }> {
  let bytes = Buffer.alloc(0);
  let ready: boolean | undefined;
  let spoolPieces = 0;
  const spool: SpoolWriter = {
    async accept(_meta, body, opts) {
      const chunks: Buffer[] = [];
      // as the spool reads it: 'data' events, one per piece pushed (an async iterator would join what is buffered)
      try {
        await new Promise<void>((resolve, reject) => {
          body.on('data', (c: Buffer) => chunks.push(c));
          body.once('end', resolve);
          body.once('error', reject);
        });
      } catch (err) {
        return { ok: false, error: err as Error, storage: false };
      }
      bytes = Buffer.concat(chunks);
      spoolPieces = chunks.length;
      ready = opts?.wireReady?.();
      return { ok: true, id: 'q1' };
    },
  };
  const source = new PassThrough();
  const done = receiveData(source, {
    spool,
    limits: { bareLf, maxBytes: 1 << 20, hopLimit: 50, maxLineLength: 1000 },
    receivedHeader: header,
    meta,
    dataTimeoutMs: 10_000,
  });
  for (const p of pieces) source.write(p);
  source.end();
  const outcome = await done;
  return {
    accepted: outcome.verdict === 'accept',
    bytes,
    ready,
    pieces: spoolPieces,
    ...(outcome.verdict === 'accept' ? { size: outcome.size } : {}),
  };
}

describe('receiveData: what reaches the spool', () => {
  it('joins tiny pieces (a client sending a byte per segment, a line per piece): the spool holds few buffers', async () => {
    const lines = Array.from({ length: 64_000 }, (_, i) => Buffer.from(i % 2 === 0 ? '.\r\n' : 'x\r\n'));
    const r = await run([Buffer.from('Subject: x\r\n\r\n'), ...lines], 'reject');
    expect(r.accepted).toBe(true);
    expect(r.bytes).toEqual(Buffer.concat([HEADER, Buffer.from('Subject: x\r\n\r\n'), ...lines]));
    // 192,000 bytes in pieces of at least 16 KiB (the last may be smaller), the Received: header apart
    expect(r.pieces).toBeLessThanOrEqual(14);
    // a large piece goes on as it is, after what was held before it
    const big = Buffer.from(`${'a'.repeat(98)}\r\n`.repeat(42));
    const mixed = await run([Buffer.from('S: x\r\n\r\n'), big, Buffer.from('\r\n')], 'reject');
    expect(mixed.bytes).toEqual(
      Buffer.concat([HEADER, Buffer.from('S: x\r\n\r\n'), big, Buffer.from('\r\n')]),
    );
  });
});

describe('receiveData: the wire-ready vouch', () => {
  it('vouches for a plain body, not for one with a line that starts with a dot', async () => {
    const plain = await run([Buffer.from('Subject: x\r\n\r\nhello\r\nworld\r\n')], 'reject');
    expect(plain).toMatchObject({ accepted: true, ready: true });
    const dotted = await run([Buffer.from('Subject: x\r\n\r\nhello\r\n.hidden\r\n')], 'reject');
    expect(dotted).toMatchObject({ accepted: true, ready: false });
    // the dot line split from its line end across two chunks
    const split = await run([Buffer.from('Subject: x\r\n\r\nhello\r\n'), Buffer.from('.x\r\n')], 'reject');
    expect(split).toMatchObject({ accepted: true, ready: false });
    // 8-bit text (an IDN sender's name in UTF-8, SMTPUTF8 / 8BITMIME): bytes over 0x7f change nothing
    const utf8 = Buffer.from('From: Jürgen <jürgen@bücher.example>\r\n\r\nGrüße\r\n', 'utf8');
    expect(await run([utf8.subarray(0, 9), utf8.subarray(9)], 'reject')).toMatchObject({
      accepted: true,
      ready: true,
    });
    const utf8Dot = Buffer.from('Subject: x\r\n\r\nGrüße\r\n.ñ\r\n', 'utf8');
    expect(await run([utf8Dot], 'reject')).toMatchObject({ accepted: true, ready: false });
    // no line end at the very end: the encoder adds one before the dot line
    const open = await run([Buffer.from('Subject: x\r\n\r\nhello')], 'reject');
    expect(open).toMatchObject({ accepted: true, ready: false });
  });

  it("prepends the Received: header's bytes as they are (UTF-8), still vouched for; the size counts the client's bytes", async () => {
    // č and Ċ: their low bytes are CR and LF, which a latin1 header would have carried
    const header = receivedHeaderBytes({
      helo: 'client.test',
      clientAddress: '192.0.2.1',
      clientHostname: '',
      byHostname: 'relay.test',
      protocol: 'ESMTP',
      id: 'abc.1',
      forRecipient: '"xčĊX-Spam-Flag:NO"@example.test',
      smtputf8: true,
      date: new Date('2026-12-05T12:00:00Z'),
    });
    const body = Buffer.from('Subject: x\r\n\r\nhello\r\n');
    const r = await run([body], 'reject', header);
    expect(r).toMatchObject({ accepted: true, ready: true, size: body.length });
    expect(r.bytes.equals(Buffer.concat([header, body]))).toBe(true);
    expect(r.bytes.subarray(0, header.length).toString('utf8')).toContain(
      '\r\n\tfor <"xčĊX-Spam-Flag:NO"@example.test>;\r\n',
    );
  });

  it('vouches exactly when the DATA encoder would insert nothing (any body, any split, both modes)', async () => {
    const line = fc
      .array(fc.constantFrom('a', 'b', '.', ' ', '\r', '\n', '\r\n', '..', '\u00e9', '\u00ff'), {
        maxLength: 12,
      })
      .map((parts) => parts.join(''));
    await fc.assert(
      fc.asyncProperty(
        fc.array(line, { maxLength: 8 }),
        fc.array(fc.nat(), { maxLength: 5 }),
        fc.constantFrom<BareLfMode>('reject', 'normalize'),
        async (lines, points, mode) => {
          const body = Buffer.from(`Subject: t\r\n\r\n${lines.join('\r\n')}`, 'latin1');
          const r = await run(splitAt(body, points), mode);
          if (!r.accepted) {
            expect(r.ready).toBeUndefined();
            return;
          }
          const enc = stuffWhole(r.bytes);
          const asIs = enc.data === r.bytes && r.bytes.at(-1) === 0x0a;
          expect(r.ready).toBe(asIs);
          if (r.ready === true) {
            const passed = passWhole(r.bytes);
            expect(passed.data).toBe(r.bytes);
            expect(passed.end.toString()).toBe(enc.end.toString());
          }
        },
      ),
      { numRuns: RUNS },
    );
  });
});
