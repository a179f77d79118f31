import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { FakeClock } from '../../test/support/fake-clock.ts';
import { waitFor } from '../../test/support/wait.ts';
import { deliveryOptions, envelope } from '../../test/support/delivery.ts';
import { FakeNet, fakeResolver, primaryLeg, routeTo, server } from '../../test/support/engine-harness.ts';
import { openSpool } from '../spool/spool.ts';
import type { LegState } from '../spool/types.ts';
import { Registry } from 'prom-client';
import { MemorySpool } from '../../test/support/memory-spool.ts';
import { createRelayMetrics } from '../telemetry/metrics.ts';
import type { DeliveryPlan } from '../../routing/model.ts';
import { Bouncer, DSN_ROUTE_RETRY_MS, legDsnStatus, owesDsn } from './bounce.ts';
import { startDelivery } from './engine.ts';

const leg = (over: Partial<LegState>): LegState => ({
  recipient: 'bob@x.test',
  leg: primaryLeg('bob@x.test', server('mx1')),
  state: 'failed',
  attempts: 1,
  ...over,
});

describe('legDsnStatus: what a DSN reports for a leg', () => {
  it.each<[string, Partial<LegState>, { status: string; expired: boolean }]>([
    // stored by outcome.ts
    [
      'a failure',
      { dsnPending: true, lastReply: '550 5.1.1 no', status: '5.1.1' },
      { status: '5.1.1', expired: false },
    ],
    [
      'an expiry',
      {
        dsnPending: true,
        lastReply: 'expired after 3 attempts; last: 451 x',
        status: '4.4.7',
        expired: true,
      },
      { status: '4.4.7', expired: true },
    ],
    [
      'a delay notice',
      { state: 'deferred', delayPending: true, lastReply: '452 4.2.2 full', status: '4.2.2' },
      { status: '4.2.2', expired: false },
    ],
    [
      'stored status wins over the text',
      { dsnPending: true, lastReply: 'expired after', status: '5.7.1' },
      { status: '5.7.1', expired: false },
    ],
    // state files written before status/expired were stored: derived from the reply text
    [
      'old: a 5xx with an enhanced code',
      { dsnPending: true, lastReply: '550 5.1.1 no such user' },
      { status: '5.1.1', expired: false },
    ],
    [
      'old: a 5xx without one',
      { dsnPending: true, lastReply: '554 go away' },
      { status: '5.0.0', expired: false },
    ],
    [
      'old: an expiry',
      { dsnPending: true, lastReply: 'expired after 9 attempts; last: connect ECONNREFUSED' },
      { status: '4.4.7', expired: true },
    ],
    ['old: no reply text', { dsnPending: true }, { status: '5.0.0', expired: false }],
    [
      'old: a delay after a 4xx',
      { state: 'deferred', delayPending: true, lastReply: '451 4.3.0 later' },
      { status: '4.3.0', expired: false },
    ],
    [
      'old: a delay after no answer',
      { state: 'deferred', delayPending: true, lastReply: 'connect ETIMEDOUT' },
      { status: '4.4.1', expired: false },
    ],
  ])('%s', (_, over, want) => {
    expect(legDsnStatus(leg(over))).toEqual(want);
  });

  it('owesDsn: a failure or a delay notice', () => {
    expect(owesDsn(leg({ dsnPending: true }))).toBe(true);
    expect(owesDsn(leg({ state: 'deferred', delayPending: true }))).toBe(true);
    expect(owesDsn(leg({}))).toBe(false);
  });
});

describe('state files written before status and expired were stored', () => {
  const dirs: string[] = [];
  afterEach(async () => {
    for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
  });

  it('still load from disk, and their DSN reports the status and expiry derived from the reply text', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mailroute-bounce-'));
    dirs.push(dir);
    const logger = pino({ level: 'silent' });
    const clock = new FakeClock();
    const mx1 = server('mx1');
    let spool = await openSpool({ dir, logger, clock: clock.clock });
    const accepted = await spool.accept(
      envelope(
        [
          { recipient: 'bob@x.test', legs: [primaryLeg('bob@x.test', mx1)] },
          { recipient: 'carol@x.test', legs: [primaryLeg('carol@x.test', mx1)] },
        ],
        { receivedAt: clock.clock().toISOString() },
      ),
      Readable.from([Buffer.from('Subject: old\r\n\r\nbody\r\n')]),
    );
    if (!accepted.ok) throw accepted.error;
    const id = accepted.id;
    const at = clock.clock().toISOString();
    // The legs as an older relay wrote them: the outcome only in lastReply.
    await spool.update(id, (s) => ({
      ...s,
      legs: [
        {
          ...s.legs[0]!,
          state: 'failed',
          attempts: 3,
          lastAttemptAt: at,
          lastReply: 'expired after 3 attempts; last: 451 4.3.0 busy',
          lastServer: 'mx1.test:25',
          dsnPending: true,
        },
        {
          ...s.legs[1]!,
          state: 'failed',
          attempts: 1,
          lastAttemptAt: at,
          lastReply: '550 5.1.1 no such user',
          lastServer: 'mx1.test:25',
          dsnPending: true,
        },
      ],
    }));
    // A new process reads the file from disk.
    spool = await openSpool({ dir, logger, clock: clock.clock });
    const loaded = await spool.load(id);
    expect(loaded.ok).toBe(true);
    expect(loaded.ok && loaded.state.legs.map((l) => l.status)).toEqual([undefined, undefined]);

    const net = new FakeNet();
    const engine = startDelivery(
      deliveryOptions(spool, {
        clock: clock.clock,
        elapsed: clock.elapsed,
        timers: clock,
        transport: net.factory,
        resolver: fakeResolver,
        route: routeTo(server('bounces')),
      }),
    );
    try {
      await engine.ready;
      // the real spool does file I/O: wait for the DSN with a deadline
      const dsn = await waitFor(() => net.sent.find((s) => s.host === 'bounces.test'), { what: 'the DSN' });
      expect(dsn.req.to).toEqual(['alice@sender.example']);
      const raw = dsn.req.raw;
      const text = Buffer.isBuffer(raw)
        ? raw.toString('latin1')
        : raw
          ? (await readFile(raw.path)).subarray(raw.start ?? 0, raw.size).toString('latin1')
          : '';
      expect(text).toMatch(/Final-Recipient: rfc822; ?bob@x\.test[\s\S]*?Status: 4\.4\.7/);
      expect(text).toMatch(/Final-Recipient: rfc822; ?carol@x\.test[\s\S]*?Status: 5\.1\.1/);
      expect(text).toMatch(/delivery time expired/);
    } finally {
      await engine.stop();
    }
  });
});

describe('Bouncer: a DSN with no route to its sender for now', () => {
  const LIFETIME = 5 * 24 * 3600_000;
  const tempfail = (recipient: string): DeliveryPlan => ({
    verdict: 'tempfail',
    recipient,
    reply: { code: 451, enhanced: '4.4.3', text: 'recipient verification unavailable' },
    reason: 'VerificationUnavailable',
    legs: [],
  });
  const setup = async (failedAt: Date, now: Date) => {
    const spool = new MemorySpool(() => now);
    const r = await spool.accept(
      envelope([{ recipient: 'bob@x.test', legs: [primaryLeg('bob@x.test', server('mx1'))] }], {
        mailFrom: 'alice@sender.test',
        receivedAt: failedAt.toISOString(),
      }),
      Readable.from([Buffer.from('Subject: t\r\n\r\nhi\r\n')]),
    );
    if (!r.ok) throw r.error;
    const state = spool.states.get(r.id)!;
    state.legs[0] = leg({
      dsnPending: true,
      lastReply: '550 5.1.1 no',
      lastAttemptAt: failedAt.toISOString(),
    });
    const metrics = createRelayMetrics(new Registry(), false);
    const bouncer = new Bouncer({
      spool,
      clock: () => now,
      log: pino({ level: 'silent' }),
      metrics,
      hostname: 'relay.test',
      maxQueueLifetimeMs: LIFETIME,
      route: tempfail,
      spooled: () => undefined,
    });
    return { id: r.id, state, bouncer, spool, metrics };
  };

  it('is put off, the failure still owed, while the queue lifetime after the failure runs', async () => {
    const failedAt = new Date('2026-12-01T10:00:00Z');
    const now = new Date(failedAt.getTime() + LIFETIME - 1000);
    const { id, state, bouncer, spool, metrics } = await setup(failedAt, now);
    expect(await bouncer.bounce(id, state)).toEqual({
      kind: 'later',
      at: now.getTime() + DSN_ROUTE_RETRY_MS,
    });
    expect(spool.states.get(id)?.legs[0]?.dsnPending).toBe(true);
    const kinds = (await metrics.dsnSent.get()).values.map((v) => [v.labels.kind, v.value]);
    expect(kinds).toEqual([['deferred', 1]]);
  });

  it('is given up as undeliverable once that lifetime is over', async () => {
    const failedAt = new Date('2026-12-01T10:00:00Z');
    const now = new Date(failedAt.getTime() + LIFETIME + 1000);
    const { id, state, bouncer, spool, metrics } = await setup(failedAt, now);
    const r = await bouncer.bounce(id, state);
    expect(r.kind).toBe('done');
    expect(spool.states.get(id)?.legs[0]?.dsnPending).toBeUndefined();
    expect(spool.states.get(id)?.legs[0]?.dsnId).toBe('unroutable');
    const kinds = (await metrics.dsnSent.get()).values.map((v) => [v.labels.kind, v.value]);
    expect(kinds).toEqual([['unroutable', 1]]);
  });
});
