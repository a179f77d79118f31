// Downstream outages against the real relay process, dual mode (scope All, copy bounces Suppress). The sender is on
// the managed domain, so a DSN, if one were sent, would be routed to the destination peers and seen there.
// - the secondary is down for a while: the primary gets everything at once, the copies wait and follow;
// - the primary is slow (answers DATA after 3 s): the copies are not held back, nothing is sent twice;
// - the primary answers 451 for a while: retried on the schedule, then delivered once.
// In each case: nothing is lost, no DSN, and the queue drains (mailroute_queue_messages 0, GET /queue empty).
import nodemailer from 'nodemailer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SmtpPeer } from '../support/smtp-peer.ts';
import { waitFor } from '../support/wait.ts';
import {
  adminPort,
  bounces,
  dualDestinations,
  duplicates,
  metrics,
  metricSum,
  queuedMessages,
  queueTotal,
  relayArgs,
  type RelayChild,
  report,
  spawnRelay,
  subjectCounts,
} from './support.ts';

describe('outages: secondary down, primary slow, primary 4xx', () => {
  let primary: SmtpPeer;
  let copy: SmtpPeer;
  let relay: RelayChild;

  beforeAll(async () => {
    let dir: string;
    ({ primary, copy, dir } = await dualDestinations('rel-outage', 'outage.test'));
    relay = await spawnRelay(relayArgs(dir));
  });
  afterAll(async () => {
    if (relay && relay.proc.exitCode === null) {
      relay.kill('SIGTERM');
      await relay.exited;
    }
    await primary?.close();
    await copy?.close();
  });

  const send = async (prefix: string, n: number): Promise<string[]> => {
    const t = nodemailer.createTransport({
      host: '127.0.0.1',
      port: relay.smtpPort,
      ignoreTLS: true,
      pool: true,
      maxConnections: 3,
    });
    try {
      const ids = Array.from({ length: n }, (_, i) => `${prefix}-${i}`);
      const replies = await Promise.all(
        ids.map((id, i) =>
          t.sendMail({
            from: 'sender@outage.test',
            to: `rcpt${i % 4}@outage.test`,
            subject: id,
            text: `body of ${id}\n`,
          }),
        ),
      );
      for (const r of replies) expect(r.response).toMatch(/^250 /);
      return ids;
    } finally {
      t.close();
    }
  };
  const has = (peer: SmtpPeer, prefix: string, n: number): boolean =>
    subjectCounts(peer, new RegExp(`^${prefix}-\\d+$`)).size >= n;
  const drained = async (): Promise<void> => {
    await waitFor(async () => (await queueTotal(adminPort(relay))) === 0, {
      timeoutMs: 20_000,
      what: 'GET /queue empty',
    });
    // The gauge follows within its refresh period (1 s).
    await waitFor(async () => (await queuedMessages(relay.httpPort)) === 0, {
      timeoutMs: 5_000,
      what: 'mailroute_queue_messages 0',
    });
    const res = await fetch(`http://127.0.0.1:${adminPort(relay)}/queue`);
    const body = (await res.json()) as { total: number; messages: unknown[] };
    expect(body.total).toBe(0);
    expect(body.messages).toEqual([]);
  };

  it('secondary down for a while: primary gets everything at once, copies follow after recovery, no DSN', async () => {
    const N = 20;
    await copy.down();
    const t0 = Date.now();
    await send('down', N);
    await waitFor(() => has(primary, 'down', N), {
      timeoutMs: 10_000,
      what: 'all primaries while the copy is down',
    });
    const primaryMs = Date.now() - t0;
    // Stay down until each copy was tried at least twice (the schedule is 1 s).
    await waitFor(
      async () =>
        metricSum(await metrics(relay.httpPort), 'mailroute_deliveries_total', {
          leg: 'copy',
          result: 'deferred',
        }) >=
        2 * N,
      { timeoutMs: 20_000, what: 'two deferred attempts per copy' },
    );
    expect(subjectCounts(copy, /^down-/).size).toBe(0);
    expect(await queueTotal(adminPort(relay))).toBe(N);
    await copy.up();
    const t1 = Date.now();
    await waitFor(() => has(copy, 'down', N), { timeoutMs: 20_000, what: 'every copy after recovery' });
    await drained();
    const figures = {
      messages: N,
      primaryAllMs: primaryMs,
      copiesAfterRecoveryMs: Date.now() - t1,
      duplicatesPrimary: duplicates(subjectCounts(primary, /^down-/)),
      duplicatesCopy: duplicates(subjectCounts(copy, /^down-/)),
      bounces: bounces(primary) + bounces(copy),
    };
    report('outage secondary down', figures);
    expect(figures.duplicatesPrimary).toBe(0);
    expect(figures.bounces).toBe(0);
  });

  it('primary slow (DATA answered after 3 s): copies are not held back, every primary arrives once, no DSN', async () => {
    const N = 6;
    primary.behaviour.dataDelayMs = 3000;
    try {
      const t0 = Date.now();
      await send('slow', N);
      await waitFor(() => has(copy, 'slow', N), { timeoutMs: 10_000, what: 'every copy' });
      const copyMs = Date.now() - t0;
      // The copies got through while the primary had not answered a single DATA yet.
      expect(subjectCounts(primary, /^slow-/).size).toBe(0);
      await waitFor(() => has(primary, 'slow', N), { timeoutMs: 30_000, what: 'every primary' });
      const primaryMs = Date.now() - t0;
      await drained();
      const figures = {
        messages: N,
        copyAllMs: copyMs,
        primaryAllMs: primaryMs,
        duplicatesPrimary: duplicates(subjectCounts(primary, /^slow-/)),
        duplicatesCopy: duplicates(subjectCounts(copy, /^slow-/)),
        bounces: bounces(primary) + bounces(copy),
      };
      report('outage primary slow', figures);
      expect(primaryMs).toBeGreaterThanOrEqual(3000);
      expect(figures.duplicatesPrimary).toBe(0);
      expect(figures.duplicatesCopy).toBe(0);
      expect(figures.bounces).toBe(0);
    } finally {
      primary.behaviour.dataDelayMs = 0;
    }
  });

  it('primary answers 451 for a while: retried on the schedule, delivered once after recovery, no DSN', async () => {
    const N = 10;
    let refused = 0;
    primary.behaviour.data = (msg) => {
      if (!/^Subject: tempfail-/m.test(msg.raw.toString('latin1'))) return undefined;
      refused++;
      return { code: 451, message: '4.3.0 try again later' };
    };
    try {
      const t0 = Date.now();
      await send('tempfail', N);
      await waitFor(() => has(copy, 'tempfail', N), { timeoutMs: 10_000, what: 'every copy' });
      // Every primary refused at least twice (first attempt and one retry).
      await waitFor(() => refused >= 2 * N, { timeoutMs: 20_000, what: 'two refused attempts per primary' });
      expect(subjectCounts(primary, /^tempfail-/).size).toBe(0);
      primary.behaviour.data = undefined;
      await waitFor(() => has(primary, 'tempfail', N), {
        timeoutMs: 20_000,
        what: 'every primary after recovery',
      });
      await drained();
      const figures = {
        messages: N,
        refusedAttempts: refused,
        allDeliveredMs: Date.now() - t0,
        duplicatesPrimary: duplicates(subjectCounts(primary, /^tempfail-/)),
        duplicatesCopy: duplicates(subjectCounts(copy, /^tempfail-/)),
        bounces: bounces(primary) + bounces(copy),
      };
      report('outage primary 4xx', figures);
      expect(figures.duplicatesPrimary).toBe(0);
      expect(figures.duplicatesCopy).toBe(0);
      expect(figures.bounces).toBe(0);
    } finally {
      primary.behaviour.data = undefined;
    }
  });
});
