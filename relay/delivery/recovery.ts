// A destination that comes back reaches its queued mail at once (Exchange's queue per next hop; Postfix waits for each
// message's own retry time, up to its longest backoff). Pure bookkeeping, no I/O and no timers: the engine reports
// how each transaction went and which destinations each deferred message waits on, and wakes what this returns.
//
// - A destination is down after a transaction that got no answer at all (every reply a network failure: refused,
//   timeout, TLS, DNS, or "delivery temporarily suspended"), or only replies that say its mail service is not
//   available now (unavailable(): 421, or a 4xx with RFC 3463's status for a full or congested mail system, which
//   is how Exchange's back pressure, Postfix and sendmail refuse every transaction while their disk or queue is full).
// - It is up again after a transaction in which the server answered anything else. Only that change wakes anything:
//   a refusal of one recipient (450 greylisting, 452 mailbox full, a 5xx kept by softBounce) never does, so such a
//   leg keeps its retry schedule.
// - A destination this process has not heard from yet counts as down while legs wait on it: after a restart the
//   spool's deferred legs wait on destinations nobody has tried since, and the first answer from one sends its
//   queue at once (else a relay restarted after an outage left its queue to the retry times, up to an hour).
// - The messages woken are those whose deferred legs wait on that destination (their other legs keep their times).
//   A message is told what it waits on at every reschedule, so one woken and deferred again waits again.
// - At most one wake per destination per `gapMs`, so a server that flaps (421 to every other connection) cannot turn
//   the retry schedule of its queue into a loop; a recovery inside the gap leaves the mail to its retry times.
//
// - After a change of the routing table, the legs whose server was changed (another host, port, TLS mode or
//   credentials reference: another destination key), or whose credentials were rotated, are due at once: an
//   operator's fix of a wrong server reaches the mail queued for it without waiting for the retry times (moved()).
//
// Memory: a message waiting on one destination holds one reference to that destination's group (two or more: an
// array of them); the group counts its messages and keeps one leg per (domain, server name) that waits on it. A wake
// scans the queue index for the messages holding the group: O(queued messages), 2.5-15 ms for 100,000 on the AMD
// EPYC VM, at most once per gap per destination. A group nobody waits on goes when it has no wake behind it, or at the next reap() once its gap
// is over.
//
// Exports: reachability(replies), Recovery<S> (S: the engine's leg state, kept as a sample per group).
import { enhancedStatus, type AttemptReply } from './outcome.ts';

/**
 * Statuses of a 4xx that speak of the receiving mail system, not of this message or recipient (RFC 3463): X.3.1 mail
 * system full, X.3.2 system not accepting network messages, X.4.5 mail system congestion. Exchange's back pressure
 * answers "452 4.3.1 Insufficient system resources", Postfix "452 4.3.1 Insufficient system storage", sendmail
 * "452 4.4.5 Insufficient disk space". Others (a greylisting 451 4.7.1, a sender's domain that does not resolve,
 * 451 4.1.8, the unspecific 4.3.0) may concern this message alone: the server answered.
 */
const SYSTEM_UNAVAILABLE: ReadonlySet<string> = new Set(['4.3.1', '4.3.2', '4.4.5']);

/** The server answered only to say its mail service is not available now: 421, or a 4xx of SYSTEM_UNAVAILABLE. */
function unavailable(r: AttemptReply): boolean {
  if (r.kind !== 'smtp') return false;
  if (r.code === 421) return true;
  return r.code >= 400 && r.code < 500 && SYSTEM_UNAVAILABLE.has(enhancedStatus(r));
}

/** What one transaction says about its destination: down, up, or nothing (the relay could not try: credentials). */
export function reachability(replies: Iterable<AttemptReply>): 'down' | 'up' | undefined {
  let any = false;
  let answered = false;
  for (const r of replies) {
    if (r.kind === 'local') continue;
    any = true;
    if (r.kind === 'smtp' && !unavailable(r)) answered = true;
  }
  if (answered) return 'up';
  return any ? 'down' : undefined;
}

/**
 * One destination: how many messages wait on it, since when it has been down (monotonic ms), and one leg per
 * (domain, server name) that waits on it, to find out where those legs go after the routing table changed.
 */
interface Group<S> {
  readonly key: string;
  /** A transaction to it has told something since the group was made (result()). */
  seen: boolean;
  waiting: number;
  downSince: number | undefined;
  lastWake: number;
  readonly samples: Map<string, S>;
}

/** A deferred leg's destination: its key, and the leg itself under the name of its (domain, server). */
export interface WaitOn<S> {
  key: string;
  sampleKey: string;
  sample: S;
}

/** What a message remembers of the destinations it waits on (Recovery.wait sets it; undefined: none). */
export interface Waiting {
  waitingOn: object | undefined;
}

/** For a queued message, the destinations whose deferred legs are to be due now; undefined: none (the engine asks it of
 * every queued message). */
export type DueNow = (m: Waiting) => readonly string[] | undefined;

export interface Woken {
  /** How long the destination was down. */
  downMs: number;
  /** The messages that wait on it, with its key. */
  select: DueNow;
}

export class Recovery<S> {
  private readonly groups = new Map<string, Group<S>>();
  private readonly gapMs: number;

  constructor(gapMs: number) {
    this.gapMs = gapMs;
  }

  /** The destinations (destinationKey) the message's deferred legs wait on now; replaces what it waited on before. */
  wait(m: Waiting, waits: readonly WaitOn<S>[], now: number): void {
    const before = groupsOf<S>(m);
    if (waits.length === 0 && before.length === 0) return; // the hot path: delivered at once, nothing deferred
    const after: Group<S>[] = [];
    for (const w of waits) {
      const g = this.group(w.key);
      // Legs wait on a destination this process has not heard from (a restart, a server changed in the table): it
      // counts as down, so the first answer from it sends them at once instead of at their retry times.
      if (!g.seen) g.downSince ??= now;
      if (!g.samples.has(w.sampleKey)) g.samples.set(w.sampleKey, w.sample);
      if (!after.includes(g)) after.push(g);
    }
    for (const g of before) if (!after.includes(g)) this.leave(g);
    for (const g of after) if (!before.includes(g)) g.waiting++;
    // one destination: the group itself; more: an array of exactly that length (the queue holds one per message)
    m.waitingOn = after.length === 0 ? undefined : after.length === 1 ? after[0] : after.slice();
  }

  /** The message is gone from the queue. */
  forget(m: Waiting): void {
    for (const g of groupsOf<S>(m)) this.leave(g);
    m.waitingOn = undefined;
  }

  /**
   * How a transaction to the destination went (reachability of its replies), at now (monotonic ms). When the
   * destination answered after being down, outside the gap since its last wake, and messages wait on it: which ones.
   */
  result(key: string, seen: 'down' | 'up' | undefined, now: number): Woken | undefined {
    if (seen === undefined) return undefined;
    const g = this.group(key);
    g.seen = true;
    if (seen === 'down') {
      g.downSince ??= now;
      return undefined;
    }
    if (g.downSince === undefined) return undefined;
    const downMs = now - g.downSince;
    g.downSince = undefined;
    if (g.waiting === 0 || now - g.lastWake < this.gapMs) return undefined;
    g.lastWake = now;
    const keys = [key];
    return { downMs, select: (m) => (groupsOf<S>(m).includes(g) ? keys : undefined) };
  }

  /**
   * The routing table (or a Secret) changed. dueAfter(sample, key): the destination key to make due now for the
   * legs like sample that waited on destination key, or undefined when nothing about them changed (the engine:
   * their server was changed, so they go to another destination, or its credentials were). Returns, for a message,
   * the destinations to make due at once, so a fixed server gets its queue without waiting for the retry times;
   * undefined when nothing changed.
   */
  moved(dueAfter: (sample: S, key: string) => string | undefined): DueNow | undefined {
    const moves = new Map<Group<S>, string[]>();
    for (const g of this.groups.values()) {
      if (g.waiting === 0) continue;
      for (const sample of g.samples.values()) {
        const to = dueAfter(sample, g.key);
        if (to === undefined) continue;
        const list = moves.get(g) ?? [];
        if (!list.includes(to)) list.push(to);
        moves.set(g, list);
      }
    }
    if (moves.size === 0) return undefined;
    return (m) => {
      let keys: string[] | undefined;
      for (const g of groupsOf<S>(m)) {
        const to = moves.get(g);
        if (to !== undefined) (keys ??= []).push(...to);
      }
      return keys;
    };
  }

  /**
   * Forgets destinations nobody waits on (an outage of a DSN's MX that never answered, a wake whose gap is over), at
   * now (monotonic ms); the engine's reaping timer.
   */
  reap(now: number): void {
    for (const [key, g] of this.groups) {
      if (g.waiting === 0 && now - g.lastWake >= this.gapMs) this.groups.delete(key);
    }
  }

  /** Destinations known down now (tests, stats). */
  get down(): number {
    let n = 0;
    for (const g of this.groups.values()) if (g.downSince !== undefined) n++;
    return n;
  }

  /** Messages waiting on the destination. */
  waiting(key: string): number {
    return this.groups.get(key)?.waiting ?? 0;
  }

  private group(key: string): Group<S> {
    let g = this.groups.get(key);
    if (g === undefined) {
      g = { key, seen: false, waiting: 0, downSince: undefined, lastWake: -Infinity, samples: new Map() };
      this.groups.set(key, g);
    }
    return g;
  }

  private leave(g: Group<S>): void {
    g.waiting--;
    // a group that woke its messages stays until reap(): its gap must hold for the next outage too
    if (g.waiting === 0 && g.lastWake === -Infinity) this.groups.delete(g.key);
  }
}

function groupsOf<S>(m: Waiting): readonly Group<S>[] {
  const w = m.waitingOn;
  if (w === undefined) return [];
  return Array.isArray(w) ? (w as Group<S>[]) : [w as Group<S>];
}
