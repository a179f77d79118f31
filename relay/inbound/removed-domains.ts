// Domains that left the routing table a short while ago get 451, not 554, for a grace period (--removed-domain-grace,
// default 24 h). A MailDomain deleted by mistake (kubectl delete -f on the wrong folder, a GitOps prune, a namespace
// deleted, a DomainClaim changed) would otherwise make every relay answer "554 5.7.1 relay access denied" to all of its
// mail at once: a permanent refusal, so each sender's server bounces the message back to its sender. With 451 they
// keep it queued and try again (for days, by default), and the domain's mail arrives once the object is restored.
// Postfix's soft_bounce is the same safety net for a configuration change. Pure: the caller passes a monotonic clock.
//
// What it does not cover: the memory is the process's; a relay started after the removal has never seen the domain
// and refuses it with 554 at once.

export class RemovedDomains {
  /** domain -> when it left the table (monotonic ms) */
  private readonly removedAt = new Map<string, number>();

  private readonly graceMs: number;

  constructor(graceMs: number) {
    this.graceMs = graceMs;
  }

  /**
   * The table served changes from one with the domains `before` (undefined for the first table) to one with the
   * domains `after`. Returns the domains that left it now.
   */
  swap(before: Iterable<string> | undefined, after: ReadonlySet<string>, nowMs: number): string[] {
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

  /** Domains in their grace period now. */
  get size(): number {
    return this.removedAt.size;
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
