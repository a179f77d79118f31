// The delivery engine: reads the spool, delivers every leg, retries, expires, bounces.
//
// Exports (called by the relay wiring):
//   startDelivery(opts: DeliveryOptions): DeliveryEngine
//     opts: { spool; logger; metrics; clock?; retryScheduleMs; maxQueueLifetimeMs; hostname; credentials; route;
//             transport?: TransportFactory; resolver?: DnsResolver; timeouts?; stopTimeoutMs? }
//   DeliveryEngine: notify(id) (a new message: deliver now), flush() (retry all deferred now), remove(id) (admin
//     delete), reroute(id|'all') (re-plan open legs with opts.replan), routingChanged() (a new table: retry held legs
//     now), stop() (stop taking work, let attempts in flight finish within a deadline, leave the rest spooled),
//     stats() (for /readyz and the queue gauges), ready (resolves when the start-up scan of the spool is done).
//
// How it works:
//   - In memory there is one small entry per queued message (when it is due, whether it is pending or deferred, which
//     of its legs are in flight). The state itself stays in the spool's state file and is read when the message is due.
//   - A due message is loaded, and its due legs are grouped by server and role into SMTP transactions ("jobs"). The
//     server of each leg is looked up at every attempt with opts.serverFor (the current routing table,
//     server-lookup.ts); a leg whose server left the table is held: deferred with the reason, never bounced for it.
//   - Each destination (host:port:tls:auth) has its own nodemailer pool and its own FIFO of jobs limited to the
//     server's maxConnections. Destinations never wait for each other: a secondary that is down or slow never delays
//     a primary.
//   - After a transaction the reply for each recipient goes through decideLeg() (outcome.ts) and the state file is
//     rewritten. A failure that owes a DSN is marked dsnPending; the DSN is built (dsn.ts), routed with opts.route and
//     spooled as a new message from <>, and only then is dsnPending cleared. A message whose legs are all final and
//     owes no DSN is removed.
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { DeliveryPlan, DomainRoute, LegRole, ServerRoute } from '../../routing/model.ts';
import { rerouteState, type RerouteResult } from './reroute.ts';
import type { ServerLookup } from './server-lookup.ts';
import type { LegState, Spool, SpoolState } from '../spool/types.ts';
import type { RelayMetrics } from '../telemetry/metrics.ts';
import { createDnsResolver, type DnsResolver } from '../dns.ts';
import { isDestinationDenied } from '../destinations.ts';
import { traceComment } from '../inbound/trace.ts';
import { buildDsn, hostPortLabel, remoteMtaName, rfc5322Date, type DsnRecipient } from './dsn.ts';
import { applyOutcome, decideLeg, enhancedStatus, type AttemptReply, type LegOutcome } from './outcome.ts';
import {
  nodemailerTransportFactory,
  plaintextAuthRefusal,
  poolKey,
  resolveTargets,
  type ServerTarget,
  type ServerTransport,
  type SmtpTimeouts,
  type TransportFactory,
} from './transport.ts';
import { safeDelay } from '../../routing/timer.ts';
import { domainOf } from '../../routing/address.ts';
import { createDsnLimiter, type DsnRateLimit } from './dsn-rate.ts';

export interface DeliveryOptions {
  spool: Spool;
  logger: Logger;
  metrics: RelayMetrics;
  clock?: () => Date;
  /** Delays between attempts; the last step repeats. */
  retryScheduleMs: readonly number[];
  maxQueueLifetimeMs: number;
  /** --delay-warning: a notifying leg still deferred this long after arrival gets one delay DSN; 0/undefined: off. */
  delayWarningMs?: number;
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
  route: (recipient: string) => DeliveryPlan;
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
  /** The routing table changed: held legs (server gone) are looked at again now. */
  routingChanged(): void;
  remove(id: string): Promise<boolean>;
  stop(): Promise<void>;
  stats(): DeliveryStats;
  readonly ready: Promise<void>;
}

interface Entry {
  receivedAt: number;
  /** When to look at the message next (ms); Infinity: nothing scheduled. */
  due: number;
  kind: 'pending' | 'deferred';
  /** Leg indexes with a job queued or running. */
  inflight: Set<number>;
  loading: boolean;
  /** Process again as soon as the current load finishes. */
  again: boolean;
  /** flush(): try deferred legs regardless of nextAttemptAt. */
  force: boolean;
  dsnBusy: boolean;
  /** Servers (serverKey) this message waits on for a dispatch slot (see maxQueuedPerServer). */
  blockedOn: Set<string>;
  /** Attempt results not written yet (see applyReplies). */
  results: PendingResult[];
  waiters: (() => void)[];
  resultTimer: NodeJS.Timeout | undefined;
  flushing: Promise<void> | undefined;
}

interface PendingResult {
  job: Job;
  replies: Map<number, AttemptReply>;
  serverLabel: string;
  durationMs: number;
}

interface Job {
  id: string;
  indexes: number[];
  /** The server as looked up for this attempt (the stored copy when unroutable). */
  server: ServerRoute;
  /** The DomainClaim destinations of the leg's domain (server-lookup.ts): which addresses the server may resolve to. */
  destinations?: DomainRoute['destinations'];
  /** Set when the server is gone from the routing table: nothing is sent, the legs are deferred with this reason. */
  unroutable?: string;
  role: LegRole;
  from: string;
  size: number;
  /** leg index -> envelope recipient */
  recipients: Map<number, string>;
}

/** A FIFO queue with O(1) push and shift (Array.prototype.shift is O(n) on large arrays). */
class Fifo<T> {
  private items: (T | undefined)[] = [];
  private head = 0;
  get length(): number {
    return this.items.length - this.head;
  }
  push(x: T): void {
    this.items.push(x);
  }
  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined;
    const x = this.items[this.head];
    this.items[this.head++] = undefined;
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return x;
  }
  /** Removes and returns everything. */
  drain(): T[] {
    const all = this.items.slice(this.head) as T[];
    this.items = [];
    this.head = 0;
    return all;
  }
}

/** A FIFO per destination with at most `limit` jobs running. */
class Lane {
  readonly transport: ServerTransport;
  readonly limit: number;
  running = 0;
  readonly waiting = new Fifo<() => void>();
  lastUsed = 0;
  /** After a connection failure the destination is not tried again before this time (ms); see destinationBackoffMs. */
  suspendedUntil = 0;
  suspendReason = '';

  constructor(transport: ServerTransport, limit: number) {
    this.transport = transport;
    this.limit = Math.max(1, limit);
  }

  /** Resolves when a slot is free; false when the engine stopped meanwhile. */
  acquire(stopped: () => boolean): Promise<boolean> {
    if (this.running < this.limit) {
      this.running++;
      return Promise.resolve(true);
    }
    return new Promise((resolve) => {
      this.waiting.push(() => {
        if (stopped()) return resolve(false);
        this.running++;
        resolve(true);
      });
    });
  }

  release(): void {
    this.running--;
    const next = this.waiting.shift();
    if (next) next();
  }

  drop(): void {
    for (const w of this.waiting.drain()) w();
  }
}

/** Min-heap of (due, id) with lazy deletion: stale pairs are skipped when popped. */
class DueHeap {
  private readonly a: { due: number; id: string }[] = [];
  get size(): number {
    return this.a.length;
  }
  peek(): { due: number; id: string } | undefined {
    return this.a[0];
  }
  push(due: number, id: string): void {
    const a = this.a;
    a.push({ due, id });
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (a[p]!.due <= a[i]!.due) break;
      [a[p], a[i]] = [a[i]!, a[p]!];
      i = p;
    }
  }
  pop(): { due: number; id: string } | undefined {
    const a = this.a;
    const top = a[0];
    const last = a.pop();
    if (a.length > 0 && last) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && a[l]!.due < a[m]!.due) m = l;
        if (r < a.length && a[r]!.due < a[m]!.due) m = r;
        if (m === i) break;
        [a[m], a[i]] = [a[i]!, a[m]!];
        i = m;
      }
    }
    return top;
  }
  clear(): void {
    this.a.length = 0;
  }
}

const FINAL = new Set(['delivered', 'failed', 'suppressed']);
const isFinal = (l: LegState): boolean => FINAL.has(l.state);

/** One downstream server as a leg names it (before MX resolution). */
function serverKey(server: ServerRoute): string {
  const auth = server.authSecretRef ? `${server.authSecretRef.namespace}/${server.authSecretRef.name}` : '';
  return `${server.name}|${server.host}|${server.port}|${server.mx}|${server.tls}|${auth}|${server.allowPlaintextAuth === true}`;
}

/** Same destination, role and destination rules -> one SMTP transaction. */
function jobKey(server: ServerRoute, role: LegRole, destinations: DomainRoute['destinations']): string {
  return `${serverKey(server)}|${role}|${destinations === undefined ? '' : JSON.stringify(destinations)}`;
}

export function startDelivery(opts: DeliveryOptions): DeliveryEngine {
  const { spool, metrics } = opts;
  const log = opts.logger;
  const clock = opts.clock ?? (() => new Date());
  const factory =
    opts.transport ?? nodemailerTransportFactory({ hostname: opts.hostname, timeouts: opts.timeouts });
  const resolver = opts.resolver ?? createDnsResolver();
  const stopTimeoutMs = opts.stopTimeoutMs ?? 10_000;
  const loadConcurrency = opts.loadConcurrency ?? 64;
  const resultCoalesceMs = opts.resultCoalesceMs ?? 5;
  const destinationBackoffMs =
    opts.destinationBackoffMs ?? Math.min(opts.retryScheduleMs[0] ?? 60_000, 60_000);
  const connectionShare = Math.max(1, opts.connectionShare ?? 1);
  const serverFor =
    opts.serverFor ?? ((l: LegState): ServerLookup => ({ ok: true, server: l.leg.server, from: 'stored' }));
  // Open legs held because their server left the table, per message (mailroute_queue_legs_unroutable).
  const unroutable = new Map<string, number>();
  let unroutableTotal = 0;
  const setUnroutable = (id: string, n: number): void => {
    const before = unroutable.get(id) ?? 0;
    if (n === before) return;
    if (n === 0) unroutable.delete(id);
    else unroutable.set(id, n);
    unroutableTotal += n - before;
    metrics.queueLegsUnroutable.set(unroutableTotal);
  };

  const entries = new Map<string, Entry>();
  // mailroute_queue_messages{state} follows every add, remove and state change at once (a scrape right after a 250
  // sees the message); a 1 s timer sets queue_oldest_seconds.
  const counts: Record<Entry['kind'], number> = { pending: 0, deferred: 0 };
  const publish = (kind: Entry['kind']): void => {
    metrics.queueMessages.set({ state: kind }, counts[kind]);
  };
  const addEntry = (id: string, e: Entry): void => {
    const old = entries.get(id);
    if (old) {
      counts[old.kind]--;
      publish(old.kind);
    }
    entries.set(id, e);
    counts[e.kind]++;
    publish(e.kind);
  };
  const dropEntry = (id: string): void => {
    setUnroutable(id, 0);
    const e = entries.get(id);
    if (!e) return;
    entries.delete(id);
    counts[e.kind]--;
    publish(e.kind);
  };
  const setKind = (id: string, e: Entry, kind: Entry['kind']): void => {
    if (e.kind === kind) return;
    const old = e.kind;
    e.kind = kind;
    // Only the entry in the map is counted (a dropped entry may still be rescheduled once).
    if (entries.get(id) !== e) return;
    counts[old]--;
    counts[kind]++;
    publish(old);
    publish(kind);
  };
  const heap = new DueHeap();
  const lanes = new Map<string, Lane>();
  const running = new Set<Promise<void>>();
  let stopped = false;
  let aborted = false;
  let closed = false;
  let recovering = true;
  let timer: NodeJS.Timeout | undefined;
  let timerAt = Infinity;
  let loading = 0;
  const loadQueue = new Fifo<string>();
  // Backpressure per server: transactions dispatched (queued for a connection or running), and the messages waiting
  // for a slot (ids only). Keeps memory bounded by connections, not by queue length.
  const dispatched = new Map<string, number>();
  const blocked = new Map<string, Fifo<string>>();
  const slotCap = (server: ServerRoute): number => Math.max(16, server.maxConnections * 4);
  const releaseSlot = (sk: string): void => {
    dispatched.set(sk, (dispatched.get(sk) ?? 1) - 1);
    const q = blocked.get(sk);
    while (q && q.length > 0) {
      const id = q.shift()!;
      const w = entries.get(id);
      if (w?.blockedOn.delete(sk)) {
        enqueueLoad(id);
        break;
      }
    }
    if (q && q.length === 0) blocked.delete(sk);
  };
  let jobs = 0;

  const track = (p: Promise<void>): void => {
    running.add(p);
    void p.finally(() => running.delete(p));
  };

  // ---------------- scheduling ----------------
  const setDue = (id: string, e: Entry, due: number): void => {
    e.due = due;
    if (Number.isFinite(due)) {
      heap.push(due, id);
      arm();
    }
  };

  const arm = (): void => {
    if (stopped) return;
    const top = heap.peek();
    if (!top) return;
    if (timer && timerAt <= top.due) return;
    if (timer) clearTimeout(timer);
    timerAt = top.due;
    const delay = safeDelay(top.due - clock().getTime()); // a later due re-arms in tick()
    timer = setTimeout(tick, delay);
  };

  const tick = (): void => {
    timer = undefined;
    timerAt = Infinity;
    if (stopped) return;
    const now = clock().getTime();
    for (;;) {
      const top = heap.peek();
      if (!top || top.due > now) break;
      heap.pop();
      const e = entries.get(top.id);
      if (!e || e.due !== top.due) continue; // stale
      e.due = Infinity;
      enqueueLoad(top.id);
    }
    arm();
  };

  const enqueueLoad = (id: string): void => {
    const e = entries.get(id);
    if (!e) return;
    if (e.loading) {
      e.again = true;
      return;
    }
    e.loading = true;
    loadQueue.push(id);
    pumpLoads();
  };

  const pumpLoads = (): void => {
    while (!stopped && loading < loadConcurrency && loadQueue.length > 0) {
      const id = loadQueue.shift()!;
      loading++;
      track(
        processMessage(id)
          .catch((err: unknown) => {
            log.error({ err, queueId: id }, 'delivery: could not process message; retrying later');
            const e = entries.get(id);
            if (e) setDue(id, e, clock().getTime() + (opts.retryScheduleMs[0] ?? 60_000));
          })
          .finally(() => {
            loading--;
            const e = entries.get(id);
            if (e) {
              e.loading = false;
              if (e.again) {
                e.again = false;
                enqueueLoad(id);
              }
            }
            pumpLoads();
          }),
      );
    }
  };

  const newEntry = (receivedAt: number): Entry => ({
    receivedAt,
    due: Infinity,
    kind: 'pending',
    inflight: new Set(),
    loading: false,
    again: false,
    force: false,
    dsnBusy: false,
    blockedOn: new Set(),
    results: [],
    waiters: [],
    resultTimer: undefined,
    flushing: undefined,
  });

  /** Recomputes kind and due of an entry from a state just read or written. */
  const reschedule = (id: string, e: Entry, state: SpoolState): void => {
    let next = Infinity;
    let open = false;
    let anyPending = e.inflight.size > 0;
    const now = clock().getTime();
    for (const [i, l] of state.legs.entries()) {
      if (isFinal(l)) {
        if (l.dsnPending && !e.dsnBusy) next = Math.min(next, now);
        continue;
      }
      open = true;
      if (e.inflight.has(i)) continue;
      if (e.blockedOn.has(serverKey(serverFor(l).server))) {
        anyPending = true; // woken when the server has a free slot
        continue;
      }
      if (l.state === 'pending') {
        anyPending = true;
        next = Math.min(next, now);
      } else {
        const at = l.nextAttemptAt ? Date.parse(l.nextAttemptAt) : now;
        next = Math.min(next, Number.isNaN(at) ? now : at);
      }
    }
    setKind(id, e, anyPending || !open ? 'pending' : 'deferred');
    if (next !== e.due) setDue(id, e, next);
  };

  // ---------------- processing one message ----------------
  const processMessage = async (id: string): Promise<void> => {
    const e = entries.get(id);
    if (!e || stopped) return;
    const loaded = await spool.load(id);
    if (stopped) return;
    if (!loaded.ok) {
      dropEntry(id);
      if (loaded.reason === 'corrupt')
        log.error({ queueId: id, reason: loaded.error }, 'delivery: message quarantined');
      return;
    }
    const state = loaded.state;
    e.receivedAt = Date.parse(state.meta.receivedAt) || e.receivedAt;
    const now = clock().getTime();
    const force = e.force;
    e.force = false;

    if (state.legs.some(owesDsn) && !e.dsnBusy) {
      await sendDsn(id, e, state);
      return; // sendDsn reschedules with the state it wrote
    }

    const groups = new Map<string, Job>();
    let held = 0;
    for (const [i, l] of state.legs.entries()) {
      if (isFinal(l)) continue;
      // How to reach the server is looked up now, not taken from the state (server-lookup.ts).
      const found = serverFor(l);
      if (!found.ok) held++;
      if (e.inflight.has(i)) continue;
      if (l.state === 'deferred' && !force) {
        const at = l.nextAttemptAt ? Date.parse(l.nextAttemptAt) : 0;
        if (at > now) continue;
      }
      if (found.ok && e.blockedOn.has(serverKey(found.server))) continue;
      const k = found.ok
        ? jobKey(found.server, l.leg.role, found.destinations)
        : `unroutable|${found.reason}|${l.leg.role}`;
      let job = groups.get(k);
      if (!job) {
        job = {
          id,
          indexes: [],
          server: found.server,
          ...(found.ok && found.destinations !== undefined ? { destinations: found.destinations } : {}),
          ...(found.ok ? {} : { unroutable: found.reason }),
          role: l.leg.role,
          from: state.meta.mailFrom,
          size: state.size,
          recipients: new Map(),
        };
        groups.set(k, job);
      }
      job.indexes.push(i);
      job.recipients.set(i, l.leg.recipient);
    }
    setUnroutable(id, held);
    for (const job of groups.values()) {
      if (job.unroutable !== undefined) {
        // Nothing to connect to: the legs are deferred with the reason (retried on the schedule and when the table
        // changes; never bounced for it before --max-queue-lifetime).
        for (const i of job.indexes) e.inflight.add(i);
        const reply: AttemptReply = { kind: 'local', text: job.unroutable };
        track(applyReplies(job, new Map(job.indexes.map((i) => [i, reply])), '', 0));
        continue;
      }
      const sk = serverKey(job.server);
      const n = dispatched.get(sk) ?? 0;
      if (n >= slotCap(job.server)) {
        // The server has enough work queued: wait for a slot instead of holding this transaction in memory.
        e.blockedOn.add(sk);
        let q = blocked.get(sk);
        if (!q) {
          q = new Fifo<string>();
          blocked.set(sk, q);
        }
        q.push(id);
        continue;
      }
      dispatched.set(sk, n + 1);
      for (const i of job.indexes) e.inflight.add(i);
      jobs++;
      track(
        runJob(job)
          .catch((err: unknown) => {
            log.error(
              { err, queueId: id, server: job.server.name },
              'delivery: attempt crashed; retrying later',
            );
            const cur = entries.get(id);
            if (!cur) return;
            for (const i of job.indexes) cur.inflight.delete(i);
            setDue(id, cur, clock().getTime() + (opts.retryScheduleMs[0] ?? 60_000));
          })
          .finally(() => {
            jobs--;
            releaseSlot(sk);
          }),
      );
    }
    if (e.inflight.size === 0 && state.legs.every((l) => isFinal(l) && !l.dsnPending)) {
      await finish(id);
      return;
    }
    reschedule(id, e, state);
  };

  const finish = async (id: string): Promise<void> => {
    const e = entries.get(id);
    if (e && (e.inflight.size > 0 || e.dsnBusy)) return;
    dropEntry(id);
    await spool.remove(id);
    log.info({ queueId: id }, 'delivery: message complete, removed from spool');
  };

  // ---------------- one SMTP transaction ----------------
  const laneFor = (target: ServerTarget): Lane => {
    const key = poolKey(target);
    let lane = lanes.get(key);
    if (!lane) {
      const limit = Math.max(1, Math.ceil(target.maxConnections / connectionShare));
      lane = new Lane(factory({ ...target, maxConnections: limit }), limit);
      lanes.set(key, lane);
      if (target.authKey !== undefined) {
        // New credentials for a destination (a rotated Secret): close the pool set up with the old ones now
        // rather than when it has been idle for 5 minutes. One still sending is left to the idle timer.
        const stale = poolKey({
          ...target,
          authKey: target.authKey.slice(0, target.authKey.indexOf('#') + 1),
        });
        for (const [k, old] of lanes) {
          if (k !== key && k.startsWith(stale) && old.running === 0 && old.waiting.length === 0) {
            old.transport.close();
            lanes.delete(k);
          }
        }
      }
    }
    return lane;
  };

  const runJob = async (job: Job): Promise<void> => {
    const { server } = job;
    const all = (reply: AttemptReply): Map<number, AttemptReply> =>
      new Map(job.indexes.map((i) => [i, reply]));
    let replies: Map<number, AttemptReply>;
    let serverLabel = hostPortLabel(server.host, server.port);
    const started = Date.now();

    let auth: { user: string; pass: string } | undefined;
    let authFailed = false;
    if (server.authSecretRef) {
      try {
        auth = await opts.credentials(server.authSecretRef);
      } catch (err) {
        log.warn({ err, server: server.name }, 'delivery: credentials lookup failed');
      }
      authFailed = auth === undefined;
    }
    const jobResolver = opts.resolverFor?.(job.destinations) ?? resolver;
    const targets = await resolveTargets(server, jobResolver);
    if (stopped) {
      // Stopped before anything was tried: the state stays as it is.
      const e = entries.get(job.id);
      for (const i of job.indexes) e?.inflight.delete(i);
      return;
    }
    const plaintextRefused = plaintextAuthRefusal(server, server.authSecretRef !== undefined);
    if (authFailed) {
      const ref = server.authSecretRef!;
      replies = all({
        kind: 'local',
        text: `credentials ${ref.namespace}/${ref.name} for server ${server.name} not available`,
      });
    } else if (plaintextRefused !== undefined) {
      replies = all({ kind: 'local', text: plaintextRefused });
    } else if (!targets.ok) {
      replies = all(targets.reply);
    } else {
      replies = all({ kind: 'network', text: 'no host to connect to' });
      const to = [...new Set(job.recipients.values())];
      // Each host (MX hosts by preference) is resolved through the DNS seam (relay/dns.ts) and its addresses are tried
      // in turn; the host name stays the TLS server name.
      const addressesOf = async (host: string): Promise<string[]> => {
        try {
          return await jobResolver.addresses(host);
        } catch (err) {
          const code = (err as { code?: string }).code ?? String(err);
          // A destination the policy denies (relay/destinations.ts) is deferred like a 4xx, never connected to: a
          // corrected policy reaches the queued mail at its next attempt.
          replies = all(
            isDestinationDenied(err)
              ? { kind: 'local', text: err.message }
              : { kind: 'network', text: `address lookup for ${host} failed: ${code}` },
          );
          serverLabel = hostPortLabel(host, server.port);
          return [];
        }
      };
      hosts: for (const host of targets.hosts) {
        for (const address of await addressesOf(host)) {
          const target: ServerTarget = {
            host: address,
            ...(address !== host ? { servername: host } : {}),
            port: server.port,
            tls: server.tls,
            maxConnections: server.maxConnections,
            ...(auth ? { auth } : {}),
            ...(server.allowPlaintextAuth === true ? { allowPlaintextAuth: true } : {}),
            ...(server.authSecretRef
              ? {
                  // A changed password (cluster mode: mailroute-credentials follows the Secret) must not reuse a
                  // pooled connection set up with the old one: the key carries a digest, never the password.
                  authKey: `${server.authSecretRef.namespace}/${server.authSecretRef.name}#${auth ? createHash('sha256').update(`${auth.user}\0${auth.pass}`).digest('hex').slice(0, 16) : ''}`,
                }
              : {}),
          };
          const lane = stopped ? undefined : laneFor(target);
          if (!lane || !(await lane.acquire(() => stopped))) {
            // Stopped while waiting for a connection: nothing was tried, the state stays as it is.
            const e = entries.get(job.id);
            for (const i of job.indexes) e?.inflight.delete(i);
            return;
          }
          serverLabel = hostPortLabel(host, server.port);
          let byRecipient: Map<string, AttemptReply>;
          const now = Date.now();
          if (lane.suspendedUntil > now) {
            // The destination failed to connect moments ago: defer without another connection attempt (Postfix:
            // "delivery temporarily suspended"), so a dead server costs one timeout, not one per queued message.
            lane.release();
            const reply: AttemptReply = {
              kind: 'network',
              text: `delivery temporarily suspended: ${lane.suspendReason}`,
            };
            byRecipient = new Map(to.map((r) => [r, reply]));
          } else {
            try {
              lane.lastUsed = now;
              byRecipient = await lane.transport.send({
                from: job.from,
                to,
                raw: spool.body(job.id, job.size),
                size: job.size,
              });
            } finally {
              lane.release();
            }
            const all = [...byRecipient.values()];
            const unreachable = all.length > 0 && all.every((r) => r.kind === 'network');
            if (unreachable && destinationBackoffMs > 0) {
              lane.suspendedUntil = Date.now() + destinationBackoffMs;
              lane.suspendReason = all[0]?.text ?? 'connection failed';
            } else if (!unreachable) {
              lane.suspendedUntil = 0;
            }
          }
          replies = new Map(
            job.indexes.map((i) => [
              i,
              byRecipient.get(job.recipients.get(i) ?? '') ?? {
                kind: 'local',
                text: 'no reply for this recipient',
              },
            ]),
          );
          // Try the next address or MX host only when this one could not be reached at all.
          if (![...replies.values()].every((r) => r.kind === 'network')) break hosts;
        }
      }
    }
    metrics.deliveryDuration.observe({ server: server.name }, (Date.now() - started) / 1000);
    if (aborted) return; // stop() gave up on this attempt; the spool still has the state before it
    await applyReplies(job, replies, serverLabel, Date.now() - started);
  };

  /**
   * Results are recorded per message in batches: a result waits up to resultCoalesceMs for the other legs of the
   * same message still in flight, so that a dual message whose legs finish together costs one write (or none: when
   * every leg is final the message is removed instead of rewritten). A crash in that window only repeats an attempt.
   */
  const applyReplies = (
    job: Job,
    replies: Map<number, AttemptReply>,
    serverLabel: string,
    durationMs: number,
  ): Promise<void> => {
    const e = entries.get(job.id);
    if (!e) return Promise.resolve(); // deleted meanwhile
    return new Promise<void>((resolve) => {
      e.results.push({ job, replies, serverLabel, durationMs });
      e.waiters.push(resolve);
      kickResults(job.id, e);
    });
  };

  const kickResults = (id: string, e: Entry): void => {
    if (e.flushing || e.results.length === 0) return;
    const covered = new Set(e.results.flatMap((r) => r.job.indexes));
    const othersInFlight = [...e.inflight].some((i) => !covered.has(i));
    if (othersInFlight && !stopped && resultCoalesceMs > 0) {
      e.resultTimer ??= setTimeout(() => {
        e.resultTimer = undefined;
        flushResults(id, e);
      }, resultCoalesceMs);
      return;
    }
    flushResults(id, e);
  };

  const flushResults = (id: string, e: Entry): void => {
    if (e.resultTimer) {
      clearTimeout(e.resultTimer);
      e.resultTimer = undefined;
    }
    if (e.flushing || e.results.length === 0) return;
    const batch = e.results.splice(0);
    const waiters = e.waiters.splice(0);
    e.flushing = recordResults(id, e, batch)
      .catch((err: unknown) => log.error({ err, queueId: id }, 'delivery: recording results failed'))
      .finally(() => {
        e.flushing = undefined;
        for (const w of waiters) w();
        kickResults(id, e);
      });
  };

  const recordResults = async (id: string, e: Entry, batch: PendingResult[]): Promise<void> => {
    if (closed) return; // after stop(): the attempt is repeated at the next start
    const now = clock();
    const outcomes: { r: PendingResult; leg: LegState; outcome: LegOutcome }[] = [];
    const indexes = new Set(batch.flatMap((r) => r.job.indexes));
    let state: SpoolState | null | undefined;
    let writeFailed = false;
    try {
      state = await spool.update(id, (s) => {
        outcomes.length = 0;
        const legs = [...s.legs];
        // Recipients whose leg of record is in this message. A message a draining relay handed over keeps only the
        // legs still open there (relay/inbound/handoff.ts): its leg of record may have been delivered already.
        const recorded = new Set(s.legs.filter((l) => l.leg.role === 'primary').map((l) => l.recipient));
        const handedOver = s.meta.origin !== undefined;
        const ctx = {
          now,
          receivedAt: new Date(s.meta.receivedAt),
          retryScheduleMs: opts.retryScheduleMs,
          maxQueueLifetimeMs: opts.maxQueueLifetimeMs,
          nullSender: s.meta.mailFrom === '',
          delayWarningMs: opts.delayWarningMs ?? 0,
        };
        for (const r of batch) {
          for (const i of r.job.indexes) {
            const leg = legs[i];
            const reply = r.replies.get(i);
            if (!leg || !reply || isFinal(leg)) continue;
            const outcome = decideLeg(leg, reply, {
              ...ctx,
              recipientHasRecord: handedOver || recorded.has(leg.recipient),
            });
            legs[i] = applyOutcome(leg, outcome, now, r.serverLabel);
            outcomes.push({ r, leg, outcome });
          }
        }
        // The last open legs just became final and no DSN is owed: remove the message instead of rewriting it.
        const othersInFlight = [...e.inflight].some((i) => !indexes.has(i));
        if (!othersInFlight && !stopped && legs.every((l) => isFinal(l) && !l.dsnPending)) return null;
        return { ...s, legs };
      });
    } catch (err) {
      // The state could not be written: the attempts will be repeated (at-least-once), never lost.
      writeFailed = true;
      log.error({ err, queueId: id }, 'delivery: could not record the result of an attempt');
    }
    for (const { r, leg, outcome } of outcomes) {
      metrics.deliveries.inc({ server: r.job.server.name, leg: r.job.role, result: outcome.metric });
      log.info(
        {
          queueId: id,
          server: r.job.server.name,
          host: r.serverLabel,
          role: r.job.role,
          recipient: leg.leg.recipient,
          result: outcome.metric,
          reply: outcome.reply,
          attempt: leg.attempts + 1,
          durationMs: r.durationMs,
          ...(outcome.state === 'deferred' ? { nextAttemptAt: outcome.nextAttemptAt.toISOString() } : {}),
          ...(writeFailed ? { recorded: false } : {}),
        },
        'delivery attempt',
      );
    }
    for (const i of indexes) e.inflight.delete(i);
    if (state === null) {
      if (entries.get(id) === e) dropEntry(id);
      log.info({ queueId: id }, 'delivery: message complete, removed from spool');
      return;
    }
    if (entries.get(id) !== e) return; // deleted meanwhile
    if (writeFailed) {
      setDue(id, e, clock().getTime() + (opts.retryScheduleMs[0] ?? 60_000));
      return;
    }
    if (state === undefined) {
      dropEntry(id); // the message is gone (deleted by an operator, or quarantined)
      return;
    }
    if (stopped) return;
    if (state.legs.some(owesDsn) && !e.dsnBusy) {
      await sendDsn(id, e, state);
      return;
    }
    if (e.inflight.size === 0 && state.legs.every((l) => isFinal(l) && !l.dsnPending)) {
      await finish(id);
      return;
    }
    reschedule(id, e, state);
  };

  // ---------------- DSN ----------------
  const dsnTrace = (id: string, now: Date): Buffer =>
    Buffer.from(
      opts.clusterId === undefined
        ? ''
        : `Received: by ${opts.hostname} ${traceComment(opts.clusterId)} id ${id}.dsn;\r\n\t${rfc5322Date(now)}\r\n`,
      'latin1',
    );
  const dsnLimiter = createDsnLimiter(opts.dsnRate ?? { perMinute: 0, burst: 0 });
  const sendDsn = async (id: string, e: Entry, state: SpoolState): Promise<void> => {
    e.dsnBusy = true;
    let after: SpoolState | null | undefined;
    try {
      const owed = state.legs.map((l, i) => ({ l, i })).filter(({ l }) => owesDsn(l));
      const delayed = (l: LegState): boolean => l.dsnPending !== true;
      const sender = state.meta.mailFrom;
      let dsnId: string | undefined;
      if (sender === '') {
        dsnId = 'none';
      } else {
        const plan = opts.route(sender);
        if (plan.verdict !== 'accept') {
          // Undeliverable: the sender's domain is not a valid host name, or its managed domain refuses it.
          log.warn(
            { queueId: id, verdict: plan.verdict, reply: plan.reply },
            'delivery: DSN not sent: the sender address is undeliverable',
          );
          metrics.dsnSent.inc({ kind: 'unroutable' });
          dsnId = 'unroutable';
        } else {
          const now = clock();
          // Per recipient domain: a flood of 550s for one managed domain does not become a flood of DSNs.
          const firstOwed = owed[0];
          const rcptDomain = firstOwed ? domainOf(firstOwed.l.recipient) : '';
          const token = dsnLimiter.take(rcptDomain, now.getTime());
          if (!token.ok) {
            metrics.dsnSent.inc({ kind: 'deferred' });
            log.info(
              { queueId: id, domain: rcptDomain, retryInMs: token.retryInMs },
              'delivery: DSN deferred: rate limit for the recipient domain',
            );
            e.dsnBusy = false;
            setDue(id, e, now.getTime() + token.retryInMs);
            return;
          }
          const retryUntil = new Date(Date.parse(state.meta.receivedAt) + opts.maxQueueLifetimeMs);
          const recipients: DsnRecipient[] = owed.map(({ l }) => ({
            finalRecipient: l.leg.recipient,
            originalRecipient: l.recipient,
            status: delayed(l) ? delayStatus(l) : dsnStatus(l),
            diagnostic: l.lastReply ?? 'delivery failed',
            ...(l.lastServer ? { remoteMta: remoteMtaName(l.lastServer) } : {}),
            ...(l.lastAttemptAt ? { lastAttemptAt: new Date(l.lastAttemptAt) } : {}),
            expired: !delayed(l) && (l.lastReply ?? '').startsWith('expired'),
            ...(delayed(l) ? { action: 'delayed' as const, willRetryUntil: retryUntil } : {}),
          }));
          const headers = await spool.readHeaders(id).catch(() => Buffer.from(''));
          const raw = buildDsn({
            hostname: opts.hostname,
            sender,
            queueId: id,
            arrivalDate: new Date(state.meta.receivedAt),
            now,
            boundary: `mailroute-dsn-${id}-${now.getTime().toString(36)}`,
            recipients,
            originalHeaders: headers,
          });
          const res = await spool.accept(
            {
              mailFrom: '',
              recipients: [{ recipient: sender, legs: plan.legs }],
              clientAddress: '127.0.0.1',
              clientHostname: opts.hostname,
              helo: opts.hostname,
              receivedAt: now.toISOString(),
              revision: state.meta.revision,
              // eslint-disable-next-line no-control-regex
              smtputf8: /[^\x00-\x7f]/.test(sender),
              body8bit: false,
            },
            Readable.from([dsnTrace(id, now), raw]),
          );
          if (!res.ok) {
            log.error({ queueId: id, err: res.error }, 'delivery: could not spool the DSN; will retry');
            e.dsnBusy = false;
            setDue(id, e, clock().getTime() + (opts.retryScheduleMs[0] ?? 60_000));
            return;
          }
          dsnId = res.id;
          const nDelayed = owed.filter(({ l }) => delayed(l)).length;
          if (nDelayed < owed.length) metrics.dsnSent.inc({ kind: 'failed' });
          if (nDelayed > 0) metrics.dsnSent.inc({ kind: 'delayed' });
          log.info(
            { queueId: id, dsnId, sender, failed: owed.length - nDelayed, delayed: nDelayed },
            'delivery: DSN queued',
          );
          notify(res.id);
        }
      }
      const owedKind = new Map(owed.map(({ l, i }) => [i, delayed(l) ? 'delayed' : 'failed']));
      after = await spool.update(id, (s) => ({
        ...s,
        legs: s.legs.map((l, i) => {
          const kind = owedKind.get(i);
          if (kind === 'failed') {
            const { dsnPending: _drop, ...rest } = l;
            return { ...rest, dsnId };
          }
          if (kind === 'delayed') {
            // at most one delay notice per leg: delayDsnId stays (a failure meanwhile keeps its own dsnPending)
            const { delayPending: _drop, ...rest } = l;
            return { ...rest, delayDsnId: dsnId ?? 'none' };
          }
          return l;
        }),
      }));
    } finally {
      e.dsnBusy = false;
    }
    if (!after) {
      dropEntry(id);
      return;
    }
    if (stopped) return;
    if (e.inflight.size === 0 && after.legs.every((l) => isFinal(l) && !l.dsnPending)) {
      await finish(id);
      return;
    }
    reschedule(id, e, after);
  };

  // ---------------- gauges ----------------
  const oldestAgeSeconds = (): number => {
    let oldest = Infinity;
    for (const e of entries.values()) if (e.receivedAt < oldest) oldest = e.receivedAt;
    return Number.isFinite(oldest) ? Math.max(0, (clock().getTime() - oldest) / 1000) : 0;
  };
  // pending/deferred are the counts kept by addEntry, dropEntry and setKind (published as they change)
  const stats = (): DeliveryStats => ({
    messages: entries.size,
    pending: counts.pending,
    deferred: counts.deferred,
    unroutableLegs: unroutableTotal,
    jobs,
    oldestAgeSeconds: oldestAgeSeconds(),
    recovering,
    stopped,
  });
  const refreshGauges = (): void => {
    metrics.queueOldestSeconds.set(oldestAgeSeconds());
  };
  const gaugeTimer = setInterval(refreshGauges, 1000);
  gaugeTimer.unref();

  // Close pools idle for 5 minutes (their servers would drop the connections anyway).
  const idleTimer = setInterval(() => {
    const cutoff = Date.now() - 300_000;
    for (const [key, lane] of lanes) {
      if (lane.running === 0 && lane.waiting.length === 0 && lane.lastUsed < cutoff) {
        lane.transport.close();
        lanes.delete(key);
      }
    }
  }, 60_000);
  idleTimer.unref();

  // ---------------- API ----------------
  const notify = (id: string): void => {
    if (stopped) return;
    let e = entries.get(id);
    if (!e) {
      e = newEntry(clock().getTime());
      addEntry(id, e);
    }
    e.due = Infinity;
    enqueueLoad(id);
  };

  const reroute = async (id: string): Promise<RerouteResult | undefined> => {
    const e = entries.get(id);
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
    if (entries.get(id) === e) {
      e.force = true;
      e.due = Infinity;
      enqueueLoad(id);
    }
    return result;
  };

  const ready = (async () => {
    const started = Date.now();
    const ids = await spool.list();
    const now = clock().getTime();
    for (const id of ids) {
      if (entries.has(id)) continue;
      // The id starts with the time of arrival; the state file has the exact time and is read when due.
      const t = parseInt(id.slice(0, 9), 36);
      addEntry(id, newEntry(Number.isFinite(t) ? t : now));
      enqueueLoad(id);
    }
    recovering = false;
    refreshGauges();
    log.info(
      { messages: ids.length, durationMs: Date.now() - started },
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
      for (const lane of lanes.values()) lane.suspendedUntil = 0;
      for (const [id, e] of entries) {
        if (e.kind === 'deferred' || e.due > clock().getTime()) {
          e.force = true;
          e.due = Infinity;
          enqueueLoad(id);
        }
      }
      log.info({ messages: entries.size }, 'delivery: flush requested');
    },
    routingChanged(): void {
      if (stopped) return;
      for (const id of unroutable.keys()) {
        const e = entries.get(id);
        if (!e) continue;
        e.force = true;
        e.due = Infinity;
        enqueueLoad(id);
      }
    },
    reroute,
    async rerouteAll() {
      const total = { messages: 0, rerouted: 0, legs: 0, unchanged: 0 };
      for (const id of [...entries.keys()]) {
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
      dropEntry(id);
      const existed = await spool.remove(id);
      if (existed) log.warn({ queueId: id }, 'delivery: message deleted by an operator');
      return existed;
    },
    async stop(): Promise<void> {
      if (stopped) return;
      stopped = true;
      if (timer) clearTimeout(timer);
      clearInterval(gaugeTimer);
      clearInterval(idleTimer);
      loadQueue.drain();
      heap.clear();
      for (const lane of lanes.values()) lane.drop();
      // Results waiting for sibling legs are written now.
      for (const [id, e] of entries) if (e.resultTimer) flushResults(id, e);
      // Wait for everything in flight, including work that started while we waited (a load that finished).
      const deadlineAt = Date.now() + stopTimeoutMs;
      while (running.size > 0 && Date.now() < deadlineAt) {
        let t: NodeJS.Timeout | undefined;
        await Promise.race([
          Promise.allSettled([...running]),
          new Promise<void>((resolve) => {
            t = setTimeout(resolve, Math.max(1, deadlineAt - Date.now()));
          }),
        ]);
        if (t) clearTimeout(t);
      }
      if (running.size > 0) {
        aborted = true;
        log.warn(
          { inFlight: running.size },
          'delivery: stop deadline passed; attempts in flight stay queued',
        );
      }
      // From here on nothing is written: the spool may already belong to the next engine.
      closed = true;
      for (const lane of lanes.values()) lane.transport.close();
      lanes.clear();
      refreshGauges();
    },
    stats,
  };
}

/** A DSN is owed for the leg: its failure, or the delay notice of a leg still deferred. */
function owesDsn(l: LegState): boolean {
  return l.dsnPending === true || l.delayPending === true;
}

/** The RFC 3463 status of a delayed leg: its last temporary reply's, 4.4.1 when no server answered. */
function delayStatus(l: LegState): string {
  const m = /^(4\d\d)\b/.exec(l.lastReply ?? '');
  if (m) return enhancedStatus({ kind: 'smtp', code: Number(m[1]), text: l.lastReply ?? '' });
  return '4.4.1';
}

function dsnStatus(l: LegState): string {
  if ((l.lastReply ?? '').startsWith('expired')) return '4.4.7';
  const m = /^(\d{3})\b/.exec(l.lastReply ?? '');
  if (m) return enhancedStatus({ kind: 'smtp', code: Number(m[1]), text: l.lastReply ?? '' });
  return '5.0.0';
}
