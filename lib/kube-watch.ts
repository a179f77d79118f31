// Watches that survive a quiet cluster. The one place for how long a watch lasts and how long the client waits on it;
// used by the operator's informers (operator/manager.ts) and by the relay's list + watch of its ConfigMap and Secret
// (relay/sources/list-watch.ts).
//
// @kubernetes/client-node 2.0.1's Watch gives up on a watch after `requestTimeoutMs` = 30 s without a byte from the
// server (dist/watch.js: an inactivity timer that aborts the request with "The operation was aborted due to
// timeout"). An API server sends nothing on a watch of a quiet object (a bookmark only when its watch cache's
// resourceVersion has moved), so every idle watch was torn down every 30 s. Here, as client-go's reflector does:
// - the server ends each watch: `timeoutSeconds` in [min, 2·min), 5–10 min by default (the jitter spreads the
//   re-watches of many clients);
// - the client's inactivity timeout is longer than any of those (2·min + 30 s), so it fires only on a connection
//   that died without a word;
// - bookmarks are on, so the re-watch after the server's close starts from a current resourceVersion (a 410 Gone
//   means a re-list, as always).
import { ListWatch, Watch } from '@kubernetes/client-node';
import type {
  Informer,
  KubeConfig,
  KubernetesObject,
  ListPromise,
  ObjectCache,
} from '@kubernetes/client-node';
import { setTimeout as delay } from 'node:timers/promises';

/** Shortest server-side watch duration by default: each watch asks for [300, 600) s, as client-go's reflector. */
const WATCH_TIMEOUT_MIN_SECONDS = 300;
/** How much longer than the longest server-side duration the client waits in silence before calling a watch dead. */
const CLIENT_TIMEOUT_MARGIN_MS = 30_000;
/** A watch that the server closed after at least this long was healthy: watch again at once. */
const HEALTHY_WATCH_MS = 1_000;

/** The server-side duration of one watch: [min, 2·min) seconds, whole. Pure. */
export function watchTimeoutSeconds(minSeconds: number, random: () => number): number {
  return Math.min(2 * minSeconds - 1, Math.floor(minSeconds * (1 + random())));
}

/** The client's inactivity timeout for watches of [min, 2·min) s: longer than any of them. Pure. */
export function clientTimeoutMs(minSeconds: number): number {
  return 2 * minSeconds * 1000 + CLIENT_TIMEOUT_MARGIN_MS;
}

/** The longest a quiet watch (no event, no bookmark) lasts with the default durations: 10 min 30 s. */
export const LONGEST_QUIET_WATCH_MS = clientTimeoutMs(WATCH_TIMEOUT_MIN_SECONDS);

/**
 * Whether a watch that ended without an error may be replaced at once (it saw an event, or the server kept it
 * open for a while); otherwise the caller backs off, so that a server or proxy that closes every watch at once
 * cannot make a client loop. Pure.
 */
export function watchWasHealthy(durationMs: number, sawEvents: boolean): boolean {
  return sawEvents || durationMs >= HEALTHY_WATCH_MS;
}

export interface WatchTimingOptions {
  /** Shortest server-side watch duration in seconds (an integer, at least 2); each watch asks for [min, 2·min). */
  minTimeoutSeconds?: number;
  random?: () => number;
}

type WatchCallback = (phase: string, apiObj: unknown, watchObj?: unknown) => void;
type QueryParams = Record<string, string | number | boolean | undefined>;

/**
 * client-node's Watch with the server ending each watch (timeoutSeconds, jittered), bookmarks on, and the client's
 * inactivity timeout longer than the server's duration.
 */
export class ServerTimedWatch extends Watch {
  readonly minTimeoutSeconds: number;
  readonly clientTimeoutMs: number;
  private readonly random: () => number;
  private watches = 0;
  private lastEvents = false;
  private lastEndedHealthy = true;

  constructor(kc: KubeConfig, opts: WatchTimingOptions = {}) {
    super(kc);
    const min = opts.minTimeoutSeconds ?? WATCH_TIMEOUT_MIN_SECONDS;
    if (!Number.isInteger(min) || min < 2)
      throw new Error(`watch minTimeoutSeconds: expected an integer of at least 2, got ${min}`);
    this.minTimeoutSeconds = min;
    this.clientTimeoutMs = clientTimeoutMs(min);
    this.random = opts.random ?? Math.random;
    // client-node 2.0.1 keeps the timeout in a private field that its timer reads each time it is armed; no option
    // sets it. Fail loudly if an upgrade renamed it, rather than go back to a 30 s teardown.
    if (typeof Reflect.get(this, 'requestTimeoutMs') !== 'number')
      throw new Error(
        '@kubernetes/client-node Watch has no numeric requestTimeoutMs: its watch timeout cannot be set (client-node upgraded?)',
      );
    Reflect.set(this, 'requestTimeoutMs', this.clientTimeoutMs);
  }

  /** Whether the last watch that ended normally may be replaced at once (see watchWasHealthy). */
  get lastWatchHealthy(): boolean {
    return this.lastEndedHealthy;
  }

  override watch(
    path: string,
    queryParams: QueryParams,
    callback: WatchCallback,
    done: (err: unknown) => void,
  ): Promise<AbortController> {
    const started = performance.now();
    const n = ++this.watches;
    this.lastEvents = false;
    return super.watch(
      path,
      {
        ...queryParams,
        allowWatchBookmarks: true,
        timeoutSeconds: watchTimeoutSeconds(this.minTimeoutSeconds, this.random),
      },
      (phase, apiObj, watchObj) => {
        if (this.watches === n) this.lastEvents = true;
        callback(phase, apiObj, watchObj);
      },
      (err: unknown) => {
        if (this.watches === n)
          this.lastEndedHealthy = watchWasHealthy(performance.now() - started, this.lastEvents);
        done(err);
      },
    );
  }
}

/**
 * client-node's informer (ListWatch) on a ServerTimedWatch. ListWatch re-watches from its resourceVersion after
 * the server's close, but first waits 1 s doubling to 30 s when no event came in between; after a healthy watch
 * (the server's timeout) it re-watches at once instead, so a quiet resource is never left unwatched.
 */
export function makeWatchInformer<T extends KubernetesObject>(
  kc: KubeConfig,
  path: string,
  list: ListPromise<T>,
  labelSelector?: string,
  timing: WatchTimingOptions = {},
): Informer<T> & ObjectCache<T> {
  const watch = new ServerTimedWatch(kc, timing);
  return new ListWatch<T>(path, watch, list, false, labelSelector, undefined, {
    delayFn: (ms) => (watch.lastWatchHealthy ? Promise.resolve() : delay(ms)),
  });
}
