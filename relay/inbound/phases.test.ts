import { describe, expect, it } from 'vitest';
import { toSmtpError } from './adapter.ts';
import { ConnectionCounter, GreetingGate, decideConnect, workerShare } from './connect.ts';
import {
  forAddress,
  protocolName,
  receivedHeader,
  receivedHeaderBytes,
  rfc5322Date,
  sanitizeHelo,
} from './helo.ts';
import { decideMail } from './mail.ts';
import { domainOf, isNonAscii } from '../../routing/address.ts';
import type { RefusalReason } from '../../routing/model.ts';
import { normalizeRecipient, reasonOf } from './rcpt.ts';
import { factOfReply } from './verify.ts';
import { REPLIES } from './verdict.ts';
import { fakeWallClock, restoreWallClock, stepWallClock } from '../../test/support/clock.ts';
import { waitFor } from '../../test/support/wait.ts';

describe('verdict adapter', () => {
  it('turns a refusal into an smtp-server error with responseCode and enhancedCode', () => {
    const e = toSmtpError(REPLIES.relayDenied());
    expect(e).toMatchObject({
      responseCode: 554,
      enhancedCode: '5.7.1',
      message: 'Relay access denied',
      reason: 'RelayDenied',
    });
    expect(toSmtpError({ verdict: 'accept' })).toBeNull();
  });
});

describe('connect phase', () => {
  const cases: [Parameters<typeof decideConnect>[0], string][] = [
    [{ remoteAddress: '1.2.3.4', fromAddress: 1, maxPerAddress: 2, draining: false }, 'accept'],
    [{ remoteAddress: '1.2.3.4', fromAddress: 3, maxPerAddress: 2, draining: false }, '421 4.7.0'],
    [{ remoteAddress: '1.2.3.4', fromAddress: 1, maxPerAddress: 2, draining: true }, '421 4.3.2'],
  ];
  for (const [facts, want] of cases) {
    it(`${JSON.stringify(facts)} -> ${want}`, () => {
      const v = decideConnect(facts);
      expect(v.verdict === 'accept' ? 'accept' : `${v.reply.code} ${v.reply.enhanced}`).toBe(want);
    });
  }
  it('counts connections per address', () => {
    const c = new ConnectionCounter();
    expect(c.open('a')).toBe(1);
    expect(c.open('a')).toBe(2);
    c.close('a');
    c.close('b');
    expect(c.count('a')).toBe(1);
    expect(c.total).toBe(1);
  });
  it('holds the greeting back until an address passes, for passTtl', () => {
    let now = 0;
    const g = new GreetingGate({ delayMs: 100, passTtlMs: 1000, now: () => now, maxEntries: 2 });
    expect(g.delayFor('a')).toBe(100);
    g.pass('a');
    expect(g.delayFor('a')).toBe(0);
    now = 1001;
    expect(g.delayFor('a')).toBe(100);
    g.pass('a');
    g.pass('b');
    g.pass('c'); // bounded: the oldest is forgotten
    expect(g.delayFor('a')).toBe(100);
    expect(g.delayFor('c')).toBe(0);
    expect(new GreetingGate({ delayMs: 0 }).delayFor('x')).toBe(0);
  });
  it('a step of the wall clock back does not stretch a pass: with its default clock, it ends after passTtl of real time', async () => {
    fakeWallClock(); // before the gate exists: a default taken from the real Date would not see the step
    try {
      const g = new GreetingGate({ delayMs: 100, passTtlMs: 300 });
      g.pass('a');
      expect(g.delayFor('a')).toBe(0);
      stepWallClock(-3_600_000);
      // before the fix (passes on Date.now): no greeting delay for an hour and 300 ms
      await waitFor(() => g.delayFor('a') === 100, { timeoutMs: 3_000, what: 'the pass ended' });
    } finally {
      restoreWallClock();
    }
  });
});

describe('helo phase and the Received: header', () => {
  it('sanitizes the HELO name so nothing can be injected', () => {
    expect(sanitizeHelo('mail.example.com')).toBe('mail.example.com');
    expect(sanitizeHelo('[192.0.2.1]')).toBe('[192.0.2.1]');
    expect(sanitizeHelo('evil\r\nX-Injected: 1')).toBe('evilX-Injected:1');
    expect(sanitizeHelo('a (b); c')).toBe('abc');
    expect(sanitizeHelo('\u0000\u0007')).toBe('unknown');
    expect(sanitizeHelo(false)).toBe('unknown');
    expect(sanitizeHelo('x'.repeat(300)).length).toBe(255);
  });
  it('names the protocol per RFC 3848', () => {
    expect(protocolName('HELO', false, false)).toBe('SMTP');
    expect(protocolName('EHLO', false, false)).toBe('ESMTP');
    expect(protocolName('EHLO', true, false)).toBe('ESMTPS');
    expect(protocolName('EHLO', true, true)).toBe('ESMTPSA');
    expect(protocolName('EHLO', false, true)).toBe('ESMTPA');
  });
  it('builds one folded header with every line CRLF-terminated and no raw client bytes', () => {
    const h = receivedHeader({
      helo: 'client\r\nBcc: x',
      clientAddress: '192.0.2.1',
      clientHostname: 'client.example',
      byHostname: 'relay.example',
      protocol: 'ESMTPS',
      id: 'abc.1',
      forRecipient: 'a@b.example>\r\nX: y',
      tls: { protocol: 'TLSv1.3', cipher: 'TLS_AES_256_GCM_SHA384' },
      date: new Date('2026-11-28T16:05:38Z'),
    });
    expect(h).toBe(
      'Received: from clientBcc:x (client.example [192.0.2.1])\r\n\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384)\r\n\tby relay.example (mailroute) with ESMTPS id abc.1\r\n\tfor <a@b.exampleX:y>;\r\n\tSat, 28 Nov 2026 16:05:38 +0000\r\n',
    );
    expect(/(?<!\r)\n|\r(?!\n)/.test(h)).toBe(false);
  });
  // [what, recipient, SMTPUTF8, what `for <...>` shows ('' : no for clause)]
  it.each([
    ['ASCII stays', 'a@example.test', false, 'a@example.test'],
    ['ASCII, SMTPUTF8', 'a@example.test', true, 'a@example.test'],
    ['Unicode letters stay with SMTPUTF8', 'josé@example.test', true, 'josé@example.test'],
    ['no Unicode without SMTPUTF8: left out', 'josé@example.test', false, ''],
    // č U+010D, Ċ U+010A, Ā U+0100: their low bytes are CR, LF, NUL (the latin1 defect); letters, so kept, as UTF-8
    [
      'letters whose low byte is CR or LF stay (UTF-8 makes them safe)',
      '"xčĊX-Spam-Flag:NOčĊX-Spam-Score:-9"@example.test',
      true,
      '"xčĊX-Spam-Flag:NOčĊX-Spam-Score:-9"@example.test',
    ],
    ['Ā (low byte NUL) stays', 'Ā@example.test', true, 'Ā@example.test'],
    ['an astral character stays', '😀@example.test', true, '😀@example.test'],
    ['CR, LF and what they would inject', 'a@b.example>\r\nX: y', false, 'a@b.exampleX:y'],
    ['NUL, DEL and other C0 controls go', 'a\u0000b\u007fc\u001bd\te@x.test', false, 'abcde@x.test'],
    ['C1 controls go (NEL U+0085 included)', 'a\u0080b\u0085c\u009fd@x.test', true, 'abcd@x.test'],
    ['line and paragraph separators go', 'a\u2028b\u2029c@x.test', true, 'abc@x.test'],
    ['white space of any kind goes', '"a b\u00a0c\u3000d"@x.test', true, '"abcd"@x.test'],
    ['bidirectional-text controls go', 'a\u202eb\u2066c@x.test', true, 'abc@x.test'],
    ['a lone surrogate goes (no UTF-8 form)', 'a\ud800b\udc00c@x.test', true, 'abc@x.test'],
    ['what ends the clause goes', 'a<b>c;d(e)f@x.test', false, 'abcdef@x.test'],
    ['nothing left: no clause', '\r\n\u0000<>', true, ''],
  ])('for <...>: %s', (_what, recipient, smtputf8, want) => {
    expect(forAddress(recipient, smtputf8)).toBe(want);
    const h = receivedHeaderBytes({
      helo: 'client.test',
      clientAddress: '192.0.2.1',
      clientHostname: '',
      byHostname: 'relay.test',
      protocol: 'ESMTP',
      id: 'abc.1',
      forRecipient: recipient,
      smtputf8,
      date: new Date('2026-11-28T16:05:38Z'),
    });
    const forLine = want === '' ? '' : `\r\n\tfor <${want}>`;
    const expected = `Received: from client.test ([192.0.2.1])\r\n\tby relay.test (mailroute) with ESMTP id abc.1${forLine};\r\n\tSat, 28 Nov 2026 16:05:38 +0000\r\n`;
    // the bytes the relay prepends: UTF-8 (ASCII when nothing in it is not), never latin1
    expect(h.toString('hex')).toBe(Buffer.from(expected, 'utf8').toString('hex'));
    expect(new TextDecoder('utf-8', { fatal: true }).decode(h)).toBe(expected);
    if (!smtputf8) expect(h.every((b) => b < 0x80)).toBe(true);
    // no control byte but the folds the header writes (CRLF, then a tab)
    const lines = h.subarray(0, -2).toString('latin1').split('\r\n');
    expect(lines.slice(1).every((l) => l.startsWith('\t'))).toBe(true);
    // eslint-disable-next-line no-control-regex
    expect(lines.some((l) => /[\x00-\x08\x0a-\x1f\x7f]/.test(l))).toBe(false);
  });
  it('formats RFC 5322 dates', () => {
    expect(rfc5322Date(new Date('2026-01-05T03:04:05Z'))).toBe('Mon, 5 Jan 2026 03:04:05 +0000');
  });
});

describe('workerShare: a connection limit split between worker processes', () => {
  it.each([
    [7, 2, [4, 3]],
    [5, 2, [3, 2]],
    [50, 2, [25, 25]],
    [1000, 3, [334, 333, 333]],
    [10, 4, [3, 3, 2, 2]],
    [8, 1, [8]],
    [1, 2, [1, 1]], // count > limit: never 0, so the total is count
    [3, 5, [1, 1, 1, 1, 1]],
  ])('limit %i over %i workers: %j', (limit, count, shares) => {
    const got = Array.from({ length: count }, (_, i) => workerShare(limit, count, i));
    expect(got).toEqual(shares);
    if (limit >= count) expect(got.reduce((a, b) => a + b, 0)).toBe(limit);
  });
});

describe('mail and rcpt phases', () => {
  it('MAIL FROM: shutdown, declared size, no routing table', () => {
    const base = {
      address: 'a@b.c',
      maxMessageSize: 100,
      draining: false,
      routingLoaded: true,
      smtputf8: false,
    };
    expect(decideMail(base).verdict).toBe('accept');
    expect(decideMail({ ...base, declaredSize: 101 })).toMatchObject({
      reply: { code: 552, enhanced: '5.3.4' },
    });
    expect(decideMail({ ...base, draining: true })).toMatchObject({ reply: { code: 421 } });
    expect(decideMail({ ...base, routingLoaded: false })).toMatchObject({ reply: { code: 451 } });
  });
  it('MAIL FROM: a non-ASCII address needs SMTPUTF8 (553 5.6.7)', () => {
    const base = { maxMessageSize: 100, draining: false, routingLoaded: true };
    expect(decideMail({ ...base, address: 'üser@b.c', smtputf8: false })).toMatchObject({
      verdict: 'reject',
      reply: { code: 553, enhanced: '5.6.7' },
    });
    expect(decideMail({ ...base, address: 'u@bücher.c', smtputf8: true }).verdict).toBe('accept');
    expect(decideMail({ ...base, address: '', smtputf8: false }).verdict).toBe('accept');
  });
  it('MAIL FROM: a sender with CR, LF or other controls is refused (553 5.1.7), like a spool file carrying one', () => {
    const base = { maxMessageSize: 100, draining: false, routingLoaded: true, smtputf8: false };
    for (const address of ['a@b.c\r\nRCPT TO:<x@y.z>', 'a\u0000@b.c', 'a b@c.d', '<a@b.c>', 'nobody', 'a@']) {
      expect(decideMail({ ...base, address })).toMatchObject({ reply: { code: 553, enhanced: '5.1.7' } });
    }
    expect(decideMail({ ...base, address: 'user.name+tag@example.com' }).verdict).toBe('accept');
  });
  it('routes by the domain after the last @ (percent hack and bang paths stay in the local part)', () => {
    expect(domainOf('user%evil.org@Example.COM')).toBe('example.com');
    expect(domainOf('evil.org!user@example.com')).toBe('example.com');
    expect(domainOf('postmaster')).toBe('');
    expect(normalizeRecipient('Alice@EXAMPLE.com')).toBe('Alice@example.com');
  });
  it('normalizes recipients to lowercase A-labels (IDN): U-labels converted, A-labels kept', () => {
    expect(normalizeRecipient('Alice@XN--MNCHEN-3YA.test')).toBe('Alice@xn--mnchen-3ya.test');
    expect(normalizeRecipient('alice@münchen.test')).toBe('alice@xn--mnchen-3ya.test');
    expect(normalizeRecipient('alice@ü b.test')).toBeUndefined();
    // an A-label sender or recipient is plain ASCII: no SMTPUTF8 needed
    expect(isNonAscii('alice@xn--mnchen-3ya.test')).toBe(false);
  });
  it('maps callout replies to mailbox facts', () => {
    expect(factOfReply(250)).toBe('exists');
    expect(factOfReply(550)).toBe('absent');
    expect(factOfReply(450)).toBe('unknown');
    expect(factOfReply(421)).toBe('unknown');
  });
});

describe("reasonOf: the rejection label comes from the plan's reason, not from its reply", () => {
  const reply = { code: 554, enhanced: '5.7.1', text: 'relay access denied' };
  it.each([
    ['reject', 'RelayDenied', 'RelayDenied'],
    ['reject', 'UnknownRecipient', 'UnknownRecipient'],
    // the same 5.7.1 reply with another reason is not counted as relay denied
    ['reject', 'BadSyntax', 'RecipientRejected'],
    ['tempfail', 'NoPolicy', 'RecipientDeferred'],
    ['tempfail', 'VerificationUnavailable', 'RecipientDeferred'],
  ] as const)('%s %s -> %s', (verdict, reason: RefusalReason, label) => {
    expect(reasonOf({ verdict, recipient: 'a@b.example', reply, reason, legs: [] })).toBe(label);
  });
});
