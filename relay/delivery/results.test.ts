import { describe, expect, it } from 'vitest';
import { arrivalForAge } from './results.ts';

describe('arrivalForAge', () => {
  const now = new Date('2026-12-07T12:00:00Z');
  it.each([
    ['found in the spool: its stored arrival', '2026-12-07T09:00:00Z', undefined, '2026-12-07T09:00:00.000Z'],
    [
      'accepted here 5 s ago, the clock stepped 2 h forward since',
      '2026-12-07T09:59:55Z',
      5_000,
      '2026-12-07T11:59:55.000Z',
    ],
    [
      'accepted here an hour ago, the clock set back an hour since',
      '2026-12-07T13:00:00Z',
      3_600_000,
      '2026-12-07T11:00:00.000Z',
    ],
    ['a negative time queued counts as none', '2026-12-07T12:00:00Z', -5, '2026-12-07T12:00:00.000Z'],
  ])('%s', (_what, received, queuedFor, want) => {
    expect(arrivalForAge(new Date(received), now, queuedFor).toISOString()).toBe(want);
  });
});
