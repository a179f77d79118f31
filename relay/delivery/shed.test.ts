// Copies giving way to primary mail on a spool volume low on space: the flag, which legs a message gives up (pure),
// the watcher's decisions (a fake volume and a recording shed), and the engine's pass over its queue (in-memory
// spool, oldest first, stopping once there is room).
import pino from 'pino';
import { Readable } from 'node:stream';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { copyLeg, primaryLeg, server } from '../../test/support/engine-harness.ts';
import { FakeClock, settle } from '../../test/support/fake-clock.ts';
import { deliveryOptions, envelope } from '../../test/support/delivery.ts';
import { MemorySpool } from '../../test/support/memory-spool.ts';
import type { LegState, SpoolState } from '../spool/types.ts';
import { createRelayMetrics } from '../telemetry/metrics.ts';
import { startDelivery } from './engine.ts';
import {
  parseSpaceThreshold,
  type SpoolSpace,
  SHED_STATUS,
  shedState,
  shortOfSpace,
  thresholdBytes,
  watchSpoolSpace,
} from './shed.ts';

describe('--shed-copies-below', () => {
  it.each([
    ['10%', { percent: 10 }],
    ['2.5 %', { percent: 2.5 }],
    ['90%', { percent: 90 }],
    ['0', { bytes: 0 }],
    ['2GiB', { bytes: 2 * 1024 ** 3 }],
    ['512m', { bytes: 512 * 1024 ** 2 }],
    ['91%', undefined],
    ['100%', undefined],
    ['-1%', undefined],
    ['ten', undefined],
    ['', undefined],
  ])('%j', (text, want) => {
    expect(parseSpaceThreshold(text)).toEqual(want);
  });

  it.each([
    ['plenty of both', { percent: 10 }, 500, 50, undefined],
    ['bytes short', { percent: 10 }, 99, 50, '0.0 MiB free, under --shed-copies-below 0.0 MiB'],
    [
      'files short (a share of the files too)',
      { percent: 10 },
      500,
      9,
      '9 files (inodes) free of 100, under --shed-copies-below 10',
    ],
    [
      'a byte threshold counts files as its share of the volume',
      { bytes: 250 },
      500,
      24,
      '24 files (inodes) free of 100, under --shed-copies-below 25',
    ],
    ['0 never', { bytes: 0 }, 0, 0, undefined],
  ] as const)('shortOfSpace: %s', (_what, t, free, freeFiles, want) => {
    expect(shortOfSpace(t, { free, total: 1000, freeFiles, totalFiles: 100 })).toBe(want);
  });

  it('a file system that does not count files is judged by bytes alone', () => {
    expect(
      shortOfSpace({ percent: 10 }, { free: 500, total: 1000, freeFiles: 0, totalFiles: 0 }),
    ).toBeUndefined();
  });

  it('a share is of the volume; 0 never sheds', () => {
    expect(thresholdBytes({ percent: 10 }, 10_000)).toBe(1_000);
    expect(thresholdBytes({ bytes: 4096 }, 10_000)).toBe(4096);
    expect(thresholdBytes({ bytes: 0 }, 10_000)).toBe(0);
  });
});

const old = server('old');
const next = server('new');
const NOW = new Date('2026-12-06T12:00:00Z');
const REPLY = 'shed: test';

function state(legs: LegState[], over: Partial<SpoolState['meta']> = {}): SpoolState {
  const { recipients: _r, ...meta } = envelope([], { mailFrom: 'alice@sender.example', ...over });
  return { version: 1, id: 'm', meta, size: 10, legs };
}
const leg = (l: LegState['leg'], s: LegState['state'], over: Partial<LegState> = {}): LegState => ({
  recipient: 'bob@example.com',
  leg: l,
  state: s,
  attempts: 1,
  ...(s === 'deferred' ? { nextAttemptAt: '2026-12-06T13:00:00Z', status: '4.4.1' } : {}),
  ...over,
});
const P = primaryLeg('bob@example.com', old);
const C = copyLeg('bob@example.com', next);
const CN = copyLeg('bob@example.com', next, 'Notify');

describe('shedState: which legs a message gives up', () => {
  it.each([
    ['the leg of record still deferred: nothing', [leg(P, 'deferred'), leg(C, 'deferred')], {}, undefined],
    ['the leg of record still pending: nothing', [leg(P, 'pending'), leg(C, 'deferred')], {}, undefined],
    ['the copy already final: nothing', [leg(P, 'delivered'), leg(C, 'delivered')], {}, undefined],
    [
      'primary delivered, copy deferred: suppressed',
      [leg(P, 'delivered'), leg(C, 'deferred')],
      {},
      ['suppressed'],
    ],
    ['primary failed, copy pending: suppressed', [leg(P, 'failed'), leg(C, 'pending')], {}, ['suppressed']],
    ['a Notify copy fails and owes a DSN', [leg(P, 'delivered'), leg(CN, 'deferred')], {}, ['failed+dsn']],
    [
      'a Notify copy of the null sender fails without a DSN',
      [leg(P, 'delivered'), leg(CN, 'deferred')],
      { mailFrom: '' },
      ['failed'],
    ],
    ['a copy whose recipient has no leg of record is never shed', [leg(C, 'deferred')], {}, undefined],
    [
      'a handed-over message (legs of record delivered on the other relay) gives its copies up',
      [leg(C, 'deferred')],
      { origin: { queueId: '0000000000000001', relay: 'relay-0' } },
      ['suppressed'],
    ],
  ] as const)('%s', (_what, legs, meta, want) => {
    const r = shedState(state([...legs], meta), new Set(), REPLY);
    if (want === undefined) return expect(r).toBeUndefined();
    expect(r?.shed.map((x) => `${x.leg.state}${x.leg.dsnPending === true ? '+dsn' : ''}`)).toEqual(want);
    for (const x of r?.shed ?? []) {
      expect(x.leg).toMatchObject({ lastReply: REPLY, status: SHED_STATUS, attempts: 1 });
      expect(x.leg.nextAttemptAt).toBeUndefined();
      expect(r?.state.legs[x.index]).toBe(x.leg);
    }
  });

  it('a copy with an attempt in flight is left to it', () => {
    const s = state([
      leg(P, 'delivered'),
      leg(C, 'deferred'),
      leg({ ...C, recipient: 'b2@new.example' }, 'deferred'),
    ]);
    expect(shedState(s, new Set([1]), REPLY)?.shed.map((x) => x.index)).toEqual([2]);
    expect(shedState(s, new Set([1, 2]), REPLY)).toBeUndefined();
  });
});

describe('watchSpoolSpace', () => {
  const MiB = 1024 * 1024;
  /**
   * free: the MiB free at each look (the last repeats) of a 1000 MiB volume; legsFound: what each pass can shed at
   * most; space: the volume's look instead. The log's lines are kept.
   */
  const harness = (free: number[], legsFound: number, space?: () => Promise<SpoolSpace>) => {
    const clock = new FakeClock(0);
    const metrics = createRelayMetrics(new Registry(), false);
    const passes: string[] = [];
    const lines: string[] = [];
    let i = 0;
    const w = watchSpoolSpace({
      dir: '/spool',
      threshold: { percent: 10 },
      intervalMs: 1000,
      timers: clock,
      log: pino({ level: 'info' }, { write: (l: string) => void lines.push(l) }),
      metrics,
      space:
        space ??
        (() =>
          Promise.resolve({
            free: (free[Math.min(i++, free.length - 1)] ?? 0) * MiB,
            total: 1000 * MiB,
            freeFiles: 90,
            totalFiles: 100,
          })),
      shed: async (enough, reply) => {
        passes.push(reply);
        let legs = 0;
        while (legs < legsFound && !(await enough())) legs++;
        return { messages: legs, legs, passed: legs };
      },
    });
    return { clock, metrics, passes, lines, w };
  };
  const value = async (m: { get(): Promise<{ values: { value: number }[] }> }): Promise<number | undefined> =>
    (await m.get()).values[0]?.value;

  it('above the threshold: no pass, the gauge follows the volume', async () => {
    const { metrics, passes, w } = harness([500], 10);
    await w.check();
    expect(passes).toEqual([]);
    expect(await value(metrics.spoolFreeBytes)).toBe(500 * MiB);
    w.stop();
  });

  it('below it: a pass until enough() says there is room again, counted, the reply naming both figures', async () => {
    // looks: the check (50), enough() twice (60, 80: not yet), enough() (120: room), the look after the pass
    const { metrics, passes, w } = harness([50, 60, 80, 120, 120], 10);
    await w.check();
    expect(passes).toHaveLength(1);
    expect(passes[0]).toBe(
      'shed: the spool volume had 50.0 MiB free, under --shed-copies-below 100.0 MiB; the copy gave way to primary mail',
    );
    expect(await value(metrics.copyLegsShed)).toBe(2);
    expect(await value(metrics.spoolFreeBytes)).toBe(120 * MiB);
    w.stop();
  });

  it('a volume that cannot be looked at is logged once, not at every check, and again after a good look', async () => {
    let fail = true;
    const { clock, lines, w } = harness([500], 0, () =>
      fail
        ? Promise.reject(new Error('EACCES'))
        : Promise.resolve({ free: 500 * MiB, total: 1000 * MiB, freeFiles: 90, totalFiles: 100 }),
    );
    await w.check();
    await clock.advance(5000);
    expect(lines.filter((l) => l.includes('could not look at the free space'))).toHaveLength(1);
    fail = false;
    await clock.advance(1000);
    fail = true;
    await clock.advance(3000);
    expect(lines.filter((l) => l.includes('could not look at the free space'))).toHaveLength(2);
    w.stop();
  });

  it('while the space stays low every check makes a pass; stop() ends them', async () => {
    const { clock, passes, w } = harness([50], 0);
    await w.check();
    await clock.advance(3000);
    expect(passes).toHaveLength(4);
    w.stop();
    await clock.advance(3000);
    expect(passes).toHaveLength(4);
  });
});

describe('the engine sheds oldest first and stops once there is room', () => {
  it('copy-only messages give their copies up in queue order; one still waiting on its primary is kept', async () => {
    const clock = new FakeClock(NOW.getTime());
    const spool = new MemorySpool(clock.clock);
    const ids: string[] = [];
    for (let i = 0; i < 12; i++) {
      const r = `u${i}@example.com`;
      const a = await spool.accept(
        envelope([{ recipient: r, legs: [primaryLeg(r, old), copyLeg(r, next)] }]),
        Readable.from([Buffer.from('Subject: x\r\n\r\nx\r\n')]),
      );
      if (!a.ok) throw a.error;
      ids.push(a.id);
    }
    const later = new Date(NOW.getTime() + 3_600_000).toISOString();
    for (const [k, id] of ids.entries()) {
      const s = spool.states.get(id)!;
      // message 1 still waits on its leg of record; the others on their copy alone
      s.legs = s.legs.map((l) =>
        l.leg.role === 'primary' && k !== 1
          ? { ...l, state: 'delivered', attempts: 1 }
          : { ...l, state: 'deferred', attempts: 1, nextAttemptAt: later },
      );
    }
    const finals: string[] = [];
    const engine = startDelivery(
      deliveryOptions(spool, {
        clock: clock.clock,
        elapsed: clock.elapsed,
        timers: clock,
        onLegFinal: (f) => finals.push(f.queueId),
      }),
    );
    await engine.ready;
    await settle();
    // enough() is asked before the first candidate and every 8 after: room again at the second ask. Candidates are
    // the messages waiting on copies alone (message 1 is not one): 0 and 2-8 are passed and shed
    let asked = 0;
    const writes = spool.writes;
    const r = await engine.shedCopies(() => Promise.resolve(++asked > 1), REPLY);
    expect(r).toEqual({ messages: 8, legs: 8, passed: 9 });
    // one write per message: its removal (every leg final, nothing owed), not a state write and then a removal
    expect(spool.writes - writes).toBe(8);
    await settle();
    expect(finals).toEqual(ids.slice(0, 9).filter((_, k) => k !== 1));
    // the shed messages are complete and gone; the one waiting on its primary and the last three stay
    expect([...spool.states.keys()]).toEqual([ids[1], ...ids.slice(9)]);
    expect(spool.states.get(ids[1]!)?.legs.map((l) => l.state)).toEqual(['deferred', 'deferred']);
    await engine.stop();
  });
});
