// runRelay(config): the relay's wiring. Routing source -> router (swapped atomically per revision); spool; delivery
// engine; inbound SMTP; HTTP (/metrics /healthz /readyz); admin API. SIGTERM: stop accepting (421), let sessions in
// progress finish within --shutdown-timeout, stop delivery, leave the queue spooled for the next start.
import { readFile, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { Registry } from 'prom-client';
import { grantFromTexts, withGrant } from '../routing/destinations.ts';
import type { DeliveryPlan, DomainRoute } from '../routing/model.ts';
import { RemovedDomains, type RemovedDomainsState } from '../routing/removed-domains.ts';
import type { RelayConfig } from './config.ts';
import { startAdminServer, type AdminServer } from './admin/server.ts';
import { adminTokenPath } from './admin/token.ts';
import { startDelivery, type DeliveryEngine } from './delivery/engine.ts';
import { realTimers } from './delivery/scheduler.ts';
import { watchSpoolSpace } from './delivery/shed.ts';
import { type TransportFactory } from './delivery/transport.ts';
import { createDnsResolver, type DnsResolver } from './dns.ts';
import { guardResolver } from './destinations.ts';
import { createInbound, type Inbound } from './inbound/server.ts';
import { descriptorAdvice, readOpenFilesLimit } from './fd-limit.ts';
import { checkTlsPair, watchTlsFiles, type TlsCertificateInfo, type TlsWatch } from './inbound/tls-reload.ts';
import { startBufferGovernor } from './memory.ts';
import { planRecipient, type RecipientRouter } from './inbound/rcpt.ts';
import { startTransitionTimer } from './transitions.ts';
import { createParityTracker } from './telemetry/parity.ts';
import { createRouter } from './inbound/router.ts';
import { loadRemovedDomains, removedDomainsSaver } from './inbound/removed-domains-store.ts';
import { workerShare } from './inbound/connect.ts';
import { dsnRoute } from './delivery/dsn-route.ts';
import { lookupServer } from './delivery/server-lookup.ts';
import { createCalloutVerifier } from './inbound/verify.ts';
import { createSource } from './sources/index.ts';
import { changedSecrets } from './sources/secrets.ts';
import { openedResources, type OpenedResources } from './startup.ts';
import type { RoutingSnapshot, RoutingSource } from './sources/types.ts';
import { openSpool, type SpoolFs } from './spool/spool.ts';
import type { Spool, SpoolWriter } from './spool/types.ts';
import { createRelayMetrics, type RelayMetrics } from './telemetry/metrics.ts';
import {
  createTelemetryServer,
  evaluateReadiness,
  type ReadinessCheck,
  type ReadyReport,
} from './telemetry/http.ts';
import type { TelemetryServer } from '../lib/telemetry-http.ts';
import type { ClusterMode } from './cluster/index.ts';
import { parseStaticPeers } from './cluster/peers.ts';
import { createPeerTrust } from './inbound/peer-trust.ts';
import { createLogger } from '../lib/logger.ts';
import { isNoSpace } from '../lib/errors.ts';

export interface RelayDeps {
  logger?: Logger;
  clock?: () => Date;
  /** Spool file-system seam (fault injection). */
  spoolFs?: SpoolFs;
  transport?: TransportFactory;
  /** The DNS seam (relay/dns.ts); default: one built from --dns-servers (MAILROUTE_DNS_SERVERS). */
  resolver?: DnsResolver;
  /** Install SIGTERM/SIGINT handlers (the CLI does; in-process tests do not). */
  handleSignals?: boolean;
  /** Poll period of file sources (default 500 ms). */
  sourcePollMs?: number;
  /** How often the spool volume's free space is looked at (relay/delivery/shed.ts; default 10 s). */
  spaceCheckMs?: number;
  /**
   * One of `count` worker processes (relay/workers.ts): no HTTP or admin listener (the primary serves them), connection
   * limits inbound and outbound divided by count, "relay worker started" instead of "relay started".
   */
  worker?: { index: number; count: number };
}

export interface RelayHandle {
  readonly smtp: { host: string; port: number };
  readonly http: { host: string; port: number };
  readonly admin: { host: string; port: number };
  readonly metrics: RelayMetrics;
  readonly spool: Spool;
  readonly source: RoutingSource;
  readonly delivery: DeliveryEngine;
  /** The revision being served, undefined before the first table. */
  revision(): string | undefined;
  /** What /readyz reports (the cluster primary asks its workers). */
  readiness(): Promise<ReadyReport & { revision: string | null }>;
  /** Graceful shutdown (what SIGTERM does). Idempotent. */
  shutdown(reason?: string): Promise<void>;
  /** Resolves when the relay has shut down. */
  readonly closed: Promise<void>;
}

function setRevisionGauge(metrics: RelayMetrics, revision: string): void {
  metrics.routingRevision.reset();
  metrics.routingRevision.set({ revision }, 1);
}

let probeSeq = 0;

/**
 * Writes and removes a probe file in the spool root (not queue/, whose strangers are quarantined at start): catches a
 * read-only or full file system. Each probe has a file of its own: two at once on one name removed each other's file
 * and answered "not writable: ENOENT" (a probe overlapping a scrape of /readyz took the pod out of service).
 */
async function spoolProbe(dir: string): Promise<{ text: string; full: boolean } | undefined> {
  const probe = join(dir, `.readyz-${process.pid}-${++probeSeq}`);
  try {
    await writeFile(probe, 'ok');
    await unlink(probe);
    return undefined;
  } catch (err) {
    await unlink(probe).catch(() => undefined); // created, then no room for its two bytes
    return {
      text: `spool ${dir} not writable: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
      full: isNoSpace(err),
    };
  }
}

/** How long one spool probe's answer serves /readyz: callers at once, or within this time, share it. */
const SPOOL_PROBE_REUSE_MS = 1000;

/**
 * The readiness check of the spool: one probe shared by the requests that arrive while it runs or within
 * SPOOL_PROBE_REUSE_MS after it (anyone who reaches the HTTP port could otherwise make a file write per request).
 */
function spoolWritableCheck(dir: string): () => Promise<string | undefined> {
  /** The latest probe; doneAt once it answered (monotonic). */
  let last: { doneAt?: number; result: Promise<string | undefined> } | undefined;
  return () => {
    if (
      last !== undefined &&
      (last.doneAt === undefined || performance.now() - last.doneAt <= SPOOL_PROBE_REUSE_MS)
    )
      return last.result;
    const entry: { doneAt?: number; result: Promise<string | undefined> } = {
      result: spoolProbe(dir).then((r) => r?.text),
    };
    void entry.result.then(() => {
      entry.doneAt = performance.now();
    });
    last = entry;
    return entry.result;
  };
}

export async function runRelay(config: Readonly<RelayConfig>, deps: RelayDeps = {}): Promise<RelayHandle> {
  const logger =
    deps.logger ??
    createLogger({ level: config.logLevel, format: config.logFormat, base: { component: 'relay' } });
  const resources = openedResources();
  try {
    return await startRelay(config, deps, logger, resources);
  } catch (err) {
    // All or nothing (relay/startup.ts): close what was opened, so the process can exit and no listener stays up.
    await resources.closeAll((name, e) =>
      logger.warn(
        { resource: name, err: e instanceof Error ? e.message : String(e) },
        'relay: close after a failed start',
      ),
    );
    throw err;
  }
}

async function startRelay(
  config: Readonly<RelayConfig>,
  deps: RelayDeps,
  logger: Logger,
  resources: OpenedResources,
): Promise<RelayHandle> {
  const clock = deps.clock ?? (() => new Date());
  const metrics = createRelayMetrics(new Registry());
  const governor = startBufferGovernor();
  resources.opened('buffer governor', () => governor.stop());
  // Every lookup the relay makes goes through this one resolver: MX, destination and DSN hosts, callouts, --peers.
  const resolver =
    deps.resolver ?? createDnsResolver(config.dnsServers ? { servers: config.dnsServers } : {});
  // Delivery (DSNs included) and callouts connect only where the destination policy permits (relay/destinations.ts);
  // --peers lookups (other relays) use the resolver as it is.
  const guarded = (use: 'delivery' | 'callout', policy = config.destinations): DnsResolver =>
    guardResolver(resolver, policy, (err) => {
      metrics.destinationsDenied.inc({ use });
      logger.warn({ host: err.host, use, err: err.message }, 'destination not permitted');
    });
  // Delivery to the servers of a domain whose DomainClaim has destinations: the policy combined with them
  // (routing/destinations.ts withGrant), one resolver per distinct rule set.
  const deliveryResolver = guarded('delivery');
  const calloutResolver = guarded('callout');
  const grantResolvers = new Map<string, DnsResolver>();
  const resolverFor =
    (use: 'delivery' | 'callout') =>
    (destinations: DomainRoute['destinations']): DnsResolver => {
      if (destinations === undefined) return use === 'delivery' ? deliveryResolver : calloutResolver;
      const key = `${use}|${JSON.stringify(destinations)}`;
      let r = grantResolvers.get(key);
      if (r === undefined) {
        if (grantResolvers.size >= 1024) grantResolvers.clear();
        r = guarded(use, withGrant(config.destinations, grantFromTexts(destinations)));
        grantResolvers.set(key, r);
      }
      return r;
    };

  const spool = await openSpool({
    dir: config.spoolDir,
    logger,
    clock,
    metrics: {
      quarantined: metrics.spoolQuarantined,
      quarantinedTotal: metrics.spoolQuarantinedTotal,
      logWriteSeconds: metrics.spoolLogWriteSeconds,
      logWriteFailures: metrics.spoolLogWriteFailures,
      setLogSource: (read) => metrics.setSpoolLogSource(read),
    },
    ...(config.quarantineMaxAgeMs !== undefined ? { quarantineMaxAgeMs: config.quarantineMaxAgeMs } : {}),
    ...(config.quarantineMaxFiles !== undefined ? { quarantineMaxFiles: config.quarantineMaxFiles } : {}),
    ...(config.spoolStallMs !== undefined ? { stallMs: config.spoolStallMs } : {}),
    ...(deps.spoolFs ? { fs: deps.spoolFs } : {}),
  }).catch((err: unknown) => {
    throw new Error(`--spool ${config.spoolDir}: ${err instanceof Error ? err.message : String(err)}`);
  });
  const unwritable = await spoolProbe(config.spoolDir);
  // A full volume does not stop the start: delivering the queue is what frees it (new mail gets 452 meanwhile, and
  // /readyz says not writable). Stopping instead left a pod that restarts for ever with its queue undelivered.
  if (unwritable?.full === true)
    logger.error(
      { spool: config.spoolDir },
      `spool: ${unwritable.text}: starting anyway, so that delivery frees it; new mail is refused with 452 until then`,
    );
  else if (unwritable !== undefined) throw new Error(`--spool: ${unwritable.text}`);

  // ---- routing: one RecipientRouter per revision, replaced in one assignment ----
  const source = createSource(config.source, {
    logger,
    clock,
    ...(deps.sourcePollMs !== undefined ? { pollMs: deps.sourcePollMs } : {}),
  });
  let router: RecipientRouter | undefined;
  let snapshot: RoutingSnapshot | undefined;
  // Cluster mode (relay/cluster): heartbeat Lease, drain to peers on shutdown. Set once the SMTP listener is up.
  let cluster: ClusterMode | undefined;
  // Dated stages and TestRecipient expiry change routing by the clock (resolve() reads it at every RCPT); this timer
  // keeps the stage gauge and the log in step with them.
  const transitions = startTransitionTimer({ clock, logger, stageGauge: metrics.policyStage });
  resources.opened('transition timer', () => Promise.resolve(transitions.close()));
  // Domains that left the table: 451 for --removed-domain-grace, not 554 (inbound/removed-domains.ts), remembered in
  // the spool folder across restarts.
  const removed = new RemovedDomains(config.removedDomainGraceMs);
  let saveRemoved: ((state: RemovedDomainsState) => void) | undefined;
  if (config.removedDomainGraceMs > 0) {
    const saved = await loadRemovedDomains(config.spoolDir, logger);
    if (saved !== undefined) removed.restore(saved, clock().getTime());
    saveRemoved = removedDomainsSaver(config.spoolDir, logger, removed.state());
  }
  const swap = (s: RoutingSnapshot): void => {
    // The same table with other credentials (a Secret changed; relay/sources): the router it built stays.
    if (snapshot !== undefined && s.revision === snapshot.revision) {
      snapshot = s;
      return;
    }
    // the table's own record of removed domains (the operator's) counts too: a relay that never served one answers 451
    const left = removed.swap(
      new Set(Object.keys(s.table.domains)),
      clock().getTime(),
      s.table.removedDomains,
    );
    if (left.length > 0)
      logger.warn(
        { domains: left, revision: s.revision, graceMs: config.removedDomainGraceMs },
        'domains left the routing table: their mail gets 451 during the grace, then 554 relay access denied',
      );
    saveRemoved?.(removed.state());
    router = createRouter(s.table, s.revision, (d) => removed.removedFor(d, clock().getTime()));
    snapshot = s;
    setRevisionGauge(metrics, s.revision);
    transitions.serve(s.table);
    cluster?.setRevision(s.revision);
  };
  source.onChange(swap);
  resources.opened('routing source', () => source.close());
  await source.start();
  const first = source.current();
  if (first && first.revision !== snapshot?.revision) swap(first);

  const route = (recipient: string): DeliveryPlan =>
    router
      ? router.resolve(recipient, { now: clock() })
      : {
          verdict: 'tempfail',
          recipient,
          reply: { code: 451, enhanced: '4.3.0', text: 'routing table not loaded' },
          reason: 'NoRoutingTable',
          legs: [],
        };

  const share = deps.worker && deps.worker.count > 1 ? deps.worker.count : 1;
  /** A limit split between worker processes: the shares add up to the limit (relay/inbound/connect.ts workerShare). */
  const split = (n: number): number => workerShare(n, share, deps.worker?.index ?? 0);
  if (deps.worker?.index === 0) {
    for (const [flag, n] of [
      ['--max-connections', config.maxConnections],
      ['--max-connections-per-ip', config.maxConnectionsPerIp],
    ] as const) {
      if (n < share)
        logger.warn({ flag, limit: n, workers: share }, `${flag} is below --workers: each worker admits 1`);
    }
  }
  // A descriptor limit below the sessions this process admits: it runs out under a flood (relay/fd-limit.ts).
  const fdLimit = await readOpenFilesLimit();
  const fdAdvice = fdLimit && descriptorAdvice(fdLimit, split(config.maxConnections));
  if (fdAdvice !== undefined)
    logger.warn({ openFiles: fdLimit, maxConnections: split(config.maxConnections) }, fdAdvice);
  // One credentials lookup for delivery and the verification callouts: the Secrets of the revision being served.
  const credentials = (ref: { namespace: string; name: string }) => {
    const c = snapshot?.secrets.get(`${ref.namespace}/${ref.name}`);
    return Promise.resolve(c ? { user: c.username, pass: c.password } : undefined);
  };
  // Recipient-verification callouts: the server's port, TLS mode, credentials and MX, as delivery; bounded per server.
  // (Before the delivery engine: a DSN to a sender in a managed domain that verifies its recipients asks the same way.)
  const verifier = createCalloutVerifier({
    heloName: config.hostname,
    timeoutMs: config.callout.timeoutMs,
    credentials,
    resolver: calloutResolver,
    resolverFor: resolverFor('callout'),
    maxConnections: split(config.callout.maxConnections),
    maxQueued: config.callout.maxQueued,
    negativeTtlMs: config.callout.negativeTtlMs,
    metrics,
    log: logger,
  });
  // Parity while dual: primaries and copies per policy and TestRecipient (metrics, heartbeat Lease, /queue/stats).
  const parity = createParityTracker(metrics);
  const delivery = startDelivery({
    spool,
    connectionShare: share,
    logger,
    metrics,
    clock,
    retryScheduleMs: config.retryScheduleMs,
    maxQueueLifetimeMs: config.maxQueueLifetimeMs,
    delayWarningMs: config.delayWarningMs,
    dsnRate: { perMinute: config.dsnRatePerMinute, burst: config.dsnRatePerMinute },
    hostname: config.hostname,
    clusterId: config.clusterId,
    credentials,
    // How to reach a leg's server: the table served now, at every attempt (relay/delivery/server-lookup.ts).
    serverFor: (leg) => lookupServer(snapshot?.table, leg),
    replan: (recipient) => route(recipient),
    // softBounce of the leg's domain in the table served now: turning it off reaches mail already queued
    softBounce: (recipient) => router?.softBounce(recipient, clock()) === true,
    onLegFinal: (f) => parity.settled(f.queueId, f.index, f.legs),
    onMessageRead: (id, legs) => parity.loaded(id, legs),
    onMessageGone: (id) => parity.forget(id),
    // DSNs: a managed sender domain goes through its policy; any other through its MX or --dsn-relay.
    route: (sender) =>
      dsnRoute(sender, {
        // as any recipient of the domain: with its recipient verification (a Split domain's policy needs the answer)
        route: (recipient) =>
          router ? planRecipient(recipient, { router, verifier, now: clock() }) : route(recipient),
        isManaged: (domain) => snapshot !== undefined && Object.hasOwn(snapshot.table.domains, domain),
        ...(config.dsnRelay ? { dsnRelay: config.dsnRelay } : {}),
      }),
    ...(deps.transport ? { transport: deps.transport } : {}),
    resolver: deliveryResolver,
    resolverFor: resolverFor('delivery'),
  });
  resources.opened('delivery', () => delivery.stop());

  // A volume low on space: copies of the oldest messages give way to primary mail (relay/delivery/shed.ts).
  const spaceWatch = watchSpoolSpace({
    dir: config.spoolDir,
    threshold: config.shedCopiesBelow,
    intervalMs: deps.spaceCheckMs ?? 10_000,
    timers: realTimers,
    log: logger,
    metrics,
    shed: (enough, reply) => delivery.shedCopies(enough, reply),
  });
  resources.opened('spool space', () => spaceWatch.stop());

  // A new table (or new credentials): legs held because their server was gone are looked at again now, and deferred
  // legs whose server or credentials changed (relay/delivery/recovery.ts).
  let secretsSeen = source.current()?.secrets;
  source.onChange((s) => {
    const changed = changedSecrets(secretsSeen, s.secrets);
    secretsSeen = s.secrets;
    delivery.routingChanged(changed);
  });

  // The spool is the only hand-off; the engine is told a new id exists so it need not wait for a scan.
  const writer: SpoolWriter = {
    async accept(meta, body, opts) {
      const r = await spool.accept(meta, body, opts);
      if (r.ok) {
        parity.accepted(
          r.id,
          meta.recipients.flatMap((x) => x.legs),
        );
        delivery.notify(r.id);
      } else if (r.storage) void spaceWatch.check(); // a full volume: shed copies now, not at the next check
      return r;
    },
  };

  const readTls = (flag: string, file: string): Promise<Buffer> =>
    readFile(file).catch((err: unknown) => {
      throw new Error(`${flag} ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    });
  const tls = config.tls
    ? {
        key: await readTls('--tls-key', config.tls.keyFile),
        cert: await readTls('--tls-cert', config.tls.certFile),
      }
    : undefined;
  // The pair is checked at start as it is at every reload (relay/inbound/tls-reload.ts): a key of another certificate
  // is an error naming the flags, not a TLS library message.
  const tlsInfo = tls ? checkTlsPair(tls) : undefined;
  if (typeof tlsInfo === 'string') throw new Error(`--tls-cert/--tls-key: ${tlsInfo}`);
  let draining = false;
  // The hand-off parameters are honoured only from peer relays: the addresses --peers resolves to and, in cluster
  // mode, those in the other relays' heartbeat Leases (relay/inbound/peer-trust.ts).
  const staticPeers = config.peers === undefined ? [] : parseStaticPeers(config.peers);
  const peerTrust = createPeerTrust({
    hosts: typeof staticPeers === 'string' ? [] : staticPeers.map((p) => p.host),
    resolve: (host) => resolver.addresses(host),
    // cluster mode starts once the SMTP listener is up; until then (and without it) no Lease addresses
    more: () => cluster?.relayAddresses() ?? Promise.resolve([]),
  });
  const inbound: Inbound = createInbound({
    options: {
      hostname: config.hostname,
      clusterId: config.clusterId,
      maxMessageSize: config.maxMessageSize,
      maxRecipients: config.maxRecipients,
      maxRecipientsInFlight: split(config.maxRecipientsInFlight),
      maxConnections: split(config.maxConnections),
      maxConnectionsPerIp: split(config.maxConnectionsPerIp),
      clientIpv6Prefix: config.clientIpv6Prefix,
      idleTimeoutMs: config.idleTimeoutMs,
      dataTimeoutMs: config.dataTimeoutMs,
      commandTimeoutMs: config.commandTimeoutMs,
      sessionTimeoutMs: config.sessionTimeoutMs,
      stressTimeoutMs: config.stressTimeoutMs,
      bareLf: config.bareLf,
      greetingDelayMs: config.greetingDelayMs,
      maxLineLength: config.maxLineLength,
      maxUnknownRecipients: config.maxUnknownRecipients,
      maxUnknownRecipientsPerIp: split(config.maxUnknownRecipientsPerIp),
      maxErrors: config.maxErrors,
      ...(tls ? { tls } : {}),
    },
    router: () => router,
    spool: writer,
    verifier,
    metrics,
    logger,
    clock,
    onBodyBytes: (n, messageBytes) => governor.account(n, messageBytes),
    isPeer: (client) => peerTrust.isPeer(client),
  });
  metrics.setRecipientsInFlightSource(() => inbound.recipientsInFlight);
  let tlsWatch: TlsWatch | undefined;
  if (config.tls && tls && tlsInfo !== undefined) {
    const showCertificate = (info: TlsCertificateInfo, msg: string): void => {
      metrics.tlsCertificateNotAfter.set(Math.floor(info.notAfter.getTime() / 1000));
      logger.info(
        { subject: info.subject, notAfter: info.notAfter.toISOString(), sha256: info.fingerprint256 },
        msg,
      );
    };
    showCertificate(tlsInfo, 'tls: certificate');
    // A renewed certificate (cert-manager, certbot) is used without a restart: new STARTTLS sessions get it.
    tlsWatch = watchTlsFiles({
      certFile: config.tls.certFile,
      keyFile: config.tls.keyFile,
      intervalMs: config.tls.reloadIntervalMs,
      current: tls,
      onChange: (pair, info) => {
        inbound.updateTls(pair);
        showCertificate(info, 'tls: certificate reloaded');
      },
      onError: (problem) =>
        logger.error(
          { certFile: config.tls?.certFile, keyFile: config.tls?.keyFile, problem },
          'tls: the files changed but cannot be used; keeping the certificate in use',
        ),
    });
    resources.opened('tls reload', () => tlsWatch?.stop());
  }

  const readinessChecks: ReadinessCheck[] = [
    {
      name: 'routing',
      check: () =>
        Promise.resolve(
          router
            ? undefined
            : `no routing table loaded${source.lastError() ? `: ${source.lastError()?.errors.join('; ')}` : ''}`,
        ),
    },
    { name: 'spool', check: spoolWritableCheck(config.spoolDir) },
    { name: 'accepting', check: () => Promise.resolve(draining ? 'shutting down' : undefined) },
  ];
  const telemetry: TelemetryServer = createTelemetryServer({
    registry: metrics.registry,
    readiness: readinessChecks,
    liveness: () => Promise.resolve(spool.stalled()),
    info: () => ({ revision: router?.revision ?? null, lastError: source.lastError() ?? null }),
    onError: (err) => logger.warn({ err }, 'telemetry: listener error'),
  });

  // Listeners: HTTP and admin first, SMTP last. Until every listener is bound no client can be answered 250, and a
  // bind that fails (EADDRINUSE, EACCES) names its flag.
  const bind = async <T>(
    flag: string,
    at: { host: string; port: number },
    f: () => Promise<T>,
  ): Promise<T> => {
    try {
      return await f();
    } catch (err) {
      throw new Error(`${flag} ${at.host}:${at.port}: ${err instanceof Error ? err.message : String(err)}`, {
        cause: err,
      });
    }
  };
  const embedded = deps.worker !== undefined;
  let httpAddr = { host: config.http.host, port: 0 };
  if (!embedded) {
    httpAddr = await bind('--http', config.http, () => telemetry.listen(config.http.port, config.http.host));
    resources.opened('http', () => telemetry.close());
  }
  const admin: AdminServer = embedded
    ? { address: { host: config.admin.host, port: 0 }, tokenFile: '', close: () => Promise.resolve() }
    : await bind('--admin', config.admin, () =>
        startAdminServer({
          listen: config.admin,
          spool,
          engine: delivery,
          logger,
          tokenFile: adminTokenPath(config.spoolDir),
          lookup: (leg) => lookupServer(snapshot?.table, leg),
          parity: () => parity.report(),
        }),
      );
  resources.opened('admin', () => admin.close());
  const clusterWanted =
    config.source.kind === 'configmap' || config.peers !== undefined || config.drainOnShutdown === 'true';
  const clusterModule = clusterWanted ? await import('./cluster/index.ts') : undefined;
  const settingsFor = (
    port: number,
  ): ReturnType<NonNullable<typeof clusterModule>['clusterSettings']> | undefined =>
    clusterModule?.clusterSettings(
      {
        sourceKind: config.source.kind,
        peers: config.peers,
        drainOnShutdown: config.drainOnShutdown,
        drainTimeoutMs: config.drainTimeoutMs,
      },
      process.env,
      { host: config.listen.host, port },
    );
  const invalid = settingsFor(config.listen.port);
  if (typeof invalid === 'string') throw new Error(invalid);

  const smtpAddr = await bind('--listen', config.listen, () =>
    inbound.listen(config.listen.port, config.listen.host),
  );
  resources.opened('smtp', () => inbound.close(1));
  // No await from here to the return: nothing can fail after the SMTP listener is up with a client already answered.
  const settings = settingsFor(smtpAddr.port);
  if (clusterModule !== undefined && settings !== undefined && typeof settings !== 'string') {
    cluster = clusterModule.startClusterMode({
      settings,
      logger,
      hostname: config.hostname,
      clusterId: config.clusterId,
      revision: router?.revision,
      lookup: (host) => resolver.addresses(host),
      parity: () => parity.report(),
    });
  }

  logger.info(
    {
      smtp: `${smtpAddr.host}:${smtpAddr.port}`,
      http: `${httpAddr.host}:${httpAddr.port}`,
      admin: `${admin.address.host}:${admin.address.port}`,
      spool: config.spoolDir,
      source: source.kind,
      revision: router?.revision ?? null,
      queued: spool.recovery.messages,
      ...(deps.worker ? { worker: deps.worker.index } : {}),
    },
    embedded ? 'relay worker started' : 'relay started',
  );

  let resolveClosed: () => void = () => undefined;
  const closed = new Promise<void>((r) => (resolveClosed = r));
  let shuttingDown: Promise<void> | undefined;

  const shutdown = (reason = 'shutdown'): Promise<void> => {
    shuttingDown ??= (async () => {
      const started = performance.now(); // the deadline is a duration: a wall clock step must not move it
      draining = true;
      await cluster?.beginShutdown();
      logger.info(
        { reason, sessions: inbound.connections, deadlineMs: config.shutdownTimeoutMs },
        'relay: draining',
      );
      inbound.startDraining();
      // Sessions in progress may finish their transaction; new ones get 421 until the deadline.
      while (inbound.connections > 0 && performance.now() - started < config.shutdownTimeoutMs) {
        await new Promise((r) => setTimeout(r, 25));
      }
      await inbound.close(Math.max(1, config.shutdownTimeoutMs - (performance.now() - started)));
      verifier.close();
      spaceWatch.stop();
      // With a drain, delivery stops taking work at once and the transactions in flight go on: the drain waits for
      // their results (within --drain-timeout) and hands a message over only once nothing of it is in flight, so a
      // leg the destination took is never delivered again by the peer (relay/cluster/drain.ts). Without one, delivery
      // lets them finish for up to 10 s.
      const drains = cluster?.drains === true;
      await delivery.stop({ keepRecording: drains });
      await cluster?.drain(spool, delivery);
      // Results that arrive from here on are not recorded: those legs stay queued, tried again at the next start.
      delivery.close();
      await cluster?.stop();
      await source.close();
      await admin.close();
      if (!embedded) await telemetry.close();
      governor.stop();
      tlsWatch?.stop();
      logger.info(
        { reason, queued: (await spool.list()).length, ms: Math.round(performance.now() - started) },
        'relay: stopped',
      );
      await spool.close();
      resolveClosed();
    })();
    return shuttingDown;
  };

  if (deps.handleSignals === true) {
    const onSignal = (sig: NodeJS.Signals): void => {
      void shutdown(sig);
    };
    process.once('SIGTERM', onSignal);
    process.once('SIGINT', onSignal);
    // SIGHUP is what `kill -HUP` and `systemctl reload` send, by habit, to have a daemon read its files again. Without a
    // handler it ended the process at once, cutting every session; the routing source is watched anyway, and the TLS
    // files are read now.
    process.on('SIGHUP', () => {
      logger.info(
        { tls: tlsWatch !== undefined },
        'SIGHUP: reading the TLS files now; the routing source is watched and reloads by itself',
      );
      void tlsWatch?.check();
    });
  }

  return {
    smtp: smtpAddr,
    http: httpAddr,
    admin: admin.address,
    metrics,
    spool,
    source,
    delivery,
    revision: () => router?.revision,
    readiness: async () => ({
      ...(await evaluateReadiness(readinessChecks)),
      revision: router?.revision ?? null,
    }),
    shutdown,
    closed,
  };
}
