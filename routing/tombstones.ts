// Domains that left the routing table recently, carried in the table itself (RoutingTable.removedDomains) by the
// operator, so that every relay answers 451 for them during the grace (relay/inbound/removed-domains.ts), also a relay
// that starts with an empty spool (a new replica, an emptyDir) and so has no memory of its own of what it served.
// Pure: the clock and the previous table's facts are passed in.
//
// Exports: carryRemovedDomains, withRemovedDomains, nextRemovalExpiry, tableRemovedAgo.
import type { RoutingTable } from './model.ts';

/** domain -> RFC 3339 instant it left the table. */
export type RemovedDomains = Readonly<Record<string, string>>;

/**
 * The removed domains the next table carries: those the previous table carried that are still out of the table and
 * within the grace, plus the domains of the previous table that the new one no longer has (left at `nowMs`). A
 * domain back in the table is dropped; an entry with an unparsable time is dropped. `previousDomains` undefined: no
 * previous table is known (the first one ever), so nothing has left. Keys sorted; empty with a grace of 0.
 */
export function carryRemovedDomains(o: {
  previousDomains: ReadonlySet<string> | undefined;
  previousRemoved: RemovedDomains | undefined;
  current: ReadonlySet<string>;
  nowMs: number;
  graceMs: number;
}): Record<string, string> {
  const out = new Map<string, string>();
  if (o.graceMs <= 0) return {};
  for (const [domain, at] of Object.entries(o.previousRemoved ?? {})) {
    const ms = Date.parse(at);
    if (o.current.has(domain) || Number.isNaN(ms) || o.nowMs - ms >= o.graceMs) continue;
    out.set(domain, at);
  }
  const now = new Date(o.nowMs).toISOString();
  for (const domain of o.previousDomains ?? []) {
    if (!o.current.has(domain) && !out.has(domain)) out.set(domain, now);
  }
  return Object.fromEntries([...out.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** The table with `removed` as its removedDomains (none: the field is absent, and the revision is what it was). */
export function withRemovedDomains(table: RoutingTable, removed: RemovedDomains): RoutingTable {
  const { removedDomains: _old, ...rest } = table;
  return Object.keys(removed).length === 0 ? rest : { ...rest, removedDomains: removed };
}

/** When the earliest removed domain's grace ends (ms since the epoch), or undefined when there is none. */
export function nextRemovalExpiry(removed: RemovedDomains, graceMs: number): number | undefined {
  let best: number | undefined;
  for (const at of Object.values(removed)) {
    const ms = Date.parse(at);
    if (!Number.isNaN(ms) && (best === undefined || ms + graceMs < best)) best = ms + graceMs;
  }
  return best;
}

/**
 * How long ago (ms, at least 0) `domain` left the table by the table's own record, while that is within the relay's
 * grace; undefined otherwise (not recorded, an unparsable time, past the grace, or a grace of 0).
 */
export function tableRemovedAgo(
  removed: RemovedDomains | undefined,
  domain: string,
  nowMs: number,
  graceMs: number,
): number | undefined {
  const at = removed !== undefined && Object.hasOwn(removed, domain) ? removed[domain] : undefined;
  if (at === undefined || graceMs <= 0) return undefined;
  const ms = Date.parse(at);
  if (Number.isNaN(ms)) return undefined;
  const ago = Math.max(0, nowMs - ms);
  return ago < graceMs ? ago : undefined;
}
