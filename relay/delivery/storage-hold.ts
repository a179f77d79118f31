// Attempt results the spool could not record: kept in memory and written again, never sent again. And delivery paused
// while the spool takes no writes at all: a volume the kernel remounted read-only after an I/O error (ext4
// errors=remount-ro: EROFS), or a device that fails (EIO).
//
// Without it, an attempt whose result could not be written was repeated at the next retry step: a message delivered
// to the primary while its copy was still deferred went to the primary again every minute for as long as the volume
// stayed read-only. Now:
// - the results of such an attempt are kept in memory (results.ts) and written again here; the attempt is not
//   repeated: its legs stay in flight, so nothing sends them again; the transaction itself is over, so its
//   destination's slot is free for the next one (on a full disk, 16 kept deferrals held every slot of their server
//   before, and no delivery that would have freed room could go out);
// - on EROFS or EIO no other message is looked at (its attempt's result could not be recorded either): each look asks
//   `hold(id)` and the message waits here. Other errors do not pause: on a full disk (ENOSPC, EDQUOT) delivery is what
//   frees room (a delivered message's files are removed, which a full disk allows), so it goes on; and a batch of
//   deferrals alone a full disk refused is not kept at all (results.ts): kept, its legs waited for a write that, with
//   nothing delivered, never succeeded;
// - one kept write is tried again after 1 s, then 2, 4 ... at most 30 s (a probe, not a storm of writes);
// - the first write that succeeds (a probe, or any other) ends it: every kept write goes again, every waiting message
//   is looked at.
// A relay that stops while results are kept gives them up (results.ts): those attempts repeat at the next start,
// at-least-once. mailroute_delivery_paused and mailroute_results_unrecorded report it; /readyz already reports a spool
// it cannot write.
//
// Exports: StorageHold (one per delivery engine), pausesDelivery(err) (pure).
import type { Logger } from 'pino';
import type { RelayMetrics } from '../telemetry/metrics.ts';
import type { TimerHandle, Timers } from './scheduler.ts';

export interface StorageHoldDeps {
  timers: Timers;
  log: Logger;
  metrics: Pick<RelayMetrics, 'deliveryPaused' | 'resultsUnrecorded'>;
  /** The monotonic clock (ms): how long delivery was paused. */
  elapsed: () => number;
  /** Looks at a message that waited here. */
  wake: (id: string) => void;
  /** The first wait before a kept write is tried again (default 1 s); it doubles up to maxRetryMs (default 30 s). */
  firstRetryMs?: number;
  maxRetryMs?: number;
}

const errCode = (err: unknown): string =>
  (err as NodeJS.ErrnoException | null)?.code ?? (err instanceof Error ? err.message : String(err));

/** Errors that mean the spool takes no writes at all (read-only, or a failing device): delivery pauses. */
const PAUSING: ReadonlySet<string> = new Set(['EROFS', 'EIO']);

/** Whether a failed state write pauses delivery (pure). */
export function pausesDelivery(err: unknown): boolean {
  return PAUSING.has((err as NodeJS.ErrnoException | null)?.code ?? '');
}

export class StorageHold {
  private readonly d: StorageHoldDeps;
  /** Messages whose results could not be written: the call that writes them again. */
  private readonly kept = new Map<string, () => Promise<void>>();
  /** Messages looked at while paused. */
  private readonly waiting = new Set<string>();
  /** Since when (monotonic ms) results are kept; undefined: none. */
  private troubleAt: number | undefined;
  /** Delivery is paused (EROFS, EIO) rather than going on beside the kept results. */
  private pausing = false;
  private timer: TimerHandle | undefined;
  private retryMs: number;
  /** The message whose kept write is being tried again. */
  private probing: string | undefined;

  constructor(d: StorageHoldDeps) {
    this.d = d;
    this.retryMs = d.firstRetryMs ?? 1000;
  }

  get paused(): boolean {
    return this.pausing;
  }

  /** Messages whose results are kept. */
  get unrecorded(): number {
    return this.kept.size;
  }

  /** The results of message `id` could not be written: `again` writes them again. Pauses delivery on EROFS, EIO. */
  failed(id: string, err: unknown, again: () => Promise<void>): void {
    this.kept.set(id, again);
    this.d.metrics.resultsUnrecorded.set(this.kept.size);
    const first = this.troubleAt === undefined;
    if (first) {
      this.troubleAt = this.d.elapsed();
      this.retryMs = this.d.firstRetryMs ?? 1000;
    }
    if (!this.pausing && pausesDelivery(err)) {
      this.pausing = true;
      this.d.metrics.deliveryPaused.set(1);
      this.d.log.error(
        { err, queueId: id },
        'delivery paused: the spool takes no writes; attempt results are kept in memory and written again, and no attempt is repeated meanwhile',
      );
    } else if (first) {
      this.d.log.error(
        { err, queueId: id },
        'delivery: the spool refused a state write; attempt results are kept in memory and written again (not repeated)',
      );
    }
    if (first) {
      this.arm();
    } else if (this.probing === id) {
      this.probing = undefined;
      this.d.log.warn(
        { code: errCode(err), queueId: id, unrecorded: this.kept.size, retryInMs: this.retryMs },
        'delivery: the spool still takes no writes; trying again',
      );
      this.arm();
    }
  }

  /** A write of results succeeded: every kept write goes again, and delivery resumes if it was paused. */
  wrote(id: string): void {
    if (this.troubleAt === undefined) return;
    if (this.probing === id) this.probing = undefined;
    const troubleMs = Math.round(this.d.elapsed() - this.troubleAt);
    const paused = this.pausing;
    this.troubleAt = undefined;
    this.pausing = false;
    if (this.timer !== undefined) this.d.timers.clear(this.timer);
    this.timer = undefined;
    this.d.metrics.deliveryPaused.set(0);
    const again = [...this.kept.values()];
    const waiting = [...this.waiting];
    this.kept.clear();
    this.waiting.clear();
    this.d.metrics.resultsUnrecorded.set(0);
    this.d.log.info(
      { troubleMs, written: again.length, waiting: waiting.length },
      paused
        ? 'delivery resumed: the spool takes writes again'
        : 'delivery: the spool takes state writes again',
    );
    for (const w of again) void w();
    for (const w of waiting) this.d.wake(w);
  }

  /** A look at message `id`: true when delivery is paused (the message waits here and is looked at on resume). */
  hold(id: string): boolean {
    if (!this.pausing) return false;
    this.waiting.add(id);
    return true;
  }

  /** The message is gone (deleted, complete): nothing of it is kept or waits. */
  forget(id: string): void {
    this.waiting.delete(id);
    if (this.kept.delete(id)) this.d.metrics.resultsUnrecorded.set(this.kept.size);
  }

  /**
   * The engine stops: every kept write is tried once more (results.ts gives up on one that fails while stopping, and
   * the attempt repeats at the next start); resolves when they are done. Nothing is armed afterwards.
   */
  stop(): Promise<void> {
    if (this.timer !== undefined) this.d.timers.clear(this.timer);
    this.timer = undefined;
    this.troubleAt = undefined;
    this.pausing = false;
    this.waiting.clear();
    const again = [...this.kept.values()];
    this.kept.clear();
    this.d.metrics.resultsUnrecorded.set(0);
    this.d.metrics.deliveryPaused.set(0);
    return Promise.all(again.map((w) => w())).then(() => undefined);
  }

  private arm(): void {
    if (this.timer !== undefined) this.d.timers.clear(this.timer);
    const ms = this.retryMs;
    this.retryMs = Math.min(ms * 2, this.d.maxRetryMs ?? 30_000);
    this.timer = this.d.timers.set(() => {
      this.timer = undefined;
      this.probe();
    }, ms);
  }

  /** Tries one kept write again; with none left (every such message deleted), resumes. */
  private probe(): void {
    const first = this.kept.entries().next();
    if (first.done === true) {
      this.wrote('');
      return;
    }
    const [id, again] = first.value;
    this.kept.delete(id);
    this.probing = id;
    void again();
  }
}
