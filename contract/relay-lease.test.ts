import { describe, expect, it } from 'vitest';
import { isRelayLease, nextStaleIn, readHeartbeat, type LeaseLike } from './relay-lease.ts';

const now = new Date('2026-11-28T12:00:00Z');
const lease = (
  name: string,
  ageS: number,
  annotations: Record<string, string> = {},
  duration?: number,
): LeaseLike => ({
  metadata: { name, annotations },
  spec: {
    holderIdentity: name,
    renewTime: new Date(now.getTime() - ageS * 1000).toISOString(),
    ...(duration !== undefined ? { leaseDurationSeconds: duration } : {}),
  },
});

describe('relay heartbeat Leases', () => {
  it.each([
    [
      'renewed 5 s ago',
      lease('mailroute-relay-a', 5, { 'mailroute.io/revision': 'r1' }),
      { fresh: true, ready: true, revision: 'r1' },
    ],
    ['exactly 30 s old', lease('mailroute-relay-a', 30), { fresh: true }],
    ['31 s old', lease('mailroute-relay-a', 31), { fresh: false }],
    ['own short duration', lease('mailroute-relay-a', 11, {}, 10), { fresh: false }],
    [
      'draining',
      lease('mailroute-relay-a', 1, { 'mailroute.io/ready': 'false' }),
      { fresh: true, ready: false },
    ],
    [
      'no renewTime',
      { metadata: { name: 'mailroute-relay-x' }, spec: {} },
      { fresh: false, revision: undefined },
    ],
  ] as [string, LeaseLike, object][])('%s', (_n, l, want) => {
    expect(readHeartbeat(l, now)).toMatchObject(want);
  });

  it('recognises relay Leases by name and finds the next moment one goes stale', () => {
    expect(isRelayLease(lease('mailroute-relay-a', 0))).toBe(true);
    expect(isRelayLease(lease('mailroute-operator', 0))).toBe(false);
    expect(
      nextStaleIn(
        [lease('mailroute-relay-a', 25), lease('mailroute-relay-b', 5), lease('mailroute-relay-c', 40)],
        now,
      ),
    ).toBe(5001);
    expect(nextStaleIn([], now)).toBeUndefined();
  });
});
