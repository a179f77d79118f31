// Pure: when to try a deferred leg again, and when it has expired.
//
// Exports: retryDelayMs(schedule, attempts), nextAttempt({ schedule, lifetimeMs, receivedAt, now, attempts }),
// longestStepMs(schedule), dueAt(nextAttemptAt, nowMs, longestStepMs).
// The schedule is a list of delays between attempts (--retry-schedule "1m,5m,15m,1h"); the last step repeats.
// A leg expires max-queue-lifetime after the message was received: the next attempt is never scheduled later than
// the expiry time, so the last attempt happens at expiry and a deferral after it is final.

export type NextAttempt = { kind: 'retry'; at: Date } | { kind: 'expired'; expiredAt: Date };

/** Delay after the attempts-th attempt (1-based). An empty schedule retries after 60 s. */
export function retryDelayMs(schedule: readonly number[], attempts: number): number {
  if (schedule.length === 0) return 60_000;
  const i = Math.min(Math.max(attempts, 1), schedule.length) - 1;
  return Math.max(0, schedule[i] ?? 60_000);
}

export function nextAttempt(p: {
  schedule: readonly number[];
  lifetimeMs: number;
  receivedAt: Date;
  now: Date;
  /** Attempts made so far, including the one that just deferred. */
  attempts: number;
}): NextAttempt {
  const expiry = p.receivedAt.getTime() + p.lifetimeMs;
  if (p.now.getTime() >= expiry) return { kind: 'expired', expiredAt: new Date(expiry) };
  const at = Math.min(p.now.getTime() + retryDelayMs(p.schedule, p.attempts), expiry);
  return { kind: 'retry', at: new Date(at) };
}

/** The longest delay the schedule ever sets between two attempts. */
export function longestStepMs(schedule: readonly number[]): number {
  if (schedule.length === 0) return 60_000;
  return Math.max(0, ...schedule);
}

/**
 * When a deferred leg is due (ms since the epoch), from the nextAttemptAt stored with it. A time further ahead of now
 * than the schedule's longest step was not set by it: the wall clock has been stepped back since (a node that booted
 * with its clock ahead and was corrected by NTP, a VM restored from a snapshot), or the schedule was shortened. Such a
 * leg is due now, instead of waiting as long as the clock went back, which can be months. Absent or unparsable: now.
 */
export function dueAt(nextAttemptAt: string | undefined, nowMs: number, longestMs: number): number {
  const at = nextAttemptAt === undefined ? nowMs : Date.parse(nextAttemptAt);
  if (Number.isNaN(at) || at - nowMs > longestMs) return nowMs;
  return at;
}
