// Domains that left the routing table a short while ago get 451, not 554, for a grace period (--removed-domain-grace,
// default 24 h). A MailDomain deleted by mistake (kubectl delete -f on the wrong folder, a GitOps prune, a namespace
// deleted, a DomainClaim changed) would otherwise make every relay answer "554 5.7.1 relay access denied" to all of its
// mail at once: a permanent refusal, so each sender's server bounces the message back to its sender. With 451 they
// keep it queued and try again (for days, by default), and the domain's mail arrives once the object is restored.
// Postfix's soft_bounce is the same safety net for a configuration change.
//
// One mechanism, two users:
// - each relay (relay/relay.ts) keeps one for the tables it serves, saved in its spool folder
//   (relay/inbound/removed-domains-store.ts) and restored at start, so a relay restarted during the grace, or started
//   with a table that lost a domain while it was down, still answers 451 (the grace then starts at the start);
// - the operator (operator/controllers/routing/controller.ts) keeps one for the tables it applies and writes what it
//   holds into the table (RoutingTable.removedDomains), restored at start from the applied table; a relay adopts that
//   record (swap's `recorded`) while a table carries it, so that one that never served the domain (a new replica,
//   an empty spool) answers 451 too, for as long as the operator's grace says.
// Pure: times are wall-clock ms passed in by the caller.
import type { RoutingTable } from './model.ts';

/** What is saved of it: the domains of the table served last, and the removed ones with when they left. */
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
  /**
   * Removals known only from a table's own record (swap's `recorded`): they last while the table records them, so a
   * relay follows the operator's grace for domains it never served, and they are not saved (the table has them).
   */
  private readonly adopted = new Set<string>();
  private readonly graceMs: number;

  constructor(graceMs: number) {
    this.graceMs = graceMs;
  }

  /**
   * Takes over a saved state (a previous process's, or the table applied before) as this instance's own record.
   * Removals older than the grace, or with an unparsable time, are dropped; one in the future counts from now.
   */
  restore(state: RemovedDomainsState, nowMs: number): void {
    if (this.graceMs <= 0) return;
    this.served = new Set(state.served);
    this.adopt(state.removed, nowMs);
  }

  /**
   * A table with the domains `after` is served from now on; `recorded` is the removals it carries itself (its
   * removedDomains, written by the operator), adopted for the domains not in it and not known here yet, for as long
   * as a table records them. Returns the domains that left with it (by this instance's own record of the table
   * before; the first table removes nothing).
   */
  swap(after: ReadonlySet<string>, nowMs: number, recorded?: Readonly<Record<string, string>>): string[] {
    const before = this.served;
    this.served = after;
    for (const d of this.adopted) {
      if (recorded !== undefined && Object.hasOwn(recorded, d)) continue;
      this.adopted.delete(d);
      this.removedAt.delete(d);
    }
    this.prune(nowMs);
    for (const d of after) {
      this.removedAt.delete(d);
      this.adopted.delete(d);
    }
    if (this.graceMs <= 0) return [];
    if (recorded !== undefined) this.adopt(recorded, nowMs, after, this.adopted);
    if (before === undefined) return [];
    const left: string[] = [];
    for (const d of before) {
      if (after.has(d)) continue;
      // recorded in the table already (adopted above): it keeps the time it left there, as this instance's own now
      if (!this.removedAt.has(d)) this.removedAt.set(d, nowMs);
      this.adopted.delete(d);
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
    this.adopted.delete(domain);
    return undefined;
  }

  /** When the earliest grace ends (ms since the epoch); undefined when nothing is removed. */
  nextExpiry(): number | undefined {
    let first: number | undefined;
    for (const at of this.removedAt.values()) if (first === undefined || at < first) first = at;
    return first === undefined ? undefined : first + this.graceMs;
  }

  /** What to save (sorted, so that an unchanged state saves the same bytes); adopted removals are left out. */
  state(): RemovedDomainsState {
    const removed: Record<string, string> = {};
    for (const d of [...this.removedAt.keys()].sort())
      if (!this.adopted.has(d)) removed[d] = new Date(this.removedAt.get(d)!).toISOString();
    return { served: [...(this.served ?? [])].sort(), removed };
  }

  /**
   * Takes the removals within the grace for domains not in `except` and not known yet (own properties only), each
   * added to `mark` when given.
   */
  private adopt(
    removed: Readonly<Record<string, string>>,
    nowMs: number,
    except?: ReadonlySet<string>,
    mark?: Set<string>,
  ): void {
    for (const [d, at] of Object.entries(removed)) {
      if (except?.has(d) === true || this.removedAt.has(d)) continue;
      const ms = Date.parse(at);
      if (Number.isNaN(ms) || nowMs - ms >= this.graceMs) continue;
      this.removedAt.set(d, Math.min(ms, nowMs));
      mark?.add(d);
    }
  }

  private prune(nowMs: number): void {
    for (const [d, at] of this.removedAt)
      if (nowMs - at >= this.graceMs) {
        this.removedAt.delete(d);
        this.adopted.delete(d);
      }
  }
}

/** The table with `removed` as its removedDomains (none: the field is absent, and the revision is what it was). */
export function withRemovedDomains(
  table: RoutingTable,
  removed: Readonly<Record<string, string>>,
): RoutingTable {
  const { removedDomains: _old, ...rest } = table;
  return Object.keys(removed).length === 0 ? rest : { ...rest, removedDomains: { ...removed } };
}
