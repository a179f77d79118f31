import { describe, expect, it } from 'vitest';
import { ContentScanner, type ContentLimits } from './content.ts';
import { traceMatcher } from './trace.ts';

const limits = (over: Partial<ContentLimits> = {}): ContentLimits => ({
  bareLf: 'reject',
  maxBytes: 1 << 20,
  hopLimit: 50,
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
  // hop limit 50 counts the relay's own Received: (as Postfix's hopcount_limit does): 48 arrive and 49 leave; 49 arriving
  // would leave with 50 and is refused, as Postfix 3.7 refuses it
  {
    name: '48 Received pass (the message leaves with 49)',
    input: `${received(48)}S: a\r\n\r\nb\r\n`,
    normalized: `${received(48)}S: a\r\n\r\nb\r\n`,
  },
  {
    name: '49 Received reach the hop limit',
    input: `${received(49)}S: a\r\n\r\nb\r\n`,
    reject: 'TooManyHops',
  },
  { name: '50 Received too', input: `${received(50)}S: a\r\n\r\nb\r\n`, reject: 'TooManyHops' },
  {
    name: 'RECEIVED case-insensitive',
    input: `${'RECEIVED: x\r\n'.repeat(49)}\r\nb\r\n`,
    reject: 'TooManyHops',
  },
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

describe("ContentScanner: the relay's own trace (loop at its first return)", () => {
  const own = limits({ ownTrace: traceMatcher('mail-relay.mailroute-system') });
  const ours =
    'Received: from old.example.test (old.example.test [192.0.2.7])\r\n\tby relay-1 (mailroute mail-relay.mailroute-system) with ESMTP id 1.1;\r\n\tSat, 28 Nov 2026 10:00:00 +0000\r\n';
  const trace: { name: string; input: string; loop: boolean }[] = [
    { name: 'own trace, first field', input: `${ours}S: a\r\n\r\nb\r\n`, loop: true },
    {
      name: 'own trace below other hops',
      input: `${received(3)}${ours}${received(2)}S: a\r\n\r\nb\r\n`,
      loop: true,
    },
    {
      name: 'own trace refolded by another server (spaces, other line breaks)',
      input:
        'Received: from a (a [192.0.2.1]) by\r\n   relay-0    (mailroute\r\n mail-relay.mailroute-system)\r\n  with ESMTPS id 2.1; Sat, 28 Nov 2026 10:00:00 +0000\r\n\r\nb\r\n',
      loop: true,
    },
    {
      name: 'letter case differs',
      input:
        'RECEIVED: from a BY RELAY-0 (MAILROUTE MAIL-RELAY.MAILROUTE-SYSTEM) with ESMTP id 1; date\r\n\r\nb\r\n',
      loop: true,
    },
    {
      name: 'a message that is all header',
      input: 'Received: from a by relay-0 (mailroute mail-relay.mailroute-system) with ESMTP id 1; date\r\n',
      loop: true,
    },
    {
      name: 'another installation (another cluster id)',
      input: `${ours.replace('mail-relay.mailroute-system', 'mail-relay.other-ns')}S: a\r\n\r\nb\r\n`,
      loop: false,
    },
    {
      name: 'a cluster id that only starts with ours',
      input: `${ours.replace('mail-relay.mailroute-system', 'mail-relay.mailroute-system.eu')}\r\nb\r\n`,
      loop: false,
    },
    {
      name: 'a release before cluster ids: (mailroute)',
      input: 'Received: from a by relay-0 (mailroute) with ESMTP id 1; date\r\n\r\nb\r\n',
      loop: false,
    },
    {
      name: 'the comment in the from clause, not after by',
      input:
        'Received: from relay-0 (mailroute mail-relay.mailroute-system) by mx.other.test with ESMTP; date\r\n\r\nb\r\n',
      loop: false,
    },
    {
      name: 'the comment in another field',
      input: 'X-Trace: by relay-0 (mailroute mail-relay.mailroute-system)\r\nSubject: x\r\n\r\nb\r\n',
      loop: false,
    },
    {
      name: 'the comment in the body',
      input: `S: a\r\n\r\n${ours}`,
      loop: false,
    },
  ];
  for (const c of trace) {
    it(`${c.name}: ${c.loop ? 'refused as a loop' : 'passes'} at every split point`, () => {
      const n = Buffer.byteLength(c.input, 'latin1');
      for (let cut = 0; cut <= n; cut++) {
        const splits = cut === 0 || cut === n ? [] : [cut];
        const r = run(c.input, own, splits);
        if (c.loop) expect(r.reason, `cut ${cut}`).toBe('Loop');
        else expect(r.out, `cut ${cut}`).toBe(c.input);
      }
    });
  }

  it('without a cluster id there is no trace check', () => {
    expect(run(`${ours}\r\nb\r\n`, limits()).out).toBe(`${ours}\r\nb\r\n`);
  });
});
