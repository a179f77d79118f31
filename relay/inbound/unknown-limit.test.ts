import { describe, expect, it } from 'vitest';
import { fakeWallClock, restoreWallClock, stepWallClock } from '../../test/support/clock.ts';
import { waitFor } from '../../test/support/wait.ts';
import { countsAsUnknown, UnknownRecipientLimiter } from './unknown-limit.ts';

describe('UnknownRecipientLimiter', () => {
  it.each([
    ['UnknownRecipient', true],
    ['RelayDenied', true],
    ['RecipientRejected', true],
    ['RecipientDeferred', false],
    ['TooManyRecipients', false],
    ['NoRoutingTable', false],
  ])('%s counts: %s', (reason, counts) => {
    expect(countsAsUnknown(reason)).toBe(counts);
  });

  it('refuses the session after perSession unknown recipients', () => {
    const l = new UnknownRecipientLimiter({ perSession: 3, perAddress: 0 });
    expect(l.exceeded('192.0.2.1', 2)).toBe(false);
    expect(l.exceeded('192.0.2.1', 3)).toBe(true);
  });

  it('refuses an address after perAddress unknown recipients in the window, and forgives it after', () => {
    let t = 0;
    const l = new UnknownRecipientLimiter({ perSession: 0, perAddress: 2, windowMs: 1000, now: () => t });
    l.record('192.0.2.1');
    expect(l.exceeded('192.0.2.1', 0)).toBe(false);
    l.record('192.0.2.1');
    expect(l.exceeded('192.0.2.1', 0)).toBe(true);
    expect(l.exceeded('192.0.2.2', 0)).toBe(false);
    t = 1000;
    expect(l.exceeded('192.0.2.1', 0)).toBe(false);
    l.record('192.0.2.1');
    expect(l.exceeded('192.0.2.1', 0)).toBe(false);
  });

  it('a step of the wall clock back does not stretch the window: with its default clock, the limiter forgives an address once windowMs of real time has passed', async () => {
    fakeWallClock(); // before the limiter exists: a default taken from the real Date would not see the step
    try {
      const l = new UnknownRecipientLimiter({ perSession: 0, perAddress: 2, windowMs: 300 });
      l.record('192.0.2.1');
      l.record('192.0.2.1');
      expect(l.exceeded('192.0.2.1', 0)).toBe(true);
      stepWallClock(-3_600_000); // NTP sets the clock back an hour
      expect(l.exceeded('192.0.2.1', 0)).toBe(true); // the window has not passed yet
      // before the fix (window on Date.now): still refused an hour and 300 ms later
      await waitFor(() => !l.exceeded('192.0.2.1', 0), {
        timeoutMs: 3_000,
        what: 'the address forgiven after the window',
      });
      // a new window starts from the monotonic now: one more unknown recipient is not over the limit
      l.record('192.0.2.1');
      expect(l.exceeded('192.0.2.1', 0)).toBe(false);
    } finally {
      restoreWallClock();
    }
  });

  it('0 disables both limits', () => {
    const l = new UnknownRecipientLimiter({ perSession: 0, perAddress: 0 });
    for (let i = 0; i < 1000; i++) l.record('192.0.2.1');
    expect(l.exceeded('192.0.2.1', 1000)).toBe(false);
  });

  it('remembers a bounded number of addresses', () => {
    const l = new UnknownRecipientLimiter({ perSession: 0, perAddress: 1, maxAddresses: 2 });
    l.record('a');
    l.record('b');
    l.record('c');
    expect(l.exceeded('a', 0)).toBe(false);
    expect(l.exceeded('b', 0)).toBe(true);
    expect(l.exceeded('c', 0)).toBe(true);
  });
});
