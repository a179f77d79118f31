import { describe, expect, it } from 'vitest';
import type { AttemptReply } from './outcome.ts';
import { reachability, Recovery, type WaitOn, type Waiting, type Woken } from './recovery.ts';

const smtp = (code: number): AttemptReply => ({ kind: 'smtp', code, text: `${code} x` });
const net: AttemptReply = { kind: 'network', text: 'connect ECONNREFUSED' };
const reply = (code: number, text: string): AttemptReply => ({ kind: 'smtp', code, text });
const bp = reply(452, '452 4.3.1 Insufficient system resources');
const local: AttemptReply = { kind: 'local', text: 'credentials a/b for server s not available' };

describe('reachability: what one transaction says about its destination', () => {
  it.each<[string, AttemptReply[], 'down' | 'up' | undefined]>([
    ['no reply at all', [], undefined],
    ['refused', [net], 'down'],
    ['refused for every recipient', [net, net, net], 'down'],
    ['421 to every recipient (service closing)', [smtp(421), smtp(421)], 'down'],
    ['421 and no connection', [smtp(421), net], 'down'],
    ['250', [smtp(250)], 'up'],
    ['one recipient 250, one refused by the mailbox', [smtp(250), smtp(452)], 'up'],
    ['a 4xx for the recipient: the server answered', [smtp(451)], 'up'],
    ['a 5xx: the server answered', [smtp(550)], 'up'],
    ['450 greylisting', [smtp(450)], 'up'],
    ['421 for one recipient, 250 for another', [smtp(421), smtp(250)], 'up'],
    ["Exchange's back pressure (452 4.3.1 to MAIL FROM, so to every recipient)", [bp, bp], 'down'],
    ['Postfix with a full queue disk', [reply(452, '452 4.3.1 Insufficient system storage')], 'down'],
    ['sendmail with a full disk', [reply(452, '452 4.4.5 Insufficient disk space; try again later')], 'down'],
    [
      'not accepting network messages',
      [reply(451, '451 4.3.2 System not accepting network messages')],
      'down',
    ],
    ['a full system for one recipient, 250 for another', [bp, smtp(250)], 'up'],
    ['greylisting with a status', [reply(451, '451 4.7.1 Greylisted, try again in 5 minutes')], 'up'],
    ["the sender's domain does not resolve", [reply(451, '451 4.1.8 Sender address domain not found')], 'up'],
    ['an unspecific 4.3.0', [reply(451, '451 4.3.0 Temporary failure')], 'up'],
    [
      'a 5xx that names a full system is an answer (not a temporary state)',
      [reply(552, '552 5.3.1 full')],
      'up',
    ],
    ['the relay could not try (credentials)', [local], undefined],
    ['credentials missing for one, refused for another', [local, net], 'down'],
  ])('%s', (_name, replies, want) => {
    expect(reachability(replies)).toBe(want);
  });
});

const msg = (): Waiting => ({ waitingOn: undefined });

/** Legs waiting on these destinations; each leg's sample names its destination key (and domain d). */
const on = (...keys: string[]): WaitOn<string>[] =>
  keys.map((key) => ({ key, sampleKey: `d|${key}`, sample: key }));

/** A queue of named messages, and which of them a wake picks. */
function queue(): {
  r: Recovery<string>;
  m: (name: string) => Waiting;
  woken: (w: Woken | undefined) => { ids: string[]; downMs: number } | undefined;
} {
  const all = new Map<string, Waiting>();
  return {
    r: new Recovery<string>(60_000),
    m: (name) => {
      let x = all.get(name);
      if (x === undefined) all.set(name, (x = msg()));
      return x;
    },
    woken: (w) =>
      w === undefined
        ? undefined
        : { ids: [...all].filter(([, x]) => w.select(x) !== undefined).map(([n]) => n), downMs: w.downMs },
  };
}

describe('Recovery', () => {
  // The engine's order: a transaction's result first, then the message's deferred legs wait (at its reschedule).

  it('wakes the messages waiting on a destination that answers after an outage, once', () => {
    const { r, m, woken } = queue();
    expect(r.result('K', 'down', 1_000)).toBeUndefined();
    r.result('L', 'up', 1_000);
    r.wait(m('a'), on('K'), 1_000);
    r.wait(m('b'), on('K', 'L'), 1_000);
    r.wait(m('c'), on('L'), 1_000);
    expect(r.down).toBe(1);
    const w = r.result('K', 'up', 5_000);
    expect(woken(w)).toEqual({ ids: ['a', 'b'], downMs: 4_000 });
    expect(w?.select(m('b'))).toEqual(['K']); // only K's legs are made due, not L's
    expect(r.down).toBe(0);
    // up again: no outage in between, nothing to wake
    expect(r.result('K', 'up', 6_000)).toBeUndefined();
    // L answered all along: legs waiting on it (a 4xx for their recipient) keep their times
    expect(r.result('L', 'up', 7_000)).toBeUndefined();
  });

  it('a transaction that says nothing (the relay could not try) changes nothing', () => {
    const { r, m } = queue();
    r.result('K', 'down', 2);
    r.wait(m('a'), on('K'), 2);
    expect(r.result('K', undefined, 3)).toBeUndefined();
    expect(r.down).toBe(1);
  });

  it('an outage nobody waits on wakes nothing when it ends', () => {
    const { r } = queue();
    r.result('K', 'down', 1);
    expect(r.result('K', 'up', 2)).toBeUndefined();
  });

  it('a destination not heard from since start counts as down while legs wait on it (a restart)', () => {
    const { r, m, woken } = queue();
    r.wait(m('a'), on('K'), 100); // the start-up scan: nothing has been tried yet
    r.wait(m('b'), on('K'), 100);
    expect(r.down).toBe(1);
    expect(woken(r.result('K', 'up', 150))).toEqual({ ids: ['a', 'b'], downMs: 50 });
    // heard from now: a later wait does not make it down
    r.wait(m('c'), on('K'), 200);
    expect(r.down).toBe(0);
    // nor does one after every message left (the group is gone, but results made it again)
    r.forget(m('a'));
    r.forget(m('b'));
    r.forget(m('c'));
    r.reap(100_000);
    r.result('K', 'up', 100_001);
    r.wait(m('d'), on('K'), 100_001);
    expect(r.down).toBe(0);
  });

  it('a message that waits elsewhere now, or is gone, is not woken', () => {
    const { r, m, woken } = queue();
    r.result('K', 'down', 1);
    r.result('L', 'down', 1);
    r.wait(m('a'), on('K'), 1);
    r.wait(m('b'), on('K'), 1);
    r.wait(m('c'), on('K'), 1);
    r.wait(m('a'), on('L'), 1);
    r.forget(m('b'));
    expect(m('b').waitingOn).toBeUndefined();
    expect(r.waiting('K')).toBe(1);
    expect(r.waiting('L')).toBe(1);
    expect(woken(r.result('K', 'up', 2))?.ids).toEqual(['c']);
  });

  it('a message told the same destinations again is counted once', () => {
    const { r, m } = queue();
    r.wait(m('a'), on('K', 'K'), 0); // two legs to K: one group
    r.wait(m('a'), on('K'), 0);
    r.wait(m('a'), on('L', 'K'), 0);
    expect(r.waiting('K')).toBe(1);
    expect(r.waiting('L')).toBe(1);
    r.wait(m('a'), on(), 0);
    expect(m('a').waitingOn).toBeUndefined();
    expect(r.waiting('K')).toBe(0);
    expect(r.waiting('L')).toBe(0);
  });

  it('at most one wake per gap, also across an outage whose messages all left', () => {
    const { r, m, woken } = queue();
    r.result('K', 'down', 0);
    r.wait(m('a'), on('K'), 0);
    expect(woken(r.result('K', 'up', 1_000))?.ids).toEqual(['a']);
    r.forget(m('a'));
    r.result('K', 'down', 2_000);
    r.wait(m('c'), on('K'), 2_000);
    expect(r.result('K', 'up', 3_000)).toBeUndefined(); // inside the gap: left to its retry time
    r.result('K', 'down', 61_000);
    expect(woken(r.result('K', 'up', 61_500))).toEqual({ ids: ['c'], downMs: 500 });
  });

  it('groups go once nobody waits on them and no gap holds them', () => {
    const { r, m, woken } = queue();
    r.result('Dsn-MX', 'down', 0);
    expect(r.down).toBe(1);
    r.reap(60_000); // nobody waits on it: its outage is forgotten
    expect(r.down).toBe(0);
    const b = m('b');
    r.result('K', 'down', 0);
    r.wait(b, on('K'), 0);
    expect(woken(r.result('K', 'up', 1))?.ids).toEqual(['b']);
    r.forget(b);
    r.reap(30_000); // inside the gap: kept
    r.result('K', 'down', 40_000);
    r.wait(b, on('K'), 40_000);
    expect(r.result('K', 'up', 40_001)).toBeUndefined(); // the gap survived the reap
    r.forget(b);
    r.reap(70_000);
    r.result('K', 'down', 70_000);
    r.wait(b, on('K'), 70_000);
    expect(woken(r.result('K', 'up', 70_001))?.ids).toEqual(['b']);
  });

  it('moved(): the messages whose legs now go to another destination, with the new keys', () => {
    const { r, m } = queue();
    const legs = (...x: [string, string, string][]): WaitOn<string>[] =>
      x.map(([key, domain, sample]) => ({ key, sampleKey: `${domain}|old`, sample }));
    r.wait(m('a'), legs(['K', 'x.test', 'x-leg']), 0);
    r.wait(m('b'), legs(['K', 'y.test', 'y-leg']), 0);
    r.wait(m('c'), legs(['L', 'z.test', 'z-leg'], ['K', 'x.test', 'x-leg2']), 0);
    // nothing moved
    expect(r.moved(() => undefined)).toBeUndefined();
    // x.test's server moved to K2 (the sample of x.test is the first x leg seen); y.test stays on K; z.test has none
    const moved = r.moved((s, key) => {
      expect(key).toBe(s.startsWith('z') ? 'L' : 'K');
      return s.startsWith('x') ? 'K2' : undefined;
    });
    expect(moved).toBeDefined();
    // every message on K may hold x legs: each gets K2 made due (legs that still go to K are not made due by it)
    expect(moved?.(m('a'))).toEqual(['K2']);
    expect(moved?.(m('b'))).toEqual(['K2']);
    expect(moved?.(m('c'))).toEqual(['K2']);
    expect(moved?.(m('none'))).toBeUndefined();
  });

  it('moved() ignores destinations nobody waits on any more', () => {
    const { r, m } = queue();
    r.wait(m('a'), on('K'), 0);
    r.forget(m('a'));
    expect(r.moved(() => 'K2')).toBeUndefined();
  });

  it('moved() can make a destination due where it is (credentials rotated)', () => {
    const { r, m } = queue();
    r.wait(m('a'), on('K'), 0);
    r.wait(m('b'), on('L'), 0);
    const moved = r.moved((_s, key) => (key === 'K' ? 'K' : undefined));
    expect(moved?.(m('a'))).toEqual(['K']);
    expect(moved?.(m('b'))).toBeUndefined();
  });
});
