// Cluster mode: the credentials relays authenticate to servers with, from the one Secret the operator writes
// (mailroute-credentials in the routing ConfigMap's namespace; contract/credentials-secret.ts is the wire format).
// The relay reads it by name only (list + watch with fieldSelector metadata.name, allowed by resourceNames), so it
// needs no access to Secrets in the MailDomains' namespaces.
//
//   list + watch of the one Secret (list-watch.ts) ──> parse ──> onCredentials(map)
import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { ServerTimedWatch, type WatchTimingOptions } from '../../lib/kube-watch.ts';
import { errMessage } from '../../lib/errors.ts';
import { parseCredentialsData, type Credentials } from '../../contract/credentials-secret.ts';
import { createTimers, startListWatch, watchNamed, type SourceLogger } from './list-watch.ts';

export interface SecretObject {
  metadata?: { name?: string; resourceVersion?: string } | undefined;
  data?: Record<string, string> | undefined;
}

/** The API calls this watcher makes; `credentialsApi(kc)` is the real one (`timing`: tests shorten the watches). */
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

export function credentialsApi(kc: KubeConfig, timing: WatchTimingOptions = {}): CredentialsApi {
  const core = kc.makeApiClient(CoreV1Api);
  const watcher = new ServerTimedWatch(kc, timing);
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
        onEvent,
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
  let lastSignature: string | undefined;

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

  const loop = startListWatch<SecretObject>({
    list: async () => {
      const l = await api.list(namespace, name);
      return { obj: l.secret, resourceVersion: l.resourceVersion };
    },
    watch: (rv, onEvent, onDone) => api.watch(namespace, name, rv, onEvent, onDone),
    onList: apply,
    onEvent: (type, s) => {
      if (type === 'ADDED' || type === 'MODIFIED') apply(s);
      else if (type === 'DELETED') apply(undefined);
    },
    onListError: (err) =>
      log.warn(
        { secret: `${namespace}/${name}`, err: errMessage(err) },
        'credentials: list failed; retrying',
      ),
    onWatchError: (err) =>
      log.warn({ err: errMessage(err) }, 'credentials: watch ended with an error; restarting'),
    timers: createTimers(),
    ...(opts.backoffMinMs !== undefined ? { backoffMinMs: opts.backoffMinMs } : {}),
    ...(opts.backoffMaxMs !== undefined ? { backoffMaxMs: opts.backoffMaxMs } : {}),
    ...(opts.random !== undefined ? { random: opts.random } : {}),
  });

  return {
    async start() {
      await loop.start();
    },
    stop() {
      loop.stop();
    },
  };
}
