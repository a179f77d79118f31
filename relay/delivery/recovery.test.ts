import { describe, expect, it } from 'vitest';
import type { AttemptReply } from './outcome.ts';
import { reachability, Recovery, type WaitOn, type Waiting, type Woken } from './recovery.ts';

const smtp = (code: number): AttemptReply => ({ kind: 'smtp', code, text: `${code} x` });
const net: AttemptReply = { kind: 'network', text: 'connect ECONNREFUSED' };
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
        : { ids: [...all].filter(([, x]) => w.waits(x)).map(([n]) => n), downMs: w.downMs },
  };
}

describe('Recovery', () => {
  it('wakes the messages waiting on a destination that answers after an outage, once', () => {
    const { r, m, woken } = queue();
    r.wait(m('a'), on('K'));
    r.wait(m('b'), on('K', 'L'));
    r.wait(m('c'), on('L'));
    expect(r.result('K', 'down', 1_000)).toBeUndefined();
    expect(r.down).toBe(1);
    expect(woken(r.result('K', 'up', 5_000))).toEqual({ ids: ['a', 'b'], downMs: 4_000 });
    expect(r.down).toBe(0);
    // up again: no outage in between, nothing to wake
    expect(r.result('K', 'up', 6_000)).toBeUndefined();
  });

  it('an answer without an outage wakes nothing; so does a transaction that says nothing', () => {
    const { r, m } = queue();
    r.wait(m('a'), on('K'));
    expect(r.result('K', 'up', 1)).toBeUndefined();
    r.result('K', 'down', 2);
    expect(r.result('K', undefined, 3)).toBeUndefined();
    expect(r.down).toBe(1);
  });

  it('an outage nobody waits on wakes nothing when it ends', () => {
    const { r } = queue();
    r.result('K', 'down', 1);
    expect(r.result('K', 'up', 2)).toBeUndefined();
  });

  it('a message that waits elsewhere now, or is gone, is not woken', () => {
    const { r, m, woken } = queue();
    r.wait(m('a'), on('K'));
    r.wait(m('b'), on('K'));
    r.wait(m('c'), on('K'));
    r.wait(m('a'), on('L'));
    r.forget(m('b'));
    expect(m('b').waitingOn).toBeUndefined();
    expect(r.waiting('K')).toBe(1);
    expect(r.waiting('L')).toBe(1);
    r.result('K', 'down', 1);
    expect(woken(r.result('K', 'up', 2))?.ids).toEqual(['c']);
  });

  it('a message told the same destinations again is counted once', () => {
    const { r, m } = queue();
    r.wait(m('a'), on('K', 'K')); // two legs to K: one group
    r.wait(m('a'), on('K'));
    r.wait(m('a'), on('L', 'K'));
    expect(r.waiting('K')).toBe(1);
    expect(r.waiting('L')).toBe(1);
    r.wait(m('a'), on());
    expect(m('a').waitingOn).toBeUndefined();
    expect(r.waiting('K')).toBe(0);
    expect(r.waiting('L')).toBe(0);
  });

  it('at most one wake per gap, also across an outage whose messages all left', () => {
    const { r, m, woken } = queue();
    r.wait(m('a'), on('K'));
    r.result('K', 'down', 0);
    expect(woken(r.result('K', 'up', 1_000))?.ids).toEqual(['a']);
    r.forget(m('a'));
    r.wait(m('c'), on('K'));
    r.result('K', 'down', 2_000);
    expect(r.result('K', 'up', 3_000)).toBeUndefined(); // inside the gap: left to its retry time
    r.result('K', 'down', 61_000);
    expect(woken(r.result('K', 'up', 61_500))).toEqual({ ids: ['c'], downMs: 500 });
  });

  it('groups go once nobody waits on them and no outage or gap holds them', () => {
    const { r, m, woken } = queue();
    r.result('Dsn-MX', 'down', 0);
    expect(r.down).toBe(1);
    r.reap(30_000); // nobody waits on it: its outage is forgotten
    expect(r.down).toBe(0);
    const b = m('b');
    r.wait(b, on('K'));
    r.result('K', 'down', 0);
    r.result('K', 'up', 1);
    r.forget(b);
    r.reap(30_000);
    r.wait(b, on('K'));
    r.result('K', 'down', 40_000);
    expect(r.result('K', 'up', 40_001)).toBeUndefined(); // the gap survived the reap
    r.forget(b);
    r.reap(70_000);
    r.wait(b, on('K'));
    r.result('K', 'down', 70_000);
    expect(woken(r.result('K', 'up', 70_001))?.ids).toEqual(['b']);
  });

  it('moved(): the messages whose legs now go to another destination, with the new keys', () => {
    const { r, m } = queue();
    const legs = (...x: [string, string, string][]): WaitOn<string>[] =>
      x.map(([key, domain, sample]) => ({ key, sampleKey: `${domain}|old`, sample }));
    r.wait(m('a'), legs(['K', 'x.test', 'x-leg']));
    r.wait(m('b'), legs(['K', 'y.test', 'y-leg']));
    r.wait(m('c'), legs(['L', 'z.test', 'z-leg'], ['K', 'x.test', 'x-leg2']));
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
    r.wait(m('a'), on('K'));
    r.result('K', 'down', 0);
    r.forget(m('a'));
    expect(r.moved(() => 'K2')).toBeUndefined();
  });

  it('moved() can make a destination due where it is (credentials rotated)', () => {
    const { r, m } = queue();
    r.wait(m('a'), on('K'));
    r.wait(m('b'), on('L'));
    const moved = r.moved((_s, key) => (key === 'K' ? 'K' : undefined));
    expect(moved?.(m('a'))).toEqual(['K']);
    expect(moved?.(m('b'))).toBeUndefined();
  });
});
