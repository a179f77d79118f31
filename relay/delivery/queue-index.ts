// The engine's in-memory index of queued messages: one small entry per message (whether it is pending or deferred,
// which legs are in flight, what it waits on) and the queue gauges that follow it. The state itself stays in the
// spool's state file and is read when the message is due.
//
// mailroute_queue_messages{state} and mailroute_queue_legs_unroutable follow every add, remove and change at once (a
// scrape right after a 250 sees the message); the engine sets queue_oldest_seconds on a timer (oldestAgeSeconds).
//
// Exports: Entry, QueueIndex.
import type { RelayMetrics } from '../telemetry/metrics.ts';
import type { Forced } from './attempt.ts';
import type { Waiting } from './recovery.ts';
import type { MessageResults, TrackedMessage } from './results.ts';

/**
 * One queued message as the engine tracks it. A deferred message at rest holds no set and no result batch (about 100
 * bytes instead of 570): they are made when first used and let go again when it is deferred (rest()), so the queue a
 * long outage builds up costs less memory per message (docs/queue.md "A long outage").
 */
export class Entry implements TrackedMessage, Waiting {
  receivedAt: number;
  /**
   * When this process accepted the message (the engine's monotonic clock); undefined for a message it found in the
   * spool. Its age in the queue is then known whatever the wall clock did since (results.ts queueAge).
   */
  acceptedAt: number | undefined = undefined;
  /**
   * New mail: accepted (or a DSN spooled) by this process and not deferred yet. The scheduler's lane of new mail takes
   * turns with the rest (scheduler.ts). Cleared for good when every open leg waits for a retry.
   */
  fresh: boolean;
  kind: 'pending' | 'deferred' = 'pending';
  /** Deferred legs to try regardless of nextAttemptAt at the next look (attempt.ts Forced): flush, a recovery. */
  forced: Forced | undefined = undefined;
  /** The destinations its deferred legs wait on (recovery.ts keeps it). */
  waitingOn: object | undefined = undefined;
  /** A DSN for the message is being built and spooled (bounce.ts). */
  dsnBusy = false;
  /**
   * The DSN it owes could not go (its rate limit, or no route to the sender yet): not tried again before this time
   * (ms). Its legs are delivered meanwhile; undefined when nothing waits.
   */
  dsnAt: number | undefined = undefined;
  /** Being removed: no longer in the queue gauge (see QueueIndex.leaving). */
  leaving = false;
  /**
   * Its state was last seen waiting on copy legs alone (every leg of record final): what a spool volume low on space
   * may shed (shed.ts). Kept by the engine at every look and write.
   */
  copiesOnly = false;
  /** results.ts's batch of results not written yet; undefined when there is none. */
  results: MessageResults | undefined = undefined;
  private inflightSet: Set<number> | undefined = undefined;
  private blockedSet: Set<string> | undefined = undefined;

  constructor(receivedAt: number, fresh: boolean) {
    this.receivedAt = receivedAt;
    this.fresh = fresh;
  }

  /** Leg indexes with a transaction in flight. */
  get inflight(): Set<number> {
    return (this.inflightSet ??= new Set());
  }

  /** Destinations (destinationKey) this message waits on for a dispatch slot. */
  get blockedOn(): Set<string> {
    return (this.blockedSet ??= new Set());
  }

  /** Lets go of the sets while they are empty (the message is deferred: nothing in flight, no slot awaited). */
  rest(): void {
    if (this.inflightSet?.size === 0) this.inflightSet = undefined;
    if (this.blockedSet?.size === 0) this.blockedSet = undefined;
  }
}

export class QueueIndex {
  private readonly entries = new Map<string, Entry>();
  private readonly counts: Record<Entry['kind'], number> = { pending: 0, deferred: 0 };
  // Open legs held because their server left the table, per message.
  private readonly unroutable = new Map<string, number>();
  private unroutableTotal = 0;

  private readonly metrics: Pick<RelayMetrics, 'queueMessages' | 'queueLegsUnroutable'>;

  constructor(metrics: Pick<RelayMetrics, 'queueMessages' | 'queueLegsUnroutable'>) {
    this.metrics = metrics;
  }

  get(id: string): Entry | undefined {
    return this.entries.get(id);
  }

  has(id: string): boolean {
    return this.entries.has(id);
  }

  get size(): number {
    return this.entries.size;
  }

  ids(): string[] {
    return [...this.entries.keys()];
  }

  all(): IterableIterator<[string, Entry]> {
    return this.entries.entries();
  }

  count(kind: Entry['kind']): number {
    return this.counts[kind];
  }

  get unroutableLegs(): number {
    return this.unroutableTotal;
  }

  /** Messages with legs held (server gone). */
  heldIds(): string[] {
    return [...this.unroutable.keys()];
  }

  /** A new entry for a message received at receivedAt (ms), replacing any. fresh: new mail (Entry.fresh). */
  add(id: string, receivedAt: number, fresh = false): Entry {
    const e = new Entry(receivedAt, fresh);
    const old = this.entries.get(id);
    if (old && !old.leaving) this.bump(old.kind, -1);
    this.entries.set(id, e);
    this.bump(e.kind, 1);
    return e;
  }

  /**
   * The message is being removed (its last results are written with the removal): it leaves the queue gauge now,
   * before its files go, and the index when the removal is done (drop) or comes back if it failed (stay).
   */
  leaving(id: string, e: Entry): void {
    if (this.entries.get(id) !== e || e.leaving) return;
    e.leaving = true;
    this.bump(e.kind, -1);
  }

  stay(id: string, e: Entry): void {
    if (this.entries.get(id) !== e || !e.leaving) return;
    e.leaving = false;
    this.bump(e.kind, 1);
  }

  drop(id: string): void {
    this.setUnroutable(id, 0);
    const e = this.entries.get(id);
    if (!e) return;
    this.entries.delete(id);
    if (!e.leaving) this.bump(e.kind, -1);
  }

  setKind(id: string, e: Entry, kind: Entry['kind']): void {
    if (kind === 'deferred') {
      e.fresh = false;
      e.rest();
    }
    if (e.kind === kind) return;
    const old = e.kind;
    e.kind = kind;
    // Only the entry in the map is counted (a dropped entry may still be rescheduled once).
    if (this.entries.get(id) !== e || e.leaving) return;
    this.bump(old, -1);
    this.bump(kind, 1);
  }

  /** The number of the message's open legs held because their server is gone. */
  setUnroutable(id: string, n: number): void {
    const before = this.unroutable.get(id) ?? 0;
    if (n === before) return;
    if (n === 0) this.unroutable.delete(id);
    else this.unroutable.set(id, n);
    this.unroutableTotal += n - before;
    this.metrics.queueLegsUnroutable.set(this.unroutableTotal);
  }

  oldestAgeSeconds(now: number): number {
    let oldest = Infinity;
    for (const e of this.entries.values()) if (e.receivedAt < oldest) oldest = e.receivedAt;
    return Number.isFinite(oldest) ? Math.max(0, (now - oldest) / 1000) : 0;
  }

  private bump(kind: Entry['kind'], by: number): void {
    this.counts[kind] += by;
    this.metrics.queueMessages.set({ state: kind }, this.counts[kind]);
  }
}
