// The relay's in-cluster routing source: watches the ConfigMap the operator writes (contract/routing-configmap.ts is
// the wire format), falls back to the same ConfigMap mounted as a file when the API server is unreachable, and
// hands each new revision to `onTable` (the relay's atomic swap). Sharded tables are swapped in only when every
// shard of the revision has arrived and checks out.
//
//   list + watch of the one ConfigMap (list-watch.ts) ──> decode ──> (shards? get each) ──> onTable(table, revision)
//   API unreachable: poll the mounted file; a change of its revision is applied (the kubelet only moves forward)
//
// Order: a ConfigMap older than the one last applied (a re-list that was answered before a newer watch event) is
// not applied: its resourceVersion is compared. The file: while the API is reachable its revision is still read at
// every poll, so that once the API is gone only what the kubelet writes after that counts as newer; and a file is
// used only when its table hashes to its revision (the two keys are two reads: a kubelet swap between them paired
// one revision's table with the other's name).
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { ServerTimedWatch, type WatchTimingOptions } from '../../lib/kube-watch.ts';
import { errMessage } from '../../lib/errors.ts';
import type { RoutingTable } from '../../routing/model.ts';
import { checkRoutingTable } from './file.ts';
import {
  backoffMs,
  createTimers,
  httpCode,
  startListWatch,
  watchNamed,
  type SourceLogger,
} from './list-watch.ts';
import {
  assembleShards,
  decodeIndex,
  REVISION_KEY,
  type ConfigMapLike,
} from '../../contract/routing-configmap.ts';
import { sha256Hex } from '../../routing/canonical.ts';

/** The API calls this source makes; `configMapApi(kc)` is the real one (`timing`: tests shorten the watches). */
export interface ConfigMapApi {
  /**
   * Lists the one ConfigMap (fieldSelector metadata.name=NAME): the object (undefined when absent) and the list's
   * resourceVersion to watch from. Throws when the API server cannot be reached.
   */
  list(
    namespace: string,
    name: string,
  ): Promise<{ cm: ConfigMapLike | undefined; resourceVersion: string | undefined }>;
  /** Reads a shard ConfigMap; undefined when it does not exist (404). */
  get(namespace: string, name: string): Promise<ConfigMapLike | undefined>;
  /**
   * Watches one ConfigMap from resourceVersion. `onDone` is called exactly once when the watch ends (err undefined:
   * the server closed it normally). The returned function aborts it.
   */
  watch(
    namespace: string,
    name: string,
    resourceVersion: string | undefined,
    onEvent: (type: string, cm: ConfigMapLike) => void,
    onDone: (err: unknown) => void,
  ): Promise<() => void>;
}

export interface ConfigMapSourceOptions {
  namespace: string;
  name: string;
  api: ConfigMapApi;
  /** The same ConfigMap mounted as a volume: path of its routing.json (the `revision` key beside it is used). */
  fallbackFile?: string;
  /** Called with each new table; must swap atomically. A throw is logged and the revision is retried later. */
  onTable: (table: RoutingTable, revision: string, from: 'api' | 'file') => void;
  logger: SourceLogger;
  /** Poll period of the fallback file while the API is unreachable. Default 2 s. */
  filePollMs?: number;
  /** Backoff bounds for watch restarts and missing shards. Default 200 ms .. 10 s. */
  backoffMinMs?: number;
  backoffMaxMs?: number;
  random?: () => number;
}

interface ConfigMapSourceStatus {
  revision: string | undefined;
  /** Where the table being served came from. */
  from: 'api' | 'file' | undefined;
  apiReachable: boolean;
  watching: boolean;
  lastError: string | undefined;
  /** The mounted file's revision as last read (undefined without a file, or before it was read). */
  fileRevision: string | undefined;
  /** Reads of the mounted file since start (it is read every filePollMs). */
  filePolls: number;
}

export interface ConfigMapSource {
  /**
   * Gets the ConfigMap (or, with the API unreachable, reads the fallback file), serves it, and starts watching.
   * Never throws: without a table, status().revision is undefined (the relay is not ready) and the source keeps
   * trying; the first table that arrives is handed to onTable.
   */
  start(): Promise<ConfigMapSourceStatus>;
  stop(): void;
  status(): ConfigMapSourceStatus;
}

/**
 * Whether resourceVersion a is older than b. resourceVersions are opaque to clients in general, but those of one
 * object from one API server are etcd revisions, decimal and increasing: only those are compared (anything else,
 * or either missing, is not older). Pure.
 */
export function resourceVersionOlder(a: string | undefined, b: string | undefined): boolean {
  if (a === undefined || b === undefined || !/^\d{1,19}$/.test(a) || !/^\d{1,19}$/.test(b)) return false;
  return BigInt(a) < BigInt(b);
}

/** Parses compiled routing JSON with the routing-file source's structural check; a string names the problem. */
export function parseTableJson(json: string): RoutingTable | string {
  let v: unknown;
  try {
    v = JSON.parse(json);
  } catch (err) {
    return `invalid JSON: ${(err as Error).message}`;
  }
  const errs = checkRoutingTable(v);
  return errs.length > 0 ? errs.join('; ') : (v as RoutingTable);
}

export function configMapApi(kc: KubeConfig, timing: WatchTimingOptions = {}): ConfigMapApi {
  const core = kc.makeApiClient(CoreV1Api);
  const watcher = new ServerTimedWatch(kc, timing);
  return {
    async list(namespace, name) {
      const l = await core.listNamespacedConfigMap({ namespace, fieldSelector: `metadata.name=${name}` });
      return { cm: l.items[0], resourceVersion: l.metadata?.resourceVersion };
    },
    async get(namespace, name) {
      try {
        return await core.readNamespacedConfigMap({ namespace, name });
      } catch (err) {
        if (httpCode(err) === 404) return undefined;
        throw err;
      }
    },
    watch: (namespace, name, resourceVersion, onEvent, onDone) =>
      watchNamed<ConfigMapLike>(
        watcher,
        `/api/v1/namespaces/${encodeURIComponent(namespace)}/configmaps`,
        name,
        resourceVersion,
        onEvent,
        onDone,
      ),
  };
}

type Fetched =
  | { ok: true; table: RoutingTable; revision: string }
  /** A sharded index of the revision already served: nothing to fetch. */
  | { ok: true; table: undefined; revision: string }
  | { ok: false; retry: boolean; error: string };

export function startConfigMapSource(opts: ConfigMapSourceOptions): ConfigMapSource {
  const { namespace, name, api, logger: log } = opts;
  const filePollMs = opts.filePollMs ?? 2_000;
  const bmin = opts.backoffMinMs ?? 200;
  const bmax = opts.backoffMaxMs ?? 10_000;
  const random = opts.random ?? Math.random;

  let revision: string | undefined;
  let from: 'api' | 'file' | undefined;
  let apiReachable = false;
  let lastError: string | undefined;
  let shardFailures = 0;
  let lastFileRevision: string | undefined;
  /** metadata.resourceVersion of the last ConfigMap applied from the API (an order check, resourceVersionOlder). */
  let appliedVersion: string | undefined;
  const timers = createTimers();
  const later = timers.later;
  /** Serializes decodes so two events never swap out of order. */
  let chain: Promise<void> = Promise.resolve();

  const swap = (table: RoutingTable, rev: string, src: 'api' | 'file'): boolean => {
    if (rev === revision) {
      from = src === 'api' ? 'api' : from;
      return true;
    }
    try {
      opts.onTable(table, rev, src);
    } catch (err) {
      lastError = `applying revision ${rev}: ${errMessage(err)}`;
      log.warn(
        { revision: rev, err: errMessage(err) },
        'routing: swapping the table failed; keeping the previous one',
      );
      return false;
    }
    log.info(
      { revision: rev, previous: revision, from: src, configMap: `${namespace}/${name}` },
      'routing: new revision',
    );
    revision = rev;
    from = src;
    return true;
  };

  /** Decodes a ConfigMap into a table; fetches and assembles shards for the sharded format. */
  const decode = async (cm: ConfigMapLike): Promise<Fetched> => {
    const idx = decodeIndex(cm);
    if (!idx.ok) return { ok: false, retry: false, error: `${namespace}/${name}: ${idx.error}` };
    // The revision being served: nothing to parse or fetch (the operator re-applies the same table often).
    if (idx.revision === revision) return { ok: true, table: undefined, revision: idx.revision };
    let json: string;
    if (idx.format === 'inline') {
      json = idx.json;
    } else {
      const shards = new Map<string, ConfigMapLike>();
      for (const ref of idx.index.shards) {
        const s = await api.get(namespace, ref.name);
        if (s !== undefined) shards.set(ref.name, s);
      }
      const joined = assembleShards(idx.index, shards);
      if (!joined.ok) {
        return joined.retry
          ? {
              ok: false,
              retry: true,
              error: `revision ${idx.revision}: shards not all present: ${joined.missing.join(', ')}`,
            }
          : { ok: false, retry: false, error: joined.error };
      }
      json = joined.json;
    }
    const table = parseTableJson(json);
    if (typeof table === 'string')
      return { ok: false, retry: false, error: `revision ${idx.revision}: ${table}` };
    return { ok: true, table, revision: idx.revision };
  };

  const applyConfigMap = (cm: ConfigMapLike): Promise<void> => {
    const run = async (): Promise<void> => {
      if (timers.stopped) return;
      const version = cm.metadata?.resourceVersion;
      if (resourceVersionOlder(version, appliedVersion)) {
        log.info(
          { resourceVersion: version, applied: appliedVersion },
          'routing: ConfigMap older than the one applied (a re-list answered before a newer event); not applied',
        );
        return;
      }
      let r: Fetched;
      try {
        r = await decode(cm);
      } catch (err) {
        // A shard get failed (API gone mid-fetch): retry like missing shards.
        r = { ok: false, retry: true, error: `fetching shards: ${errMessage(err)}` };
      }
      if (r.ok) {
        shardFailures = 0;
        let applied = true;
        if (r.table !== undefined && r.revision !== revision) applied = swap(r.table, r.revision, 'api');
        else from = 'api';
        if (applied && version !== undefined) appliedVersion = version;
        lastError = undefined;
        return;
      }
      lastError = r.error;
      log.warn({ err: r.error, revision }, 'routing: ConfigMap not applied; keeping the table being served');
      if (r.retry) {
        // Shards of a new revision still on their way: get the ConfigMap again soon.
        later(backoffMs(shardFailures++, bmin, bmax, random), () => void loop.relist());
      }
    };
    chain = chain.then(run, run);
    return chain;
  };

  // list + watch of the ConfigMap; a failed list means the API server is unreachable: serve and poll the file
  const loop = startListWatch<ConfigMapLike>({
    list: async () => {
      const l = await api.list(namespace, name);
      return { obj: l.cm, resourceVersion: l.resourceVersion };
    },
    watch: (rv, onEvent, onDone) => api.watch(namespace, name, rv, onEvent, onDone),
    onList: async (cm) => {
      apiReachable = true;
      if (cm === undefined) {
        lastError = `ConfigMap ${namespace}/${name} not found`;
        log.warn(
          { configMap: `${namespace}/${name}` },
          'routing: ConfigMap not found; keeping the table being served',
        );
        return;
      }
      await applyConfigMap(cm);
    },
    onEvent: (type, cm) => {
      apiReachable = true;
      if (type === 'ADDED' || type === 'MODIFIED') void applyConfigMap(cm);
      else if (type === 'DELETED')
        log.warn(
          { configMap: `${namespace}/${name}` },
          'routing: ConfigMap deleted; keeping the table being served',
        );
    },
    onListError: (err) => {
      const wasReachable = apiReachable;
      apiReachable = false;
      lastError = `get ConfigMap ${namespace}/${name}: ${errMessage(err)}`;
      if (wasReachable)
        log.warn({ err: lastError }, 'routing: API server unreachable; polling the mounted file');
      startFilePoll();
    },
    onWatchError: (err) => {
      lastError = `watch ${namespace}/${name}: ${errMessage(err)}`;
      log.warn(
        { err: errMessage(err), code: httpCode(err) },
        'routing: ConfigMap watch ended with an error; restarting',
      );
    },
    timers,
    backoffMinMs: bmin,
    backoffMaxMs: bmax,
    random,
  });

  const readFallback = async (): Promise<Fetched | undefined> => {
    if (opts.fallbackFile === undefined) return undefined;
    let json: string;
    try {
      json = await readFile(opts.fallbackFile, 'utf8');
    } catch (err) {
      return { ok: false, retry: true, error: `reading ${opts.fallbackFile}: ${errMessage(err)}` };
    }
    const digest = sha256Hex(json);
    let rev: string;
    try {
      rev = (await readFile(join(dirname(opts.fallbackFile), REVISION_KEY), 'utf8')).trim();
    } catch {
      rev = digest;
    }
    // The revision is the digest of the table's JSON (the operator writes both keys from one table): two reads that
    // straddle a kubelet swap of the volume give one revision's table and the other's name. Read again later.
    if (rev !== digest)
      return {
        ok: false,
        retry: true,
        error: `${opts.fallbackFile}: its revision ${rev.slice(0, 12)} is not its table's (${digest.slice(0, 12)}): read while the volume was being updated; read again`,
      };
    const table = parseTableJson(json);
    if (typeof table === 'string')
      return { ok: false, retry: false, error: `${opts.fallbackFile}: ${table}` };
    return { ok: true, table, revision: rev };
  };

  /** The mounted file's revision alone (the small key): what the file shows while the API is the source. */
  const readFileRevision = async (): Promise<string | undefined> => {
    if (opts.fallbackFile === undefined) return undefined;
    try {
      return (await readFile(join(dirname(opts.fallbackFile), REVISION_KEY), 'utf8')).trim();
    } catch {
      return undefined;
    }
  };

  /**
   * While the API is unreachable, a change of the mounted file's revision means the kubelet saw a newer one. While it
   * is reachable, the file's revision is only noted: a revision the file showed while the API was serving newer ones
   * is not newer when the API goes (it rolled a relay back from the API's latest to the file's older table).
   */
  let polling = false;
  let filePolls = 0;
  const pollFile = async (): Promise<void> => {
    if (timers.stopped || opts.fallbackFile === undefined) {
      polling = false;
      return;
    }
    filePolls++;
    if (apiReachable) {
      const shown = await readFileRevision();
      if (shown !== undefined) lastFileRevision = shown;
      later(filePollMs, () => void pollFile());
      return;
    }
    const r = await readFallback();
    if (r?.ok && r.table !== undefined && r.revision !== lastFileRevision) {
      lastFileRevision = r.revision;
      if (swap(r.table, r.revision, 'file'))
        log.info({ revision: r.revision }, 'routing: applied the mounted file (API unreachable)');
    }
    later(filePollMs, () => void pollFile());
  };
  function startFilePoll(): void {
    if (polling || opts.fallbackFile === undefined) return;
    polling = true;
    later(filePollMs, () => void pollFile());
  }

  const currentStatus = (): ConfigMapSourceStatus => ({
    revision,
    from,
    apiReachable,
    watching: loop.watching,
    lastError,
    fileRevision: lastFileRevision,
    filePolls,
  });

  return {
    async start(): Promise<ConfigMapSourceStatus> {
      // The file's revision at start: later changes of it while the API is down are newer tables.
      const file = await readFallback();
      if (file?.ok) lastFileRevision = file.revision;
      const ok = await loop.start();
      // the file's revision is followed from now on (noted while the API serves, applied when it is gone)
      startFilePoll();
      if (!ok && file?.ok && file.table !== undefined) {
        swap(file.table, file.revision, 'file');
        log.warn(
          { err: lastError, file: opts.fallbackFile },
          'routing: API server unreachable at start; serving the mounted file',
        );
      }
      if (revision === undefined && file !== undefined && !file.ok)
        lastError = `${lastError ?? 'no table'}; fallback: ${file.error}`;
      return currentStatus();
    },
    stop() {
      loop.stop();
    },
    status: currentStatus,
  };
}
