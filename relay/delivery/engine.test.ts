// The delivery engine alone: a fake transport, an in-memory spool and a fake clock (test/support/engine-harness.ts).
// Time moves only when a test advances the clock, so retries, suspension, coalescing and expiry are exact.
import { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { startDelivery } from './engine.ts';
import type { AttemptReply } from './outcome.ts';
import type { LegFinal } from './results.ts';
import { createLogger } from '../../lib/logger.ts';
import {
  FakeNet,
  busy,
  copyLeg,
  engineHarness,
  fakeResolver,
  noSuchUser,
  ok,
  primaryLeg,
  refused,
  routeTo,
  server,
  type EngineHarness,
} from '../../test/support/engine-harness.ts';
import { fakeWallClock, restoreWallClock, stepWallClock } from '../../test/support/clock.ts';
import { deliveryOptions, envelope } from '../../test/support/delivery.ts';
import { settle } from '../../test/support/fake-clock.ts';
import { MemorySpool } from '../../test/support/memory-spool.ts';
import { waitFor } from '../../test/support/wait.ts';
import { POOL_IDLE_MS } from './destination.ts';

let h: EngineHarness | undefined;
afterEach(async () => {
  await h?.stop();
  h = undefined;
});

const mx1 = server('mx1');
const mx2 = server('mx2');

type Line = Record<string, unknown>;

/** mailroute_destination_recoveries_total of a server. */
async function counter(harness: EngineHarness, name: string): Promise<number> {
  const m = await harness.metrics.destinationRecoveries.get();
  return m.values.find((v) => v.labels.server === name)?.value ?? 0;
}

describe('delivery engine (fake clock, in-memory spool, fake transport)', () => {
  it('delivers both legs of a dual message and removes it without rewriting the state', async () => {
    h = await engineHarness();
    const id = await h.accept([
      { recipient: 'bob@x.test', legs: [primaryLeg('bob@x.test', mx1), copyLeg('bob@y.test', mx2)] },
    ]);
    expect(h.net.sentTo('mx1.test')).toBe(1);
    expect(h.net.sentTo('mx2.test')).toBe(1);
    expect(h.spool.states.has(id)).toBe(false);
    // both results waited for each other and went in one update, which removed the message
    expect(h.spool.writes).toBe(1);
    expect(h.engine.stats()).toMatchObject({ messages: 0, pending: 0, deferred: 0, jobs: 0 });
  });

  it('retries a 4xx on the schedule, from the fake clock alone, and delivers when the server recovers', async () => {
    h = await engineHarness({ retryScheduleMs: [60_000, 300_000] });
    h.net.reply = () => busy;
    const id = await h.accept([{ recipient: 'bob@x.test', legs: [primaryLeg('bob@x.test', mx1)] }]);
    expect(h.legs(id)?.[0]).toMatchObject({
      state: 'deferred',
      attempts: 1,
      lastReply: '451 4.3.0 try later',
      status: '4.3.0',
      nextAttemptAt: new Date(h.clock.now + 60_000).toISOString(),
    });
    expect(h.engine.stats()).toMatchObject({ messages: 1, deferred: 1 });
    await h.clock.advance(59_999);
    expect(h.net.sent).toHaveLength(1);
    await h.clock.advance(1);
    expect(h.net.sent).toHaveLength(2);
    expect(h.legs(id)?.[0]).toMatchObject({
      attempts: 2,
      nextAttemptAt: new Date(h.clock.now + 300_000).toISOString(),
    });
    h.net.reply = () => ({ kind: 'smtp', code: 250, text: '250 ok' });
    await h.clock.advance(300_000);
    expect(h.net.sent).toHaveLength(3);
    expect(h.spool.states.has(id)).toBe(false);
  });

  it('flush() tries a deferred leg now', async () => {
    h = await engineHarness({ retryScheduleMs: [3_600_000] });
    h.net.reply = () => busy;
    await h.accept([{ recipient: 'bob@x.test', legs: [primaryLeg('bob@x.test', mx1)] }]);
    h.engine.flush();
    await settle();
    expect(h.net.sent).toHaveLength(2);
  });

  it('flush() tries every deferred leg now, also beyond the 16 transactions a destination holds', async () => {
    h = await engineHarness({ retryScheduleMs: [3_600_000] });
    h.net.reply = () => busy;
    for (let i = 0; i < 40; i++)
      await h.accept([{ recipient: `r${i}@x.test`, legs: [primaryLeg(`r${i}@x.test`, mx1)] }]);
    expect(h.engine.stats()).toMatchObject({ messages: 40, deferred: 40 });
    h.net.sent.length = 0;
    h.net.reply = () => ok;
    h.net.hold('mx1.test'); // the first 16 fill the destination; the other 24 wait for a slot
    h.engine.flush();
    await settle();
    expect(h.engine.stats().jobs).toBe(16);
    h.net.release();
    for (let i = 0; i < 50 && h.spool.states.size > 0; i++) await settle();
    expect(h.net.sent).toHaveLength(40);
    expect(h.spool.states.size).toBe(0);
  });

  describe('a destination that answers again wakes the deferred mail waiting on it', () => {
    const down = server('down');
    const up = server('up');

    it('copies deferred for an hour go as soon as one transaction reaches the server again; other legs keep their times', async () => {
      h = await engineHarness({ retryScheduleMs: [3_600_000], destinationBackoffMs: 1_000 });
      let reachable = false;
      h.net.reply = (host) =>
        host === 'down.test' && !reachable ? refused : host === 'mx1.test' ? busy : ok;
      const ids: string[] = [];
      for (let i = 0; i < 30; i++)
        ids.push(
          await h.accept([
            {
              recipient: `r${i}@x.test`,
              legs: [primaryLeg(`r${i}@x.test`, up), copyLeg(`r${i}@y.test`, down)],
            },
          ]),
        );
      // another message waits on another destination (451 to every recipient: it answers, so it is not down)
      const other = await h.accept([{ recipient: 'o@x.test', legs: [primaryLeg('o@x.test', mx1)] }]);
      expect(h.engine.stats()).toMatchObject({ messages: 31, deferred: 31 });
      expect(h.net.sentTo('down.test')).toBe(1); // one connection, then suspended
      expect(h.net.sentTo('mx1.test')).toBe(1);

      reachable = true;
      await h.clock.advance(1_000); // the suspension is over; a new message's copy reaches the server
      const fresh = await h.accept([
        { recipient: 'n@x.test', legs: [primaryLeg('n@x.test', up), copyLeg('n@y.test', down)] },
      ]);
      for (let i = 0; i < 50 && h.spool.states.size > 1; i++) await settle();
      for (const id of [...ids, fresh]) expect(h.spool.states.has(id)).toBe(false);
      expect(h.net.sentTo('down.test')).toBe(1 + 1 + 30);
      expect(h.net.sentTo('up.test')).toBe(31); // every primary once
      expect(h.net.sentTo('mx1.test')).toBe(1); // its hour is not over
      expect(h.legs(other)?.[0]?.attempts).toBe(1);
      expect(await counter(h, 'down')).toBe(1);
    });

    it('both servers of 40 dual messages come back: every leg goes, also those that waited for a slot at either', async () => {
      h = await engineHarness({ retryScheduleMs: [3_600_000], destinationBackoffMs: 1_000 });
      let reachable = false;
      h.net.reply = () => (reachable ? ok : refused);
      for (let i = 0; i < 40; i++)
        await h.accept([
          {
            recipient: `r${i}@x.test`,
            legs: [primaryLeg(`r${i}@x.test`, up), copyLeg(`r${i}@y.test`, down)],
          },
        ]);
      expect(h.engine.stats()).toMatchObject({ messages: 40, deferred: 40 });
      reachable = true;
      await h.clock.advance(1_000);
      h.net.hold(); // the first 16 transactions per server stay in flight: the other messages wait for slots
      await h.accept([
        { recipient: 'n@x.test', legs: [primaryLeg('n@x.test', up), copyLeg('n@y.test', down)] },
      ]);
      await settle();
      h.net.release();
      for (let i = 0; i < 100 && h.spool.states.size > 0; i++) await settle();
      expect(h.spool.states.size).toBe(0);
      expect(h.net.sentTo('up.test')).toBe(2 + 40);
      expect(h.net.sentTo('down.test')).toBe(2 + 40);
    });

    it('a refusal of one recipient wakes nothing: a 452 mailbox full keeps its schedule while others are delivered', async () => {
      h = await engineHarness({ retryScheduleMs: [3_600_000], destinationBackoffMs: 1_000 });
      h.net.reply = (_host, rcpt) =>
        rcpt.startsWith('full@') ? { kind: 'smtp', code: 452, text: '452 4.2.2 mailbox full' } : ok;
      const full = await h.accept([{ recipient: 'full@x.test', legs: [primaryLeg('full@x.test', down)] }]);
      for (let i = 0; i < 5; i++) {
        await h.clock.advance(10_000);
        await h.accept([{ recipient: `r${i}@x.test`, legs: [primaryLeg(`r${i}@x.test`, down)] }]);
      }
      expect(h.legs(full)?.[0]).toMatchObject({ state: 'deferred', attempts: 1 });
      expect(await counter(h, 'down')).toBe(0);
    });

    it('a server under back pressure (452 4.3.1 to every transaction) gets its queue at once when it accepts again', async () => {
      h = await engineHarness({ retryScheduleMs: [3_600_000], destinationBackoffMs: 60_000 });
      const pressure: AttemptReply = {
        kind: 'smtp',
        code: 452,
        text: '452 4.3.1 Insufficient system resources',
      };
      let full = true;
      h.net.reply = () => (full ? pressure : ok);
      const ids: string[] = [];
      for (let i = 0; i < 10; i++)
        ids.push(await h.accept([{ recipient: `r${i}@x.test`, legs: [primaryLeg(`r${i}@x.test`, down)] }]));
      expect(h.engine.stats()).toMatchObject({ messages: 10, deferred: 10 });
      expect(h.legs(ids[0] ?? '')?.[0]).toMatchObject({ state: 'deferred', attempts: 1 });
      expect(h.net.sentTo('down.test')).toBe(10); // a refusal is an answer: the destination is not suspended
      full = false; // the back pressure is over: the next message is accepted, and the queue follows at once
      await h.clock.advance(1_000);
      await h.accept([{ recipient: 'n@x.test', legs: [primaryLeg('n@x.test', down)] }]);
      for (let i = 0; i < 20 && h.spool.states.size > 0; i++) await settle();
      expect(h.spool.states.size).toBe(0);
      expect(h.net.sentTo('down.test')).toBe(10 + 1 + 10);
      expect(await counter(h, 'down')).toBe(1);
    });

    it('421 to every connection is an outage too; a server that flaps wakes its queue at most once per backoff', async () => {
      h = await engineHarness({ retryScheduleMs: [3_600_000], destinationBackoffMs: 60_000 });
      const closing: AttemptReply = { kind: 'smtp', code: 421, text: '421 4.3.2 service shutting down' };
      let answer: AttemptReply = closing;
      h.net.reply = () => answer;
      const a = await h.accept([{ recipient: 'a@x.test', legs: [primaryLeg('a@x.test', down)] }]);
      answer = ok;
      await h.accept([{ recipient: 'b@x.test', legs: [primaryLeg('b@x.test', down)] }]);
      await settle();
      expect(h.spool.states.has(a)).toBe(false); // woken by b's delivery
      answer = closing;
      const c = await h.accept([{ recipient: 'c@x.test', legs: [primaryLeg('c@x.test', down)] }]);
      answer = ok;
      await h.clock.advance(1_000);
      await h.accept([{ recipient: 'd@x.test', legs: [primaryLeg('d@x.test', down)] }]);
      await settle();
      expect(h.legs(c)?.[0]).toMatchObject({ state: 'deferred', attempts: 1 }); // inside the minute: left to its time
      answer = closing;
      await h.clock.advance(60_000);
      const e = await h.accept([{ recipient: 'e@x.test', legs: [primaryLeg('e@x.test', down)] }]);
      answer = ok;
      await h.accept([{ recipient: 'f@x.test', legs: [primaryLeg('f@x.test', down)] }]);
      for (let i = 0; i < 10 && h.spool.states.size > 0; i++) await settle();
      expect(h.spool.states.has(c)).toBe(false);
      expect(h.spool.states.has(e)).toBe(false);
      expect(await counter(h, 'down')).toBe(2);
    });
  });

  it('suspends an unreachable destination on the fake clock: no connection until the backoff has passed', async () => {
    h = await engineHarness({ retryScheduleMs: [1_000], destinationBackoffMs: 30_000 });
    h.net.reply = () => refused;
    const a = await h.accept([{ recipient: 'a@x.test', legs: [primaryLeg('a@x.test', mx1)] }]);
    expect(h.net.sent).toHaveLength(1);
    const b = await h.accept([{ recipient: 'b@x.test', legs: [primaryLeg('b@x.test', mx1)] }]);
    expect(h.net.sent).toHaveLength(1); // deferred without connecting
    expect(h.legs(b)?.[0]?.lastReply).toBe('delivery temporarily suspended: connect ECONNREFUSED');
    // retries every second: still suspended, nothing is sent for 30 s of fake time
    await h.clock.advance(29_000);
    expect(h.net.sent).toHaveLength(1);
    expect(h.legs(a)?.[0]?.attempts).toBeGreaterThan(10);
    h.net.reply = () => ({ kind: 'smtp', code: 250, text: '250 ok' });
    await h.clock.advance(2_000);
    expect(h.spool.states.size).toBe(0);
    // one connection ended the suspension; the other message went on the same or the next pass
    expect(h.net.sent.length).toBeGreaterThanOrEqual(2);
  });

  it('a step of the wall clock back does not stretch a suspension: the next message goes once the backoff has passed', async () => {
    h = await engineHarness({ retryScheduleMs: [1_000], destinationBackoffMs: 30_000 });
    h.net.reply = () => refused;
    await h.accept([{ recipient: 'a@x.test', legs: [primaryLeg('a@x.test', mx1)] }]);
    expect(h.net.sent).toHaveLength(1); // mx1 suspended for 30 s
    h.clock.step(-3_600_000); // NTP, or a resumed virtual machine: the wall clock goes back an hour
    h.net.reply = () => ok; // the server is fixed
    await h.clock.advance(31_000);
    const b = await h.accept([{ recipient: 'b@x.test', legs: [primaryLeg('b@x.test', mx1)] }]);
    // On the wall clock the suspension would last another hour: b deferred with "delivery temporarily suspended".
    expect(h.legs(b)).toBeUndefined(); // delivered and removed
    expect(h.net.sent.map((s) => s.req.to)).toContainEqual(['b@x.test']);
  });

  it.each([
    ['an hour', 3_600_000],
    ['30 s (less than dueAt() takes for a step)', 30_000],
  ])(
    'a step of the wall clock back by %s while a leg is deferred: the next attempt comes after the retry step of monotonic time',
    async (_what, back) => {
      h = await engineHarness({ retryScheduleMs: [60_000] });
      h.net.reply = () => busy;
      const id = await h.accept([{ recipient: 'bob@x.test', legs: [primaryLeg('bob@x.test', mx1)] }]);
      expect(h.legs(id)?.[0]).toMatchObject({ state: 'deferred', attempts: 1 });
      h.clock.step(-back); // NTP, or a VM restored from a snapshot: nextAttemptAt is now `back` + 60 s away
      h.net.reply = () => ok;
      await h.clock.advance(59_999);
      expect(h.net.sent).toHaveLength(1);
      await h.clock.advance(1);
      // On the wall clock the leg waited another `back`: an hour, or a year for a node that booted a year ahead.
      expect(h.net.sent).toHaveLength(2);
      expect(h.spool.states.has(id)).toBe(false);
    },
  );

  it('a DSN put off by its rate limit goes when a token is due after a step of the wall clock back, not an hour later', async () => {
    const bounces = server('bounces');
    h = await engineHarness({
      retryScheduleMs: [60_000],
      dsnRate: { perMinute: 1, burst: 1 },
      route: routeTo(bounces),
    });
    h.net.reply = (host) => (host === 'bounces.test' ? ok : noSuchUser);
    await h.accept([{ recipient: 'a@x.test', legs: [primaryLeg('a@x.test', mx1)] }]);
    const b = await h.accept([{ recipient: 'b@x.test', legs: [primaryLeg('b@x.test', mx1)] }]);
    expect(h.net.sentTo('bounces.test')).toBe(1); // a's DSN took the token; b's waits a minute for the next
    expect(h.legs(b)?.[0]).toMatchObject({ state: 'failed', dsnPending: true });
    h.clock.step(-3_600_000);
    await h.clock.advance(59_999);
    expect(h.net.sentTo('bounces.test')).toBe(1);
    await h.clock.advance(1);
    // On the wall clock both the put-off time and the bucket's refill waited for the hour to come round again.
    expect(h.net.sentTo('bounces.test')).toBe(2);
    expect(h.spool.states.has(b)).toBe(false);
  });

  it('a step of the wall clock forward does not bring a deferred leg forward: it keeps its retry step', async () => {
    h = await engineHarness({ retryScheduleMs: [3_600_000] });
    h.net.reply = () => busy;
    const a = await h.accept([{ recipient: 'a@x.test', legs: [primaryLeg('a@x.test', mx1)] }]);
    await h.clock.advance(600_000);
    const b = await h.accept([{ recipient: 'b@x.test', legs: [primaryLeg('b@x.test', mx1)] }]);
    h.clock.step(7_200_000); // both are past due on the wall clock now
    h.net.reply = () => ok;
    await h.clock.advance(3_000_000 - 1);
    expect(h.net.sent).toHaveLength(2);
    await h.clock.advance(1); // a's hour is over; b has 10 minutes to go
    expect(h.spool.states.has(a)).toBe(false);
    expect(h.legs(b)?.[0]).toMatchObject({ state: 'deferred', attempts: 1 });
    await h.clock.advance(600_000);
    expect(h.spool.states.has(b)).toBe(false);
    expect(h.net.sent).toHaveLength(4);
  });

  it('a step of the wall clock forward does not reap a pool in use', async () => {
    h = await engineHarness();
    await h.accept([{ recipient: 'bob@x.test', legs: [primaryLeg('bob@x.test', mx1)] }]);
    expect(h.net.pools).toBe(1);
    h.clock.step(3_600_000); // the wall clock jumps an hour ahead
    await h.clock.advance(60_000); // the next idle reaping
    expect(h.net.closed).toEqual([]);
    await h.accept([{ recipient: 'carol@x.test', legs: [primaryLeg('carol@x.test', mx1)] }]);
    expect(h.net.pools).toBe(1); // the same pool carries the next message
  });

  it('a suspended destination never holds back another one', async () => {
    h = await engineHarness({ destinationBackoffMs: 30_000 });
    h.net.reply = (host) => (host === 'mx2.test' ? refused : { kind: 'smtp', code: 250, text: '250 ok' });
    await h.accept([
      { recipient: 'a@x.test', legs: [primaryLeg('a@x.test', mx1), copyLeg('a@y.test', mx2)] },
    ]);
    const b = await h.accept([
      { recipient: 'b@x.test', legs: [primaryLeg('b@x.test', mx1), copyLeg('b@y.test', mx2)] },
    ]);
    expect(h.net.sentTo('mx1.test')).toBe(2);
    expect(h.net.sentTo('mx2.test')).toBe(1);
    expect(h.legs(b)?.map((l) => l.state)).toEqual(['delivered', 'deferred']);
  });

  it('holds at most maxConnections connections and 4 × maxConnections (at least 16) transactions per destination', async () => {
    h = await engineHarness();
    const slow = server('slow', { maxConnections: 2 });
    h.net.hold('slow.test');
    for (let i = 0; i < 40; i++)
      await h.accept([{ recipient: `r${i}@x.test`, legs: [primaryLeg(`r${i}@x.test`, slow)] }]);
    expect(h.net.inFlight.get('slow.test')).toBe(2); // connections
    expect(h.engine.stats().jobs).toBe(16); // dispatched: the rest wait as ids
    expect(h.engine.stats()).toMatchObject({ messages: 40, pending: 40 });
    // another destination is not affected by the full one
    await h.accept([{ recipient: 'z@x.test', legs: [primaryLeg('z@x.test', mx1)] }]);
    expect(h.net.sentTo('mx1.test')).toBe(1);
    h.net.release();
    for (let i = 0; i < 50 && h.spool.states.size > 0; i++) await settle();
    expect(h.spool.states.size).toBe(0);
    expect(h.net.maxInFlight.get('slow.test')).toBe(2);
    expect(h.net.sentTo('slow.test')).toBe(40);
  });

  it('connectionShare splits maxConnections between engines', async () => {
    h = await engineHarness({ connectionShare: 2 });
    const s = server('shared', { maxConnections: 4 });
    h.net.hold();
    for (let i = 0; i < 6; i++)
      await h.accept([{ recipient: `r${i}@x.test`, legs: [primaryLeg(`r${i}@x.test`, s)] }]);
    expect(h.net.inFlight.get('shared.test')).toBe(2);
  });

  it('coalesces the results of legs that finish together into one write', async () => {
    h = await engineHarness({ resultCoalesceMs: 5 });
    h.net.hold();
    const id = await h.accept([
      { recipient: 'bob@x.test', legs: [primaryLeg('bob@x.test', mx1), copyLeg('bob@y.test', mx2)] },
    ]);
    expect(h.net.waiting).toBe(2);
    h.net.release(); // both answer in the same turn: one update, which removes the message
    await settle();
    expect(h.spool.writes).toBe(1);
    expect(h.spool.states.has(id)).toBe(false);
  });

  it('writes a result alone when its sibling leg is still in flight after the coalescing window', async () => {
    h = await engineHarness({ resultCoalesceMs: 5 });
    h.net.hold('mx2.test');
    const id = await h.accept([
      { recipient: 'bob@x.test', legs: [primaryLeg('bob@x.test', mx1), copyLeg('bob@y.test', mx2)] },
    ]);
    expect(h.spool.writes).toBe(0); // the primary's result waits for the copy
    await h.clock.advance(4);
    expect(h.spool.writes).toBe(0);
    await h.clock.advance(1);
    expect(h.spool.writes).toBe(1);
    expect(h.legs(id)?.map((l) => l.state)).toEqual(['delivered', 'pending']);
    h.net.release();
    await settle();
    expect(h.spool.writes).toBe(2);
    expect(h.spool.states.has(id)).toBe(false);
  });

  it('with coalescing off, every result is written at once', async () => {
    h = await engineHarness({ resultCoalesceMs: 0 });
    h.net.hold('mx2.test');
    const id = await h.accept([
      { recipient: 'bob@x.test', legs: [primaryLeg('bob@x.test', mx1), copyLeg('bob@y.test', mx2)] },
    ]);
    expect(h.spool.writes).toBe(1);
    expect(h.legs(id)?.map((l) => l.state)).toEqual(['delivered', 'pending']);
  });

  it('expires a leg that stays deferred past max-queue-lifetime and bounces it with 4.4.7, from stored fields', async () => {
    const bounces = server('bounces');
    h = await engineHarness({
      retryScheduleMs: [60_000],
      maxQueueLifetimeMs: 150_000,
      route: routeTo(bounces),
    });
    h.net.reply = (host) => (host === 'bounces.test' ? { kind: 'smtp', code: 250, text: '250 ok' } : busy);
    const id = await h.accept([{ recipient: 'bob@x.test', legs: [primaryLeg('bob@x.test', mx1)] }]);
    await h.clock.advance(120_000);
    expect(h.legs(id)?.[0]).toMatchObject({ state: 'deferred', attempts: 3 });
    // the next attempt is scheduled at expiry (150 s), and a deferral then is final
    await h.clock.advance(30_000);
    const dsn = h.net.sent.find((s) => s.host === 'bounces.test');
    expect(dsn?.req.from).toBe('');
    expect(dsn?.req.to).toEqual(['alice@sender.example']);
    const text = Buffer.isBuffer(dsn?.req.raw) ? dsn.req.raw.toString('latin1') : '';
    expect(text).toMatch(/Status: 4\.4\.7/);
    expect(text).toMatch(/expired/i);
    expect(h.spool.states.size).toBe(0); // the message and its DSN are gone
  });

  it('a DSN whose making fails after the results are written is tried again on the schedule (not left without a due time)', async () => {
    const bounces = server('bounces');
    let failures = 1;
    const route = routeTo(bounces);
    h = await engineHarness({
      retryScheduleMs: [60_000],
      route: (r) => {
        if (failures-- > 0) throw new Error('injected: the DSN route failed');
        return route(r);
      },
    });
    h.net.reply = (host) =>
      host === 'bounces.test'
        ? { kind: 'smtp', code: 250, text: '250 ok' }
        : { kind: 'smtp', code: 550, text: '550 5.1.1 no such user' };
    const id = await h.accept([{ recipient: 'bob@x.test', legs: [primaryLeg('bob@x.test', mx1)] }]);
    await h.clock.advance(1_000);
    // the failure is recorded, the DSN is owed, and nothing was sent yet
    expect(h.legs(id)?.[0]).toMatchObject({ state: 'failed', dsnPending: true });
    expect(h.net.sentTo('bounces.test')).toBe(0);
    await h.clock.advance(60_000);
    const dsn = h.net.sent.find((s) => s.host === 'bounces.test');
    expect(dsn?.req.to).toEqual(['alice@sender.example']);
    expect(h.spool.states.size).toBe(0);
  });

  it('tells onLegFinal of each leg made final once it is written, never of a deferral', async () => {
    const finals: LegFinal[] = [];
    h = await engineHarness({ onLegFinal: (f) => finals.push(f) });
    h.net.reply = (host, rcpt) =>
      host === 'mx2.test'
        ? busy
        : rcpt.startsWith('bad')
          ? noSuchUser
          : { kind: 'smtp', code: 250, text: '250 ok' };
    await h.accept([
      { recipient: 'bob@x.test', legs: [primaryLeg('bob@x.test', mx1), copyLeg('bob@y.test', mx2)] },
      { recipient: 'bad@x.test', legs: [primaryLeg('bad@x.test', mx1)] },
    ]);
    expect(finals.map((f) => [f.leg.leg.recipient, f.outcome.state, f.server, f.host])).toEqual([
      ['bob@x.test', 'delivered', 'mx1', 'mx1.test:25'],
      ['bad@x.test', 'failed', 'mx1', 'mx1.test:25'],
    ]);
    expect(finals[1]?.leg).toMatchObject({ status: '5.1.1', dsnPending: true });
  });

  const gauge = async (h: EngineHarness, name: 'deliveryPaused' | 'resultsUnrecorded'): Promise<number> =>
    (await h.metrics[name].get()).values[0]?.value ?? 0;

  it('a state (here: the removal) that cannot be written is kept and written again after 1 s; the attempt is not repeated', async () => {
    h = await engineHarness({ retryScheduleMs: [10_000] });
    h.spool.failUpdates = 1;
    h.spool.failCode = 'EROFS';
    const id = await h.accept([{ recipient: 'bob@x.test', legs: [primaryLeg('bob@x.test', mx1)] }]);
    expect(h.net.sent).toHaveLength(1);
    expect(h.spool.states.has(id)).toBe(true);
    // the failed write was the removal: the message is still counted
    expect(h.engine.stats()).toMatchObject({ messages: 1, pending: 1 });
    expect(
      (await h.metrics.queueMessages.get()).values.find((v) => v.labels.state === 'pending')?.value,
    ).toBe(1);
    expect([await gauge(h, 'deliveryPaused'), await gauge(h, 'resultsUnrecorded')]).toEqual([1, 1]);
    await h.clock.advance(999);
    expect(h.spool.states.has(id)).toBe(true);
    await h.clock.advance(1);
    expect(h.spool.states.has(id)).toBe(false);
    expect([await gauge(h, 'deliveryPaused'), await gauge(h, 'resultsUnrecorded')]).toEqual([0, 0]);
    await h.clock.advance(60_000); // past the retry step: nothing is sent again
    expect(h.net.sent).toHaveLength(1);
  });

  it('a kept write refused again is tried after 2 s, then 4 s: the deferral it records is kept, never re-sent', async () => {
    h = await engineHarness({ retryScheduleMs: [60_000] });
    h.net.reply = () => busy;
    h.spool.failUpdates = 3;
    // read-only: kept whatever it records (on a full volume a deferral alone is not kept: below)
    h.spool.failCode = 'EROFS';
    const id = await h.accept([{ recipient: 'bob@x.test', legs: [primaryLeg('bob@x.test', mx1)] }]);
    expect(h.net.sent).toHaveLength(1);
    for (const step of [1000, 2000]) {
      await h.clock.advance(step);
      expect(h.legs(id)?.[0]?.state, `after ${step} ms more`).toBe('pending'); // refused again
    }
    await h.clock.advance(3999);
    expect(h.legs(id)?.[0]?.state).toBe('pending');
    await h.clock.advance(1);
    expect(h.legs(id)?.[0]).toMatchObject({ state: 'deferred', attempts: 1 });
    expect(h.net.sent).toHaveLength(1);
  });

  it('a read-only spool (EROFS) pauses delivery: no other message is looked at; the first write that succeeds resumes them', async () => {
    h = await engineHarness({ retryScheduleMs: [10_000] });
    h.spool.failUpdates = 1;
    h.spool.failCode = 'EROFS';
    const first = await h.accept([{ recipient: 'bob@x.test', legs: [primaryLeg('bob@x.test', mx1)] }]);
    const second = await h.accept([{ recipient: 'carol@x.test', legs: [primaryLeg('carol@x.test', mx1)] }]);
    expect(h.net.sent.map((s) => s.req.to)).toEqual([['bob@x.test']]); // the second waits
    await h.clock.advance(1000);
    expect(h.net.sent.map((s) => s.req.to)).toEqual([['bob@x.test'], ['carol@x.test']]);
    expect([h.spool.states.has(first), h.spool.states.has(second)]).toEqual([false, false]);
  });

  it('a full disk (ENOSPC) does not pause delivery, and a deferral alone it refused is not kept: tried again on the schedule', async () => {
    h = await engineHarness({ retryScheduleMs: [10_000] });
    let busyBob = true;
    h.net.reply = (_host, rcpt) => (rcpt.startsWith('bob') && busyBob ? busy : ok);
    h.spool.failUpdates = 1; // bob's deferral
    const first = await h.accept([{ recipient: 'bob@x.test', legs: [primaryLeg('bob@x.test', mx1)] }]);
    // nothing kept: a deferral records nothing a retry could repeat wrongly, and kept it held its leg in flight until
    // a write succeeded (on a full volume with the destinations back, nothing was ever delivered again)
    expect([await gauge(h, 'deliveryPaused'), await gauge(h, 'resultsUnrecorded')]).toEqual([0, 0]);
    expect(h.legs(first)?.[0]).toMatchObject({ state: 'pending', attempts: 0 });
    const second = await h.accept([{ recipient: 'carol@x.test', legs: [primaryLeg('carol@x.test', mx1)] }]);
    expect(h.net.sent.map((s) => s.req.to)).toEqual([['bob@x.test'], ['carol@x.test']]);
    expect(h.spool.states.has(second)).toBe(false);
    // bob is tried again at the first retry step, and delivered
    busyBob = false;
    await h.clock.advance(10_000);
    expect(h.net.sent.map((s) => s.req.to)).toEqual([['bob@x.test'], ['carol@x.test'], ['bob@x.test']]);
    expect(h.spool.states.has(first)).toBe(false);
  });

  it('on a full disk a result that delivered a leg is kept and written by the next write that succeeds, never re-sent', async () => {
    h = await engineHarness({ retryScheduleMs: [10_000] });
    h.net.reply = (host) => (host === 'mx2.test' ? busy : ok);
    h.spool.failUpdates = 1; // the write of "primary delivered, copy deferred"
    const first = await h.accept([
      { recipient: 'bob@x.test', legs: [primaryLeg('bob@x.test', mx1), copyLeg('bob@y.test', mx2)] },
    ]);
    expect(await gauge(h, 'resultsUnrecorded')).toBe(1);
    const second = await h.accept([{ recipient: 'carol@x.test', legs: [primaryLeg('carol@x.test', mx1)] }]);
    expect(h.spool.states.has(second)).toBe(false); // its removal succeeded: the kept result is written with it
    expect(await gauge(h, 'resultsUnrecorded')).toBe(0);
    expect(h.legs(first)?.map((l) => l.state)).toEqual(['delivered', 'deferred']);
    await h.clock.advance(10_000);
    expect(h.net.sent.filter((s) => s.host === 'mx1.test').map((s) => s.req.to)).toEqual([
      ['bob@x.test'],
      ['carol@x.test'],
    ]);
  });

  it('deferrals a full disk refused free their destination slots: more messages go out than a destination holds', async () => {
    h = await engineHarness({ retryScheduleMs: [10_000] });
    // 20 deferrals whose state cannot be written (ENOSPC), more than mx1's 16 transactions, then a delivery
    h.net.reply = (_host, rcpt) => (rcpt.startsWith('later') ? busy : ok);
    h.spool.failUpdates = 20;
    for (let i = 0; i < 20; i++)
      await h.accept([{ recipient: `later${i}@x.test`, legs: [primaryLeg(`later${i}@x.test`, mx1)] }]);
    expect(await gauge(h, 'resultsUnrecorded')).toBe(0);
    const last = await h.accept([{ recipient: 'now@x.test', legs: [primaryLeg('now@x.test', mx1)] }]);
    expect(h.net.sent).toHaveLength(21);
    expect(h.spool.states.has(last)).toBe(false);
    // the deferrals were not recorded: their legs stay as written, tried again at the retry step
    expect([...h.spool.states.values()].every((st) => st.legs[0]?.state === 'pending')).toBe(true);
    await h.clock.advance(10_000);
    expect(h.net.sent).toHaveLength(41);
    expect([...h.spool.states.values()].every((st) => st.legs[0]?.state === 'deferred')).toBe(true);
  });

  it('stop() gives kept results up at once: the message stays as it was, to be tried again at the next start', async () => {
    h = await engineHarness({ retryScheduleMs: [10_000], stopTimeoutMs: 60_000 });
    h.spool.failUpdates = 2; // the write, and its try at stop()
    const id = await h.accept([{ recipient: 'bob@x.test', legs: [primaryLeg('bob@x.test', mx1)] }]);
    const stopped = h.stop();
    await h.clock.advance(0);
    await stopped; // no wait for the stop deadline: nothing is left in flight
    expect(h.legs(id)?.[0]?.state).toBe('pending');
    expect(h.net.sent).toHaveLength(1);
    expect([await gauge(h, 'deliveryPaused'), await gauge(h, 'resultsUnrecorded')]).toEqual([0, 0]);
  });

  it('stop({ keepRecording }) returns at once; results that arrive later are recorded until close(); inFlight() names the messages waited for', async () => {
    h = await engineHarness({ retryScheduleMs: [10_000], stopTimeoutMs: 60_000 });
    h.net.reply = (_host, rcpt) => (rcpt.startsWith('later') ? busy : ok);
    h.net.hold();
    const done = await h.accept([
      { recipient: 'bob@x.test', legs: [primaryLeg('bob@x.test', mx1), copyLeg('bob@y.test', mx2)] },
    ]);
    const later = await h.accept([{ recipient: 'later@x.test', legs: [primaryLeg('later@x.test', mx1)] }]);
    expect(h.net.waiting).toBe(3);
    let returned = false;
    const stopped = h.engine.stop({ keepRecording: true }).then(() => (returned = true));
    await settle();
    expect(returned).toBe(true); // no wait for the stop deadline (60 s on the fake clock, which does not move)
    await stopped;
    expect([...h.engine.inFlight()].sort()).toEqual([done, later].sort());
    let progressed = false;
    void h.engine.progress().then(() => (progressed = true));
    await settle();
    expect(progressed).toBe(false);

    h.net.release();
    await settle();
    expect(progressed).toBe(true);
    // recorded after stop() returned: the delivered message is removed, the deferred one written
    expect(h.spool.states.has(done)).toBe(false);
    expect(h.legs(later)?.[0]?.state).toBe('deferred');
    expect(h.engine.inFlight().size).toBe(0);
    await h.engine.progress(); // nothing in flight: at once
    h.engine.close();
    expect(h.net.sent).toHaveLength(3); // stopped: nothing new was tried
  });

  it('close() after stop({ keepRecording }): a result that arrives later is not recorded', async () => {
    h = await engineHarness({ retryScheduleMs: [10_000] });
    h.net.hold();
    const id = await h.accept([{ recipient: 'bob@x.test', legs: [primaryLeg('bob@x.test', mx1)] }]);
    await h.engine.stop({ keepRecording: true });
    expect([...h.engine.inFlight()]).toEqual([id]);
    h.engine.close();
    const writes = h.spool.writes;
    h.net.release();
    await settle();
    // the spool still has the state before the attempt: tried again at the next start (at-least-once)
    expect(h.legs(id)?.[0]?.state).toBe('pending');
    expect(h.spool.writes).toBe(writes);
  });

  it('holds a leg whose server left the table without connecting, and tries it when the table changes', async () => {
    let gone = true;
    h = await engineHarness({
      serverFor: (l) =>
        gone && l.leg.server.name === 'mx2'
          ? { ok: false, server: l.leg.server, reason: 'unroutable: server mx2 is no longer declared' }
          : { ok: true, server: l.leg.server, from: 'table' },
    });
    const id = await h.accept([
      { recipient: 'bob@x.test', legs: [primaryLeg('bob@x.test', mx1), copyLeg('bob@y.test', mx2)] },
    ]);
    expect(h.net.sentTo('mx2.test')).toBe(0);
    expect(h.legs(id)?.[1]).toMatchObject({
      state: 'deferred',
      lastReply: 'unroutable: server mx2 is no longer declared',
    });
    expect(h.engine.stats()).toMatchObject({ unroutableLegs: 1, deferred: 1 });
    gone = false;
    h.engine.routingChanged();
    await settle();
    expect(h.net.sentTo('mx2.test')).toBe(1);
    expect(h.spool.states.has(id)).toBe(false);
    expect(h.engine.stats().unroutableLegs).toBe(0);
  });

  it('a server changed in the table (a fixed host) gets its deferred legs at once; an unchanged one keeps its times', async () => {
    // the table: x.test's server "old" sits on a wrong host until fixed; y.test's "old" is another server, unchanged
    let fixed = false;
    h = await engineHarness({
      retryScheduleMs: [3_600_000],
      serverFor: (l) => ({
        ok: true,
        server: l.leg.domain === 'x.test' && fixed ? { ...l.leg.server, host: 'fixed.test' } : l.leg.server,
        from: 'table',
      }),
    });
    h.net.reply = (host) => (host === 'fixed.test' ? ok : refused);
    const wrong = server('old', { host: 'wrong.test' });
    const leg = (rcpt: string, domain: string) => ({ ...primaryLeg(rcpt, wrong), domain });
    const xs: string[] = [];
    for (let i = 0; i < 20; i++)
      xs.push(await h.accept([{ recipient: `r${i}@x.test`, legs: [leg(`r${i}@x.test`, 'x.test')] }]));
    const y = await h.accept([{ recipient: 'y@y.test', legs: [leg('y@y.test', 'y.test')] }]);
    expect(h.engine.stats()).toMatchObject({ deferred: 21 });
    fixed = true;
    h.engine.routingChanged();
    for (let i = 0; i < 50 && h.spool.states.size > 1; i++) await settle();
    for (const id of xs) expect(h.spool.states.has(id)).toBe(false);
    expect(h.net.sentTo('fixed.test')).toBe(20);
    expect(h.legs(y)?.[0]).toMatchObject({ state: 'deferred', attempts: 1 });
    // a change that moves nothing wakes nothing
    h.engine.routingChanged();
    await settle();
    expect(h.legs(y)?.[0]).toMatchObject({ state: 'deferred', attempts: 1 });
  });

  it('closes pools idle for 5 minutes of fake time', async () => {
    h = await engineHarness();
    await h.accept([{ recipient: 'bob@x.test', legs: [primaryLeg('bob@x.test', mx1)] }]);
    expect(h.net.pools).toBe(1);
    await h.clock.advance(POOL_IDLE_MS);
    expect(h.net.closed).toEqual([]);
    await h.clock.advance(60_000);
    expect(h.net.closed).toEqual(['mx1.test']);
    // a new message opens a new pool
    await h.accept([{ recipient: 'carol@x.test', legs: [primaryLeg('carol@x.test', mx1)] }]);
    expect(h.net.pools).toBe(2);
  });

  it('logs one delivery attempt line per leg, with the same fields for transactions of one leg and of several, and counts each leg', async () => {
    const lines: Line[] = [];
    const logger = createLogger({
      level: 'info',
      format: 'json',
      base: { component: 'relay' },
      write: (l) => lines.push(JSON.parse(l) as Line),
    });
    h = await engineHarness({ logger });
    // u1 is deferred by mx2 (its copy): a line with nextAttemptAt among lines without one
    h.net.reply = (host, rcpt) => (host === 'mx2.test' && rcpt === 'u1@y.test' ? busy : ok);
    const many = await h.accept(
      ['u0', 'u1', 'u2'].map((u) => ({
        recipient: `${u}@x.test`,
        legs: [primaryLeg(`${u}@x.test`, mx1), copyLeg(`${u}@y.test`, mx2)],
      })),
    );
    const one = await h.accept([{ recipient: 'solo@x.test', legs: [primaryLeg('solo@x.test', mx1)] }]);
    const attempts = lines.filter((l) => l['msg'] === 'delivery attempt');
    expect(attempts).toHaveLength(7);
    const keys = (l: Line): string[] =>
      Object.keys(l)
        .filter((k) => k !== 'nextAttemptAt')
        .sort();
    const expected = [
      'attempt',
      'component',
      'durationMs',
      'host',
      'level',
      'msg',
      'queueId',
      'recipient',
      'reply',
      'result',
      'role',
      'server',
      'time',
    ];
    for (const l of attempts) expect(keys(l)).toEqual(expected);
    const of = (queueId: string, recipient: string): Line | undefined =>
      attempts.find((l) => l['queueId'] === queueId && l['recipient'] === recipient);
    expect(of(one, 'solo@x.test')).toMatchObject({
      server: 'mx1',
      role: 'primary',
      result: 'delivered',
      attempt: 1,
    });
    for (const u of ['u0', 'u1', 'u2']) {
      expect(of(many, `${u}@x.test`)).toMatchObject({ server: 'mx1', host: 'mx1.test:25', role: 'primary' });
      expect(of(many, `${u}@y.test`)).toMatchObject({ server: 'mx2', host: 'mx2.test:25', role: 'copy' });
    }
    expect(of(many, 'u1@y.test')).toMatchObject({ result: 'deferred' });
    expect(typeof of(many, 'u1@y.test')?.['nextAttemptAt']).toBe('string');
    expect(attempts.filter((l) => l['nextAttemptAt'] !== undefined)).toHaveLength(1);

    const counts = (await h.metrics.deliveries.get()).values.map((v) => [
      `${String(v.labels.server)}/${String(v.labels.leg)}/${String(v.labels.result)}`,
      v.value,
    ]);
    expect(Object.fromEntries(counts)).toEqual({
      'mx1/primary/delivered': 4,
      'mx2/copy/delivered': 2,
      'mx2/copy/deferred': 1,
    });
  });
});

describe('delivery engine (real timers, the wall clock stepped)', () => {
  afterEach(() => restoreWallClock());

  it('measures a suspension on the monotonic clock by default: a step back of an hour holds the next message for the backoff only', async () => {
    fakeWallClock(); // before the engine exists: it must not have taken the real Date
    const spool = new MemorySpool(() => new Date());
    const net = new FakeNet();
    net.reply = () => refused;
    const engine = startDelivery(
      deliveryOptions(spool, { transport: net.factory, resolver: fakeResolver, destinationBackoffMs: 300 }),
    );
    const send = async (to: string): Promise<string> => {
      const r = await spool.accept(
        envelope([{ recipient: to, legs: [primaryLeg(to, mx1)] }]),
        Readable.from([Buffer.from('Subject: t\r\n\r\nhello\r\n')]),
      );
      if (!r.ok) throw r.error;
      engine.notify(r.id);
      return r.id;
    };
    try {
      await engine.ready;
      await send('a@x.test');
      await waitFor(() => net.sent.length === 1, { what: 'the refused attempt that suspends mx1' });
      stepWallClock(-3_600_000);
      net.reply = () => ok;
      const suspendedUntil = performance.now() + 300;
      await waitFor(() => performance.now() > suspendedUntil, { what: 'the 300 ms backoff' });
      const b = await send('b@x.test');
      // On the wall clock mx1 would stay suspended for an hour and b would be deferred without a connection.
      await waitFor(() => !spool.states.has(b), { timeoutMs: 5_000, what: 'b delivered and removed' });
      expect(net.sent.map((s) => s.req.to)).toContainEqual(['b@x.test']);
    } finally {
      await engine.stop();
    }
  });
});
