import { describe, expect, it } from 'vitest';
import { buildDsn, foldLine, hostPortLabel, remoteMtaName, rfc5322Date, type DsnInput } from './dsn.ts';

const base: DsnInput = {
  hostname: 'relay.example',
  sender: 'alice@sender.example',
  queueId: '0abcdefgh0001xyz',
  arrivalDate: new Date('2026-11-28T10:00:00Z'),
  now: new Date('2026-11-28T10:05:00Z'),
  boundary: 'BOUNDARY-1',
  recipients: [
    {
      finalRecipient: 'bob@example.com',
      status: '5.1.1',
      diagnostic: '550 5.1.1 <bob@example.com>: no such user',
      remoteMta: '127.0.0.1',
      lastAttemptAt: new Date('2026-11-28T10:04:59Z'),
      expired: false,
    },
  ],
  originalHeaders: Buffer.from('Subject: hello\r\nFrom: alice@sender.example\r\nMessage-ID: <m1@x>\r\n'),
};

/** Splits a multipart body on its boundary into [headers, body] pairs. */
function parts(raw: string, boundary: string): { headers: string; body: string }[] {
  const body = raw.slice(raw.indexOf('\r\n\r\n') + 4);
  const segs = body.split(`--${boundary}`).slice(1, -1);
  return segs.map((s) => {
    const t = s.replace(/^\r\n/, '');
    const i = t.indexOf('\r\n\r\n');
    return { headers: t.slice(0, i), body: t.slice(i + 4) };
  });
}

describe('remoteMtaName: Remote-MTA is the host without the port (RFC 3464 §2.3.5)', () => {
  it.each([
    ['127.0.0.1:3601', '127.0.0.1'],
    ['mx.example.com:25', 'mx.example.com'],
    [hostPortLabel('::1', 2525), '::1'],
    [hostPortLabel('2001:db8::25', 25), '2001:db8::25'],
    ['mx.example.com', 'mx.example.com'],
  ])('%s -> %s', (label, name) => expect(remoteMtaName(label)).toBe(name));
});

describe('buildDsn', () => {
  it('is multipart/report with delivery-status and the original headers, CRLF only', () => {
    const raw = buildDsn(base).toString('utf8');
    const head = raw.slice(0, raw.indexOf('\r\n\r\n'));
    expect(head).toContain('From: Mail Delivery System <MAILER-DAEMON@relay.example>');
    expect(head).toContain('To: <alice@sender.example>');
    expect(head).toContain('Auto-Submitted: auto-replied');
    expect(head).toMatch(
      /Content-Type: multipart\/report; report-type=delivery-status;\r\n\tboundary="BOUNDARY-1"/,
    );
    expect(raw.replace(/\r\n/g, '')).not.toMatch(/[\r\n]/);
    const ps = parts(raw, 'BOUNDARY-1');
    expect(ps.map((p) => /Content-Type: ([^;\r\n]+)/.exec(p.headers)?.[1])).toEqual([
      'text/plain',
      'message/delivery-status',
      'text/rfc822-headers',
    ]);
    expect(ps[0]?.body).toContain('<bob@example.com>: 550 5.1.1 <bob@example.com>: no such user');
    const status = ps[1]?.body ?? '';
    expect(status).toContain('Reporting-MTA: dns; relay.example\r\n');
    expect(status).toContain('Arrival-Date: Sat, 28 Nov 2026 10:00:00 +0000\r\n');
    expect(status).toContain(
      [
        'Final-Recipient: rfc822; bob@example.com',
        'Action: failed',
        'Status: 5.1.1',
        'Remote-MTA: dns; 127.0.0.1',
        'Diagnostic-Code: smtp; 550 5.1.1 <bob@example.com>: no such user',
        'Last-Attempt-Date: Sat, 28 Nov 2026 10:04:59 +0000',
      ].join('\r\n'),
    );
    expect(ps[2]?.body).toBe('Subject: hello\r\nFrom: alice@sender.example\r\nMessage-ID: <m1@x>\r\n\r\n');
    expect(raw.endsWith('--BOUNDARY-1--\r\n')).toBe(true);
  });

  it.each([
    [
      'rewritten recipient gets Original-Recipient',
      { finalRecipient: 'bob@copy.example', originalRecipient: 'bob@example.com' },
      ['Final-Recipient: rfc822; bob@copy.example', 'Original-Recipient: rfc822; bob@example.com'],
    ],
    [
      'expiry without a server reply',
      {
        status: '4.4.7',
        diagnostic: 'expired after 5 attempts; last: connect ECONNREFUSED',
        expired: true,
        remoteMta: undefined,
      },
      // 82 octets on one line: folded to 78 (it was one line before the fold)
      [
        'Status: 4.4.7',
        'Diagnostic-Code: x-mailroute; expired after 5 attempts; last: connect\r\n ECONNREFUSED',
      ],
    ],
    // RFC 6533 §3: the 7-bit form in message/delivery-status (it was the raw UTF-8 `utf-8; jörg@example.com`)
    [
      'UTF-8 address',
      { finalRecipient: 'jörg@example.com' },
      ['Final-Recipient: utf-8; j\\x{F6}rg@example.com'],
    ],
    [
      'CR/LF in a diagnostic cannot inject fields',
      { diagnostic: '550 no\r\nStatus: 2.0.0' },
      ['Diagnostic-Code: smtp; 550 no Status: 2.0.0'],
    ],
  ])('%s', (_name, override, lines) => {
    const first = base.recipients[0]!;
    const raw = buildDsn({ ...base, recipients: [{ ...first, ...override }] }).toString('utf8');
    for (const l of lines) expect(raw).toContain(`${l}\r\n`);
    expect(raw.match(/^Status: /gm)?.length).toBe(1);
  });

  it('lists every failed recipient in its own block and converts bare LF in the original headers', () => {
    const r = base.recipients[0]!;
    const raw = buildDsn({
      ...base,
      recipients: [r, { ...r, finalRecipient: 'carol@example.com', status: '5.2.2' }],
      originalHeaders: Buffer.from('Subject: x\nFrom: y\n'),
    }).toString('utf8');
    expect(raw.match(/^Final-Recipient: /gm)?.length).toBe(2);
    expect(raw).toContain('Subject: x\r\nFrom: y\r\n');
  });

  it('formats dates per RFC 5322', () => {
    expect(rfc5322Date(new Date('2026-01-05T03:04:05Z'))).toBe('Mon, 5 Jan 2026 03:04:05 +0000');
  });
});

describe('buildDsn: delay notices (RFC 3464 Action: delayed)', () => {
  it('says delayed, keeps the 4.x.x status and tells until when the relay keeps trying', () => {
    const first = base.recipients[0]!;
    const raw = buildDsn({
      ...base,
      recipients: [
        {
          ...first,
          status: '4.2.0',
          diagnostic: '450 4.2.0 mailbox busy',
          action: 'delayed',
          willRetryUntil: new Date('2026-12-03T10:00:00Z'),
        },
      ],
    }).toString('utf8');
    expect(raw).toContain('Subject: Delayed Mail (still being retried)\r\n');
    expect(raw).toContain('This is a warning only');
    expect(raw).toContain(
      [
        'Final-Recipient: rfc822; bob@example.com',
        'Action: delayed',
        'Status: 4.2.0',
        'Remote-MTA: dns; 127.0.0.1',
        'Diagnostic-Code: smtp; 450 4.2.0 mailbox busy',
        'Last-Attempt-Date: Sat, 28 Nov 2026 10:04:59 +0000',
        'Will-Retry-Until: Thu, 3 Dec 2026 10:00:00 +0000',
      ].join('\r\n'),
    );
  });
});

describe('foldLine: lines of at most 78 octets where whitespace allows, never over 998 (RFC 5322 §2.1.1, §2.2.3)', () => {
  const a = (n: number): string => 'a'.repeat(n);
  it.each<[string, string, string[], { soft?: number; latin1?: boolean }?]>([
    ['short line unchanged', 'Status: 5.1.1', ['Status: 5.1.1']],
    ['exactly 78 octets unchanged', `X: ${a(75)}`, [`X: ${a(75)}`]],
    ['79 octets: folded before the last space', `X: ${a(70)} bcdefg`, [`X: ${a(70)}`, ' bcdefg']],
    [
      'folds before whitespace, keeping it (tab too)',
      `X: ${a(40)} ${a(40)}\t${a(40)}`,
      [`X: ${a(40)}`, ` ${a(40)}`, `\t${a(40)}`],
    ],
    ['a run without spaces up to 998 octets stays whole on its line', `X: ${a(995)}`, ['X:', ` ${a(995)}`]],
    ['998 octets without a space: one line', a(998), [a(998)]],
    ['999 octets without a space: cut at 998, the rest on a folded line', a(999), [a(998), ' a']],
    [
      '2,000 octets without a space: cut at 998 each line',
      `X-Long: ${a(2000)}`,
      ['X-Long:', ` ${a(997)}`, ` ${a(997)}`, ` ${a(6)}`],
    ],
    [
      'multi-byte UTF-8 counted in octets and never cut (ö is 2 octets)',
      'ö'.repeat(600),
      ['ö'.repeat(499), ` ${'ö'.repeat(101)}`],
    ],
    ['a 4-octet character is never cut', `${a(996)}😀b`, [a(996), ' 😀b']],
    ['trailing whitespace of a folded line dropped', `X: ${a(40)} ${a(40)}   `, [`X: ${a(40)}`, ` ${a(40)}`]],
    [
      'soft 998: only over-long lines folded',
      `X: ${a(500)} ${a(500)}`,
      [`X: ${a(500)}`, ` ${a(500)}`],
      { soft: 998 },
    ],
    ['latin1: one octet a character', 'é'.repeat(999), ['é'.repeat(998), ' é'], { soft: 998, latin1: true }],
  ])('%s', (_name, line, lines, opts) => {
    const out = foldLine(line, opts);
    expect(out).toEqual(lines);
    for (const l of out) {
      expect(opts?.latin1 === true ? l.length : Buffer.byteLength(l)).toBeLessThanOrEqual(998);
      expect(l).toMatch(/[^ \t]/); // never a line of whitespace only
    }
  });

  it('words: every line at most 78 octets, and unfolding gives the line back', () => {
    const line = `Diagnostic-Code: smtp; ${Array.from({ length: 60 }, (_, i) => `word${i}`).join(' ')}`;
    const out = foldLine(line);
    expect(out.length).toBeGreaterThan(1);
    for (const l of out) expect(Buffer.byteLength(l)).toBeLessThanOrEqual(78);
    expect(out.join('')).toBe(line);
  });
});

/** The DSN's lines (CRLF-separated), as octet lengths checked against RFC 5322 §2.1.1. */
const lines = (raw: Buffer): string[] => raw.toString('utf8').split('\r\n');
/** A header block or delivery-status block unfolded (RFC 5322 §2.2.3: CRLF before whitespace removed). */
const unfold = (s: string): string => s.replace(/\r\n(?=[ \t])/g, '');

describe('buildDsn: no line over 998 octets, whatever the reply (RFC 5322 §2.1.1)', () => {
  // what outcome.ts keeps of a 10-line 550 reply of ~110 characters a line: joined on one line, cut at 1,000
  const reply = Array.from(
    { length: 10 },
    (_, i) =>
      `550-5.7.1 line ${i}: your message was refused by the policy of this site because of a rule that hits`,
  ).join(' ');
  const kept = `${reply.slice(0, 1000)}... (${reply.length - 1000} more)`;

  it('folds Diagnostic-Code and wraps the text part: lines of 78 octets at most, the reply kept whole', () => {
    const first = base.recipients[0]!;
    const raw = buildDsn({ ...base, recipients: [{ ...first, diagnostic: kept }] });
    for (const l of lines(raw)) expect(Buffer.byteLength(l)).toBeLessThanOrEqual(78);
    const [human, status] = parts(raw.toString('utf8'), 'BOUNDARY-1');
    expect(unfold(status?.body ?? '')).toContain(`\r\nDiagnostic-Code: smtp; ${kept}\r\n`);
    expect(unfold(human?.body ?? '')).toContain(`\r\n<bob@example.com>: ${kept} (server 127.0.0.1)\r\n`);
  });

  it('a long address (no space) goes on its own folded line; a 2,000-octet one is cut at 998', () => {
    const first = base.recipients[0]!;
    const long = `${'b'.repeat(200)}@example.com`;
    const huge = `${'c'.repeat(2000)}@example.com`;
    const raw = buildDsn({
      ...base,
      recipients: [
        { ...first, finalRecipient: long, remoteMta: `${'m'.repeat(100)}.example` },
        { ...first, finalRecipient: huge, diagnostic: `550 ${'x'.repeat(2000)}` },
      ],
      originalHeaders: Buffer.from(`Subject: ${'s'.repeat(1500)}\r\nFrom: a@b\r\n`),
    });
    for (const l of lines(raw)) expect(Buffer.byteLength(l)).toBeLessThanOrEqual(998);
    const status = parts(raw.toString('utf8'), 'BOUNDARY-1')[1]?.body ?? '';
    expect(status).toContain(`Final-Recipient: rfc822;\r\n ${long}\r\n`);
    expect(status).toContain(`Remote-MTA: dns;\r\n ${'m'.repeat(100)}.example\r\n`);
    expect(status).toContain(`Final-Recipient: rfc822;\r\n ${'c'.repeat(997)}\r\n ${'c'.repeat(997)}\r\n`);
    expect(raw.toString('utf8')).toContain(
      `Subject:\r\n ${'s'.repeat(997)}\r\n ${'s'.repeat(503)}\r\nFrom: a@b\r\n`,
    );
  });
});

describe('buildDsn: non-ASCII (SMTPUTF8) addresses (RFC 6533)', () => {
  const first = base.recipients[0]!;
  const dsn = (headers: string): string =>
    buildDsn({
      ...base,
      recipients: [
        {
          ...first,
          finalRecipient: 'jörg+tag@例え.jp',
          originalRecipient: 'jörg@example.com',
          diagnostic: '550 5.1.1 <jörg+tag@例え.jp>: unknown 😀',
        },
      ],
      originalHeaders: Buffer.from(headers, 'utf8'),
    }).toString('utf8');

  it('message/delivery-status is 7-bit: utf-8 addresses as \\x{HEX}, the reply too; the text part keeps UTF-8', () => {
    const [human, status] = parts(dsn('Subject: hello\r\n'), 'BOUNDARY-1');
    const body = status?.body ?? '';
    expect(status?.headers).toBe('Content-Type: message/delivery-status');
    expect(body).not.toMatch(/[\u{80}-\u{10FFFF}]/u);
    expect(body).toContain('Final-Recipient: utf-8; j\\x{F6}rg\\x{2B}tag@\\x{4F8B}\\x{3048}.jp\r\n');
    expect(body).toContain('Original-Recipient: utf-8; j\\x{F6}rg@example.com\r\n');
    expect(body).toContain(
      'Diagnostic-Code: smtp; 550 5.1.1 <j\\x{F6}rg+tag@\\x{4F8B}\\x{3048}.jp>: unknown\r\n \\x{1F600}\r\n',
    );
    expect(human?.body).toContain('<jörg+tag@例え.jp>: 550 5.1.1 <jörg+tag@例え.jp>: unknown 😀');
  });

  it.each([
    ['7-bit headers: text/rfc822-headers', 'Subject: hello\r\n', 'text/rfc822-headers', '7bit'],
    [
      'UTF-8 headers: message/global-headers (RFC 6533 §6)',
      'Subject: grüße\r\n',
      'message/global-headers',
      '8bit',
    ],
  ])('%s', (_name, headers, type, cte) => {
    const p = parts(dsn(headers), 'BOUNDARY-1')[2];
    expect(p?.headers).toBe(`Content-Type: ${type}\r\nContent-Transfer-Encoding: ${cte}`);
    expect(p?.body).toBe(`${headers}\r\n`);
  });
});
