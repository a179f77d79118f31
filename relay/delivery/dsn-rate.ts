// DSNs rate-limited per recipient domain (backscatter): a flood of mail to unknown mailboxes of one
// managed domain, each refused 550 by its primary, would turn into a flood of DSNs to (forged) senders. A token bucket
// per domain of the failed recipients (perMinute tokens a minute, up to burst); over the limit the DSN is deferred,
// never dropped: the message stays queued, owing its DSN, and is tried again when a token is due (counted as
// mailroute_dsn_total{kind="deferred"}). Primary mail itself is never held back by it. Pure: the clock is a parameter.

export interface DsnRateLimit {
  perMinute: number;
  burst: number;
}

type TakeResult = { ok: true } | { ok: false; retryInMs: number };

export interface DsnLimiter {
  take(domain: string, nowMs: number): TakeResult;
}

/** At most this many domains are remembered (the least recently used is forgotten, i.e. gets a full bucket). */
const MAX_DOMAINS = 10_000;

export function createDsnLimiter(limit: DsnRateLimit): DsnLimiter {
  const buckets = new Map<string, { tokens: number; at: number }>();
  const ratePerMs = limit.perMinute / 60_000;
  return {
    take(domain, nowMs) {
      if (limit.perMinute <= 0) return { ok: true };
      const b = buckets.get(domain) ?? { tokens: limit.burst, at: nowMs };
      buckets.delete(domain);
      b.tokens = Math.min(limit.burst, b.tokens + Math.max(0, nowMs - b.at) * ratePerMs);
      b.at = nowMs;
      buckets.set(domain, b);
      if (buckets.size > MAX_DOMAINS) {
        const oldest = buckets.keys().next();
        if (oldest.done !== true) buckets.delete(oldest.value);
      }
      if (b.tokens >= 1) {
        b.tokens -= 1;
        return { ok: true };
      }
      return { ok: false, retryInMs: Math.ceil((1 - b.tokens) / ratePerMs) };
    },
  };
}
