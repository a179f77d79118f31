// The relay's configuration: flags and MAILROUTE_<FLAG> environment variables parsed once, validated, frozen
// (docs/design.md §3, §6.7). A bad value fails fast with the flag's name. Flags win over the environment.
import { availableParallelism, hostname as osHostname } from 'node:os';
import { flagUsage, parseDuration, readFlags, type FlagSpec } from '../lib/flags.ts';
import { parseDnsServers } from './dns.ts';
import { DEFAULT_MANIFEST_LIMITS, parseBytes, type ManifestLimits } from '../lib/manifests.ts';
import { isValidClusterId } from './inbound/trace.ts';
import { parseSpaceThreshold, type SpaceThreshold } from './delivery/shed.ts';
import { isLogFormat, type LogFormat } from '../lib/logger.ts';
import { PERMIT_ALL, policyFromFlags, type DestinationPolicy } from '../routing/destinations.ts';

export interface HostPort {
  host: string;
  port: number;
}

export type RoutingSourceConfig =
  | { kind: 'manifests'; dir: string; limits?: ManifestLimits }
  | { kind: 'routing-file'; file: string }
  /** fallbackFile: the same ConfigMap mounted as a volume (--routing-file with --configmap), read while the API is down. */
  | { kind: 'configmap'; namespace: string; name: string; fallbackFile?: string };

const BARE_LF_MODES = ['reject', 'normalize'] as const;
export type BareLfMode = (typeof BARE_LF_MODES)[number];

export interface RelayConfig {
  source: RoutingSourceConfig;
  listen: HostPort;
  http: HostPort;
  admin: HostPort;
  spoolDir: string;
  hostname: string;
  /** The installation's name in the Received: trace (relay/inbound/trace.ts); default: hostname. */
  clusterId: string;
  maxMessageSize: number;
  /** Delays between attempts, in ms; the last one repeats. */
  retryScheduleMs: readonly number[];
  maxQueueLifetimeMs: number;
  /**
   * --shed-copies-below: while the spool's volume has less free space, copies of the oldest messages that wait on
   * copies alone are ended (relay/delivery/shed.ts). 0 bytes: never.
   */
  shedCopiesBelow: SpaceThreshold;
  /** --delay-warning: one delay DSN per notifying leg still deferred this long after arrival; 0: never. */
  delayWarningMs: number;
  /** --removed-domain-grace: a domain that left the routing table gets 451, not 554, this long; 0: 554 at once. */
  removedDomainGraceMs: number;
  /** STARTTLS: the files, read at start and again every reloadIntervalMs (0: never; relay/inbound/tls-reload.ts). */
  tls?: { certFile: string; keyFile: string; reloadIntervalMs: number };
  maxRecipients: number;
  /**
   * --max-recipients-in-flight: recipients accepted in all transactions not yet ended (by DATA, RSET or the close);
   * more get 452 4.5.3 (relay/inbound/in-flight.ts). At least --max-recipients.
   */
  maxRecipientsInFlight: number;
  maxConnections: number;
  maxConnectionsPerIp: number;
  /** --client-ipv6-prefix: the per-IP limits count an IPv6 client by this network (lib/client-network.ts). */
  clientIpv6Prefix: number;
  idleTimeoutMs: number;
  dataTimeoutMs: number;
  commandTimeoutMs: number;
  sessionTimeoutMs: number;
  stressTimeoutMs: number;
  bareLf: BareLfMode;
  shutdownTimeoutMs: number;
  /** Held-back greeting for a client address not seen passing the early-talker check yet; 0 disables the check. */
  greetingDelayMs: number;
  maxLineLength: number;
  logLevel: string;
  logFormat: LogFormat;
  /** --peers HOST:PORT,... : drain targets besides the relays found by their heartbeat Leases (relay/cluster). */
  peers?: string;
  /** auto: on in cluster mode (POD_NAME + --configmap) or when --peers is given. */
  drainOnShutdown: 'auto' | 'true' | 'false';
  drainTimeoutMs: number;
  /** Relay processes sharing the SMTP listener, each with its own spool subfolder (relay/workers.ts); 1: one process. */
  workers?: number;
  /** --dsn-relay HOST:PORT: smarthost for DSNs to senders outside the managed domains (default: the sender's MX). */
  dsnRelay?: HostPort;
  /** --dsn-rate: DSNs per minute per recipient domain; 0: no limit. */
  dsnRatePerMinute: number;
  /** --dns-servers / MAILROUTE_DNS_SERVERS: every lookup of the relay goes to these (relay/dns.ts); default: the system's. */
  dnsServers?: readonly string[];
  /** --quarantine-max-age: quarantined spool files older than this are deleted (default 7 days). */
  quarantineMaxAgeMs?: number;
  /** --quarantine-max-files: at most this many entries stay in <spool>/quarantine (default 1000). */
  quarantineMaxFiles?: number;
  /** --spool-stall-timeout: a spool file-system call pending this long makes /healthz fail (default 60 s). */
  spoolStallMs?: number;
  /** Where delivery, DSNs and callouts may connect (routing/destinations.ts): the cluster defaults with --configmap. */
  destinations: DestinationPolicy;
  /** Recipient-verification callouts (relay/inbound/callout.ts, verify.ts). */
  callout: {
    /** Concurrent callout connections per server (also capped by the server's maxConnections). */
    maxConnections: number;
    /** Callouts waiting for a connection per server; more get 451 4.4.3 at once. */
    maxQueued: number;
    /** Cache lifetime of an absent answer (capped by the MailDomain's cacheTTL). */
    negativeTtlMs: number;
    timeoutMs: number;
  };
  /** Unknown recipients (550 5.1.1, 554 5.7.1, 553 at RCPT) per session before 421 4.7.0 and close; 0: no limit. */
  maxUnknownRecipients: number;
  /** Unknown recipients per client address within 10 minutes before its RCPTs get 421 4.7.0; 0: no limit. */
  maxUnknownRecipientsPerIp: number;
  /**
   * Refusals in one session (those maxUnknownRecipients counts aside) before the next is replaced by 421 4.7.0 and
   * the connection closed; an accepted message starts the count again (Postfix's smtpd_hard_error_limit). 0: no limit.
   */
  maxErrors: number;
}

/** Every flag of `mailroute relay`; the README table is generated from the same list (docs/relay.md). */
const RELAY_FLAGS = {
  manifests: {
    type: 'string',
    help: 'folder of MailDomain/DeliveryPolicy/TestRecipient/Secret YAML; compiled and watched',
  },
  'max-manifest-size': {
    type: 'string',
    default: '4MiB',
    help: 'largest --manifests file; a bigger one is refused with an error naming it (the last good table stays)',
  },
  'max-manifests-total': {
    type: 'string',
    default: '16MiB',
    help: 'largest sum of the --manifests files',
  },
  'routing-file': { type: 'string', help: 'a compiled RoutingTable JSON file (`mailroute render`); watched' },
  configmap: { type: 'string', help: 'NS/NAME of the routing ConfigMap the operator writes' },
  listen: { type: 'string', default: '0.0.0.0:2525', help: 'SMTP listener' },
  http: { type: 'string', default: '0.0.0.0:9090', help: '/metrics /healthz /readyz' },
  admin: { type: 'string', default: '127.0.0.1:9091', help: 'queue admin API (keep it on loopback)' },
  spool: { type: 'string', default: './spool', help: 'spool folder (queue on disk)' },
  hostname: {
    type: 'string',
    help: 'name in the greeting and the Received: header (default: the host name)',
  },
  'cluster-id': {
    type: 'string',
    help: 'name of this installation in the Received: trace; a message that comes back carrying it is refused as a loop (554 5.4.6). Same on every relay of a cluster (default: --hostname)',
  },
  'max-message-size': { type: 'string', default: '26214400', help: 'bytes; larger messages get 552 5.3.4' },
  'retry-schedule': {
    type: 'string',
    default: '1m,5m,15m,1h',
    help: 'delays between attempts; the last one repeats',
  },
  'max-queue-lifetime': { type: 'string', default: '5d', help: 'after it a deferred primary leg bounces' },
  'shed-copies-below': {
    type: 'string',
    default: '10%',
    help: "while the spool's volume has less free space than this (a share like 10% or a size like 2GiB), the copy legs of the oldest messages that wait on copies alone are ended, to keep room for primary mail; 0 disables",
  },
  'removed-domain-grace': {
    type: 'string',
    default: '24h',
    help: 'a domain that leaves the routing table (its MailDomain deleted, by mistake or not) gets 451 4.3.0, so that senders keep its mail queued, for this long after; then 554 5.7.1 relay access denied; 0 disables',
  },
  'delay-warning': {
    type: 'string',
    default: '4h',
    help: 'a leg that would bounce, still deferred this long after arrival, gets one delay DSN (Action: delayed) to the sender; 0 disables',
  },
  'tls-cert': {
    type: 'string',
    help: 'PEM certificate for STARTTLS (with --tls-key); no STARTTLS without it',
  },
  'tls-key': { type: 'string', help: 'PEM private key for STARTTLS' },
  'tls-reload-interval': {
    type: 'string',
    default: '1m',
    help: 'how often --tls-cert and --tls-key are read again: a renewed certificate is used without a restart; 0 never',
  },
  'max-recipients': { type: 'string', default: '1000', help: 'recipients per message; more get 452 4.5.3' },
  'max-recipients-in-flight': {
    type: 'string',
    default: '50000',
    help: 'recipients held in all open transactions (accepted, the transaction not yet ended by DATA, RSET or the close), about 3 KiB each; more get 452 4.5.3; at least --max-recipients',
  },
  'max-connections': { type: 'string', default: '1000', help: 'concurrent SMTP connections in total' },
  'max-connections-per-ip': {
    type: 'string',
    default: '50',
    help: 'concurrent connections per client IP; more get 421 4.7.0',
  },
  'client-ipv6-prefix': {
    type: 'string',
    default: '64',
    help: 'per-IP limits count an IPv6 client by its network of this prefix length (0-128; 128: each address)',
  },
  'idle-timeout': {
    type: 'string',
    default: '5m',
    help: 'a client silent this long gets 421 and is disconnected',
  },
  'data-timeout': { type: 'string', default: '10m', help: 'longest DATA phase; then 421 4.4.2' },
  'command-timeout': {
    type: 'string',
    default: '30s',
    help: 'a command line must be complete this long after its first byte (a client trickling bytes resets the idle timer); then 421 4.4.2',
  },
  'session-timeout': {
    type: 'string',
    default: '30m',
    help: 'a session ends this long after it opened, once the client owes a command (never mid-message); then 421 4.4.2',
  },
  'stress-timeout': {
    type: 'string',
    default: '10s',
    help: 'idle and command timeout while the connection table is 3/4 full (stress-adaptive, as Postfix)',
  },
  'bare-lf': {
    type: 'string',
    default: 'reject',
    help: 'reject: bare LF/CR gets 554 5.6.11; normalize: converted to CRLF',
  },
  'shutdown-timeout': {
    type: 'string',
    default: '30s',
    help: 'on SIGTERM, how long sessions in progress may take',
  },
  'greeting-delay': {
    type: 'string',
    default: '100ms',
    help: 'early-talker check: greeting held back this long for an address not seen passing it in the last 24 h; 0 disables',
  },
  'max-line-length': {
    type: 'string',
    default: '65536',
    help: 'longest line in message content, in bytes; longer gets 554 5.6.0 (commands: smtp-server limit, 16 KiB)',
  },
  'log-level': { type: 'string', default: 'info', help: 'pino level' },
  'log-format': {
    type: 'string',
    default: 'json',
    help: 'json (one JSON object a line) or pretty (for a terminal)',
  },
  'quarantine-max-age': {
    type: 'string',
    default: '7d',
    help: 'spool files moved to <spool>/quarantine are deleted after this long',
  },
  'quarantine-max-files': {
    type: 'string',
    default: '1000',
    help: 'entries kept in <spool>/quarantine; the oldest are deleted first',
  },
  'spool-stall-timeout': {
    type: 'string',
    default: '60s',
    help: 'a spool file-system call pending this long makes /healthz answer 503 (the liveness probe restarts the pod)',
  },
  workers: {
    type: 'string',
    default: '1',
    help: 'relay processes sharing the SMTP port, each with its own spool subfolder and delivery; auto: one per CPU (1 in cluster mode)',
  },
  peers: {
    type: 'string',
    help: 'HOST:PORT,... relays to hand the queue to on shutdown (e.g. a headless Service); in cluster mode peers also come from heartbeat Leases',
  },
  'drain-on-shutdown': {
    type: 'string',
    default: 'auto',
    help: 'true|false|auto: on SIGTERM hand queued mail to a peer relay over SMTP (auto: on in cluster mode or with --peers)',
  },
  'drain-timeout': {
    type: 'string',
    default: '60s',
    help: 'how long the shutdown drain may take; what is left stays spooled',
  },
  'dsn-rate': {
    type: 'string',
    default: '60',
    help: 'DSNs per minute per recipient domain (as many at once); more are deferred, never dropped (backscatter); 0: no limit',
  },
  'dsn-relay': {
    type: 'string',
    help: "HOST:PORT smarthost for DSNs to senders outside the managed domains (default: the sender domain's MX)",
  },
  'dns-servers': {
    type: 'string',
    help: 'IP[:PORT],... DNS servers for every lookup of the relay (MX, destination and DSN hosts, callouts, --peers); names are looked up as given. Default: the system resolver',
  },
  'deny-destinations': {
    type: 'string',
    help: 'CIDR,... addresses delivery, DSNs and recipient-verification callouts never connect to (checked on the resolved address). With --configmap added to the cluster defaults (loopback, link-local, metadata, unspecified, multicast); standalone: nothing else is denied',
  },
  'allow-destinations': {
    type: 'string',
    help: 'CIDR,... exceptions to the denied destinations (e.g. 127.0.0.0/8 for a local MTA in cluster mode)',
  },
  'callout-connections': {
    type: 'string',
    default: '2',
    help: "recipient-verification callout connections per server at once (also capped by the server's maxConnections); each is reused",
  },
  'callout-queue': {
    type: 'string',
    default: '100',
    help: 'callouts that may wait for a connection per server; more get 451 4.4.3 at once',
  },
  'callout-negative-ttl': {
    type: 'string',
    default: '10m',
    help: "how long an 'absent' callout answer is cached (at most the MailDomain's cacheTTL)",
  },
  'callout-timeout': {
    type: 'string',
    default: '10s',
    help: 'connect, greeting and per-command timeout of a callout',
  },
  'max-unknown-recipients': {
    type: 'string',
    default: '20',
    help: 'unknown or refused recipients in one session before 421 4.7.0 and close; 0: no limit',
  },
  'max-unknown-recipients-per-ip': {
    type: 'string',
    default: '100',
    help: 'unknown or refused recipients from one client address within 10 minutes before its RCPTs get 421 4.7.0; 0: no limit',
  },
  'max-errors': {
    type: 'string',
    default: '20',
    help: 'other refusals in one session (not the unknown recipients above) before the next one is 421 4.7.0 and the connection is closed; an accepted message starts the count again; 0: no limit',
  },
  help: { type: 'boolean', help: 'print this help' },
} as const satisfies Record<string, FlagSpec>;

type RelayFlag = keyof typeof RELAY_FLAGS;

export type ConfigResult =
  { ok: true; config: Readonly<RelayConfig> } | { ok: false; error: string } | { ok: 'help' };

export function relayUsage(): string {
  return flagUsage(
    'usage: mailroute relay --manifests DIR | --routing-file FILE | --configmap NS/NAME [flags]',
    RELAY_FLAGS,
  );
}

class FlagError extends Error {}

export function parseHostPort(value: string): HostPort | undefined {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s]*)):(\d{1,5})$/.exec(value.trim());
  if (!m?.[3]) return undefined;
  const port = Number(m[3]);
  if (port > 65535) return undefined;
  const host = m[1] ?? m[2] ?? '';
  return { host: host === '' ? '0.0.0.0' : host, port };
}

export function parseRelayConfig(
  argv: readonly string[],
  env: Record<string, string | undefined> = {},
  cpus: () => number = availableParallelism,
): ConfigResult {
  const flags = readFlags(RELAY_FLAGS, argv, env);
  if (!flags.ok) return flags;
  if (flags.help) return { ok: 'help' };
  const raw = flags.get;
  const nameOf = flags.nameOf;
  // a bad value is named as the admin set it (MAILROUTE_LISTEN=nope names MAILROUTE_LISTEN); a rule between flags
  // (no value shown) names the flag
  const fail = (flag: RelayFlag, why: string, value?: string): never => {
    const shown = value === undefined ? '' : ` (got ${JSON.stringify(value)})`;
    throw new FlagError(`${value === undefined ? `--${flag}` : nameOf(flag)}: ${why}${shown}`);
  };
  const int = (flag: RelayFlag, min: number): number => {
    const v = raw(flag) ?? '';
    if (!/^\d+$/.test(v) || Number(v) < min || !Number.isSafeInteger(Number(v))) {
      return fail(flag, `must be an integer >= ${min}`, v);
    }
    return Number(v);
  };
  const duration = (flag: RelayFlag, min = 0): number => {
    const v = raw(flag) ?? '';
    const ms = parseDuration(v);
    if (ms === undefined || ms < min)
      return fail(flag, `must be a duration like 500ms, 30s, 5m, 1h, 5d (>= ${min} ms)`, v);
    return ms;
  };
  /** minPort 0 for a listener (0: any free port, as the tests use), 1 for a server to connect to. */
  const hostPort = (flag: RelayFlag, minPort: 0 | 1): HostPort => {
    const v = raw(flag) ?? '';
    const hp = parseHostPort(v);
    if (hp === undefined || hp.port < minPort)
      return fail(
        flag,
        `must be HOST:PORT with a port from ${minPort} to 65535${minPort === 0 ? ' (0: any free port)' : ''}`,
        v,
      );
    return hp;
  };

  try {
    // --routing-file beside --configmap is the ConfigMap mounted as a file: the fallback while the API is down.
    const withConfigMap = raw('configmap') !== undefined;
    const sources = (['manifests', 'routing-file', 'configmap'] as const).filter(
      (f) => raw(f) !== undefined && !(withConfigMap && f === 'routing-file'),
    );
    if (sources.length !== 1) {
      fail(
        'manifests',
        sources.length === 0
          ? 'one routing source is required: --manifests DIR, --routing-file FILE or --configmap NS/NAME'
          : `only one routing source may be given, got ${sources.map((s) => `--${s}`).join(' and ')}`,
      );
    }
    let source: RoutingSourceConfig;
    const which = sources[0];
    if (which === 'manifests') {
      const bytes = (flag: RelayFlag, def: number): number => {
        const v = raw(flag);
        if (v === undefined) return def;
        return parseBytes(v) ?? fail(flag, 'must be a size like 4MiB or 65536', v);
      };
      source = {
        kind: 'manifests',
        dir: raw('manifests') ?? '',
        limits: Object.freeze({
          maxFileBytes: bytes('max-manifest-size', DEFAULT_MANIFEST_LIMITS.maxFileBytes),
          maxTotalBytes: bytes('max-manifests-total', DEFAULT_MANIFEST_LIMITS.maxTotalBytes),
        }),
      };
    } else if (which === 'routing-file') source = { kind: 'routing-file', file: raw('routing-file') ?? '' };
    else {
      const v = raw('configmap') ?? '';
      const m = /^([a-z0-9-]{1,63})\/([a-z0-9.-]{1,253})$/.exec(v);
      if (!m?.[1] || !m[2]) return fail('configmap', 'must be NAMESPACE/NAME', v);
      const fallbackFile = raw('routing-file');
      source = {
        kind: 'configmap',
        namespace: m[1],
        name: m[2],
        ...(fallbackFile !== undefined ? { fallbackFile } : {}),
      };
    }

    const retryRaw = raw('retry-schedule') ?? '';
    const retryScheduleMs = retryRaw.split(',').map((s) => parseDuration(s));
    if (retryScheduleMs.length === 0 || retryScheduleMs.some((n) => n === undefined || n <= 0)) {
      fail(
        'retry-schedule',
        'must be a comma-separated list of positive durations like 1m,5m,15m,1h',
        retryRaw,
      );
    }

    const cert = raw('tls-cert');
    const key = raw('tls-key');
    if ((cert === undefined) !== (key === undefined)) {
      fail(cert === undefined ? 'tls-cert' : 'tls-key', '--tls-cert and --tls-key go together');
    }

    const bareLf = raw('bare-lf') ?? '';
    if (!(BARE_LF_MODES as readonly string[]).includes(bareLf)) {
      fail('bare-lf', `must be one of ${BARE_LF_MODES.join(', ')}`, bareLf);
    }
    const host = raw('hostname') ?? osHostname();
    if (!/^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$/.test(host)) fail('hostname', 'must be a host name', host);
    const clusterId = raw('cluster-id') ?? host;
    if (!isValidClusterId(clusterId))
      fail(
        'cluster-id',
        'must be 1-128 letters, digits, ".", "_" or "-", starting and ending with a letter or digit',
        clusterId,
      );

    const config: RelayConfig = {
      source,
      listen: hostPort('listen', 0),
      http: hostPort('http', 0),
      admin: hostPort('admin', 0),
      spoolDir: raw('spool') ?? './spool',
      hostname: host,
      clusterId,
      maxMessageSize: int('max-message-size', 1024),
      retryScheduleMs: Object.freeze(retryScheduleMs as number[]),
      maxQueueLifetimeMs: duration('max-queue-lifetime', 1000),
      shedCopiesBelow:
        parseSpaceThreshold(raw('shed-copies-below') ?? '') ??
        fail(
          'shed-copies-below',
          'must be a share of the volume like 10% (at most 90%), a size like 2GiB, or 0',
          raw('shed-copies-below') ?? '',
        ),
      delayWarningMs: duration('delay-warning'),
      removedDomainGraceMs: duration('removed-domain-grace'),
      ...(cert !== undefined && key !== undefined
        ? {
            tls: Object.freeze({
              certFile: cert,
              keyFile: key,
              reloadIntervalMs: duration('tls-reload-interval'),
            }),
          }
        : {}),
      maxRecipients: int('max-recipients', 1),
      maxRecipientsInFlight: int('max-recipients-in-flight', 1),
      maxConnections: int('max-connections', 1),
      maxConnectionsPerIp: int('max-connections-per-ip', 1),
      clientIpv6Prefix: int('client-ipv6-prefix', 0),
      idleTimeoutMs: duration('idle-timeout', 1000),
      dataTimeoutMs: duration('data-timeout', 1000),
      commandTimeoutMs: duration('command-timeout', 1000),
      sessionTimeoutMs: duration('session-timeout', 1000),
      stressTimeoutMs: duration('stress-timeout', 1000),
      bareLf: bareLf as BareLfMode,
      shutdownTimeoutMs: duration('shutdown-timeout'),
      greetingDelayMs: duration('greeting-delay'),
      maxLineLength: int('max-line-length', 1000),
      logLevel: raw('log-level') ?? 'info',
      logFormat: (raw('log-format') ?? 'json') as LogFormat,
      ...(raw('peers') !== undefined ? { peers: raw('peers') } : {}),
      drainOnShutdown: (raw('drain-on-shutdown') ?? 'auto') as RelayConfig['drainOnShutdown'],
      drainTimeoutMs: duration('drain-timeout'),
      workers: 1,
      ...(raw('dsn-relay') !== undefined ? { dsnRelay: hostPort('dsn-relay', 1) } : {}),
      dsnRatePerMinute: int('dsn-rate', 0),
      quarantineMaxAgeMs: duration('quarantine-max-age', 1000),
      quarantineMaxFiles: int('quarantine-max-files', 1),
      spoolStallMs: duration('spool-stall-timeout', 1000),
      callout: Object.freeze({
        maxConnections: int('callout-connections', 1),
        maxQueued: int('callout-queue', 0),
        negativeTtlMs: duration('callout-negative-ttl'),
        timeoutMs: duration('callout-timeout', 100),
      }),
      maxUnknownRecipients: int('max-unknown-recipients', 0),
      maxUnknownRecipientsPerIp: int('max-unknown-recipients-per-ip', 0),
      maxErrors: int('max-errors', 0),
      destinations: PERMIT_ALL,
    };
    // fewer could never take one message with --max-recipients recipients
    if (config.maxRecipientsInFlight < config.maxRecipients)
      fail(
        'max-recipients-in-flight',
        `must be at least --max-recipients (${config.maxRecipients})`,
        raw('max-recipients-in-flight') ?? '',
      );
    if (config.clientIpv6Prefix > 128)
      fail('client-ipv6-prefix', 'must be an integer from 0 to 128', raw('client-ipv6-prefix') ?? '');
    const destinations = policyFromFlags({
      deny: raw('deny-destinations'),
      allow: raw('allow-destinations'),
      clusterDefaults: config.source.kind === 'configmap',
    });
    if ('flag' in destinations) fail(destinations.flag, destinations.message, raw(destinations.flag));
    config.destinations = destinations as DestinationPolicy;
    const dnsRaw = raw('dns-servers');
    if (dnsRaw !== undefined) {
      const servers = parseDnsServers(dnsRaw);
      if (typeof servers === 'string') fail('dns-servers', servers, dnsRaw);
      else config.dnsServers = servers;
    }
    if (!['auto', 'true', 'false'].includes(config.drainOnShutdown)) {
      fail('drain-on-shutdown', 'must be one of true, false, auto', config.drainOnShutdown);
    }
    if (
      config.peers !== undefined &&
      !/^\s*[^,\s]+:\d{1,5}\s*(,\s*[^,\s]+:\d{1,5}\s*)*$/.test(config.peers)
    ) {
      fail('peers', 'must be HOST:PORT,HOST:PORT,...', config.peers);
    }
    const clusterMode =
      config.source.kind === 'configmap' || config.peers !== undefined || config.drainOnShutdown === 'true';
    // Default 1: on the shared 2-core benchmark machine one process with a larger libuv pool did as well as two
    // workers at 30-40 % less CPU per message (docs/perf.md); `auto` is one per CPU.
    const workersRaw = raw('workers') ?? '1';
    if (workersRaw === 'auto') config.workers = clusterMode ? 1 : Math.min(64, Math.max(1, cpus()));
    else {
      config.workers = int('workers', 1);
      if (config.workers > 64) fail('workers', 'must be auto or an integer 1..64', workersRaw);
      if (config.workers > 1 && clusterMode)
        fail('workers', 'more than 1 worker is not supported in cluster mode (scale with pods)', workersRaw);
    }
    if (!isLogFormat(config.logFormat)) fail('log-format', 'must be json or pretty', config.logFormat);
    if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(config.logLevel)) {
      fail('log-level', 'must be one of fatal, error, warn, info, debug, trace, silent', config.logLevel);
    }
    Object.freeze(config.source);
    Object.freeze(config.listen);
    Object.freeze(config.http);
    Object.freeze(config.admin);
    return { ok: true, config: Object.freeze(config) };
  } catch (err) {
    if (err instanceof FlagError) return { ok: false, error: err.message };
    throw err;
  }
}
