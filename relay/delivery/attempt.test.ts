import { describe, expect, it } from 'vitest';
import type { ServerRoute } from '../../routing/model.ts';
import { copyLeg, primaryLeg, server } from '../../test/support/engine-harness.ts';
import type { LegState, SpoolState } from '../spool/types.ts';
import { addForced, groupJobs, isForced, type DueLegs, type Forced } from './attempt.ts';
import { destinationKey } from './destination.ts';
import type { ServerLookup } from './server-lookup.ts';

const mx1 = server('mx1');
const mx2 = server('mx2');
const NOW = Date.UTC(2026, 10, 28, 10, 0, 0);

const legState = (
  rcpt: string,
  s: ServerRoute,
  role: 'primary' | 'copy',
  over: Partial<LegState> = {},
): LegState => ({
  recipient: rcpt,
  leg: role === 'primary' ? primaryLeg(rcpt, s) : copyLeg(rcpt, s),
  state: 'pending',
  attempts: 0,
  ...over,
});

const state = (legs: LegState[]): SpoolState => ({
  version: 1,
  id: 'm',
  meta: {
    mailFrom: 'alice@sender.example',
    clientAddress: '127.0.0.1',
    clientHostname: 'localhost',
    helo: 'c',
    receivedAt: new Date(NOW).toISOString(),
    revision: 'r',
    smtputf8: false,
    body8bit: false,
  },
  size: 10,
  legs,
});

const stored = (l: LegState): ServerLookup => ({ ok: true, server: l.leg.server, from: 'stored' });
const due = (over: Partial<DueLegs> = {}): DueLegs => ({
  inflight: new Set(),
  blockedOn: new Set(),
  now: NOW,
  ...over,
});
const shape = (r: ReturnType<typeof groupJobs>) => r.jobs.map((j) => [j.server.name, j.role, j.indexes]);

describe('groupJobs: the due legs of a message as SMTP transactions', () => {
  const later = new Date(NOW + 60_000).toISOString();
  const earlier = new Date(NOW - 1).toISOString();
  const legs = [
    legState('a@x.test', mx1, 'primary'),
    legState('b@x.test', mx1, 'primary'),
    legState('a@y.test', mx2, 'copy'),
    legState('c@x.test', mx1, 'primary', { state: 'deferred', nextAttemptAt: later }),
    legState('d@x.test', mx1, 'primary', { state: 'deferred', nextAttemptAt: earlier }),
    legState('e@x.test', mx1, 'primary', { state: 'delivered' }),
    legState('f@x.test', mx1, 'copy'),
  ];

  it.each<[string, Partial<DueLegs>, (string | number[])[][]]>([
    [
      'same server and role -> one transaction; a deferred leg not due yet and final legs are left out',
      {},
      [
        ['mx1', 'primary', [0, 1, 4]],
        ['mx2', 'copy', [2]],
        ['mx1', 'copy', [6]],
      ],
    ],
    [
      'force (flush) makes every deferred leg due',
      { forced: 'all' },
      [
        ['mx1', 'primary', [0, 1, 3, 4]],
        ['mx2', 'copy', [2]],
        ['mx1', 'copy', [6]],
      ],
    ],
    [
      'forced for one destination (a server back from an outage): its deferred legs are due, no other',
      { forced: new Set([destinationKey(mx1)]) },
      [
        ['mx1', 'primary', [0, 1, 3, 4]],
        ['mx2', 'copy', [2]],
        ['mx1', 'copy', [6]],
      ],
    ],
    [
      'forced for another destination: the deferred leg to mx1 keeps its time',
      { forced: new Set([destinationKey(mx2)]) },
      [
        ['mx1', 'primary', [0, 1, 4]],
        ['mx2', 'copy', [2]],
        ['mx1', 'copy', [6]],
      ],
    ],
    ['legs in flight are left out', { inflight: new Set([0, 1, 4, 6]) }, [['mx2', 'copy', [2]]]],
    [
      'legs whose destination the message waits on are left out',
      { blockedOn: new Set([destinationKey(mx1)]) },
      [['mx2', 'copy', [2]]],
    ],
  ])('%s', (_, over, want) => {
    expect(shape(groupJobs('m', state(legs), due(over), stored))).toEqual(want);
  });

  it('a copy whose bounces are suppressed goes out with MAIL FROM:<>, in a transaction apart from a notifying copy', () => {
    const notifying: LegState = {
      ...legState('b@y.test', mx2, 'copy'),
      leg: copyLeg('b@y.test', mx2, 'Notify'),
    };
    const r = groupJobs(
      'm',
      state([legState('a@x.test', mx1, 'primary'), legState('a@y.test', mx2, 'copy'), notifying]),
      due(),
      stored,
    );
    expect(r.jobs.map((j) => [j.server.name, j.role, j.from, j.indexes])).toEqual([
      ['mx1', 'primary', 'alice@sender.example', [0]],
      ['mx2', 'copy', '', [1]],
      ['mx2', 'copy', 'alice@sender.example', [2]],
    ]);
  });

  it('a deferred leg whose last attempt lies in the future is due now: the clock went back since', () => {
    const yearAhead = new Date(NOW + 365 * 24 * 3_600_000);
    const stepped = legState('g@x.test', mx1, 'primary', {
      state: 'deferred',
      nextAttemptAt: new Date(yearAhead.getTime() + 3_600_000).toISOString(),
      lastAttemptAt: yearAhead.toISOString(),
    });
    const waiting = legState('h@x.test', mx1, 'primary', {
      state: 'deferred',
      nextAttemptAt: new Date(NOW + 3_600_000).toISOString(),
      lastAttemptAt: new Date(NOW - 1).toISOString(),
    });
    expect(shape(groupJobs('m', state([stepped, waiting]), due(), stored))).toEqual([
      ['mx1', 'primary', [0]],
    ]);
  });

  it('a leg whose server left the table forms an unroutable job and is counted as held, in flight or not', () => {
    const lookup = (l: LegState): ServerLookup =>
      l.leg.server.name === 'mx2'
        ? { ok: false, server: l.leg.server, reason: 'unroutable: gone' }
        : stored(l);
    const s = state([
      legState('a@x.test', mx1, 'primary'),
      legState('a@y.test', mx2, 'copy'),
      legState('b@y.test', mx2, 'copy'),
    ]);
    const r = groupJobs('m', s, due({ inflight: new Set([2]) }), lookup);
    expect(r.held).toBe(2);
    expect(r.jobs.map((j) => [j.server.name, j.unroutable, j.indexes])).toEqual([
      ['mx1', undefined, [0]],
      ['mx2', 'unroutable: gone', [1]],
    ]);
  });

  it.each<[string, number | undefined, string[], number[][]]>([
    ['at the limit: one transaction', 3, ['a', 'b', 'c'], [[0, 1, 2]]],
    ['one over: a second transaction for the rest, in leg order', 3, ['a', 'b', 'c', 'd'], [[0, 1, 2], [3]]],
    ['limit 1: a transaction per recipient', 1, ['a', 'b'], [[0], [1]]],
    // two legs to one address (two aliases forwarded to one copy mailbox) are one RCPT TO: they count once and stay
    // in the transaction that has the address
    ['a repeated address counts once', 2, ['a', 'b', 'a', 'c'], [[0, 1, 2], [3]]],
    [
      'no limit in the table (compiled before the field): 50',
      undefined,
      Array.from({ length: 101 }, (_, i) => `r${i}`),
      [Array.from({ length: 50 }, (_, i) => i), Array.from({ length: 50 }, (_, i) => i + 50), [100]],
    ],
  ])('maxRecipientsPerTransaction, %s', (_, limit, locals, want) => {
    const s: ServerRoute = { ...mx1, ...(limit === undefined ? {} : { maxRecipientsPerTransaction: limit }) };
    const r = groupJobs('m', state(locals.map((l) => legState(`${l}@x.test`, s, 'primary'))), due(), stored);
    expect(r.jobs.map((j) => j.indexes)).toEqual(want);
    for (const j of r.jobs) expect(new Set(j.recipients.values()).size).toBeLessThanOrEqual(limit ?? 50);
  });

  it('the limit applies per server and role: the copies to another server make their own transactions', () => {
    const a = { ...mx1, maxRecipientsPerTransaction: 2 };
    const b = { ...mx2, maxRecipientsPerTransaction: 5 };
    const legs = ['p', 'q', 'r'].flatMap((l) => [
      legState(`${l}@x.test`, a, 'primary'),
      legState(`${l}@y.test`, b, 'copy'),
    ]);
    expect(shape(groupJobs('m', state(legs), due(), stored))).toEqual([
      ['mx1', 'primary', [0, 2]],
      ['mx2', 'copy', [1, 3, 5]],
      ['mx1', 'primary', [4]],
    ]);
  });

  it('the current definition of the server decides the destination, and the job carries the recipients', () => {
    const moved = { ...mx1, port: 2525 };
    const lookup = (): ServerLookup => ({ ok: true, server: moved, from: 'table' });
    const r = groupJobs('m', state([legState('a@x.test', mx1, 'primary')]), due(), lookup);
    expect(r.jobs[0]).toMatchObject({ server: { port: 2525 }, from: 'alice@sender.example', size: 10 });
    expect([...r.jobs[0]!.recipients]).toEqual([[0, 'a@x.test']]);
  });
});

describe('Forced', () => {
  it.each<[string, Forced | undefined, 'all' | string[], Forced]>([
    ['nothing yet, one destination', undefined, ['K'], new Set(['K'])],
    ['two destinations merge', new Set(['K']), ['L', 'K'], new Set(['K', 'L'])],
    ['all absorbs a destination', 'all', ['K'], 'all'],
    ['a destination is absorbed by all', new Set(['K']), 'all', 'all'],
  ])('addForced: %s', (_n, before, keys, want) => {
    expect(addForced(before, keys)).toEqual(want);
  });

  it.each<[Forced | undefined, string | undefined, boolean]>([
    [undefined, 'K', false],
    ['all', 'K', true],
    ['all', undefined, true],
    [new Set(['K']), 'K', true],
    [new Set(['K']), 'L', false],
    [new Set(['K']), undefined, false],
  ])('isForced(%o, %s) = %s', (forced, dest, want) => {
    expect(isForced(forced, dest)).toBe(want);
  });
});
