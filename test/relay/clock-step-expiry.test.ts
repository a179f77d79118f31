// The wall clock stepped forward while the relay runs, with a message it accepted while the clock was behind (a node
// whose clock was wrong at boot, a VM resumed from a snapshot, until NTP stepped it): on the wall clock the message is
// two hours old seconds after its 250. Its age in the queue is judged on the monotonic clock for a message this process
// accepted (relay/delivery/results.ts arrivalForAge), so it is neither expired (bounced to its sender) nor announced
// as delayed. Before, the next deferral after the step expired it with a DSN ("expired in queue") about a second after
// it arrived. A real relay in process (startRelay), real smtp-server peers (the destination answers 451 to every
// attempt; another takes the DSNs through --dsn-relay); the wall clock is faked before the relay starts.
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

describe('a message accepted while the wall clock was behind, which NTP then steps forward', () => {
  let dest: SmtpPeer | undefined;
  let dsn: SmtpPeer | undefined;
  let r: InProcessRelay | undefined;

  afterAll(async () => {
    await r?.close();
    await dest?.close();
    await dsn?.close();
    restoreWallClock();
  });

  it('is neither expired nor announced as delayed: its age is its time in this queue', async () => {
    dest = await startSmtpPeer('dest', { rcpt: () => ({ code: 451, message: '4.3.0 try later' }) });
    dsn = await startSmtpPeer('dsn');
    fakeWallClock(); // before the relay starts
    stepWallClock(-2 * HOUR); // the node's clock is two hours behind
    r = await startRelay({ 'd.yaml': dualDomain('clock.test', dest.port, dest.port, { mode: 'Direct' }) }, [
      '--retry-schedule',
      '1s',
      '--max-queue-lifetime',
      '1h',
      '--delay-warning',
      '30m',
      '--dsn-relay',
      `127.0.0.1:${dsn.port}`,
    ]);
    const relay = r;
    const id = queuedId(
      await submit(relay.relay.smtp.port, {
        from: 's@origin.test',
        to: 'pat@clock.test',
        subject: 'c',
        text: 'x',
      }),
    );
    const attempts = (): number => dest!.rcpts.filter((x) => x.address === 'pat@clock.test').length;
    await waitFor(() => attempts() >= 1, { what: 'the first attempt' });
    stepWallClock(2 * HOUR); // NTP puts the clock right: on it, the message arrived two hours ago
    // two more deferrals after the step: before the fix the first of them expired the message (a DSN, the leg failed)
    await waitFor(() => attempts() >= 3, { what: 'two attempts after the step', timeoutMs: 10_000 });
    await waitFor(async () => (await queuedView(relay, id))?.recipients[0]?.legs[0]?.attempts === 3, {
      what: 'the third deferral written',
    });
    const leg = (await queuedView(relay, id))?.recipients[0]?.legs[0];
    expect(leg?.state).toBe('deferred');
    expect(dsn.messages).toEqual([]);
  });
});
