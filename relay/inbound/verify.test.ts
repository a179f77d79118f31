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
