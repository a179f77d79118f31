import { describe, expect, it } from 'vitest';
import { compile, tableRevision } from './compile.ts';
import { exampleDomain, examplePolicy } from './test-fixtures.ts';
import { RemovedDomains, withRemovedDomains } from './removed-domains.ts';

const H = 3_600_000;
const T0 = Date.parse('2026-12-07T00:00:00Z');
const at = (ms: number) => new Date(ms).toISOString();
const set = (...d: string[]): ReadonlySet<string> => new Set(d);

describe('RemovedDomains: 451 for a domain that left the routing table, for the grace', () => {
  it('remembers the domains a new table drops, from the moment it is served, for the grace only', () => {
    const r = new RemovedDomains(24 * H);
    expect(r.swap(set('a.test', 'b.test'), T0)).toEqual([]);
    expect(r.swap(set('a.test'), T0 + 10)).toEqual(['b.test']);
    expect(r.removedFor('b.test', T0 + 10)).toBe(0);
    expect(r.removedFor('b.test', T0 + 10 + H)).toBe(H);
    expect(r.removedFor('a.test', T0 + 10 + H)).toBeUndefined();
    expect(r.removedFor('b.test', T0 + 10 + 24 * H - 1)).toBe(24 * H - 1);
    expect(r.removedFor('b.test', T0 + 10 + 24 * H)).toBeUndefined();
    expect(r.state().removed).toEqual({});
  });

  it('forgets a domain that comes back, and starts its grace again when it leaves again', () => {
    const r = new RemovedDomains(H);
    r.swap(set('a.test'), T0);
    r.swap(set(), T0 + 100);
    r.swap(set('a.test'), T0 + 200);
    expect(r.removedFor('a.test', T0 + 300)).toBeUndefined();
    r.swap(set(), T0 + 500);
    expect(r.removedFor('a.test', T0 + 600)).toBe(100);
  });

  it('the first table removes nothing (a relay that starts without a saved state has never served the domain)', () => {
    const r = new RemovedDomains(H);
    expect(r.swap(set(), T0)).toEqual([]);
    expect(r.removedFor('a.test', T0 + 1)).toBeUndefined();
  });

  it('grace 0: nothing is remembered (554 at once)', () => {
    const r = new RemovedDomains(0);
    r.swap(set('a.test'), T0);
    expect(r.swap(set(), T0 + 1)).toEqual([]);
    expect(r.removedFor('a.test', T0 + 1)).toBeUndefined();
  });

  it('expired entries are pruned at the next swap', () => {
    const r = new RemovedDomains(H);
    r.swap(set('a.test', 'b.test'), T0);
    r.swap(set(), T0);
    expect(Object.keys(r.state().removed)).toEqual(['a.test', 'b.test']);
    r.swap(set(), T0 + 2 * H);
    expect(r.state().removed).toEqual({});
  });
});

describe("RemovedDomains as the operator keeps it: what the next table's removedDomains carries", () => {
  /** Seeded with the table applied before (its domains and removedDomains), then swapped to the current domains. */
  const carried = (
    o: {
      previousDomains: ReadonlySet<string> | undefined;
      previousRemoved: Record<string, string>;
      current: ReadonlySet<string>;
    },
    graceMs = 24 * H,
  ): Record<string, string> => {
    const r = new RemovedDomains(graceMs);
    if (o.previousDomains !== undefined)
      r.restore({ served: [...o.previousDomains], removed: o.previousRemoved }, T0);
    r.swap(o.current, T0);
    return r.state().removed;
  };
  it.each([
    [
      'a domain that left is recorded at now',
      { previousDomains: set('a.test', 'b.test'), previousRemoved: {}, current: set('a.test') },
      { 'b.test': at(T0) },
    ],
    [
      'no previous table known (the first one ever): nothing has left',
      { previousDomains: undefined, previousRemoved: {}, current: set('a.test') },
      {},
    ],
    [
      'an entry within the grace is kept with its own time',
      {
        previousDomains: set('a.test'),
        previousRemoved: { 'b.test': at(T0 - 23 * H) },
        current: set('a.test'),
      },
      { 'b.test': at(T0 - 23 * H) },
    ],
    [
      'an entry past the grace is dropped',
      {
        previousDomains: set('a.test'),
        previousRemoved: { 'b.test': at(T0 - 24 * H) },
        current: set('a.test'),
      },
      {},
    ],
    [
      'a domain back in the table is dropped',
      {
        previousDomains: set('a.test'),
        previousRemoved: { 'b.test': at(T0 - H) },
        current: set('a.test', 'b.test'),
      },
      {},
    ],
    [
      'an unparsable time is dropped (a hand-edited ConfigMap)',
      { previousDomains: set('a.test'), previousRemoved: { 'b.test': 'yesterday' }, current: set('a.test') },
      {},
    ],
    [
      'a domain that left again keeps its first time while it is recorded',
      {
        previousDomains: set('a.test', 'b.test'),
        previousRemoved: { 'b.test': at(T0 - H) },
        current: set('a.test'),
      },
      { 'b.test': at(T0 - H) },
    ],
    [
      'the keys come out sorted',
      { previousDomains: set('z.test', 'c.test', 'm.test'), previousRemoved: {}, current: set() },
      { 'c.test': at(T0), 'm.test': at(T0), 'z.test': at(T0) },
    ],
  ])('%s', (_name, o, want) => {
    const got = carried(o);
    expect(got).toEqual(want);
    expect(Object.keys(got)).toEqual(Object.keys(want));
  });

  it('carries nothing with a grace of 0', () => {
    expect(
      carried({ previousDomains: set('a.test'), previousRemoved: { 'b.test': at(T0) }, current: set() }, 0),
    ).toEqual({});
  });

  it('nextExpiry: the earliest end of a grace', () => {
    const r = new RemovedDomains(24 * H);
    expect(r.nextExpiry()).toBeUndefined();
    r.restore(
      { served: [], removed: { 'a.test': at(T0 - 2 * H), 'b.test': at(T0 - 20 * H), 'bad.test': 'garbage' } },
      T0,
    );
    expect(r.nextExpiry()).toBe(T0 + 4 * H);
  });
});

describe("RemovedDomains as a relay keeps it: the table's removedDomains adopted (a relay that never served them)", () => {
  const recorded = { 'a.test': at(T0 - 2 * H), 'b.test': at(T0 - 20 * H), 'bad.test': 'garbage' };
  it.each([
    ['recorded, within the grace', 'a.test', 24 * H, 2 * H],
    ["past the relay's own (shorter) grace", 'b.test', 12 * H, undefined],
    ['not recorded', 'c.test', 24 * H, undefined],
    ['an unparsable time', 'bad.test', 24 * H, undefined],
    ['a grace of 0', 'a.test', 0, undefined],
    ['a name inherited from Object.prototype', 'constructor', 24 * H, undefined],
  ])('%s', (_name, domain, grace, want) => {
    const r = new RemovedDomains(grace);
    expect(r.swap(set('keep.test'), T0, recorded)).toEqual([]);
    expect(r.removedFor(domain, T0)).toBe(want);
  });

  it('a time in the future (an operator clock ahead) counts as just now', () => {
    const r = new RemovedDomains(24 * H);
    r.swap(set(), T0, { 'a.test': at(T0 + H) });
    expect(r.removedFor('a.test', T0)).toBe(0);
  });

  it('a recorded domain the table serves is not adopted; one this relay served keeps the recorded time and is logged', () => {
    const r = new RemovedDomains(24 * H);
    r.swap(set('a.test', 'b.test'), T0 - 3 * H);
    expect(r.swap(set('a.test'), T0, { 'a.test': at(T0 - H), 'b.test': at(T0 - 2 * H) })).toEqual(['b.test']);
    expect(r.removedFor('a.test', T0)).toBeUndefined();
    expect(r.removedFor('b.test', T0)).toBe(2 * H);
  });
});

describe('RemovedDomains: an adopted removal lasts while the table records it', () => {
  it("goes when the table stops recording it (the operator's shorter grace); this relay's own record stays", () => {
    const r = new RemovedDomains(24 * H);
    r.swap(set('own.test'), T0 - H);
    r.swap(set(), T0, { 'adopted.test': at(T0 - H) });
    expect(r.removedFor('adopted.test', T0)).toBe(H);
    expect(r.removedFor('own.test', T0)).toBe(0);
    // adopted removals are not saved (the table carries them)
    expect(Object.keys(r.state().removed)).toEqual(['own.test']);
    r.swap(set(), T0 + 1, {});
    expect(r.removedFor('adopted.test', T0 + 1)).toBeUndefined();
    expect(r.removedFor('own.test', T0 + 1)).toBe(1);
  });
});

describe('withRemovedDomains', () => {
  const table = compile([exampleDomain(), examplePolicy({ mode: 'Direct' })]).table;
  it('adds the field, and leaves a table without removed domains as compile() made it (same revision)', () => {
    const withOne = withRemovedDomains(table, { 'gone.test': at(T0) });
    expect(withOne.removedDomains).toEqual({ 'gone.test': at(T0) });
    expect(tableRevision(withOne)).not.toBe(tableRevision(table));
    const none = withRemovedDomains(withOne, {});
    expect('removedDomains' in none).toBe(false);
    expect(tableRevision(none)).toBe(tableRevision(table));
  });
});
