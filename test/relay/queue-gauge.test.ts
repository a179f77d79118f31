// mailroute_queue_messages{state} follows accept and remove at once (docs/reliability.md finding 2 was a lag of up to
// 1 s from a timer): a scrape right after the 250 counts the message, and once the spool is empty the gauge reads 0.
// The accept log's metrics (mailroute_spool_log_*) read the same way.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSmtpPeer, type SmtpPeer } from '../support/smtp-peer.ts';
import { waitFor } from '../support/wait.ts';
import {
  dualDomain,
  httpGet,
  type InProcessRelay,
  metricValue,
  startRelay,
  submit,
} from './relay-harness.ts';

describe('queue gauge', () => {
  let a: SmtpPeer;
  let r: InProcessRelay;

  beforeAll(async () => {
    a = await startSmtpPeer('a');
    r = await startRelay({ 'g.yaml': dualDomain('gauge.test', a.port, a.port, { mode: 'Direct' }) });
  });
  afterAll(async () => {
    await r?.close();
    await a?.close();
  });

  const queued = async (): Promise<{ pending: number; deferred: number }> => {
    const text = (await httpGet(r.relay.http.port, '/metrics')).body;
    return {
      pending: metricValue(text, 'mailroute_queue_messages', '{state="pending"}') ?? 0,
      deferred: metricValue(text, 'mailroute_queue_messages', '{state="deferred"}') ?? 0,
    };
  };
  const queueTotal = async (): Promise<number> =>
    (JSON.parse((await httpGet(r.relay.admin.port, '/queue')).body) as { total: number }).total;

  /**
   * Sends one message to `to` whose first attempt the destination defers (451), runs `whileQueued` right after the
   * 250, then waits for the retry (1 s schedule) to deliver it and the relay to drop it: the queue reads empty.
   */
  const deferredOnce = async (to: string, whileQueued: () => Promise<void>): Promise<void> => {
    a.behaviour.rcpt = () => ({ code: 451, message: '4.3.0 try again later' });
    try {
      const reply = await submit(r.relay.smtp.port, { from: 's@origin.test', to, subject: 'g', text: 'g' });
      expect(reply).toMatch(/^250 /);
      await whileQueued();
    } finally {
      a.behaviour.rcpt = undefined;
    }
    // the engine drops its entry before the spool's files go
    await waitFor(async () => (await queueTotal()) === 0, { timeoutMs: 10_000, what: 'GET /queue empty' });
    expect(a.for(to).length).toBe(1);
  };

  it('counts a message right after its 250 and reads 0 as soon as the spool is empty', async () => {
    await deferredOnce('x@gauge.test', async () => {
      const q = await queued();
      expect(q.pending + q.deferred).toBe(1);
    });
    expect(await queued()).toEqual({ pending: 0, deferred: 0 });
  });

  it('the accept log: its message while deferred, in use, each write timed; none once delivered', async () => {
    const logged = async (): Promise<{ messages: number; active: number; writes: number }> => {
      const text = (await httpGet(r.relay.http.port, '/metrics')).body;
      return {
        messages: metricValue(text, 'mailroute_spool_log_messages') ?? -1,
        active: metricValue(text, 'mailroute_spool_log_active') ?? -1,
        writes: metricValue(text, 'mailroute_spool_log_write_seconds_count') ?? -1,
      };
    };
    const before = await logged();
    expect(before.active).toBe(1);
    await deferredOnce('y@gauge.test', async () => {
      // a small message deferred: durable in the log alone, no file of its own yet
      const held = await logged();
      expect(held.messages).toBe(1);
      expect(held.writes).toBeGreaterThan(before.writes);
    });
    expect(await logged()).toMatchObject({ messages: 0, active: 1 });
  });
});
