// compile(objects) -> { table, issues, revision }: pure and deterministic. The input order never changes a byte.
// Cross-object checks become per-object issues (status conditions in a cluster, lines in `check`). An object with
// an issue is left out of the table; a MailDomain whose policy is left out stays in with no policy (451 4.3.5).
// Conflicts are decided among all claimants, valid or not: a first one with an issue of its own leaves its domain
// unrouted or without a policy (mail deferred, not guessed), and is told so (a notice), never that it routes it.
import { cacheSpelling, domainOf, parseAddress } from './address.ts';
import { byCodeUnit, canonicalJson, sha256Hex } from './canonical.ts';
import type {
  CompileIssue,
  DomainRoute,
  ObjectRef,
  RoutingTable,
  ServerRoute,
  StageRoute,
  TestRecipientRoute,
} from './model.ts';
import { API_VERSION } from './model.ts';
import { canonicalGrantTexts, grantTextErrors } from './destinations.ts';
import { compileGrants } from './grants.ts';
import { parseInstant } from './schedule.ts';
import type { DeliveryPolicy, DomainClaim, MailDomain, MailrouteObject, TestRecipient } from './types.ts';

/** Issue reasons (CamelCase constants, used as condition reasons). */
export const Reasons = {
  /** A second DeliveryPolicy for one MailDomain, or a second TestRecipient for one address (the older one wins). */
  Conflict: 'Conflict',
  /** A second MailDomain for one domain, in any namespace (the older one wins). */
  DomainConflict: 'DomainConflict',
  /** domainRef names no MailDomain in the namespace. */
  DomainNotFound: 'DomainNotFound',
  /** domainRef names a MailDomain that is not accepted itself. */
  DomainNotAccepted: 'DomainNotAccepted',
  /** policyRef names no DeliveryPolicy in the namespace. */
  PolicyNotFound: 'PolicyNotFound',
  /** policyRef names a DeliveryPolicy that is not accepted itself. */
  PolicyNotAccepted: 'PolicyNotAccepted',
  /** primary or secondary names no server of the MailDomain. */
  UnknownServer: 'UnknownServer',
  /** An address (TestRecipient address, MailDomain account) is not in the domain. */
  AddressOutsideDomain: 'AddressOutsideDomain',
  /**
   * A TestRecipient's forwardTo that routing's own parser refuses (a local part over 64 octets passes the CRD's
   * pattern): a leg to it could not be read back from the spool.
   */
  InvalidAddress: 'InvalidAddress',
  /** Split (or Dual scope Accounts) cannot know which mailboxes a server has: no accounts and no verification. */
  NoAccountSource: 'NoAccountSource',
  /** A server with authSecretRef and tls None, without allowPlaintextAuth: true. */
  PlaintextAuth: 'PlaintextAuth',
  /** The same kind/namespace/name was given twice with different content. */
  Duplicate: 'Duplicate',
  /** A domain (spec.domain, copyRecipientDomain, forwardTo) that no DomainClaim grants to the object's namespace. */
  NotPermitted: 'NotPermitted',
  /** A time (TestRecipient expiresAt, a stage's until) that is not an RFC 3339 date-time: never read as "never". */
  InvalidTime: 'InvalidTime',
  /**
   * An entry of the granting DomainClaim's destinations that cannot be read (stored before the CRD's pattern refused
   * it). A bad deny entry denies every address of the domain's servers, a bad allow entry is dropped. The MailDomain
   * stays in the table under that rule: its mail waits in the queue, and flows once the claim is fixed.
   */
  InvalidDestinations: 'InvalidDestinations',
} as const;
type Reason = (typeof Reasons)[keyof typeof Reasons];

/**
 * Something an object in a conflict should hear about (a Warning Event in a cluster; a warning line in `check`):
 * - DomainContested, to the MailDomain that routes a domain: another object, possibly in a namespace its owner cannot
 *   see, declares the same domain and lost. The message never names an object in another namespace.
 * - DomainContested, to a MailDomain that takes precedence for its domain but is left out for an issue of its own:
 *   the domain has no route (its mail is deferred) until it is fixed or deleted.
 * - PolicyContested, to the oldest DeliveryPolicy of a MailDomain that has newer ones, when it is left out for an issue
 *   of its own: the MailDomain has no policy (its mail is deferred) until it is fixed or deleted.
 */
export interface CompileNotice {
  kind: MailrouteObject['kind'];
  namespace: string;
  name: string;
  reason: 'DomainContested' | 'PolicyContested';
  message: string;
}

export interface CompileResult {
  table: RoutingTable;
  /** Sorted by kind, namespace, name, field. */
  issues: CompileIssue[];
  /** Sorted by kind, namespace, name. */
  notices: CompileNotice[];
  /** sha256 hex of `json`. */
  revision: string;
  /** The canonical JSON of the table. */
  json: string;
}

type Obj = MailrouteObject;

const KIND_ORDER: Record<Obj['kind'], number> = { MailDomain: 0, DeliveryPolicy: 1, TestRecipient: 2 };

function identity(o: Obj): string {
  return `${o.kind}/${o.metadata.namespace}/${o.metadata.name}`;
}

function objectRef(o: Obj): ObjectRef {
  // keys in sorted order (see canonicalJson's fast path)
  return {
    generation: o.metadata.generation ?? 0,
    kind: o.kind,
    name: o.metadata.name,
    namespace: o.metadata.namespace,
  };
}

function created(o: Obj): number {
  const t = o.metadata.creationTimestamp === undefined ? NaN : Date.parse(o.metadata.creationTimestamp);
  return Number.isNaN(t) ? Number.POSITIVE_INFINITY : t;
}

/** Oldest creationTimestamp first (objects without one last), ties broken by namespace then name. */
function byAge(a: Obj, b: Obj): number {
  const ta = created(a);
  const tb = created(b);
  if (ta !== tb) return ta < tb ? -1 : 1;
  return (
    byCodeUnit(a.metadata.namespace, b.metadata.namespace) || byCodeUnit(a.metadata.name, b.metadata.name)
  );
}

function describe(o: Obj): string {
  return `${o.kind} ${o.metadata.namespace}/${o.metadata.name}`;
}

/** Parses a validated duration (e.g. 1h30m) into seconds. */
export function durationSeconds(d: string): number {
  let total = 0;
  for (const m of d.matchAll(/(\d+)(h|m|s)/g)) {
    total += Number(m[1]) * (m[2] === 'h' ? 3600 : m[2] === 'm' ? 60 : 1);
  }
  return total;
}

function localOf(address: string): string {
  return address.slice(0, address.lastIndexOf('@'));
}

function groupBy<T>(items: readonly T[], key: (t: T) => string): Map<string, T[]> {
  const m = new Map<string, T[]>();
  for (const it of items) {
    const k = key(it);
    const g = m.get(k);
    if (g === undefined) m.set(k, [it]);
    else g.push(it);
  }
  return m;
}

/**
 * `claims`: the cluster-scoped DomainClaims. None at all (the default): every namespace may use any domain, and the
 * oldest MailDomain for a domain wins. With claims, an object outside its namespace's grants is refused with
 * NotPermitted, and the grant's precedence (routing/grants.ts), not age, decides between namespaces.
 */
export function compile(
  input: readonly MailrouteObject[],
  claims: readonly DomainClaim[] = [],
): CompileResult {
  const grants = compileGrants(claims);
  const notices: CompileNotice[] = [];
  const issues: CompileIssue[] = [];
  const bad = new Set<Obj>();
  /** An issue of `o`; unless `keep`, `o` is left out of the table (and out of every conflict decided after it). */
  const issue = (
    o: Obj,
    condition: CompileIssue['condition'],
    reason: Reason,
    field: string,
    message: string,
    keep = false,
  ) => {
    issues.push({
      kind: o.kind,
      namespace: o.metadata.namespace,
      name: o.metadata.name,
      condition,
      reason,
      field,
      message,
    });
    if (!keep) bad.add(o);
  };
  /** False, with an Accepted=False InvalidTime issue on `o`, when `text` at `field` is not an RFC 3339 date-time. */
  const validTime = (o: Obj, field: string, text: string): boolean => {
    if (parseInstant(text) !== undefined) return true;
    issue(
      o,
      'Accepted',
      Reasons.InvalidTime,
      field,
      `${JSON.stringify(text)} is not an RFC 3339 date-time such as 2026-12-31T00:00:00Z or 2026-12-31T01:00:00+01:00 (a time that cannot be read is never taken as "never"); ${describe(o)} is left out of the routing table until it is fixed`,
    );
    return false;
  };
  /** False, with an Accepted=False NotPermitted issue on `o`, when no DomainClaim grants `domain` to its namespace. */
  const permitted = (o: Obj, field: string, domain: string): boolean => {
    if (grants.permits(o.metadata.namespace, domain)) return true;
    issue(
      o,
      'Accepted',
      Reasons.NotPermitted,
      field,
      `no DomainClaim grants domain ${domain} to namespace ${o.metadata.namespace}; ask the cluster admin`,
    );
    return false;
  };

  const permittedCopyDomain = (p: DeliveryPolicy, state: RoutingStateSpec, at: string): boolean => {
    const copyDomain = state.dual?.copyRecipientDomain;
    return copyDomain === undefined || permitted(p, `${at}dual.copyRecipientDomain`, copyDomain);
  };

  // One object per identity (a different duplicate is refused, whatever the input order). Every later step is
  // order-independent: groups are sorted before a winner is chosen, and the table is built in sorted order.
  const byId = new Map<string, Obj[]>();
  for (const o of input) {
    const id = identity(o);
    const same = byId.get(id);
    if (same === undefined) byId.set(id, [o]);
    else same.push(o);
  }
  const domains: MailDomain[] = [];
  const policies: DeliveryPolicy[] = [];
  const recipients: TestRecipient[] = [];
  for (const same of byId.values()) {
    let o = same[0]!;
    if (same.length > 1) {
      const jsons = same
        .map((x) => ({ x, json: canonicalJson(x) }))
        .sort((a, b) => byCodeUnit(a.json, b.json));
      o = jsons[0]!.x;
      if (jsons.some((j) => j.json !== jsons[0]!.json)) {
        issues.push({
          kind: o.kind,
          namespace: o.metadata.namespace,
          name: o.metadata.name,
          condition: 'Accepted',
          reason: Reasons.Duplicate,
          field: 'metadata.name',
          message: `${describe(o)} was given ${same.length} times with different content; the first in canonical order is used`,
        });
      }
    }
    if (o.kind === 'MailDomain') domains.push(o);
    else if (o.kind === 'DeliveryPolicy') policies.push(o);
    else recipients.push(o);
  }
  const byName = (a: Obj, b: Obj) =>
    byCodeUnit(a.metadata.namespace, b.metadata.namespace) || byCodeUnit(a.metadata.name, b.metadata.name);
  domains.sort(byName);
  policies.sort(byName);
  recipients.sort(byName); // so that per-policy lists and `sources` come out sorted without sorting again

  // --- MailDomains: the domain must be granted to the namespace; servers and accounts must be valid; then one per
  // domain cluster-wide among the valid ones (the grant's precedence, then age, decides). A conflict never names an
  // object in another namespace: its owner may be another tenant.
  const granted: MailDomain[] = [];
  for (const d of domains) if (permitted(d, 'spec.domain', d.spec.domain)) granted.push(d);
  for (const d of domains) {
    d.spec.servers.forEach((s, i) => {
      // Also a CEL rule of the CRD; here for objects stored before the rule existed.
      if (s.authSecretRef !== undefined && s.tls === 'None' && s.allowPlaintextAuth !== true) {
        issue(
          d,
          'Accepted',
          Reasons.PlaintextAuth,
          `spec.servers[${i}].allowPlaintextAuth`,
          `server ${s.name} has an authSecretRef and tls None, which sends the password in plain text: use another tls mode, or set allowPlaintextAuth: true`,
        );
      }
    });
    d.spec.accounts?.forEach((entry, i) => {
      entry.addresses.forEach((a, j) => {
        if (domainOf(a) !== d.spec.domain) {
          issue(
            d,
            'Accepted',
            Reasons.AddressOutsideDomain,
            `spec.accounts[${i}].addresses[${j}]`,
            `${a} is not in domain ${d.spec.domain}`,
          );
        }
      });
    });
  }
  const rank = (d: MailDomain): number => grants.rank(d.metadata.namespace, d.spec.domain) ?? Infinity;
  for (const group of groupBy(granted, (d) => d.spec.domain).values()) {
    if (group.length < 2) continue;
    group.sort((a, b) => rank(a) - rank(b) || byAge(a, b));
    // Decided among all claimants, valid or not: a first one left out for its own issue leaves the domain without a
    // route (its mail deferred) rather than handing it to the next, which may be another tenant's (docs/routing.md).
    const [winner, ...losers] = group as [MailDomain, ...MailDomain[]];
    const domain = winner.spec.domain;
    let foreign = false;
    for (const l of losers) {
      const same = l.metadata.namespace === winner.metadata.namespace;
      foreign ||= !same;
      issue(
        l,
        'Accepted',
        Reasons.DomainConflict,
        'spec.domain',
        same
          ? `domain ${domain} is already declared by ${describe(winner)}`
          : `domain ${domain} is claimed by another object you cannot see`,
      );
    }
    if (bad.has(winner)) {
      // never "this one routes it": it does not, and nothing else does while it takes precedence
      notices.push({
        kind: winner.kind,
        namespace: winner.metadata.namespace,
        name: winner.metadata.name,
        reason: 'DomainContested',
        message: `domain ${domain} is also declared by ${foreign ? 'an object in another namespace' : 'another object'}; this one takes precedence but is not accepted (its own issue), so ${domain} has no route and its mail is deferred until this one is fixed or deleted`,
      });
    } else if (foreign) {
      notices.push({
        kind: winner.kind,
        namespace: winner.metadata.namespace,
        name: winner.metadata.name,
        reason: 'DomainContested',
        message: `domain ${domain} is also declared by an object in another namespace; this one routes it`,
      });
    }
  }
  // The granting DomainClaim's destinations: an entry that cannot be read is reported on every MailDomain routed under
  // the claim, which stays in the table under the fail-closed rule (a bad deny entry denies every address). One left
  // out for another issue is not routed by it, and shows that issue.
  for (const d of granted) {
    if (bad.has(d)) continue;
    const claim = grants.grantingClaim(d.metadata.namespace, d.spec.domain);
    for (const e of grantTextErrors(claim?.spec.destinations)) {
      issue(
        d,
        'Accepted',
        Reasons.InvalidDestinations,
        `DomainClaim/${claim?.metadata.name ?? ''} spec.destinations.${e.list}[${e.index}]`,
        e.list === 'deny'
          ? `${e.message}; a deny entry that cannot be read denies every address, so no server of ${d.spec.domain} is connected to (its mail waits in the queue) until the cluster admin fixes the DomainClaim`
          : `${e.message}; an allow entry that cannot be read is left out (it permits nothing) until the cluster admin fixes the DomainClaim`,
        true,
      );
    }
  }

  // --- DeliveryPolicies: stage times, refs, servers exist, Split can tell who is known; then one per MailDomain among
  // the valid ones (the oldest).
  const domainByName = new Map(domains.map((d) => [`${d.metadata.namespace}/${d.metadata.name}`, d]));
  const policyDomain = new Map<DeliveryPolicy, MailDomain>();
  for (const p of policies) {
    p.spec.stages?.forEach((st, i) => validTime(p, `spec.stages[${i}].until`, st.until));
    const d = domainByName.get(`${p.metadata.namespace}/${p.spec.domainRef.name}`);
    if (d === undefined) {
      issue(
        p,
        'ResolvedRefs',
        Reasons.DomainNotFound,
        'spec.domainRef.name',
        `MailDomain ${p.metadata.namespace}/${p.spec.domainRef.name} not found`,
      );
      continue;
    }
    policyDomain.set(p, d);
  }
  for (const [p, d] of policyDomain) {
    if (bad.has(p)) continue;
    const states = routingStates(p);
    if (!states.every(({ state, at }) => permittedCopyDomain(p, state, at))) continue;
    if (bad.has(d)) {
      issue(
        p,
        'ResolvedRefs',
        Reasons.DomainNotAccepted,
        'spec.domainRef.name',
        `${describe(d)} is not accepted`,
      );
      continue;
    }
    const servers = new Set(d.spec.servers.map((s) => s.name));
    const known = (server: string) =>
      (d.spec.accounts ?? []).some((a) => a.server === server) ||
      d.spec.recipientVerification?.server === server;
    const list = [...servers].join(', ');
    // The policy's own fields and every stage's: each is a routing state the domain may be in.
    for (const { state, at } of states) {
      if (!servers.has(state.primary)) {
        issue(
          p,
          'ResolvedRefs',
          Reasons.UnknownServer,
          `${at}primary`,
          `server ${state.primary} is not one of ${describe(d)}'s servers (${list})`,
        );
      }
      if (state.secondary !== undefined && !servers.has(state.secondary)) {
        issue(
          p,
          'ResolvedRefs',
          Reasons.UnknownServer,
          `${at}secondary`,
          `server ${state.secondary} is not one of ${describe(d)}'s servers (${list})`,
        );
      }
      if (state.mode === 'Split' && !known(state.primary)) {
        issue(
          p,
          'Accepted',
          Reasons.NoAccountSource,
          `${at}mode`,
          `Split needs to know who has a mailbox on the primary: add accounts for server ${state.primary} or recipientVerification with server ${state.primary} to ${describe(d)}`,
        );
      }
      const scope = state.dual?.scope ?? 'All';
      if (
        state.mode === 'Dual' &&
        scope === 'Accounts' &&
        state.secondary !== undefined &&
        !known(state.secondary)
      ) {
        issue(
          p,
          'Accepted',
          Reasons.NoAccountSource,
          `${at}dual.scope`,
          `scope Accounts needs to know who has a mailbox on the secondary: add accounts for server ${state.secondary} or recipientVerification with server ${state.secondary} to ${describe(d)}`,
        );
      }
    }
  }
  for (const group of groupBy([...policyDomain.keys()], (p) => identity(policyDomain.get(p)!)).values()) {
    if (group.length < 2) continue;
    group.sort(byAge);
    // The oldest wins, valid or not: with an issue of its own the MailDomain has no policy (mail deferred, 451 4.3.5)
    // rather than a newer policy taking effect by accident (a cut-over prepared next to it, say).
    const [winner, ...losers] = group as [DeliveryPolicy, ...DeliveryPolicy[]];
    const mailDomain = `MailDomain ${winner.metadata.namespace}/${winner.spec.domainRef.name}`;
    for (const l of losers) {
      issue(
        l,
        'Accepted',
        Reasons.Conflict,
        'spec.domainRef.name',
        `${mailDomain} already has ${describe(winner)}`,
      );
    }
    if (bad.has(winner)) {
      notices.push({
        kind: winner.kind,
        namespace: winner.metadata.namespace,
        name: winner.metadata.name,
        reason: 'PolicyContested',
        message: `${mailDomain} has ${losers.length === 1 ? 'a newer DeliveryPolicy' : `${losers.length} newer DeliveryPolicies`}; this one, the oldest, takes precedence but is not accepted (its own issue), so ${mailDomain} has no policy and its mail is deferred (451 4.3.5) until this one is fixed or deleted`,
      });
    }
  }

  // --- TestRecipients: ref, address in the domain, one per address.
  const policyByName = new Map(policies.map((p) => [`${p.metadata.namespace}/${p.metadata.name}`, p]));
  const trByPolicy = new Map<DeliveryPolicy, TestRecipient[]>();
  for (const t of recipients) {
    if (t.spec.expiresAt !== undefined && !validTime(t, 'spec.expiresAt', t.spec.expiresAt)) continue;
    const p = policyByName.get(`${t.metadata.namespace}/${t.spec.policyRef.name}`);
    if (p === undefined) {
      issue(
        t,
        'ResolvedRefs',
        Reasons.PolicyNotFound,
        'spec.policyRef.name',
        `DeliveryPolicy ${t.metadata.namespace}/${t.spec.policyRef.name} not found`,
      );
      continue;
    }
    if (bad.has(p)) {
      issue(
        t,
        'ResolvedRefs',
        Reasons.PolicyNotAccepted,
        'spec.policyRef.name',
        `${describe(p)} is not accepted`,
      );
      continue;
    }
    const d = policyDomain.get(p)!;
    const forwardParsed = t.spec.forwardTo === undefined ? undefined : parseAddress(t.spec.forwardTo);
    if (forwardParsed !== undefined && !forwardParsed.ok) {
      issue(
        t,
        'Accepted',
        Reasons.InvalidAddress,
        'spec.forwardTo',
        `${JSON.stringify(t.spec.forwardTo)} is not an address the relay can deliver to: ${forwardParsed.reason}`,
      );
      continue;
    }
    const forwardDomain = t.spec.forwardTo === undefined ? undefined : domainOf(t.spec.forwardTo);
    if (forwardDomain !== undefined && !permitted(t, 'spec.forwardTo', forwardDomain)) continue;
    if (domainOf(t.spec.address) !== d.spec.domain) {
      issue(
        t,
        'Accepted',
        Reasons.AddressOutsideDomain,
        'spec.address',
        `${t.spec.address} is not in domain ${d.spec.domain} of ${describe(p)}`,
      );
      continue;
    }
    const list = trByPolicy.get(p);
    if (list === undefined) trByPolicy.set(p, [t]);
    else list.push(t);
  }
  for (const list of trByPolicy.values()) {
    const first = new Map<string, TestRecipient[]>();
    for (const t of list) {
      const key = cacheSpelling(t.spec.address);
      const group = first.get(key);
      if (group === undefined) first.set(key, [t]);
      else group.push(t);
    }
    for (const group of first.values()) {
      if (group.length < 2) continue;
      group.sort(byAge);
      const [winner, ...losers] = group as [TestRecipient, ...TestRecipient[]];
      for (const l of losers) {
        issue(
          l,
          'Accepted',
          Reasons.Conflict,
          'spec.address',
          `${l.spec.address} is already a test recipient through ${describe(winner)}`,
        );
      }
    }
  }

  // --- The table. Every object literal below lists its keys in sorted order and every record is filled in sorted
  // key order, so that canonicalJson can take its native JSON.stringify fast path.
  const routes: Record<string, DomainRoute> = {};
  const trRefs = new Map<TestRecipient, ObjectRef>();
  const acceptedPolicy = new Map<MailDomain, DeliveryPolicy>();
  for (const [p, d] of policyDomain) if (!bad.has(p)) acceptedPolicy.set(d, p);
  const acceptedDomains = domains
    .filter((d) => !bad.has(d))
    .sort((a, b) => byCodeUnit(a.spec.domain, b.spec.domain));
  for (const d of acceptedDomains) {
    const ns = d.metadata.namespace;
    const servers: Record<string, ServerRoute> = {};
    for (const s of [...d.spec.servers].sort((a, b) => byCodeUnit(a.name, b.name))) {
      servers[s.name] = {
        ...(s.authSecretRef && s.allowPlaintextAuth === true ? { allowPlaintextAuth: true as const } : {}),
        ...(s.authSecretRef ? { authSecretRef: { name: s.authSecretRef.name, namespace: ns } } : {}),
        host: s.host,
        maxConnections: s.maxConnections,
        maxRecipientsPerTransaction: s.maxRecipientsPerTransaction,
        mx: s.mx,
        name: s.name,
        port: s.port,
        tls: s.tls,
      };
    }
    const accountSets = new Map<string, Set<string>>();
    for (const a of d.spec.accounts ?? []) {
      const set = accountSets.get(a.server) ?? new Set<string>();
      // the lookup spelling (lowercase, NFC): a RCPT in either Unicode spelling finds the mailbox
      for (const addr of a.addresses) set.add(cacheSpelling(addr));
      accountSets.set(a.server, set);
    }
    const accounts: Record<string, string[]> = {};
    for (const server of [...accountSets.keys()].sort(byCodeUnit)) {
      accounts[server] = [...accountSets.get(server)!].sort(byCodeUnit);
    }
    const delimiter = d.spec.recipientDelimiter;
    const recipientDelimiter = delimiter === '' ? {} : { recipientDelimiter: delimiter };
    const rv = d.spec.recipientVerification;
    const recipientVerification =
      rv === undefined
        ? {}
        : { recipientVerification: { cacheTTLSeconds: durationSeconds(rv.cacheTTL), server: rv.server } };
    const grantDestinations = canonicalGrantTexts(grants.destinations(d.metadata.namespace, d.spec.domain));
    const destinations = grantDestinations === undefined ? {} : { destinations: grantDestinations };
    const p = acceptedPolicy.get(d);
    const testRecipients: DomainRoute['testRecipients'] = {};
    if (p === undefined) {
      routes[d.spec.domain] = {
        accounts,
        ...destinations,
        domain: d.spec.domain,
        mailDomain: objectRef(d),
        ...recipientDelimiter,
        ...recipientVerification,
        rejectUnknownRecipients: d.spec.rejectUnknownRecipients,
        servers,
        testRecipients,
      };
      continue;
    }
    const mode = p.spec.mode;
    const copyDomain = mode === 'Dual' ? p.spec.dual?.copyRecipientDomain : undefined;
    const stages = p.spec.stages;
    const staged = stages !== undefined && stages.length > 0;
    const entries: [string, TestRecipientRoute & { source: ObjectRef }][] = [];
    for (const t of trByPolicy.get(p) ?? []) {
      if (bad.has(t)) continue;
      const source = objectRef(t);
      trRefs.set(t, source);
      const address = t.spec.address;
      const forwardTo =
        t.spec.forwardTo ?? (copyDomain !== undefined ? `${localOf(address)}@${copyDomain}` : address);
      // literal shapes instead of spreads: this loop runs once per TestRecipient
      const route: TestRecipientRoute & { source: ObjectRef } =
        t.spec.expiresAt !== undefined
          ? { expiresAt: t.spec.expiresAt, forwardTo, keepPrimaryCopy: t.spec.keepPrimaryCopy, source }
          : { forwardTo, keepPrimaryCopy: t.spec.keepPrimaryCopy, source };
      // With stages the default forwardTo depends on the copyRecipientDomain of the stage in force (resolve()).
      if (staged && t.spec.forwardTo === undefined) route.forwardToDefaulted = true;
      entries.push([cacheSpelling(address), route]);
    }
    entries.sort((a, b) => byCodeUnit(a[0], b[0]));
    for (const [address, tr] of entries) testRecipients[address] = tr;
    routes[d.spec.domain] = {
      accounts,
      ...destinations,
      domain: d.spec.domain,
      ...compileDual(p.spec),
      mailDomain: objectRef(d),
      mode,
      policy: objectRef(p),
      primary: p.spec.primary,
      ...recipientDelimiter,
      ...recipientVerification,
      rejectUnknownRecipients: d.spec.rejectUnknownRecipients,
      ...compileSecondary(p.spec),
      servers,
      ...compileSoftBounce(p.spec),
      ...compileSplit(p.spec),
      ...(staged
        ? {
            stages: stages.map((st): StageRoute => ({
              ...compileDual(st),
              mode: st.mode,
              name: st.name,
              primary: st.primary,
              ...compileSecondary(st),
              ...compileSoftBounce(st),
              ...compileSplit(st),
              until: st.until,
            })),
          }
        : {}),
      testRecipients,
    };
  }
  // Sorted by kind, namespace, name: the three lists are sorted by namespace and name already.
  const sortedSources: ObjectRef[] = [
    ...domains.filter((d) => !bad.has(d)).map(objectRef),
    ...policies.filter((p) => !bad.has(p)).map(objectRef),
  ];
  for (const t of recipients) {
    const ref = trRefs.get(t);
    if (ref !== undefined) sortedSources.push(ref);
  }
  const table: RoutingTable = {
    apiVersion: API_VERSION,
    domains: routes,
    kind: 'RoutingTable',
    sources: sortedSources,
  };
  issues.sort(
    (a, b) =>
      KIND_ORDER[a.kind] - KIND_ORDER[b.kind] ||
      byCodeUnit(a.namespace, b.namespace) ||
      byCodeUnit(a.name, b.name) ||
      byCodeUnit(a.field, b.field) ||
      byCodeUnit(a.reason, b.reason) ||
      byCodeUnit(a.message, b.message),
  );
  notices.sort(
    (a, b) =>
      KIND_ORDER[a.kind] - KIND_ORDER[b.kind] ||
      byCodeUnit(a.namespace, b.namespace) ||
      byCodeUnit(a.name, b.name),
  );
  const json = canonicalJson(table);
  return { table, issues, notices, revision: sha256Hex(json), json };
}

/** The routing fields of a DeliveryPolicy spec or of one of its stages. */
type RoutingStateSpec = Pick<
  DeliveryPolicy['spec'],
  'mode' | 'primary' | 'secondary' | 'dual' | 'split' | 'softBounce'
>;

/** The policy's own routing fields (field prefix spec.) and each stage's (spec.stages[i].), in that order. */
function routingStates(p: DeliveryPolicy): { state: RoutingStateSpec; at: string }[] {
  return [
    { state: p.spec, at: 'spec.' },
    ...(p.spec.stages ?? []).map((st, i) => ({ state: st, at: `spec.stages[${i}].` })),
  ];
}

// The compiled dual, secondary and split of one routing state, keys in sorted order (see the table comment).
function compileDual(s: RoutingStateSpec): Pick<DomainRoute, 'dual'> {
  if (s.mode !== 'Dual') return {};
  const copyDomain = s.dual?.copyRecipientDomain;
  return {
    dual: {
      bounces: s.dual?.bounces ?? 'Suppress',
      ...(copyDomain !== undefined ? { copyRecipientDomain: copyDomain } : {}),
      scope: s.dual?.scope ?? 'All',
    },
  };
}
function compileSecondary(s: RoutingStateSpec): Pick<DomainRoute, 'secondary'> {
  return s.mode !== 'Direct' && s.secondary !== undefined ? { secondary: s.secondary } : {};
}
// Present only when true: a table without soft bounce keeps the revision it had before the field existed.
function compileSoftBounce(s: RoutingStateSpec): Pick<DomainRoute, 'softBounce'> {
  return s.softBounce === true ? { softBounce: true } : {};
}
function compileSplit(s: RoutingStateSpec): Pick<DomainRoute, 'split'> {
  return s.mode === 'Split'
    ? { split: { unknownRecipients: s.split?.unknownRecipients ?? 'Secondary' } }
    : {};
}

/** The revision of a table loaded from elsewhere (a routing file, a ConfigMap). */
export function tableRevision(table: RoutingTable): string {
  return sha256Hex(canonicalJson(table));
}
