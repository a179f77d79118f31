// The relay's cluster mode, as runRelay (relay/relay.ts) uses it:
//   const cluster = await startClusterMode({ ... })   after the SMTP listener is up
//   cluster.setRevision(rev)                         on every table swap (renews the Lease at once)
//   shutdown: cluster.beginShutdown() -> [inbound closed, delivery stopped (with keepRecording when cluster.drains)]
//             -> cluster.drain(spool, delivery) -> [delivery closed] -> cluster.stop()
// With POD_NAME and POD_NAMESPACE (downward API) and a --configmap source, the relay keeps a heartbeat Lease; with
// --drain-on-shutdown it hands its queue to peers (fresh Leases, or --peers) when it stops.
import { configMapOwner } from '../../contract/owner.ts';
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';
import type { Spool } from '../spool/types.ts';
import { handoffTransportFactory, type HandoffTransportFactory } from './handoff-transport.ts';
import { drainQueue, type DrainReport, type WorkInFlight } from './drain.ts';
import { encodeParity, type ParityReport } from '../../contract/relay-parity.ts';
import { leaseApi, startHeartbeat, type ClusterLogger, type Heartbeat, type LeaseApi } from './heartbeat.ts';
import { parseStaticPeers, type Peer } from './peers.ts';

export interface ClusterSettings {
  /** POD_NAME; undefined: no heartbeat Lease. */
  pod: string | undefined;
  /** POD_NAMESPACE: where the Lease lives. */
  namespace: string | undefined;
  /** host:port peers reach this relay's SMTP on (POD_IP + the listen port). */
  smtp: string | undefined;
  staticPeers: Peer[];
  drainOnShutdown: boolean;
  drainTimeoutMs: number;
  /** MAILROUTE_OWNER_CONFIGMAP: a ConfigMap in the namespace that owns the heartbeat Lease (ownerReferences). */
  ownerConfigMap?: string;
}

/**
 * Pure: cluster settings from the relay's flags and the downward-API environment. `drainOnShutdown` 'auto' means
 * on when there is somewhere to drain to (a heartbeat Lease to find peers by, or --peers).
 */
export function clusterSettings(
  flags: {
    sourceKind: string;
    peers: string | undefined;
    drainOnShutdown: 'auto' | 'true' | 'false';
    drainTimeoutMs: number;
  },
  env: Record<string, string | undefined>,
  listen: { host: string; port: number },
): ClusterSettings | string {
  const pod = env.POD_NAME !== undefined && env.POD_NAME !== '' ? env.POD_NAME : undefined;
  const namespace =
    env.POD_NAMESPACE !== undefined && env.POD_NAMESPACE !== '' ? env.POD_NAMESPACE : undefined;
  const leases = flags.sourceKind === 'configmap' && pod !== undefined && namespace !== undefined;
  const peers = flags.peers === undefined ? [] : parseStaticPeers(flags.peers);
  if (typeof peers === 'string') return `--peers: ${peers}`;
  const ip =
    env.POD_IP !== undefined && env.POD_IP !== ''
      ? env.POD_IP
      : listen.host !== '0.0.0.0' && listen.host !== '::'
        ? listen.host
        : undefined;
  const smtp =
    ip === undefined ? undefined : ip.includes(':') ? `[${ip}]:${listen.port}` : `${ip}:${listen.port}`;
  const drainOnShutdown =
    flags.drainOnShutdown === 'auto' ? leases || peers.length > 0 : flags.drainOnShutdown === 'true';
  return {
    pod: leases ? pod : undefined,
    namespace: leases ? namespace : undefined,
    smtp,
    staticPeers: peers,
    drainOnShutdown,
    drainTimeoutMs: flags.drainTimeoutMs,
    ...(leases && env.MAILROUTE_OWNER_CONFIGMAP !== undefined && env.MAILROUTE_OWNER_CONFIGMAP !== ''
      ? { ownerConfigMap: env.MAILROUTE_OWNER_CONFIGMAP }
      : {}),
  };
}

export interface ClusterModeOptions {
  settings: ClusterSettings;
  logger: ClusterLogger;
  /** EHLO name for drain connections. */
  hostname: string;
  /** The relay's cluster id: its Received: trace is left out of what the drain hands to a peer (drain.ts). */
  clusterId?: string;
  /** Revision served when cluster mode starts. */
  revision: string | undefined;
  /** Injected Lease API; default: from KUBECONFIG or the in-cluster config. */
  leases?: LeaseApi;
  transport?: HandoffTransportFactory;
  /** DNS for --peers names; default node:dns lookup with all: true. */
  lookup?: LookupAll;
  /** The parity counters, reported in the heartbeat Lease (annotation mailroute.io/parity). */
  parity?: () => ParityReport;
  /**
   * How long the drain waits for the other relays' Leases (and for the --peers names to resolve) before it goes on
   * with the --peers it has. Default 3 s.
   */
  peerLookupMs?: number;
}

export interface ClusterMode {
  readonly heartbeat: Heartbeat | undefined;
  setRevision(revision: string): void;
  /** Marks the Lease not ready (so no other draining relay picks this one) before the relay stops accepting. */
  beginShutdown(): Promise<void>;
  /** --drain-on-shutdown: the queue is handed to peers when the relay stops (drain()). */
  readonly drains: boolean;
  /**
   * After inbound and delivery stopped: hands the queue to peers when --drain-on-shutdown. `work` is the delivery
   * engine stopped with keepRecording: a message with a transaction in flight is handed over only once its result is
   * recorded, within --drain-timeout (drain.ts).
   */
  drain(spool: Spool, work?: WorkInFlight): Promise<DrainReport | undefined>;
  /** Stops the heartbeat and deletes the Lease. */
  stop(): Promise<void>;
  /** The SMTP addresses of the other relays' fresh Leases, ready or not; none without a heartbeat Lease. */
  relayAddresses(): Promise<string[]>;
}

export type LookupAll = (host: string) => Promise<string[]>;

const defaultLookup: LookupAll = async (host) => (await lookup(host, { all: true })).map((a) => a.address);

const PEER_LOOKUP_MS = 3_000;

/** Resolves with p, or rejects with Error(what timed out) after ms. */
function bounded<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/**
 * A --peers name such as a headless Service resolves to every relay pod, this one included: each address becomes
 * its own peer (so the drain can skip its own address and fail over between pods). IPs pass through; a name that
 * does not resolve is kept as is (the send reports the failure).
 */
export async function expandPeers(peers: readonly Peer[], lookupAll: LookupAll): Promise<Peer[]> {
  const out: Peer[] = [];
  for (const p of peers) {
    if (isIP(p.host) !== 0) {
      out.push(p);
      continue;
    }
    const addrs = await lookupAll(p.host).catch(() => [] as string[]);
    if (addrs.length === 0) out.push(p);
    for (const a of addrs) out.push({ name: p.host, host: a, port: p.port });
  }
  return out;
}

export function startClusterMode(opts: ClusterModeOptions): ClusterMode {
  const s = opts.settings;
  const log = opts.logger;
  let heartbeat: Heartbeat | undefined;
  if (s.pod !== undefined && s.namespace !== undefined) {
    const api =
      opts.leases ??
      (() => {
        const kc = new KubeConfig();
        kc.loadFromDefault();
        return leaseApi(kc);
      })();
    const owner = s.ownerConfigMap;
    const namespace = s.namespace;
    const parity = opts.parity;
    heartbeat = startHeartbeat({
      api,
      logger: log,
      ...(parity !== undefined ? { parity: () => encodeParity(parity()) } : {}),
      ...(owner !== undefined && api.configMapUid !== undefined
        ? {
            owners: async () => {
              const uid = await api.configMapUid!(namespace, owner);
              if (uid === undefined) throw new Error(`ConfigMap ${namespace}/${owner} not found`);
              return [configMapOwner(owner, uid)];
            },
          }
        : {}),
      initial: {
        pod: s.pod,
        namespace: s.namespace,
        revision: opts.revision,
        ready: opts.revision !== undefined,
        smtp: s.smtp,
      },
    });
    log.info(
      { pod: s.pod, namespace: s.namespace, smtp: s.smtp ?? null },
      'cluster: heartbeat lease started',
    );
  }

  let shuttingDown = false;
  const lookupMs = opts.peerLookupMs ?? PEER_LOOKUP_MS;
  // Bounded: with the API server unreachable (packets dropped) the Lease list would wait for the TCP timeout, past the
  // pod's grace period, and the --peers would never be tried. Both lookups run at once, each within lookupMs.
  const peers = async (): Promise<Peer[]> => {
    const leasePeers = heartbeat
      ? bounded(heartbeat.peers(), lookupMs, 'listing relay leases').catch((err: unknown) => {
          log.warn(
            { err: err instanceof Error ? err.message : String(err) },
            'cluster: listing relay leases failed; draining to --peers only',
          );
          return [] as Peer[];
        })
      : Promise.resolve([] as Peer[]);
    const staticPeers = bounded(
      expandPeers(s.staticPeers, opts.lookup ?? defaultLookup),
      lookupMs,
      'resolving --peers',
    ).catch((err: unknown) => {
      log.warn(
        { err: err instanceof Error ? err.message : String(err) },
        'cluster: resolving --peers failed; trying the names as they are',
      );
      return [...s.staticPeers];
    });
    const [fromLeases, expanded] = await Promise.all([leasePeers, staticPeers]);
    const seen = new Set(fromLeases.map((p) => `${p.host}:${p.port}`));
    const own = s.smtp;
    return [
      ...fromLeases,
      ...expanded.filter((p) => !seen.has(`${p.host}:${p.port}`) && `${p.host}:${p.port}` !== own),
    ];
  };

  return {
    heartbeat,
    drains: s.drainOnShutdown,
    setRevision(revision) {
      // A swap during shutdown (the source is closed last) must not advertise this relay as a drain target again.
      void heartbeat?.update(shuttingDown ? { revision } : { revision, ready: true });
    },
    async beginShutdown() {
      shuttingDown = true;
      if (heartbeat === undefined) return;
      // Bounded: with the API server down, shutdown must not wait for the renewal's HTTP timeout.
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        heartbeat.update({ ready: false }),
        new Promise<void>((r) => (timer = setTimeout(r, 2_000))),
      ]);
      clearTimeout(timer);
    },
    async drain(spool, work) {
      if (!s.drainOnShutdown) return undefined;
      return drainQueue({
        spool,
        peers,
        ...(work !== undefined ? { work } : {}),
        transport:
          opts.transport ??
          handoffTransportFactory({
            hostname: opts.hostname,
            timeouts: { connectionMs: 5_000, greetingMs: 10_000, socketMs: 30_000 },
          }),
        relayName: opts.hostname,
        logger: log,
        deadlineMs: s.drainTimeoutMs,
        ...(opts.clusterId !== undefined ? { clusterId: opts.clusterId } : {}),
      });
    },
    async stop() {
      await heartbeat?.stop({ deleteLease: true });
    },
    async relayAddresses() {
      return heartbeat === undefined ? [] : heartbeat.relayAddresses();
    },
  };
}
