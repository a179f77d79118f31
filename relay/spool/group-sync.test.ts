import { describe, expect, it } from 'vitest';
import { GroupSync } from './group-sync.ts';

/** A run() whose calls the test ends one by one. */
function controlled(): { runs: number; end: (ok?: boolean) => void; run: () => Promise<void> } {
  const pending: { resolve: () => void; reject: (e: Error) => void }[] = [];
  const c = {
    runs: 0,
    end(ok = true): void {
      const p = pending.shift();
      if (p === undefined) throw new Error('no run in progress');
      if (ok) p.resolve();
      else p.reject(new Error('fsync failed'));
    },
    run: (): Promise<void> => {
      c.runs++;
      return new Promise<void>((resolve, reject) => pending.push({ resolve, reject }));
    },
  };
  return c;
}

const flush = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('GroupSync', () => {
  it('callers during a run share the one after it; a caller never rides on a run that began before it', async () => {
    const c = controlled();
    const g = new GroupSync(c.run);
    const first = g.sync();
    const second = g.sync();
    const third = g.sync();
    expect(third).toBe(second);
    expect(c.runs).toBe(1);
    let secondDone = false;
    void second.then(() => (secondDone = true));
    c.end();
    await first;
    await flush();
    expect(c.runs).toBe(2); // the queued run starts only after the first ended
    expect(secondDone).toBe(false);
    c.end();
    await second;
    expect(c.runs).toBe(2);
  });

  it('a failed run rejects its callers, the queued run still happens, and settled() never rejects', async () => {
    const c = controlled();
    const g = new GroupSync(c.run);
    const first = g.sync();
    const queued = g.sync();
    const settled = g.settled();
    c.end(false);
    await expect(first).rejects.toThrow('fsync failed');
    await flush();
    expect(c.runs).toBe(2);
    c.end();
    await expect(queued).resolves.toBeUndefined();
    await expect(settled).resolves.toBeUndefined();
    void g.sync(); // idle again: a new call starts a run of its own
    expect(c.runs).toBe(3);
    c.end();
  });
});
