// The delivery engine: reads the spool, delivers every leg, retries, expires, bounces. This file wires the parts:
//
//   queue-index.ts  one small in-memory entry per queued message, and the queue gauges
//   scheduler.ts    when each message is looked at next (due heap, one armed timer), a bounded number at a time
//   attempt.ts      which due legs go in one SMTP transaction, and trying it once
//   destination.ts  per destination (the server a leg is routed to): backpressure, connections, suspension, pools
//   recovery.ts     which deferred messages wait on which destination: one that answers again wakes them
//   smtp-out/       the SMTP client those pools are (the default transport)
//   results.ts      the coalesced state write of attempt results (decideLeg, outcome.ts)
//   bounce.ts       the DSN hand-off
//
// Looking at a message (look): load its state; a DSN owed goes first (bounce); else its due legs are grouped into
// jobs, each dispatched to its destination (or the message waits for a slot there) and attempted; every result goes
// to results.ts. After each step, settle() decides what is next from the state just read or written: a DSN, removal
// (every leg final, nothing owed), or the next due time. docs/design.md "The delivery engine" has the overview.
//
// Exports (called by the relay wiring):
//   startDelivery(opts: DeliveryOptions): DeliveryEngine
//   DeliveryEngine: notify(id) (a new message: deliver now), flush() (retry all deferred now), remove(id) (admin
//     delete), reroute(id|'all') (re-plan open legs with opts.replan), routingChanged(secrets?) (a new table or new
//     credentials: retry held legs, and deferred legs whose server or credentials changed, now), stop() (stop taking
//     work, let attempts in flight finish within a deadline, leave the rest spooled; with keepRecording: return at
//     once and record what the attempts in flight bring until close()), close(), inFlight() and progress() (what a
//     drain waits for before it hands a message to a peer relay, relay/cluster/drain.ts),
//     stats() (for /readyz and the queue gauges), ready (resolves when the start-up scan of the spool is done).
import type { Logger } from 'pino';
import type { DeliveryPlan, DomainRoute } from '../../routing/model.ts';
import { createDnsResolver, type DnsResolver } from '../dns.ts';
import { isFinalLeg, type LegState, type Spool, type SpoolState } from '../spool/types.ts';
import type { RelayMetrics } from '../telemetry/metrics.ts';
import {
  addForced,
  attempt,
  groupJobs,
  isForced,
  unroutableResult,
  type AttemptResult,
  type Job,
} from './attempt.ts';
import { Bouncer, owesDsn } from './bounce.ts';
import { destinationKey, Destinations, type Destination } from './destination.ts';
import type { DsnRateLimit } from './dsn-rate.ts';
import { QueueIndex, type Entry } from './queue-index.ts';
import { reachability, Recovery, type WaitOn, type Woken } from './recovery.ts';
import { rerouteState, type RerouteResult } from './reroute.ts';
import { Results, type LegFinal, type Written } from './results.ts';
import { dueAt, retryDelayMs } from './retry.ts';
import { shedState, type ShedLeg } from './shed.ts';
import { StorageHold } from './storage-hold.ts';
import { every, realTimers, Scheduler, type TimerHandle, type Timers } from './scheduler.ts';
import type { ServerLookup } from './server-lookup.ts';
import { smtpOutTransportFactory } from './smtp-out/pool.ts';
import type { TransportFactory } from './transport.ts';
import type { SmtpTimeouts } from '../../lib/smtp-client.ts';

export interface DeliveryOptions {
  spool: Spool;
  logger: Logger;
  metrics: RelayMetrics;
  /** The wall clock of the engine: due times, retries, expiry, the times stored in a leg's state. */
  clock?: () => Date;
  /**
   * The monotonic clock (ms) for what is measured within the process: a destination's suspension, pool idle reaping,
   * an attempt's duration, the stop deadline. A step of the wall clock does not move it (docs/design.md §6 rule 10).
   * Default `performance.now()`. A test's fake clock passes both (test/support/fake-clock.ts).
   */
  elapsed?: () => number;
  /** The timers the engine arms (scheduler.ts); default the real ones. A fake clock brings its own. */
  timers?: Timers;
  /** Delays between attempts; the last step repeats. */
  retryScheduleMs: readonly number[];
  maxQueueLifetimeMs: number;
  /** --delay-warning: a notifying leg still deferred this long after arrival gets one delay DSN; 0/undefined: off. */
  delayWarningMs?: number;
  /**
   * Whether softBounce is in force for a leg's recipient (its domain's DeliveryPolicy, in the table served now): a 5xx
   * on the leg is then retried like a 4xx (outcome.ts). Default: never.
   */
  softBounce?: (recipient: string) => boolean;
  /** --dsn-rate: DSNs per minute per recipient domain (burst as many); over it a DSN is deferred (dsn-rate.ts). */
  dsnRate?: DsnRateLimit;
  /** EHLO name, Reporting-MTA and MAILER-DAEMON@ of DSNs. */
  hostname: string;
  /**
   * The relay's cluster id (relay/inbound/trace.ts): a DSN starts with the relay's Received: trace, as a message it
   * accepted does, so a DSN that a forwarding server sends back is refused as a loop at its first return.
   */
  clusterId?: string;
  /** Resolves a server's authSecretRef; undefined = not available (the attempt is deferred). */
  credentials: (ref: {
    namespace: string;
    name: string;
  }) => Promise<{ user: string; pass: string } | undefined>;
  /** Where a DSN to this sender goes (relay/delivery/dsn-route.ts): managed domain: its policy; else MX/--dsn-relay. */
  route: (recipient: string) => DeliveryPlan | Promise<DeliveryPlan>;
  /** The SMTP client per target; default the relay's own (smtp-out/pool.ts). */
  transport?: TransportFactory;
  /** MX and address lookups (relay/dns.ts); default: the system resolver. */
  resolver?: DnsResolver;
  /**
   * The resolver for the servers of a domain whose DomainClaim has destinations (the relay applies the destination
   * policy combined with them, relay/destinations.ts). Default: `resolver` for every domain.
   */
  resolverFor?: (destinations: DomainRoute['destinations']) => DnsResolver;
  timeouts?: Partial<SmtpTimeouts>;
  /** How long stop() lets attempts in flight run. Default 10 s. */
  stopTimeoutMs?: number;
  /** Messages loaded from the spool at the same time. Default 64. */
  loadConcurrency?: number;
  /** How long a result waits for the other legs of its message before it is written. Default 5 ms. */
  resultCoalesceMs?: number;
  /**
   * After a destination could not be reached at all, other transactions to it are deferred without connecting for
   * this long. Default: the first retry step, at most 60 s. 0 disables.
   */
  destinationBackoffMs?: number;
  /** Engines (worker processes) sharing each server's maxConnections; this one opens ceil(max / share). Default 1. */
  connectionShare?: number;
  /**
   * The server a queued leg is delivered to now (relay/delivery/server-lookup.ts with the table being served).
   * Default: the definition stored in the leg.
   */
  serverFor?: (leg: LegState) => ServerLookup;
  /** The current plan of an accepted recipient, for reroute() (the relay's route function). Default: none. */
  replan?: (recipient: string) => DeliveryPlan;
  /** Told of every leg an attempt made final, once its state is durable (results.ts). */
  onLegFinal?: (final: LegFinal) => void;
  /** Told when a message's state is read to deliver it (its open legs): the parity counters' pending copies. */
  onMessageRead?: (id: string, legs: readonly LegState[]) => void;
  /** Told when the engine lets go of a message (complete, deleted or quarantined). */
  onMessageGone?: (id: string) => void;
}

export interface DeliveryStats {
  /** Messages in the spool known to the engine. */
  messages: number;
  /** Messages with a leg not tried yet or being tried. */
  pending: number;
  /** Messages whose open legs all wait for a retry. */
  deferred: number;
  /** Open legs whose server is no longer in the routing table (held; see `mailroute queue reroute`). */
  unroutableLegs: number;
  /** SMTP transactions in progress or waiting for a connection. */
  jobs: number;
  oldestAgeSeconds: number;
  /** The start-up scan of the spool is still running. */
  recovering: boolean;
  stopped: boolean;
}

export interface DeliveryEngine {
  notify(id: string): void;
  flush(): void;
  /**
   * Re-plans the open legs of one message (or of every queued message) with opts.replan; delivered and other final
   * legs stay as they are. Resolves with what changed; undefined when the message is not queued.
   */
  reroute(id: string): Promise<RerouteResult | undefined>;
  rerouteAll(): Promise<{ messages: number; rerouted: number; legs: number; unchanged: number }>;
  /**
   * The routing table changed, or the credentials of changedSecrets ("namespace/name"): held legs (server gone) are
   * looked at again now, and so are deferred legs whose server was changed or whose Secret is among changedSecrets.
   */
  routingChanged(changedSecrets?: ReadonlySet<string>): void;
  /**
   * Ends the open copy legs of the oldest messages that wait on copies alone (shed.ts), one message at a time, until
   * enough() (asked before the first and every few messages) says there is room again or every message was passed.
   */
  shedCopies(
    enough: () => Promise<boolean>,
    reply: string,
  ): Promise<{ messages: number; legs: number; passed: number }>;
  remove(id: string): Promise<boolean>;
  /**
   * Stops taking work. By default it lets the work in flight finish for up to stopTimeoutMs, then closes: results that
   * arrive later are not recorded (those legs are tried again at the next start). With keepRecording (a drain follows,
   * relay/cluster/drain.ts) it returns at once: the transactions in flight go on, and their results are recorded as
   * they arrive until close(); inFlight() says which messages still wait for one.
   */
  stop(opts?: StopOptions): Promise<void>;
  /**
   * After stop(): from now on nothing is written (the spool is about to close); results still to come are not
   * recorded. Idempotent.
   */
  close(): void;
  /**
   * The queued messages with work in flight: a transaction (or its result not written yet), or a DSN being spooled.
   * Their state is about to change; once the engine stopped, nothing else changes a message's state.
   */
  inFlight(): ReadonlySet<string>;
  /** Resolves when some work in flight is done (at once when none is): then ask inFlight() again. */
  progress(): Promise<void>;
  stats(): DeliveryStats;
  readonly ready: Promise<void>;
}

interface StopOptions {
  /**
   * Return at once and keep recording the results of the attempts in flight until close() (default false: wait for
   * them up to stopTimeoutMs, then close).
   */
  keepRecording?: boolean;
}

/** Every leg is final and no DSN is owed: the message is done. */
const allDone = (state: SpoolState): boolean => state.legs.every((l) => isFinalLeg(l) && !l.dsnPending);

const NONE: readonly WaitOn<LegState>[] = [];

export function startDelivery(opts: DeliveryOptions): DeliveryEngine {
  const { spool, metrics } = opts;
  const log = opts.logger;
  const clock = opts.clock ?? (() => new Date());
  const now = (): number => clock().getTime();
  const elapsed = opts.elapsed ?? ((): number => performance.now());
  const timers = opts.timers ?? realTimers;
  const resolver = opts.resolver ?? createDnsResolver();
  const stopTimeoutMs = opts.stopTimeoutMs ?? 10_000;
  // After a failure that is not a leg's own (a crash, a state that could not be written), the message is looked at
  // again after the first retry step.
  const retryLaterMs = retryDelayMs(opts.retryScheduleMs, 1);
  // How long an unreachable destination is suspended, and the least time between two recovery wakes of one.
  const backoffMs = opts.destinationBackoffMs ?? Math.min(retryLaterMs, 60_000);
  const serverFor =
    opts.serverFor ?? ((l: LegState): ServerLookup => ({ ok: true, server: l.leg.server, from: 'stored' }));

  const queue = new QueueIndex(metrics);
  const running = new Set<Promise<void>>();
  let stopped = false;
  // Set by close(): nothing is written any more, and results that arrive are not recorded.
  let closed = false;
  let recovering = true;
  let jobs = 0;
  const track = (p: Promise<void>): void => {
    running.add(p);
    const forget = (): void => void running.delete(p);
    // then(f, f), not finally(f): one promise fewer per job (a rejection is the caller's; every p here catches its own)
    p.then(forget, forget);
  };

  // Due times are wall-clock instants (a leg's nextAttemptAt), waited for on the monotonic clock (scheduler.ts).
  const scheduler = new Scheduler({
    now,
    elapsed,
    timers,
    concurrency: opts.loadConcurrency ?? 64,
    fresh: (id) => queue.get(id)?.fresh === true,
    run: (id, due) => {
      const p = look(id, due).catch((err: unknown) => {
        log.error({ err, queueId: id }, 'delivery: could not process message; retrying later');
        if (queue.has(id)) retryLater(id);
      });
      track(p);
      return p;
    },
  });
  /** Looks at the message as soon as possible (if it is still queued). */
  const wake = (id: string): void => {
    if (queue.has(id)) scheduler.wake(id);
  };
  const retryLater = (id: string): void => scheduler.at(id, now() + retryLaterMs);

  const destinations = new Destinations({
    now: elapsed,
    factory: opts.transport ?? smtpOutTransportFactory({ hostname: opts.hostname, timeouts: opts.timeouts }),
    connectionShare: Math.max(1, opts.connectionShare ?? 1),
    backoffMs,
  });

  // A destination that answers again after an outage: the deferred messages waiting on it are looked at now (at most
  // once per suspension time).
  const recovery = new Recovery<LegState>(backoffMs);

  // While the spool takes no state writes, results are kept and written again, and no message is looked at.
  const hold = new StorageHold({ timers, log, metrics, elapsed, wake });

  const results = new Results({
    spool,
    clock,
    timers,
    coalesceMs: opts.resultCoalesceMs ?? 5,
    retryScheduleMs: opts.retryScheduleMs,
    maxQueueLifetimeMs: opts.maxQueueLifetimeMs,
    delayWarningMs: opts.delayWarningMs ?? 0,
    queuedFor: (id) => {
      const at = queue.get(id)?.acceptedAt;
      return at === undefined ? undefined : elapsed() - at;
    },
    metrics,
    log,
    stopped: () => stopped,
    closed: () => closed,
    ...(opts.onLegFinal ? { onLegFinal: opts.onLegFinal } : {}),
    ...(opts.softBounce ? { softBounce: opts.softBounce } : {}),
    removing: (id, m) => queue.leaving(id, m as Entry),
    staying: (id, m) => queue.stay(id, m as Entry),
    storage: hold,
    written: (id, m, w) => written(id, m as Entry, w),
  });

  const bouncer = new Bouncer({
    spool,
    clock,
    elapsed,
    log,
    metrics,
    hostname: opts.hostname,
    ...(opts.clusterId !== undefined ? { clusterId: opts.clusterId } : {}),
    maxQueueLifetimeMs: opts.maxQueueLifetimeMs,
    ...(opts.dsnRate ? { dsnRate: opts.dsnRate } : {}),
    route: opts.route,
    spooled: (dsnId) => notify(dsnId),
  });

  // ---------------- one message ----------------

  // Entry.dsnAt is on the monotonic clock (elapsed()): a DSN put off for its rate limit or for want of a route waits
  // that long whatever the wall clock does meanwhile.
  /** A DSN is owed and may be tried now: none is being made, and none was put off until later (Entry.dsnAt). */
  const dsnNow = (e: Entry, state: SpoolState): boolean =>
    !e.dsnBusy && (e.dsnAt === undefined || elapsed() >= e.dsnAt) && state.legs.some(owesDsn);
  /** When an owed DSN is due on the wall clock, t being now: t, or as much later as it was put off for still. */
  const dsnDue = (e: Entry, t: number): number =>
    e.dsnAt === undefined ? t : t + Math.max(0, e.dsnAt - elapsed());

  /** Recomputes kind and due time of an entry from a state just read or written. */
  const reschedule = (id: string, e: Entry, state: SpoolState): void => {
    let next = Infinity;
    let open = false;
    let openRecord = false;
    let anyPending = e.inflight.size > 0;
    let waitingOn: WaitOn<LegState>[] | undefined;
    const t = now();
    for (const [i, l] of state.legs.entries()) {
      if (isFinalLeg(l)) {
        if (l.dsnPending && !e.dsnBusy) next = Math.min(next, dsnDue(e, t));
        continue;
      }
      // a delay notice owed: its time too (the leg's own retry may come later)
      if (l.delayPending === true && !e.dsnBusy) next = Math.min(next, dsnDue(e, t));
      open = true;
      if (l.leg.role === 'primary') openRecord = true;
      if (e.inflight.has(i)) continue;
      const found = serverFor(l);
      const key = destinationKey(found.server);
      if (e.blockedOn.has(key)) {
        anyPending = true; // woken when the destination has a free slot
        continue;
      }
      if (l.state === 'pending') {
        anyPending = true;
        next = Math.min(next, t);
      } else {
        next = Math.min(next, dueAt(l, t));
        // a held leg (server gone from the table) waits on the table, not on a destination
        if (found.ok) {
          const domain = l.leg.domain ?? l.recipient.slice(l.recipient.lastIndexOf('@') + 1);
          (waitingOn ??= []).push({ key, sampleKey: `${domain}|${l.leg.server.name}`, sample: l });
        }
      }
    }
    // a dropped entry may still be rescheduled once: it must not be counted as waiting
    if (queue.get(id) === e) recovery.wait(e, waitingOn ?? NONE, elapsed());
    e.copiesOnly = open && !openRecord;
    queue.setKind(id, e, anyPending || !open ? 'pending' : 'deferred');
    if (next !== scheduler.dueOf(id)) scheduler.at(id, next);
  };

  /** What comes next for a message after its state was read or written: a DSN, removal, or its next due time. */
  const settle = async (id: string, e: Entry, state: SpoolState): Promise<void> => {
    if (stopped) return;
    if (dsnNow(e, state)) return bounce(id, e, state);
    if (e.inflight.size === 0 && allDone(state)) return finish(id);
    reschedule(id, e, state);
  };

  const finish = async (id: string): Promise<void> => {
    const e = queue.get(id);
    if (e && (e.inflight.size > 0 || e.dsnBusy)) return;
    drop(id);
    await spool.remove(id);
    log.info({ queueId: id }, 'delivery: message complete, removed from spool');
  };

  const drop = (id: string): void => {
    const e = queue.get(id);
    if (e) recovery.forget(e);
    queue.drop(id);
    scheduler.forget(id);
    hold.forget(id);
    opts.onMessageGone?.(id);
  };

  /**
   * Looks at a message. due: the wall-clock due time that woke it (scheduler.ts), which came on the monotonic clock:
   * the legs due by then are due now, also when the wall clock was set back meanwhile and is behind it.
   */
  const look = async (id: string, due?: number): Promise<void> => {
    const e = queue.get(id);
    if (!e || stopped) return;
    if (hold.hold(id)) return; // looked at when the spool takes writes again
    const loaded = await spool.load(id);
    if (stopped) return;
    if (!loaded.ok) {
      drop(id);
      if (loaded.reason === 'corrupt')
        log.error({ queueId: id, reason: loaded.error }, 'delivery: message quarantined');
      return;
    }
    const state = loaded.state;
    opts.onMessageRead?.(id, state.legs);
    e.receivedAt = Date.parse(state.meta.receivedAt) || e.receivedAt;
    if (dsnNow(e, state)) return bounce(id, e, state);

    const forced = e.forced;
    e.forced = undefined;
    const { jobs: dueJobs, held } = groupJobs(
      id,
      state,
      {
        inflight: e.inflight,
        blockedOn: e.blockedOn,
        ...(forced ? { forced } : {}),
        now: Math.max(now(), due ?? -Infinity),
      },
      serverFor,
    );
    queue.setUnroutable(id, held);
    for (const job of dueJobs) {
      if (job.unroutable !== undefined) {
        // Nothing to connect to: the legs are deferred with the reason (retried on the schedule and when the table
        // changes; never bounced for it before --max-queue-lifetime).
        for (const i of job.indexes) e.inflight.add(i);
        track(results.record(id, e, { job, ...unroutableResult(job, job.unroutable) }));
        continue;
      }
      const dest = destinations.of(job.server);
      if (!dest.tryDispatch()) {
        // The destination has enough work queued: wait for a slot instead of holding this transaction in memory.
        e.blockedOn.add(dest.key);
        dest.wait(id);
        continue;
      }
      for (const i of job.indexes) e.inflight.add(i);
      jobs++;
      track(
        run(job, dest)
          .catch((err: unknown) => {
            log.error(
              { err, queueId: id, server: job.server.name },
              'delivery: attempt crashed; retrying later',
            );
            const cur = queue.get(id);
            if (!cur) return;
            for (const i of job.indexes) cur.inflight.delete(i);
            retryLater(id);
          })
          .finally(() => {
            jobs--;
            const next = dest.undispatch((w) => queue.get(w)?.blockedOn.delete(dest.key) === true);
            if (next !== undefined) wake(next);
          }),
      );
    }
    // A flush or wake for a destination the message waits on for a slot (since this look or before it: its legs were
    // skipped) holds until the slot comes.
    for (const key of e.blockedOn) if (isForced(forced, key)) e.forced = addForced(e.forced, [key]);
    return settle(id, e, state);
  };

  /** One job: the attempt, then its results. */
  const run = async (job: Job, dest: Destination): Promise<void> => {
    const result: AttemptResult | undefined = await attempt(job, dest, {
      now: elapsed,
      credentials: opts.credentials,
      resolver: opts.resolverFor?.(job.destinations) ?? resolver,
      body: (id, size) => spool.body(id, size),
      checkBody: (id) => spool.checkBody(id),
      stopped: () => stopped,
      onCredentialsError: (err, server) =>
        log.warn({ err, server: server.name }, 'delivery: credentials lookup failed'),
    });
    if (result === undefined) {
      // Stopped before anything was tried: the state stays as it is.
      const e = queue.get(job.id);
      for (const i of job.indexes) e?.inflight.delete(i);
      return;
    }
    if (result.gone !== undefined) {
      // Its body failed its check (the spool quarantined it, and logged why) or its file is gone: nothing was sent,
      // nothing is recorded. The message's other transactions, waiting on the same check, find it gone too.
      const e = queue.get(job.id);
      for (const i of job.indexes) e?.inflight.delete(i);
      if (e === undefined) return;
      drop(job.id);
      if (result.gone.reason === 'corrupt')
        log.error({ queueId: job.id, reason: result.gone.error }, 'delivery: message quarantined');
      return;
    }
    metrics.deliveryDuration.observe({ server: job.server.name }, result.durationMs / 1000);
    if (closed) return; // the attempt was given up (close()); the spool still has the state before it
    const woken = recovery.result(dest.key, reachability(result.replies.values()), elapsed());
    if (woken !== undefined) recovered(job, woken);
    const e = queue.get(job.id);
    if (!e) return; // deleted meanwhile
    await results.record(job.id, e, { job, ...result });
  };

  /** A destination answered again after an outage: the deferred legs waiting on it are due now. */
  const recovered = (job: Job, woken: Woken): void => {
    if (stopped) return;
    const n = forceWhere(woken.select);
    metrics.destinationRecoveries.inc({ server: job.server.name });
    log.info(
      { server: job.server.name, downSeconds: Math.round(woken.downMs / 1000), messages: n },
      'delivery: server answers again; the deferred messages waiting on it are tried now',
    );
  };

  /** After results were written (results.ts). */
  const written = async (id: string, e: Entry, w: Written): Promise<void> => {
    if (w.state === null) {
      if (queue.get(id) === e) drop(id);
      log.info({ queueId: id }, 'delivery: message complete, removed from spool');
      return;
    }
    if (queue.get(id) !== e) return; // deleted meanwhile
    if (w.writeFailed) return retryLater(id);
    if (w.state === undefined) return drop(id); // the message is gone (deleted by an operator, or quarantined)
    try {
      await settle(id, e, w.state);
    } catch (err) {
      // What follows a result (its DSN: the route, the spool's write) failed. The results' writer only logs a throw,
      // so without this the message had no due time left and waited for a flush or a restart.
      log.error(
        { err, queueId: id },
        'delivery: could not process message after its results; retrying later',
      );
      if (queue.get(id) === e) retryLater(id);
    }
  };

  const bounce = async (id: string, e: Entry, state: SpoolState): Promise<void> => {
    e.dsnBusy = true;
    let r;
    try {
      r = await bouncer.bounce(id, state);
    } finally {
      e.dsnBusy = false;
    }
    if (r.kind === 'later') {
      // The DSN waits; the message's own legs do not: a delay notice held back by its rate limit (or a sender's
      // domain without a route yet) used to keep a whole backlog from its server after the server was back.
      e.dsnAt = elapsed() + Math.max(0, r.at - now());
      return look(id);
    }
    e.dsnAt = undefined;
    if (r.kind === 'failed') return retryLater(id);
    if (!r.state) return drop(id);
    return settle(id, e, r.state);
  };

  // ---------------- timers ----------------
  const refreshGauges = (): void => {
    metrics.queueOldestSeconds.set(queue.oldestAgeSeconds(now()));
  };
  const stopGauges = every(timers, 1000, refreshGauges);
  // Close pools idle for 5 minutes (their servers would drop the connections anyway).
  const stopReaping = every(timers, 60_000, () => {
    destinations.reapIdle();
    recovery.reap(elapsed());
  });

  // ---------------- API ----------------
  /** Messages with a transaction in flight (or its result not written yet) or a DSN being spooled. */
  const inFlight = (): Set<string> => {
    const ids = new Set<string>();
    // nothing is running that could settle them (cannot happen once stopped: kept results are written or given up)
    if (running.size === 0) return ids;
    for (const [id, e] of queue.all()) if (e.inflight.size > 0 || e.dsnBusy) ids.add(id);
    return ids;
  };

  /** Nothing is written from here on: the spool may be closed, or belong to the next engine. */
  const close = (): void => {
    if (closed) return;
    // results that arrive from now on are not recorded: those legs are tried again at the next start (at-least-once)
    closed = true;
    destinations.close();
    refreshGauges();
  };

  const notify = (id: string): void => {
    if (stopped) return;
    if (!queue.has(id)) queue.add(id, now(), true).acceptedAt = elapsed();
    scheduler.wake(id);
  };

  /** Looks at the message now with its open legs due: all of them (flush, reroute, a new table), or those to keys. */
  const force = (id: string, keys: 'all' | readonly string[] = 'all'): void => {
    const e = queue.get(id);
    if (!e) return;
    e.forced = addForced(e.forced, keys);
    if (keys === 'all') e.dsnAt = undefined; // a flush tries a DSN that was put off, too
    scheduler.wake(id);
  };

  /** force() for every queued message that select names destinations of; how many. */
  const forceWhere = (select: (e: Entry) => readonly string[] | undefined): number => {
    if (stopped) return 0;
    let n = 0;
    for (const [id, e] of queue.all()) {
      const keys = select(e);
      if (keys === undefined) continue;
      force(id, keys);
      n++;
    }
    return n;
  };

  const reroute = async (id: string): Promise<RerouteResult | undefined> => {
    const e = queue.get(id);
    if (!e || stopped) return undefined;
    const replan = opts.replan;
    if (replan === undefined) throw new Error('reroute: this engine has no routing table to re-plan with');
    let result: RerouteResult | undefined;
    // Legs in flight keep their server: their result is recorded against the leg they were sent for.
    const busy = new Set(e.inflight);
    const after = await spool.update(id, (s) => {
      result = rerouteState(s, replan, busy);
      return result.state;
    });
    if (after === undefined || after === null || result === undefined) return undefined;
    if (result.changed.length > 0) {
      log.info(
        { queueId: id, rerouted: result.changed, unchanged: result.unchanged.length },
        'delivery: message rerouted with the current routing table',
      );
    }
    if (queue.get(id) === e) force(id);
    return result;
  };

  /** Messages passed between two asks of enough() while shedding. */
  const SHED_ASK_EVERY = 8;
  const shedCopies = async (
    enough: () => Promise<boolean>,
    reply: string,
  ): Promise<{ messages: number; legs: number; passed: number }> => {
    const total = { messages: 0, legs: 0, passed: 0 };
    // oldest first: the start-up scan adds the spool's messages in arrival order, new ones follow; only those last
    // seen waiting on copies alone are read (a message not looked at since the start is not one yet)
    const candidates: string[] = [];
    for (const [id, e] of queue.all()) if (e.copiesOnly) candidates.push(id);
    for (const id of candidates) {
      if (stopped) break;
      if (total.passed++ % SHED_ASK_EVERY === 0 && (await enough())) break;
      const e = queue.get(id);
      if (!e?.copiesOnly || e.leaving || e.dsnBusy) continue;
      let shed: ShedLeg[] = [];
      let legs: readonly LegState[] = [];
      let removal = false;
      let after: SpoolState | null | undefined;
      try {
        after = await spool.update(id, (s) => {
          const r = shedState(s, e.inflight, reply);
          shed = r?.shed ?? [];
          if (r === undefined) return s; // changed since its last look: nothing is written
          legs = r.state.legs;
          // every leg final and nothing owed: the message goes in the same write (its files are what frees room)
          removal = e.inflight.size === 0 && allDone(r.state);
          if (!removal) return r.state;
          queue.leaving(id, e);
          return null;
        });
      } catch (err) {
        if (removal) queue.stay(id, e);
        log.error({ err, queueId: id }, 'delivery: could not shed the copies of a message');
        continue;
      }
      if (after === undefined || shed.length === 0) continue;
      total.messages++;
      total.legs += shed.length;
      for (const x of shed) {
        const server = x.leg.leg.server.name;
        metrics.deliveries.inc({ server, leg: 'copy', result: x.outcome.metric });
        opts.onLegFinal?.({
          queueId: id,
          leg: x.leg,
          index: x.index,
          legs,
          outcome: x.outcome,
          server,
          host: '',
        });
      }
      log.warn({ queueId: id, legs: shed.length, reply }, 'delivery: copies shed for spool space');
      if (after === null) {
        if (queue.get(id) === e) drop(id);
        log.info({ queueId: id }, 'delivery: message complete, removed from spool');
        continue;
      }
      if (queue.get(id) === e) await settle(id, e, after);
    }
    return total;
  };

  const ready = (async () => {
    const started = elapsed();
    const ids = await spool.list();
    const t = now();
    for (const id of ids) {
      if (queue.has(id)) continue;
      // The id starts with the time of arrival; the state file has the exact time and is read when due.
      const at = parseInt(id.slice(0, 9), 36);
      queue.add(id, Number.isFinite(at) ? at : t);
      scheduler.wake(id);
    }
    recovering = false;
    refreshGauges();
    log.info(
      { messages: ids.length, durationMs: Math.round(elapsed() - started) },
      'delivery: spool scanned, queue resumed',
    );
  })().catch((err: unknown) => {
    recovering = false;
    log.error({ err }, 'delivery: could not scan the spool');
  });

  return {
    ready,
    notify,
    flush(): void {
      if (stopped) return;
      // An operator's flush tries suspended destinations again too.
      destinations.resume();
      for (const [id, e] of queue.all()) {
        if (e.kind === 'deferred' || scheduler.dueOf(id) > now()) force(id);
      }
      log.info({ messages: queue.size }, 'delivery: flush requested');
    },
    routingChanged(changedSecrets?: ReadonlySet<string>): void {
      if (stopped) return;
      for (const id of queue.heldIds()) force(id);
      // legs whose server was changed (a fixed host, port or TLS mode) go to the new destination now; so do legs
      // whose server's credentials changed (a rotated password)
      const moved = recovery.moved((l, before) => {
        const found = serverFor(l);
        if (!found.ok) return undefined;
        const key = destinationKey(found.server);
        const ref = found.server.authSecretRef;
        const rotated = ref !== undefined && changedSecrets?.has(`${ref.namespace}/${ref.name}`) === true;
        return key !== before || rotated ? key : undefined;
      });
      if (moved === undefined) return;
      const n = forceWhere(moved);
      log.info(
        { messages: n },
        'delivery: servers changed in the routing table; their deferred legs are tried now',
      );
    },
    reroute,
    shedCopies,
    async rerouteAll() {
      const total = { messages: 0, rerouted: 0, legs: 0, unchanged: 0 };
      for (const id of queue.ids()) {
        const r = await reroute(id);
        if (r === undefined) continue;
        total.messages++;
        if (r.changed.length > 0) total.rerouted++;
        total.legs += r.changed.length;
        total.unchanged += r.unchanged.length;
      }
      return total;
    },
    async remove(id: string): Promise<boolean> {
      drop(id);
      const existed = await spool.remove(id);
      if (existed) log.warn({ queueId: id }, 'delivery: message deleted by an operator');
      return existed;
    },
    async stop(o: StopOptions = {}): Promise<void> {
      if (stopped) return;
      stopped = true;
      scheduler.stop();
      stopGauges();
      stopReaping();
      destinations.dropWaiters();
      // Results kept while the spool took no writes get one more try (given up if it fails: repeated at the next start).
      track(hold.stop());
      // Results waiting for sibling legs are written now.
      for (const [id, e] of queue.all()) results.flushWaiting(id, e);
      if (o.keepRecording === true) {
        // The caller (a drain) waits for the messages in flight itself, and closes the engine.
        const n = inFlight().size;
        if (n > 0)
          log.info({ inFlight: n }, 'delivery: stopped; the attempts in flight go on and are recorded');
        return;
      }
      // Wait for everything in flight, including work that started while we waited (a load that finished).
      const deadlineAt = elapsed() + stopTimeoutMs;
      while (running.size > 0 && elapsed() < deadlineAt) {
        let t: TimerHandle | undefined;
        await Promise.race([
          Promise.allSettled([...running]),
          new Promise<void>((resolve) => {
            t = timers.set(resolve, Math.max(1, deadlineAt - elapsed()));
          }),
        ]);
        if (t !== undefined) timers.clear(t);
      }
      if (running.size > 0) {
        log.warn(
          { inFlight: running.size },
          'delivery: stop deadline passed; attempts in flight stay queued',
        );
      }
      close();
    },
    close,
    inFlight,
    progress(): Promise<void> {
      if (running.size === 0) return Promise.resolve();
      const done = (): void => undefined;
      return Promise.race([...running]).then(done, done);
    },
    stats: (): DeliveryStats => ({
      messages: queue.size,
      pending: queue.count('pending'),
      deferred: queue.count('deferred'),
      unroutableLegs: queue.unroutableLegs,
      jobs,
      oldestAgeSeconds: queue.oldestAgeSeconds(now()),
      recovering,
      stopped,
    }),
  };
}
