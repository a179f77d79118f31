import { describe, expect, it } from 'vitest';
import { buildDsn, hostPortLabel, remoteMtaName, rfc5322Date, type DsnInput } from './dsn.ts';

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
      ['Status: 4.4.7', 'Diagnostic-Code: x-mailroute; expired after 5 attempts; last: connect ECONNREFUSED'],
    ],
    ['UTF-8 address', { finalRecipient: 'jörg@example.com' }, ['Final-Recipient: utf-8; jörg@example.com']],
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
