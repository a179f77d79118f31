// A fake clock for the delivery engine's unit tests: the wall clock (clock, now), the monotonic clock (elapsed) and the
// Timers seam (relay/delivery/scheduler.ts) from one virtual time that only moves when the test calls advance(), as
// real time moves all three. step() moves the wall clock alone, as NTP at boot or a resumed virtual machine does:
// timers and the monotonic clock go on undisturbed. Nothing waits for real time.
import type { TimerHandle, Timers } from '../../relay/delivery/scheduler.ts';

interface FakeTimer {
  at: number;
  seq: number;
  fn: () => void;
}

/** Lets every promise chain and stream callback that is ready run (no timers: those belong to the fake clock). */
export async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise<void>((r) => setImmediate(r));
}

export class FakeClock implements Timers {
  /** The monotonic time (ms since the fake began): what timers are armed on. */
  private t = 0;
  /** The wall clock minus the monotonic time: changed by step() only. */
  private skew: number;
  private seq = 0;
  private readonly timers = new Map<object, FakeTimer>();

  constructor(start = Date.UTC(2026, 10, 28, 10, 0, 0)) {
    this.skew = start;
  }

  /** The engine's clock option: the wall clock. */
  readonly clock = (): Date => new Date(this.t + this.skew);

  /** The engine's elapsed option: the monotonic clock. */
  readonly elapsed = (): number => this.t;

  /** The wall clock, in ms. */
  get now(): number {
    return this.t + this.skew;
  }

  /** The wall clock jumps by ms (negative: back); timers and the monotonic clock do not move. */
  step(ms: number): void {
    this.skew += ms;
  }

  /** Timers armed and not fired or cleared. */
  get pending(): number {
    return this.timers.size;
  }

  set(fn: () => void, ms: number): TimerHandle {
    const handle = {};
    this.timers.set(handle, { at: this.t + Math.max(0, ms), seq: this.seq++, fn });
    return handle;
  }

  clear(handle: TimerHandle): void {
    if (typeof handle === 'object') this.timers.delete(handle);
  }

  /**
   * Moves time forward by ms, firing due timers in order (each at its own time) and letting the work they start
   * settle before the next one.
   */
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    await settle();
    for (;;) {
      let next: [object, FakeTimer] | undefined;
      for (const entry of this.timers) {
        if (entry[1].at > end) continue;
        if (!next || entry[1].at < next[1].at || (entry[1].at === next[1].at && entry[1].seq < next[1].seq))
          next = entry;
      }
      if (!next) break;
      this.timers.delete(next[0]);
      this.t = Math.max(this.t, next[1].at);
      next[1].fn();
      await settle();
    }
    this.t = end;
    await settle();
  }
}
