import { describe, expect, it } from 'vitest';
import type { MailboxFact, ServerRoute } from '../../routing/model.ts';
import type { CalloutPool, CalloutProbe } from './callout.ts';
import { cacheTtlFor, createVerifier, factOfReply } from './verify.ts';

const ttl = { cacheTtlMs: 3_600_000, negativeTtlMs: 600_000, unknownTtlMs: 30_000 };

describe('cacheTtlFor', () => {
  it.each<[string, CalloutProbe, MailboxFact, number]>([
    ['exists: cacheTTL', { kind: 'reply', code: 250, text: '250 ok' }, 'exists', 3_600_000],
    ['absent: the negative TTL', { kind: 'reply', code: 550, text: '550 no' }, 'absent', 600_000],
    ['a 4xx reply: the unknown TTL', { kind: 'reply', code: 450, text: '450 later' }, 'unknown', 30_000],
    ['no reply (connection): not cached', { kind: 'failed', text: 'ECONNREFUSED' }, 'unknown', 0],
    ['busy: not cached', { kind: 'busy', text: 'busy' }, 'unknown', 0],
    ['suspended: not cached', { kind: 'suspended', text: 'down' }, 'unknown', 0],
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
