// Supervises one @kubernetes/client-node informer. The client's ListWatch stops for good after any non-410
// error (kubernetes-client/javascript#795, #1933, #596): it calls the error callbacks and returns. So:
// - after any error, a NEW informer is made and started, with jittered exponential backoff;
// - every relistIntervalMs the informer is replaced by a fresh one (a full re-list), which also repairs a watch that
//   silently stopped delivering;
// - a watchdog replaces the informer when neither an event nor a (re)connect was seen for watchdogMs (the informer
//   re-watches at least every LONGEST_QUIET_WATCH_MS on a quiet resource (lib/kube-watch.ts: the server ends each watch,
//   and the client gives up on a silent one), so longer silence means the informer itself is stuck);
// - the consumer reads objects through the supervisor (list/get) and gets onResync() after every (re)list, so a
//   level-based controller recomputes from the cache and nothing missed during an outage is lost.

import type { Informer, KubernetesObject, ObjectCache } from '@kubernetes/client-node';
import type { Timers } from './workqueue.ts';
import { realTimers } from './workqueue.ts';

export type InformerLike<T extends KubernetesObject> = Informer<T> & ObjectCache<T>;
export type InformerEvent = 'add' | 'update' | 'delete';

export interface Logger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface SupervisorOptions<T extends KubernetesObject> {
  name: string;
  make: () => InformerLike<T>;
  onEvent: (type: InformerEvent, obj: T) => void;
  onResync: () => void;
  logger: Logger;
  timers?: Timers;
  random?: () => number;
  relistIntervalMs?: number;
  watchdogMs?: number;
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  /** A start (list + watch request) taking longer than this counts as failed. Default 60 s. */
  startTimeoutMs?: number;
  onRestart?: (reason: string) => void;
}

/** The watchdog's default: longer than the longest quiet watch (LONGEST_QUIET_WATCH_MS, 10 min 30 s). */
export const DEFAULT_WATCHDOG_MS = 15 * 60_000;

export interface InformerHealth {
  name: string;
  synced: boolean;
  healthy: boolean;
  restarts: number;
  lastError: string | undefined;
  /** When the informer last listed (ms since the epoch, for display). */
  lastSyncAt: number | undefined;
  /** When the current run of failures began (ms since the epoch, for display; undefined while healthy). */
  failingSince: number | undefined;
  /** How long the current run of failures has lasted, on the monotonic clock (undefined while healthy). */
  failingForMs: number | undefined;
}

/** Exponential backoff with full jitter in [d/2, d]: base * 2^attempt capped at max. */
export function jitteredBackoff(
  attempt: number,
  baseMs: number,
  maxMs: number,
  random: () => number,
): number {
  const d = Math.min(maxMs, baseMs * 2 ** attempt);
  return Math.round(d / 2 + (random() * d) / 2);
}

export class InformerSupervisor<T extends KubernetesObject> {
  readonly name: string;
  private readonly opts: SupervisorOptions<T>;
  private readonly timers: Timers;
  private current: InformerLike<T> | undefined;
  private generation = 0;
  private attempts = 0;
  private restarts = 0;
  private lastError: string | undefined;
  private lastSyncAt: number | undefined;
  private lastActivity = 0;
  private failing = false;
  /** When the current run of failures began: on the wall clock (shown) and on the timers' monotonic clock (aged). */
  private failingSince: { wall: number; at: number } | undefined;
  private stopped = true;
  private restartTimer: unknown;
  private relistTimer: unknown;
  private watchdogTimer: unknown;
  private starting = false;
  private firstSync: Promise<void>;
  private resolveFirstSync: () => void = () => undefined;

  constructor(opts: SupervisorOptions<T>) {
    this.name = opts.name;
    this.opts = opts;
    this.timers = opts.timers ?? realTimers;
    this.firstSync = new Promise<void>((r) => (this.resolveFirstSync = r));
  }

  /** Starts the informer; resolves after the first successful list (retrying with backoff until then). */
  async start(): Promise<void> {
    this.stopped = false;
    this.scheduleWatchdog();
    void this.restart('start');
    await this.firstSync;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.generation++;
    this.timers.clearTimeout(this.restartTimer);
    this.timers.clearTimeout(this.relistTimer);
    this.timers.clearTimeout(this.watchdogTimer);
    const c = this.current;
    this.current = undefined;
    await c?.stop();
  }

  list(namespace?: string): readonly T[] {
    return this.current?.list(namespace) ?? [];
  }

  get(name: string, namespace?: string): T | undefined {
    return this.current?.get(name, namespace);
  }

  health(): InformerHealth {
    return {
      name: this.name,
      synced: this.lastSyncAt !== undefined,
      healthy: this.lastSyncAt !== undefined && !this.failing,
      restarts: this.restarts,
      lastError: this.lastError,
      lastSyncAt: this.lastSyncAt,
      failingSince: this.failingSince?.wall,
      failingForMs: this.failingSince === undefined ? undefined : this.timers.now() - this.failingSince.at,
    };
  }

  private scheduleWatchdog(): void {
    const every = this.opts.watchdogMs ?? DEFAULT_WATCHDOG_MS;
    this.watchdogTimer = this.timers.setTimeout(
      () => {
        if (this.stopped) return;
        if (!this.starting && this.current !== undefined && this.timers.now() - this.lastActivity > every) {
          this.opts.logger.warn(
            { informer: this.name, silentMs: this.timers.now() - this.lastActivity },
            'informer watchdog: no events, restarting',
          );
          void this.restart('watchdog');
        }
        this.scheduleWatchdog();
      },
      Math.max(100, Math.floor(every / 4)),
    );
  }

  private scheduleRelist(): void {
    this.timers.clearTimeout(this.relistTimer);
    this.relistTimer = this.timers.setTimeout(() => {
      if (!this.stopped) void this.restart('periodic re-list');
    }, this.opts.relistIntervalMs ?? 600_000);
  }

  private fail(gen: number, err: unknown): void {
    if (gen !== this.generation || this.stopped) return;
    this.failing = true;
    this.failingSince ??= { wall: Date.now(), at: this.timers.now() };
    this.lastError = err instanceof Error ? err.message : String(err);
    const delay = jitteredBackoff(
      this.attempts++,
      this.opts.backoffBaseMs ?? 500,
      this.opts.backoffMaxMs ?? 30_000,
      this.opts.random ?? Math.random,
    );
    this.opts.logger.warn(
      { informer: this.name, err: this.lastError, retryInMs: delay },
      'informer failed, restarting with backoff',
    );
    this.generation++; // ignore anything the broken informer still reports
    this.timers.clearTimeout(this.restartTimer);
    this.restartTimer = this.timers.setTimeout(() => void this.restart('error'), delay);
  }

  private async restart(reason: string): Promise<void> {
    if (this.stopped || this.starting) return;
    this.starting = true;
    const gen = ++this.generation;
    if (reason !== 'start') {
      this.restarts++;
      this.opts.onRestart?.(reason);
    }
    let inf: InformerLike<T>;
    try {
      inf = this.opts.make();
    } catch (err) {
      this.starting = false;
      this.fail(gen, err);
      return;
    }
    let failedDuringStart: unknown;
    let live = false;
    const touch = (): void => {
      this.lastActivity = this.timers.now();
    };
    for (const type of ['add', 'update', 'delete'] as const) {
      inf.on(type, (obj: T) => {
        if (gen !== this.generation) return;
        touch();
        if (live) this.opts.onEvent(type, obj);
      });
    }
    inf.on('connect', () => {
      if (gen === this.generation) touch();
    });
    inf.on('error', (err: unknown) => {
      if (!live) {
        failedDuringStart ??= err ?? new Error('informer error');
        return;
      }
      this.fail(gen, err);
    });
    // The client's list call has no timeout of its own: a start that hangs counts as a failure.
    const startTimeoutMs = this.opts.startTimeoutMs ?? 60_000;
    let timer: unknown;
    try {
      await Promise.race([
        inf.start(),
        new Promise<never>((_, reject) => {
          timer = this.timers.setTimeout(
            () => reject(new Error(`informer start timed out after ${startTimeoutMs} ms`)),
            startTimeoutMs,
          );
        }),
      ]);
    } catch (err) {
      failedDuringStart ??= err;
    } finally {
      this.timers.clearTimeout(timer);
    }
    this.starting = false;
    if (failedDuringStart !== undefined || gen !== this.generation || this.stopped) {
      await inf.stop().catch(() => undefined);
      if (failedDuringStart !== undefined) this.fail(gen, failedDuringStart);
      return;
    }
    const old = this.current;
    this.current = inf;
    live = true;
    touch();
    this.attempts = 0;
    this.failing = false;
    this.failingSince = undefined;
    this.lastSyncAt = Date.now();
    await old?.stop().catch(() => undefined);
    this.scheduleRelist();
    if (reason !== 'start') this.opts.logger.info({ informer: this.name, reason }, 'informer (re)listed');
    this.opts.onResync();
    this.resolveFirstSync();
  }
}
