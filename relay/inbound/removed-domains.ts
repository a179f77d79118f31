// Domains that left the routing table a short while ago get 451, not 554, for a grace period (--removed-domain-grace,
// default 24 h). A MailDomain deleted by mistake (kubectl delete -f on the wrong folder, a GitOps prune, a namespace
// deleted, a DomainClaim changed) would otherwise make every relay answer "554 5.7.1 relay access denied" to all of its
// mail at once: a permanent refusal, so each sender's server bounces the message back to its sender. With 451 they
// keep it queued and try again (for days, by default), and the domain's mail arrives once the object is restored.
// Postfix's soft_bounce is the same safety net for a configuration change.
//
// The memory outlives the process: its state (the domains of the table served last, and those in their grace) is
// saved in the spool folder (removed-domains-store.ts) and restored at start, so a relay restarted during the grace,
// or started with a table that lost a domain while it was down, still answers 451 (the grace then starts at the
// start). Pure: times are wall-clock ms passed in by the caller.

/** What a relay process saves of it: the domains of the table it served last, and the removed ones with when. */
export interface RemovedDomainsState {
  served: string[];
  /** domain -> when it left the table (RFC 3339) */
  removed: Record<string, string>;
}

export class RemovedDomains {
  /** domain -> when it left the table (ms since the epoch) */
  private readonly removedAt = new Map<string, number>();
  /** The domains of the table served last; undefined before the first (and without a saved state). */
  private served: ReadonlySet<string> | undefined;
  private readonly graceMs: number;

  constructor(graceMs: number) {
    this.graceMs = graceMs;
  }

  /** Takes over what a previous process of this spool saved. Removals older than the grace are dropped. */
  restore(state: RemovedDomainsState, nowMs: number): void {
    if (this.graceMs <= 0) return;
    this.served = new Set(state.served);
    for (const [d, at] of Object.entries(state.removed)) {
      const ms = Date.parse(at);
      if (!Number.isNaN(ms) && nowMs - ms < this.graceMs) this.removedAt.set(d, Math.min(ms, nowMs));
    }
  }

  /** A table with the domains `after` is served from now on. Returns the domains that left with it. */
  swap(after: ReadonlySet<string>, nowMs: number): string[] {
    const before = this.served;
    this.served = after;
    this.prune(nowMs);
    for (const d of after) this.removedAt.delete(d);
    if (before === undefined || this.graceMs <= 0) return [];
    const left: string[] = [];
    for (const d of before) {
      if (after.has(d)) continue;
      this.removedAt.set(d, nowMs);
      left.push(d);
    }
    return left;
  }

  /** How long ago (ms) `domain` (lowercase) left the table, while that is within the grace; else undefined. */
  removedFor(domain: string, nowMs: number): number | undefined {
    const at = this.removedAt.get(domain);
    if (at === undefined) return undefined;
    const ago = nowMs - at;
    if (ago < this.graceMs) return Math.max(0, ago);
    this.removedAt.delete(domain);
    return undefined;
  }

  /** What to save (sorted, so that an unchanged state saves the same bytes). */
  state(): RemovedDomainsState {
    const removed: Record<string, string> = {};
    for (const d of [...this.removedAt.keys()].sort())
      removed[d] = new Date(this.removedAt.get(d)!).toISOString();
    return { served: [...(this.served ?? [])].sort(), removed };
  }

  private prune(nowMs: number): void {
    for (const [d, at] of this.removedAt) if (nowMs - at >= this.graceMs) this.removedAt.delete(d);
  }
}

/** The 451 text for a recipient at a domain that left the routing table `agoMs` ago. */
export function removedDomainText(domain: string, agoMs: number): string {
  const minutes = Math.floor(agoMs / 60_000);
  const ago = minutes < 1 ? 'less than a minute' : minutes === 1 ? '1 minute' : `${minutes} minutes`;
  return `${domain} left the routing table ${ago} ago; try again later`;
}

const MAX_DOMAINS = 100_000;

/** Parses a saved state; a string saying what is wrong when it is not one. */
export function parseRemovedDomainsState(text: string): RemovedDomainsState | string {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    return `not JSON: ${err instanceof Error ? err.message : String(err)}`;
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return 'not a JSON object';
  const o = v as Record<string, unknown>;
  const served = o['served'];
  const removed = o['removed'];
  if (!Array.isArray(served) || served.length > MAX_DOMAINS || !served.every((d) => typeof d === 'string'))
    return 'served: must be a list of domains';
  if (typeof removed !== 'object' || removed === null || Array.isArray(removed))
    return 'removed: must be an object';
  const entries = Object.entries(removed as Record<string, unknown>);
  if (entries.length > MAX_DOMAINS) return 'removed: too many domains';
  const out: Record<string, string> = {};
  for (const [d, at] of entries) {
    if (typeof at !== 'string' || Number.isNaN(Date.parse(at))) return `removed.${d}: must be a time`;
    out[d] = at;
  }
  return { served, removed: out };
}
