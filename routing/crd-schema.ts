// The one source of truth for the three CRDs: OpenAPI v3 schemas (`as const`) including their CEL rules.
// - scripts/gen-crds.ts turns these into crds/*.yaml (see routing/crds.ts);
// - routing/types.ts derives the TypeScript spec types from them (FromSchema);
// - routing/validate.ts validates manifests offline with ajv plus the TS twin of every CEL rule (routing/cel.ts).
import {
  BOUNCES,
  DEFAULT_RECIPIENTS_PER_TRANSACTION,
  DUAL_SCOPES,
  MODES,
  TLS_MODES,
  UNKNOWN_RECIPIENTS,
} from './model.ts';

// Patterns must work both in Go's RE2 (the API server) and in JavaScript's RegExp (ajv): no lookarounds.
export const DNS_LABEL = '^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$';
export const DNS_SUBDOMAIN = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$';
/** A lowercase fully-qualified domain name with at least two labels. */
export const DOMAIN = '^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)+$';
/** A hostname (any case) or an IPv4/IPv6 literal. */
export const HOST =
  '^([A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)(\\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*$|^[0-9A-Fa-f:.]+$';
const ATEXT = "A-Za-z0-9!#$%&'*+/=?^_`{|}~-";
/** A hostname of at least two labels, any case; an internationalised domain in its A-label form. */
const ADDRESS_DOMAIN =
  '[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?(\\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)+';
/**
 * local@domain: a dot-atom local part (RFC 5322 atext, plus any non-ASCII character: SMTPUTF8, RFC 6531, as
 * routing/address.ts parseAddress accepts) and a hostname domain (ASCII: an internationalised domain in its A-label
 * form). Quoted local parts are not allowed in manifests. `[^\x00-\x7F]` is one code point in RE2 and in ajv's
 * RegExp (the `u` flag).
 */
export const ADDRESS = `^([${ATEXT}]|[^\\x00-\\x7F])+(\\.([${ATEXT}]|[^\\x00-\\x7F])+)*@${ADDRESS_DOMAIN}$`;
/**
 * An ASCII local@domain (RFC 5322 atext only): the operator's acceptance probe (spec.servers[].probe.address) sends
 * its RCPT TO without SMTPUTF8.
 */
export const ASCII_ADDRESS = `^[${ATEXT}]+(\\.[${ATEXT}]+)*@${ADDRESS_DOMAIN}$`;
/** CEL: a domain written in Unicode (U-labels) is refused with a message that names the form to use. */
export const IDN_RULE = "self.matches('^[ -~]*$')";
const IDN_MESSAGE =
  'an internationalised domain must be written in its A-label (punycode) form, e.g. xn--mnchen-3ya.example for münchen.example (`mailroute check` prints the A-label)';
/** MailDomain.spec.recipientDelimiter: characters that may start an extension (RFC 5233), or none. */
export const RECIPIENT_DELIMITER = '^[-+_=~#]*$';
/** A Go-style duration made of s, m and h units, e.g. 90s, 15m, 1h30m. */
export const DURATION = '^([0-9]{1,6}(s|m|h))+$';

// An RFC 3339 date-time (section 5.6), checked field by field: the month's length (February 29 in leap years only,
// by the Gregorian rule), hours 00-23, minutes and seconds 00-59 (no leap second, as the API server's own format
// check), a fraction after a dot, and Z or an offset of at most 23:59. T and Z may be lower case (RFC 3339 allows it).
// The API server's `format: date-time` alone lets through a comma as the fraction's separator and offsets such as
// +99:99, which nothing can read; this pattern is checked next to it. routing/schedule.ts parseInstant uses it too, so
// the CRD, `mailroute check` and the compiler agree on what a time is.
const YEAR_DAY =
  '[0-9]{4}-((0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])|(0[469]|11)-(0[1-9]|[12][0-9]|30)|02-(0[1-9]|1[0-9]|2[0-8]))';
const LEAP_YEAR_FEB_29 = '([0-9]{2}(0[48]|[2468][048]|[13579][26])|([02468][048]|[13579][26])00)-02-29';
const TIME_OF_DAY = '([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]+)?';
const UTC_OFFSET = '([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])';
export const DATE_TIME = `^(${YEAR_DAY}|${LEAP_YEAR_FEB_29})[Tt]${TIME_OF_DAY}${UTC_OFFSET}$`;
/** How a field that holds an instant is declared: `format: date-time` and the pattern above. */
const dateTime = (description: string) =>
  ({ type: 'string', format: 'date-time', pattern: DATE_TIME, description }) as const;

const MAX_SERVERS = 16;
const MAX_ACCOUNT_ENTRIES = 16;
const MAX_ADDRESSES_PER_ACCOUNT_ENTRY = 5000;

const objectRef = (what: string) =>
  ({
    type: 'object',
    description: `Reference to a ${what} in the same namespace.`,
    required: ['name'],
    properties: {
      name: {
        type: 'string',
        minLength: 1,
        maxLength: 253,
        pattern: DNS_SUBDOMAIN,
        description: `Name of the ${what}.`,
      },
    },
  }) as const;

/** The name of a server or a stage: a DNS label. */
const dnsLabel = (description: string) =>
  ({ type: 'string', maxLength: 63, pattern: DNS_LABEL, description }) as const;

const address = (description: string) =>
  ({ type: 'string', minLength: 3, maxLength: 254, pattern: ADDRESS, description }) as const;

/** metav1.Condition, as in Kubernetes-generated CRDs. */
const conditions = {
  type: 'array',
  description:
    'Conditions: Accepted (valid, no conflict), ResolvedRefs (references exist), Programmed (ready relays serve it), Ready (all of them).',
  maxItems: 8,
  'x-kubernetes-list-type': 'map',
  'x-kubernetes-list-map-keys': ['type'],
  items: {
    type: 'object',
    required: ['type', 'status', 'lastTransitionTime', 'reason', 'message'],
    properties: {
      type: {
        type: 'string',
        maxLength: 316,
        pattern:
          '^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$',
        description: 'Type of condition in CamelCase.',
      },
      status: { type: 'string', enum: ['True', 'False', 'Unknown'], description: 'True, False or Unknown.' },
      observedGeneration: {
        type: 'integer',
        format: 'int64',
        minimum: 0,
        description: 'The .metadata.generation the condition was set for.',
      },
      lastTransitionTime: dateTime('Last time the condition changed status.'),
      reason: {
        type: 'string',
        minLength: 1,
        maxLength: 1024,
        pattern: '^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$',
        description: 'CamelCase reason for the last transition.',
      },
      message: { type: 'string', maxLength: 32768, description: 'Human-readable details.' },
    },
  },
} as const;

const observedGeneration = {
  type: 'integer',
  format: 'int64',
  minimum: 0,
  description: 'The .metadata.generation the status was computed for.',
} as const;

// ---------------------------------------------------------------------------------------------------------------
// MailDomain

export const serverSchema = {
  type: 'object',
  required: ['name', 'host'],
  'x-kubernetes-validations': [
    {
      rule: "!has(self.authSecretRef) || !has(self.tls) || self.tls != 'None' || (has(self.allowPlaintextAuth) && self.allowPlaintextAuth)",
      message:
        'authSecretRef with tls None sends the password in plain text: use another tls mode, or set allowPlaintextAuth: true',
      fieldPath: '.allowPlaintextAuth',
      reason: 'FieldValueForbidden',
    },
  ],
  properties: {
    name: dnsLabel('DNS label, unique in the list.'),
    host: {
      type: 'string',
      minLength: 1,
      maxLength: 253,
      pattern: HOST,
      description: 'Hostname or IP address.',
    },
    port: { type: 'integer', minimum: 1, maximum: 65535, default: 25, description: 'SMTP port.' },
    mx: {
      type: 'boolean',
      default: false,
      description: 'true: resolve the MX records of host instead of connecting to it.',
    },
    tls: {
      type: 'string',
      enum: TLS_MODES,
      default: 'Opportunistic',
      description:
        'None | Opportunistic (STARTTLS when offered) | Required (STARTTLS, certificate not checked) | RequiredVerify (STARTTLS, certificate verified) | Implicit (TLS from the first byte, as on port 465; certificate not checked). Delivery and recipient-verification callouts both use it.',
    },
    authSecretRef: {
      ...objectRef('Secret'),
      description:
        'Optional Secret (same namespace) with the keys username and password for SMTP AUTH. The Secret must opt in with the label mailroute.io/smtp-auth: "true"; any other Secret is reported as not found or not permitted, and never read.',
    },
    allowPlaintextAuth: {
      type: 'boolean',
      description:
        'true: AUTH may be sent without TLS. By default AUTH is only sent over TLS: tls None with an authSecretRef is refused, and with tls Opportunistic a server that offers no STARTTLS gets no AUTH (the attempt is deferred).',
    },
    maxConnections: {
      type: 'integer',
      minimum: 1,
      maximum: 1000,
      default: 10,
      description: 'Maximum concurrent connections per relay pod to this server.',
    },
    maxRecipientsPerTransaction: {
      type: 'integer',
      minimum: 1,
      maximum: 1000,
      default: DEFAULT_RECIPIENTS_PER_TRANSACTION,
      description:
        'Recipients per SMTP transaction to this server; a message to more is sent in several transactions (Postfix: default_destination_recipient_limit). Should the server refuse recipients with 452 4.5.3 (or 552 5.5.3) before this many, the rest go in another transaction at once instead of waiting for a retry.',
    },
    probe: {
      type: 'object',
      required: ['address'],
      description:
        "Optional acceptance step of the operator's preflight: after the connection and TLS checks pass, it authenticates (authSecretRef) and sends MAIL FROM:<> and RCPT TO:<address>, then RSET (no message is sent). A server that has not allowlisted the relay answers 5xx here before real mail does. The result is in status.servers[].acceptance; a refusal makes ServersReachable False.",
      properties: {
        address: {
          type: 'string',
          maxLength: 254,
          pattern: ASCII_ADDRESS,
          description:
            'A mailbox this server must accept mail for, e.g. a test user of the migration (after copyRecipientDomain, as a copy would be addressed).',
        },
      },
    },
  },
} as const;

export const mailDomainSpecSchema = {
  type: 'object',
  description: 'A mail domain the relay accepts, and the downstream servers that can receive its mail.',
  required: ['domain', 'servers'],
  'x-kubernetes-validations': [
    {
      rule: 'self.servers.all(s, self.servers.exists_one(t, t.name == s.name))',
      message: 'server names must be unique',
      fieldPath: '.servers',
      reason: 'FieldValueDuplicate',
    },
    {
      rule: '!has(self.accounts) || self.accounts.all(a, self.servers.exists(s, s.name == a.server))',
      message: 'accounts[].server must name one of spec.servers',
      fieldPath: '.accounts',
      reason: 'FieldValueInvalid',
    },
    {
      rule: '!has(self.recipientVerification) || self.servers.exists(s, s.name == self.recipientVerification.server)',
      message: 'recipientVerification.server must name one of spec.servers',
      fieldPath: '.recipientVerification.server',
      reason: 'FieldValueInvalid',
    },
  ],
  properties: {
    domain: {
      type: 'string',
      minLength: 3,
      maxLength: 253,
      pattern: DOMAIN,
      description:
        'The mail domain, a lowercase fully-qualified name; an internationalised domain in its A-label (punycode) form, e.g. xn--mnchen-3ya.example for münchen.example. Immutable. One MailDomain per domain cluster-wide.',
      'x-kubernetes-validations': [
        { rule: 'self == oldSelf', message: 'domain is immutable' },
        {
          rule: IDN_RULE,
          message: IDN_MESSAGE,
        },
      ],
    },
    servers: {
      type: 'array',
      minItems: 1,
      maxItems: MAX_SERVERS,
      description: 'The downstream servers (1 to 16) for this domain.',
      'x-kubernetes-list-type': 'map',
      'x-kubernetes-list-map-keys': ['name'],
      items: serverSchema,
    },
    accounts: {
      type: 'array',
      maxItems: MAX_ACCOUNT_ENTRIES,
      description:
        'Mailboxes known to exist on a server. Scale limit: a MailDomain is stored in etcd (objects up to ~1.5 MiB) and the compiled routing table in a ConfigMap (1 MiB per object, sharded by the operator), so list at most 5,000 addresses per entry and a few tens of thousands in total. For tens of thousands of mailboxes use recipientVerification instead.',
      items: {
        type: 'object',
        required: ['server', 'addresses'],
        properties: {
          server: dnsLabel('Name of one of spec.servers.'),
          addresses: {
            type: 'array',
            maxItems: MAX_ADDRESSES_PER_ACCOUNT_ENTRY,
            description: 'Addresses (in this domain) with a mailbox on the server; at most 5,000 per entry.',
            items: address('An address with a mailbox on the server.'),
          },
        },
      },
    },
    recipientVerification: {
      type: 'object',
      description:
        'Ask this server at RCPT time whether a mailbox exists (an SMTP callout, cached). The scalable way to know large account lists.',
      required: ['server'],
      properties: {
        server: dnsLabel('Name of one of spec.servers.'),
        cacheTTL: {
          type: 'string',
          maxLength: 32,
          pattern: DURATION,
          default: '1h',
          description: 'How long a verification answer is cached, e.g. 15m or 1h.',
        },
      },
    },
    recipientDelimiter: {
      type: 'string',
      maxLength: 6,
      pattern: RECIPIENT_DELIMITER,
      default: '+',
      description:
        "Subaddressing (Postfix's recipient_delimiter): each of these characters (any of + - _ = ~ #; default +) starts an extension in a local part. alice+news@ that is not listed itself is looked up as alice@ in accounts and TestRecipients, and a TestRecipient's forwardTo gets the extension (alice+news@ forwarded to alice@new.example goes to alice+news@new.example). Legs carry the address as sent. An empty string turns it off.",
    },
    rejectUnknownRecipients: {
      type: 'boolean',
      default: false,
      description:
        'true: a recipient known to be absent on every server of the policy gets 550 5.1.1 at RCPT time.',
    },
  },
} as const;

export const mailDomainStatusSchema = {
  type: 'object',
  properties: {
    observedGeneration,
    conditions,
    serverNames: {
      type: 'string',
      maxLength: 1024,
      description:
        'The names of spec.servers, comma-separated (written by the operator for kubectl get -o wide).',
    },
    servers: {
      type: 'array',
      maxItems: MAX_SERVERS,
      description: "Preflight results: the operator's view of each downstream server.",
      'x-kubernetes-list-type': 'map',
      'x-kubernetes-list-map-keys': ['name'],
      items: {
        type: 'object',
        required: ['name'],
        properties: {
          name: { type: 'string', maxLength: 63, description: 'Server name from spec.servers.' },
          reachable: { type: 'boolean', description: 'The server answered with an SMTP greeting.' },
          tls: {
            type: 'string',
            maxLength: 64,
            description:
              'TLS outcome of the last probe: none (not attempted), offered (STARTTLS advertised, not required), ok (STARTTLS succeeded, verified for RequiredVerify), failed.',
          },
          message: { type: 'string', maxLength: 1024, description: 'Details of the last probe.' },
          localAddress: {
            type: 'string',
            maxLength: 64,
            description:
              "The local address the probe's connection left from (the operator pod's; relays leave from theirs, or from the cluster's egress address): the address to allowlist.",
          },
          acceptance: {
            type: 'object',
            description: 'The acceptance step (spec.servers[].probe.address), when the server has one.',
            properties: {
              address: { type: 'string', maxLength: 254, description: 'The probe address.' },
              result: {
                type: 'string',
                maxLength: 16,
                description:
                  'accepted (2xx to RCPT TO), deferred (4xx), refused (5xx: not allowlisted, or no such mailbox), failed (no RCPT reply: connection, TLS, AUTH or MAIL FROM failed, or the credentials are unavailable).',
              },
              reply: {
                type: 'string',
                maxLength: 1024,
                description: 'The reply to RCPT TO, or what failed.',
              },
            },
          },
          lastProbeTime: dateTime('When the server was last probed.'),
        },
      },
    },
  },
} as const;

/** status.parity of a DeliveryPolicy and a TestRecipient: the relays' parity counters, summed by the operator. */
const parityStatus = {
  type: 'object',
  description:
    "Parity while dual, summed over the relays with a fresh heartbeat (each relay counts since it started): legs of record delivered, copies delivered, suppressed and pending, and the 95th percentile of the copy lag (copy delivered minus its leg of record delivered). Written by the operator from the relays' heartbeat Leases; absent until a relay has reported a leg.",
  properties: {
    primaryDelivered: {
      type: 'integer',
      format: 'int64',
      minimum: 0,
      description: 'Legs of record delivered.',
    },
    copiesDelivered: { type: 'integer', format: 'int64', minimum: 0, description: 'Copy legs delivered.' },
    copiesSuppressed: {
      type: 'integer',
      format: 'int64',
      minimum: 0,
      description:
        'Copy legs that ended undelivered: refused (5xx), expired in the queue, bounced (bounces Notify), or shed to keep room for primary mail on a spool volume low on space. The relay metric mailroute_parity_legs_total has the reasons.',
    },
    copiesPending: { type: 'integer', format: 'int64', minimum: 0, description: 'Copy legs not final yet.' },
    lagP95: {
      type: 'string',
      maxLength: 16,
      description:
        'The 95th percentile of the copy lag, as the histogram bucket it falls in: "<= 5s", "<= 15m", "> 24h".',
    },
  },
} as const;

// ---------------------------------------------------------------------------------------------------------------
// DeliveryPolicy

/** The CEL rules shared by a DeliveryPolicy's own routing fields and each of its stages. */
const routingStateRules = [
  {
    rule: "self.mode == 'Direct' || has(self.secondary)",
    message: 'secondary is required when mode is Dual or Split',
    fieldPath: '.secondary',
    reason: 'FieldValueRequired',
  },
  {
    rule: '!has(self.secondary) || self.secondary != self.primary',
    message: 'secondary must differ from primary',
    fieldPath: '.secondary',
    reason: 'FieldValueInvalid',
  },
] as const;

/** The routing fields of a DeliveryPolicy: its own (the final state) and each stage's. */
const routingStateProperties = {
  mode: { type: 'string', enum: MODES, description: 'Direct | Dual | Split.' },
  primary: dnsLabel(
    "Server name from the MailDomain: the mailbox of record. Its failures (5xx, or 4xx until the relay's queue lifetime ends) always bounce to the sender (RFC 3464 DSN), whatever dual.bounces says.",
  ),
  secondary: dnsLabel('Server name from the MailDomain; required for Dual and Split.'),
  dual: {
    type: 'object',
    description: 'Dual delivery settings (mode Dual).',
    properties: {
      scope: {
        type: 'string',
        enum: DUAL_SCOPES,
        default: 'All',
        description:
          'All: every recipient is copied | TestRecipients: only TestRecipients | Accounts: recipients with an account on the secondary.',
      },
      copyRecipientDomain: {
        type: 'string',
        minLength: 3,
        maxLength: 253,
        pattern: DOMAIN,
        description:
          'The copy goes to the same local part at this domain (e.g. an alias domain of the new server).',
      },
      bounces: {
        type: 'string',
        enum: BOUNCES,
        default: 'Suppress',
        description:
          'Suppress: a failed copy never produces a DSN | Notify: it does. Applies to copy legs only: the mailbox of record always bounces (a TestRecipient with keepPrimaryCopy: false has its forwardTo as its mailbox of record, so its failures bounce even with Suppress).',
      },
    },
  },
  softBounce: {
    type: 'boolean',
    description:
      "Postfix's soft_bounce for this domain, a safety net for a cutover: while true, a permanent refusal (5xx) by a server is retried as if it were temporary, until the relay's queue lifetime ends (then the leg bounces or, a copy with bounces Suppress, is suppressed, as without it), and the relay answers 450 instead of 550 to recipients it would refuse as unknown, so senders keep their mail queued. Off when absent. Put it in a dated stage to have it end by itself.",
  },
  split: {
    type: 'object',
    description: 'Split delivery settings (mode Split).',
    properties: {
      unknownRecipients: {
        type: 'string',
        enum: UNKNOWN_RECIPIENTS,
        default: 'Secondary',
        description: 'Recipients unknown on the primary: Secondary (deliver there) | Reject (550 5.1.1).',
      },
    },
  },
} as const;

const MAX_STAGES = 8;
/** CEL: stage ends strictly increasing (a date-time field is a CEL timestamp). */
export const STAGES_ORDER_RULE =
  '!has(self.stages) || (self.stages.map(s, s.until).isSorted() && self.stages.all(a, self.stages.exists_one(b, b.until == a.until)))';
export const STAGES_ORDER_MESSAGE =
  'stages must be listed in order of until, each ending strictly after the one before (stages cannot overlap)';

const stageSchema = {
  type: 'object',
  description:
    "One dated stage: these routing fields are in force until `until`; then the next stage, and after the last one the policy's own fields. A stage states its whole routing (mode, primary, secondary, dual, split, softBounce): nothing is inherited from the policy's own fields or from other stages. The domain (domainRef) is the policy's, for every stage.",
  required: ['name', 'until', 'mode', 'primary'],
  'x-kubernetes-validations': [
    ...routingStateRules,
    {
      rule: "self.name != 'final'",
      message: "final is the name status uses for the policy's own fields, after the last stage",
      fieldPath: '.name',
      reason: 'FieldValueInvalid',
    },
  ],
  properties: {
    name: dnsLabel('DNS label, unique in the list; status.stage shows it while the stage is in force.'),
    until: dateTime(
      'RFC 3339 instant (e.g. 2026-12-05T02:00:00Z, or with an offset: 2026-12-05T03:00:00+01:00) at which this stage ends, exclusive. The stage begins where the one before ends (the first: at once).',
    ),
    ...routingStateProperties,
  },
} as const;

export const deliveryPolicySpecSchema = {
  type: 'object',
  description:
    'How mail for one MailDomain is delivered: Direct, Dual (a copy to the secondary) or Split. One per MailDomain. With stages, the routing changes by the clock: each stage is in force until its `until`, and the fields here after the last one.',
  required: ['domainRef', 'mode', 'primary'],
  'x-kubernetes-validations': [
    ...routingStateRules,
    {
      rule: '!has(self.stages) || self.stages.all(s, self.stages.exists_one(t, t.name == s.name))',
      message: 'stage names must be unique',
      fieldPath: '.stages',
      reason: 'FieldValueDuplicate',
    },
    {
      rule: STAGES_ORDER_RULE,
      message: STAGES_ORDER_MESSAGE,
      fieldPath: '.stages',
      reason: 'FieldValueInvalid',
    },
  ],
  properties: {
    domainRef: objectRef('MailDomain'),
    ...routingStateProperties,
    stages: {
      type: 'array',
      maxItems: MAX_STAGES,
      description:
        "Dated stages before the policy's own fields take over, in order of `until` (at most 8), e.g. Dual to the new server until Saturday 02:00, then Direct to the new server with a copy to the old one for two weeks. The stage in force, and the next transition, are in status.stage and status.nextTransition. Stages that have ended may stay: they route nothing.",
      'x-kubernetes-list-type': 'map',
      'x-kubernetes-list-map-keys': ['name'],
      items: stageSchema,
    },
  },
} as const;

export const deliveryPolicyStatusSchema = {
  type: 'object',
  properties: {
    observedGeneration,
    conditions,
    domain: {
      type: 'string',
      maxLength: 253,
      description:
        "The domain of the MailDomain that domainRef names (written by the operator; kubectl get's DOMAIN column). Absent while that MailDomain does not exist.",
    },
    scope: {
      type: 'string',
      maxLength: 32,
      description:
        "Dual only: dual.scope of the stage in force, with its default applied (written by the operator; kubectl get's SCOPE column).",
    },
    mode: {
      type: 'string',
      maxLength: 32,
      description:
        "The mode in force: the current stage's, or spec.mode (written by the operator; kubectl get's MODE column).",
    },
    stage: {
      type: 'string',
      maxLength: 63,
      description:
        "The stage in force: a spec.stages[].name, or final for the policy's own fields. Absent for a policy without stages.",
    },
    softBounce: {
      type: 'boolean',
      description:
        "Present (true) while softBounce is in force (the stage in force's, or the policy's own): a 5xx from a server is retried until the queue lifetime ends (written by the operator; kubectl get -o wide's SOFTBOUNCE column).",
    },
    nextTransition: dateTime(
      'When the routing of this policy next changes by the clock (the end of the stage in force). Absent when nothing is scheduled.',
    ),
    parity: parityStatus,
  },
} as const;

// ---------------------------------------------------------------------------------------------------------------
// TestRecipient

export const testRecipientSpecSchema = {
  type: 'object',
  description: 'A recipient whose mail is copied to the secondary while its DeliveryPolicy is in Dual mode.',
  required: ['policyRef', 'address'],
  properties: {
    policyRef: objectRef('DeliveryPolicy'),
    address: address("The recipient; must belong to the policy's domain."),
    forwardTo: address(
      'Where the copy goes (via the secondary); default: the address, with copyRecipientDomain applied.',
    ),
    keepPrimaryCopy: {
      type: 'boolean',
      default: true,
      description:
        "true: deliver to the primary mailbox (the mailbox of record) and a copy to forwardTo (bounces as the policy's dual.bounces says) | false: deliver to forwardTo only; it is then the mailbox of record, and its failures bounce to the sender even with dual.bounces Suppress.",
    },
    expiresAt: dateTime(
      'RFC 3339 instant (e.g. 2026-12-31T00:00:00Z, or with an offset: 2026-12-31T01:00:00+01:00); from then on the recipient routes like everyone else.',
    ),
  },
} as const;

export const testRecipientStatusSchema = {
  type: 'object',
  properties: { observedGeneration, conditions, parity: parityStatus },
} as const;

// ---------------------------------------------------------------------------------------------------------------
// DomainClaim (cluster-scoped): which namespaces may route which domains

/** A grant pattern: `*` (any domain), `*.corp.test` (any subdomain of corp.test, not corp.test itself) or a domain. */
export const DOMAIN_PATTERN =
  '^\\*$|^(\\*\\.)?[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)+$';
const MAX_GRANT_DOMAINS = 256;
const MAX_GRANT_NAMESPACES = 256;
const IPV4_OCTET = '(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])';
/**
 * A CIDR or a bare address: IPv4 a.b.c.d[/n] with octets 0-255 (no leading zeros) and a prefix of 0-32, or the shape
 * of IPv6 x:y::z[/n] with a prefix of 0-128. routing/destinations.ts parseCidr is the full check of an IPv6 address
 * (offline validation uses it, and the compiler reports an entry it refuses; a Kubernetes before 1.31 has no CEL
 * isCIDR).
 */
export const CIDR_PATTERN = `^(${IPV4_OCTET}(\\.${IPV4_OCTET}){3}(/(3[0-2]|[12]?[0-9]))?|[0-9a-fA-F:.]*:[0-9a-fA-F:.]*(/(12[0-8]|1[01][0-9]|[1-9]?[0-9]))?)$`;
const MAX_GRANT_CIDRS = 64;

const cidrList = (description: string) =>
  ({
    type: 'array',
    maxItems: MAX_GRANT_CIDRS,
    description,
    items: { type: 'string', minLength: 2, maxLength: 64, pattern: CIDR_PATTERN },
  }) as const;

export const domainClaimSpecSchema = {
  type: 'object',
  description:
    'Grants the namespaces listed in `namespaces` the right to route the domains in `domains`: a MailDomain, a copyRecipientDomain or a TestRecipient forwardTo outside every grant of its namespace is refused (Accepted=False, NotPermitted). While no DomainClaim exists at all, every namespace may use any domain (single-tenant default).',
  required: ['domains', 'namespaces'],
  properties: {
    domains: {
      type: 'array',
      minItems: 1,
      maxItems: MAX_GRANT_DOMAINS,
      description:
        'Domains granted: `corp.test` (exactly that domain), `*.corp.test` (any subdomain of corp.test, not corp.test itself), `*` (any domain). Lowercase; internationalised domains in their A-label form.',
      items: { type: 'string', minLength: 1, maxLength: 253, pattern: DOMAIN_PATTERN },
    },
    namespaces: {
      type: 'object',
      description: 'The namespaces the domains are granted to.',
      required: ['names'],
      properties: {
        names: {
          type: 'array',
          minItems: 1,
          maxItems: MAX_GRANT_NAMESPACES,
          description:
            'Namespace names, in order of precedence: when two granted namespaces declare the same domain, the one listed first wins, whatever the age of the objects (re-creating an object never hands its domain to another namespace).',
          items: { type: 'string', minLength: 1, maxLength: 63, pattern: DNS_LABEL },
        },
      },
    },
    destinations: {
      type: 'object',
      description:
        "Where the relay and the operator's preflight may connect for the servers of the granted domains, on top of the relay's destination policy (--deny-destinations, --allow-destinations and, on a cluster, the default deny list). `deny` adds to the deny list, and wins over every allow. `allow` re-permits, for these domains' servers only, addresses the relay's deny list refuses (for example an on-premises MTA inside the pod range), never link-local or metadata addresses.",
      properties: {
        allow: cidrList(
          'CIDRs (10.1.2.0/24, fd00::/64) or single addresses re-permitted for the servers of the granted domains.',
        ),
        deny: cidrList('CIDRs or single addresses refused for the servers of the granted domains.'),
      },
    },
  },
} as const;

// ---------------------------------------------------------------------------------------------------------------
// CRD definitions (names, printer columns) used by routing/crds.ts

const ready = {
  name: 'Ready',
  type: 'string',
  jsonPath: '.status.conditions[?(@.type=="Ready")].status',
} as const;
const age = { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' } as const;

export const CRD_DEFINITIONS = {
  MailDomain: {
    scope: 'Namespaced',
    plural: 'maildomains',
    singular: 'maildomain',
    shortNames: ['md'],
    spec: mailDomainSpecSchema,
    status: mailDomainStatusSchema,
    description: 'MailDomain declares a mail domain the relay accepts and its downstream servers.',
    columns: [
      { name: 'Domain', type: 'string', jsonPath: '.spec.domain' },
      {
        name: 'Reachable',
        type: 'string',
        description: "The operator's preflight: every server answered (and TLS held where required).",
        jsonPath: '.status.conditions[?(@.type=="ServersReachable")].status',
      },
      ready,
      age,
      {
        name: 'Servers',
        type: 'string',
        priority: 1,
        description: 'The names of spec.servers.',
        jsonPath: '.status.serverNames',
      },
      {
        name: 'Verification',
        type: 'string',
        priority: 1,
        description: 'The server asked at RCPT time whether a mailbox exists.',
        jsonPath: '.spec.recipientVerification.server',
      },
    ],
  },
  DeliveryPolicy: {
    scope: 'Namespaced',
    plural: 'deliverypolicies',
    singular: 'deliverypolicy',
    shortNames: ['dp'],
    spec: deliveryPolicySpecSchema,
    status: deliveryPolicyStatusSchema,
    description: 'DeliveryPolicy says how mail for one MailDomain is delivered: Direct, Dual or Split.',
    columns: [
      {
        name: 'Domain',
        type: 'string',
        description: 'The domain of the referenced MailDomain.',
        jsonPath: '.status.domain',
      },
      {
        name: 'Mode',
        type: 'string',
        description: 'The mode in force (of the current stage, if any).',
        jsonPath: '.status.mode',
      },
      {
        name: 'Scope',
        type: 'string',
        description: 'Dual: who gets a copy (All, TestRecipients or Accounts).',
        jsonPath: '.status.scope',
      },
      {
        name: 'Stage',
        type: 'string',
        description: "The stage in force (final: the policy's own fields); empty without stages.",
        jsonPath: '.status.stage',
      },
      ready,
      age,
      {
        name: 'Primary',
        type: 'string',
        priority: 1,
        description: 'The mailbox of record after the last stage (spec.primary).',
        jsonPath: '.spec.primary',
      },
      { name: 'Secondary', type: 'string', priority: 1, jsonPath: '.spec.secondary' },
      { name: 'MailDomain', type: 'string', priority: 1, jsonPath: '.spec.domainRef.name' },
      // a string: a date column shows the age, which is <invalid> for a time in the future
      {
        name: 'Next',
        type: 'string',
        priority: 1,
        description: 'When the routing next changes by the clock (the end of the stage in force).',
        jsonPath: '.status.nextTransition',
      },
      {
        name: 'SoftBounce',
        type: 'boolean',
        priority: 1,
        description: 'softBounce is in force: permanent refusals are retried, not bounced.',
        jsonPath: '.status.softBounce',
      },
    ],
  },
  TestRecipient: {
    scope: 'Namespaced',
    plural: 'testrecipients',
    singular: 'testrecipient',
    shortNames: ['tr'],
    spec: testRecipientSpecSchema,
    status: testRecipientStatusSchema,
    description: 'TestRecipient copies the mail of one recipient to the secondary while its policy is Dual.',
    columns: [
      { name: 'Address', type: 'string', jsonPath: '.spec.address' },
      { name: 'Policy', type: 'string', jsonPath: '.spec.policyRef.name' },
      { name: 'Active', type: 'string', jsonPath: '.status.conditions[?(@.type=="Active")].status' },
      {
        name: 'Copies',
        type: 'integer',
        description: 'Copies delivered (status.parity.copiesDelivered, summed over the relays).',
        jsonPath: '.status.parity.copiesDelivered',
      },
      {
        name: 'Lag',
        type: 'string',
        description: 'The 95th percentile of the copy lag (status.parity.lagP95).',
        jsonPath: '.status.parity.lagP95',
      },
      ready,
      age,
      {
        name: 'ForwardTo',
        type: 'string',
        priority: 1,
        description: 'Where the copy goes (empty: the address, with copyRecipientDomain applied).',
        jsonPath: '.spec.forwardTo',
      },
      {
        name: 'KeepPrimaryCopy',
        type: 'boolean',
        priority: 1,
        description: 'false: forwardTo is the only mailbox, and the mailbox of record.',
        jsonPath: '.spec.keepPrimaryCopy',
      },
      // a string: a date column shows the age, which is <invalid> for a time in the future
      { name: 'Expires', type: 'string', priority: 1, jsonPath: '.spec.expiresAt' },
    ],
  },
  DomainClaim: {
    scope: 'Cluster',
    plural: 'domainclaims',
    singular: 'domainclaim',
    shortNames: ['dc'],
    spec: domainClaimSpecSchema,
    status: undefined,
    description:
      'DomainClaim (cluster-scoped, for the cluster admin) grants namespaces the right to route domains. With none, every namespace may route any domain.',
    columns: [
      { name: 'Domains', type: 'string', jsonPath: '.spec.domains' },
      { name: 'Namespaces', type: 'string', jsonPath: '.spec.namespaces.names' },
      age,
    ],
  },
} as const;
