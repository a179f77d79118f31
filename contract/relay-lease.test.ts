import { describe, expect, it } from 'vitest';
import { buildLease, HeartbeatObserver, isRelayLease, readHeartbeat, type LeaseLike } from './relay-lease.ts';

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

  it('recognises relay Leases by name', () => {
    expect(isRelayLease(lease('mailroute-relay-a', 0))).toBe(true);
    expect(isRelayLease(lease('mailroute-operator', 0))).toBe(false);
  });
});

describe('HeartbeatObserver: freshness by when the reader saw the Lease renewed, writer and reader on different clocks', () => {
  // The writer renews every 10 s at its wall clock (buildLease); the reader looks at every renewal (a watch event) and
  // judges at its own wall clock and monotonic clock. `skewMs`: the writer's clock minus the reader's.
  const run = (skewMs: number) => {
    const o = new HeartbeatObserver();
    let wall = now.getTime();
    let mono = 5_000;
    let l: LeaseLike = buildLease(
      { pod: 'r', namespace: 'ns', revision: 'r1', ready: true, smtp: undefined },
      new Date(wall + skewMs),
    );
    return {
      o,
      look: () => o.observe(l, mono, new Date(wall)),
      renew: () => {
        l = buildLease(
          { pod: 'r', namespace: 'ns', revision: 'r1', ready: true, smtp: undefined },
          new Date(wall + skewMs),
        );
      },
      pass: (ms: number) => {
        wall += ms;
        mono += ms;
      },
      nextStaleIn: () => o.nextStaleIn(mono),
    };
  };

  it('a relay whose node clock is 45 s behind is fresh just renewed, and while it renews; the skew is reported once', () => {
    const r = run(-45_000);
    expect(r.look()).toMatchObject({ name: 'mailroute-relay-r', fresh: true, revision: 'r1' });
    expect(r.look().skewSeconds).toBeUndefined(); // behind at first sight could be age: not judged
    const skews: (number | undefined)[] = [];
    for (let i = 0; i < 10; i++) {
      r.pass(10_000);
      r.renew();
      const hb = r.look();
      expect(hb.fresh).toBe(true);
      skews.push(hb.skewSeconds);
    }
    expect(skews.filter((s) => s !== undefined)).toEqual([-35]);
    expect(r.nextStaleIn()).toBe(30_001);
    // it stops renewing: stale 30 s after its last renewal was seen
    r.pass(30_000);
    expect(r.look().fresh).toBe(true);
    r.pass(1);
    expect(r.look().fresh).toBe(false);
    expect(r.nextStaleIn()).toBeUndefined();
  });

  it('a relay whose clock ran a day ahead and died goes stale within the lease duration of observation', () => {
    const r = run(86_400_000);
    // first sight: a renewTime more than the lease duration ahead is not trusted until it changes
    expect(r.look()).toMatchObject({ fresh: false, skewSeconds: 86_400 });
    expect(r.nextStaleIn()).toBeUndefined();
    r.pass(10_000);
    r.renew();
    expect(r.look()).toMatchObject({ fresh: true });
    expect(r.look().skewSeconds).toBeUndefined(); // reported once
    // killed now; the Lease stays with renewTime a day in the reader's future
    r.pass(30_000);
    expect(r.look().fresh).toBe(true);
    r.pass(1);
    expect(r.look().fresh).toBe(false);
    r.pass(3_600_000);
    expect(r.look().fresh).toBe(false);
  });

  it('same clocks: as before (fresh 30 s after a renewal, own duration respected); a reader wall-clock step changes nothing', () => {
    const r = run(0);
    expect(r.look()).toMatchObject({ fresh: true });
    r.pass(30_000);
    expect(r.look()).toMatchObject({ fresh: true });
    r.pass(1);
    expect(r.look()).toMatchObject({ fresh: false });
    r.renew();
    const hb = r.look();
    expect(hb).toMatchObject({ fresh: true });
    expect(hb.skewSeconds).toBeUndefined();

    const o = new HeartbeatObserver();
    const short = lease('mailroute-relay-s', 0, {}, 10);
    expect(o.observe(short, 0, now).fresh).toBe(true);
    expect(o.observe(short, 10_001, now).fresh).toBe(false);
    // the reader's wall clock steps an hour back: a Lease renewed meanwhile is fresh, one that was not is stale
    const a = lease('mailroute-relay-a', 0);
    expect(o.observe(a, 0, now).fresh).toBe(true);
    expect(o.observe(a, 31_000, new Date(now.getTime() - 3_600_000)).fresh).toBe(false);
  });

  it('first sight counts as a renewal within the skew bound; an unchanged or older copy is no renewal; forget and retain', () => {
    const o = new HeartbeatObserver();
    expect(o.observe(lease('mailroute-relay-a', 149), 0, now).fresh).toBe(true);
    expect(o.observe(lease('mailroute-relay-b', 151), 0, now).fresh).toBe(false); // abandoned long ago
    expect(o.observe(lease('mailroute-relay-c', -30), 0, now)).toMatchObject({
      fresh: true,
      skewSeconds: 30,
    });
    expect(o.observe(lease('mailroute-relay-d', -31), 0, now).fresh).toBe(false);
    expect(o.observe({ metadata: { name: 'mailroute-relay-x' }, spec: {} }, 0, now).fresh).toBe(false);
    // a renewal seen, then a lagging cache shows the previous copy again: not a renewal
    const old = lease('mailroute-relay-e', 0);
    const renewed = lease('mailroute-relay-e', -10);
    o.observe(old, 0, now);
    o.observe(renewed, 20_000, now);
    expect(o.observe(old, 40_000, now).fresh).toBe(true);
    expect(o.observe(old, 50_001, now).fresh).toBe(false);
    // forgotten (deleted) and seen again: first sight
    o.forget('mailroute-relay-e');
    expect(o.observe(old, 50_002, now).fresh).toBe(true);
    o.retain(['mailroute-relay-a']);
    expect(o.observe(lease('mailroute-relay-e', 0), 100_000, now).fresh).toBe(true);
    expect(o.observe(lease('mailroute-relay-a', 149), 100_000, now).fresh).toBe(false);
  });
});
