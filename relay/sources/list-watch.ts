// One named Kubernetes object, kept current: list it (fieldSelector metadata.name=NAME), hand it over, watch from
// the list's resourceVersion. The server ends each watch after its timeoutSeconds (5–10 min, lib/kube-watch.ts,
// with bookmarks, so the resourceVersion stays current on a quiet cluster): the loop then watches again from the
// last resourceVersion, without a list. Only a watch that ends with an error (410 Gone: the resourceVersion is
// forgotten) is followed by a list, after a jittered backoff. A watch from a resourceVersion misses nothing, so
// there is no periodic re-list: a quiet cluster costs one open watch per object and no lists. Used by the routing
// ConfigMap source (configmap.ts) and the credentials Secret watch (credentials.ts), which differ only in what they
// do with the object and how they report trouble.
//
//   list ──> onList(obj) ──> watch(rv) ──events, bookmarks (rv)──> onEvent(type, obj)
//     ▲                        │  ▲
//     │                        │  └── server's close: watch again from rv at once (backoff if it lasted < 1 s)
//     └── error: backoff ──────┘      (410 Gone: forget rv)
import { watchWasHealthy, type ServerTimedWatch } from '../../lib/kube-watch.ts';
import { safeDelay } from '../../routing/timer.ts';

export interface SourceLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
}

/** Jittered exponential backoff: attempt 0 -> ~min, doubling up to max; ±25 %. Pure. */
export function backoffMs(attempt: number, min: number, max: number, random: () => number): number {
  const base = Math.min(max, min * 2 ** Math.min(attempt, 30));
  return Math.round(base * (0.75 + 0.5 * random()));
}

/** The HTTP status of a client-node error (or of a watch ERROR event), if it has one. */
export function httpCode(err: unknown): number | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const code =
    (err as { code?: unknown; statusCode?: unknown }).code ?? (err as { statusCode?: unknown }).statusCode;
  return typeof code === 'number' ? code : undefined;
}

/**
 * Watches the one object called `name` at a collection path (fieldSelector metadata.name; the ServerTimedWatch adds
 * bookmarks and the server-side timeout). `onDone` is called exactly once when the watch ends (undefined: the server
 * closed it; an ERROR event ends it with the API's code); the returned function aborts.
 */
export async function watchNamed<T>(
  watcher: ServerTimedWatch,
  path: string,
  name: string,
  resourceVersion: string | undefined,
  onEvent: (type: string, obj: T) => void,
  onDone: (err: unknown) => void,
): Promise<() => void> {
  let done = false;
  const finish = (err: unknown): void => {
    if (done) return;
    done = true;
    onDone(err);
  };
  const ctl = await watcher.watch(
    path,
    {
      fieldSelector: `metadata.name=${name}`,
      ...(resourceVersion !== undefined ? { resourceVersion } : {}),
    },
    (type: string, obj: unknown) => {
      if (type === 'ERROR') {
        const status = obj as { code?: number; message?: string };
        finish(
          Object.assign(new Error(`watch error: ${status.message ?? 'unknown'}`), { code: status.code }),
        );
        return;
      }
      onEvent(type, obj as T);
    },
    (err: unknown) => finish(err ?? undefined),
  );
  return () => {
    done = true;
    ctl.abort();
  };
}

/** Timers that all die with stop(): a stopped source never runs another callback. */
export interface Timers {
  readonly later: (ms: number, fn: () => void) => void;
  readonly stopped: boolean;
  readonly stop: () => void;
}

export function createTimers(): Timers {
  let stopped = false;
  const timers = new Set<NodeJS.Timeout>();
  return {
    later: (ms, fn) => {
      if (stopped) return;
      const t = setTimeout(() => {
        timers.delete(t);
        if (!stopped) fn();
      }, safeDelay(ms));
      timers.add(t);
    },
    get stopped() {
      return stopped;
    },
    stop: () => {
      stopped = true;
      for (const t of timers) clearTimeout(t);
      timers.clear();
    },
  };
}

type WithResourceVersion = { metadata?: { resourceVersion?: string } | undefined };

export interface ListWatchOptions<T extends WithResourceVersion> {
  /** Lists the one object: it (undefined when absent) and the list's resourceVersion. Throws when unreachable. */
  list(): Promise<{ obj: T | undefined; resourceVersion: string | undefined }>;
  /** Watches it from resourceVersion; `onDone` exactly once when the watch ends; the result aborts it. */
  watch(
    resourceVersion: string | undefined,
    onEvent: (type: string, obj: T) => void,
    onDone: (err: unknown) => void,
  ): Promise<() => void>;
  /** The object as listed (undefined: it does not exist). Awaited before the next watch starts. */
  onList(obj: T | undefined): Promise<void> | void;
  /** A watch event: ADDED, MODIFIED, DELETED (bookmarks only move the resourceVersion). */
  onEvent(type: string, obj: T): void;
  /** A list failed (the API server cannot be reached, or onList threw); the loop retries with backoff. */
  onListError(err: unknown): void;
  /** A watch ended with an error; the loop re-lists (after a backoff) and watches again. */
  onWatchError(err: unknown): void;
  /** Shared with the caller, so that its own timers stop together with the loop. */
  timers: Timers;
  backoffMinMs?: number;
  backoffMaxMs?: number;
  random?: () => number;
  /** Clock for how long a watch lasted: monotonic milliseconds. Default performance.now() (a step of the wall clock
   * forward made a watch closed at once look healthy, re-watched with no backoff). */
  now?: () => number;
}

export interface ListWatch {
  /** Lists once; true when that worked (a watch then starts), false when it failed (retried in the background). */
  start(): Promise<boolean>;
  /** Lists now and hands the object over (the caller's own re-check, e.g. for missing shards); false when it failed. */
  relist(): Promise<boolean>;
  readonly watching: boolean;
  stop(): void;
}

export function startListWatch<T extends WithResourceVersion>(o: ListWatchOptions<T>): ListWatch {
  const bmin = o.backoffMinMs ?? 200;
  const bmax = o.backoffMaxMs ?? 10_000;
  const random = o.random ?? Math.random;
  const now = o.now ?? (() => performance.now());
  const { timers } = o;
  let resourceVersion: string | undefined;
  let abortWatch: (() => void) | undefined;
  let failures = 0;

  /** Never rejects: a failed list (or a throw of onList) goes to onListError. */
  const relist = async (): Promise<boolean> => {
    try {
      const listed = await o.list();
      resourceVersion = listed.resourceVersion;
      await o.onList(listed.obj);
      return true;
    } catch (err) {
      o.onListError(err);
      return false;
    }
  };

  const watch = async (): Promise<void> => {
    if (timers.stopped) return;
    let eventsSeen = false;
    const started = now();
    const onDone = (err: unknown): void => {
      abortWatch = undefined;
      if (timers.stopped) return;
      const lasted = now() - started;
      if (err === undefined || err === null) {
        // The server's close (its timeoutSeconds): watch again from the last resourceVersion, without a list; at
        // once after a healthy watch, after a backoff when the server closed it straight away.
        if (watchWasHealthy(lasted, eventsSeen)) {
          failures = 0;
          timers.later(0, () => void watch());
        } else timers.later(backoffMs(failures++, bmin, bmax, random), () => void watch());
        return;
      }
      o.onWatchError(err);
      if (httpCode(err) === 410) resourceVersion = undefined;
      // a watch that delivered events, or lasted, was healthy: start the backoff over
      if (eventsSeen || lasted > 30_000) failures = 0;
      timers.later(backoffMs(failures++, bmin, bmax, random), () => void restart());
    };
    try {
      abortWatch = await o.watch(
        resourceVersion,
        (type, obj) => {
          eventsSeen = true;
          const rv = obj.metadata?.resourceVersion;
          if (rv !== undefined) resourceVersion = rv;
          if (type !== 'BOOKMARK') o.onEvent(type, obj);
        },
        onDone,
      );
      if (timers.stopped) abortWatch();
    } catch (err) {
      onDone(err);
    }
  };

  /** After a watch failed: list again, then watch again. */
  const restart = async (): Promise<void> => {
    if (timers.stopped) return;
    if (!(await relist())) {
      timers.later(backoffMs(failures++, bmin, bmax, random), () => void restart());
      return;
    }
    await watch();
  };

  return {
    async start() {
      const ok = await relist();
      if (ok) void watch();
      else timers.later(backoffMs(failures++, bmin, bmax, random), () => void restart());
      return ok;
    },
    relist,
    get watching() {
      return abortWatch !== undefined;
    },
    stop() {
      timers.stop();
      abortWatch?.();
      abortWatch = undefined;
    },
  };
}
