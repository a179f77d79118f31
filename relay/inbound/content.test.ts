import { describe, expect, it } from 'vitest';
import { ContentScanner, type ContentLimits } from './content.ts';

const limits = (over: Partial<ContentLimits> = {}): ContentLimits => ({
  bareLf: 'reject',
  maxBytes: 1 << 20,
  maxReceived: 50,
  maxLineLength: 1000,
  ...over,
});

/** Feeds the input split at the given points; returns the output or the refusal reason. */
function run(input: string, l: ContentLimits, splits: number[] = []): { out?: string; reason?: string } {
  const s = new ContentScanner(l);
  const buf = Buffer.from(input, 'latin1');
  const cuts = [0, ...splits, buf.length];
  const out: Buffer[] = [];
  for (let i = 0; i < cuts.length - 1; i++) {
    const r = s.write(buf.subarray(cuts[i], cuts[i + 1]));
    if (!r.ok) return { reason: r.refusal.reason };
    out.push(...r.out);
  }
  const e = s.end();
  if (!e.ok) return { reason: e.refusal.reason };
  out.push(...e.out);
  return { out: Buffer.concat(out).toString('latin1') };
}

const received = (n: number): string => 'Received: from x by y; date\r\n'.repeat(n);

const cases: { name: string; input: string; reject?: string; normalized?: string }[] = [
  { name: 'clean message', input: 'Subject: a\r\n\r\nbody\r\n', normalized: 'Subject: a\r\n\r\nbody\r\n' },
  {
    name: 'bare LF in body',
    input: 'Subject: a\r\n\r\nbo\ndy\r\n',
    reject: 'BareLineFeed',
    normalized: 'Subject: a\r\n\r\nbo\r\ndy\r\n',
  },
  {
    name: 'bare CR in body',
    input: 'Subject: a\r\n\r\nbo\rdy\r\n',
    reject: 'BareLineFeed',
    normalized: 'Subject: a\r\n\r\nbo\r\ndy\r\n',
  },
  {
    name: 'LF.LF smuggling',
    input: 'S: a\r\n\r\nx\n.\nMAIL FROM:<a@b>\r\n',
    reject: 'BareLineFeed',
    normalized: 'S: a\r\n\r\nx\r\n.\r\nMAIL FROM:<a@b>\r\n',
  },
  {
    name: 'CR.CR smuggling',
    input: 'S: a\r\n\r\nx\r.\rMAIL\r\n',
    reject: 'BareLineFeed',
    normalized: 'S: a\r\n\r\nx\r\n.\r\nMAIL\r\n',
  },
  {
    name: 'LF.CRLF smuggling',
    input: 'S: a\r\n\r\nx\n.\r\nRSET\r\n',
    reject: 'BareLineFeed',
    normalized: 'S: a\r\n\r\nx\r\n.\r\nRSET\r\n',
  },
  {
    name: 'CRLF.LF smuggling',
    input: 'S: a\r\n\r\nx\r\n.\nRSET\r\n',
    reject: 'BareLineFeed',
    normalized: 'S: a\r\n\r\nx\r\n.\r\nRSET\r\n',
  },
  {
    name: 'trailing bare CR',
    input: 'S: a\r\n\r\nx\r',
    reject: 'BareLineFeed',
    normalized: 'S: a\r\n\r\nx\r\n',
  },
  {
    name: 'CR CR LF',
    input: 'S: a\r\n\r\nx\r\r\n',
    reject: 'BareLineFeed',
    normalized: 'S: a\r\n\r\nx\r\n\r\n',
  },
  { name: 'NUL', input: 'S: a\r\n\r\nx\u0000y\r\n', reject: 'NulCharacter' },
  {
    name: '50 Received is fine',
    input: `${received(50)}S: a\r\n\r\nb\r\n`,
    normalized: `${received(50)}S: a\r\n\r\nb\r\n`,
  },
  { name: '51 Received is a loop', input: `${received(51)}S: a\r\n\r\nb\r\n`, reject: 'Loop' },
  { name: 'RECEIVED case-insensitive', input: `${'RECEIVED: x\r\n'.repeat(51)}\r\nb\r\n`, reject: 'Loop' },
  {
    name: 'Received in the body does not count',
    input: `S: a\r\n\r\n${received(60)}`,
    normalized: `S: a\r\n\r\n${received(60)}`,
  },
  {
    name: 'continuation lines do not count',
    input: `X: a\r\n${' Received: x\r\n'.repeat(60)}\r\nb\r\n`,
    normalized: `X: a\r\n${' Received: x\r\n'.repeat(60)}\r\nb\r\n`,
  },
  { name: 'line too long', input: `S: a\r\n\r\n${'x'.repeat(1001)}\r\n`, reject: 'LineTooLong' },
  {
    name: 'line at the limit',
    input: `S: a\r\n\r\n${'x'.repeat(1000)}\r\n`,
    normalized: `S: a\r\n\r\n${'x'.repeat(1000)}\r\n`,
  },
  {
    name: '8-bit bytes pass',
    input: 'S: \u00e9\r\n\r\n\u00ff\u0080\r\n',
    normalized: 'S: \u00e9\r\n\r\n\u00ff\u0080\r\n',
  },
];

describe('ContentScanner', () => {
  for (const c of cases) {
    it(`${c.name}: every split point gives the same outcome in both modes`, () => {
      const n = Buffer.byteLength(c.input, 'latin1');
      for (let cut = 0; cut <= n; cut++) {
        const splits = cut === 0 || cut === n ? [] : [cut];
        const rej = run(c.input, limits(), splits);
        if (c.reject) expect(rej.reason, `reject mode, cut ${cut}`).toBe(c.reject);
        else expect(rej.out, `reject mode, cut ${cut}`).toBe(c.input);
        const norm = run(c.input, limits({ bareLf: 'normalize' }), splits);
        if (c.normalized !== undefined) expect(norm.out, `normalize mode, cut ${cut}`).toBe(c.normalized);
        else expect(norm.reason, `normalize mode, cut ${cut}`).toBe(c.reject);
      }
    });
  }

  it('one byte at a time', () => {
    const input = 'S: a\r\n\r\nx\n.\ny\r\rz\r\n';
    const splits = Array.from({ length: input.length - 1 }, (_, i) => i + 1);
    expect(run(input, limits({ bareLf: 'normalize' }), splits).out).toBe(
      'S: a\r\n\r\nx\r\n.\r\ny\r\n\r\nz\r\n',
    );
    expect(run(input, limits(), splits).reason).toBe('BareLineFeed');
  });

  it('refuses more than maxBytes', () => {
    expect(run(`S: a\r\n\r\n${'x'.repeat(100)}\r\n`, limits({ maxBytes: 50 })).reason).toBe('TooLarge');
  });

  it('passes clean chunks through without copying', () => {
    const s = new ContentScanner(limits());
    const chunk = Buffer.from('Subject: a\r\n\r\nbody\r\n');
    const r = s.write(chunk);
    expect(r.ok && r.out[0]).toBe(chunk);
  });
});
