import { describe, expect, it } from 'vitest';
import { RemovedDomains } from '../../routing/removed-domains.ts';
import { parseRemovedDomainsState, removedDomainText } from './removed-domains.ts';

const H = 3_600_000;
const T0 = Date.parse('2026-12-07T00:00:00Z');
const set = (...d: string[]): ReadonlySet<string> => new Set(d);

describe('removedDomainText', () => {
  it.each([
    [0, 'a.test left the routing table less than a minute ago; try again later'],
    [60_000, 'a.test left the routing table 1 minute ago; try again later'],
    [3 * H, 'a.test left the routing table 180 minutes ago; try again later'],
  ])('the reply text after %d ms', (ago, want) => expect(removedDomainText('a.test', ago)).toBe(want));
});

describe('parseRemovedDomainsState: a saved file that is damaged or not ours', () => {
  it.each([
    ['', /^not JSON/],
    ['[]', /not a JSON object/],
    ['{"served": "a.test", "removed": {}}', /^served:/],
    ['{"served": [1], "removed": {}}', /^served:/],
    ['{"served": [], "removed": []}', /^removed:/],
    ['{"served": [], "removed": {"a.test": "yesterday"}}', /^removed\.a\.test: must be a time/],
  ])('%j is refused', (text, want) => {
    const r = parseRemovedDomainsState(text);
    expect(typeof r).toBe('string');
    expect(r).toMatch(want);
  });
});

describe('RemovedDomains across a restart: state() and restore()', () => {
  it('a restarted relay keeps the grace of a removal it saw, and counts it from when it happened', () => {
    const before = new RemovedDomains(24 * H);
    before.swap(set('a.test', 'b.test'), T0);
    before.swap(set('a.test'), T0 + H);
    const saved = before.state();
    expect(saved).toEqual({ served: ['a.test'], removed: { 'b.test': '2026-12-07T01:00:00.000Z' } });
    const after = new RemovedDomains(24 * H);
    after.restore(parseOk(JSON.stringify(saved)), T0 + 2 * H);
    expect(after.swap(set('a.test'), T0 + 2 * H)).toEqual([]);
    expect(after.removedFor('b.test', T0 + 2 * H)).toBe(H);
    expect(after.removedFor('b.test', T0 + 25 * H)).toBeUndefined();
  });

  it('a domain that left the table while the relay was down starts its grace at the start', () => {
    const before = new RemovedDomains(24 * H);
    before.swap(set('a.test', 'b.test'), T0);
    const after = new RemovedDomains(24 * H);
    after.restore(before.state(), T0 + 7 * 24 * H);
    expect(after.swap(set('a.test'), T0 + 7 * 24 * H)).toEqual(['b.test']);
    expect(after.removedFor('b.test', T0 + 7 * 24 * H + 1)).toBe(1);
  });

  it('removals older than the grace are not restored; grace 0 restores nothing', () => {
    const state = { served: ['a.test'], removed: { 'b.test': '2026-12-05T00:00:00Z' } };
    const r = new RemovedDomains(24 * H);
    r.restore(state, T0);
    expect(r.removedFor('b.test', T0)).toBeUndefined();
    const off = new RemovedDomains(0);
    off.restore(state, T0);
    expect(off.swap(set(), T0)).toEqual([]);
  });
});

function parseOk(text: string) {
  const r = parseRemovedDomainsState(text);
  if (typeof r === 'string') throw new Error(r);
  return r;
}
