// The queue index's entries: a deferred message at rest holds no sets (docs/queue.md "A long outage"), and the lane
// of new mail (Entry.fresh) ends for good when the message is deferred.
import { Readable } from 'node:stream';
import { Registry } from 'prom-client';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../test/support/fake-clock.ts';
import { MemorySpool } from '../../test/support/memory-spool.ts';
import { spoolEnvelope } from '../../test/support/delivery.ts';
import { createRelayMetrics } from '../telemetry/metrics.ts';
import { QueueIndex } from './queue-index.ts';
import { Results, type PendingResult } from './results.ts';

const index = (): QueueIndex => new QueueIndex(createRelayMetrics(new Registry(), false));

describe('QueueIndex entries', () => {
  it('a deferred message lets go of its empty sets; sets in use are kept', () => {
    const q = index();
    const e = q.add('m1', 0, true);
    const inflight = e.inflight;
    inflight.add(1);
    const blocked = e.blockedOn;
    blocked.add('legacy');
    q.setKind('m1', e, 'deferred');
    // in use: the same sets
    expect(e.inflight).toBe(inflight);
    expect(e.blockedOn).toBe(blocked);
    inflight.delete(1);
    blocked.delete('legacy');
    q.setKind('m1', e, 'deferred');
    // empty at rest: let go (a new, empty set when next used)
    expect(e.inflight).not.toBe(inflight);
    expect(e.inflight.size).toBe(0);
    expect(e.blockedOn).not.toBe(blocked);
  });

  it('fresh (the lane of new mail) ends for good when the message is deferred', () => {
    const q = index();
    const fresh = q.add('new', 0, true);
    const scanned = q.add('old', 0);
    expect([fresh.fresh, scanned.fresh]).toEqual([true, false]);
    q.setKind('new', fresh, 'pending');
    expect(fresh.fresh).toBe(true);
    q.setKind('new', fresh, 'deferred');
    q.setKind('new', fresh, 'pending');
    expect(fresh.fresh).toBe(false);
    expect([q.count('pending'), q.count('deferred')]).toEqual([2, 0]);
  });
});

describe('Results: the batch of a message', () => {
  it('exists while results wait to be written, and is let go of once they are', async () => {
    const clock = new FakeClock(Date.parse('2026-12-06T10:00:00Z'));
    const spool = new MemorySpool(() => new Date(clock.now));
    const accepted = await spool.accept(
      spoolEnvelope(),
      Readable.from([Buffer.from('Subject: x\r\n\r\nx\r\n')]),
    );
    if (!accepted.ok) throw accepted.error;
    const id = accepted.id;
    const q = index();
    const e = q.add(id, clock.now, true);
    const written: string[] = [];
    const results = new Results({
      spool,
      clock: () => new Date(clock.now),
      timers: clock,
      coalesceMs: 5,
      retryScheduleMs: [1000],
      maxQueueLifetimeMs: 3_600_000,
      delayWarningMs: 0,
      metrics: createRelayMetrics(new Registry(), false),
      log: pino({ level: 'silent' }),
      stopped: () => false,
      closed: () => false,
      removing: () => undefined,
      staying: () => undefined,
      storage: { failed: () => undefined, wrote: () => undefined },
      written: (_id, _m, w) => {
        written.push(w.state === null ? 'removed' : 'written');
        return Promise.resolve();
      },
    });
    const result = (i: number): PendingResult => ({
      job: {
        id,
        indexes: [i],
        server: { name: 'legacy', host: '127.0.0.1', port: 25, mx: false, tls: 'None', maxConnections: 2 },
        role: i === 0 ? 'primary' : 'copy',
        from: 'alice@sender.example',
        size: 10,
        recipients: new Map([[i, `r${i}@example.com`]]),
        body8bit: false,
      },
      replies: new Map([[i, { kind: 'smtp', code: 250, text: '250 2.0.0 ok' }]]),
      serverLabel: '127.0.0.1:25',
      durationMs: 1,
    });
    expect(e.results).toBeUndefined();
    e.inflight.add(0);
    e.inflight.add(1);
    const first = results.record(id, e, result(0));
    // leg 1 is still in flight: the result waits for it (coalescing) in the message's batch
    expect(e.results?.pending.length).toBe(1);
    const second = results.record(id, e, result(1));
    await Promise.all([first, second]);
    expect(written).toEqual(['removed']);
    expect(e.results).toBeUndefined();
    expect(e.inflight.size).toBe(0);
  });
});
