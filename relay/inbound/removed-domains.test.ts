import { describe, expect, it } from 'vitest';
import { RemovedDomains, removedDomainText } from './removed-domains.ts';

const H = 3_600_000;
const set = (...d: string[]): ReadonlySet<string> => new Set(d);

describe('RemovedDomains: 451 for a domain that left the routing table, for the grace', () => {
  it('remembers the domains a new table drops, from the moment it is served, for the grace only', () => {
    const r = new RemovedDomains(24 * H);
    expect(r.swap(undefined, set('a.test', 'b.test'), 0)).toEqual([]);
    expect(r.swap(['a.test', 'b.test'], set('a.test'), 10)).toEqual(['b.test']);
    expect(r.removedFor('b.test', 10)).toBe(0);
    expect(r.removedFor('b.test', 10 + H)).toBe(H);
    expect(r.removedFor('a.test', 10 + H)).toBeUndefined();
    expect(r.removedFor('b.test', 10 + 24 * H - 1)).toBe(24 * H - 1);
    expect(r.removedFor('b.test', 10 + 24 * H)).toBeUndefined();
    expect(r.size).toBe(0);
  });

  it('forgets a domain that comes back, and starts its grace again when it leaves again', () => {
    const r = new RemovedDomains(H);
    r.swap(undefined, set('a.test'), 0);
    r.swap(['a.test'], set(), 100);
    r.swap([], set('a.test'), 200);
    expect(r.removedFor('a.test', 300)).toBeUndefined();
    r.swap(['a.test'], set(), 500);
    expect(r.removedFor('a.test', 600)).toBe(100);
  });

  it('the first table removes nothing (a relay that starts has never served the domain)', () => {
    const r = new RemovedDomains(H);
    expect(r.swap(undefined, set(), 0)).toEqual([]);
    expect(r.removedFor('a.test', 1)).toBeUndefined();
  });

  it('grace 0: nothing is remembered (554 at once)', () => {
    const r = new RemovedDomains(0);
    r.swap(undefined, set('a.test'), 0);
    expect(r.swap(['a.test'], set(), 1)).toEqual([]);
    expect(r.removedFor('a.test', 1)).toBeUndefined();
  });

  it('expired entries are pruned at the next swap', () => {
    const r = new RemovedDomains(H);
    r.swap(undefined, set('a.test', 'b.test'), 0);
    r.swap(['a.test', 'b.test'], set(), 0);
    expect(r.size).toBe(2);
    r.swap([], set(), 2 * H);
    expect(r.size).toBe(0);
  });

  it.each([
    [0, 'a.test left the routing table less than a minute ago; try again later'],
    [60_000, 'a.test left the routing table 1 minute ago; try again later'],
    [3 * H, 'a.test left the routing table 180 minutes ago; try again later'],
  ])('the reply text after %d ms', (ago, want) => expect(removedDomainText('a.test', ago)).toBe(want));
});
