import { describe, expect, it } from 'vitest';
import type { MailboxFact, ServerRoute } from '../../routing/model.ts';
import type { CalloutPool, CalloutProbe } from './callout.ts';
import { cacheTtlFor, createVerifier, factOfReply, refusesForSmtpUtf8 } from './verify.ts';

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

  it('a subaddress is answered by its mailbox when that exists: alice+1, alice+2, ... cost one callout', async () => {
    const { asked, pool } = recording({
      'alice+1@x.test': 250,
      'alice+2@x.test': 250,
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
    expect(asked).toEqual(['alice+1@x.test']);
    // an absent subaddress says nothing about its mailbox: each is asked
    await v.check(server, 'bob+1@x.test', 1000, undefined, 'bob@x.test');
    await v.check(server, 'bob+2@x.test', 1000, undefined, 'bob@x.test');
    expect(asked.filter((a) => a.startsWith('bob'))).toEqual(['bob+1@x.test', 'bob+2@x.test']);
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
    const { asked, pool } = recording({ 'a+1@x.test': 250, 'a+2@x.test': 250 });
    const v = createVerifier({ pool, now: () => t });
    await v.check(server, 'a+1@x.test', 1000, undefined, 'a@x.test');
    t = 1000;
    await v.check(server, 'a+2@x.test', 1000, undefined, 'a@x.test');
    await v.check({ ...server, port: 2525 }, 'a+1@x.test', 1000, undefined, 'a@x.test');
    expect(asked).toEqual(['a+1@x.test', 'a+2@x.test', 'a+1@x.test']);
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
