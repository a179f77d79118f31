import { describe, expect, it } from 'vitest';
import { createDsnLimiter } from './dsn-rate.ts';

describe('DSN rate limit per recipient domain', () => {
  it('allows a burst, then one per 60/perMinute s, per domain', () => {
    const l = createDsnLimiter({ perMinute: 6, burst: 3 });
    expect([0, 0, 0].map(() => l.take('a.example', 0).ok)).toEqual([true, true, true]);
    expect(l.take('a.example', 0)).toEqual({ ok: false, retryInMs: 10_000 });
    // another domain has its own bucket
    expect(l.take('b.example', 0).ok).toBe(true);
    expect(l.take('a.example', 9_999).ok).toBe(false);
    expect(l.take('a.example', 10_000).ok).toBe(true);
  });
  it('0 per minute: no limit', () => {
    const l = createDsnLimiter({ perMinute: 0, burst: 0 });
    for (let i = 0; i < 100; i++) expect(l.take('a.example', 0).ok).toBe(true);
  });
});
