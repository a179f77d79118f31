// resolve(index, recipient, ctx) -> DeliveryPlan. Pure: the clock (ctx.now) and recipient verification results
// (ctx.verified) are passed in. Lookups are Map/Set hits built once by buildIndex(); nothing scans.
import { cacheSpelling, parseAddress, splitExtension, withExtension } from './address.ts';
import type {
  Bounces,
  CopyLeg,
  DeliveryPlan,
  DomainRoute,
  LegRole,
  MailboxFact,
  RecordLeg,
  RefusalReason,
  Reply,
  ResolveContext,
  RoutingTable,
  ServerRoute,
} from './model.ts';
import { assertNever } from './model.ts';
import { instant, stageIndexAt } from './schedule.ts';

const Replies = {
  relayDenied: { code: 554, enhanced: '5.7.1', text: 'relay access denied' },
  badSyntax: { code: 553, enhanced: '5.1.3', text: 'bad recipient address syntax' },
  unknownRecipient: { code: 550, enhanced: '5.1.1', text: 'mailbox unavailable: recipient unknown' },
  /** The same under softBounce: the sender keeps the message queued and tries again. */
  unknownRecipientSoft: { code: 450, enhanced: '4.1.1', text: 'mailbox unavailable: recipient unknown' },
  verificationUnavailable: {
    code: 451,
    enhanced: '4.4.3',
    text: 'recipient verification unavailable, try again later',
  },
  accepted: { code: 250, enhanced: '2.1.5', text: 'recipient ok' },
} as const satisfies Record<string, Reply>;

/** The local part every server has (RFC 5321 §4.5.1), lowercase, with its @: lookup keys are lowercased. */
const POSTMASTER = 'postmaster@';

function noPolicyReply(domain: string): Reply {
  return { code: 451, enhanced: '4.3.5', text: `no delivery policy for ${domain}` };
}

export function formatReply(r: Reply): string {
  return `${r.code} ${r.enhanced} ${r.text}`;
}

interface TestRecipientEntry {
  forwardTo: string;
  /** forwardTo was not set: the copy goes to the local part at the copyRecipientDomain in force. */
  defaulted: boolean;
  keepPrimaryCopy: boolean;
  /** ms since the epoch; undefined: never expires; -Infinity: an expiresAt that does not parse (expired). */
  expiresAtMs: number | undefined;
  /** "namespace/name" of the TestRecipient object. */
  source: string;
}

/** One routing state of a domain: the policy's own fields, or one stage's. */
interface StateIndex {
  mode: DomainRoute['mode'];
  primary: ServerRoute | undefined;
  secondary: ServerRoute | undefined;
  dual: DomainRoute['dual'];
  split: DomainRoute['split'];
  /** softBounce in force: a recipient resolve() would refuse with 550 gets 450 (unknownRecipient()). */
  softBounce: boolean;
}

interface DomainIndex {
  route: DomainRoute;
  /** One per stage, then the final state (the route's own fields); stageIndexAt(untilMs, now) picks one. */
  states: StateIndex[];
  /** The stages' ends, ms since the epoch (+Infinity for an unparsable one: that stage never ends). */
  untilMs: number[];
  /** server name -> addresses, lowercase and in NFC (cacheSpelling) */
  accounts: Map<string, Set<string>>;
  testRecipients: Map<string, TestRecipientEntry>;
  /** The recipient delimiters ('' when subaddressing is off). */
  delimiters: string;
}

/** A RoutingTable prepared for lookups. Build once per revision; immutable afterwards. */
export interface RoutingIndex {
  readonly table: RoutingTable;
  readonly domains: ReadonlyMap<string, DomainIndex>;
}

export function buildIndex(table: RoutingTable): RoutingIndex {
  const domains = new Map<string, DomainIndex>();
  for (const [name, route] of Object.entries(table.domains)) {
    const accounts = new Map<string, Set<string>>();
    for (const [server, list] of Object.entries(route.accounts)) {
      accounts.set(server, new Set(list.map(cacheSpelling)));
    }
    const testRecipients = new Map<string, TestRecipientEntry>();
    for (const [address, tr] of Object.entries(route.testRecipients)) {
      testRecipients.set(cacheSpelling(address), {
        forwardTo: tr.forwardTo,
        defaulted: tr.forwardToDefaulted === true,
        source: `${tr.source.namespace}/${tr.source.name}`,
        keepPrimaryCopy: tr.keepPrimaryCopy,
        // an expiresAt that does not parse has passed (routing/schedule.ts instant), never "no expiry"
        expiresAtMs: tr.expiresAt === undefined ? undefined : instant(tr.expiresAt),
      });
    }
    const state = (
      s: Pick<DomainRoute, 'mode' | 'primary' | 'secondary' | 'dual' | 'split' | 'softBounce'>,
    ): StateIndex => ({
      mode: s.mode,
      primary: s.primary === undefined ? undefined : route.servers[s.primary],
      secondary: s.secondary === undefined ? undefined : route.servers[s.secondary],
      dual: s.dual,
      split: s.split,
      softBounce: s.softBounce === true,
    });
    const stages = route.stages ?? [];
    domains.set(name.toLowerCase(), {
      route,
      states: [...stages.map(state), state(route)],
      untilMs: stages.map((s) => instant(s.until)),
      accounts,
      testRecipients,
      delimiters: route.recipientDelimiter ?? '',
    });
  }
  return { table, domains };
}

function reject(recipient: string, reply: Reply, reason: RefusalReason): DeliveryPlan {
  return { verdict: 'reject', recipient, reply, reason, legs: [] };
}
function tempfail(recipient: string, reply: Reply, reason: RefusalReason): DeliveryPlan {
  return { verdict: 'tempfail', recipient, reply, reason, legs: [] };
}
/** The leg of record: the mailbox that holds the message; it always bounces (see LegRole in model.ts). */
function recordLeg(domain: string, server: ServerRoute, recipient: string): RecordLeg {
  return { server, domain, recipient, role: 'primary', bounces: 'Notify' };
}
function copyLeg(domain: string, server: ServerRoute, recipient: string, bounces: Bounces): CopyLeg {
  return { server, domain, recipient, role: 'copy', bounces };
}

/**
 * What is known about the recipient (lookup key `key`, and `base` without its extension) on `server`, where
 * `delivered` is the address a leg to that server would carry (after copyRecipientDomain): postmaster (every server
 * has it) -> exists; listed in accounts (by the recipient's own address, or without its extension: a list names
 * mailboxes, not their subaddresses) -> exists; else the verification callout's answer about `delivered` when `server` is the verification server (unknown
 * without one); else absent when the server has an accounts list (a list is authoritative for its server); else
 * unknown. The callout asks about the delivered address because that is the mailbox the server must have.
 */
function fact(
  d: DomainIndex,
  server: string,
  key: string,
  base: string | undefined,
  delivered: string,
  ctx: ResolveContext,
): MailboxFact {
  // RFC 5321 §4.5.1: every SMTP server must accept mail for postmaster (any case; a subaddress of it too): it exists
  // on each of them, so it is never refused as unknown, is never a Split recipient for the secondary, and needs no
  // callout
  if (key.startsWith(POSTMASTER) || base?.startsWith(POSTMASTER) === true) return 'exists';
  const list = d.accounts.get(server);
  if (list !== undefined && (list.has(key) || (base !== undefined && list.has(base)))) return 'exists';
  if (d.route.recipientVerification?.server === server) return ctx.verified?.(server, delivered) ?? 'unknown';
  return list !== undefined ? 'absent' : 'unknown';
}

/** The routing state of a domain in force at `now`: the stage at `now` (routing/schedule.ts), or the policy's own. */
function stateIn(d: DomainIndex, now: Date): StateIndex {
  return d.states[stageIndexAt(d.untilMs, now.getTime())]!;
}

/** The routing state in force for a domain (lowercase A-labels) at `now`; undefined: no such domain in the table. */
function stateAt(index: RoutingIndex, domain: string, now: Date): StateIndex | undefined {
  const d = index.domains.get(domain);
  return d === undefined ? undefined : stateIn(d, now);
}

/**
 * Whether softBounce is in force at `now` for the domain of `recipient` (a leg's accepted recipient): a 5xx on its
 * legs is then retried like a 4xx (relay/delivery/outcome.ts). False for an address outside the table.
 */
export function softBounceFor(index: RoutingIndex, recipient: string, now: Date): boolean {
  // parsed as resolve() parses it: a U-label domain (an SMTPUTF8 recipient, `mailroute route --to`) finds its A-label
  const parsed = parseAddress(recipient);
  return parsed.ok && stateAt(index, parsed.domain, now)?.softBounce === true;
}

/** A local part's extension under the domain's delimiters, and its mailbox (key: cacheSpelling) when it has one. */
function subaddress(
  d: DomainIndex,
  local: string,
  domain: string,
): { ext: ReturnType<typeof splitExtension>; base: string | undefined } {
  const ext = d.delimiters === '' ? undefined : splitExtension(local, d.delimiters);
  return { ext, base: ext === undefined ? undefined : cacheSpelling(`${ext.base}@${domain}`) };
}

/**
 * The TestRecipient entry of an address (key: lowercase, NFC) in a Dual domain: its own, else its mailbox's (base: alice@
 * for alice+news@), byMailbox then. An entry for the address itself wins over its mailbox's, active or not (as a
 * Postfix table lookup).
 */
function testRecipientOf(
  d: DomainIndex,
  key: string,
  base: string | undefined,
): { entry: TestRecipientEntry; address: string; byMailbox: boolean } | undefined {
  const exact = d.testRecipients.get(key);
  if (exact !== undefined) return { entry: exact, address: key, byMailbox: false };
  const entry = base === undefined ? undefined : d.testRecipients.get(base);
  return entry === undefined || base === undefined ? undefined : { entry, address: base, byMailbox: true };
}

/** Expiry is a schedule of one transition: active in its first "stage", until expiresAt (routing/schedule.ts). */
function trActive(tr: TestRecipientEntry, now: Date): boolean {
  return tr.expiresAtMs === undefined || stageIndexAt([tr.expiresAtMs], now.getTime()) === 0;
}

/** What decided a recipient's plan, for `mailroute route`: the policy and its state in force, and a TestRecipient. */
export interface RouteExplanation {
  /** "namespace/name" of the DeliveryPolicy; undefined: none routes the domain. */
  policy: string | undefined;
  mode: DomainRoute['mode'];
  dual: DomainRoute['dual'];
  split: DomainRoute['split'];
  /**
   * In a Dual state: the TestRecipient found for the address (source "namespace/name", its address), byMailbox when
   * found by the mailbox of a subaddress, active false once its expiresAt has passed (it routes like everyone else).
   */
  testRecipient?: { source: string; address: string; byMailbox: boolean; active: boolean };
}

/**
 * The same lookups resolve() makes, told instead of applied; undefined for an address that is not valid or whose
 * domain is not in the table.
 */
export function explainRoute(
  index: RoutingIndex,
  recipient: string,
  now: Date,
): RouteExplanation | undefined {
  const parsed = parseAddress(recipient);
  if (!parsed.ok) return undefined;
  const d = index.domains.get(parsed.domain);
  if (d === undefined) return undefined;
  const r = stateIn(d, now);
  const { base } = subaddress(d, parsed.local, parsed.domain);
  const found = r.mode === 'Dual' ? testRecipientOf(d, parsed.key, base) : undefined;
  const p = d.route.policy;
  return {
    policy: p === undefined ? undefined : `${p.namespace}/${p.name}`,
    mode: r.mode,
    dual: r.dual,
    split: r.split,
    ...(found === undefined
      ? {}
      : {
          testRecipient: {
            source: found.entry.source,
            address: found.address,
            byMailbox: found.byMailbox,
            active: trActive(found.entry, now),
          },
        }),
  };
}

/** The refusal of a recipient known absent: 550 5.1.1, or 450 4.1.1 under softBounce (Postfix's soft_bounce). */
function unknownRecipient(address: string, state: StateIndex): DeliveryPlan {
  return state.softBounce
    ? tempfail(address, Replies.unknownRecipientSoft, 'UnknownRecipient')
    : reject(address, Replies.unknownRecipient, 'UnknownRecipient');
}

/**
 * The delivery plan of one recipient (docs/design.md §2 semantics table). Safe for any string.
 * - unparsable address: reject 553 5.1.3; domain not declared: reject 554 5.7.1 relay access denied;
 * - declared domain without an accepted policy: tempfail 451 4.3.5 (never guesses a route);
 * - Split with an inconclusive verification callout: tempfail 451 4.4.3 (see docs/routing.md);
 * - rejectUnknownRecipients: 550 5.1.1 only when the recipient is known absent on every server of the policy;
 * - under softBounce, each 550 5.1.1 is 450 4.1.1 instead.
 */
export function resolve(index: RoutingIndex, recipient: string, ctx: ResolveContext): DeliveryPlan {
  const parsed = parseAddress(recipient);
  if (!parsed.ok) return reject(recipient, Replies.badSyntax, 'BadSyntax');
  const d = index.domains.get(parsed.domain);
  if (d === undefined) return reject(parsed.address, Replies.relayDenied, 'RelayDenied');
  // The routing state in force: the stage at ctx.now (routing/schedule.ts), or the policy's own fields.
  const r = stateIn(d, ctx.now);
  const domain = d.route.domain;
  const primary = r.primary;
  if (r.mode === undefined || primary === undefined)
    return tempfail(parsed.address, noPolicyReply(parsed.domain), 'NoPolicy');
  const { address, key, local } = parsed;
  // Subaddressing (routing/address.ts): alice+news is looked up as itself, then as alice. Legs keep the address.
  const { ext, base } = subaddress(d, local, parsed.domain);
  // Every accepted plan names its leg of record first; the type makes a plan of copies alone impossible. Each leg
  // names the policy (and the active TestRecipient) it was planned for: the relay counts parity by them.
  const policy =
    d.route.policy === undefined ? undefined : `${d.route.policy.namespace}/${d.route.policy.name}`;
  const accept = (record: RecordLeg, ...copies: CopyLeg[]): DeliveryPlan => {
    if (policy === undefined)
      return { verdict: 'accept', recipient: address, domain, legs: [record, ...copies] };
    const tag = activeTr === undefined ? { policy } : { policy, testRecipient: activeTr.source };
    return {
      verdict: 'accept',
      recipient: address,
      domain,
      legs: [{ ...record, ...tag }, ...copies.map((c) => ({ ...c, ...tag }))],
    };
  };
  const primaryLeg = () => recordLeg(domain, primary, address);
  // The address a leg to the secondary carries: a Dual copy goes to copyRecipientDomain when set; Split sends the
  // recipient's own address.
  const copyRecipientDomain = r.mode === 'Dual' ? r.dual?.copyRecipientDomain : undefined;
  const copyTo = copyRecipientDomain === undefined ? address : `${local}@${copyRecipientDomain}`;

  const found = r.mode === 'Dual' ? testRecipientOf(d, key, base) : undefined;
  const baseTr = found?.byMailbox === true ? found.entry : undefined;
  const activeTr = found !== undefined && trActive(found.entry, ctx.now) ? found.entry : undefined;

  if (d.route.rejectUnknownRecipients && activeTr === undefined) {
    const servers: [string, string][] =
      r.secondary === undefined
        ? [[primary.name, address]]
        : [
            [primary.name, address],
            [r.secondary.name, copyTo],
          ];
    if (servers.every(([s, delivered]) => fact(d, s, key, base, delivered, ctx) === 'absent'))
      return unknownRecipient(address, r);
  }

  switch (r.mode) {
    case 'Direct':
      return accept(primaryLeg());
    case 'Dual': {
      const secondary = r.secondary;
      const dual = r.dual ?? { scope: 'All', bounces: 'Suppress' };
      if (secondary === undefined) return accept(primaryLeg());
      if (activeTr !== undefined) {
        // keepPrimaryCopy false: the forwardTo mailbox is the only one that gets the message, so it is the leg of
        // record and bounces whatever dual.bounces says (a failure must reach the sender, never be suppressed).
        // found by its mailbox (alice for alice+news): the forwardTo mailbox gets the extension too
        const forwardTo = activeTr.defaulted
          ? copyTo
          : baseTr !== undefined && ext !== undefined
            ? withExtension(activeTr.forwardTo, ext, d.delimiters)
            : activeTr.forwardTo;
        return activeTr.keepPrimaryCopy
          ? accept(primaryLeg(), copyLeg(domain, secondary, forwardTo, dual.bounces))
          : accept(recordLeg(domain, secondary, forwardTo));
      }
      const copy = () => copyLeg(domain, secondary, copyTo, dual.bounces);
      switch (dual.scope) {
        case 'All':
          return accept(primaryLeg(), copy());
        case 'TestRecipients':
          return accept(primaryLeg());
        case 'Accounts':
          // Inconclusive verification of the secondary: no copy (the copy is optional, the primary is not).
          return fact(d, secondary.name, key, base, copyTo, ctx) === 'exists'
            ? accept(primaryLeg(), copy())
            : accept(primaryLeg());
        default:
          return assertNever(dual.scope, 'dual scope');
      }
    }
    case 'Split': {
      const secondary = r.secondary;
      const known = fact(d, primary.name, key, base, address, ctx);
      switch (known) {
        case 'exists':
          return accept(primaryLeg());
        case 'unknown':
          return tempfail(address, Replies.verificationUnavailable, 'VerificationUnavailable');
        case 'absent': {
          const unknown = r.split?.unknownRecipients ?? 'Secondary';
          if (unknown === 'Reject' || secondary === undefined) return unknownRecipient(address, r);
          return accept(recordLeg(domain, secondary, address));
        }
        default:
          return assertNever(known, 'mailbox fact');
      }
    }
    default:
      return assertNever(r.mode, 'mode');
  }
}

/**
 * The recipient verification callout resolve() would consult for this recipient, if any: the relay makes it
 * (cached for recipientVerification.cacheTTLSeconds) and passes the answer as ctx.verified. The address is the one
 * a leg to that server would carry: the copy's address (copyRecipientDomain) when scope Accounts asks the
 * secondary, the recipient's own when Split asks the primary. Without ctx.now, TestRecipients with an expiresAt count as expired (at worst one needless callout).
 */
export function verificationNeeded(
  index: RoutingIndex,
  recipient: string,
  ctx?: { now: Date },
): { server: string; address: string; cacheTTLSeconds: number } | undefined {
  let asked: { server: string; address: string; cacheTTLSeconds: number } | undefined;
  const parsed = parseAddress(recipient);
  // resolve() consults only the verification server of the recipient's own domain (fact()): without one, it asks
  // nobody, and the dry run below (a whole resolve per RCPT) is not needed
  const verification = parsed.ok ? index.domains.get(parsed.domain)?.route.recipientVerification : undefined;
  if (verification === undefined) return undefined;
  const ttl = verification.cacheTTLSeconds;
  resolve(index, recipient, {
    now: ctx?.now ?? new Date(8.64e15), // the end of time: every expiresAt has passed
    verified: (server, address) => {
      asked ??= { server, address, cacheTTLSeconds: ttl };
      return 'unknown';
    },
  });
  return asked;
}

/**
 * The mailbox a subaddress belongs to under its domain's recipientDelimiter (`alice@example.com` for
 * `alice+news@example.com`, routing/address.ts splitExtension); undefined for an address without an extension, outside
 * the table, or at a domain with subaddressing off. The relay's verification cache keys subaddresses by it.
 */
export function mailboxOf(index: RoutingIndex, recipient: string): string | undefined {
  const parsed = parseAddress(recipient);
  if (!parsed.ok) return undefined;
  const d = index.domains.get(parsed.domain);
  if (d === undefined || d.delimiters === '') return undefined;
  const ext = splitExtension(parsed.local, d.delimiters);
  return ext === undefined ? undefined : `${ext.base}@${parsed.domain}`;
}

/** The `mailroute route -o json` shape of a plan. */
export interface PlanJson {
  recipient: string;
  verdict: DeliveryPlan['verdict'];
  reply: string;
  legs: {
    server: string;
    host: string;
    port: number;
    recipient: string;
    role: LegRole;
    bounces: Bounces;
    /** True on exactly one leg of an accepted plan: the mailbox of record (role primary, bounces Notify). */
    record: boolean;
  }[];
}

export function planToJson(plan: DeliveryPlan): PlanJson {
  return {
    recipient: plan.recipient,
    verdict: plan.verdict,
    reply: formatReply(plan.verdict === 'accept' ? Replies.accepted : plan.reply),
    legs: plan.legs.map((l) => ({
      server: l.server.name,
      host: l.server.host,
      port: l.server.port,
      recipient: l.recipient,
      role: l.role,
      bounces: l.bounces,
      record: l.role === 'primary',
    })),
  };
}
