// Cluster mode: the credentials relays authenticate to servers with, from the one Secret the operator writes
// (mailroute-credentials in the routing ConfigMap's namespace; operator/credentials-secret.ts is the wire format).
// The relay reads it by name only (list + watch with fieldSelector metadata.name, allowed by resourceNames), so it
// needs no access to Secrets in the MailDomains' namespaces.
//
//   list (fieldSelector metadata.name=NAME) ──> parse ──> onCredentials(map) ──> watch from the list's resourceVersion
//      │ watch error / close: re-list and watch again with jittered backoff; periodic re-list catches anything missed
import { CoreV1Api, Watch, type KubeConfig } from '@kubernetes/client-node';
import { errMessage } from '../cluster/heartbeat.ts';
import { parseCredentialsData, type Credentials } from '../../operator/credentials-secret.ts';
import { backoffMs, watchNamed, type SourceLogger } from './configmap.ts';

export interface SecretObject {
  metadata?: { name?: string; resourceVersion?: string } | undefined;
  data?: Record<string, string> | undefined;
}

/** The API calls this watcher makes; `credentialsApi(kc)` is the real one. */
export interface CredentialsApi {
  /** The one Secret (undefined when absent) and the list's resourceVersion. Throws when the API cannot be reached. */
  list(
    namespace: string,
    name: string,
  ): Promise<{ secret: SecretObject | undefined; resourceVersion: string | undefined }>;
  /** Watches the one Secret; `onDone` exactly once when the watch ends. The returned function aborts it. */
  watch(
    namespace: string,
    name: string,
    resourceVersion: string | undefined,
    onEvent: (type: string, secret: SecretObject) => void,
    onDone: (err: unknown) => void,
  ): Promise<() => void>;
}

export function credentialsApi(kc: KubeConfig): CredentialsApi {
  const core = kc.makeApiClient(CoreV1Api);
  const watcher = new Watch(kc);
  return {
    async list(namespace, name) {
      const l = await core.listNamespacedSecret({ namespace, fieldSelector: `metadata.name=${name}` });
      return { secret: l.items[0], resourceVersion: l.metadata?.resourceVersion };
    },
    watch: (namespace, name, resourceVersion, onEvent, onDone) =>
      watchNamed<SecretObject>(
        watcher,
        `/api/v1/namespaces/${encodeURIComponent(namespace)}/secrets`,
        name,
        resourceVersion,
        (type, secret) => {
          if (type !== 'BOOKMARK') onEvent(type, secret);
        },
        onDone,
      ),
  };
}

export interface CredentialsWatchOptions {
  namespace: string;
  name: string;
  api: CredentialsApi;
  /** Called with the whole set whenever it changes (an absent Secret: an empty map). */
  onCredentials: (secrets: ReadonlyMap<string, Credentials>) => void;
  logger: SourceLogger;
  /** Full re-list period. Default 60 s. */
  resyncMs?: number;
  backoffMinMs?: number;
  backoffMaxMs?: number;
  random?: () => number;
}

export interface CredentialsWatch {
  /** Lists once (never throws; an unreachable API is retried in the background), then watches. */
  start(): Promise<void>;
  stop(): void;
}

export function startCredentialsWatch(opts: CredentialsWatchOptions): CredentialsWatch {
  const { namespace, name, api, logger: log } = opts;
  const bmin = opts.backoffMinMs ?? 200;
  const bmax = opts.backoffMaxMs ?? 10_000;
  const random = opts.random ?? Math.random;
  const resyncMs = opts.resyncMs ?? 60_000;
  let stopped = false;
  let resourceVersion: string | undefined;
  let abortWatch: (() => void) | undefined;
  let failures = 0;
  let lastSignature: string | undefined;
  const timers = new Set<NodeJS.Timeout>();
  const later = (ms: number, fn: () => void): void => {
    if (stopped) return;
    const t = setTimeout(() => {
      timers.delete(t);
      if (!stopped) fn();
    }, ms);
    timers.add(t);
  };

  const apply = (secret: SecretObject | undefined): void => {
    const { secrets, errors } = parseCredentialsData(secret?.data);
    if (errors.length > 0)
      log.warn({ secret: `${namespace}/${name}`, errors }, 'credentials: entries ignored');
    // Compare without logging values: the set of keys and a digest-free equality of the entries.
    const signature = JSON.stringify([...secrets]);
    if (signature === lastSignature) return;
    lastSignature = signature;
    opts.onCredentials(secrets);
    log.info(
      { secret: `${namespace}/${name}`, present: secret !== undefined, credentials: [...secrets.keys()] },
      'credentials: loaded',
    );
  };

  const list = async (): Promise<boolean> => {
    try {
      const l = await api.list(namespace, name);
      resourceVersion = l.resourceVersion;
      apply(l.secret);
      return true;
    } catch (err) {
      log.warn(
        { secret: `${namespace}/${name}`, err: errMessage(err) },
        'credentials: list failed; retrying',
      );
      return false;
    }
  };

  const watch = async (): Promise<void> => {
    if (stopped) return;
    const onDone = (err: unknown): void => {
      abortWatch = undefined;
      if (stopped) return;
      if (err !== undefined && err !== null)
        log.warn({ err: errMessage(err) }, 'credentials: watch ended with an error; restarting');
      const delay = err === undefined || err === null ? 0 : backoffMs(failures++, bmin, bmax, random);
      later(delay, () => void restart());
    };
    try {
      abortWatch = await api.watch(
        namespace,
        name,
        resourceVersion,
        (type, s) => {
          failures = 0;
          if (s.metadata?.resourceVersion !== undefined) resourceVersion = s.metadata.resourceVersion;
          if (type === 'ADDED' || type === 'MODIFIED') apply(s);
          else if (type === 'DELETED') apply(undefined);
        },
        onDone,
      );
      if (stopped) abortWatch();
    } catch (err) {
      onDone(err);
    }
  };

  /** Re-list (nothing between two watches is missed), then watch again. */
  const restart = async (): Promise<void> => {
    if (stopped) return;
    if (!(await list())) {
      later(backoffMs(failures++, bmin, bmax, random), () => void restart());
      return;
    }
    await watch();
  };

  const resync = (): void => {
    void list().finally(() => later(resyncMs, resync));
  };

  return {
    async start() {
      if (await list()) void watch();
      else later(backoffMs(failures++, bmin, bmax, random), () => void restart());
      later(resyncMs, resync);
    },
    stop() {
      stopped = true;
      for (const t of timers) clearTimeout(t);
      timers.clear();
      abortWatch?.();
      abortWatch = undefined;
    },
  };
}
