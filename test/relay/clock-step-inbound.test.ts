// A step of the wall clock back (NTP at boot, a resumed virtual machine) while the relay runs must not stretch what
// the inbound side keeps in memory for a while: a cached callout answer and a suspended callout lane last their real
// time, read on the monotonic clock. They used Date.now: after a step back of an hour, a mailbox created on the
// verification server kept its cached `absent` (550 under unknownRecipients Reject), and a server that was down for
// one RCPT left every new recipient of its Split domain at 451 for an hour. A real relay (runRelay) with real
// smtp-server peers; the wall clock is faked (test/support/clock.ts) before the relay starts.
import { afterEach, describe, expect, it } from 'vitest';
import { fakeWallClock, restoreWallClock, stepWallClock } from '../support/clock.ts';
import { startSmtpPeer, type SmtpPeer } from '../support/smtp-peer.ts';
import { waitFor } from '../support/wait.ts';
import { dualDomain, rcptReply, startRelay, type InProcessRelay } from './relay-harness.ts';

const HOUR = 3_600_000;
/** The callout pool's suspension after a connection failed (CALLOUT_DEFAULTS.suspendMs in relay/inbound/verify.ts). */
const SUSPEND_MS = 10_000;

describe('inbound after a step of the wall clock back', () => {
  const cleanup: (() => Promise<unknown>)[] = [];

  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c();
    restoreWallClock();
  });

  /** Peers old (the verification server) and new, and a relay serving a Split domain verified on old. */
  const setUp = async (known: Set<string>, policy = ''): Promise<{ old: SmtpPeer; r: InProcessRelay }> => {
    const old = await startSmtpPeer('old', {
      rcpt: (a) => (known.has(a) ? undefined : { code: 550, message: '5.1.1 no such user' }),
    });
    cleanup.push(() => old.close());
    const neu = await startSmtpPeer('new');
    cleanup.push(() => neu.close());
    fakeWallClock(); // before the relay starts: a default clock taken from the real Date would not see the step
    const r = await startRelay({
      'step.yaml': dualDomain('step.test', old.port, neu.port, {
        mode: 'Split',
        extraPolicy: policy,
        extraDomain: '  recipientVerification: {server: old, cacheTTL: 1s}\n',
      }),
    });
    cleanup.push(() => r.close());
    return { old, r };
  };

  const asked = (peer: SmtpPeer, address: string): number =>
    peer.rcpts.filter((x) => x.address === address).length;

  it('a cached callout answer lasts its cacheTTL of real time: a mailbox created meanwhile is accepted and asked about again', async () => {
    const known = new Set<string>();
    const { old, r } = await setUp(known, '  split:\n    unknownRecipients: Reject\n');
    const port = r.relay.smtp.port;
    const before = performance.now();
    expect(await rcptReply(port, 'bob@step.test')).toMatch(/^550 5\.1\.1 /);
    expect(asked(old, 'bob@step.test')).toBe(1);
    known.add('bob@step.test'); // the mailbox is created on the verification server
    stepWallClock(-HOUR);
    // before the fix: the `absent` answer was cached until an hour and a second later, 550 all along
    const accepted = await waitFor(
      async () => {
        const reply = await rcptReply(port, 'bob@step.test');
        return reply.startsWith('250 ') ? reply : undefined;
      },
      { timeoutMs: 8_000, intervalMs: 200, what: 'bob accepted once the cached answer expired' },
    );
    expect(accepted).toMatch(/^250 2\.1\.5 /);
    expect(asked(old, 'bob@step.test')).toBe(2);
    // and not before its cacheTTL (1 s) had passed
    expect(performance.now() - before).toBeGreaterThanOrEqual(1_000);
  });

  it('a callout lane suspended after a failed connection is asked again after the suspension of real time, not 451 for an hour', async () => {
    const { old, r } = await setUp(new Set(['carol@step.test', 'dave@step.test']));
    const port = r.relay.smtp.port;
    await old.down();
    const failedAt = performance.now();
    expect(await rcptReply(port, 'carol@step.test')).toMatch(/^451 4\.4\.3 /); // the lane is suspended for 10 s
    stepWallClock(-HOUR);
    await old.up();
    // before the fix: suspended until an hour and 10 s later, every new recipient 451 4.4.3 without a callout
    const accepted = await waitFor(
      async () => {
        const reply = await rcptReply(port, 'dave@step.test');
        return reply.startsWith('250 ') ? reply : undefined;
      },
      { timeoutMs: SUSPEND_MS + 10_000, intervalMs: 500, what: 'dave accepted once the suspension ended' },
    );
    expect(accepted).toMatch(/^250 2\.1\.5 /);
    expect(asked(old, 'dave@step.test')).toBe(1);
    expect(performance.now() - failedAt).toBeGreaterThanOrEqual(SUSPEND_MS);
  });
});
