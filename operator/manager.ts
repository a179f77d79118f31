// Wires the operator together: supervised informers (warm on every replica), one work queue per controller,
// leader election (only the leader runs the queues, so non-leaders write nothing), metrics and the HTTP endpoints.

import {
  AppsV1Api,
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  type KubernetesListObject,
  type KubernetesObject,
} from '@kubernetes/client-node';
import { GROUP, VERSION, type Kind } from '../routing/model.ts';
import type { CompileNotice } from '../routing/compile.ts';
import type { DeliveryPolicy, DomainClaim, MailDomain, TestRecipient } from '../routing/types.ts';
import type { OperatorConfig } from './config.ts';
import { LeaderElector } from './kube/leader.ts';
import type { OwnerReference } from '../contract/owner.ts';
import { resolveOwnerConfigMap } from './owner.ts';
import { createKubeRest, describeFailure, type KubeRest } from './kube/rest.ts';
import { createEventRecorder, type EventRecorder } from './kube/ssa.ts';
import { InformerSupervisor, type InformerEvent, type Logger } from './kube/supervisor.ts';
import { createTelemetryHttp, type TelemetryServer } from '../lib/telemetry-http.ts';
import {
  NO_RELAYS,
  relaysChanged,
  SpecGenerations,
  splitRoutingKey,
  type RelaySnapshot,
  type Requeue,
} from './event-routing.ts';
import { makeWatchInformer } from '../lib/kube-watch.ts';
import { WorkQueue, type ReconcileOutcome } from './kube/workqueue.ts';
import {
  expectedRelayPods,
  HeartbeatObserver,
  isRelayLease,
  type LeaseLike,
} from '../contract/relay-lease.ts';
import { createDeliveryPolicyController } from './controllers/deliverypolicy/controller.ts';
import { createMailDomainController } from './controllers/maildomain/controller.ts';
import { PLURALS, statusKey, type ObjectStatusController } from './controllers/object-status.ts';
import { decodeParity, mergeParity, PARITY_ANNOTATION, type ParityReport } from '../contract/relay-parity.ts';
import { ROUTING_QUEUE_KEY, RoutingController, RoutingState } from './controllers/routing/controller.ts';
import { CredentialsController } from './controllers/credentials/controller.ts';
import { readCredentials, type SecretLookup } from '../contract/credentials-secret.ts';
import { secretOptedIn, SMTP_AUTH_SELECTOR } from '../routing/secret-opt-in.ts';
import type { RelayView } from './controllers/status.ts';
import { createTestRecipientController } from './controllers/testrecipient/controller.ts';
import type { OperatorMetrics } from './telemetry/metrics.ts';
import {
  createSmtpProbe,
  credentialsFromLookup,
  startPreflight,
  type PreflightHandle,
} from './preflight/index.ts';
import { safeDelay } from '../routing/timer.ts';
import { grantFromTexts } from '../routing/destinations.ts';
import { compileGrants } from '../routing/grants.ts';

export type StopReason = 'stopped' | 'lost-leadership';

export interface ManagerDeps {
  config: Readonly<OperatorConfig>;
  kubeconfig: KubeConfig;
  logger: Logger & { debug: (obj: object, msg?: string) => void };
  metrics: OperatorMetrics;
  now?: () => Date;
  /** Monotonic milliseconds (default performance.now()): how long ago a relay Lease was seen renewed. */
  monotonic?: () => number;
  /** Start the HTTP server (default true). */
  serveHttp?: boolean;
}

/** A direct read of the relay Leases (to confirm that relays aged out) gives up after this. */
const HEARTBEAT_READ_TIMEOUT_MS = 5_000;
/** After a failed direct read, the next one is tried this much later (meanwhile the relays last seen are kept). */
const HEARTBEAT_READ_RETRY_MS = 5_000;

type Cached = KubernetesObject & { metadata?: { generation?: number; namespace?: string; name?: string } };

/**
 * A custom object as the informer caches it: the routing type and client-node's KubernetesObject (which the informer
 * requires) at once. The cache holds the API server's JSON as is, so both describe the same object.
 */
type Watched<T> = T & KubernetesObject;

/** What the manager does with every informer alike. */
type Supervised = Pick<InformerSupervisor<KubernetesObject>, 'start' | 'stop' | 'health'>;

/** The cached object of each kind. */
interface KindObjects {
  MailDomain: MailDomain;
  DeliveryPolicy: DeliveryPolicy;
  TestRecipient: TestRecipient;
}

export class OperatorManager {
  private readonly d: ManagerDeps;
  private readonly now: () => Date;
  readonly rest: KubeRest;
  readonly state = new RoutingState();
  readonly informers: { [K in Kind]: InformerSupervisor<Watched<KindObjects[K]>> } & {
    DomainClaim: InformerSupervisor<Watched<DomainClaim>>;
    Lease: InformerSupervisor<Cached>;
  };
  /** StatefulSets in the operator namespace (the relay pool's desired replicas); undefined with --relay-statefulset ''. */
  readonly statefulSets: InformerSupervisor<Cached> | undefined;
  /** One cluster-wide Secret informer, or one per --secret-namespaces entry; opted-in Secrets only (a label selector). */
  readonly secretInformers: Map<string, InformerSupervisor<Cached>>;
  readonly queues: Record<'routing' | Kind, WorkQueue>;
  readonly routing: RoutingController;
  /** Secret mailroute-credentials: what relays authenticate with (applied by the routing reconcile). */
  readonly credentials: CredentialsController;
  readonly status: { [K in Kind]: ObjectStatusController<KindObjects[K]> };
  private readonly elector: LeaderElector | undefined;
  private http: TelemetryServer | undefined;
  private preflight: PreflightHandle | undefined;
  private readonly events: EventRecorder;
  private readonly generations = new SpecGenerations();
  /** Conflict notices already sent as Warning Events (kind/namespace/name/uid: message), so each is sent once. */
  private noticesSent = new Set<string>();
  /** The fresh relays and the expected pods as last seen (onRelaysMaybeChanged). */
  private relaysSeen: RelaySnapshot = NO_RELAYS;
  private paritySignature = '';
  /** The fresh relays' parity reports, summed (updateParity). */
  private parity: ParityReport = { policies: {}, testRecipients: {}, dropped: 0 };
  private staleTimer: NodeJS.Timeout | undefined;
  private readonly monotonic: () => number;
  /** When each relay Lease was last seen renewed, on the monotonic clock (contract/relay-lease.ts). */
  private readonly heartbeats = new HeartbeatObserver();
  /**
   * Monotonic start of the last direct read of the Leases that succeeded: a relay that aged out after it is kept until
   * a read confirms it was not renewed (the watch may have gone silent while the relays are fine).
   */
  private heartbeatsReadAt = -Infinity;
  private heartbeatsReading = false;
  /** No direct read before this (monotonic ms): the last one failed. */
  private heartbeatsReadNotBefore = -Infinity;
  /** Why the relay heartbeats cannot be read (the last direct read failed), else undefined. */
  private heartbeatsUnreadable: string | undefined;
  private running: Promise<unknown>[] = [];
  private leading = false;
  /** ownerReferences of what the operator creates (--owner-configmap), resolved at start. */
  private owners: readonly OwnerReference[] = [];
  private stopping = false;
  private resolveDone: (r: StopReason) => void = () => undefined;
  readonly done: Promise<StopReason>;

  constructor(deps: ManagerDeps) {
    this.d = deps;
    this.now = deps.now ?? (() => new Date());
    this.monotonic = deps.monotonic ?? (() => performance.now());
    this.done = new Promise<StopReason>((r) => (this.resolveDone = r));
    const { config, kubeconfig: kc, logger, metrics } = deps;
    this.rest = createKubeRest(kc);
    const custom = kc.makeApiClient(CustomObjectsApi);
    const core = kc.makeApiClient(CoreV1Api);
    const coord = kc.makeApiClient(CoordinationV1Api);
    const apps = kc.makeApiClient(AppsV1Api);

    const supervise = <T extends KubernetesObject>(
      name: string,
      path: string,
      list: () => Promise<KubernetesListObject<T>>,
      onEvent: (t: InformerEvent, o: T) => void,
      onResync: () => void,
      labelSelector?: string,
    ): InformerSupervisor<T> =>
      new InformerSupervisor<T>({
        name,
        make: () => makeWatchInformer<T>(kc, path, list, labelSelector),
        onEvent,
        onResync,
        logger,
        relistIntervalMs: config.relistIntervalMs,
        watchdogMs: config.watchdogMs,
        onRestart: (reason) => metrics.informerRestarts.inc({ informer: name, reason }),
      });
    const crd = <K extends Kind>(kind: K): InformerSupervisor<Watched<KindObjects[K]>> =>
      supervise(
        kind,
        `/apis/${GROUP}/${VERSION}/${PLURALS[kind]}`,
        () =>
          custom.listClusterCustomObject({
            group: GROUP,
            version: VERSION,
            plural: PLURALS[kind],
          }) as Promise<KubernetesListObject<Watched<KindObjects[K]>>>,
        (t, o) => this.onObjectEvent(kind, t, o),
        () => this.onObjectResync(kind),
      );
    this.informers = {
      MailDomain: crd('MailDomain'),
      DeliveryPolicy: crd('DeliveryPolicy'),
      TestRecipient: crd('TestRecipient'),
      // cluster-scoped grants: any change recompiles (objects may gain or lose their domain)
      DomainClaim: supervise(
        'DomainClaim',
        `/apis/${GROUP}/${VERSION}/domainclaims`,
        () =>
          custom.listClusterCustomObject({
            group: GROUP,
            version: VERSION,
            plural: 'domainclaims',
          }) as Promise<KubernetesListObject<Watched<DomainClaim>>>,
        () => {
          this.routing.markDirty();
          this.queues.routing.add(ROUTING_QUEUE_KEY);
        },
        () => {
          this.routing.markDirty();
          this.queues.routing.add(ROUTING_QUEUE_KEY);
        },
      ),
      Lease: supervise(
        'Lease',
        `/apis/coordination.k8s.io/v1/namespaces/${config.namespace}/leases`,
        () => coord.listNamespacedLease({ namespace: config.namespace }),
        () => this.onRelaysMaybeChanged(),
        () => this.onRelaysMaybeChanged(),
      ),
    };

    this.statefulSets =
      config.relayStatefulSet === ''
        ? undefined
        : supervise(
            'StatefulSet',
            `/apis/apps/v1/namespaces/${config.namespace}/statefulsets`,
            () => apps.listNamespacedStatefulSet({ namespace: config.namespace }),
            () => this.onRelaysMaybeChanged(),
            () => this.onRelaysMaybeChanged(),
          );

    const secretScopes = config.secretNamespaces.length === 0 ? [''] : config.secretNamespaces;
    this.secretInformers = new Map(
      secretScopes.map((ns) => [
        ns,
        supervise(
          ns === '' ? 'Secret' : `Secret/${ns}`,
          ns === '' ? '/api/v1/secrets' : `/api/v1/namespaces/${ns}/secrets`,
          // Only Secrets that opt in (routing/secret-opt-in.ts): the operator never lists or caches the others.
          () =>
            ns === ''
              ? core.listSecretForAllNamespaces({ labelSelector: SMTP_AUTH_SELECTOR })
              : core.listNamespacedSecret({ namespace: ns, labelSelector: SMTP_AUTH_SELECTOR }),
          (_t, o) => this.onSecretEvent(o),
          () => {
            this.enqueueAll('MailDomain');
            this.queues.routing.add(ROUTING_QUEUE_KEY);
          },
          SMTP_AUTH_SELECTOR,
        ),
      ]),
    );

    const queue = (name: string): WorkQueue =>
      new WorkQueue({
        name,
        metrics: metrics.queue(name),
        onResult: (key, outcome, seconds) => {
          const result = !outcome.ok
            ? 'error'
            : outcome.requeueAfterMs !== undefined
              ? 'requeue_after'
              : 'success';
          metrics.reconcileTotal.inc({ controller: name, result });
          metrics.reconcileTime.observe({ controller: name }, seconds);
          if (!outcome.ok) {
            metrics.reconcileErrors.inc({ controller: name });
            logger.warn(
              { controller: name, key, err: outcome.error },
              'reconcile failed; retrying with backoff',
            );
          }
        },
      });
    this.queues = {
      routing: queue('routing'),
      MailDomain: queue('maildomain'),
      DeliveryPolicy: queue('deliverypolicy'),
      TestRecipient: queue('testrecipient'),
    };

    const events = (this.events = createEventRecorder(
      this.rest,
      'mailroute-operator',
      this.now,
      (err) => logger.warn({ err }, 'could not record event'),
      { qps: 20, burst: 100 },
      () => metrics.eventsDropped.inc(),
    ));
    this.credentials = new CredentialsController({
      namespace: config.namespace,
      rest: this.rest,
      logger,
      lookup: (key) => this.secretLookup(key),
      owners: () => this.owners,
    });
    this.routing = new RoutingController({
      owners: () => this.owners,
      namespace: config.namespace,
      configMapName: config.configMapName,
      rest: this.rest,
      logger,
      state: this.state,
      inlineMaxBytes: config.inlineMaxBytes,
      shardMaxBytes: config.shardMaxBytes,
      removedDomainGraceMs: config.removedDomainGraceMs,
      resyncMs: config.routingResyncMs,
      objects: () => [
        ...this.informers.MailDomain.list(),
        ...this.informers.DeliveryPolicy.list(),
        ...this.informers.TestRecipient.list(),
      ],
      claims: () => this.informers.DomainClaim.list(),
      onNotices: (notices) => this.onNotices(notices),
      relayRevisions: () =>
        new Set(this.relays().flatMap((r) => (r.revision === undefined ? [] : [r.revision]))),
      onCompiled: (_r, changed) => this.requeue(changed),
      beforeApply: (table) => this.credentials.apply(table),
      onApplied: (revision, bytes) => {
        metrics.setRevision(revision);
        metrics.routingBytes.set(bytes);
      },
    });

    const common = {
      rest: this.rest,
      state: this.state,
      events,
      relays: () => this.relays(),
      expectedRelays: () => this.expectedRelays(),
      now: this.now,
    };
    const getter =
      <O>(informer: InformerSupervisor<Watched<O>>) =>
      (namespace: string, name: string): O | undefined =>
        informer.get(name, namespace);
    this.status = {
      MailDomain: createMailDomainController({
        ...common,
        get: getter(this.informers.MailDomain),
        secretExists: (ns, name) => this.secretExists(ns, name),
        secretLookup: (key) => this.secretLookup(key),
      }),
      DeliveryPolicy: createDeliveryPolicyController({
        ...common,
        get: getter(this.informers.DeliveryPolicy),
        mailDomain: getter(this.informers.MailDomain),
        parity: () => this.parity,
      }),
      TestRecipient: createTestRecipientController({
        ...common,
        get: getter(this.informers.TestRecipient),
        parity: () => this.parity,
      }),
    };

    if (config.leaderElect) {
      this.elector = new LeaderElector({
        rest: this.rest,
        namespace: config.namespace,
        name: config.leaseName,
        identity: config.identity,
        logger,
        onStartedLeading: () => this.startControllers(),
        onStoppedLeading: () => void this.stop('lost-leadership'),
        onStatus: (leading) => metrics.leaderStatus.set({ name: config.leaseName }, leading ? 1 : 0),
        owners: () => this.owners,
      });
    }
    metrics.leaderStatus.set({ name: config.leaseName }, 0);
  }

  /** Relays with a fresh heartbeat Lease that are not marked ready=false. */
  relays(): RelayView[] {
    return this.judgeRelays()
      .leases.filter((hb) => hb.ready)
      .map((hb) => ({ name: hb.name, revision: hb.revision }));
  }

  /**
   * The relay Leases in the cache that are fresh, ready or not, sorted by name. Fresh: seen renewed within its
   * duration on this process's monotonic clock (HeartbeatObserver; the relay's wall clock is never compared with
   * ours). A Lease that went stale after the last successful direct read of the Leases is kept, and `unconfirmed` set:
   * when the watch goes silent (a dead connection, the API server away), every relay would otherwise look gone.
   */
  private judgeRelays(): {
    leases: { name: string; revision: string | undefined; ready: boolean; lease: LeaseLike }[];
    unconfirmed: string[];
  } {
    const mono = this.monotonic();
    const wall = this.now();
    const leases: { name: string; revision: string | undefined; ready: boolean; lease: LeaseLike }[] = [];
    const unconfirmed: string[] = [];
    for (const l of this.informers.Lease.list() as LeaseLike[]) {
      if (!isRelayLease(l)) continue;
      const hb = this.heartbeats.observe(l, mono, wall);
      if (hb.skewSeconds !== undefined) {
        this.d.logger.warn(
          { relay: hb.name, skewSeconds: hb.skewSeconds },
          "relay heartbeat: the Lease's renewTime is far from this node's clock (clock skew); judged by when it is seen renewed",
        );
      }
      let fresh = hb.fresh;
      if (!fresh) {
        const staleAt = this.heartbeats.staleAt(hb.name);
        if (staleAt !== undefined && staleAt > this.heartbeatsReadAt) {
          fresh = true;
          unconfirmed.push(hb.name);
        }
      }
      if (fresh) leases.push({ name: hb.name, revision: hb.revision, ready: hb.ready, lease: l });
    }
    leases.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    return { leases, unconfirmed };
  }

  /**
   * Reads the Leases directly (not through the watch): what it finds renewed counts as seen renewed now, and a relay
   * it finds unchanged (or gone) since it went stale is dropped. A failed read keeps the relays last seen, so status
   * does not report relays gone that the operator merely cannot see; it is tried again every 5 s.
   */
  private readHeartbeats(): void {
    if (this.heartbeatsReading || this.stopping || this.monotonic() < this.heartbeatsReadNotBefore) return;
    this.heartbeatsReading = true;
    const started = this.monotonic();
    const ns = this.d.config.namespace;
    void this.rest
      .request<{ items?: LeaseLike[] }>('GET', `/apis/coordination.k8s.io/v1/namespaces/${ns}/leases`, {
        timeoutMs: HEARTBEAT_READ_TIMEOUT_MS,
      })
      .then((r) => {
        if (r.ok) {
          const mono = this.monotonic();
          const wall = this.now();
          for (const l of r.body.items ?? []) if (isRelayLease(l)) this.heartbeats.observe(l, mono, wall);
          this.heartbeatsReadAt = started;
          if (this.heartbeatsUnreadable !== undefined) {
            this.d.logger.info({ namespace: ns }, 'relay heartbeats readable again');
            this.heartbeatsUnreadable = undefined;
          }
          return;
        }
        this.heartbeatsReadNotBefore = this.monotonic() + HEARTBEAT_READ_RETRY_MS;
        if (this.heartbeatsUnreadable === undefined) {
          const health = this.informers.Lease.health();
          this.d.logger.warn(
            {
              namespace: ns,
              err: describeFailure(r),
              informer: health.healthy ? 'watching' : (health.lastError ?? 'failing'),
              relays: [...this.relaysSeen.revisions.keys()],
            },
            'relay heartbeats cannot be read; status keeps the relays last seen until they can',
          );
        }
        this.heartbeatsUnreadable = describeFailure(r);
      })
      .finally(() => {
        this.heartbeatsReading = false;
        this.onRelaysMaybeChanged();
      });
  }

  /**
   * The relay pods meant to exist: <statefulset>-0 .. -(replicas-1) of --relay-statefulset, or undefined when that
   * StatefulSet does not exist (a local run: the fresh heartbeats are all there is to count).
   */
  expectedRelays(): string[] | undefined {
    const name = this.d.config.relayStatefulSet;
    const sts = this.statefulSets?.get(name, this.d.config.namespace);
    if (sts === undefined) return undefined;
    const spec = (sts as { spec?: { replicas?: number } }).spec;
    return expectedRelayPods(name, spec?.replicas);
  }

  /**
   * Whether a referenced Secret exists and opts in (the informer holds no other). Unknown (a namespace outside
   * --secret-namespaces) counts as existing: never claim a Secret is missing unseen.
   */
  secretExists(namespace: string, name: string): boolean {
    const inf = this.secretInformers.get('') ?? this.secretInformers.get(namespace);
    if (inf === undefined) return true;
    const s = inf.get(name, namespace);
    return s !== undefined && secretOptedIn({ labels: s.metadata?.labels });
  }

  /** A referenced Secret ("namespace/name") from the cache, for mailroute-credentials. */
  secretLookup(key: string): SecretLookup {
    const i = key.indexOf('/');
    const namespace = key.slice(0, i);
    const inf = this.secretInformers.get('') ?? this.secretInformers.get(namespace);
    if (inf === undefined) return { state: 'unknown' };
    return readCredentials(inf.get(key.slice(i + 1), namespace));
  }

  private allInformers(): Supervised[] {
    return [
      ...Object.values(this.informers),
      ...(this.statefulSets ? [this.statefulSets] : []),
      ...this.secretInformers.values(),
    ];
  }

  get isLeader(): boolean {
    return this.leading;
  }

  private enqueueAll(kind: Kind): void {
    for (const o of this.informers[kind].list()) {
      const md = o.metadata;
      if (md?.name !== undefined) this.queues[kind].add(statusKey(md.namespace ?? '', md.name));
    }
  }

  private enqueueAllStatus(): void {
    this.enqueueAll('MailDomain');
    this.enqueueAll('DeliveryPolicy');
    this.enqueueAll('TestRecipient');
  }

  private onObjectEvent(kind: Kind, type: InformerEvent, o: Cached): void {
    const { recompile, status } = this.generations.observe(kind, type, o);
    if (recompile) {
      // new, deleted or its spec changed; a status-only update does not recompile
      this.routing.markDirty();
      this.queues.routing.add(ROUTING_QUEUE_KEY);
    }
    if (status !== undefined) this.queues[kind].add(status);
  }

  private onObjectResync(kind: Kind): void {
    this.routing.markDirty();
    this.queues.routing.add(ROUTING_QUEUE_KEY);
    this.enqueueAll(kind);
  }

  private onSecretEvent(o: Cached): void {
    const ns = o.metadata?.namespace;
    // A Secret named by an authSecretRef in the table changed: mailroute-credentials follows it.
    if (this.credentials.isReferenced(ns ?? '', o.metadata?.name ?? ''))
      this.queues.routing.add(ROUTING_QUEUE_KEY);
    for (const md of this.informers.MailDomain.list(ns)) {
      const name = md.metadata?.name;
      if (name !== undefined) this.queues.MailDomain.add(statusKey(ns ?? '', name));
    }
  }

  /**
   * The winner of a conflict with an object in another namespace gets a Warning Event, once per conflict (the loser
   * reads DomainConflict in its status). Neither names the other object: it may belong to another tenant.
   */
  private onNotices(notices: readonly CompileNotice[]): void {
    const sent = new Set<string>();
    for (const n of notices) {
      const o = this.informers[n.kind].get(n.name, n.namespace);
      const uid = o?.metadata?.uid;
      // keyed by uid too: a re-created object that wins again is told again
      const key = `${n.kind}/${n.namespace}/${n.name}/${uid ?? ''}: ${n.message}`;
      sent.add(key);
      if (this.noticesSent.has(key)) continue;
      void this.events.event(
        {
          apiVersion: `${GROUP}/${VERSION}`,
          kind: n.kind,
          namespace: n.namespace,
          name: n.name,
          ...(uid !== undefined ? { uid } : {}),
        },
        'Warning',
        n.reason,
        n.message,
      );
    }
    this.noticesSent = sent;
  }

  /**
   * The relays' parity reports (annotation mailroute.io/parity of the fresh relay Leases), summed; recomputed when an
   * annotation changes, and then every DeliveryPolicy and TestRecipient status is looked at again.
   */
  private updateParity(relays: readonly { name: string; lease: LeaseLike }[]): void {
    const texts: string[] = [];
    for (const { name, lease } of relays) {
      const t = lease.metadata?.annotations?.[PARITY_ANNOTATION];
      if (t !== undefined) texts.push(`${name}=${t}`);
    }
    const sig = texts.sort().join('\n');
    if (sig === this.paritySignature) return;
    this.paritySignature = sig;
    this.parity = mergeParity(
      texts.flatMap((t) => {
        const r = decodeParity(t.slice(t.indexOf('=') + 1));
        return r === undefined ? [] : [r];
      }),
    );
    for (const kind of ['DeliveryPolicy', 'TestRecipient'] as const) {
      for (const o of this.informers[kind].list()) {
        this.queues[kind].add(statusKey(o.metadata.namespace, o.metadata.name));
      }
    }
  }

  /** Enqueue statuses when the set of fresh relays or the revision one of them serves changed (event-routing.ts). */
  private onRelaysMaybeChanged(): void {
    const cached = this.informers.Lease.list();
    this.heartbeats.retain(cached.map((l) => l.metadata?.name ?? ''));
    const judged = this.judgeRelays();
    this.updateParity(judged.leases);
    const relays = judged.leases
      .filter((hb) => hb.ready)
      .map((hb) => ({ name: hb.name, revision: hb.revision }));
    this.d.metrics.relaysFresh.set(relays.length);
    const expected = this.expectedRelays();
    if (this.staleTimer !== undefined) clearTimeout(this.staleTimer);
    if (judged.unconfirmed.length > 0) this.readHeartbeats();
    const mono = this.monotonic();
    const staleIn = this.heartbeats.nextStaleIn(mono);
    const retryIn =
      judged.unconfirmed.length > 0 && !this.heartbeatsReading
        ? Math.max(0, this.heartbeatsReadNotBefore - mono) + 1
        : undefined;
    const wakeIn =
      staleIn === undefined ? retryIn : retryIn === undefined ? staleIn : Math.min(staleIn, retryIn);
    if (wakeIn !== undefined && !this.stopping) {
      this.staleTimer = setTimeout(() => this.onRelaysMaybeChanged(), safeDelay(wakeIn));
      this.staleTimer.unref();
    }
    const change = relaysChanged(this.relaysSeen, relays, expected, (from, to) =>
      this.state.history.diff(from, to),
    );
    if (change === undefined) return;
    this.relaysSeen = change.next;
    this.routing.requestGc();
    this.queues.routing.add(ROUTING_QUEUE_KEY);
    this.requeue(change.requeue);
  }

  /** Requeue every status, or the statuses of these routing keys (kind/namespace/name). */
  private requeue(r: Requeue): void {
    if (r.all) return this.enqueueAllStatus();
    for (const k of r.keys) {
      const { kind, key } = splitRoutingKey(k);
      this.queues[kind].add(key);
    }
  }

  private startControllers(): void {
    if (this.leading || this.stopping) return;
    this.leading = true;
    this.d.logger.info({ identity: this.d.config.identity }, 'starting controllers');
    const wrap =
      (f: (key: string) => Promise<ReconcileOutcome>) =>
      (key: string): Promise<ReconcileOutcome> =>
        f(key);
    this.running.push(
      this.queues.routing.run(
        wrap(() => this.routing.reconcile()),
        1,
      ),
    );
    for (const kind of ['MailDomain', 'DeliveryPolicy', 'TestRecipient'] as const) {
      const c = this.status[kind];
      this.running.push(
        this.queues[kind].run(
          wrap((k) => c.reconcile(k)),
          this.d.config.workers,
        ),
      );
    }
    this.routing.markDirty();
    this.queues.routing.add(ROUTING_QUEUE_KEY);
    this.enqueueAllStatus();
    if (this.d.config.preflightIntervalMs > 0) {
      // operator/preflight: probes every MailDomain server, writes status.servers + ServersReachable (own field manager)
      this.preflight = startPreflight({
        kube: this.rest,
        logger: this.d.logger,
        intervalMs: this.d.config.preflightIntervalMs,
        probe: createSmtpProbe({ destinations: this.d.config.destinations }),
        // a MailDomain's servers are probed under its DomainClaim's destinations too, as the relay delivers
        grantFor: (namespace, domain) =>
          grantFromTexts(compileGrants(this.informers.DomainClaim.list()).destinations(namespace, domain)),
        isLeader: () => this.leading && !this.stopping,
        events: this.events,
        // the acceptance step (spec.servers[].probe.address) authenticates as delivery does
        credentials: (namespace, name) =>
          credentialsFromLookup(namespace, name, this.secretLookup(`${namespace}/${name}`)),
      });
    }
  }

  /** Starts informers (waits for their first list), the HTTP server, and leader election (or the controllers). */
  async start(): Promise<void> {
    const ownerName = this.d.config.ownerConfigMap;
    if (ownerName !== undefined) {
      const owner = await resolveOwnerConfigMap(this.rest, this.d.config.namespace, ownerName);
      if (!owner.ok) throw new Error(owner.error);
      this.owners = owner.owners;
    }
    if (this.d.serveHttp !== false) await this.startHttp();
    await Promise.all(this.allInformers().map((i) => i.start()));
    this.d.logger.info({ namespace: this.d.config.namespace }, 'informers synced');
    if (this.elector !== undefined) this.elector.start();
    else this.startControllers();
  }

  ready(): {
    ready: boolean;
    informers: ReturnType<Supervised['health']>[];
    leader: boolean;
  } {
    // Ready once every informer has listed, unless one has been failing for over a minute: a short API server
    // blip (the supervisor restarts the informer) must not flap the pod's readiness.
    const informers = this.allInformers().map((i) => i.health());
    const ready = informers.every(
      (h) => h.synced && (h.failingForMs === undefined || h.failingForMs < 60_000),
    );
    return { ready, informers, leader: this.leading };
  }

  private async startHttp(): Promise<void> {
    this.http = createTelemetryHttp({
      registry: this.d.metrics.registry,
      readiness: () => Promise.resolve(this.ready()),
      // every method is answered; plain text without a charset
      framing: { textType: 'text/plain' },
      onError: (err) => this.d.logger.warn({ err }, 'telemetry: listener error'),
    });
    await this.http.listen(this.d.config.http.port, this.d.config.http.host);
  }

  httpAddress(): { host: string; port: number } | undefined {
    const a = this.http?.server.address();
    return a !== null && typeof a === 'object' ? { host: a.address, port: a.port } : undefined;
  }

  async stop(reason: StopReason = 'stopped'): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.d.logger.info({ reason }, 'operator stopping');
    if (this.staleTimer !== undefined) clearTimeout(this.staleTimer);
    for (const q of Object.values(this.queues)) q.shutdown();
    await this.preflight?.stop();
    await Promise.all(this.running);
    await this.elector?.stop(reason === 'stopped');
    await Promise.all(this.allInformers().map((i) => i.stop()));
    await this.http?.close();
    this.d.metrics.leaderStatus.set({ name: this.d.config.leaseName }, 0);
    this.resolveDone(reason);
  }
}
