// Before each run: write back what earlier runs left in the page cache, then wait (bounded) until the machine is
// no longer busy with their aftermath. Without it the first run after a heavy one paid for the other's writeback:
// on ext4 (data=ordered) an fsync commits the journal, which first writes the dirty data of other files in the same
// transaction (docs/perf.md, "The first round of a workload is the slowest").
import { spawn } from 'node:child_process';
import { busyShare, cpuTimes, dirtyKiB } from './procstat.ts';

export interface SettleResult {
  /** Time spent: the sync plus the wait for a quiet machine. */
  readonly ms: number;
  /** Dirty page cache before the sync, KiB. */
  readonly dirtyKiB: number;
  /** Busy share of the machine's CPU time over the last window before the run started (0..1); null: unreadable. */
  readonly busy: number | null;
}

const WINDOW_MS = 500;

function syncAll(): Promise<void> {
  return new Promise((resolve) => {
    const p = spawn('sync', { stdio: 'ignore' });
    p.once('exit', () => resolve());
    p.once('error', () => resolve());
  });
}

/**
 * sync(1), then windows of WINDOW_MS until one in which the machine was busy less than `quietBelow` of its CPU time,
 * or until `maxMs` has passed (another tenant's load never settles: the run then starts anyway, and the busy share
 * it started with is recorded). A deliberate neighbour's share belongs in `quietBelow`. undefined when maxMs is 0.
 */
export async function settle(maxMs: number, quietBelow = 0.25): Promise<SettleResult | undefined> {
  if (maxMs <= 0) return undefined;
  const t0 = performance.now();
  const dirty = dirtyKiB();
  await syncAll();
  let busy: number | null = null;
  let prev = cpuTimes();
  while (prev !== undefined && performance.now() - t0 < maxMs) {
    await new Promise((r) => setTimeout(r, WINDOW_MS));
    const now = cpuTimes();
    if (now === undefined) break;
    busy = busyShare(prev, now);
    prev = now;
    if (busy < quietBelow) break;
  }
  return {
    ms: Math.round(performance.now() - t0),
    dirtyKiB: dirty,
    busy: busy === null ? null : Number(busy.toFixed(2)),
  };
}
