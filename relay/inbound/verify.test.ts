import { describe, expect, it } from 'vitest';
import { cacheSpelling } from '../../routing/address.ts';
import type { MailboxFact, ServerRoute } from '../../routing/model.ts';
import type { CalloutPool, CalloutProbe } from './callout.ts';
import {
  cacheTtlFor,
  createVerifier,
  enhancedStatusOf,
  factOfReply,
  noAnswerWarning,
  refusesForSmtpUtf8,
} from './verify.ts';

const ttl = { cacheTtlMs: 3_600_000, negativeTtlMs: 600_000, unknownTtlMs: 30_000 };

describe('cacheTtlFor', () => {
  it.each<[string, CalloutProbe, MailboxFact, number]>([
    ['exists: cacheTTL', { kind: 'reply', code: 250, text: '250 ok' }, 'exists', 3_600_000],
    ['absent: the negative TTL', { kind: 'reply', code: 550, text: '550 no' }, 'absent', 600_000],
    ['a 4xx reply: the unknown TTL', { kind: 'reply', code: 450, text: '450 later' }, 'unknown', 30_000],
    ['no reply (connection): not cached', { kind: 'failed', text: 'ECONNREFUSED' }, 'unknown', 0],
    ['busy: not cached', { kind: 'busy', text: 'busy' }, 'unknown', 0],
    ['suspended: not cached', { kind: 'suspended', text: 'down' }, 'unknown', 0],
    [
      'not asked for want of SMTPUTF8: the unknown TTL',
      { kind: 'unsupported', text: 'no SMTPUTF8' },
      'unknown',
      30_000,
    ],
  ])('%s', (_name, probe, fact, want) => {
    expect(cacheTtlFor(probe, fact, ttl)).toBe(want);
  });

  it('never caches longer than cacheTTL', () => {
    const short = { ...ttl, cacheTtlMs: 1000 };
    expect(cacheTtlFor({ kind: 'reply', code: 550, text: '' }, 'absent', short)).toBe(1000);
    expect(cacheTtlFor({ kind: 'reply', code: 451, text: '' }, 'unknown', short)).toBe(1000);
  });

  it.each([
    [250, 'exists'],
    [251, 'exists'],
    [550, 'absent'],
    [553, 'absent'],
    [450, 'unknown'],
    [530, 'unknown'],
  ] as const)('RCPT %d -> %s', (c, fact) => {
    expect(factOfReply(c)).toBe(fact);
  });
});

describe('factOfReply: a refusal for want of SMTPUTF8 is never absent', () => {
  it.each<[string, number, string, MailboxFact]>([
    ["Postfix's 553 5.6.7", 553, '553 5.6.7 Must declare SMTPUTF8 to send unicode address', 'unknown'],
    ['550 5.6.7', 550, '550 5.6.7 Non-ASCII addresses not permitted for that recipient', 'unknown'],
    ['553 5.6.9 (UTF-8 header)', 553, '553 5.6.9 UTF-8 header message cannot be transferred', 'unknown'],
    ['any X.6 class, 5.6.10', 550, '550 5.6.10 UTF-8 string reply is required', 'unknown'],
    [
      'without an enhanced code, SMTPUTF8 named',
      553,
      '553 Must declare SMTPUTF8 to send unicode address',
      'unknown',
    ],
    ['SMTPUTF8 named in lower case', 550, '550 smtputf8 required', 'unknown'],
    [
      '550 5.1.1 stays absent',
      550,
      '550 5.1.1 <josé@x.test>: Recipient address rejected: User unknown',
      'absent',
    ],
    ['553 5.1.3 (syntax) stays absent', 553, '553 5.1.3 bad address syntax', 'absent'],
    ['550 without text stays absent', 550, '', 'absent'],
    ['5.6.7 in the text, not as the status', 550, '550 5.1.1 no such user (see 5.6.7)', 'absent'],
    ['a 4xx about SMTPUTF8 is unknown as any 4xx', 450, '450 4.6.7 try SMTPUTF8 later', 'unknown'],
    ['250 exists whatever it says', 250, '250 2.1.5 SMTPUTF8 ok', 'exists'],
  ])('%s', (_name, c, text, fact) => {
    expect(factOfReply(c, text)).toBe(fact);
  });

  it.each([
    ['553 5.6.7 Must declare SMTPUTF8', true],
    ['553-5.6.7 first line of many', true],
    ['550 5.16.7 subject 16, not 6', false],
    ['550 5.1.1 no such user', false],
    ['550 4.6.7.1 odd', false],
    ['', false],
  ] as const)('refusesForSmtpUtf8(%j) -> %s', (text, want) => {
    expect(refusesForSmtpUtf8(text)).toBe(want);
  });
});

describe('createVerifier (cache in front of a pool)', () => {
  const server: ServerRoute = {
    name: 'old',
    host: '127.0.0.1',
    port: 25,
    mx: false,
    tls: 'None',
    maxConnections: 1,
  };
  const recording = (replies: Record<string, number>) => {
    const asked: string[] = [];
    const pool: CalloutPool = {
      probe: (_s, a) => {
        asked.push(a);
        const c = replies[a];
        return Promise.resolve(
          c === undefined ? { kind: 'failed', text: 'down' } : { kind: 'reply', code: c, text: `${c} x` },
        );
      },
      stats: () => ({ connections: 0, waiting: 0 }),
      close: () => undefined,
    };
    return { asked, pool };
  };

  it('caches per (server, address) case-insensitively, expires by TTL, and shares concurrent lookups', async () => {
    let t = 0;
    const { asked, pool } = recording({ 'a@x.test': 250, 'b@x.test': 550 });
    const v = createVerifier({ pool, negativeTtlMs: 100, now: () => t });
    const [one, two] = await Promise.all([
      v.check(server, 'a@x.test', 1000),
      v.check(server, 'A@x.test', 1000),
    ]);
    expect(one).toEqual({ fact: 'exists', reply: '250 x', cached: false });
    expect(two.fact).toBe('exists');
    expect(asked).toEqual(['a@x.test']);
    expect((await v.check(server, 'b@x.test', 1000)).fact).toBe('absent');
    t = 99;
    expect(await v.check(server, 'b@x.test', 1000)).toMatchObject({ fact: 'absent', cached: true });
    t = 100;
    await v.check(server, 'b@x.test', 1000);
    expect(asked.filter((a) => a === 'b@x.test')).toHaveLength(2);
    // another server is another entry
    await v.check({ ...server, port: 2525 }, 'a@x.test', 1000);
    expect(asked.filter((a) => a === 'a@x.test')).toHaveLength(2);
  });

  // (changed with the fix for a subaddress's answer recorded for its mailbox: the mailbox is now asked first, so the
  // one callout is about alice@, and an absent mailbox costs one callout more, once per negative TTL)
  it('a subaddress is answered by its mailbox when that exists: alice+1, alice+2, ... cost one callout', async () => {
    const { asked, pool } = recording({
      'alice@x.test': 250,
      'bob@x.test': 550,
      'bob+1@x.test': 550,
      'bob+2@x.test': 550,
      'carol@x.test': 250,
    });
    const v = createVerifier({ pool });
    expect(await v.check(server, 'alice+1@x.test', 1000, undefined, 'alice@x.test')).toMatchObject({
      fact: 'exists',
      cached: false,
    });
    expect(await v.check(server, 'alice+2@x.test', 1000, undefined, 'alice@x.test')).toMatchObject({
      fact: 'exists',
      cached: true,
    });
    // the mailbox itself, asked later, is known too
    expect(await v.check(server, 'alice@x.test', 1000)).toMatchObject({ fact: 'exists', cached: true });
    expect(asked).toEqual(['alice@x.test']);
    // an absent mailbox: each subaddress is asked itself (the mailbox once)
    await v.check(server, 'bob+1@x.test', 1000, undefined, 'bob@x.test');
    await v.check(server, 'bob+2@x.test', 1000, undefined, 'bob@x.test');
    expect(asked.filter((a) => a.startsWith('bob'))).toEqual(['bob@x.test', 'bob+1@x.test', 'bob+2@x.test']);
    // a mailbox asked about first answers for its subaddresses
    await v.check(server, 'carol@x.test', 1000);
    expect(await v.check(server, 'carol+x@x.test', 1000, undefined, 'carol@x.test')).toMatchObject({
      fact: 'exists',
      cached: true,
    });
    expect(asked.filter((a) => a.startsWith('carol'))).toEqual(['carol@x.test']);
  });

  it('a mailbox entry expires with its TTL, and is per server', async () => {
    let t = 0;
    const { asked, pool } = recording({ 'a@x.test': 250 });
    const v = createVerifier({ pool, now: () => t });
    await v.check(server, 'a+1@x.test', 1000, undefined, 'a@x.test');
    t = 999;
    await v.check(server, 'a+2@x.test', 1000, undefined, 'a@x.test');
    t = 1000;
    await v.check(server, 'a+2@x.test', 1000, undefined, 'a@x.test');
    await v.check({ ...server, port: 2525 }, 'a+1@x.test', 1000, undefined, 'a@x.test');
    expect(asked).toEqual(['a@x.test', 'a@x.test', 'a@x.test']);
  });

  it('a 553 5.6.7 and a server without SMTPUTF8 are unknown, cached as unknown (30 s, not 10 min), and logged', async () => {
    let t = 0;
    const asked: string[] = [];
    const pool: CalloutPool = {
      probe: (_s, a) => {
        asked.push(a);
        return Promise.resolve<CalloutProbe>(
          a.endsWith('@pf.test')
            ? { kind: 'reply', code: 553, text: '553 5.6.7 Must declare SMTPUTF8 to send unicode address' }
            : { kind: 'unsupported', text: 'no SMTPUTF8' },
        );
      },
      stats: () => ({ connections: 0, waiting: 0 }),
      close: () => undefined,
    };
    const warned: Record<string, unknown>[] = [];
    const v = createVerifier({ pool, now: () => t, log: { warn: (obj) => warned.push(obj) } });
    expect(await v.check(server, 'josé@pf.test', 3_600_000)).toEqual({
      fact: 'unknown',
      reply: '553 5.6.7 Must declare SMTPUTF8 to send unicode address',
      cached: false,
    });
    expect(await v.check(server, 'josé@old.test', 3_600_000)).toEqual({
      fact: 'unknown',
      reply: 'unsupported: no SMTPUTF8',
      cached: false,
    });
    expect(warned).toEqual([
      {
        server: 'old',
        host: '127.0.0.1',
        port: 25,
        reply: '553 5.6.7 Must declare SMTPUTF8 to send unicode address',
      },
      { server: 'old', host: '127.0.0.1', port: 25, reply: 'unsupported: no SMTPUTF8' },
    ]);
    t = 29_999;
    expect(await v.check(server, 'josé@pf.test', 3_600_000)).toMatchObject({ fact: 'unknown', cached: true });
    expect(await v.check(server, 'josé@old.test', 3_600_000)).toMatchObject({
      fact: 'unknown',
      cached: true,
    });
    t = 30_000;
    await v.check(server, 'josé@pf.test', 3_600_000);
    await v.check(server, 'josé@old.test', 3_600_000);
    expect(asked).toEqual(['josé@pf.test', 'josé@old.test', 'josé@pf.test', 'josé@old.test']);
  });

  it('does not cache a failure to get an answer', async () => {
    const { asked, pool } = recording({});
    const v = createVerifier({ pool });
    expect(await v.check(server, 'c@x.test', 1000)).toEqual({
      fact: 'unknown',
      reply: 'failed: down',
      cached: false,
    });
    await v.check(server, 'c@x.test', 1000);
    expect(asked).toHaveLength(2);
  });
});

describe('factOfReply: a 550/551/553 is absent only when it refuses the address', () => {
  it.each<[string, string, MailboxFact]>([
    // the callout itself refused: every real mailbox was taken for absent
    [
      'postscreen',
      '550 5.7.1 Service unavailable; client [192.0.2.1] blocked using zen.spamhaus.org',
      'unknown',
    ],
    ['Microsoft 365, banned IP', '550 5.7.606 Access denied, banned sending IP [192.0.2.1]', 'unknown'],
    [
      'Postfix refusing the null sender at RCPT',
      '550 5.7.1 <>: Sender address rejected: Access denied',
      'unknown',
    ],
    ['a sender status (X.1.8)', '553 5.1.8 <>: Sender address rejected: Domain not found', 'unknown'],
    ['Exim, AUTH', '550 Authentication required', 'unknown'],
    ['Exim, TLS', '550 STARTTLS required', 'unknown'],
    ['Exim, ACL', '550 Administrative prohibition', 'unknown'],
    ['relaying', '550 Relaying denied', 'unknown'],
    ['a block list', '550 Your IP 192.0.2.1 is blacklisted', 'unknown'],
    ['spam', '550 Message rejected as spam', 'unknown'],
    ['policy', '553 Rejected by local policy', 'unknown'],
    ['too many', '550 Too many invalid recipients', 'unknown'],
    ['the sender, without a status', '550 <>: Sender address rejected', 'unknown'],
    [
      "qmail's status at the end",
      "553 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)",
      'unknown',
    ],
    ['mail system (X.3)', '550 5.3.0 Mail system error', 'unknown'],
    ['protocol (X.5)', '550 5.5.1 Bad sequence of commands', 'unknown'],
    ['routing (X.4.4)', '550 5.4.4 Unable to route', 'unknown'],
    ['mailbox full (X.2.2): the mailbox is there', '550 5.2.2 Mailbox full', 'unknown'],
    ['X.0.0 says nothing: the text decides', '550 5.0.0 Access denied', 'unknown'],
    // the mailbox is not there
    [
      'Postfix',
      '550 5.1.1 <x@example.com>: Recipient address rejected: User unknown in virtual mailbox table',
      'absent',
    ],
    [
      'Exchange',
      '550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup',
      'absent',
    ],
    ['Gmail', '550-5.1.1 The email account that you tried to reach does not exist. Please try', 'absent'],
    [
      'Microsoft 365 (directory-based edge blocking)',
      '550 5.4.1 Recipient address rejected: Access denied. AS(201806281) [host.test]',
      'absent',
    ],
    ['Exim', '550 Unrouteable address', 'absent'],
    ['cPanel', '550 No such user here', 'absent'],
    [
      'Postfix without enhanced codes: the table name is no policy',
      '550 <x@example.com>: Recipient address rejected: User unknown in relay recipient table',
      'absent',
    ],
    [
      'mailbox disabled (X.2.1)',
      '550-5.2.1 The email account that you tried to reach is disabled.',
      'absent',
    ],
    ['moved (X.1.6)', '551 5.1.6 User has moved', 'absent'],
    ['X.1.0', '550 5.1.0 Address rejected', 'absent'],
    ["qmail's 5.1.1", '550 sorry, no mailbox here by that name. (#5.1.1)', 'absent'],
    ['the echoed address is no cause', '550 <blockley@example.com> rejected', 'absent'],
    ['X.0.0 with no cause named', '550 5.0.0 Requested action not taken: mailbox unavailable', 'absent'],
  ])('%s: %s -> %s', (_name, text, fact) => {
    expect(factOfReply(Number(text.slice(0, 3)), text)).toBe(fact);
  });

  it.each([
    ['550 5.1.1 x', { subject: 1, detail: 1 }],
    ['550-5.1.10 x', { subject: 1, detail: 10 }],
    ['553 sorry (#5.7.1)', { subject: 7, detail: 1 }],
    ['550 4.6.7.1 odd', undefined],
    ['550 no status', undefined],
  ] as const)('enhancedStatusOf(%j)', (text, want) => {
    expect(enhancedStatusOf(text)).toEqual(want);
  });
});

describe('noAnswerWarning: why recipients are tempfailed, once per server per minute', () => {
  const server = (name: string, port = 25): ServerRoute => ({
    name,
    host: '127.0.0.1',
    port,
    mx: false,
    tls: 'None',
    maxConnections: 1,
  });

  it('warns with the server and the reply, counts what it held back, and forgets the oldest server first', () => {
    let t = 0;
    const lines: Record<string, unknown>[] = [];
    const warn = noAnswerWarning({ warn: (obj) => lines.push(obj) }, () => t, 60_000, 2);
    warn(server('old'), 'failed', 'MAIL FROM:<>: 550 5.7.1 null sender refused');
    warn(server('old'), 'suspended', 'callouts suspended: AUTH failed');
    t = 59_999;
    warn(server('old'), 'failed', 'again');
    expect(lines).toEqual([
      {
        server: 'old',
        host: '127.0.0.1',
        port: 25,
        result: 'failed',
        reply: 'MAIL FROM:<>: 550 5.7.1 null sender refused',
        suppressed: 0,
      },
    ]);
    t = 60_000;
    warn(server('old'), 'suspended', 'callouts suspended: x');
    expect(lines[1]).toMatchObject({ result: 'suspended', suppressed: 2 });
    // another server is its own
    warn(server('other', 2525), 'failed', 'ECONNREFUSED');
    expect(lines).toHaveLength(3);
    // a third server pushes the least recently warned about (old) out: old warns again at once
    warn(server('third', 2526), 'failed', 'x');
    warn(server('old'), 'failed', 'y');
    expect(lines).toHaveLength(5);
  });
});

describe('cacheSpelling: NFC and NFD spellings are one entry', () => {
  it('josé@ as é and as e + U+0301 make one callout, which carries the address as the client sent it', async () => {
    const nfc = 'jos\u00e9@x.test';
    const nfd = 'jose\u0301@x.test';
    expect(cacheSpelling(nfd)).toBe(cacheSpelling(nfc));
    expect(cacheSpelling('Alice@X.test')).toBe('alice@x.test');
    const asked: string[] = [];
    const pool: CalloutPool = {
      probe: (_s, a) => {
        asked.push(a);
        return Promise.resolve<CalloutProbe>({ kind: 'reply', code: 250, text: '250 ok' });
      },
      stats: () => ({ connections: 0, waiting: 0 }),
      close: () => undefined,
    };
    const v = createVerifier({ pool });
    const server: ServerRoute = {
      name: 'old',
      host: '127.0.0.1',
      port: 25,
      mx: false,
      tls: 'None',
      maxConnections: 1,
    };
    expect((await v.check(server, nfd, 1000)).fact).toBe('exists');
    expect(await v.check(server, nfc, 1000)).toMatchObject({ fact: 'exists', cached: true });
    expect(asked).toEqual([nfd]);
  });
});
