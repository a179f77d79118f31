// Node's timers hold at most 2^31-1 ms (24.8 days): a longer delay is replaced by 1 ms, with a
// TimeoutOverflowWarning. A TestRecipient's expiresAt, a retry schedule, --max-queue-lifetime or any interval a
// user sets can be longer than that, so every timer whose delay comes from input is armed through safeDelay: at
// most a day. A caller waiting for a later moment re-arms when the timer fires early (the work queue's addAfter,
// the delivery engine's due heap); a periodic job simply runs at least daily. Pure: the routing package is the
// one the operator, the relay and the CLI all import.

/** The longest delay any mailroute timer is armed with: one day. */
export const MAX_TIMER_DELAY_MS = 86_400_000;

/** ms clamped to [0, MAX_TIMER_DELAY_MS]; NaN and negative delays become 0. */
export function safeDelay(ms: number): number {
  if (!(ms > 0)) return 0;
  return Math.min(ms, MAX_TIMER_DELAY_MS);
}
