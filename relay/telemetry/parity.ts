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

function labelsOf(leg: Leg): Labels | undefined {
  return leg.policy === undefined
    ? undefined
    : { policy: leg.policy, test_recipient: leg.testRecipient ?? '' };
}

export function createParityTracker(
  metrics: Pick<RelayMetrics, 'parityLegs' | 'parityCopiesPending' | 'parityCopyLag'>,
): ParityTracker {
  const policies = new Map<string, ParityCounts>();
  const testRecipients = new Map<string, ParityCounts>();
  /** Open copy legs: message id -> leg index -> labels. */
  const open = new Map<string, Map<number, Labels>>();
  /** Message id -> recipients whose lag was observed (two legs settling in one batch both see the other delivered). */
  const lagged = new Map<string, Set<string>>();

  const countsFor = (l: Labels): ParityCounts[] => {
    const out: ParityCounts[] = [];
    let p = policies.get(l.policy);
    if (p === undefined) policies.set(l.policy, (p = emptyCounts()));
    out.push(p);
    if (l.test_recipient !== '') {
      let t = testRecipients.get(l.test_recipient);
      if (t === undefined) testRecipients.set(l.test_recipient, (t = emptyCounts()));
      out.push(t);
    }
    return out;
  };
  const pendingGauge = (l: Labels, delta: number): void => {
    metrics.parityCopiesPending.inc(l, delta);
    for (const c of countsFor(l)) c.pending += delta;
  };
  const openCopy = (id: string, index: number, leg: Leg): void => {
    const l = leg.role === 'copy' ? labelsOf(leg) : undefined;
    if (l === undefined) return;
    let legs = open.get(id);
    if (legs === undefined) open.set(id, (legs = new Map<number, Labels>()));
    if (legs.has(index)) return;
    legs.set(index, l);
    pendingGauge(l, 1);
  };
  const closeCopy = (id: string, index: number): void => {
    const legs = open.get(id);
    const l = legs?.get(index);
    if (legs === undefined || l === undefined) return;
    legs.delete(index);
    if (legs.size === 0) open.delete(id);
    pendingGauge(l, -1);
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
      const labels = labelsOf(l.leg);
      if (labels === undefined) return;
      const counts = countsFor(labels);
      if (l.state === 'delivered') {
        const role = l.leg.role;
        metrics.parityLegs.inc({ ...labels, leg: role, result: 'delivered' });
        for (const c of counts) {
          if (role === 'primary') c.primary++;
          else c.copies++;
        }
        // The lag, once both legs of the pair are delivered: copy time minus record time (0 when the copy was first).
        const other = legs.find(
          (o) => o !== l && o.recipient === l.recipient && o.leg.role !== role && o.state === 'delivered',
        );
        let seen = lagged.get(id);
        if (other?.lastAttemptAt !== undefined && l.lastAttemptAt !== undefined && !seen?.has(l.recipient)) {
          if (seen === undefined) lagged.set(id, (seen = new Set()));
          seen.add(l.recipient);
          const [copyAt, recordAt] =
            role === 'copy' ? [l.lastAttemptAt, other.lastAttemptAt] : [other.lastAttemptAt, l.lastAttemptAt];
          const seconds = Math.max(0, (Date.parse(copyAt) - Date.parse(recordAt)) / 1000);
          metrics.parityCopyLag.observe(labels, seconds);
          for (const c of counts) c.lag[lagBucket(seconds)] = (c.lag[lagBucket(seconds)] ?? 0) + 1;
        }
        return;
      }
      if (l.leg.role !== 'copy') return;
      const reason: SuppressReason =
        l.state === 'failed' ? 'bounced' : (l.lastReply ?? '').startsWith('expired') ? 'expired' : 'rejected';
      metrics.parityLegs.inc({ ...labels, leg: 'copy', result: 'suppressed', reason });
      for (const c of counts) c.suppressed[reason] = (c.suppressed[reason] ?? 0) + 1;
    },
    forget(id) {
      for (const index of [...(open.get(id)?.keys() ?? [])]) closeCopy(id, index);
      lagged.delete(id);
    },
    report() {
      const copy = (m: Map<string, ParityCounts>) =>
        Object.fromEntries(
          [...m].map(([k, c]) => [k, { ...c, suppressed: { ...c.suppressed }, lag: [...c.lag] }]),
        );
      return { policies: copy(policies), testRecipients: copy(testRecipients), dropped: 0 };
    },
  };
}
