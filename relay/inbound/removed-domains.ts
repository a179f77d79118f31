// The relay's side of the removed-domain grace (routing/removed-domains.ts has the mechanism, shared with the
// operator): the 451 text, and the check of the state file a relay saves in its spool folder
// (removed-domains-store.ts).
import type { RemovedDomainsState } from '../../routing/removed-domains.ts';

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
