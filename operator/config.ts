// `mailroute operator` configuration: flags and MAILROUTE_<FLAG> environment variables, parsed once, validated,
// frozen. A bad value fails fast naming the flag, or the environment variable it came from. Flags win over the environment.

import { hostname } from 'node:os';
import { flagUsage, parseDuration, readFlags, type FlagSpec } from '../lib/flags.ts';
import { isLogFormat, type LogFormat } from '../lib/logger.ts';
import { policyFromFlags, type DestinationPolicy } from '../routing/destinations.ts';
import { LONGEST_QUIET_WATCH_MS } from '../lib/kube-watch.ts';

export interface OperatorConfig {
  namespace: string;
  kubeconfig: string | undefined;
  leaderElect: boolean;
  leaseName: string;
  identity: string;
  http: { host: string; port: number };
  /** Relay StatefulSet whose desired replicas are the relays meant to exist; '' = count heartbeats only. */
  relayStatefulSet: string;
  configMapName: string;
  /** Inline/shard threshold of the routing ConfigMap (bytes of canonical JSON). */
  inlineMaxBytes: number;
  shardMaxBytes: number;
  workers: number;
  /** Namespaces whose Secrets are watched (authSecretRef checks); empty: all namespaces. */
  secretNamespaces: string[];
  relistIntervalMs: number;
  /**
   * How often the routing reconcile runs with no change: it checks that the routing ConfigMap and the shards of the
   * current revision are as the operator wrote them (writes them again if not) and deletes old shards.
   */
  routingResyncMs: number;
  /** Preflight probe interval per MailDomain; 0: preflight off. */
  preflightIntervalMs: number;
  watchdogMs: number;
  logLevel: string;
  logFormat: LogFormat;
  /** A ConfigMap in `namespace` that owns what the operator creates (ownerReferences); undefined: no owner. */
  ownerConfigMap: string | undefined;
  /** Where the preflight may connect (routing/destinations.ts): the cluster defaults plus --deny-destinations. */
  destinations: DestinationPolicy;
  /** How long the table carries a domain that left it (routing/removed-domains.ts); 0: not carried. */
  removedDomainGraceMs: number;
}

/** The largest --inline-max-bytes: a ConfigMap's data holds at most 1 MiB; 1 KiB is kept for the revision and key names. */
const MAX_INLINE_BYTES = 1024 * 1024 - 1024;

const OPERATOR_FLAGS = {
  namespace: {
    type: 'string',
    help: "the operator's namespace (routing ConfigMap, leases); default POD_NAMESPACE, else mailroute-system",
  },
  kubeconfig: { type: 'string', help: 'kubeconfig file; default KUBECONFIG, else in-cluster config' },
  'leader-elect': { type: 'string', default: 'true', help: 'elect one leader through a Lease (true|false)' },
  'lease-name': { type: 'string', default: 'mailroute-operator', help: 'name of the leader election Lease' },
  identity: { type: 'string', help: 'leader election identity; default POD_NAME, else hostname_pid' },
  http: { type: 'string', default: '0.0.0.0:8080', help: '/metrics /healthz /readyz' },
  configmap: { type: 'string', default: 'mailroute-routing', help: 'name of the routing ConfigMap' },
  'relay-statefulset': {
    type: 'string',
    default: 'mailroute-relay',
    help: 'relay StatefulSet in --namespace whose desired replicas are the relays "N/M relays programmed" counts; when it does not exist (or is empty), the relays with a fresh heartbeat',
  },
  'inline-max-bytes': {
    type: 'string',
    default: String(900 * 1024),
    help: 'largest routing JSON kept inline (at most 1047552); bigger tables are sharded',
  },
  'shard-max-bytes': {
    type: 'string',
    default: String(700 * 1024),
    help: 'bytes of gzip data per shard ConfigMap',
  },
  'secret-namespaces': {
    type: 'string',
    default: '',
    help: 'comma-separated namespaces whose Secrets are watched for authSecretRef checks; empty: all (needs cluster-wide read of Secrets)',
  },
  workers: { type: 'string', default: '4', help: 'concurrent status reconciles per kind' },
  'relist-interval': { type: 'string', default: '10m', help: 'periodic full re-list of every informer' },
  'routing-resync': {
    type: 'string',
    default: '1m',
    help: 'check this often that the routing ConfigMap and the shards of the current revision are as written (written again if someone deleted or changed them), and delete old shards',
  },
  watchdog: {
    type: 'string',
    default: '15m',
    help: 'restart an informer that saw no event or reconnect for this long; longer than a quiet watch lasts (10m30s)',
  },
  'preflight-interval': {
    type: 'string',
    default: '5m',
    help: 'probe every MailDomain server (connect, EHLO, STARTTLS; AUTH and RCPT TO for servers with probe.address) this often; off disables',
  },
  'deny-destinations': {
    type: 'string',
    help: 'CIDR,... the preflight never connects to, in addition to the defaults (loopback, link-local, metadata, unspecified, multicast); add the cluster pod and service ranges',
  },
  'allow-destinations': {
    type: 'string',
    help: 'CIDR,... exceptions to the denied destinations',
  },
  'removed-domain-grace': {
    type: 'string',
    default: '24h',
    help: "how long the routing table names a domain that left it (a MailDomain deleted), so that every relay, also a new one, answers 451 rather than 554 for its mail during the relay's own --removed-domain-grace; 0: not named",
  },
  'log-level': { type: 'string', default: 'info', help: 'pino level' },
  'log-format': {
    type: 'string',
    default: 'json',
    help: 'json (one JSON object a line) or pretty (for a terminal)',
  },
  'owner-configmap': {
    type: 'string',
    help: 'a ConfigMap in the namespace that owns the routing ConfigMap, mailroute-credentials and the leader Lease (ownerReferences: deleting it garbage-collects them); default none',
  },
  help: { type: 'boolean', help: 'print this help' },
} as const satisfies Record<string, FlagSpec>;

export type ConfigResult =
  | { ok: true; config: Readonly<OperatorConfig> }
  | { ok: false; error: string }
  | { ok: 'help'; text: string };

function helpText(): string {
  return flagUsage('usage: mailroute operator [flags]', OPERATOR_FLAGS);
}

export function parseOperatorConfig(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): ConfigResult {
  const flags = readFlags(OPERATOR_FLAGS, argv, env);
  if (!flags.ok) return flags;
  if (flags.help) return { ok: 'help', text: helpText() };
  const get = flags.get;
  const int = (flag: keyof typeof OPERATOR_FLAGS, min: number): number | string => {
    const raw = get(flag) ?? '';
    const n = Number(raw);
    return Number.isInteger(n) && n >= min
      ? n
      : `${flags.nameOf(flag)}: expected an integer >= ${min}, got "${raw}"`;
  };
  const dur = (flag: keyof typeof OPERATOR_FLAGS): number | string => {
    const raw = get(flag) ?? '';
    const ms = parseDuration(raw);
    return ms !== undefined && ms > 0
      ? ms
      : `${flags.nameOf(flag)}: expected a duration like 30s, 10m, 1.5h, 5d, got "${raw}"`;
  };
  const leader = get('leader-elect');
  if (leader !== 'true' && leader !== 'false')
    return {
      ok: false,
      error: `${flags.nameOf('leader-elect')}: expected true or false, got "${leader ?? ''}"`,
    };
  const httpRaw = get('http') ?? '';
  const hm = /^(.*):(\d{1,5})$/.exec(httpRaw);
  if (hm === null || Number(hm[2]) > 65535)
    return { ok: false, error: `${flags.nameOf('http')}: expected HOST:PORT, got "${httpRaw}"` };
  const namespace = get('namespace') ?? env.POD_NAMESPACE ?? 'mailroute-system';
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(namespace))
    return {
      ok: false,
      error: `${get('namespace') === undefined ? 'POD_NAMESPACE' : flags.nameOf('namespace')}: not a namespace name: "${namespace}"`,
    };
  const nums = {
    inlineMaxBytes: int('inline-max-bytes', 1),
    shardMaxBytes: int('shard-max-bytes', 1024),
    workers: int('workers', 1),
    relistIntervalMs: dur('relist-interval'),
    routingResyncMs: dur('routing-resync'),
    watchdogMs: dur('watchdog'),
  };
  for (const v of Object.values(nums)) if (typeof v === 'string') return { ok: false, error: v };
  // A quiet watch reconnects only when the server ends it (lib/kube-watch.ts): a shorter watchdog would
  // restart, and so re-list, every quiet informer.
  if ((nums.watchdogMs as number) <= LONGEST_QUIET_WATCH_MS)
    return {
      ok: false,
      error: `${flags.nameOf('watchdog')}: must be longer than ${LONGEST_QUIET_WATCH_MS / 1000}s, the longest a quiet watch lasts, got "${get('watchdog') ?? ''}"`,
    };
  // An inline table is one ConfigMap: its JSON, the revision and the key names must fit the API server's 1 MiB, or every
  // write of it is refused (422) and the table is never written.
  if ((nums.inlineMaxBytes as number) > MAX_INLINE_BYTES)
    return {
      ok: false,
      error: `${flags.nameOf('inline-max-bytes')}: at most ${MAX_INLINE_BYTES} (a ConfigMap holds 1 MiB; 1 KiB is kept for the revision and key names), got "${get('inline-max-bytes') ?? ''}"`,
    };
  if ((nums.shardMaxBytes as number) > 900 * 1024)
    return {
      ok: false,
      error: `${flags.nameOf('shard-max-bytes')}: at most 921600 (a ConfigMap holds 1 MiB, base64 included)`,
    };
  const preflightRaw = get('preflight-interval') ?? '5m';
  const preflightIntervalMs = preflightRaw === 'off' ? 0 : parseDuration(preflightRaw);
  if (preflightIntervalMs === undefined || (preflightRaw !== 'off' && preflightIntervalMs <= 0)) {
    return {
      ok: false,
      error: `${flags.nameOf('preflight-interval')}: expected a duration like 5m, or off, got "${preflightRaw}"`,
    };
  }
  const graceRaw = get('removed-domain-grace') ?? '24h';
  const removedDomainGraceMs = parseDuration(graceRaw);
  if (removedDomainGraceMs === undefined || removedDomainGraceMs < 0) {
    return {
      ok: false,
      error: `${flags.nameOf('removed-domain-grace')}: expected a duration like 24h, or 0, got "${graceRaw}"`,
    };
  }
  const secretNamespaces = (get('secret-namespaces') ?? '')
    .split(',')
    .map((x) => x.trim())
    .filter((x) => x !== '');
  const badNs = secretNamespaces.find((n) => !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(n));
  if (badNs !== undefined)
    return { ok: false, error: `${flags.nameOf('secret-namespaces')}: not a namespace name: "${badNs}"` };
  const ownerConfigMap = get('owner-configmap');
  if (ownerConfigMap !== undefined && !/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(ownerConfigMap))
    return {
      ok: false,
      error: `${flags.nameOf('owner-configmap')}: not a ConfigMap name: "${ownerConfigMap}"`,
    };
  const logFormat = get('log-format') ?? 'json';
  if (!isLogFormat(logFormat))
    return { ok: false, error: `${flags.nameOf('log-format')}: must be json or pretty, got "${logFormat}"` };
  const destinations = policyFromFlags({
    deny: get('deny-destinations'),
    allow: get('allow-destinations'),
    clusterDefaults: true,
  });
  if ('flag' in destinations)
    return { ok: false, error: `${flags.nameOf(destinations.flag)}: ${destinations.message}` };
  const kubeconfig =
    get('kubeconfig') ?? (env.KUBECONFIG !== undefined && env.KUBECONFIG !== '' ? env.KUBECONFIG : undefined);
  const config: OperatorConfig = {
    namespace,
    kubeconfig,
    leaderElect: leader === 'true',
    leaseName: get('lease-name') ?? 'mailroute-operator',
    identity: get('identity') ?? env.POD_NAME ?? `${hostname()}_${process.pid}`,
    http: { host: hm[1] === '' ? '0.0.0.0' : (hm[1] as string).replace(/^\[|\]$/g, ''), port: Number(hm[2]) },
    configMapName: get('configmap') ?? 'mailroute-routing',
    relayStatefulSet: get('relay-statefulset') ?? 'mailroute-relay',
    inlineMaxBytes: nums.inlineMaxBytes as number,
    shardMaxBytes: nums.shardMaxBytes as number,
    workers: nums.workers as number,
    secretNamespaces,
    preflightIntervalMs,
    relistIntervalMs: nums.relistIntervalMs as number,
    routingResyncMs: nums.routingResyncMs as number,
    watchdogMs: nums.watchdogMs as number,
    logLevel: get('log-level') ?? 'info',
    logFormat,
    ownerConfigMap,
    destinations,
    removedDomainGraceMs,
  };
  return { ok: true, config: Object.freeze(config) };
}
