import { describe, expect, it } from 'vitest';
import { FakeClock, settle } from '../../test/support/fake-clock.ts';
import { DueHeap, every, Scheduler } from './scheduler.ts';

describe('DueHeap', () => {
  it('pops in due order', () => {
    const h = new DueHeap();
    for (const [due, id] of [
      [5, 'e'],
      [1, 'a'],
      [3, 'c'],
      [2, 'b'],
      [4, 'd'],
      [1, 'a2'],
    ] as const)
      h.push(due, id);
    const out: number[] = [];
    for (let x = h.pop(); x; x = h.pop()) out.push(x.due);
    expect(out).toEqual([1, 1, 2, 3, 4, 5]);
  });
});

/** A scheduler whose runs finish when the test says so. */
function harness(concurrency = 2, fresh?: (id: string) => boolean) {
  const clock = new FakeClock(0);
  const ran: string[] = [];
  const finish = new Map<string, () => void>();
  const s = new Scheduler({
    now: () => clock.now,
    elapsed: clock.elapsed,
    timers: clock,
    concurrency,
    ...(fresh ? { fresh } : {}),
    run: (id) => {
      ran.push(id);
      return new Promise<void>((r) => finish.set(id, r));
    },
  });
  const done = async (id: string): Promise<void> => {
    finish.get(id)?.();
    finish.delete(id);
    await settle();
  };
  return { clock, ran, s, done };
}

describe('Scheduler', () => {
  it('runs each message at its due time, with one timer armed for the earliest', async () => {
    const { clock, ran, s, done } = harness(10);
    s.at('b', 2_000);
    s.at('a', 1_000);
    expect(clock.pending).toBe(1);
    await clock.advance(999);
    expect(ran).toEqual([]);
    await clock.advance(1);
    expect(ran).toEqual(['a']);
    await done('a');
    await clock.advance(1_000);
    expect(ran).toEqual(['a', 'b']);
  });

  it('a later at() replaces the earlier time; Infinity and forget() cancel', async () => {
    const { clock, ran, s } = harness();
    s.at('a', 1_000);
    s.at('a', 5_000);
    s.at('b', 1_000);
    s.at('b', Infinity);
    s.at('c', 1_000);
    s.forget('c');
    await clock.advance(4_000);
    expect(ran).toEqual([]);
    expect(s.dueOf('a')).toBe(5_000);
    await clock.advance(1_000);
    expect(ran).toEqual(['a']);
  });

  it('runs at most `concurrency` messages at once, the rest in FIFO order', async () => {
    const { ran, s, done } = harness(2);
    for (const id of ['a', 'b', 'c', 'd']) s.wake(id);
    await settle();
    expect(ran).toEqual(['a', 'b']);
    await done('b');
    expect(ran).toEqual(['a', 'b', 'c']);
    await done('a');
    expect(ran).toEqual(['a', 'b', 'c', 'd']);
  });

  it('new mail and the backlog take turns: a new message never waits behind the whole backlog', async () => {
    const { ran, s, done } = harness(1, (id) => id.startsWith('new'));
    for (const id of ['old1', 'old2', 'old3', 'old4', 'old5']) s.wake(id);
    s.wake('new1');
    s.wake('new2');
    await settle();
    expect(ran).toEqual(['old1']);
    for (const id of ['old1', 'new1', 'old2', 'new2', 'old3', 'old4']) await done(id);
    // one lane alone runs in FIFO order; with both waiting, new mail goes first and they alternate
    expect(ran).toEqual(['old1', 'new1', 'old2', 'new2', 'old3', 'old4', 'old5']);
  });

  it('a due retry is woken into the lane `fresh` names at that time', async () => {
    const fresh = new Set(['b']);
    const { clock, ran, s, done } = harness(1, (id) => fresh.has(id));
    s.wake('x');
    s.at('a', 1_000);
    s.at('b', 1_000);
    s.at('c', 1_000);
    await clock.advance(1_000);
    await done('x');
    expect(ran).toEqual(['x', 'b']);
    await done('b');
    await done('a');
    expect(ran).toEqual(['x', 'b', 'a', 'c']);
  });

  it('a message woken while it runs runs once more after, never twice at once', async () => {
    const { ran, s, done } = harness(4);
    s.wake('a');
    s.wake('a');
    s.wake('a');
    await settle();
    expect(ran).toEqual(['a']);
    await done('a');
    expect(ran).toEqual(['a', 'a']);
    await done('a');
    expect(ran).toEqual(['a', 'a']);
  });

  it('stop() clears the timer and what waits', async () => {
    const { clock, ran, s } = harness(1);
    s.at('a', 10);
    s.wake('b');
    s.wake('c');
    s.stop();
    await clock.advance(100);
    expect(ran).toEqual(['b']);
    expect(clock.pending).toBe(0);
  });

  it('waits on the monotonic clock: a step of the wall clock back or forward moves no due time', async () => {
    const clock = new FakeClock(0);
    const ran: [string, number | undefined][] = [];
    const s = new Scheduler({
      now: () => clock.now,
      elapsed: clock.elapsed,
      timers: clock,
      concurrency: 10,
      run: (id, due) => {
        ran.push([id, due]);
        return Promise.resolve();
      },
    });
    // due in 1 s and in an hour; then the wall clock goes back an hour: each still comes after its own wait
    s.at('a', clock.now + 1_000);
    s.at('b', clock.now + 3_600_000);
    expect(s.dueOf('a')).toBe(1_000); // as given, on the wall clock
    clock.step(-3_600_000);
    await clock.advance(999);
    expect(ran).toEqual([]);
    await clock.advance(1);
    // run() is told the wall due time that came, which lies an hour ahead of the wall clock now
    expect(ran).toEqual([['a', 1_000]]);
    // the wall clock jumps two hours ahead: b is past due on it, but only 59 min of its hour have gone by
    s.at('c', clock.now + 60_000);
    clock.step(7_200_000);
    await clock.advance(60_000);
    expect(ran.map(([id]) => id)).toEqual(['a', 'c']);
    await clock.advance(3_600_000 - 61_000 - 1);
    expect(ran.map(([id]) => id)).toEqual(['a', 'c']);
    await clock.advance(1);
    expect(ran).toEqual([
      ['a', 1_000],
      ['c', 1_000 - 3_600_000 + 60_000],
      ['b', 3_600_000],
    ]);
    // a wake() brings no due time
    s.wake('d');
    await settle();
    expect(ran.at(-1)).toEqual(['d', undefined]);
  });

  it('every() repeats on the injected timers until stopped', async () => {
    const clock = new FakeClock(0);
    let n = 0;
    const stop = every(clock, 1_000, () => n++);
    await clock.advance(3_500);
    expect(n).toBe(3);
    stop();
    await clock.advance(10_000);
    expect(n).toBe(3);
  });
});
