// Pure: when to try a deferred leg again, and when it has expired.
//
// Exports: retryDelayMs(schedule, attempts), nextAttempt({ schedule, lifetimeMs, receivedAt, now, attempts }).
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
