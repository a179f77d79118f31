import { describe, expect, it } from 'vitest';
import type { DeliveryStats } from './delivery/engine.ts';
import { mergeLoads, mergeReadiness, mergeStats } from './workers.ts';

const stats = (over: Partial<DeliveryStats>): DeliveryStats => ({
  messages: 0,
  pending: 0,
  deferred: 0,
  unroutableLegs: 0,
  jobs: 0,
  oldestAgeSeconds: 0,
  recovering: false,
  stopped: false,
  ...over,
});

describe('workers: merged views', () => {
  it('stats: counts add up, the oldest age is the maximum, flags are any', () => {
    expect(
      mergeStats([
        stats({ messages: 3, pending: 1, deferred: 2, unroutableLegs: 1, jobs: 4, oldestAgeSeconds: 10 }),
        stats({
          messages: 5,
          pending: 5,
          unroutableLegs: 2,
          jobs: 1,
          oldestAgeSeconds: 70,
          recovering: true,
        }),
      ]),
    ).toEqual({
      messages: 8,
      pending: 6,
      deferred: 2,
      unroutableLegs: 3,
      jobs: 5,
      oldestAgeSeconds: 70,
      recovering: true,
      stopped: false,
    });
  });

  it.each([
    {
      name: 'all ready',
      reports: [
        { ready: true, checks: { routing: 'ok', spool: 'ok' } },
        { ready: true, checks: { routing: 'ok', spool: 'ok' } },
      ],
      want: { ready: true, checks: { routing: 'ok', spool: 'ok' } },
    },
    {
      name: 'one worker without a table',
      reports: [
        { ready: true, checks: { routing: 'ok', spool: 'ok' } },
        { ready: false, checks: { routing: 'no routing table loaded', spool: 'ok' } },
      ],
      want: { ready: false, checks: { routing: 'no routing table loaded', spool: 'ok' } },
    },
    {
      name: 'a worker not running',
      reports: [{ ready: true, checks: { routing: 'ok' } }, 'worker 1 is not running'],
      want: { ready: false, checks: { routing: 'ok', worker1: 'worker 1 is not running' } },
    },
    { name: 'no workers', reports: [], want: { ready: false, checks: {} } },
  ])('readiness: $name', ({ reports, want }) => {
    expect(mergeReadiness(reports)).toEqual(want);
  });

  it('load: the worker that has the message wins; corrupt beats missing', () => {
    const state = { version: 1 } as never;
    expect(
      mergeLoads([
        { ok: false, reason: 'missing', error: 'x' },
        { ok: true, state },
      ]),
    ).toEqual({ ok: true, state });
    expect(
      mergeLoads([
        { ok: false, reason: 'missing', error: 'x' },
        { ok: false, reason: 'corrupt', error: 'bad json' },
      ]),
    ).toMatchObject({ ok: false, reason: 'corrupt' });
    expect(mergeLoads([])).toMatchObject({ ok: false, reason: 'missing' });
  });
});
