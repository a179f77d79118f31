import { describe, expect, it } from 'vitest';
import {
  NO_RELAYS,
  relaysChanged,
  SpecGenerations,
  splitRoutingKey,
  type RelaySnapshot,
} from './event-routing.ts';
import type { RelayView } from './controllers/status.ts';

const relay = (name: string, revision?: string): RelayView => ({ name, revision });

/** Revisions r1 -> r2 changed these objects; anything else is unknown (pruned from the history). */
const diff = (from: string, to: string): ReadonlySet<string> | undefined =>
  from === 'r1' && to === 'r2' ? new Set(['DeliveryPolicy/team-a/p', 'MailDomain/team-a/d']) : undefined;

/** The snapshot after seeing these relays and expected pods from nothing. */
function seen(relays: RelayView[], expected?: string[]): RelaySnapshot {
  const c = relaysChanged(NO_RELAYS, relays, expected, diff);
  if (c === undefined) throw new Error('first look must change');
  return c.next;
}

describe('relaysChanged', () => {
  const two = [relay('relay-0', 'r1'), relay('relay-1', 'r1')];
  const cases: {
    name: string;
    before: RelaySnapshot;
    relays: RelayView[];
    expected?: string[];
    requeue: 'unchanged' | 'all' | string[];
  }[] = [
    { name: 'first look, no relays: nothing to requeue', before: NO_RELAYS, relays: [], requeue: [] },
    { name: 'first look with relays: all', before: NO_RELAYS, relays: two, requeue: 'all' },
    { name: 'same relays, same revisions', before: seen(two), relays: two, requeue: 'unchanged' },
    {
      name: 'same expected pods, same relays',
      before: seen(two, ['relay-0', 'relay-1']),
      relays: two,
      expected: ['relay-0', 'relay-1'],
      requeue: 'unchanged',
    },
    {
      name: 'one relay moved r1 -> r2: the objects that differ',
      before: seen(two),
      relays: [relay('relay-0', 'r2'), relay('relay-1', 'r1')],
      requeue: ['DeliveryPolicy/team-a/p', 'MailDomain/team-a/d'],
    },
    {
      name: 'both moved r1 -> r2: the keys once',
      before: seen(two),
      relays: [relay('relay-0', 'r2'), relay('relay-1', 'r2')],
      requeue: ['DeliveryPolicy/team-a/p', 'MailDomain/team-a/d'],
    },
    {
      name: 'a revision the history no longer knows: all',
      before: seen(two),
      relays: [relay('relay-0', 'r9'), relay('relay-1', 'r1')],
      requeue: 'all',
    },
    {
      name: 'a relay lost its revision: all',
      before: seen(two),
      relays: [relay('relay-0'), relay('relay-1', 'r1')],
      requeue: 'all',
    },
    {
      name: 'a relay came: all',
      before: seen(two),
      relays: [...two, relay('relay-2', 'r1')],
      requeue: 'all',
    },
    { name: 'a relay went: all', before: seen(two), relays: [relay('relay-0', 'r1')], requeue: 'all' },
    {
      name: 'a relay replaced by another: all',
      before: seen(two),
      relays: [relay('relay-0', 'r1'), relay('relay-2', 'r1')],
      requeue: 'all',
    },
    {
      name: 'the expected pods changed: all',
      before: seen(two, ['relay-0', 'relay-1']),
      relays: two,
      expected: ['relay-0', 'relay-1', 'relay-2'],
      requeue: 'all',
    },
    {
      name: 'the StatefulSet disappeared: all',
      before: seen(two, ['relay-0', 'relay-1']),
      relays: two,
      requeue: 'all',
    },
  ];
  it.each(cases)('$name', ({ before, relays, expected, requeue }) => {
    const c = relaysChanged(before, relays, expected, diff);
    if (requeue === 'unchanged') return expect(c).toBeUndefined();
    expect(c?.requeue).toEqual(requeue === 'all' ? { all: true } : { all: false, keys: new Set(requeue) });
    // the next look at the same relays changes nothing
    expect(c && relaysChanged(c.next, relays, expected, diff)).toBeUndefined();
  });
});

describe('SpecGenerations', () => {
  const md = (generation?: number, uid = 'u1') => ({
    metadata: { namespace: 'team-a', name: 'd', generation, uid },
  });
  it.each([
    {
      name: 'new object: recompile and its status',
      events: [['add', md(1)]] as const,
      want: { recompile: true, status: 'team-a/d' },
    },
    {
      name: 'status-only update (same generation): its status only',
      events: [
        ['add', md(1)],
        ['update', md(1)],
      ] as const,
      want: { recompile: false, status: 'team-a/d' },
    },
    {
      name: 'spec update (new generation): recompile',
      events: [
        ['add', md(1)],
        ['update', md(2)],
      ] as const,
      want: { recompile: true, status: 'team-a/d' },
    },
    {
      name: 'delete: recompile, no status',
      events: [
        ['add', md(1)],
        ['delete', md(1)],
      ] as const,
      want: { recompile: true, status: undefined },
    },
    {
      name: 're-created after delete with the same generation: recompile',
      events: [
        ['add', md(1)],
        ['delete', md(1)],
        ['add', md(1)],
      ] as const,
      want: { recompile: true, status: 'team-a/d' },
    },
    {
      name: 're-created while the watch was away (a relist shows an update of another uid, generation 1 again): recompile',
      events: [
        ['add', md(1, 'u1')],
        ['update', md(1, 'u2')],
      ] as const,
      want: { recompile: true, status: 'team-a/d' },
    },
    {
      name: 'a status-only update of the re-created object: its status only',
      events: [
        ['add', md(1, 'u1')],
        ['update', md(1, 'u2')],
        ['update', md(1, 'u2')],
      ] as const,
      want: { recompile: false, status: 'team-a/d' },
    },
    {
      name: 'no generation counts as 0',
      events: [
        ['add', md()],
        ['update', md(0)],
      ] as const,
      want: { recompile: false, status: 'team-a/d' },
    },
  ])('$name', ({ events, want }) => {
    const g = new SpecGenerations();
    let last;
    for (const [type, o] of events) last = g.observe('MailDomain', type, o);
    expect(last).toEqual(want);
  });

  it('tracks each kind apart', () => {
    const g = new SpecGenerations();
    g.observe('MailDomain', 'add', md(1));
    expect(g.observe('DeliveryPolicy', 'add', md(1)).recompile).toBe(true);
  });
});

describe('splitRoutingKey', () => {
  it.each([
    ['MailDomain/team-a/d', { kind: 'MailDomain', key: 'team-a/d' }],
    ['TestRecipient/ns/name/with/slash', { kind: 'TestRecipient', key: 'ns/name/with/slash' }],
  ])('%s', (k, want) => expect(splitRoutingKey(k)).toEqual(want));
});
