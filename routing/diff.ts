// diffTables(before, after, opts) -> RoutingDiff: what a routing change does, domain by domain and recipient by
// recipient. Pure: the clock (opts.now) is a parameter and recipient legs come from the same resolve() the relay and
// `mailroute route` use. `mailroute diff` (cli/commands/diff.ts) feeds it two compiled tables (two manifest sets, or
// the cluster's routing ConfigMap and a folder) and prints the result as text, markdown or JSON (the JSON is this
// module's RoutingDiff, documented in docs/routing.md, "mailroute diff").
import type { DomainRoute, RoutingTable, ServerRoute, StageRoute, TestRecipientRoute } from './model.ts';
import { buildIndex, planToJson, resolve, type PlanJson } from './resolve.ts';
import { parseInstant } from './schedule.ts';

export const DIFF_FORMAT = 'mailroute.io/routing-diff/v1';

/** A field's value as the diff shows it; null: not set. */
export type DiffValue = string | number | boolean | null;

export interface FieldChange {
  field: string;
  before: DiffValue;
  after: DiffValue;
}

type Change = 'added' | 'removed' | 'changed';

interface ServerChange {
  name: string;
  change: Change;
  /** Every field for added and removed servers (the other side null); the differing ones for changed servers. */
  fields: FieldChange[];
}

export interface TestRecipientEntry {
  address: string;
  /** "namespace/name" of the TestRecipient object. */
  source: string;
  forwardTo: string;
  keepPrimaryCopy: boolean;
  expiresAt: string | null;
}

interface TestRecipientChange {
  address: string;
  source: string;
  fields: FieldChange[];
}

interface AccountsChange {
  server: string;
  added: string[];
  removed: string[];
}

export interface DomainDiff {
  domain: string;
  /** unchanged: listed only because TestRecipients expire within the window. */
  change: Change | 'unchanged';
  /** Domain-level fields (mode, primary, secondary, dual.*, split.*, ...), in a fixed order. */
  fields: FieldChange[];
  servers: ServerChange[];
  accounts: AccountsChange[];
  testRecipients: {
    added: TestRecipientEntry[];
    removed: TestRecipientEntry[];
    changed: TestRecipientChange[];
  };
  /** TestRecipients of the after side that are active at `at` and expire within the window, soonest first. */
  expiring: TestRecipientEntry[];
}

export interface RecipientDiff {
  recipient: string;
  changed: boolean;
  before: PlanJson;
  after: PlanJson;
}

export interface RoutingDiff {
  format: typeof DIFF_FORMAT;
  /** RFC 3339: the time recipients were resolved at and expiry measured from. */
  at: string;
  expiringWithinSeconds: number;
  /** true when any domain (or any recipient's plan) differs; expiring TestRecipients alone are no change. */
  changed: boolean;
  /** Domains that differ, and unchanged ones with expiring TestRecipients; sorted by domain. */
  domains: DomainDiff[];
  /** Domains present on both sides and identical. */
  unchangedDomains: number;
  recipients: RecipientDiff[];
}

export interface DiffOptions {
  now: Date;
  /** TestRecipients expiring within this many ms of `now` are listed. */
  expiringWithinMs: number;
  /** Recipients whose legs are resolved before and after. */
  recipients?: readonly string[];
}

const ref = (r: { namespace: string; name: string } | undefined): DiffValue =>
  r === undefined ? null : `${r.namespace}/${r.name}`;

/** The domain-level fields the diff compares, in the order it prints them. */
function domainFields(d: DomainRoute | undefined): [string, DiffValue][] {
  return [
    ['mailDomain', ref(d?.mailDomain)],
    ['policy', ref(d?.policy)],
    ['mode', d?.mode ?? null],
    ['primary', d?.primary ?? null],
    ['secondary', d?.secondary ?? null],
    ['dual.scope', d?.dual?.scope ?? null],
    ['dual.copyRecipientDomain', d?.dual?.copyRecipientDomain ?? null],
    ['dual.bounces', d?.dual?.bounces ?? null],
    ['split.unknownRecipients', d?.split?.unknownRecipients ?? null],
    ['softBounce', d === undefined ? null : d.softBounce === true],
    ['stages', d?.stages === undefined ? null : d.stages.map(stageSummary).join('; ')],
    ['recipientVerification.server', d?.recipientVerification?.server ?? null],
    ['recipientVerification.cacheTTLSeconds', d?.recipientVerification?.cacheTTLSeconds ?? null],
    ['rejectUnknownRecipients', d === undefined ? null : d.rejectUnknownRecipients],
    // absent in the table: subaddressing off ('' in the MailDomain, or a table compiled before the field)
    ['recipientDelimiter', d === undefined ? null : (d.recipientDelimiter ?? '')],
    ['destinations.allow', d?.destinations === undefined ? null : d.destinations.allow.join(',')],
    ['destinations.deny', d?.destinations === undefined ? null : d.destinations.deny.join(',')],
  ];
}

/** One dated stage in a line: `dual until 2026-12-05T02:00:00Z: Dual old+new scope All`. */
function stageSummary(s: StageRoute): string {
  const copy =
    s.dual === undefined
      ? ''
      : ` scope ${s.dual.scope}${s.dual.copyRecipientDomain !== undefined ? ` copy@${s.dual.copyRecipientDomain}` : ''} bounces ${s.dual.bounces}`;
  const split = s.split === undefined ? '' : ` unknown ${s.split.unknownRecipients}`;
  const soft = s.softBounce === true ? ' softBounce' : '';
  return `${s.name} until ${s.until}: ${s.mode} ${s.primary}${s.secondary !== undefined ? `+${s.secondary}` : ''}${copy}${split}${soft}`;
}

/** A server's fields: where it is and how it is spoken to (TLS, credentials). */
function serverFields(s: ServerRoute | undefined): [string, DiffValue][] {
  return [
    ['host', s?.host ?? null],
    ['port', s?.port ?? null],
    ['mx', s === undefined ? null : s.mx],
    ['tls', s?.tls ?? null],
    ['authSecretRef', ref(s?.authSecretRef)],
    ['allowPlaintextAuth', s?.allowPlaintextAuth === true ? true : null],
    ['maxConnections', s?.maxConnections ?? null],
    ['maxRecipientsPerTransaction', s?.maxRecipientsPerTransaction ?? null],
  ];
}

function compareFields(
  before: [string, DiffValue][],
  after: [string, DiffValue][],
  all: boolean,
): FieldChange[] {
  const out: FieldChange[] = [];
  for (const [i, [field, b]] of before.entries()) {
    const a = after[i]?.[1] ?? null;
    if (all ? b !== null || a !== null : b !== a) out.push({ field, before: b, after: a });
  }
  return out;
}

function trEntry(address: string, tr: TestRecipientRoute & { source: { namespace: string; name: string } }) {
  return {
    address,
    source: `${tr.source.namespace}/${tr.source.name}`,
    forwardTo: tr.forwardTo,
    keepPrimaryCopy: tr.keepPrimaryCopy,
    expiresAt: tr.expiresAt ?? null,
  } satisfies TestRecipientEntry;
}

const sorted = (keys: Iterable<string>): string[] => [...new Set(keys)].sort();

function diffServers(b: DomainRoute | undefined, a: DomainRoute | undefined): ServerChange[] {
  const out: ServerChange[] = [];
  for (const name of sorted([...Object.keys(b?.servers ?? {}), ...Object.keys(a?.servers ?? {})])) {
    const sb = b?.servers[name];
    const sa = a?.servers[name];
    const change: Change = sb === undefined ? 'added' : sa === undefined ? 'removed' : 'changed';
    const fields = compareFields(serverFields(sb), serverFields(sa), change !== 'changed');
    if (change !== 'changed' || fields.length > 0) out.push({ name, change, fields });
  }
  return out;
}

function diffAccounts(b: DomainRoute | undefined, a: DomainRoute | undefined): AccountsChange[] {
  const out: AccountsChange[] = [];
  for (const server of sorted([...Object.keys(b?.accounts ?? {}), ...Object.keys(a?.accounts ?? {})])) {
    const before = new Set(b?.accounts[server] ?? []);
    const after = new Set(a?.accounts[server] ?? []);
    const added = [...after].filter((x) => !before.has(x)).sort();
    const removed = [...before].filter((x) => !after.has(x)).sort();
    if (added.length > 0 || removed.length > 0) out.push({ server, added, removed });
  }
  return out;
}

function diffTestRecipients(
  b: DomainRoute | undefined,
  a: DomainRoute | undefined,
): DomainDiff['testRecipients'] {
  const before = b?.testRecipients ?? {};
  const after = a?.testRecipients ?? {};
  const added: TestRecipientEntry[] = [];
  const removed: TestRecipientEntry[] = [];
  const changed: TestRecipientChange[] = [];
  for (const address of sorted([...Object.keys(before), ...Object.keys(after)])) {
    const tb = before[address];
    const ta = after[address];
    if (tb === undefined && ta !== undefined) added.push(trEntry(address, ta));
    else if (ta === undefined && tb !== undefined) removed.push(trEntry(address, tb));
    else if (tb !== undefined && ta !== undefined) {
      const eb = trEntry(address, tb);
      const ea = trEntry(address, ta);
      const fields = compareFields(
        [
          ['source', eb.source],
          ['forwardTo', eb.forwardTo],
          ['keepPrimaryCopy', eb.keepPrimaryCopy],
          ['expiresAt', eb.expiresAt],
        ],
        [
          ['source', ea.source],
          ['forwardTo', ea.forwardTo],
          ['keepPrimaryCopy', ea.keepPrimaryCopy],
          ['expiresAt', ea.expiresAt],
        ],
        false,
      );
      if (fields.length > 0) changed.push({ address, source: ea.source, fields });
    }
  }
  return { added, removed, changed };
}

function expiringOf(a: DomainRoute | undefined, nowMs: number, withinMs: number): TestRecipientEntry[] {
  if (a === undefined) return [];
  const out: { at: number; e: TestRecipientEntry }[] = [];
  for (const [address, tr] of Object.entries(a.testRecipients)) {
    if (tr.expiresAt === undefined) continue;
    const at = parseInstant(tr.expiresAt);
    if (at === undefined || at <= nowMs || at - nowMs > withinMs) continue;
    out.push({ at, e: trEntry(address, tr) });
  }
  return out.sort((x, y) => x.at - y.at || x.e.address.localeCompare(y.e.address)).map((x) => x.e);
}

/** Compares one domain; undefined when it is the same on both sides and nothing expires soon. */
function diffDomain(
  domain: string,
  b: DomainRoute | undefined,
  a: DomainRoute | undefined,
  now: Date,
  expiringWithinMs: number,
): DomainDiff | undefined {
  const change: Change | 'unchanged' = b === undefined ? 'added' : a === undefined ? 'removed' : 'changed';
  const fields = compareFields(domainFields(b), domainFields(a), change !== 'changed');
  const servers = diffServers(b, a);
  const accounts = diffAccounts(b, a);
  const testRecipients = diffTestRecipients(b, a);
  const expiring = expiringOf(a, now.getTime(), expiringWithinMs);
  const same =
    change === 'changed' &&
    fields.length === 0 &&
    servers.length === 0 &&
    accounts.length === 0 &&
    testRecipients.added.length + testRecipients.removed.length + testRecipients.changed.length === 0;
  if (same && expiring.length === 0) return undefined;
  return { domain, change: same ? 'unchanged' : change, fields, servers, accounts, testRecipients, expiring };
}

/** Compares two routing tables. Linear in their size; identical domains cost one pass each. */
export function diffTables(before: RoutingTable, after: RoutingTable, opts: DiffOptions): RoutingDiff {
  const domains: DomainDiff[] = [];
  let unchangedDomains = 0;
  for (const name of sorted([...Object.keys(before.domains), ...Object.keys(after.domains)])) {
    const d = diffDomain(name, before.domains[name], after.domains[name], opts.now, opts.expiringWithinMs);
    if (d === undefined || d.change === 'unchanged') unchangedDomains++;
    if (d !== undefined) domains.push(d);
  }
  const recipients = diffRecipients(before, after, opts.recipients ?? [], opts.now);
  return {
    format: DIFF_FORMAT,
    at: opts.now.toISOString(),
    expiringWithinSeconds: Math.round(opts.expiringWithinMs / 1000),
    changed: domains.some((d) => d.change !== 'unchanged') || recipients.some((r) => r.changed),
    domains,
    unchangedDomains,
    recipients,
  };
}

/** The legs of each recipient before and after, by resolve() (no verification callout: its answer is unknown). */
export function diffRecipients(
  before: RoutingTable,
  after: RoutingTable,
  recipients: readonly string[],
  now: Date,
): RecipientDiff[] {
  if (recipients.length === 0) return [];
  const ib = buildIndex(before);
  const ia = buildIndex(after);
  return recipients.map((recipient) => {
    const b = planToJson(resolve(ib, recipient, { now }));
    const a = planToJson(resolve(ia, recipient, { now }));
    return { recipient, changed: JSON.stringify(b) !== JSON.stringify(a), before: b, after: a };
  });
}

/**
 * Up to `perDomain` recipients of each changed domain worth showing legs for: the TestRecipients added, removed or
 * changed, the addresses whose accounts changed, and one address that is none of these ("someone@domain", the
 * everyone-else row of the routing table). Deterministic.
 */
export function sampleRecipients(diff: RoutingDiff, perDomain: number): string[] {
  if (perDomain <= 0) return [];
  const out: string[] = [];
  for (const d of diff.domains) {
    if (d.change === 'unchanged') continue;
    const named = [
      ...d.testRecipients.added.map((t) => t.address),
      ...d.testRecipients.removed.map((t) => t.address),
      ...d.testRecipients.changed.map((t) => t.address),
      ...d.accounts.flatMap((a) => [...a.added, ...a.removed]),
    ];
    const taken = new Set(named);
    let local = 'someone';
    for (let i = 1; taken.has(`${local}@${d.domain}`); i++) local = `someone${i}`;
    const picks = [`${local}@${d.domain}`, ...sorted(named)];
    out.push(...picks.slice(0, perDomain));
  }
  return out;
}
