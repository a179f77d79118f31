import { describe, expect, it } from 'vitest';
import type { ServerRoute } from '../../routing/model.ts';
import { FakeClock, settle } from '../../test/support/fake-clock.ts';
import { FakeNet, refused, server } from '../../test/support/engine-harness.ts';
import { Destination, destinationKey, Destinations, POOL_IDLE_MS } from './destination.ts';
import type { ServerTarget } from './transport.ts';

function make(s: ServerRoute = server('mx1'), share = 1, backoffMs = 30_000) {
  const clock = new FakeClock(0);
  const net = new FakeNet();
  const d = new Destination(destinationKey(s), s, {
    now: () => clock.now,
    factory: net.factory,
    connectionShare: share,
    backoffMs,
  });
  return { clock, net, d };
}

const target = (host: string, over: Partial<ServerTarget> = {}): ServerTarget => ({
  host,
  port: 25,
  tls: 'None',
  maxConnections: 2,
  ...over,
});

describe('destinationKey: one destination per routed server', () => {
  it.each<[string, Partial<ServerRoute>, boolean]>([
    ['the same server', {}, true],
    ['maxConnections changed (same destination, new limit)', { maxConnections: 9 }, true],
    ['another port', { port: 587 }, false],
    ['another TLS mode', { tls: 'Required' }, false],
    ['MX lookup on', { mx: true }, false],
    ['other credentials', { authSecretRef: { namespace: 'n', name: 's' } }, false],
    ['another server name for the same host', { name: 'other' }, false],
  ])('%s', (_, over, same) => {
    const a = server('mx1');
    expect(destinationKey({ ...a, ...over }) === destinationKey(a)).toBe(same);
  });
});

describe('Destination', () => {
  it('dispatches at most max(16, 4 × maxConnections) transactions and wakes waiting messages one per freed slot', () => {
    const { d } = make(server('mx1', { maxConnections: 5 }));
    expect(d.cap).toBe(20);
    for (let i = 0; i < 20; i++) expect(d.tryDispatch()).toBe(true);
    expect(d.tryDispatch()).toBe(false);
    d.wait('gone');
    d.wait('m1');
    d.wait('m2');
    const waiting = new Set(['m1', 'm2']);
    expect(d.undispatch((id) => waiting.delete(id))).toBe('m1');
    expect(d.undispatch((id) => waiting.delete(id))).toBe('m2');
    expect(d.undispatch((id) => waiting.delete(id))).toBeUndefined();
    expect(d.dispatchedCount).toBe(17);
    expect(make(server('small', { maxConnections: 1 })).d.cap).toBe(16);
  });

  it('hands out ceil(maxConnections / share) connection slots in FIFO order', async () => {
    const { d } = make(server('mx1', { maxConnections: 3 }), 2);
    expect(d.limit).toBe(2);
    expect(await d.acquire(() => false)).toBe(true);
    expect(await d.acquire(() => false)).toBe(true);
    const order: string[] = [];
    void d.acquire(() => false).then(() => order.push('third'));
    void d.acquire(() => false).then(() => order.push('fourth'));
    await settle();
    expect(order).toEqual([]);
    d.release();
    await settle();
    expect(order).toEqual(['third']);
    d.release();
    await settle();
    expect(order).toEqual(['third', 'fourth']);
  });

  it('waiters see stop: dropWaiters() lets them go with false', async () => {
    const { d } = make(server('mx1', { maxConnections: 1 }));
    await d.acquire(() => false);
    let stopped = false;
    const w = d.acquire(() => stopped);
    stopped = true;
    d.dropWaiters();
    expect(await w).toBe(false);
  });

  it('suspends an address that could not be reached, for backoffMs of the injected clock', async () => {
    const { clock, d } = make(server('mx1'), 1, 30_000);
    d.record('10.0.0.1', [refused, refused]);
    expect(d.suspension('10.0.0.1')).toBe('connect ECONNREFUSED');
    expect(d.suspension('10.0.0.2')).toBeUndefined();
    await clock.advance(29_999);
    expect(d.suspension('10.0.0.1')).toBeDefined();
    await clock.advance(1);
    expect(d.suspension('10.0.0.1')).toBeUndefined();
    // any answer (even a 4xx) lifts it; resume() (flush) too
    d.record('10.0.0.1', [refused]);
    d.record('10.0.0.1', [{ kind: 'smtp', code: 451, text: '451 busy' }]);
    expect(d.suspension('10.0.0.1')).toBeUndefined();
    d.record('10.0.0.1', [refused]);
    d.resume();
    expect(d.suspension('10.0.0.1')).toBeUndefined();
  });

  it('does not suspend a host that took the message and went silent or dropped after the final dot: the retry goes there first', () => {
    const { d } = make(server('mx1'), 1, 30_000);
    const afterDot = {
      kind: 'network',
      text: 'ETIMEDOUT: Timeout after the end of data: the message may have been delivered',
      afterEndOfData: true,
    } as const;
    d.record('10.0.0.1', [afterDot]);
    expect(d.suspension('10.0.0.1')).toBeUndefined();
    // and it lifts a suspension, as any answer does: the host was reached
    d.record('10.0.0.1', [refused]);
    d.record('10.0.0.1', [afterDot, refused]);
    expect(d.suspension('10.0.0.1')).toBeUndefined();
  });

  it('backoffMs 0 never suspends', () => {
    const { d } = make(server('mx1'), 1, 0);
    d.record('10.0.0.1', [refused]);
    expect(d.suspension('10.0.0.1')).toBeUndefined();
  });

  it('keeps one pool per address and closes those idle for POOL_IDLE_MS', async () => {
    const { clock, net, d } = make();
    await d.send(target('10.0.0.1'), (t) => t.send({ from: 'a@b', to: ['x@y'], raw: Buffer.from('x') }));
    await d.send(target('10.0.0.1'), (t) => t.send({ from: 'a@b', to: ['x@y'], raw: Buffer.from('x') }));
    await d.send(target('10.0.0.2'), (t) => t.send({ from: 'a@b', to: ['x@y'], raw: Buffer.from('x') }));
    expect(net.pools).toBe(2);
    await clock.advance(POOL_IDLE_MS);
    expect(d.reapIdle()).toBe(false);
    await clock.advance(1);
    expect(d.reapIdle()).toBe(true);
    expect(net.closed.sort()).toEqual(['10.0.0.1', '10.0.0.2']);
  });

  it('new credentials close the idle pools set up with the old ones', async () => {
    const { net, d } = make();
    const send = (authKey: string) =>
      d.send(target('10.0.0.1', { authKey }), (t) =>
        t.send({ from: 'a@b', to: ['x@y'], raw: Buffer.from('x') }),
      );
    await send('ns/s#old');
    await send('ns/s#new');
    expect(net.pools).toBe(2);
    expect(net.closed).toEqual(['10.0.0.1']);
  });

  it('Destinations: one object per key, updated with the current definition, dropped when idle', () => {
    const clock = new FakeClock(0);
    const net = new FakeNet();
    const all = new Destinations({
      now: () => clock.now,
      factory: net.factory,
      connectionShare: 1,
      backoffMs: 0,
    });
    const a = all.of(server('mx1', { maxConnections: 1 }));
    expect(all.of(server('mx1', { maxConnections: 8 }))).toBe(a);
    expect(a.limit).toBe(8);
    expect(all.of(server('mx2'))).not.toBe(a);
    expect(all.size).toBe(2);
    all.reapIdle();
    expect(all.size).toBe(0);
  });
});
