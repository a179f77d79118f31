// A graceful drain never hands over a leg whose SMTP transaction is still in flight (issue: a server that answers the
// final dot after a long content scan got the message twice on every rollout). Two in-process relays with the same
// manifests, relay A draining to relay B (--peers) on shutdown, B taking hand-offs from its --peers addresses, and a
// real smtp-server destination on a Direct domain that holds its reply to the final dot for DELAY_MS. One message is
// submitted to A and A is shut down while the destination holds the whole body and its reply: the drain waits for the
// transaction, the destination's 250 is recorded, the message leaves A's spool and is never handed to B.
//
// Before, the engine's stop gave up on the attempt after its 10 s deadline (and discarded its result), the drain
// handed the still-pending leg to B, and B delivered it a second time.
import { afterAll, describe, expect, it } from 'vitest';
import type { QueueListView } from '../../relay/admin/view.ts';
import { startSmtpPeer, type SmtpPeer } from '../support/smtp-peer.ts';
import { waitFor } from '../support/wait.ts';
import { dualDomain, httpGet, startDrainPair, submit, type InProcessRelay } from './relay-harness.ts';

// Longer than the delivery engine's stop deadline (10 s; the relay has no flag for it), so that a relay which waits
// for that deadline and then hands the queue over would hand this message over while its transaction is in flight.
const DELAY_MS = 11_000;

describe('drain and a transaction in flight', () => {
  const closers: (() => Promise<void>)[] = [];
  afterAll(async () => {
    for (const c of closers.reverse()) await c();
  });

  it('waits for the transaction and hands nothing over: the destination gets the message once', async () => {
    const primary: SmtpPeer = await startSmtpPeer('primary', { dataDelayMs: DELAY_MS });
    closers.push(() => primary.close());
    const files = { 'd.yaml': dualDomain('scan.test', primary.port, 1, { mode: 'Direct' }) };
    const { a, b } = await startDrainPair(files, closers);
    const listOf = async (r: InProcessRelay): Promise<QueueListView> =>
      JSON.parse((await httpGet(r.relay.admin.port, '/queue')).body) as QueueListView;

    await submit(a.relay.smtp.port, {
      envelope: { from: 'sender@outside.test', to: ['user@scan.test'] },
      raw: 'From: sender@outside.test\r\nTo: user@scan.test\r\nSubject: scanned\r\n\r\nbody\r\n',
    });
    // In flight on the wire: the destination has the whole body and holds its reply (its content scan).
    await waitFor(() => primary.stats.bodies === 1 && primary.messages.length === 0, {
      what: 'the transaction in flight at the destination',
    });

    // A rollout: A shuts down while the transaction is in flight.
    await a.relay.shutdown('test');

    const handedOver = (await listOf(b)).total;
    // Whatever B was handed it delivers: wait until B's queue is empty and every body the destination got is answered.
    await waitFor(
      async () => (await listOf(b)).total === 0 && primary.messages.length === primary.stats.bodies,
      { timeoutMs: 30_000, what: "B's queue empty and every transaction at the destination answered" },
    );
    // Exactly one copy: the drain waited for the destination's 250 and recorded it; the message left A's spool
    // complete and was never handed to B.
    expect(primary.messages).toHaveLength(1);
    expect(handedOver).toBe(0);
    expect(await a.relay.spool.list()).toEqual([]);
  });
});
