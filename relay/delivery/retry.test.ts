import { describe, expect, it } from 'vitest';
import { dueAt, nextAttempt, retryDelayMs } from './retry.ts';

const m = 60_000;
describe('retryDelayMs', () => {
  it.each([
    [[m, 5 * m, 15 * m], 1, m],
    [[m, 5 * m, 15 * m], 2, 5 * m],
    [[m, 5 * m, 15 * m], 3, 15 * m],
    [[m, 5 * m, 15 * m], 9, 15 * m],
    [[m], 0, m],
    [[], 3, 60_000],
  ])('schedule %j after attempt %i -> %i ms', (schedule, attempts, want) => {
    expect(retryDelayMs(schedule, attempts)).toBe(want);
  });
});

describe('nextAttempt', () => {
  const receivedAt = new Date('2026-01-01T00:00:00Z');
  const at = (ms: number): Date => new Date(receivedAt.getTime() + ms);
  it.each([
    ['first deferral', 1, 0, { kind: 'retry', at: at(m) }],
    ['third deferral uses the third step', 3, 10 * m, { kind: 'retry', at: at(25 * m) }],
    ['capped at the expiry time', 5, 55 * m, { kind: 'retry', at: at(60 * m) }],
    ['deferral at expiry is final', 6, 60 * m, { kind: 'expired', expiredAt: at(60 * m) }],
    ['deferral after expiry is final', 6, 90 * m, { kind: 'expired', expiredAt: at(60 * m) }],
  ])('%s', (_name, attempts, nowOffset, want) => {
    expect(
      nextAttempt({
        schedule: [m, 5 * m, 15 * m],
        lifetimeMs: 60 * m,
        receivedAt,
        now: at(nowOffset),
        attempts,
      }),
    ).toEqual(want);
  });
});

describe('dueAt: the stored times of a deferred leg against a clock that may have gone back', () => {
  const now = Date.parse('2026-12-07T12:00:00Z');
  const iso = (ms: number) => new Date(ms).toISOString();
  const hour = 3_600_000;
  it.each<[string, { nextAttemptAt?: string; lastAttemptAt?: string }, number]>([
    [
      'next in the future, last in the past: as stored',
      { nextAttemptAt: iso(now + hour), lastAttemptAt: iso(now - 1) },
      now + hour,
    ],
    [
      'next in the past: as stored (due)',
      { nextAttemptAt: iso(now - hour), lastAttemptAt: iso(now - 2 * hour) },
      now - hour,
    ],
    [
      'a schedule shortened since (next a day ahead, last in the past): as stored',
      { nextAttemptAt: iso(now + 24 * hour), lastAttemptAt: iso(now - 1) },
      now + 24 * hour,
    ],
    [
      'last attempt a year ahead (the clock went back a year): now',
      { nextAttemptAt: iso(now + 365 * 24 * hour + hour), lastAttemptAt: iso(now + 365 * 24 * hour) },
      now,
    ],
    [
      'last attempt 2 minutes ahead: now',
      { nextAttemptAt: iso(now + 3 * 60_000), lastAttemptAt: iso(now + 2 * 60_000) },
      now,
    ],
    [
      'last attempt 30 s ahead (within NTP tolerance): as stored',
      { nextAttemptAt: iso(now + 90_000), lastAttemptAt: iso(now + 30_000) },
      now + 90_000,
    ],
    ['no last attempt: as stored', { nextAttemptAt: iso(now + hour) }, now + hour],
    ['absent: now', {}, now],
    ['unparsable: now', { nextAttemptAt: 'soon' }, now],
  ])('%s', (_, leg, want) => expect(dueAt(leg, now)).toBe(want));
});
