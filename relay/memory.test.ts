import { describe, expect, it } from 'vitest';
import { waitFor } from '../test/support/wait.ts';
import { startBufferGovernor } from './memory.ts';

const MiB = 1024 * 1024;

/** A fake heap: account() adds garbage, gc() frees it (minor frees all but `survivors`, major frees all). */
function fakeHeap(survivors = 0) {
  const h = {
    level: 0,
    calls: [] as string[],
    gc: (o?: { type?: 'minor' | 'major' }) => {
      h.calls.push(o?.type ?? 'major');
      h.level = o?.type === 'minor' ? Math.min(h.level, survivors) : 0;
    },
    arrayBuffers: () => h.level,
  };
  return h;
}

describe('startBufferGovernor', () => {
  it('collects once the reported bytes cross a step and the garbage exceeds the limit', () => {
    const h = fakeHeap();
    const g = startBufferGovernor({ limitBytes: 8 * MiB, stepBytes: 2 * MiB, intervalMs: 60_000, ...h });
    try {
      // 3 bytes of garbage per message byte (socket read, smtp-server chunk, spool write)
      for (let i = 0; i < 16; i++) {
        h.level += 3 * 512 * 1024;
        g.account(512 * 1024);
        expect(h.level).toBeLessThanOrEqual(8 * MiB + 2 * 3 * MiB);
      }
      expect(g.collections).toBeGreaterThanOrEqual(2);
      expect(h.calls.every((c) => c === 'minor')).toBe(true);
    } finally {
      g.stop();
    }
  });

  it('does nothing below the limit, and nothing between steps', () => {
    const h = fakeHeap();
    const g = startBufferGovernor({ limitBytes: 8 * MiB, stepBytes: 2 * MiB, intervalMs: 60_000, ...h });
    try {
      h.level = 7 * MiB;
      g.account(4 * MiB);
      expect(g.collections).toBe(0);
      h.level = 20 * MiB;
      g.account(1 * MiB); // under one step since the last check
      expect(g.collections).toBe(0);
      g.account(1 * MiB);
      expect(g.collections).toBe(1);
      expect(h.level).toBe(0);
    } finally {
      g.stop();
    }
  });

  it('runs a full collection when a scavenge leaves more than the limit (promoted survivors)', () => {
    const h = fakeHeap(10 * MiB);
    const g = startBufferGovernor({ limitBytes: 8 * MiB, stepBytes: 1, intervalMs: 60_000, ...h });
    try {
      h.level = 30 * MiB;
      g.account(1);
      expect(h.calls).toEqual(['minor', 'major']);
      expect(h.level).toBe(0);
    } finally {
      g.stop();
    }
  });

  it('also checks on its timer (buffers that no message stream reports)', async () => {
    const h = fakeHeap();
    const g = startBufferGovernor({ limitBytes: 1 * MiB, intervalMs: 5, ...h });
    try {
      h.level = 5 * MiB;
      await waitFor(() => g.collections > 0, { what: 'a collection by the timer' });
      expect(g.collections).toBe(1);
    } finally {
      g.stop();
    }
  });
});
