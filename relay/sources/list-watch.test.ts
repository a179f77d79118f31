import { describe, expect, it } from 'vitest';
import { waitFor } from '../../test/support/wait.ts';
import { fakeWallClock, restoreWallClock, stepWallClock } from '../../test/support/clock.ts';
import { backoffMs, createTimers, httpCode, startListWatch } from './list-watch.ts';

describe('backoffMs', () => {
  it.each([
    [0, 0, 150],
    [0, 1, 250],
    [1, 0.5, 400],
    [10, 0.5, 10_000],
    [50, 1, 12_500],
  ])('attempt %i, random %f -> %i ms', (attempt, r, want) => {
    expect(backoffMs(attempt, 200, 10_000, () => r)).toBe(want);
  });
});

describe('httpCode', () => {
  it.each<[unknown, number | undefined]>([
    [{ code: 410 }, 410],
    [{ statusCode: 404 }, 404],
    [{ code: 'ECONNREFUSED' }, undefined],
    [new Error('x'), undefined],
    [undefined, undefined],
  ])('%o -> %s', (err, want) => {
    expect(httpCode(err)).toBe(want);
  });
});

describe('createTimers', () => {
  it('runs what is scheduled, and nothing after stop()', async () => {
    const t = createTimers();
    const ran: string[] = [];
    t.later(1, () => ran.push('a'));
    await waitFor(() => ran.length === 1, { what: 'the first timer' });
    t.later(1, () => ran.push('late'));
    t.stop();
    t.later(1, () => ran.push('after stop'));
    expect(t.stopped).toBe(true);
    // a timer that would have fired long ago by now, had stop() not cleared it
    const probe = createTimers();
    let probed = false;
    probe.later(20, () => (probed = true));
    await waitFor(() => probed, { what: 'a later timer' });
    expect(ran).toEqual(['a']);
  });
});

type Obj = { metadata: { resourceVersion: string } };
const obj = (rv: string): Obj => ({ metadata: { resourceVersion: rv } });

/** Drives startListWatch by hand: lists answer `listRv`, each watch is recorded and ended by the test. */
function loop(backoffMinMs = 5, defaultClock = false) {
  const s = {
    clock: 0,
    listRv: '10',
    lists: 0,
    watchErrors: [] as unknown[],
    events: [] as string[],
    watches: [] as { rv: string | undefined; emit: (t: string, o: Obj) => void; end: (e: unknown) => void }[],
  };
  const lw = startListWatch<Obj>({
    list: () => {
      s.lists++;
      return Promise.resolve({ obj: obj(s.listRv), resourceVersion: s.listRv });
    },
    watch: (rv, onEvent, onDone) => {
      s.watches.push({ rv, emit: onEvent, end: onDone });
      return Promise.resolve(() => undefined);
    },
    onList: () => undefined,
    onEvent: (type, o) => s.events.push(`${type} ${o.metadata.resourceVersion}`),
    onListError: () => undefined,
    onWatchError: (err) => s.watchErrors.push(err),
    timers: createTimers(),
    backoffMinMs,
    backoffMaxMs: 1000,
    random: () => 0.5,
    ...(defaultClock ? {} : { now: () => s.clock }),
  });
  return { s, lw };
}

describe('startListWatch', () => {
  it("the server's close of a healthy watch: watch again from the bookmark's resourceVersion, no list", async () => {
    const { s, lw } = loop();
    await lw.start();
    await waitFor(() => s.watches.length === 1, { what: 'the first watch' });
    expect(s.watches[0]?.rv).toBe('10');
    s.watches[0]?.emit('BOOKMARK', obj('17'));
    s.watches[0]?.end(undefined);
    await waitFor(() => s.watches.length === 2, { what: 'the re-watch' });
    expect(s.watches[1]?.rv).toBe('17');
    // no event, but open for over a second (the server's timeoutSeconds): again at once, from the same rv
    s.clock += 1_000;
    s.watches[1]?.end(null);
    await waitFor(() => s.watches.length === 3, { what: 'the second re-watch' });
    expect(s.watches[2]?.rv).toBe('17');
    s.watches[2]?.emit('MODIFIED', obj('18'));
    s.watches[2]?.end(undefined);
    await waitFor(() => s.watches.length === 4, { what: 'the third re-watch' });
    expect(s.watches[3]?.rv).toBe('18');
    expect(s.events).toEqual(['MODIFIED 18']);
    expect(s.lists).toBe(1);
    expect(s.watchErrors).toEqual([]);
    lw.stop();
  });

  it('a watch the server closes at once, with nothing in it: watch again after a backoff, still no list', async () => {
    const { s, lw } = loop(200);
    await lw.start();
    await waitFor(() => s.watches.length === 1, { what: 'the first watch' });
    const closed = Date.now();
    s.watches[0]?.end(undefined);
    await waitFor(() => s.watches.length === 2, { what: 'the re-watch' });
    expect(Date.now() - closed).toBeGreaterThanOrEqual(150); // backoffMs(0, 200, 1000, () => 0.5) = 200 ms
    expect(s.watches[1]?.rv).toBe('10');
    expect(s.lists).toBe(1);
    lw.stop();
  });

  it('how long a watch lasted is measured on the monotonic clock: a watch closed at once after a step of the wall clock forward still backs off', async () => {
    fakeWallClock(); // before the loop exists
    try {
      const { s, lw } = loop(200, true);
      await lw.start();
      await waitFor(() => s.watches.length === 1, { what: 'the first watch' });
      stepWallClock(3_600_000); // NTP steps the clock an hour forward: on Date.now the watch "lasted" an hour
      const closed = performance.now();
      s.watches[0]?.end(undefined);
      await waitFor(() => s.watches.length === 2, { what: 'the re-watch' });
      expect(performance.now() - closed).toBeGreaterThanOrEqual(150); // the backoff, not at once
      lw.stop();
    } finally {
      restoreWallClock();
    }
  });

  it.each<[string, unknown]>([
    [
      'a 410 Gone ERROR event',
      Object.assign(new Error('watch error: too old resource version'), { code: 410 }),
    ],
    ['an HTTP 410 on the watch request', Object.assign(new Error('Gone'), { statusCode: 410 })],
    ['a broken stream', new TypeError('terminated')],
    ["client-node's timeout", new DOMException('The operation was aborted due to timeout', 'TimeoutError')],
  ])('%s: report it, list again, watch from the new list', async (_what, err) => {
    const { s, lw } = loop();
    await lw.start();
    await waitFor(() => s.watches.length === 1, { what: 'the first watch' });
    s.listRv = '40';
    s.watches[0]?.end(err);
    await waitFor(() => s.watches.length === 2, { what: 'the watch after the list' });
    expect(s.lists).toBe(2);
    expect(s.watches[1]?.rv).toBe('40');
    expect(s.watchErrors).toEqual([err]);
    lw.stop();
  });
});
