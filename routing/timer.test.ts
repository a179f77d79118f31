import { describe, expect, it } from 'vitest';
import { MAX_TIMER_DELAY_MS, safeDelay } from './timer.ts';

describe('safeDelay', () => {
  it.each([
    [0, 0],
    [-5, 0],
    [Number.NaN, 0],
    [1, 1],
    [30_000, 30_000],
    [MAX_TIMER_DELAY_MS, MAX_TIMER_DELAY_MS],
    [MAX_TIMER_DELAY_MS + 1, MAX_TIMER_DELAY_MS],
    [2 ** 31, MAX_TIMER_DELAY_MS],
    [60 * MAX_TIMER_DELAY_MS, MAX_TIMER_DELAY_MS],
    [Number.POSITIVE_INFINITY, MAX_TIMER_DELAY_MS],
  ])('safeDelay(%d) = %d', (ms, want) => {
    expect(safeDelay(ms)).toBe(want);
  });

  it('stays below the 2^31-1 ms that Node timers hold', () => {
    expect(MAX_TIMER_DELAY_MS).toBeLessThan(2 ** 31 - 1);
  });
});
