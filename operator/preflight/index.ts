// Preflight of every MailDomain server, on a schedule: the operator's main calls startPreflight() (on the leader)
// and stop() on shutdown. Results go to MailDomain status.servers[] and the ServersReachable condition by
// server-side apply under the field manager `mailroute-preflight`, so the main controller's fields are untouched.
import { errMessage } from '../../lib/errors.ts';
import { CustomObjectsApi, KubeConfig, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { API_VERSION, GROUP, VERSION } from '../../routing/model.ts';
import { describeFailure, type KubeRest } from '../kube/rest.ts';
import { serverSideApply, type EventRecorder } from '../kube/ssa.ts';
import { createSmtpProbe, type Probe } from './probe.ts';
import {
  FIELD_MANAGER,
  decideCondition,
  isDue,
  nextDue,
  reachabilityEvent,
  serverPasses,
  serverStatus,
  serversFingerprint,
  withAcceptance,
  type CredentialsFor,
  statusApplyBody,
  viewMailDomain,
  type DomainView,
  type ScheduleEntry,
  type ServerStatus,
} from './status.ts';
import { safeDelay } from '../../routing/timer.ts';
import type { GrantDestinations } from '../../routing/destinations.ts';

export { createSmtpProbe } from './probe.ts';
export { credentialsFromLookup } from './status.ts';

interface PreflightLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
}

/** The two API calls the preflight makes; `kubeApi(kubeConfig)` is the real one, tests may inject their own. */
export interface PreflightKube {
  /** MailDomain objects of the given namespaces (undefined: all namespaces). */
  listMailDomains(namespaces: readonly string[] | undefined): Promise<unknown[]>;
  /** Server-side apply of the status subresource; resolves false when the object is gone (404). */
  applyStatus(namespace: string, name: string, body: object): Promise<boolean>;
}

export interface PreflightOptions {
  /** A KubeConfig, the operator's REST client (operator/kube/rest.ts), or an injected PreflightKube. */
  kube: KubeConfig | KubeRest | PreflightKube;
  /** Namespaces to watch; undefined or empty: all namespaces. */
  namespaces?: readonly string[];
  logger: PreflightLogger;
  /** Time between two probes of the same domain. Default 5 min. */
  intervalMs?: number;
  /** ±fraction of intervalMs added at random to each next probe. Default 0.1. */
  jitter?: number;
  /** How often MailDomains are listed to find new or changed ones. Default min(intervalMs, 30 s). */
  scanMs?: number;
  /** Probe of one server; default createSmtpProbe(). */
  probe?: Probe;
  /**
   * The DomainClaim destinations of a MailDomain's domain (routing/grants.ts), applied with the probe's destination
   * policy to its servers. Default: none.
   */
  grantFor?: (namespace: string, domain: string) => GrantDestinations | undefined;
  /**
   * Credentials of a server's authSecretRef for the acceptance step (spec.servers[].probe.address). Default: none,
   * and a server with both gets its acceptance step reported failed ("not available to the preflight").
   */
  credentials?: CredentialsFor;
  /** Non-leaders write nothing: when this returns false, the scan is skipped. Default: always leader. */
  isLeader?: () => boolean;
  /** Domains probed at the same time. Default 4. */
  concurrency?: number;
  now?: () => Date;
  random?: () => number;
  /** Records a Warning event on the MailDomain when ServersReachable becomes False (Normal when it recovers). */
  events?: EventRecorder;
}

export interface PreflightHandle {
  /** Stops the schedule and waits for the scan in progress. */
  stop(): Promise<void>;
  /** Runs one scan now (tests and `kubectl annotate`-style triggers); resolves when it is done. */
  scanNow(): Promise<void>;
}

const PLURAL = 'maildomains';

function isNotFound(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === 404;
}

/** The real API calls through @kubernetes/client-node. */
function kubeApi(kc: KubeConfig): PreflightKube {
  const api = kc.makeApiClient(CustomObjectsApi);
  const itemsOf = (list: unknown): unknown[] => {
    const items = (list as { items?: unknown } | undefined)?.items;
    return Array.isArray(items) ? (items as unknown[]) : [];
  };
  return {
    async listMailDomains(namespaces) {
      if (namespaces === undefined || namespaces.length === 0) {
        return itemsOf(await api.listClusterCustomObject({ group: GROUP, version: VERSION, plural: PLURAL }));
      }
      const lists = await Promise.all(
        namespaces.map((namespace) =>
          api.listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural: PLURAL }),
        ),
      );
      return lists.flatMap(itemsOf);
    },
    async applyStatus(namespace, name, body) {
      try {
        await api.patchNamespacedCustomObjectStatus(
          {
            group: GROUP,
            version: VERSION,
            namespace,
            plural: PLURAL,
            name,
            body,
            fieldManager: FIELD_MANAGER,
            force: true,
          },
          setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply),
        );
        return true;
      } catch (err) {
        if (isNotFound(err)) return false;
        throw err;
      }
    },
  };
}

/** The same calls through the operator's own REST client (typed results; server-side apply via operator/kube/ssa.ts). */
function kubeRestApi(rest: KubeRest): PreflightKube {
  const base = `/apis/${GROUP}/${VERSION}`;
  const items = async (path: string): Promise<unknown[]> => {
    const r = await rest.request<{ items?: unknown[] }>('GET', path);
    if (!r.ok) throw new Error(`GET ${path}: ${describeFailure(r)}`);
    return Array.isArray(r.body.items) ? r.body.items : [];
  };
  return {
    async listMailDomains(namespaces) {
      if (namespaces === undefined || namespaces.length === 0) return items(`${base}/${PLURAL}`);
      const lists = await Promise.all(
        namespaces.map((ns) => items(`${base}/namespaces/${encodeURIComponent(ns)}/${PLURAL}`)),
      );
      return lists.flat();
    },
    async applyStatus(namespace, name, body) {
      const path = `${base}/namespaces/${encodeURIComponent(namespace)}/${PLURAL}/${encodeURIComponent(name)}/status`;
      const r = await serverSideApply(rest, path, body, FIELD_MANAGER);
      if (r.ok) return true;
      if (r.status === 404) return false;
      throw new Error(`PATCH ${path}: ${describeFailure(r)}`);
    },
  };
}

/** Probes one domain's servers (in parallel) and applies its status. Exported for tests. */
async function probeDomain(
  view: DomainView,
  probe: Probe,
  api: PreflightKube,
  now: () => Date,
  events?: EventRecorder,
): Promise<{ servers: ServerStatus[]; written: boolean }> {
  const servers = await Promise.all(
    view.servers.map(async (s) => {
      const outcome = await probe(s).catch((err: unknown) => ({
        reachable: false,
        tls: 'none' as const,
        message: `probe error: ${errMessage(err)}`,
      }));
      return serverStatus(s.name, outcome, now());
    }),
  );
  const condition = decideCondition(servers, view.generation, view.previousCondition, now());
  const written = await api.applyStatus(view.namespace, view.name, statusApplyBody(view, servers, condition));
  const event = written ? reachabilityEvent(view.previousCondition?.status, condition) : undefined;
  if (event !== undefined && events !== undefined) {
    await events.event(
      { apiVersion: API_VERSION, kind: 'MailDomain', namespace: view.namespace, name: view.name },
      event.type,
      event.reason,
      event.message,
    );
  }
  return { servers, written };
}

export function startPreflight(opts: PreflightOptions): PreflightHandle {
  const k = opts.kube;
  const api = k instanceof KubeConfig ? kubeApi(k) : 'listMailDomains' in k ? k : kubeRestApi(k);
  const intervalMs = opts.intervalMs ?? 5 * 60_000;
  const jitter = opts.jitter ?? 0.1;
  const scanMs = opts.scanMs ?? Math.min(intervalMs, 30_000);
  const probe = opts.probe ?? createSmtpProbe();
  const isLeader = opts.isLeader ?? (() => true);
  const concurrency = Math.max(1, opts.concurrency ?? 4);
  const now = opts.now ?? (() => new Date());
  const random = opts.random ?? Math.random;
  const namespaces =
    opts.namespaces !== undefined && opts.namespaces.length > 0 ? opts.namespaces : undefined;
  const log = opts.logger;

  const schedule = new Map<string, ScheduleEntry>();
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;

  const scan = async (): Promise<void> => {
    if (!isLeader()) {
      schedule.clear(); // a new leader starts from the status it finds
      return;
    }
    let objects: unknown[];
    try {
      objects = await api.listMailDomains(namespaces);
    } catch (err) {
      log.warn({ err: errMessage(err) }, 'preflight: listing MailDomains failed; retrying at the next scan');
      return;
    }
    const views = objects.map(viewMailDomain).filter((v): v is DomainView => v !== undefined);
    const seen = new Set<string>();
    const due: DomainView[] = [];
    const t = now().getTime();
    for (const v of views) {
      const key = `${v.namespace}/${v.name}`;
      seen.add(key);
      if (isDue(v, schedule.get(key), t, intervalMs)) due.push(v);
      else if (!schedule.has(key)) {
        // Fresh status from a previous leader: schedule from its probe time.
        const oldest = Math.min(...v.previousServers.map((s) => Date.parse(s.lastProbeTime)));
        schedule.set(key, {
          fingerprint: serversFingerprint(v),
          nextDue: nextDue(oldest, intervalMs, jitter, random),
        });
      }
    }
    for (const key of schedule.keys()) if (!seen.has(key)) schedule.delete(key);

    let next = 0;
    const worker = async (): Promise<void> => {
      while (!stopped && next < due.length) {
        const v = due[next++];
        if (v === undefined) break;
        const key = `${v.namespace}/${v.name}`;
        try {
          const grant = v.domain === undefined ? undefined : opts.grantFor?.(v.namespace, v.domain);
          const targets = withAcceptance(v, opts.credentials);
          const probed =
            grant === undefined
              ? targets
              : { ...targets, servers: targets.servers.map((s) => ({ ...s, destinations: grant })) };
          const { servers, written } = await probeDomain(probed, probe, api, now, opts.events);
          schedule.set(key, {
            fingerprint: serversFingerprint(v),
            nextDue: nextDue(now().getTime(), intervalMs, jitter, random),
          });
          const failing = servers.filter((s) => !serverPasses(s)).map((s) => s.name);
          log.info(
            { mailDomain: key, servers: servers.length, failing, written },
            'preflight: probed MailDomain servers',
          );
        } catch (err) {
          // Status write failed (API down, conflict): probe again at the next scan.
          log.warn({ mailDomain: key, err: errMessage(err) }, 'preflight: writing MailDomain status failed');
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, due.length) }, () => worker()));
  };

  const runScan = (): Promise<void> => {
    running ??= scan().finally(() => {
      running = undefined;
    });
    return running;
  };

  const tick = (): void => {
    if (stopped) return;
    void runScan().finally(() => {
      if (!stopped) timer = setTimeout(tick, safeDelay(scanMs));
    });
  };
  timer = setTimeout(tick, 0);

  return {
    async stop() {
      stopped = true;
      if (timer !== undefined) clearTimeout(timer);
      await running;
    },
    scanNow: runScan,
  };
}
