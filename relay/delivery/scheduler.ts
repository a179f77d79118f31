// When each queued message is looked at next, and looking at due messages a bounded number at a time (qmgr's job in
// Postfix). No I/O of its own: the engine passes what "looking at a message" means (run), the clock and the timers.
//
// Exports:
//   Timers, realTimers: the timer seam; every timer of the engine goes through it, so a fake clock drives the engine.
//   DueHeap: a min-heap of (due, id) with lazy deletion.
//   Scheduler: at(id, due) / dueOf(id) / wake(id) / forget(id) / stop().
//     - One due time per message (Infinity: nothing scheduled). A single timer is armed for the earliest one.
//     - A due time is given on the wall clock (it comes from a leg's stored nextAttemptAt), but kept and waited for on
//       the monotonic clock: at() turns it into "that much later than now" on `elapsed`, so a step of the wall clock
//       while the message waits (NTP, a resumed virtual machine) neither holds it back for the length of a step back
//       nor brings it forward with a step forward (docs/queue.md "A clock that went back"). run() is told the wall
//       due time that came, so the message's legs due by then count as due even when the wall clock is behind it.
//     - A due (or woken) message is run; at most `concurrency` run at once, the rest wait in FIFO order.
//     - Two lanes wait: new mail (options.fresh) and the rest (the start-up scan, retries, flushes). When both have
//       messages waiting they take turns, so new mail never waits behind a whole backlog: a relay restarted on a long
//       outage's queue looks at 200,000 deferred messages before anything else otherwise (bench/queue-restart.ts).
//     - A message woken while it runs is run once more right after (never twice at the same time).
import { safeDelay } from '../../routing/timer.ts';
import { Fifo } from './fifo.ts';

/** What Timers.set returns (a NodeJS.Timeout for the real timers). */
export type TimerHandle = object | number;

/** setTimeout/clearTimeout, injectable. background: the timer alone does not keep the process alive (unref). */
export interface Timers {
  set(fn: () => void, ms: number, background?: boolean): TimerHandle;
  clear(handle: TimerHandle): void;
}

export const realTimers: Timers = {
  set(fn, ms, background) {
    const t = setTimeout(fn, ms);
    if (background === true) t.unref();
    return t;
  },
  clear(handle) {
    clearTimeout(handle as NodeJS.Timeout);
  },
};

/** Runs fn every ms through timers until the returned function is called. */
export function every(timers: Timers, ms: number, fn: () => void): () => void {
  let handle: TimerHandle | undefined;
  let on = true;
  const loop = (): void => {
    handle = timers.set(
      () => {
        if (!on) return;
        fn();
        loop();
      },
      ms,
      true,
    );
  };
  loop();
  return () => {
    on = false;
    if (handle !== undefined) timers.clear(handle);
  };
}

/** Min-heap of (due, id) with lazy deletion: stale pairs are skipped when popped. */
export class DueHeap {
  private readonly a: { due: number; id: string }[] = [];
  get size(): number {
    return this.a.length;
  }
  peek(): { due: number; id: string } | undefined {
    return this.a[0];
  }
  push(due: number, id: string): void {
    const a = this.a;
    a.push({ due, id });
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (a[p]!.due <= a[i]!.due) break;
      [a[p], a[i]] = [a[i]!, a[p]!];
      i = p;
    }
  }
  pop(): { due: number; id: string } | undefined {
    const a = this.a;
    const top = a[0];
    const last = a.pop();
    if (a.length > 0 && last) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && a[l]!.due < a[m]!.due) m = l;
        if (r < a.length && a[r]!.due < a[m]!.due) m = r;
        if (m === i) break;
        [a[m], a[i]] = [a[i]!, a[m]!];
        i = m;
      }
    }
    return top;
  }
  clear(): void {
    this.a.length = 0;
  }
}

export interface SchedulerOptions {
  /** The wall clock (ms): what the due times given to at() are on. */
  now: () => number;
  /** The monotonic clock (ms): what the scheduler waits on. A step of the wall clock does not move it. */
  elapsed: () => number;
  timers: Timers;
  /** Messages run at the same time. */
  concurrency: number;
  /**
   * Looks at one message. Must not reject (the engine catches and reschedules). due: the wall-clock due time that
   * came (on the monotonic clock) and woke it; undefined when it was woken for another reason (wake()).
   */
  run: (id: string, due: number | undefined) => Promise<void>;
  /** Asked when a message is woken: true puts it in the lane of new mail. Default: one lane. */
  fresh?: (id: string) => boolean;
}

/** A message's due time: as given (wall clock) and when it comes on the monotonic clock (the heap's key). */
interface Due {
  wall: number;
  mono: number;
}

export class Scheduler {
  /** Keyed on the monotonic due time. */
  private readonly heap = new DueHeap();
  private readonly due = new Map<string, Due>();
  /** The wall-clock due time that came for a message woken by its timer, until it runs (passed to run()). */
  private readonly came = new Map<string, number>();
  private readonly waiting = new Fifo<string>();
  private readonly waitingFresh = new Fifo<string>();
  /** The lane the next message is taken from when both have messages waiting. */
  private freshTurn = true;
  /** Ids queued or running, and those woken again meanwhile. */
  private readonly busy = new Set<string>();
  private readonly again = new Set<string>();
  private running = 0;
  private timer: TimerHandle | undefined;
  private timerAt = Infinity;
  private stopped = false;

  private readonly o: SchedulerOptions;

  constructor(o: SchedulerOptions) {
    this.o = o;
  }

  /** When the message is due (ms, on the wall clock, as given to at()); Infinity when nothing is scheduled. */
  dueOf(id: string): number {
    return this.due.get(id)?.wall ?? Infinity;
  }

  /**
   * Schedules the message at due (ms on the wall clock; a leg's time passed through dueAt() in retry.ts already);
   * Infinity clears it. Replaces any earlier time. It comes max(0, due - now) later on the monotonic clock, whatever
   * the wall clock does meanwhile.
   */
  at(id: string, due: number): void {
    if (!Number.isFinite(due)) {
      this.due.delete(id);
      return;
    }
    const mono = this.o.elapsed() + Math.max(0, due - this.o.now());
    this.due.set(id, { wall: due, mono });
    this.heap.push(mono, id);
    this.arm();
  }

  /** Runs the message now (its due time is cleared); when it is running already, once more after. */
  wake(id: string): void {
    this.due.delete(id);
    if (this.stopped) return;
    if (this.busy.has(id)) {
      this.again.add(id);
      return;
    }
    this.busy.add(id);
    if (this.o.fresh?.(id) === true) this.waitingFresh.push(id);
    else this.waiting.push(id);
    this.pump();
  }

  /** The message left the queue: nothing more is scheduled for it. */
  forget(id: string): void {
    this.due.delete(id);
    this.came.delete(id);
    this.again.delete(id);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== undefined) this.o.timers.clear(this.timer);
    this.timer = undefined;
    this.waiting.drain();
    this.waitingFresh.drain();
    this.heap.clear();
    this.came.clear();
  }

  private arm(): void {
    if (this.stopped) return;
    const top = this.heap.peek();
    if (!top) return;
    if (this.timer !== undefined && this.timerAt <= top.due) return;
    if (this.timer !== undefined) this.o.timers.clear(this.timer);
    this.timerAt = top.due;
    // safeDelay: a due beyond setTimeout's range fires early; tick() then re-arms for the rest
    this.timer = this.o.timers.set(() => this.tick(), safeDelay(top.due - this.o.elapsed()));
  }

  private tick(): void {
    this.timer = undefined;
    this.timerAt = Infinity;
    if (this.stopped) return;
    const now = this.o.elapsed();
    for (;;) {
      const top = this.heap.peek();
      if (!top || top.due > now) break;
      this.heap.pop();
      const due = this.due.get(top.id);
      if (due?.mono !== top.due) continue; // stale
      this.came.set(top.id, Math.max(this.came.get(top.id) ?? -Infinity, due.wall));
      this.wake(top.id);
    }
    this.arm();
  }

  private pump(): void {
    while (!this.stopped && this.running < this.o.concurrency) {
      const id = this.next();
      if (id === undefined) return;
      this.running++;
      const came = this.came.get(id);
      this.came.delete(id);
      void this.o.run(id, came).finally(() => {
        this.running--;
        this.busy.delete(id);
        if (this.again.delete(id)) this.wake(id);
        this.pump();
      });
    }
  }

  /** The next message to run: the lanes take turns while both have messages waiting. */
  private next(): string | undefined {
    if (this.waitingFresh.length === 0) return this.waiting.shift();
    if (this.waiting.length === 0) return this.waitingFresh.shift();
    const fresh = this.freshTurn;
    this.freshTurn = !fresh;
    return fresh ? this.waitingFresh.shift() : this.waiting.shift();
  }
}
