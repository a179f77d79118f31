import { describe, expect, it } from 'vitest';
import { KubeConfig, Watch } from '@kubernetes/client-node';
import {
  clientTimeoutMs,
  LONGEST_QUIET_WATCH_MS,
  ServerTimedWatch,
  watchTimeoutSeconds,
  watchWasHealthy,
} from './kube-watch.ts';

describe('watchTimeoutSeconds: [min, 2·min) whole seconds', () => {
  it.each([
    [300, 0, 300],
    [300, 0.5, 450],
    [300, 0.999, 599],
    [300, 1, 599], // a random() of exactly 1 still stays below 2·min
    [2, 0, 2],
    [2, 0.7, 3],
    [2, 1, 3],
  ])('min %i s, random %f -> %i s', (min, r, want) => {
    expect(watchTimeoutSeconds(min, () => r)).toBe(want);
  });
});

describe('clientTimeoutMs: longer than any server-side duration', () => {
  it.each([
    [300, 630_000],
    [2, 34_000],
  ])('min %i s -> %i ms', (min, want) => {
    expect(clientTimeoutMs(min)).toBe(want);
    expect(clientTimeoutMs(min)).toBeGreaterThan(watchTimeoutSeconds(min, () => 1) * 1000);
  });
  it('the default is the longest quiet watch', () => {
    expect(LONGEST_QUIET_WATCH_MS).toBe(630_000);
  });
});

describe('watchWasHealthy', () => {
  it.each([
    [0, false, false],
    [999, false, false],
    [1000, false, true],
    [0, true, true],
    [600_000, false, true],
  ])('lasted %i ms, events %s -> %s', (ms, events, want) => {
    expect(watchWasHealthy(ms, events)).toBe(want);
  });
});

describe('ServerTimedWatch', () => {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'c', server: 'https://127.0.0.1:1' }],
    users: [{ name: 'u' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });

  it("replaces client-node's 30 s watch timeout with one longer than the server's", () => {
    expect(Reflect.get(new Watch(kc), 'requestTimeoutMs')).toBe(30_000); // the cause of the 30 s teardown
    expect(Reflect.get(new ServerTimedWatch(kc), 'requestTimeoutMs')).toBe(630_000);
    const short = new ServerTimedWatch(kc, { minTimeoutSeconds: 2 });
    expect(Reflect.get(short, 'requestTimeoutMs')).toBe(34_000);
    expect(short.clientTimeoutMs).toBe(34_000);
  });

  it.each([1, 0, 2.5, Number.NaN])('refuses minTimeoutSeconds %s', (min) => {
    expect(() => new ServerTimedWatch(kc, { minTimeoutSeconds: min })).toThrow(
      /watch minTimeoutSeconds: expected an integer of at least 2/,
    );
  });
});
