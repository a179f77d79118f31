import { describe, expect, it } from 'vitest';
import { dueAt, longestStepMs, nextAttempt, retryDelayMs } from './retry.ts';

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

describe('longestStepMs', () => {
  it.each([
    [[60_000, 300_000, 3_600_000, 900_000], 3_600_000],
    [[1_000], 1_000],
    [[], 60_000],
  ])('%j -> %d', (schedule, want) => expect(longestStepMs(schedule)).toBe(want));
});

describe('dueAt: a stored nextAttemptAt against a clock that may have gone back', () => {
  const now = Date.parse('2026-12-07T12:00:00Z');
  const hour = 3_600_000;
  it.each<[string, string | undefined, number]>([
    ['in the future within the longest step: as stored', '2026-12-07T12:30:00Z', now + hour / 2],
    ['exactly the longest step ahead: as stored', '2026-12-07T13:00:00Z', now + hour],
    ['in the past: as stored (due)', '2026-12-07T11:00:00Z', now - hour],
    ['a year ahead (the clock was stepped back a year): now', '2027-12-07T12:00:00Z', now],
    ['one ms beyond the longest step: now', '2026-12-07T13:00:00.001Z', now],
    ['absent: now', undefined, now],
    ['unparsable: now', 'soon', now],
  ])('%s', (_, stored, want) => expect(dueAt(stored, now, hour)).toBe(want));
});
