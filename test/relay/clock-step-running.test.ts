// The wall clock stepped back while the relay runs (NTP correcting a node that booted with its clock ahead, a VM
// restored from a snapshot) with a leg deferred: its stored nextAttemptAt now lies an hour ahead of the wall clock. The
// scheduler waits for due times on the monotonic clock, so the leg is tried again after its retry step, not an hour
// later. Before, it waited out the whole step (or a year, for a node that booted a year ahead), until a restart or a
// flush. A real relay in process (startRelay) and a real smtp-server peer that answers 451 once, then accepts; the wall
// clock is faked (test/support/clock.ts) before the relay starts, timers and performance.now() run on.
import { afterAll, describe, expect, it } from 'vitest';
import { fakeWallClock, restoreWallClock, stepWallClock } from '../support/clock.ts';
import { startSmtpPeer, type SmtpPeer } from '../support/smtp-peer.ts';
import { waitFor } from '../support/wait.ts';
import {
  dualDomain,
  queuedId,
  queuedView,
  startRelay,
  submit,
  type InProcessRelay,
} from './relay-harness.ts';

const HOUR = 3_600_000;
const RETRY_MS = 2_000;

describe('a running relay with a leg deferred when the wall clock is stepped back', () => {
  let peer: SmtpPeer | undefined;
  let r: InProcessRelay | undefined;

  afterAll(async () => {
    await r?.close();
    await peer?.close();
    restoreWallClock();
  });

  it('tries the leg again after its retry step of real time, not an hour later', async () => {
    let answered = 0;
    peer = await startSmtpPeer('old', {
      rcpt: (a) =>
        a === 'pat@clock.test' && answered++ === 0 ? { code: 451, message: '4.3.0 try later' } : undefined,
    });
    fakeWallClock(); // before the relay starts: a default clock taken from the real Date would not see the step
    r = await startRelay({ 'd.yaml': dualDomain('clock.test', peer.port, peer.port, { mode: 'Direct' }) }, [
      '--retry-schedule',
      `${RETRY_MS / 1000}s`,
    ]);
    const relay = r;
    const id = queuedId(
      await submit(relay.relay.smtp.port, {
        from: 's@origin.test',
        to: 'pat@clock.test',
        subject: 'clock',
        text: 'x',
      }),
    );
    await waitFor(async () => (await queuedView(relay, id))?.state === 'deferred', {
      what: 'the first attempt deferred',
    });
    const deferredAt = performance.now();
    stepWallClock(-HOUR);
    const leg = (await queuedView(relay, id))?.recipients[0]?.legs[0];
    expect(leg?.attempts).toBe(1);
    // on the wall clock the next attempt is an hour and a retry step away now
    expect(Date.parse(leg?.nextAttemptAt ?? '') - Date.now()).toBeGreaterThan(HOUR);

    // before the fix: still deferred after 20 s (attempts 1), delivered only after a restart
    await waitFor(() => peer!.for('pat@clock.test').length === 1, {
      what: 'the deferred leg delivered within a few seconds of its retry step',
      timeoutMs: RETRY_MS + 3_000,
    });
    const took = performance.now() - deferredAt;
    expect(took).toBeGreaterThan(RETRY_MS - 500); // its retry step, as without a step
    expect(took).toBeLessThan(RETRY_MS + 3_000);
    expect(peer.rcpts.filter((x) => x.address === 'pat@clock.test').map((x) => x.code)).toEqual([451, 250]);
    await waitFor(async () => (await queuedView(relay, id)) === undefined, { what: 'the message removed' });
  });
});
