// The parity report in the relay heartbeat Lease: encoding within a size bound, decoding untrusted text, summing the
// relays, and the p95 of the copy lag from histogram buckets.
import { describe, expect, it } from 'vitest';
import {
  decodeParity,
  emptyCounts,
  encodeParity,
  formatLagBound,
  lagBucket,
  lagP95Seconds,
  mergeParity,
  parityStatus,
  type ParityCounts,
  type ParityReport,
} from './relay-parity.ts';

const counts = (over: Partial<ParityCounts> = {}): ParityCounts => ({ ...emptyCounts(), ...over });

describe('lag buckets and p95', () => {
  it.each([
    [0, 0],
    [1, 0],
    [1.001, 1],
    [5, 1],
    [3600, 6],
    [86_400, 8],
    [86_401, 9],
  ])('lagBucket(%d s) = %d', (s, i) => {
    expect(lagBucket(s)).toBe(i);
  });

  it.each([
    ['no pairs', [], undefined],
    ['all within 1 s', [100], 1],
    ['95 fast, 5 slow: the p95 is still fast', [95, 0, 0, 0, 5], 1],
    ['94 fast, 6 slow: the p95 is slow', [94, 0, 0, 0, 6], 300],
    ['longer than a day', [0, 0, 0, 0, 0, 0, 0, 0, 0, 3], Number.POSITIVE_INFINITY],
  ])('%s', (_what, buckets, want) => {
    const lag = emptyCounts().lag.map((_, i) => buckets[i] ?? 0);
    expect(lagP95Seconds(lag)).toBe(want);
  });

  it.each([
    [1, '<= 1s'],
    [300, '<= 5m'],
    [14_400, '<= 4h'],
    [Number.POSITIVE_INFINITY, '> 24h'],
  ])('formatLagBound(%d) = %s', (s, text) => {
    expect(formatLagBound(s)).toBe(text);
  });
});

describe('encode, decode, merge', () => {
  const report: ParityReport = {
    policies: { 'mail/cutover': counts({ primary: 10, copies: 8, pending: 1, suppressed: { rejected: 1 } }) },
    testRecipients: { 'mail/alice': counts({ primary: 2, copies: 2, lag: [2, 0, 0, 0, 0, 0, 0, 0, 0, 0] }) },
    dropped: 0,
  };

  it('round-trips', () => {
    expect(decodeParity(encodeParity(report))).toEqual(report);
  });

  it('stays within the size bound by leaving out the TestRecipients with the fewest legs, and says how many', () => {
    const many: ParityReport = { policies: report.policies, testRecipients: {}, dropped: 0 };
    for (let i = 0; i < 2000; i++) many.testRecipients[`mail/user-${i}`] = counts({ primary: i, copies: i });
    const text = encodeParity(many, 8192);
    expect(text.length).toBeLessThanOrEqual(8192);
    const back = decodeParity(text)!;
    expect(back.policies).toEqual(many.policies);
    const kept = Object.keys(back.testRecipients);
    expect(kept.length).toBeGreaterThan(10);
    expect(back.dropped).toBe(2000 - kept.length);
    expect(kept).toContain('mail/user-1999'); // the busiest are kept
    expect(kept).not.toContain('mail/user-0');
  });

  it.each([
    ['absent', undefined],
    ['not JSON', '{'],
    ['another version', '{"v":2,"policies":{}}'],
    ['an array', '[]'],
  ])('refuses %s', (_what, text) => {
    expect(decodeParity(text)).toBeUndefined();
  });

  it('reads hostile values as zero, never as negative or fractional counts', () => {
    const r = decodeParity(
      '{"v":1,"policies":{"a/b":{"p":-3,"c":1.5,"q":"x","s":{"rejected":2,"other":9},"l":[1,-1]}}}',
    );
    expect(r?.policies['a/b']).toEqual(
      counts({ suppressed: { rejected: 2 }, lag: [1, 0, 0, 0, 0, 0, 0, 0, 0, 0] }),
    );
  });

  it('sums relays', () => {
    const m = mergeParity([report, report, { policies: {}, testRecipients: {}, dropped: 3 }]);
    expect(m.policies['mail/cutover']).toEqual(
      counts({ primary: 20, copies: 16, pending: 2, suppressed: { rejected: 2 } }),
    );
    expect(m.testRecipients['mail/alice']?.lag[0]).toBe(4);
    expect(m.dropped).toBe(3);
  });

  it('status shape', () => {
    expect(parityStatus(report.policies['mail/cutover'])).toEqual({
      primaryDelivered: 10,
      copiesDelivered: 8,
      copiesSuppressed: 1,
      copiesPending: 1,
    });
    expect(parityStatus(report.testRecipients['mail/alice'])).toMatchObject({ lagP95: '<= 1s' });
  });
});
