// Pure: when to try a deferred leg again, and when it has expired.
//
// Exports: retryDelayMs(schedule, attempts), nextAttempt({ schedule, lifetimeMs, receivedAt, now, attempts }),
// dueAt(leg, nowMs).
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

/** How far in the future a leg's last attempt may lie before the clock counts as stepped back (NTP slews less). */
const CLOCK_STEP_TOLERANCE_MS = 60_000;

/**
 * When a deferred leg is due (ms since the epoch), from the times stored with it. A last attempt in the future means
 * the wall clock was stepped back since (a node that booted with its clock ahead and was corrected by NTP, a VM
 * restored from a snapshot): nextAttemptAt is then as far off as the clock went back, which can be months, so the leg
 * is due now; its next deferral is scheduled on the corrected clock. Otherwise nextAttemptAt as stored (a schedule
 * shortened since keeps the times it set: a restart does not send the whole queue at once). Absent or unparsable: now.
 * This matters when a state is read (at start, or a look for another reason): a running engine waits for the time it
 * scheduled on the monotonic clock (scheduler.ts), which a step of the wall clock does not move.
 */
export function dueAt(
  leg: { nextAttemptAt?: string | undefined; lastAttemptAt?: string | undefined },
  nowMs: number,
): number {
  const last = leg.lastAttemptAt === undefined ? Number.NaN : Date.parse(leg.lastAttemptAt);
  if (last - nowMs > CLOCK_STEP_TOLERANCE_MS) return nowMs;
  const at = leg.nextAttemptAt === undefined ? nowMs : Date.parse(leg.nextAttemptAt);
  return Number.isNaN(at) ? nowMs : at;
}
