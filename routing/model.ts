// The routing model: the one place that defines what a compiled RoutingTable and a DeliveryPlan look like.
// Pure types and constants only. The operator, the relay and the CLI all import from here.

export const GROUP = 'mailroute.io';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}` as const;

/** The namespaced kinds that are compiled into routes (and get status conditions). */
export const KINDS = ['MailDomain', 'DeliveryPolicy', 'TestRecipient'] as const;
export type Kind = (typeof KINDS)[number];

/** Cluster-scoped kinds: DomainClaim grants namespaces the right to route domains (routing/grants.ts). */
const CLUSTER_KINDS = ['DomainClaim'] as const;

/** Every kind with a CRD (crds/, the chart). */
export const CRD_KINDS = [...KINDS, ...CLUSTER_KINDS] as const;
export type CrdKind = (typeof CRD_KINDS)[number];

export const TLS_MODES = ['None', 'Opportunistic', 'Required', 'RequiredVerify', 'Implicit'] as const;
export type TlsMode = (typeof TLS_MODES)[number];

export const MODES = ['Direct', 'Dual', 'Split'] as const;
export type Mode = (typeof MODES)[number];

export const DUAL_SCOPES = ['All', 'TestRecipients', 'Accounts'] as const;
export type DualScope = (typeof DUAL_SCOPES)[number];

export const BOUNCES = ['Suppress', 'Notify'] as const;
export type Bounces = (typeof BOUNCES)[number];

export const UNKNOWN_RECIPIENTS = ['Secondary', 'Reject'] as const;
export type UnknownRecipients = (typeof UNKNOWN_RECIPIENTS)[number];

/**
 * The role of a leg in a delivery plan.
 * - `primary`: the leg of record, the mailbox that holds the message for the recipient. Every accepted plan has
 *   exactly one, first, and it always bounces (`Notify`): a 5xx, or a 4xx until expiry, sends a DSN to a non-null
 *   sender. It is usually the policy's primary server, but not always: a Split recipient unknown on the primary,
 *   and a TestRecipient with `keepPrimaryCopy: false` (whose `forwardTo` mailbox is then the only one), have their
 *   leg of record on the secondary.
 * - `copy`: an extra delivery beside the leg of record (Dual); it bounces as `dual.bounces` says.
 * So a message can never end with every leg suppressed and no one told (docs/design.md, "Routing: the mailbox of
 * record").
 */
export const LEG_ROLES = ['primary', 'copy'] as const;
export type LegRole = (typeof LEG_ROLES)[number];

/** Identifies one source object and the generation that was compiled. */
export interface ObjectRef {
  kind: Kind;
  namespace: string;
  name: string;
  generation: number;
}

/**
 * A downstream server. Legs keep a copy (what `queue show` falls back to, and what spool files written before legs
 * named their domain carry), but the relay looks the server up again in the current table at every attempt.
 */
export interface ServerRoute {
  name: string;
  host: string;
  port: number;
  mx: boolean;
  tls: TlsMode;
  /**
   * true: AUTH may be sent without TLS (present only when true, and only with authSecretRef). Without it the relay
   * sends AUTH only over TLS: with tls Opportunistic STARTTLS becomes required (relay/delivery/transport.ts).
   */
  allowPlaintextAuth?: true;
  /** Secret with keys username and password; resolved by the relay at delivery time, never copied into the table. */
  authSecretRef?: { namespace: string; name: string };
  maxConnections: number;
  /**
   * Recipients per SMTP transaction (spec.servers[].maxRecipientsPerTransaction); a message to more goes in several
   * transactions. Absent in tables compiled before the field existed: DEFAULT_RECIPIENTS_PER_TRANSACTION.
   */
  maxRecipientsPerTransaction?: number;
}

/**
 * Recipients per transaction when a server does not say (Postfix's default_destination_recipient_limit): below the
 * 100 RFC 5321 §4.5.3.1.8 has every server accept, and below the limits of the large providers.
 */
export const DEFAULT_RECIPIENTS_PER_TRANSACTION = 50;

export interface TestRecipientRoute {
  /**
   * Where the copy goes; already has copyRecipientDomain applied when forwardTo was not set (of the policy's own
   * fields; see forwardToDefaulted).
   */
  forwardTo: string;
  /**
   * Present (true) only when spec.forwardTo was not set and the policy has stages: the copy then goes to the address
   * with the copyRecipientDomain of the stage in force, which can differ from the one forwardTo was built with.
   */
  forwardToDefaulted?: true;
  keepPrimaryCopy: boolean;
  /** RFC 3339; after it the recipient routes like everyone else. */
  expiresAt?: string;
}

/**
 * One dated stage of a DeliveryPolicy (spec.stages[]): the routing fields in force until `until` (exclusive). The
 * DomainRoute's own mode/primary/secondary/dual/split are the final state, in force after the last stage.
 * routing/schedule.ts says which stage is in force at an instant.
 */
export interface StageRoute {
  name: string;
  /** RFC 3339, as written in the manifest. */
  until: string;
  mode: Mode;
  primary: string;
  secondary?: string;
  dual?: { scope: DualScope; copyRecipientDomain?: string; bounces: Bounces };
  split?: { unknownRecipients: UnknownRecipients };
  /** DeliveryPolicy softBounce in this stage (present only when true). */
  softBounce?: true;
}

/** Everything the relay needs to route one domain. Canonical JSON: keys sorted, arrays sorted where order is not meaningful. */
export interface DomainRoute {
  domain: string;
  mailDomain: ObjectRef;
  /**
   * The granting DomainClaim's `destinations`, canonical CIDR texts sorted: applied by the relay (and the operator's
   * preflight) on top of the global destination policy for this domain's servers (routing/destinations.ts withGrant).
   * Absent when the claim has none, or no DomainClaim exists.
   */
  destinations?: { allow: string[]; deny: string[] };
  /** Absent when the domain has no accepted DeliveryPolicy: mail for it is deferred with 451 4.3.5. */
  policy?: ObjectRef;
  servers: Record<string, ServerRoute>;
  mode?: Mode;
  primary?: string;
  secondary?: string;
  dual?: { scope: DualScope; copyRecipientDomain?: string; bounces: Bounces };
  split?: { unknownRecipients: UnknownRecipients };
  /**
   * DeliveryPolicy.spec.softBounce (present only when true): a 5xx of a server is retried like a 4xx until the queue
   * lifetime ends (relay/delivery/outcome.ts), and resolve() answers 450 where it would refuse with 550. A stage in
   * force replaces it with its own (absent: off).
   */
  softBounce?: true;
  /**
   * The policy's dated stages, in order of `until` (strictly increasing); absent when it has none. Until the last
   * one ends, the stage in force replaces mode, primary, secondary, dual and split above.
   */
  stages?: StageRoute[];
  /** server name -> sorted lowercase addresses with an account on it */
  accounts: Record<string, string[]>;
  /**
   * MailDomain.spec.recipientDelimiter: the characters that start an extension in a local part (routing/address.ts
   * splitExtension). Absent: subaddressing is off (the MailDomain says '', or a table compiled before the field).
   */
  recipientDelimiter?: string;
  recipientVerification?: { server: string; cacheTTLSeconds: number };
  rejectUnknownRecipients: boolean;
  /** lowercase address -> route; only active-or-future TestRecipients of the accepted policy */
  testRecipients: Record<string, TestRecipientRoute & { source: ObjectRef }>;
}

/**
 * The newest routing-table format this version routes by. A table says which format its readers need in `format`
 * (absent: 1, every table written until now). A writer raises it only for a table that holds a field an older reader
 * would ignore and so route differently (a subaddress rule, a dated stage, a destination limit: where mail goes);
 * an optional field whose absence changes nothing for older readers needs no new format. A reader refuses a table of
 * a higher format than this (relay/sources/file.ts checkRoutingTable): it keeps routing by the last table it could
 * read, logs and reports why, and the revision in its heartbeat stays the old one, so the operator does not count it
 * as programmed for what changed (docs/operations.md, "Upgrades, rollbacks and version skew").
 */
export const ROUTING_TABLE_FORMAT = 1;

export interface RoutingTable {
  apiVersion: typeof API_VERSION;
  kind: 'RoutingTable';
  /**
   * The lowest format a reader must understand to route by this table (ROUTING_TABLE_FORMAT); absent: 1. Never
   * written as 1, so that tables of format 1 keep their revisions.
   */
  format?: number;
  /** lowercase domain -> route */
  domains: Record<string, DomainRoute>;
  /** every object that was compiled, sorted; lets the operator tell which generations a revision contains */
  sources: ObjectRef[];
  /**
   * Domains that left the table recently: domain -> RFC 3339 instant it left (routing/removed-domains.ts). Written by the
   * operator (--removed-domain-grace), never by compile(); absent when there is none. Relays answer 451 for them
   * during their own grace instead of 554 relay access denied.
   */
  removedDomains?: Record<string, string>;
}

interface LegBase {
  /** The server as it was when the plan was made (a fallback; see Leg). */
  server: ServerRoute;
  /**
   * The MailDomain's domain whose `servers` entry this leg uses. Absent for servers that are not in the table (a
   * DSN to a sender outside the managed domains) and in spool files written before this field existed.
   */
  domain?: string;
  /** Envelope recipient after rewriting (copyRecipientDomain, forwardTo). */
  recipient: string;
  /**
   * "namespace/name" of the DeliveryPolicy whose plan made this leg: the relay's parity counters are kept per policy.
   * Absent on DSN legs to unmanaged domains and in spool files written before this field existed.
   */
  policy?: string;
  /** "namespace/name" of the active TestRecipient the plan was made for, when there was one (parity per test user). */
  testRecipient?: string;
}

/** The leg of record (role primary): its failure always bounces to the sender. */
export interface RecordLeg extends LegBase {
  role: 'primary';
  bounces: 'Notify';
}

/** A copy beside the leg of record; bounces as the policy's dual.bounces says. */
export interface CopyLeg extends LegBase {
  role: 'copy';
  bounces: Bounces;
}

/**
 * One delivery of one recipient to one server. Which legs a message has, and their recipients, roles and bounce
 * behaviour, are fixed when the message is accepted. How to reach the server is not: the relay looks it up by
 * (domain, server.name) in the routing table it serves at every attempt (relay/delivery/server-lookup.ts).
 */
export type Leg = RecordLeg | CopyLeg;

/** An SMTP reply the relay sends as is: "554 5.7.1 ...". */
export interface Reply {
  code: number;
  enhanced: string;
  text: string;
}

export type DeliveryPlan =
  /** The type itself guarantees the mailbox of record: one RecordLeg, first, then any copies. */
  | { verdict: 'accept'; recipient: string; domain: string; legs: [RecordLeg, ...CopyLeg[]] }
  | { verdict: 'reject'; recipient: string; reply: Reply; reason: RefusalReason; legs: [] }
  | { verdict: 'tempfail'; recipient: string; reply: Reply; reason: RefusalReason; legs: [] };

/** Why a recipient is refused: kept beside the reply, so that nobody has to read it back out of the reply's code. */
export type RefusalReason =
  | 'RelayDenied'
  | 'BadSyntax'
  | 'UnknownRecipient'
  | 'NoPolicy'
  | 'VerificationUnavailable'
  | 'NoRoutingTable'
  /** Not from resolve(): the relay's 451 for a domain that left the routing table recently (removed-domains.ts). */
  | 'DomainRemoved';

/** What is known about a mailbox on a server, from accounts or a verification callout. */
export type MailboxFact = 'exists' | 'absent' | 'unknown';

export interface ResolveContext {
  now: Date;
  /** Result of a recipient verification callout, when the relay made one. Pure: the relay does the I/O. */
  verified?: (server: string, address: string) => MailboxFact;
}

/** A cross-object problem found by compile(); becomes a status condition in the cluster, a line in `check`. */
export interface CompileIssue {
  kind: Kind;
  namespace: string;
  name: string;
  /** The condition it turns into. */
  condition: 'Accepted' | 'ResolvedRefs';
  /** CamelCase constant, e.g. Conflict, DomainNotFound, PolicyNotFound, UnknownServer. */
  reason: string;
  field: string;
  message: string;
}

export function assertNever(x: never, what = 'value'): never {
  throw new Error(`unexpected ${what}: ${JSON.stringify(x)}`);
}
