// A keyed, de-duplicating work queue with per-key exponential backoff (client-go's workqueue semantics):
// - a key waiting in the queue is held once, however often it is added;
// - a key is never handed to two workers at once: adding it while it is processed marks it dirty, and it is
//   queued again when the worker is done;
// - failures requeue with base * 2^failures (capped; a handler may cap its own key lower: maxBackoffMs), success
//   forgets the failures;
// - a handler may ask to be called again after a delay (requeueAfterMs), e.g. at a TestRecipient's expiresAt.
//   That delay can be months: timers are armed for at most a day (safeDelay) and re-armed until the moment comes.

import { safeDelay } from '../../routing/timer.ts';

export interface Timers {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/**
 * Node's timers, unref'd, each armed for at most a day (safeDelay): a longer wait must re-arm. `now` is the monotonic
 * clock (performance.now): every time kept against it is a duration (backoff, a requeue delay, a lease's observed
 * age, an informer's silence), which a step of the wall clock (NTP at boot, a resumed VM) must not stretch or cut. A
 * handler that waits for a wall-clock moment (a TestRecipient's expiresAt) computes its delay from the wall clock and
 * is asked again when it comes.
 */
export const realTimers: Timers = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, safeDelay(ms));
    t.unref();
    return t;
  },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

export interface QueueMetrics {
  depth(n: number): void;
  added(): void;
  retried(): void;
  /** seconds a key waited in the queue */
  queued(seconds: number): void;
  /** seconds a worker spent on a key */
  worked(seconds: number): void;
}

export type ReconcileOutcome =
  | { ok: true; requeueAfterMs?: number }
  | {
      ok: false;
      error: string;
      requeueAfterMs?: number;
      /**
       * The longest this failure's retry may wait (the backoff is capped here, below the queue's maxDelayMs): a key
       * whose retry is cheap and whose cause may be fixed without any event (the routing table's write) is tried
       * again this often at least.
       */
      maxBackoffMs?: number;
    };

export interface WorkQueueOptions {
  name: string;
  baseDelayMs?: number;
  maxDelayMs?: number;
  timers?: Timers;
  metrics?: QueueMetrics;
  /** Called with (key, outcome, seconds) after every handler run. */
  onResult?: (
    key: string,
    outcome: ReconcileOutcome | { ok: false; error: string; thrown: true },
    seconds: number,
  ) => void;
}

export type Handler = (key: string) => Promise<ReconcileOutcome>;

export class WorkQueue {
  readonly name: string;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly timers: Timers;
  private readonly metrics: QueueMetrics | undefined;
  private readonly onResult: WorkQueueOptions['onResult'];
  private readonly queue: string[] = [];
  private head = 0;
  private readonly dirty = new Map<string, number>(); // key -> time added (queued, not yet taken)
  private readonly processing = new Set<string>();
  private readonly failures = new Map<string, number>();
  private readonly delayed = new Map<string, { at: number; handle: unknown }>();
  private readonly waiters: (() => void)[] = [];
  private shuttingDown = false;
  private idleWaiters: (() => void)[] = [];

  constructor(opts: WorkQueueOptions) {
    this.name = opts.name;
    this.baseDelayMs = opts.baseDelayMs ?? 5;
    this.maxDelayMs = opts.maxDelayMs ?? 300_000;
    this.timers = opts.timers ?? realTimers;
    this.metrics = opts.metrics;
    this.onResult = opts.onResult;
  }

  get length(): number {
    return this.queue.length - this.head;
  }

  /** Queue the key now (no-op if it is already queued; re-queued after the worker if it is being processed). */
  add(key: string): void {
    if (this.shuttingDown) return;
    if (this.dirty.has(key)) return;
    this.metrics?.added();
    this.dirty.set(key, this.timers.now());
    if (this.processing.has(key)) return;
    this.queue.push(key);
    this.metrics?.depth(this.length);
    this.waiters.shift()?.();
  }

  /** Queue the key after ms; an earlier pending delay for the key wins. */
  addAfter(key: string, ms: number): void {
    if (this.shuttingDown) return;
    if (ms <= 0) return this.add(key);
    const at = this.timers.now() + ms;
    const existing = this.delayed.get(key);
    if (existing !== undefined) {
      if (existing.at <= at) return;
      this.timers.clearTimeout(existing.handle);
    }
    const entry: { at: number; handle: unknown } = { at, handle: undefined };
    const arm = (): void => {
      entry.handle = this.timers.setTimeout(
        () => {
          if (this.timers.now() < at) return arm(); // capped at a day: not due yet
          this.delayed.delete(key);
          this.add(key);
        },
        safeDelay(at - this.timers.now()),
      );
    };
    arm();
    this.delayed.set(key, entry);
  }

  /** Queue the key after its backoff: base * 2^failures, capped at maxDelay (and at `maxBackoffMs` when given). */
  addRateLimited(key: string, maxBackoffMs?: number): number {
    const n = this.failures.get(key) ?? 0;
    this.failures.set(key, n + 1);
    const delay = Math.min(this.maxDelayMs, maxBackoffMs ?? Infinity, this.baseDelayMs * 2 ** n);
    this.metrics?.retried();
    this.addAfter(key, delay);
    return delay;
  }

  forget(key: string): void {
    this.failures.delete(key);
  }

  failuresOf(key: string): number {
    return this.failures.get(key) ?? 0;
  }

  private async take(): Promise<string | undefined> {
    while (this.length === 0) {
      if (this.shuttingDown) return undefined;
      await new Promise<void>((r) => this.waiters.push(r));
    }
    const key = this.queue[this.head++] as string;
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue.splice(0, this.head);
      this.head = 0;
    }
    const addedAt = this.dirty.get(key) ?? this.timers.now();
    this.dirty.delete(key);
    this.processing.add(key);
    this.metrics?.depth(this.length);
    this.metrics?.queued((this.timers.now() - addedAt) / 1000);
    return key;
  }

  private done(key: string): void {
    this.processing.delete(key);
    if (this.dirty.has(key)) {
      this.queue.push(key);
      this.metrics?.depth(this.length);
      this.waiters.shift()?.();
    }
    if (this.processing.size === 0 && this.length === 0) {
      const w = this.idleWaiters;
      this.idleWaiters = [];
      for (const f of w) f();
    }
  }

  /** Runs `workers` loops until shutdown(). Resolves when they all stopped. */
  async run(handler: Handler, workers = 1): Promise<void> {
    const loop = async (): Promise<void> => {
      for (;;) {
        const key = await this.take();
        if (key === undefined) return;
        const started = this.timers.now();
        let outcome: ReconcileOutcome;
        let thrown = false;
        try {
          outcome = await handler(key);
        } catch (err) {
          thrown = true;
          outcome = { ok: false, error: err instanceof Error ? (err.stack ?? err.message) : String(err) };
        }
        const seconds = (this.timers.now() - started) / 1000;
        this.metrics?.worked(seconds);
        this.onResult?.(
          key,
          thrown ? { ok: false, error: outcome.ok ? '' : outcome.error, thrown: true } : outcome,
          seconds,
        );
        if (outcome.ok) {
          this.forget(key);
          if (outcome.requeueAfterMs !== undefined) this.addAfter(key, outcome.requeueAfterMs);
        } else if (outcome.requeueAfterMs !== undefined) {
          this.addAfter(key, outcome.requeueAfterMs);
        } else {
          this.addRateLimited(key, outcome.maxBackoffMs);
        }
        this.done(key);
      }
    };
    await Promise.all(Array.from({ length: workers }, () => loop()));
  }

  /** Resolves when nothing is queued or processing (delayed keys do not count). */
  async idle(): Promise<void> {
    if (this.processing.size === 0 && this.length === 0) return;
    await new Promise<void>((r) => this.idleWaiters.push(r));
  }

  shutdown(): void {
    this.shuttingDown = true;
    for (const d of this.delayed.values()) this.timers.clearTimeout(d.handle);
    this.delayed.clear();
    for (const w of this.waiters.splice(0)) w();
  }
}
