// Recording attempt results: the coalesced state write.
//
// A result waits up to coalesceMs for the other legs of the same message still in flight, so that a dual message
// whose legs finish together costs one write (or none: when every leg is final and no DSN is owed the message is
// removed instead of rewritten). Each reply goes through decideLeg() (outcome.ts); the leg states are written in one
// spool.update. A crash in the window only repeats an attempt. After the write, `written` (the engine) decides what
// comes next for the message (a DSN, removal, or its next due time). A write that fails keeps the batch, its legs in
// flight, for storage-hold.ts to write again: the attempts are not repeated while the spool takes no writes (stopping
// gives them up instead: they repeat at the next start). A batch of deferrals alone that a full volume refused is
// given up too: it recorded nothing a retry could repeat wrongly, and kept, it held its legs until a write succeeded,
// which on a full volume only deliveries would have made possible.
//
// Hook point: `onLegFinal` (optional) is told of every leg whose attempt made it final (delivered, failed or
// suppressed) once that state is durable; a result that could not be written is not reported (it will be repeated).
//
// Exports: Results (one per engine), MessageResults (the per-message batch, made and let go of here),
// PendingResult, Written, LegFinal.
import type { Logger } from 'pino';
import { isFinalLeg, type LegState, type Spool, type SpoolState } from '../spool/types.ts';
import type { RelayMetrics } from '../telemetry/metrics.ts';
import type { AttemptResult, Job } from './attempt.ts';
import { applyOutcome, decideLeg, type LegOutcome } from './outcome.ts';
import type { TimerHandle, Timers } from './scheduler.ts';
import type { StorageHold } from './storage-hold.ts';
import { isNoSpace } from '../../lib/errors.ts';

export interface PendingResult extends AttemptResult {
  job: Job;
}

/** Results of one message not written yet. */
export interface MessageResults {
  pending: PendingResult[];
  waiters: (() => void)[];
  timer: TimerHandle | undefined;
  flushing: Promise<void> | undefined;
}

const newMessageResults = (): MessageResults => ({
  pending: [],
  waiters: [],
  timer: undefined,
  flushing: undefined,
});

/** What the results module needs to know of a queued message. */
export interface TrackedMessage {
  /** Leg indexes with a transaction in flight (the results written are removed from it). */
  readonly inflight: Set<number>;
  /** The batch not written yet: made by record(), let go once everything in it is written (undefined: none). */
  results: MessageResults | undefined;
}

/** The outcome of one write. state: as spool.update resolved (null: removed, undefined: gone); writeFailed: not written. */
export interface Written {
  state: SpoolState | null | undefined;
  writeFailed: boolean;
}

/** A leg made final by an attempt, reported once its state is durable. */
export interface LegFinal {
  queueId: string;
  /** The leg state as written. */
  leg: LegState;
  /** Its index in the message's legs. */
  index: number;
  /** Every leg of the message as written (the parity counters pair a copy with its leg of record). */
  legs: readonly LegState[];
  outcome: Extract<LegOutcome, { state: 'delivered' | 'failed' | 'suppressed' }>;
  /** The server (name) and host:port the reply came from ('' when nothing was contacted). */
  server: string;
  host: string;
}

/**
 * The arrival a message's age in the queue is judged from (expiry after --max-queue-lifetime, delay notices): for a
 * message this process accepted, now minus the monotonic time it has been queued; otherwise its stored receivedAt.
 * A node whose clock was behind when it took the mail and that NTP then stepped forward expired (and bounced) mail
 * queued seconds before, and sent delay notices for it; one set back kept it past its lifetime by the step. A
 * message found in the spool at start keeps the wall clock: a step while the relay was down cannot be told apart.
 */
export function arrivalForAge(receivedAt: Date, now: Date, queuedForMs: number | undefined): Date {
  return queuedForMs === undefined ? receivedAt : new Date(now.getTime() - Math.max(0, queuedForMs));
}

export interface ResultsDeps {
  spool: Pick<Spool, 'update'>;
  clock: () => Date;
  timers: Timers;
  /** How long a result waits for the other legs of its message; 0: written at once. */
  coalesceMs: number;
  retryScheduleMs: readonly number[];
  maxQueueLifetimeMs: number;
  delayWarningMs: number;
  /**
   * How long the message has been queued, on the monotonic clock, when this process accepted it; undefined when it
   * was found in the spool. Expiry and delay notices use it (arrivalForAge) in place of the wall-clock receivedAt.
   */
  queuedFor?: (id: string) => number | undefined;
  metrics: Pick<RelayMetrics, 'deliveries'>;
  log: Logger;
  /** stop() began: results are written at once (they wait for no sibling leg), and one that fails is given up. */
  stopped: () => boolean;
  /** The engine closed (stop() finished, or close() after stop({ keepRecording })): nothing more is written. */
  closed: () => boolean;
  onLegFinal?: (final: LegFinal) => void;
  /** softBounce in force for a leg's recipient (engine.ts); absent: never. */
  softBounce?: (recipient: string) => boolean;
  /**
   * The write about to happen removes the message: the engine takes it out of the queue gauge first, so no scrape
   * counts a message whose files are gone (`staying` puts it back when the removal failed).
   */
  removing: (id: string, m: TrackedMessage) => void;
  /** That removal failed: the message is still queued (back in the gauge). */
  staying: (id: string, m: TrackedMessage) => void;
  /** Where results that could not be written wait, and who hears that a write succeeded (storage-hold.ts). */
  storage: Pick<StorageHold, 'failed' | 'wrote'>;
  /** After each write (the results' legs are no longer in flight): what comes next for the message. */
  written: (id: string, m: TrackedMessage, w: Written) => Promise<void>;
}

/**
 * mailroute_deliveries_total, one update per run of legs with the same transaction and result (the legs of one
 * transaction are consecutive in a batch: a message to 10 recipients delivered is 2 updates, not 20; prom-client
 * hashes the labels at every update).
 */
function countDeliveries(
  metrics: Pick<RelayMetrics, 'deliveries'>,
  outcomes: readonly { r: PendingResult; outcome: LegOutcome }[],
): void {
  let run: { r: PendingResult; result: string; n: number } | undefined;
  const count = (): void => {
    if (run !== undefined)
      metrics.deliveries.inc(
        { server: run.r.job.server.name, leg: run.r.job.role, result: run.result },
        run.n,
      );
  };
  for (const { r, outcome } of outcomes) {
    if (run?.r === r && run.result === outcome.metric) run.n++;
    else {
      count();
      run = { r, result: outcome.metric, n: 1 };
    }
  }
  count();
}

/** The fields of a `delivery attempt` line that every leg of one transaction shares. */
const transactionFields = (
  id: string,
  r: PendingResult,
): { queueId: string; server: string; host: string; role: string; durationMs: number } => ({
  queueId: id,
  server: r.job.server.name,
  host: r.serverLabel,
  role: r.job.role,
  durationMs: r.durationMs,
});

export class Results {
  private readonly d: ResultsDeps;

  constructor(d: ResultsDeps) {
    this.d = d;
  }

  /** Queues a result; resolves once it is written (or given up on) and `written` has run. */
  record(id: string, m: TrackedMessage, result: PendingResult): Promise<void> {
    return new Promise<void>((resolve) => {
      const r = (m.results ??= newMessageResults());
      r.pending.push(result);
      r.waiters.push(resolve);
      this.kick(id, m);
    });
  }

  /** Writes what waits for sibling legs now (stop). */
  flushWaiting(id: string, m: TrackedMessage): void {
    if (m.results?.timer !== undefined) void this.flush(id, m);
  }

  private kick(id: string, m: TrackedMessage): void {
    const r = m.results;
    if (r === undefined || r.flushing) return;
    if (r.pending.length === 0) {
      // everything written: a message at rest holds no batch
      if (r.timer === undefined) m.results = undefined;
      return;
    }
    const covered = new Set(r.pending.flatMap((p) => p.job.indexes));
    const othersInFlight = [...m.inflight].some((i) => !covered.has(i));
    if (othersInFlight && !this.d.stopped() && this.d.coalesceMs > 0) {
      r.timer ??= this.d.timers.set(() => {
        r.timer = undefined;
        void this.flush(id, m);
      }, this.d.coalesceMs);
      return;
    }
    void this.flush(id, m);
  }

  /** Writes what waits (if no write of the message is in flight); resolves when that write is done. */
  private flush(id: string, m: TrackedMessage): Promise<void> {
    const r = m.results;
    if (r === undefined) return Promise.resolve();
    if (r.timer !== undefined) {
      this.d.timers.clear(r.timer);
      r.timer = undefined;
    }
    if (r.flushing) return r.flushing;
    if (r.pending.length === 0) return Promise.resolve();
    const batch = r.pending.splice(0);
    const waiters = r.waiters.splice(0);
    let kept: { err: unknown } | undefined;
    const flushing = this.write(id, m, batch)
      .then(
        (k) => void (kept = k),
        (err: unknown) => this.d.log.error({ err, queueId: id }, 'delivery: recording results failed'),
      )
      .finally(() => {
        r.flushing = undefined;
        // the attempts are over: whoever waits for them goes on (the engine frees their destination's slot), also when
        // their results are kept
        for (const w of waiters) w();
        if (kept !== undefined) {
          // not written, and not given up: the results wait in the batch (their legs stay in flight, so nothing sends
          // them again) and the storage hold writes them again
          r.pending.unshift(...batch);
          this.d.storage.failed(id, kept.err, () => this.flush(id, m));
          return;
        }
        this.kick(id, m);
      });
    r.flushing = flushing;
    return flushing;
  }

  /**
   * Writes the batch's results and tells `written`. Resolves with the error when the write failed and the results are
   * to be kept (not stopping: storage-hold.ts writes them again); a failure while stopping gives them up (the attempts
   * repeat at the next start).
   */
  private async write(
    id: string,
    m: TrackedMessage,
    batch: PendingResult[],
  ): Promise<{ err: unknown } | undefined> {
    const d = this.d;
    if (d.closed()) return undefined; // after stop(): the attempt is repeated at the next start
    const now = d.clock();
    const outcomes: {
      r: PendingResult;
      leg: LegState;
      after: LegState;
      outcome: LegOutcome;
      index: number;
    }[] = [];
    let written: readonly LegState[] = [];
    const indexes = new Set(batch.flatMap((r) => r.job.indexes));
    let state: SpoolState | null | undefined;
    let writeFailed = false;
    let removal = false;
    try {
      state = await d.spool.update(id, (s) => {
        outcomes.length = 0;
        const legs = [...s.legs];
        // Recipients whose leg of record is in this message. A message a draining relay handed over keeps only the
        // legs still open there (relay/inbound/handoff.ts): its leg of record may have been delivered already.
        const recorded = new Set(s.legs.filter((l) => l.leg.role === 'primary').map((l) => l.recipient));
        const handedOver = s.meta.origin !== undefined;
        const ctx = {
          now,
          // a message a draining peer handed over keeps its first arrival (its time here is not its age)
          receivedAt: arrivalForAge(
            new Date(s.meta.receivedAt),
            now,
            handedOver ? undefined : d.queuedFor?.(id),
          ),
          retryScheduleMs: d.retryScheduleMs,
          maxQueueLifetimeMs: d.maxQueueLifetimeMs,
          nullSender: s.meta.mailFrom === '',
          delayWarningMs: d.delayWarningMs,
        };
        for (const r of batch) {
          for (const i of r.job.indexes) {
            const leg = legs[i];
            const reply = r.replies.get(i);
            if (!leg || !reply || isFinalLeg(leg)) continue;
            const outcome = decideLeg(leg, reply, {
              ...ctx,
              recipientHasRecord: handedOver || recorded.has(leg.recipient),
              // asked only of a 5xx (the table lookup is not needed for the replies of every leg)
              softBounce:
                d.softBounce !== undefined &&
                reply.kind === 'smtp' &&
                reply.code >= 500 &&
                d.softBounce(leg.recipient),
            });
            const after = applyOutcome(leg, outcome, now, r.serverLabel);
            legs[i] = after;
            outcomes.push({ r, leg, after, outcome, index: i });
          }
        }
        written = legs;
        // The last open legs just became final and no DSN is owed: remove the message instead of rewriting it. Also
        // while stopping: a drain that waited for this attempt must not find a finished message left in the spool.
        const othersInFlight = [...m.inflight].some((i) => !indexes.has(i));
        removal = !othersInFlight && legs.every((l) => isFinalLeg(l) && !l.dsnPending);
        if (removal) {
          d.removing(id, m);
          return null;
        }
        return { ...s, legs };
      });
    } catch (err) {
      if (removal) d.staying(id, m); // the removal failed: the message is still queued
      // Deferrals alone (nothing delivered, nothing final) are not kept on a full volume: forgetting them loses
      // nothing (the legs stay open as written, tried again on the schedule or when their server answers again).
      // Kept, their legs stayed in flight until some write succeeded; on a volume only deliveries could free, with
      // the destinations back, nothing was ever delivered.
      const forget =
        isNoSpace(err) && outcomes.length > 0 && outcomes.every((o) => o.outcome.state === 'deferred');
      if (!d.stopped() && !forget) {
        d.log.warn(
          { err, queueId: id, results: batch.reduce((n, r) => n + r.job.indexes.length, 0) },
          'delivery: could not record the result of an attempt; kept in memory and written again (not repeated)',
        );
        return { err };
      }
      // Stopping, or deferrals on a full volume: the state could not be written; the attempts will be repeated
      // (at-least-once), never lost.
      writeFailed = true;
      d.log.error({ err, queueId: id }, 'delivery: could not record the result of an attempt');
    }
    if (!writeFailed) d.storage.wrote(id);
    countDeliveries(d.metrics, outcomes);
    // The fields one transaction's legs share are serialized once per transaction (a child logger) when it has
    // several legs: the lines are the same, with the shared fields first (docs/queue.md "Logs and metrics").
    let lineLog: { r: PendingResult; log: Logger } | undefined;
    for (const { r, leg, after, outcome, index } of outcomes) {
      const own = {
        recipient: leg.leg.recipient,
        result: outcome.metric,
        reply: outcome.reply,
        attempt: leg.attempts + 1,
        ...(outcome.state === 'deferred' ? { nextAttemptAt: outcome.nextAttemptAt.toISOString() } : {}),
        ...(writeFailed ? { recorded: false } : {}),
      };
      if (r.job.indexes.length > 1) {
        if (lineLog?.r !== r) lineLog = { r, log: d.log.child(transactionFields(id, r)) };
        lineLog.log.info(own, 'delivery attempt');
      } else {
        d.log.info(Object.assign(transactionFields(id, r), own), 'delivery attempt');
      }
      if (!writeFailed && state !== undefined && outcome.state !== 'deferred' && d.onLegFinal) {
        try {
          d.onLegFinal({
            queueId: id,
            leg: after,
            index,
            legs: written,
            outcome,
            server: r.job.server.name,
            host: r.serverLabel,
          });
        } catch (err) {
          d.log.error({ err, queueId: id }, 'delivery: onLegFinal observer failed');
        }
      }
    }
    for (const i of indexes) m.inflight.delete(i);
    await d.written(id, m, { state, writeFailed });
    return undefined;
  }
}
