import { describe, expect, it } from 'vitest';
import { waitFor } from '../../test/support/wait.ts';
import { CompletionMarks, type MarkHandle } from './marks.ts';

/** A file handle that records its calls in `log` (chmod fails when `failChmod`). */
function handle(name: string, log: string[], failChmod = false): MarkHandle {
  return {
    chmod(mode: number) {
      log.push(`chmod ${name} ${mode.toString(8)}`);
      return failChmod ? Promise.reject(new Error('EPERM')) : Promise.resolve();
    },
    close() {
      log.push(`close ${name}`);
      return Promise.resolve();
    },
  };
}

/** Marks whose timer never fires within a test (sweep() is called by hand). */
const manual = (log: string[], maxHeld = 10): CompletionMarks =>
  new CompletionMarks({
    mode: 0o600,
    periodMs: 3_600_000,
    maxHeld,
    onMarkError: (err, id) => log.push(`error ${id} ${(err as Error).message}`),
  });

/** Lets the promise chains of the marks run. */
const settle = async (): Promise<void> => {
  for (let i = 0; i < 5; i++) await Promise.resolve();
};

describe('CompletionMarks', () => {
  it.each([
    ['removed before any sweep: closed, never marked', 0, true, ['close a'], 0],
    ['removed after one sweep: still closed without a mark', 1, true, ['close a'], 0],
    ['one sweep, not removed: not marked yet', 1, false, [], 1],
    ['two sweeps, not removed: marked, then closed', 2, false, ['chmod a 600', 'close a'], 0],
    ['removed after its mark: nothing more to do', 2, true, ['chmod a 600', 'close a'], 0],
  ])('%s', async (_what, sweeps, removed, expected, held) => {
    const log: string[] = [];
    const marks = manual(log);
    marks.hold('a', handle('a', log));
    for (let i = 0; i < sweeps; i++) marks.sweep();
    if (removed) marks.release('a');
    await settle();
    expect(log).toEqual(expected);
    expect(marks.held).toBe(held);
    await marks.flush();
  });

  it('markNow() marks and closes a file still held at once, and does nothing for one that is not', async () => {
    const log: string[] = [];
    const marks = manual(log);
    marks.hold('a', handle('a', log));
    marks.markNow('a');
    marks.markNow('b');
    await settle();
    expect(log).toEqual(['chmod a 600', 'close a']);
    expect(marks.held).toBe(0);
    // removed afterwards: nothing is held any more, nothing happens
    marks.release('a');
    await settle();
    expect(log).toHaveLength(2);
    await marks.flush();
  });

  it('holds at most maxHeld files: one more is marked at once', async () => {
    const log: string[] = [];
    const marks = manual(log, 2);
    for (const id of ['a', 'b', 'c']) marks.hold(id, handle(id, log));
    await settle();
    expect(log).toEqual(['chmod c 600', 'close c']);
    expect(marks.held).toBe(2);
    marks.release('a');
    marks.hold('d', handle('d', log));
    expect(marks.held).toBe(2);
    await marks.flush();
  });

  it('a mark that fails is reported, and the file is closed all the same', async () => {
    const log: string[] = [];
    const marks = manual(log);
    marks.hold('a', handle('a', log, true));
    await marks.flush();
    expect(log).toEqual(['chmod a 600', 'error a EPERM', 'close a']);
    expect(marks.held).toBe(0);
  });

  it('flush() marks every file held and waits until each is closed', async () => {
    const log: string[] = [];
    const marks = manual(log);
    marks.hold('a', handle('a', log));
    marks.sweep();
    marks.hold('b', handle('b', log));
    await marks.flush();
    expect([...log].sort()).toEqual(['chmod a 600', 'chmod b 600', 'close a', 'close b']);
    expect(marks.held).toBe(0);
    // released after the flush: nothing is held any more, nothing happens
    marks.release('a');
    await settle();
    expect(log).toHaveLength(4);
  });

  it('the timer marks a file held one to two periods later, and stops once nothing is held', async () => {
    const log: string[] = [];
    const marks = new CompletionMarks({
      mode: 0o600,
      periodMs: 20,
      maxHeld: 10,
      onMarkError: () => undefined,
    });
    const from = Date.now();
    marks.hold('a', handle('a', log));
    await waitFor(() => log.includes('close a'), { timeoutMs: 5000, what: 'the mark' });
    expect(log).toEqual(['chmod a 600', 'close a']);
    expect(Date.now() - from).toBeGreaterThanOrEqual(20);
    // one sweep more finds nothing held and stops the timer: a file held later starts it again
    await waitFor(() => !marks.sweeping, {
      timeoutMs: 5000,
      what: 'the timer stopped',
    });
    marks.hold('b', handle('b', log));
    expect(marks.sweeping).toBe(true);
    await waitFor(() => log.includes('close b'), { timeoutMs: 5000, what: 'the second mark' });
    await marks.flush();
  });
});
