// Domain grants: which namespaces may route which domains, from the cluster-scoped DomainClaims. Pure.
// - No DomainClaim at all: every namespace may use any domain (the single-tenant default, today's behaviour).
// - Otherwise a namespace may use a domain only when a DomainClaim lists both: the domain (exactly, through a
//   `*.parent` wildcard, or `*`) and the namespace.
// - Precedence between granted namespaces for one domain: the most specific matching pattern first (an exact domain,
//   then the wildcard with the most labels, then `*`; ties by DomainClaim name), and within a DomainClaim the order of
//   `namespaces.names`. It never depends on object age, so re-creating an object cannot hand its domain away.
import { byCodeUnit } from './canonical.ts';
import type { DomainClaim } from './types.ts';

export interface Grants {
  /** true when there is no DomainClaim at all: every namespace may use any domain. */
  readonly open: boolean;
  /** May objects in `namespace` route `domain` (lowercase)? */
  permits(namespace: string, domain: string): boolean;
  /**
   * The precedence of `namespace` for `domain`: lower wins a conflict between granted namespaces. undefined when the
   * namespace is not granted the domain, and 0 for everyone when the grants are open.
   */
  rank(namespace: string, domain: string): number | undefined;
  /**
   * The `destinations` of the DomainClaim that grants `domain` to `namespace` (the first in precedence order that
   * lists both); undefined when the grants are open or that claim has none.
   */
  destinations(namespace: string, domain: string): DomainClaim['spec']['destinations'];
  /**
   * The DomainClaim that grants `domain` to `namespace` (the first in precedence order that lists both), whose
   * `destinations` apply to the domain's servers; undefined when the grants are open or none grants it.
   */
  grantingClaim(namespace: string, domain: string): DomainClaim | undefined;
}

/** Does a grant pattern (`*`, `*.corp.test`, `corp.test`) cover the lowercase domain? */
export function patternMatches(pattern: string, domain: string): boolean {
  if (pattern === '*') return true;
  if (pattern.startsWith('*.'))
    return domain.endsWith(pattern.slice(1)) && domain.length > pattern.length - 1;
  return pattern === domain;
}

/** Higher is more specific: an exact domain beats any wildcard, a longer wildcard beats a shorter one, `*` is last. */
export function specificity(pattern: string): number {
  if (pattern === '*') return 0;
  const labels = pattern.split('.').length;
  return pattern.startsWith('*.') ? labels : 1000 + labels;
}

export function compileGrants(claims: readonly DomainClaim[]): Grants {
  if (claims.length === 0) {
    return {
      open: true,
      permits: () => true,
      rank: () => 0,
      destinations: () => undefined,
      grantingClaim: () => undefined,
    };
  }
  const sorted = [...claims].sort((a, b) => byCodeUnit(a.metadata.name, b.metadata.name));
  const orders = new Map<string, Map<string, number>>();
  /** namespace -> rank for one domain, computed once per domain. */
  const orderFor = (domain: string): Map<string, number> => {
    let order = orders.get(domain);
    if (order !== undefined) return order;
    const matches: { spec: number; claim: number; names: readonly string[] }[] = [];
    sorted.forEach((c, i) => {
      let best = -1;
      for (const p of c.spec.domains) if (patternMatches(p, domain)) best = Math.max(best, specificity(p));
      if (best >= 0) matches.push({ spec: best, claim: i, names: c.spec.namespaces.names });
    });
    matches.sort((a, b) => b.spec - a.spec || a.claim - b.claim);
    order = new Map();
    const granting = new Map<string, DomainClaim>();
    for (const m of matches) {
      for (const ns of m.names) {
        if (order.has(ns)) continue;
        order.set(ns, order.size);
        granting.set(ns, sorted[m.claim]!);
      }
    }
    orders.set(domain, order);
    grantingClaims.set(domain, granting);
    return order;
  };
  /** domain -> namespace -> the DomainClaim that grants it (filled with orders). */
  const grantingClaims = new Map<string, Map<string, DomainClaim>>();
  const grantingClaim = (namespace: string, domain: string): DomainClaim | undefined => {
    const d = domain.toLowerCase();
    orderFor(d);
    return grantingClaims.get(d)?.get(namespace);
  };
  return {
    open: false,
    permits: (namespace, domain) => orderFor(domain.toLowerCase()).has(namespace),
    rank: (namespace, domain) => orderFor(domain.toLowerCase()).get(namespace),
    destinations: (namespace, domain) => grantingClaim(namespace, domain)?.spec.destinations,
    grantingClaim,
  };
}
