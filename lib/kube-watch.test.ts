import { describe, expect, it, vi } from 'vitest';
import { KubeConfig, Watch } from '@kubernetes/client-node';
import { fakeWallClock, restoreWallClock, stepWallClock } from '../test/support/clock.ts';
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

  it('measures how long a watch lasted on the monotonic clock: a step of the wall clock forward does not make a watch that failed at once look healthy', async () => {
    let end: ((err: unknown) => void) | undefined;
    // the API server's side: the watch is set up, and ended by the test
    const watch = vi.spyOn(Watch.prototype, 'watch').mockImplementation((_path, _params, _cb, done) => {
      end = done;
      return Promise.resolve(new AbortController());
    });
    fakeWallClock();
    try {
      const w = new ServerTimedWatch(kc, { minTimeoutSeconds: 2 });
      await w.watch(
        '/api/v1/configmaps',
        {},
        () => undefined,
        () => undefined,
      );
      stepWallClock(3_600_000); // NTP steps the clock forward while the watch runs
      end?.(undefined); // the server closed it straight away, with no event
      // before the fix (Date.now): it "lasted" an hour, so it was healthy and re-watched at once, without a backoff
      expect(w.lastWatchHealthy).toBe(false);
    } finally {
      restoreWallClock();
      watch.mockRestore();
    }
  });

  it.each([1, 0, 2.5, Number.NaN])('refuses minTimeoutSeconds %s', (min) => {
    expect(() => new ServerTimedWatch(kc, { minTimeoutSeconds: min })).toThrow(
      /watch minTimeoutSeconds: expected an integer of at least 2/,
    );
  });
});
