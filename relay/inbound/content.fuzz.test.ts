// Fuzz/property tests of the relay's header handling and content checks (pure modules, no I/O):
// - ContentScanner (content.ts): any message, split anywhere, gets the same verdict and the same output bytes;
//   reject mode relays accepted bytes unchanged and never accepts a bare CR, bare LF or NUL; normalize mode never
//   outputs a bare CR or LF; Received: fields in the header section are counted exactly (any letter case,
//   interleaved with other fields) and 49 (50 with the relay's own) is a loop (554 5.4.6), while Received: lines in the body are not
//   counted.
// - receivedHeader()/sanitizeHelo() (helo.ts): whatever the client sent (HELO name, reverse name, address, id,
//   recipient, TLS names), the prepended header is exactly one folded header field: CRLF only at line ends, every
//   continuation line starts with a tab, one ';' (before the date), no control characters; and its bytes
//   (receivedHeaderBytes) are valid UTF-8, ASCII without SMTPUTF8, with no control byte but those folds.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { BareLfMode } from '../config.ts';
import { ContentScanner, type ContentLimits } from './content.ts';
import { receivedHeader, receivedHeaderBytes, sanitizeHelo } from './helo.ts';

const RUNS = Number(process.env['MAILROUTE_FUZZ_RUNS'] ?? 300);

const limits = (bareLf: BareLfMode, over: Partial<ContentLimits> = {}): ContentLimits => ({
  bareLf,
  maxBytes: 1 << 20,
  hopLimit: 50,
  maxLineLength: 200,
  ...over,
});

type Outcome = { ok: true; out: Buffer } | { ok: false; code: number; enhanced: string; reason: string };

function scan(
  input: Buffer,
  l: ContentLimits,
  cuts: number[],
  byteByByte = false,
): { outcome: Outcome; received: number } {
  const s = new ContentScanner(l, { byteByByte });
  const points = [
    0,
    ...[...new Set(cuts.map((c) => c % (input.length + 1)))].sort((a, b) => a - b),
    input.length,
  ];
  const out: Buffer[] = [];
  for (let i = 0; i < points.length - 1; i++) {
    const r = s.write(input.subarray(points[i], points[i + 1]));
    if (!r.ok) {
      const { code, enhanced } = r.refusal.reply;
      return {
        outcome: { ok: false, code, enhanced, reason: r.refusal.reason },
        received: s.receivedHeaders,
      };
    }
    out.push(...r.out);
  }
  const e = s.end();
  if (!e.ok) {
    const { code, enhanced } = e.refusal.reply;
    return { outcome: { ok: false, code, enhanced, reason: e.refusal.reason }, received: s.receivedHeaders };
  }
  out.push(...e.out);
  return { outcome: { ok: true, out: Buffer.concat(out) }, received: s.receivedHeaders };
}

/** Bytes biased towards the interesting ones: CR, LF, NUL, '.', ':' and the letters of "received". */
const byte = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(0x0d, 0x0a, 0x00, 0x2e, 0x3a, 0x20) },
  { weight: 3, arbitrary: fc.constantFrom(...Buffer.from('ReceivdREIVD')) },
  { weight: 4, arbitrary: fc.integer({ min: 0, max: 255 }) },
);
const message = fc.oneof(
  fc.array(byte, { maxLength: 400 }).map((a) => Buffer.from(a)),
  // well-formed CRLF messages with hostile fragments spliced into lines
  fc
    .array(
      fc.oneof(fc.string({ maxLength: 60 }), fc.constantFrom('Received: x', '.', '\n.\n', '\r.\r', '\0')),
      {
        maxLength: 20,
      },
    )
    .map((lines) => Buffer.from(`${lines.join('\r\n')}\r\n`, 'latin1')),
);
const cuts = fc.array(fc.nat(), { maxLength: 8 });
/** A header section, an empty line, then body lines with hostile fragments: what the body fast path sees. */
const withBody = fc
  .tuple(
    fc.constantFrom('', 'Subject: x\r\n', 'Received: a\r\nReceived: b\r\n'),
    fc.array(
      fc.oneof(
        { weight: 4, arbitrary: fc.string({ maxLength: 80 }) },
        {
          weight: 2,
          arbitrary: fc.constantFrom('x'.repeat(199), 'x'.repeat(200), 'x'.repeat(201), 'Received: y'),
        },
        { weight: 2, arbitrary: fc.constantFrom('\n', '\r', '\0', 'a\rb', 'a\nb', '\r\r\n', '.', '') },
      ),
      { maxLength: 30 },
    ),
    fc.boolean(),
  )
  .map(([head, lines, crlfEnd]) =>
    Buffer.from(`${head}\r\n${lines.join('\r\n')}${crlfEnd ? '\r\n' : ''}`, 'latin1'),
  );

const hasBare = (b: Buffer): boolean => {
  for (let i = 0; i < b.length; i++) {
    if (b[i] === 0x0d && b[i + 1] !== 0x0a) return true;
    if (b[i] === 0x0a && (i === 0 || b[i - 1] !== 0x0d)) return true;
  }
  return false;
};

describe('ContentScanner (fuzz)', { timeout: 300_000 }, () => {
  for (const mode of ['reject', 'normalize'] as const) {
    it(`${mode}: the verdict and the output do not depend on where chunks are split`, () => {
      fc.assert(
        fc.property(message, cuts, (input, c) => {
          const whole = scan(input, limits(mode), []);
          const split = scan(input, limits(mode), c);
          expect(split.outcome).toEqual(whole.outcome);
        }),
        { numRuns: RUNS },
      );
    });
  }

  for (const mode of ['reject', 'normalize'] as const) {
    it(`${mode}: the body fast path gives exactly the byte-by-byte verdict, output and Received count`, () => {
      fc.assert(
        fc.property(fc.oneof(withBody, message), cuts, (input, c) => {
          expect(scan(input, limits(mode), c)).toEqual(scan(input, limits(mode), c, true));
        }),
        { numRuns: RUNS * 3 },
      );
    });
  }

  it('reject: accepted bytes pass unchanged and never hold a bare CR/LF or NUL; refusals are 5xx with a reason', () => {
    fc.assert(
      fc.property(message, cuts, (input, c) => {
        const { outcome } = scan(input, limits('reject'), c);
        if (outcome.ok) {
          expect(outcome.out.equals(input)).toBe(true);
          expect(hasBare(input)).toBe(false);
          expect(input.includes(0)).toBe(false);
        } else {
          expect([552, 554]).toContain(outcome.code);
          expect(outcome.reason).toMatch(/^[A-Z][A-Za-z]+$/);
        }
      }),
      { numRuns: RUNS },
    );
  });

  it('normalize: the output never holds a bare CR or LF', () => {
    fc.assert(
      fc.property(message, cuts, (input, c) => {
        const { outcome } = scan(input, limits('normalize'), c);
        if (outcome.ok) expect(hasBare(outcome.out)).toBe(false);
      }),
      { numRuns: RUNS },
    );
  });

  const receivedName = fc.constantFrom('Received', 'RECEIVED', 'received', 'ReCeIvEd');
  const otherField = fc.constantFrom(
    'Subject: hi',
    'X-Received-By: no',
    'From: a@b',
    'DKIM-Signature: v=1',
    'Receivedx: no',
  );
  it('counts Received: fields of the header section exactly; 49 (50 with ours) is 554 5.4.6; body lines never count', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 60 }),
        fc.array(otherField, { maxLength: 10 }),
        fc.array(receivedName, { minLength: 60, maxLength: 60 }),
        fc.integer({ min: 0, max: 80 }),
        fc.nat(),
        cuts,
        (k, others, names, inBody, seed, c) => {
          const fields = names
            .slice(0, k)
            .map((n, i) => `${n}: from h${i} by relay; Sat, 28 Nov 2026 00:00:00 +0000`);
          others.forEach((o, i) => fields.splice((seed + i) % (fields.length + 1), 0, o));
          const body = Array.from({ length: inBody }, () => 'Received: in the body').join('\r\n');
          const input = Buffer.from(`${fields.join('\r\n')}\r\n\r\n${body}\r\n`, 'latin1');
          const { outcome, received } = scan(input, limits('reject', { maxLineLength: 1000 }), c);
          if (k <= 48) {
            expect(outcome.ok).toBe(true);
            expect(received).toBe(k);
          } else {
            expect(outcome).toMatchObject({ ok: false, code: 554, enhanced: '5.4.6' });
            expect(received).toBe(49);
          }
        },
      ),
      { numRuns: RUNS },
    );
  });
});

describe('receivedHeader / sanitizeHelo (fuzz)', { timeout: 300_000 }, () => {
  const hostile = fc.oneof(
    fc.string({ maxLength: 80 }),
    fc.string({ unit: 'binary', maxLength: 80 }),
    // any UTF-16 code unit, lone surrogates included
    fc.string({
      unit: fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)),
      maxLength: 80,
    }),
    fc.constantFrom(
      'evil\r\nX-Injected: yes',
      'a\rX-Injected: 1',
      'a\nX-Injected: 1',
      'x (comment) ; by other',
      '[127.0.0.1]\tX-Injected:1',
      'a\u2028b\u0085c',
      '\0\0',
      'x'.repeat(600),
      // low bytes CR, LF, NUL: what a latin1 encoding of the header made of them
      '"xčĊX-Injected:1čĊX-Other:2"@example.test',
      'aĀb',
      'jos\u00e9@example.test',
      'a\ud800b',
    ),
  );
  it('sanitizeHelo keeps only host name characters, at most 255', () => {
    fc.assert(
      fc.property(hostile, (h) => {
        const s = sanitizeHelo(h);
        expect(s).toMatch(/^[A-Za-z0-9.\-_:[\]]{1,255}$/);
      }),
      { numRuns: RUNS },
    );
  });

  it('the prepended header is exactly one well-formed, folded Received: field', () => {
    fc.assert(
      fc.property(
        fc.record({
          helo: fc.oneof(hostile, fc.constant(false as const), fc.constant(undefined)),
          clientAddress: hostile,
          clientHostname: hostile,
          byHostname: hostile,
          protocol: hostile,
          id: hostile,
          forRecipient: fc.option(hostile, { nil: undefined }),
          smtputf8: fc.boolean(),
          tls: fc.option(
            fc.record({
              protocol: fc.option(hostile, { nil: undefined }),
              cipher: fc.option(hostile, { nil: undefined }),
            }),
            {
              nil: undefined,
            },
          ),
          date: fc.date({ min: new Date(0), max: new Date(4_000_000_000_000), noInvalidDate: true }),
        }),
        (info) => {
          const fields: Parameters<typeof receivedHeader>[0] = {
            helo: info.helo,
            clientAddress: info.clientAddress,
            clientHostname: info.clientHostname,
            byHostname: info.byHostname,
            protocol: info.protocol,
            id: info.id,
            smtputf8: info.smtputf8,
            ...(info.forRecipient !== undefined ? { forRecipient: info.forRecipient } : {}),
            ...(info.tls !== undefined
              ? {
                  tls: {
                    ...(info.tls.protocol !== undefined ? { protocol: info.tls.protocol } : {}),
                    ...(info.tls.cipher !== undefined ? { cipher: info.tls.cipher } : {}),
                  },
                }
              : {}),
            date: info.date,
          };
          const h = receivedHeader(fields);
          expect(h.startsWith('Received: from ')).toBe(true);
          expect(h.endsWith('\r\n')).toBe(true);
          const lines = h.slice(0, -2).split('\r\n');
          for (const [i, line] of lines.entries()) {
            expect(line).not.toMatch(/[\r\n\0]/);
            // eslint-disable-next-line no-control-regex
            expect(line.replace(/^\t/, '')).not.toMatch(/[\x00-\x1f\x7f]/);
            if (i > 0) expect(line.startsWith('\t')).toBe(true);
          }
          expect(h.split(';').length).toBe(2);
          expect(lines[0]).toMatch(/^Received: from [A-Za-z0-9.\-_:[\]]+ \(/);
          // no C1 control, line or paragraph separator or lone surrogate either (a well-formed string)
          expect(h).not.toMatch(/[\u0080-\u009f\u2028\u2029]/);
          expect(h.isWellFormed()).toBe(true);
          // the bytes the relay prepends: that text as UTF-8, ASCII without SMTPUTF8, no control byte but the folds
          const bytes = receivedHeaderBytes(fields);
          expect(new TextDecoder('utf-8', { fatal: true }).decode(bytes)).toBe(h);
          if (!info.smtputf8) expect(bytes.every((b) => b < 0x80)).toBe(true);
          const byteLines = bytes.subarray(0, -2).toString('latin1').split('\r\n');
          expect(byteLines.length).toBe(lines.length);
          for (const [i, line] of byteLines.entries()) {
            // eslint-disable-next-line no-control-regex
            expect(line.replace(/^\t/, '')).not.toMatch(/[\x00-\x1f\x7f]/);
            if (i > 0) expect(line.startsWith('\t')).toBe(true);
          }
        },
      ),
      { numRuns: RUNS },
    );
  });
});
