// The parity counters against a reference computed here: delivered legs and copies, pending copies, suppressed copies
// by reason, and the copy lag of each recipient (once, when both of its legs are delivered), for messages small enough
// for the tracker to scan their legs and large enough for it to index them by recipient.
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { lagBucket, LAG_BUCKETS_SECONDS } from '../../contract/relay-parity.ts';
import { dualLegStates } from '../../test/support/engine-harness.ts';
import type { LegState } from '../spool/types.ts';
import { createRelayMetrics } from './metrics.ts';
import { createParityTracker } from './parity.ts';

const POLICY = 'default/example-com';
const dualLegs = (recipients: number, testRecipient?: string): LegState[] =>
  dualLegStates(recipients, POLICY, testRecipient);

/** A small deterministic generator (mulberry32): the same orders and times in every run. */
function random(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const T0 = Date.parse('2026-12-05T10:00:00Z');

/** mailroute_parity_legs_total of POLICY as "leg/result[/reason] value" lines, sorted. */
async function legsMetric(metrics: ReturnType<typeof createRelayMetrics>): Promise<string[]> {
  return (await metrics.parityLegs.get()).values
    .filter((v) => v.labels.policy === POLICY)
    .map((v) => [v.labels.leg, v.labels.result, v.labels.reason].filter(Boolean).join('/') + ` ${v.value}`)
    .sort();
}

describe('parity tracker', () => {
  it.each([1, 3, 16, 17, 40, 200])(
    '%i recipients, legs delivered in a random order: counts and one lag per recipient as computed here',
    async (recipients) => {
      const next = random(recipients);
      const metrics = createRelayMetrics(new Registry(), false);
      const tracker = createParityTracker(metrics);
      const legs = dualLegs(recipients);
      tracker.accepted(
        'm1',
        legs.map((l) => l.leg),
      );
      expect(tracker.report().policies[POLICY]?.pending).toBe(recipients);

      // Each leg is delivered at a random second of the next 2 hours, in a random order.
      const order = legs.map((_, i) => i).sort(() => next() - 0.5);
      const at = legs.map(() => new Date(T0 + Math.floor(next() * 7200) * 1000).toISOString());
      const current = [...legs];
      for (const i of order) {
        current[i] = { ...current[i]!, state: 'delivered', lastAttemptAt: at[i]! };
        tracker.settled('m1', i, [...current]);
      }

      const want = new Array<number>(LAG_BUCKETS_SECONDS.length + 1).fill(0);
      for (let r = 0; r < recipients; r++) {
        const seconds = Math.max(0, (Date.parse(at[2 * r + 1]!) - Date.parse(at[2 * r]!)) / 1000);
        want[lagBucket(seconds)]!++;
      }
      const counts = tracker.report().policies[POLICY];
      expect(counts).toEqual({
        primary: recipients,
        copies: recipients,
        suppressed: {},
        pending: 0,
        lag: want,
      });
      expect(await legsMetric(metrics)).toEqual([
        `copy/delivered ${recipients}`,
        `primary/delivered ${recipients}`,
      ]);
      const lag = (await metrics.parityCopyLag.get()).values.find(
        (v) => v.metricName === 'mailroute_parity_copy_lag_seconds_count',
      );
      expect(lag?.value).toBe(recipients);
    },
  );

  it('a pair delivered before this relay saw it (a restart) still gives the lag, with few legs and with many', () => {
    for (const recipients of [1, 40]) {
      const tracker = createParityTracker(createRelayMetrics(new Registry(), false));
      const legs = dualLegs(recipients, 'default/alice');
      // after a restart: every copy was delivered by the relay before; the legs of record are open
      const current = legs.map((l): LegState =>
        l.leg.role === 'copy'
          ? { ...l, state: 'delivered', lastAttemptAt: new Date(T0 + 30_000).toISOString() }
          : l,
      );
      tracker.loaded('m2', current);
      for (let i = 0; i < current.length; i += 2) {
        current[i] = { ...current[i]!, state: 'delivered', lastAttemptAt: new Date(T0).toISOString() };
        tracker.settled('m2', i, [...current]);
      }
      const want = new Array<number>(LAG_BUCKETS_SECONDS.length + 1).fill(0);
      want[lagBucket(30)] = recipients;
      const report = tracker.report();
      expect(report.policies[POLICY]).toEqual({
        primary: recipients,
        copies: 0,
        suppressed: {},
        pending: 0,
        lag: want,
      });
      expect(report.testRecipients['default/alice']?.lag).toEqual(want);
    }
  });

  it('suppressed copies by reason, the pending gauge back to 0, and forget() closing what never settled', async () => {
    const metrics = createRelayMetrics(new Registry(), false);
    const tracker = createParityTracker(metrics);
    const legs = dualLegs(20);
    tracker.accepted(
      'm3',
      legs.map((l) => l.leg),
    );
    const current = [...legs];
    const copy = (r: number, s: Partial<LegState>): void => {
      const i = 2 * r + 1;
      current[i] = { ...current[i]!, ...s };
      tracker.settled('m3', i, [...current]);
    };
    copy(0, { state: 'failed', lastReply: '550 5.1.1 no such user' });
    copy(1, { state: 'suppressed', lastReply: '550 5.1.1 no such user' });
    copy(2, { state: 'suppressed', lastReply: 'expired after 5d' });
    expect(tracker.report().policies[POLICY]).toMatchObject({
      suppressed: { bounced: 1, rejected: 1, expired: 1 },
      pending: 17,
    });
    expect(await legsMetric(metrics)).toEqual([
      'copy/suppressed/bounced 1',
      'copy/suppressed/expired 1',
      'copy/suppressed/rejected 1',
    ]);
    tracker.forget('m3');
    expect(tracker.report().policies[POLICY]?.pending).toBe(0);
    const pending = (await metrics.parityCopiesPending.get()).values.find((v) => v.labels.policy === POLICY);
    expect(pending?.value).toBe(0);
  });

  it('two TestRecipients under one policy and one under another: the report sums per policy and per TestRecipient, the metrics are per pair', async () => {
    const metrics = createRelayMetrics(new Registry(), false);
    const tracker = createParityTracker(metrics);
    const OTHER = 'other/policy';
    const messages: [string, LegState[]][] = [
      ['a', dualLegStates(2, POLICY, 'default/alice')],
      ['b', dualLegStates(3, POLICY, 'default/bob')],
      ['c', dualLegStates(1, OTHER, 'default/alice')],
      ['d', dualLegStates(4, POLICY)],
    ];
    for (const [id, legs] of messages) {
      tracker.accepted(
        id,
        legs.map((l) => l.leg),
      );
      // every leg of record delivered, copies left open
      legs.forEach((l, i) => {
        if (l.leg.role !== 'primary') return;
        legs[i] = { ...l, state: 'delivered', lastAttemptAt: new Date(T0).toISOString() };
        tracker.settled(id, i, [...legs]);
      });
    }
    const report = tracker.report();
    expect(report.policies[POLICY]).toMatchObject({ primary: 9, copies: 0, pending: 9 });
    expect(report.policies[OTHER]).toMatchObject({ primary: 1, pending: 1 });
    expect(report.testRecipients['default/alice']).toMatchObject({ primary: 3, pending: 3 });
    expect(report.testRecipients['default/bob']).toMatchObject({ primary: 3, pending: 3 });
    expect(Object.keys(report.testRecipients).sort()).toEqual(['default/alice', 'default/bob']);
    const series = (await metrics.parityLegs.get()).values
      .map((v) => `${v.labels.policy} ${v.labels.test_recipient} ${v.labels.leg} ${v.value}`)
      .sort();
    expect(series).toEqual([
      `${POLICY}  primary 4`,
      `${POLICY} default/alice primary 2`,
      `${POLICY} default/bob primary 3`,
      `${OTHER} default/alice primary 1`,
    ]);
    const pending = (await metrics.parityCopiesPending.get()).values
      .map((v) => `${v.labels.policy} ${v.labels.test_recipient} ${v.value}`)
      .sort();
    expect(pending).toEqual([
      `${POLICY}  4`,
      `${POLICY} default/alice 2`,
      `${POLICY} default/bob 3`,
      `${OTHER} default/alice 1`,
    ]);
    // read twice: the same values (a scrape fills them, it does not add)
    expect((await metrics.parityLegs.get()).values.map((v) => v.value).sort()).toEqual([1, 2, 3, 4]);
  });
});
