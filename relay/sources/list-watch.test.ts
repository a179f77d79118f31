import { describe, expect, it } from 'vitest';
import { waitFor } from '../../test/support/wait.ts';
import { backoffMs, createTimers, httpCode } from './list-watch.ts';

describe('backoffMs', () => {
  it.each([
    [0, 0, 150],
    [0, 1, 250],
    [1, 0.5, 400],
    [10, 0.5, 10_000],
    [50, 1, 12_500],
  ])('attempt %i, random %f -> %i ms', (attempt, r, want) => {
    expect(backoffMs(attempt, 200, 10_000, () => r)).toBe(want);
  });
});

describe('httpCode', () => {
  it.each<[unknown, number | undefined]>([
    [{ code: 410 }, 410],
    [{ statusCode: 404 }, 404],
    [{ code: 'ECONNREFUSED' }, undefined],
    [new Error('x'), undefined],
    [undefined, undefined],
  ])('%o -> %s', (err, want) => {
    expect(httpCode(err)).toBe(want);
  });
});

describe('createTimers', () => {
  it('runs what is scheduled, and nothing after stop()', async () => {
    const t = createTimers();
    const ran: string[] = [];
    t.later(1, () => ran.push('a'));
    await waitFor(() => ran.length === 1, { what: 'the first timer' });
    t.later(1, () => ran.push('late'));
    t.stop();
    t.later(1, () => ran.push('after stop'));
    expect(t.stopped).toBe(true);
    // a timer that would have fired long ago by now, had stop() not cleared it
    const probe = createTimers();
    let probed = false;
    probe.later(20, () => (probed = true));
    await waitFor(() => probed, { what: 'a later timer' });
    expect(ran).toEqual(['a']);
  });
});
