// The relay's heartbeat: Lease mailroute-relay-<pod> in POD_NAMESPACE, renewed every 10 s and at once when the
// served revision (or readiness) changes, so the operator sees a new revision within a second. Deleted on
// graceful shutdown. Also lists the other relays' Leases for drain peers.
import type { OwnerReference } from '../../contract/owner.ts';
import { CoordinationV1Api, CoreV1Api, KubeConfig, type V1Lease } from '@kubernetes/client-node';
import {
  buildLease,
  HeartbeatObserver,
  RELAY_LABEL_SELECTOR,
  RELAY_RENEW_INTERVAL_SECONDS,
  relayLeaseName,
  type HeartbeatState,
  type LeaseBody,
  type LeaseLike,
} from '../../contract/relay-lease.ts';
import { peersFromLeases, type Peer } from './peers.ts';
import { safeDelay } from '../../routing/timer.ts';
import { errMessage } from '../../lib/errors.ts';

export interface LeaseRef {
  resourceVersion?: string | undefined;
  acquireTime?: Date | string | undefined;
}

/** The Lease calls the relay makes (RBAC: create/get/update/delete leases, list leases). */
export interface LeaseApi {
  read(namespace: string, name: string): Promise<LeaseRef | undefined>;
  create(namespace: string, body: LeaseBody): Promise<LeaseRef>;
  /** The uid of a ConfigMap (the release's owner ConfigMap), undefined when it does not exist. */
  configMapUid?(namespace: string, name: string): Promise<string | undefined>;
  /** Compare-and-swap on metadata.resourceVersion: rejects with { code: 409 } on a conflict, { code: 404 } when gone. */
  replace(namespace: string, name: string, body: LeaseBody): Promise<LeaseRef>;
  /** Resolves when deleted or already gone. */
  delete(namespace: string, name: string): Promise<void>;
  list(namespace: string, labelSelector: string): Promise<LeaseLike[]>;
}

export interface ClusterLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
}

function code(err: unknown): number | undefined {
  const c = typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined;
  return typeof c === 'number' ? c : undefined;
}

/** Resolves with p's value, or rejects with Error(message) after ms (resolves undefined when message is undefined). */
function withTimeout<T>(p: Promise<T>, ms: number, message: string | undefined): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<undefined>((resolve, reject) => {
    timer = setTimeout(
      () => (message === undefined ? resolve(undefined) : reject(new Error(`${message} after ${ms} ms`))),
      safeDelay(ms),
    );
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

const refOf = (l: V1Lease): LeaseRef => ({
  resourceVersion: l.metadata?.resourceVersion,
  acquireTime: l.spec?.acquireTime,
});

/** The real API through @kubernetes/client-node. */
export function leaseApi(kc: KubeConfig): LeaseApi {
  const api = kc.makeApiClient(CoordinationV1Api);
  const core = kc.makeApiClient(CoreV1Api);
  return {
    async configMapUid(namespace, name) {
      try {
        return (await core.readNamespacedConfigMap({ namespace, name })).metadata?.uid;
      } catch (err) {
        if (code(err) === 404) return undefined;
        throw err;
      }
    },
    async read(namespace, name) {
      try {
        return refOf(await api.readNamespacedLease({ namespace, name }));
      } catch (err) {
        if (code(err) === 404) return undefined;
        throw err;
      }
    },
    async create(namespace, body) {
      // The MicroTime strings pass through client-node's serializer untouched (see microTime()).
      return refOf(await api.createNamespacedLease({ namespace, body: body as unknown as V1Lease }));
    },
    async replace(namespace, name, body) {
      return refOf(await api.replaceNamespacedLease({ namespace, name, body: body as unknown as V1Lease }));
    },
    async delete(namespace, name) {
      try {
        await api.deleteNamespacedLease({ namespace, name });
      } catch (err) {
        if (code(err) !== 404) throw err;
      }
    },
    async list(namespace, labelSelector) {
      return (await api.listNamespacedLease({ namespace, labelSelector })).items;
    },
  };
}

export interface HeartbeatOptions {
  api: LeaseApi;
  initial: HeartbeatState;
  /**
   * The Lease's ownerReferences, read once before the first write (the release's owner ConfigMap: its uid). A
   * failure is logged and the Lease is written without them.
   */
  owners?: () => Promise<readonly OwnerReference[]>;
  logger: ClusterLogger;
  /** Default 10 s. */
  renewMs?: number;
  now?: () => Date;
  /** Monotonic milliseconds (default performance.now()): how long ago another relay's Lease was seen renewed. */
  monotonic?: () => number;
  /** The parity annotation's value, read at every renewal (so the operator sees counts at most 10 s old). */
  parity?: () => string | undefined;
}

export interface Heartbeat {
  /** Changes what the Lease says; renews at once when something changed. Resolves when that renewal is done. */
  update(change: Partial<Pick<HeartbeatState, 'revision' | 'ready' | 'smtp'>>): Promise<void>;
  /**
   * The other relays that are fresh and ready, from their Leases. Fresh: this relay saw the Lease's renewTime change
   * within its duration, by its own monotonic clock, across the lists of peers() and relayAddresses()
   * (contract/relay-lease.ts HeartbeatObserver); the writer's wall clock is not compared with this one.
   */
  peers(): Promise<Peer[]>;
  /**
   * The SMTP addresses of the other relays with a fresh Lease, ready or not (a draining relay is not ready): the
   * clients whose hand-off parameters this relay honours (relay/inbound/peer-trust.ts).
   */
  relayAddresses(): Promise<string[]>;
  /** Time of the last successful renewal. */
  lastRenewed(): Date | undefined;
  /** Stops renewing; with deleteLease (graceful shutdown) removes the Lease so the relay stops counting at once. */
  stop(opts?: { deleteLease?: boolean }): Promise<void>;
}

/** Starts renewing at once; the first renewal's outcome is logged, never thrown (the relay serves mail regardless). */
export function startHeartbeat(opts: HeartbeatOptions): Heartbeat {
  const { api, logger: log } = opts;
  const renewMs = opts.renewMs ?? RELAY_RENEW_INTERVAL_SECONDS * 1000;
  const now = opts.now ?? (() => new Date());
  const monotonic = opts.monotonic ?? (() => performance.now());
  const observer = new HeartbeatObserver();
  const state: HeartbeatState = { ...opts.initial };
  const name = relayLeaseName(state.pod);
  let known: LeaseRef | undefined;
  let lastRenewed: Date | undefined;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let chain: Promise<void> = Promise.resolve();
  let failures = 0;

  let owners: Promise<void> | undefined =
    opts.owners === undefined
      ? undefined
      : opts.owners().then(
          (o) => {
            state.owners = o;
          },
          (err: unknown) => {
            log.warn(
              { err: errMessage(err) },
              'heartbeat: owner ConfigMap not readable; lease written without owner',
            );
          },
        );
  const renewOnce = async (): Promise<void> => {
    if (owners !== undefined) {
      await owners;
      owners = undefined;
    }
    if (opts.parity !== undefined) state.parity = opts.parity();
    for (let attempt = 0; attempt < 3; attempt++) {
      if (known === undefined) {
        known = await api.read(state.namespace, name);
        if (known === undefined) {
          known = await api.create(state.namespace, buildLease(state, now()));
          return;
        }
      }
      try {
        known = await api.replace(state.namespace, name, buildLease(state, now(), known));
        return;
      } catch (err) {
        const c = code(err);
        if (c !== 409 && c !== 404) throw err;
        known = undefined; // someone else wrote it (or deleted it): read again and retry
      }
    }
    throw new Error(`lease ${state.namespace}/${name}: conflicts on every attempt`);
  };

  const schedule = (): void => {
    if (stopped) return;
    if (timer !== undefined) clearTimeout(timer);
    timer = setTimeout(() => void renew(), safeDelay(renewMs));
  };

  const renew = (): Promise<void> => {
    const run = async (): Promise<void> => {
      if (stopped) return;
      try {
        await renewOnce();
        lastRenewed = now();
        if (failures > 0) log.info({ lease: name, failures }, 'heartbeat: lease renewed again');
        failures = 0;
      } catch (err) {
        failures++;
        known = undefined;
        log.warn({ lease: name, err: errMessage(err), failures }, 'heartbeat: renewing the lease failed');
      } finally {
        schedule();
      }
    };
    chain = chain.then(run, run);
    return chain;
  };

  /** Freshness of the Leases of one list, as this relay has seen them change over its lists (client-go's way). */
  const judge = (leases: readonly LeaseLike[]): ((lease: LeaseLike) => boolean) => {
    const mono = monotonic();
    const wall = now();
    observer.retain(leases.map((l) => l.metadata?.name ?? ''));
    return (lease) => {
      const hb = observer.observe(lease, mono, wall);
      if (hb.skewSeconds !== undefined) {
        log.warn(
          { lease: hb.name, skewSeconds: hb.skewSeconds },
          "heartbeat: a relay Lease's renewTime is far from this node's clock (clock skew); judged by when it is seen renewed",
        );
      }
      return hb.fresh;
    };
  };

  void renew();

  return {
    update(change) {
      let changed = false;
      for (const key of ['revision', 'ready', 'smtp'] as const) {
        if (key in change && change[key] !== state[key]) {
          (state as unknown as Record<string, unknown>)[key] = change[key];
          changed = true;
        }
      }
      return changed ? renew() : chain;
    },
    async peers() {
      const leases = await api.list(state.namespace, RELAY_LABEL_SELECTOR);
      return peersFromLeases(leases, state.pod, judge(leases));
    },
    async relayAddresses() {
      const leases = await api.list(state.namespace, RELAY_LABEL_SELECTOR);
      return peersFromLeases(leases, state.pod, judge(leases), { readyOnly: false }).map((p) => p.host);
    },
    lastRenewed: () => lastRenewed,
    async stop(o = {}) {
      stopped = true;
      if (timer !== undefined) clearTimeout(timer);
      await withTimeout(chain, 2_000, undefined);
      if (o.deleteLease === true) {
        try {
          await withTimeout(api.delete(state.namespace, name), 5_000, 'timeout');
          log.info({ lease: name }, 'heartbeat: lease deleted');
        } catch (err) {
          log.warn(
            { lease: name, err: errMessage(err) },
            'heartbeat: deleting the lease failed; it goes stale in 30 s',
          );
        }
      }
    },
  };
}
