import { describe, expect, it } from 'vitest';
import { WorkQueue, type ReconcileOutcome, type Timers } from './workqueue.ts';
import { MAX_TIMER_DELAY_MS } from '../../routing/timer.ts';
import { fakeWallClock, restoreWallClock, stepWallClock } from '../../test/support/clock.ts';
import { waitFor } from '../../test/support/wait.ts';

/** Timers on a hand-moved clock: setTimeout records (due, fn, ms) in `armed`; the test sets `now` and fires them. */
function fakeTimers(): {
  now: number;
  armed: { due: number; fn: () => void; ms: number }[];
  timers: Timers;
} {
  const armed: { due: number; fn: () => void; ms: number }[] = [];
  let now = 0;
  const timers: Timers = {
    now: () => now,
    setTimeout: (fn, ms) => {
      const t = { due: now + ms, fn, ms };
      armed.push(t);
      return t;
    },
    clearTimeout: (h) => {
      const i = armed.indexOf(h as (typeof armed)[number]);
      if (i >= 0) armed.splice(i, 1);
    },
  };
  return {
    get now() {
      return now;
    },
    set now(t: number) {
      now = t;
    },
    armed,
    timers,
  };
}

describe('WorkQueue', () => {
  it('a delayed key comes when its delay has passed, whatever the wall clock does meanwhile (an hour back)', async () => {
    fakeWallClock();
    const q = new WorkQueue({ name: 't' }); // real timers
    try {
      const seen: string[] = [];
      const running = q.run((k) => {
        seen.push(k);
        return Promise.resolve({ ok: true });
      });
      q.addAfter('retry', 50);
      stepWallClock(-3600_000);
      // by the wall clock the key is due in an hour: a failed reconcile's retry would wait that long
      await waitFor(() => seen.includes('retry'), { timeoutMs: 3000, what: 'the delayed key' });
      q.shutdown();
      await running;
    } finally {
      restoreWallClock();
    }
  });

  it('de-duplicates a key that waits in the queue', async () => {
    const q = new WorkQueue({ name: 't' });
    q.add('a');
    q.add('a');
    q.add('b');
    q.add('a');
    expect(q.length).toBe(2);
    const seen: string[] = [];
    const running = q.run((k) => {
      seen.push(k);
      return Promise.resolve({ ok: true });
    });
    await q.idle();
    q.shutdown();
    await running;
    expect(seen).toEqual(['a', 'b']);
  });

  it('never processes the same key concurrently, and re-runs it when it was added while processing', async () => {
    const q = new WorkQueue({ name: 't' });
    let active = 0;
    let maxActive = 0;
    let runs = 0;
    let release: (() => void) | undefined;
    const running = q.run(async () => {
      active++;
      maxActive = Math.max(maxActive, active);
      runs++;
      if (runs === 1) await new Promise<void>((r) => (release = r));
      active--;
      return { ok: true };
    }, 4);
    q.add('k');
    await waitFor(() => release !== undefined, { what: 'first run to start' });
    q.add('k'); // while processing: marked dirty, not handed to another worker
    q.add('k');
    expect(q.length).toBe(0);
    release?.();
    await waitFor(() => runs === 2, { what: 'second run' });
    await q.idle();
    q.shutdown();
    await running;
    expect(maxActive).toBe(1);
    expect(runs).toBe(2);
  });

  it('backs off per key exponentially on failure and forgets on success', () => {
    const q = new WorkQueue({ name: 't', baseDelayMs: 1, maxDelayMs: 8 });
    expect([
      q.addRateLimited('x'),
      q.addRateLimited('x'),
      q.addRateLimited('x'),
      q.addRateLimited('x'),
      q.addRateLimited('x'),
    ]).toEqual([1, 2, 4, 8, 8]);
    expect(q.addRateLimited('y')).toBe(1);
    q.forget('x');
    expect(q.failuresOf('x')).toBe(0);
    q.shutdown();
  });

  it("caps a failure's backoff at the maxBackoffMs it names (the routing key: its resync), below the queue's 300 s", async () => {
    const clock = fakeTimers();
    const { armed, timers } = clock;
    const q = new WorkQueue({ name: 't', baseDelayMs: 1000, timers }); // maxDelayMs: the default 300 s
    let calls = 0;
    const running = q.run(() => {
      calls++;
      return Promise.resolve({ ok: false, error: '404 namespaces "x" not found', maxBackoffMs: 60_000 });
    });
    q.add('routing');
    const delays: number[] = [];
    for (let i = 1; i <= 10; i++) {
      await waitFor(() => calls === i && armed.length === 1, { what: `failure ${i} and its retry armed` });
      const t = armed.shift();
      if (t === undefined) throw new Error('no retry armed');
      delays.push(t.ms);
      clock.now = t.due;
      t.fn();
    }
    expect(delays).toEqual([1000, 2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000, 60_000, 60_000]);
    // without a cap of its own, a key backs off to the queue's maximum
    const other = new WorkQueue({ name: 't', baseDelayMs: 1000, timers });
    expect(Array.from({ length: 10 }, () => other.addRateLimited('k')).slice(-2)).toEqual([256_000, 300_000]);
    other.shutdown();
    q.shutdown();
    await running;
  });

  it('retries a failing handler with backoff until it succeeds, and honours requeueAfterMs', async () => {
    const q = new WorkQueue({ name: 't', baseDelayMs: 2 });
    const results: ReconcileOutcome[] = [
      { ok: false, error: 'boom' },
      { ok: false, error: 'boom' },
      { ok: true, requeueAfterMs: 5 },
      { ok: true },
    ];
    let calls = 0;
    const running = q.run(() => {
      const r = results[calls++];
      if (r === undefined) throw new Error('too many calls');
      return Promise.resolve(r);
    });
    q.add('k');
    await waitFor(() => calls === 4, { what: '4 calls (2 failures, 1 requeueAfter, 1 final)' });
    expect(q.failuresOf('k')).toBe(0);
    q.shutdown();
    await running;
  });

  it('treats a thrown error as a failure (rate-limited retry) and reports it', async () => {
    const thrown: string[] = [];
    const q = new WorkQueue({
      name: 't',
      baseDelayMs: 1,
      onResult: (key, outcome) => {
        if (!outcome.ok && 'thrown' in outcome) thrown.push(`${key}: ${outcome.error.split('\n')[0] ?? ''}`);
      },
    });
    let calls = 0;
    const running = q.run(() => {
      calls++;
      if (calls === 1) return Promise.reject(new Error('bug'));
      return Promise.resolve({ ok: true });
    });
    q.add('k');
    await waitFor(() => calls === 2, { what: 'retry after throw' });
    q.shutdown();
    await running;
    expect(thrown).toEqual(['k: Error: bug']);
  });

  it('waits out a requeueAfter of 60 days with timers of at most a day, re-armed until it is due', () => {
    // A fake clock: setTimeout records (due, fn); advanceTo() fires what is due.
    const clock = fakeTimers();
    const { armed, timers } = clock;
    const advanceTo = (t: number): void => {
      for (;;) {
        armed.sort((a, b) => a.due - b.due);
        const next = armed[0];
        if (next === undefined || next.due > t) break;
        armed.shift();
        clock.now = next.due;
        next.fn();
      }
      clock.now = t;
    };
    const day = 86_400_000;
    const q = new WorkQueue({ name: 't', timers });
    q.addAfter('tr', 60 * day);
    const delays: number[] = [];
    let fired = 0;
    while (q.length === 0 && fired < 1000) {
      const next = armed[0];
      if (next === undefined) break;
      delays.push(next.ms);
      advanceTo(next.due);
      fired++;
    }
    expect(q.length).toBe(1);
    expect(clock.now).toBe(60 * day);
    expect(Math.max(...delays)).toBeLessThanOrEqual(MAX_TIMER_DELAY_MS);
    expect(fired).toBe(60); // one timer a day, not a storm
    q.shutdown();
  });

  it('with real timers, a 60-day requeueAfter neither warns (TimeoutOverflowWarning) nor runs the handler early', async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error): void => void warnings.push(w.name);
    process.on('warning', onWarning);
    try {
      const q = new WorkQueue({ name: 't' });
      let calls = 0;
      const running = q.run(() => {
        calls++;
        return Promise.resolve({ ok: true, requeueAfterMs: 60 * 86_400_000 });
      });
      q.add('tr');
      await waitFor(() => calls >= 1, { what: 'first reconcile' });
      // A storm (the old 1 ms overflow) would run hundreds of times in this window.
      await new Promise((r) => setTimeout(r, 300));
      expect(calls).toBe(1);
      q.shutdown();
      await running;
      await new Promise((r) => setImmediate(r));
      expect(warnings).not.toContain('TimeoutOverflowWarning');
    } finally {
      process.off('warning', onWarning);
    }
  });
});
