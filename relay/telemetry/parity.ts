// Parity while dual: per DeliveryPolicy and per TestRecipient, how many legs of record were delivered, and how
// many copies were delivered, suppressed (by reason) or are still pending, with the copy lag (copy delivered minus
// its leg of record delivered, same message and recipient). Legs carry their policy and TestRecipient names from
// the plan (routing/model.ts Leg.policy / Leg.testRecipient): the labels are those names, never an address.
//
// Fed by the spool writer (copies accepted) and the delivery engine (a message's legs looked at; a leg final).
// Exported as metrics (relay/telemetry/metrics.ts), in the heartbeat Lease for the operator, and at /queue/stats.
// Pending counts the open copies this relay has accepted or looked at since it started (a message queued before
// a restart counts from its next attempt).
import type { Leg } from '../../routing/model.ts';
import {
  emptyCounts,
  lagBucket,
  type ParityCounts,
  type ParityReport,
  type SuppressReason,
} from '../../contract/relay-parity.ts';
import type { LegState } from '../spool/types.ts';
import type { RelayMetrics } from './metrics.ts';

export interface ParityTracker {
  /** A message was spooled with these legs (in spool order). */
  accepted(id: string, legs: readonly Leg[]): void;
  /** The engine read a message's state: its open copies are pending. */
  loaded(id: string, legs: readonly LegState[]): void;
  /** Leg `index` of message `id` became final; `legs` is the message's state after it. */
  settled(id: string, index: number, legs: readonly LegState[]): void;
  /** A message left the spool without its legs settling (deleted by an operator, handed over by a drain). */
  forget(id: string): void;
  report(): ParityReport;
}

type Labels = { policy: string; test_recipient: string };

/** Messages with at most this many legs find a delivered leg's pair by a scan (deliveredPair). */
const SCAN_LEGS = 32;

/**
 * One label set (a policy, and a TestRecipient or none) and its counts: the one place the counts are kept. The
 * report sums them per policy and per TestRecipient; mailroute_parity_legs_total and mailroute_parity_copies_pending
 * are filled from them when scraped, so a leg costs no metric update (the copy lag's histogram needs each value).
 */
interface Bucket {
  labels: Labels;
  counts: ParityCounts;
  /** The labels of mailroute_parity_legs_total for a delivered leg of each role, made once. */
  delivered: {
    primary: Labels & { leg: string; result: string };
    copy: Labels & { leg: string; result: string };
  };
}

/** Adds `from` into `into`. */
function addCounts(into: ParityCounts, from: ParityCounts): void {
  into.primary += from.primary;
  into.copies += from.copies;
  into.pending += from.pending;
  for (const [reason, n] of Object.entries(from.suppressed) as [SuppressReason, number][])
    into.suppressed[reason] = (into.suppressed[reason] ?? 0) + n;
  from.lag.forEach((n, i) => (into.lag[i] = (into.lag[i] ?? 0) + n));
}

export function createParityTracker(
  metrics: Pick<RelayMetrics, 'parityCopyLag' | 'setParitySource'>,
): ParityTracker {
  /** policy + NUL + TestRecipient ('' for none) -> its bucket. */
  const buckets = new Map<string, Bucket>();
  /** Open copy legs: message id -> leg index -> bucket. */
  const open = new Map<string, Map<number, Bucket>>();
  /** Message id -> recipients whose lag was observed (two legs settling in one batch both see the other delivered). */
  const lagged = new Map<string, Set<string>>();
  /**
   * Message id -> recipient -> indexes of its legs, built from the legs at the first settle: the pair of a delivered
   * leg is found among its recipient's few legs, not by a scan of the message's (up to 2 x --max-recipients) legs.
   */
  const byRecipient = new Map<string, Map<string, number[]>>();

  metrics.setParitySource({
    fillLegs(counter) {
      counter.reset();
      for (const b of buckets.values()) {
        const c = b.counts;
        if (c.primary > 0) counter.inc(b.delivered.primary, c.primary);
        if (c.copies > 0) counter.inc(b.delivered.copy, c.copies);
        for (const [reason, n] of Object.entries(c.suppressed))
          counter.inc({ ...b.labels, leg: 'copy', result: 'suppressed', reason }, n);
      }
    },
    fillPending(gauge) {
      gauge.reset();
      for (const b of buckets.values()) gauge.set(b.labels, b.counts.pending);
    },
  });

  const bucketOf = (leg: Leg): Bucket | undefined => {
    if (leg.policy === undefined) return undefined;
    const testRecipient = leg.testRecipient ?? '';
    const key = `${leg.policy}\u0000${testRecipient}`;
    let b = buckets.get(key);
    if (b !== undefined) return b;
    const labels: Labels = { policy: leg.policy, test_recipient: testRecipient };
    b = {
      labels,
      counts: emptyCounts(),
      delivered: {
        primary: { ...labels, leg: 'primary', result: 'delivered' },
        copy: { ...labels, leg: 'copy', result: 'delivered' },
      },
    };
    buckets.set(key, b);
    return b;
  };
  const openCopy = (id: string, index: number, leg: Leg): void => {
    const b = leg.role === 'copy' ? bucketOf(leg) : undefined;
    if (b === undefined) return;
    let legs = open.get(id);
    if (legs === undefined) open.set(id, (legs = new Map<number, Bucket>()));
    if (legs.has(index)) return;
    legs.set(index, b);
    b.counts.pending++;
  };
  const closeCopy = (id: string, index: number): void => {
    const legs = open.get(id);
    const b = legs?.get(index);
    if (legs === undefined || b === undefined) return;
    legs.delete(index);
    if (legs.size === 0) open.delete(id);
    b.counts.pending--;
  };
  /** The first other leg of `recipient` in `legs` (spool order) with the other role, delivered. */
  const deliveredPair = (
    id: string,
    index: number,
    legs: readonly LegState[],
    recipient: string,
    role: Leg['role'],
  ): LegState | undefined => {
    const isPair = (o: LegState | undefined, i: number): o is LegState =>
      i !== index &&
      o !== undefined &&
      o.recipient === recipient &&
      o.leg.role !== role &&
      o.state === 'delivered';
    // a few legs (the usual message) are scanned; an index would cost more than it saves
    if (legs.length <= SCAN_LEGS) return legs.find((o, i) => isPair(o, i));
    let indexes = byRecipient.get(id);
    if (indexes === undefined) {
      const built = new Map<string, number[]>();
      legs.forEach((o, i) => {
        const list = built.get(o.recipient);
        if (list === undefined) built.set(o.recipient, [i]);
        else list.push(i);
      });
      byRecipient.set(id, (indexes = built));
    }
    for (const i of indexes.get(recipient) ?? []) {
      const o = legs[i];
      if (isPair(o, i)) return o;
    }
    return undefined;
  };

  return {
    accepted(id, legs) {
      legs.forEach((leg, i) => openCopy(id, i, leg));
    },
    loaded(id, legs) {
      legs.forEach((l, i) => {
        if (l.state === 'pending' || l.state === 'deferred') openCopy(id, i, l.leg);
      });
    },
    settled(id, index, legs) {
      const l = legs[index];
      if (l === undefined) return;
      closeCopy(id, index);
      const b = bucketOf(l.leg);
      if (b === undefined) return;
      if (l.state === 'delivered') {
        const role = l.leg.role;
        if (role === 'primary') b.counts.primary++;
        else b.counts.copies++;
        // The lag, once both legs of the pair are delivered: copy time minus record time (0 when the copy was first).
        let seen = lagged.get(id);
        if (l.lastAttemptAt === undefined || seen?.has(l.recipient) === true) return;
        const other = deliveredPair(id, index, legs, l.recipient, role);
        if (other?.lastAttemptAt !== undefined) {
          if (seen === undefined) lagged.set(id, (seen = new Set()));
          seen.add(l.recipient);
          const [copyAt, recordAt] =
            role === 'copy' ? [l.lastAttemptAt, other.lastAttemptAt] : [other.lastAttemptAt, l.lastAttemptAt];
          const seconds = Math.max(0, (Date.parse(copyAt) - Date.parse(recordAt)) / 1000);
          metrics.parityCopyLag.observe(b.labels, seconds);
          const bucket = lagBucket(seconds);
          b.counts.lag[bucket] = (b.counts.lag[bucket] ?? 0) + 1;
        }
        return;
      }
      if (l.leg.role !== 'copy') return;
      const reason: SuppressReason =
        l.state === 'failed'
          ? 'bounced'
          : (l.lastReply ?? '').startsWith('expired')
            ? 'expired'
            : (l.lastReply ?? '').startsWith('shed')
              ? 'shed'
              : 'rejected';
      b.counts.suppressed[reason] = (b.counts.suppressed[reason] ?? 0) + 1;
    },
    forget(id) {
      for (const index of [...(open.get(id)?.keys() ?? [])]) closeCopy(id, index);
      lagged.delete(id);
      byRecipient.delete(id);
    },
    report() {
      const policies: Record<string, ParityCounts> = {};
      const testRecipients: Record<string, ParityCounts> = {};
      for (const b of buckets.values()) {
        addCounts((policies[b.labels.policy] ??= emptyCounts()), b.counts);
        if (b.labels.test_recipient !== '')
          addCounts((testRecipients[b.labels.test_recipient] ??= emptyCounts()), b.counts);
      }
      return { policies, testRecipients, dropped: 0 };
    },
  };
}
