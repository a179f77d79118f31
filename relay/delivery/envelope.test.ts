// EnvelopeShaper against nodemailer's own MimeNode.setEnvelope, the shaping it replaces on the delivery path: the same
// sender and recipients, in the same order, for random lists of addresses, whether an address is seen for the first
// time or remembered, and after the memory was emptied because it was full.
import fc from 'fast-check';
import MimeNode from 'nodemailer/lib/mime-node';
import { describe, expect, it } from 'vitest';
import { EnvelopeShaper } from './envelope.ts';

const RUNS = Number(process.env['MAILROUTE_FUZZ_RUNS'] ?? 300);

/** What transport.ts did before: one setEnvelope over the whole transaction. */
function reference(from: string, to: string[], size?: number): unknown {
  return new MimeNode('message/rfc822', { baseBoundary: 'mailroute' })
    .setEnvelope({ from, to, ...(size ? { size } : {}) })
    .getEnvelope();
}

const localPart = fc.oneof(
  fc.constantFrom(
    'user',
    'User.Name',
    'a+tag',
    'x',
    '"quoted local"',
    'ünïcode',
    'a..b',
    'a@b',
    ' spaced ',
    '',
  ),
  fc.stringMatching(/^[a-zA-Z0-9.+_-]{1,12}$/),
  fc.string({ maxLength: 8 }),
);
const domain = fc.constantFrom(
  'example.com',
  'EXAMPLE.com',
  'bücher.example',
  'BÜCHER.example',
  'xn--bcher-kva.example',
  'jõgeva.ee',
  '[192.0.2.1]',
  'a_b.example',
  'evil.example/mail.corp.example',
  '',
);
const address = fc.oneof(
  { weight: 6, arbitrary: fc.tuple(localPart, domain).map(([l, d]) => `${l}@${d}`) },
  {
    weight: 1,
    arbitrary: fc.constantFrom('', 'postmaster', 'a,b@example.com', 'x <y@example.com>', 'a@b@c'),
  },
  { weight: 1, arbitrary: fc.string({ maxLength: 20 }) },
);

describe('EnvelopeShaper', () => {
  it('shapes a transaction exactly as MimeNode.setEnvelope does, remembered or not', () => {
    const shaper = new EnvelopeShaper();
    const small = new EnvelopeShaper(3);
    fc.assert(
      fc.property(
        address,
        fc.array(address, { minLength: 1, maxLength: 6 }),
        fc.option(fc.nat(100_000), { nil: undefined }),
        (from, to, size) => {
          const want = reference(from, to, size);
          // twice: the first call may fill the memory, the second reads it
          expect(shaper.shape(from, to, size)).toEqual(want);
          expect(shaper.shape(from, to, size)).toEqual(want);
          // a memory of 3 addresses is emptied in the middle of most transactions
          expect(small.shape(from, to, size)).toEqual(want);
        },
      ),
      { numRuns: RUNS },
    );
  });

  it('punycodes a domain, keeps a UTF-8 local part with its UTF-8 domain, and drops duplicates', () => {
    const shaper = new EnvelopeShaper();
    expect(shaper.shape('Sender@Bücher.example', ['a@bücher.example', 'A@xn--bcher-kva.example'])).toEqual({
      from: 'Sender@xn--bcher-kva.example',
      to: ['a@xn--bcher-kva.example', 'A@xn--bcher-kva.example'],
    });
    expect(shaper.shape('', ['x@example.com', 'x@example.com'], 42)).toEqual({
      from: false,
      to: ['x@example.com'],
      size: 42,
    });
    expect(shaper.shape('jörg@bücher.example', ['jörg@xn--bcher-kva.example']).to).toEqual([
      'jörg@bücher.example',
    ]);
  });

  it('hands out a fresh envelope every time (nodemailer writes into it)', () => {
    const shaper = new EnvelopeShaper();
    const a = shaper.shape('s@example.com', ['r@example.com']);
    a.to.push('other@example.com');
    expect(shaper.shape('s@example.com', ['r@example.com']).to).toEqual(['r@example.com']);
  });

  it("shapeEach: shape()'s envelope, and the addresses each recipient became (duplicates still listed per recipient)", () => {
    const shaper = new EnvelopeShaper();
    const to = ['a@bücher.example', 'A@xn--bcher-kva.example', 'b@Example.COM', 'b@example.com'];
    const each = shaper.shapeEach('Sender@Bücher.example', to);
    const whole = shaper.shape('Sender@Bücher.example', to);
    expect({ from: each.from, to: each.to }).toEqual(whole);
    expect(each.byRecipient).toEqual([
      ['a@xn--bcher-kva.example'],
      ['A@xn--bcher-kva.example'],
      ['b@example.com'],
      ['b@example.com'],
    ]);
  });
});
