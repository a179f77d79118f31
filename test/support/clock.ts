// A step of the wall clock, as NTP makes at boot or a resumed virtual machine sees: Date jumps and runs on from
// there, while timers and performance.now() (the monotonic clock) go on undisturbed. For tests of what must measure
// durations on the monotonic clock. fakeWallClock() must come before the code under test is set up (code that
// took a reference to the real Date.now would not see the step); restoreWallClock() always undoes it.
import { vi } from 'vitest';

/** Date from now on is a fake that runs with real time, until stepWallClock() moves it. */
export function fakeWallClock(): void {
  vi.useFakeTimers({ toFake: ['Date'], shouldAdvanceTime: true, advanceTimeDelta: 5 });
}

/** The wall clock jumps by ms (negative: back). */
export function stepWallClock(ms: number): void {
  vi.setSystemTime(Date.now() + ms);
}

export function restoreWallClock(): void {
  vi.useRealTimers();
}
