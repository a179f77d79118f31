import pino from 'pino';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../test/support/fake-clock.ts';
import { createRelayMetrics } from '../telemetry/metrics.ts';
import { pausesDelivery, StorageHold } from './storage-hold.ts';

const errno = (code: string): Error => Object.assign(new Error(code), { code });

describe('pausesDelivery', () => {
  it.each([
    ['EROFS', true],
    ['EIO', true],
    ['ENOSPC', false],
    ['EDQUOT', false],
    ['EMFILE', false],
    [undefined, false],
  ])('%s -> %s', (code, pauses) => {
    expect(pausesDelivery(code === undefined ? new Error('no code') : errno(code))).toBe(pauses);
  });
});

function harness() {
  const clock = new FakeClock();
  const metrics = createRelayMetrics(new Registry(), false);
  const woken: string[] = [];
  const hold = new StorageHold({
    timers: clock,
    log: pino({ level: 'silent' }),
    metrics,
    elapsed: clock.elapsed,
    wake: (id) => woken.push(id),
  });
  /** A kept write that fails with `code` while `failing()`, else succeeds; records when it ran. */
  const writer = (id: string, failing: () => boolean, code = 'EROFS') => {
    const ran: number[] = [];
    const again = (): Promise<void> => {
      ran.push(clock.elapsed());
      if (failing()) hold.failed(id, errno(code), again);
      else hold.wrote(id);
      return Promise.resolve();
    };
    return { ran, again };
  };
  return { clock, metrics, hold, woken, writer };
}

describe('StorageHold', () => {
  it('tries one kept write after 1, 2, 4 ... s, at most 30 s, until it succeeds; then writes every kept one and wakes the waiting', async () => {
    const { clock, hold, woken, writer } = harness();
    let failing = true;
    const a = writer('a', () => failing);
    const b = writer('b', () => failing);
    hold.failed('a', errno('EROFS'), a.again);
    hold.failed('b', errno('EROFS'), b.again);
    expect(hold.paused).toBe(true);
    expect(hold.hold('c')).toBe(true);
    await clock.advance(1000 + 2000 + 4000 + 8000 + 16000 + 30_000 + 30_000);
    // one kept write per probe, taking turns (a refused write goes back to the end of the line)
    const probes = [...a.ran, ...b.ran].sort((x, y) => x - y);
    expect(probes).toEqual([1000, 3000, 7000, 15000, 31000, 61000, 91000]);
    failing = false;
    await clock.advance(30_000);
    expect(hold.paused).toBe(false);
    expect(a.ran.length + b.ran.length).toBe(9); // the probe that succeeded, then the other one
    expect(woken).toEqual(['c']);
    expect(hold.unrecorded).toBe(0);
    expect(clock.pending).toBe(0);
  });

  it('ENOSPC keeps the write but does not pause; EROFS after it does', () => {
    const { hold, writer } = harness();
    hold.failed('a', errno('ENOSPC'), writer('a', () => true, 'ENOSPC').again);
    expect([hold.paused, hold.hold('x'), hold.unrecorded]).toEqual([false, false, 1]);
    hold.failed('b', errno('EROFS'), writer('b', () => true).again);
    expect([hold.paused, hold.hold('x'), hold.unrecorded]).toEqual([true, true, 2]);
  });

  it('any write that succeeds ends it; a message gone is forgotten; the metrics follow', async () => {
    const { clock, metrics, hold, woken, writer } = harness();
    const gauge = async (name: 'deliveryPaused' | 'resultsUnrecorded'): Promise<number> =>
      (await metrics[name].get()).values[0]?.value ?? 0;
    const a = writer('a', () => false); // written when tried again
    hold.failed('a', errno('EROFS'), a.again);
    hold.failed('b', errno('EROFS'), writer('b', () => true).again);
    hold.hold('w');
    hold.hold('gone');
    hold.forget('b');
    hold.forget('gone');
    expect([await gauge('deliveryPaused'), await gauge('resultsUnrecorded')]).toEqual([1, 1]);
    hold.wrote('other');
    expect([await gauge('deliveryPaused'), await gauge('resultsUnrecorded')]).toEqual([0, 0]);
    expect(a.ran).toEqual([0]); // written again at once
    expect(woken).toEqual(['w']);
    await clock.advance(60_000);
    expect(a.ran).toEqual([0]);
  });

  it('with every kept message gone, the probe ends the pause', async () => {
    const { clock, hold, writer } = harness();
    hold.failed('a', errno('EROFS'), writer('a', () => true).again);
    hold.forget('a');
    await clock.advance(1000);
    expect(hold.paused).toBe(false);
  });

  it('stop() tries every kept write once, arms nothing and holds nothing', async () => {
    const { clock, hold, writer } = harness();
    const a = writer('a', () => false);
    hold.failed('a', errno('EROFS'), a.again);
    await hold.stop();
    expect(a.ran).toEqual([0]);
    expect([hold.paused, hold.hold('x')]).toEqual([false, false]);
    expect(clock.pending).toBe(0);
  });
});
