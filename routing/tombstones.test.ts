import { describe, expect, it } from 'vitest';
import { compile, tableRevision } from './compile.ts';
import { exampleDomain, examplePolicy } from './test-fixtures.ts';
import { carryRemovedDomains, nextRemovalExpiry, tableRemovedAgo, withRemovedDomains } from './tombstones.ts';

const H = 3_600_000;
const T0 = Date.parse('2026-12-07T00:00:00Z');
const at = (ms: number) => new Date(ms).toISOString();
const set = (...d: string[]) => new Set(d);

describe('carryRemovedDomains', () => {
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
    const got = carryRemovedDomains({ ...o, nowMs: T0, graceMs: 24 * H });
    expect(got).toEqual(want);
    expect(Object.keys(got)).toEqual(Object.keys(want));
  });

  it('carries nothing with a grace of 0', () => {
    expect(
      carryRemovedDomains({
        previousDomains: set('a.test'),
        previousRemoved: { 'b.test': at(T0) },
        current: set(),
        nowMs: T0,
        graceMs: 0,
      }),
    ).toEqual({});
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

describe('nextRemovalExpiry and tableRemovedAgo', () => {
  const removed = { 'a.test': at(T0 - 2 * H), 'b.test': at(T0 - 20 * H), 'bad.test': 'garbage' };
  it('the earliest end of a grace', () => {
    expect(nextRemovalExpiry(removed, 24 * H)).toBe(T0 + 4 * H);
    expect(nextRemovalExpiry({}, 24 * H)).toBeUndefined();
  });
  it.each([
    ['recorded, within the grace', 'a.test', 24 * H, 2 * H],
    ["past the relay's own (shorter) grace", 'b.test', 12 * H, undefined],
    ['not recorded', 'c.test', 24 * H, undefined],
    ['an unparsable time', 'bad.test', 24 * H, undefined],
    ['a grace of 0', 'a.test', 0, undefined],
    ['a name inherited from Object.prototype', 'constructor', 24 * H, undefined],
  ])('%s', (_name, domain, grace, want) => {
    expect(tableRemovedAgo(removed, domain, T0, grace)).toBe(want);
  });
  it('a time in the future (an operator clock ahead) counts as just now', () => {
    expect(tableRemovedAgo({ 'a.test': at(T0 + H) }, 'a.test', T0, 24 * H)).toBe(0);
  });
});
