import { describe, expect, it, vi } from 'vitest';
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
  it('a level that cannot be read (EMFILE: every descriptor in use) skips the check, from the timer and from account()', async () => {
    const h = fakeHeap();
    let failing = false;
    let reads = 0;
    const arrayBuffers = (): number => {
      reads++;
      if (failing)
        throw Object.assign(new Error('EMFILE: too many open files, uv_resident_set_memory'), {
          code: 'EMFILE',
        });
      return h.level;
    };
    const g = startBufferGovernor({
      limitBytes: 8 * MiB,
      stepBytes: 2 * MiB,
      intervalMs: 5,
      gc: h.gc,
      arrayBuffers,
    });
    try {
      failing = true;
      h.level = 64 * MiB;
      expect(() => g.account(4 * MiB, 4 * MiB)).not.toThrow();
      const before = reads;
      await waitFor(() => reads > before + 2, { what: 'the timer to check while the level cannot be read' });
      expect(g.collections).toBe(0);
      failing = false;
      await waitFor(() => g.collections > 0, { what: 'a collection once the level can be read again' });
      expect(h.level).toBe(0);
    } finally {
      g.stop();
    }
  });

  it('collects once the reported bytes cross a step and the garbage exceeds the limit', () => {
    const h = fakeHeap();
    const g = startBufferGovernor({ limitBytes: 8 * MiB, stepBytes: 2 * MiB, intervalMs: 60_000, ...h });
    try {
      // 3 bytes of garbage per message byte (socket read, smtp-server chunk, spool write)
      for (let i = 0; i < 16; i++) {
        h.level += 3 * 512 * 1024;
        g.account(512 * 1024, (i + 1) * 512 * 1024); // one 8 MiB message
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
      g.account(4 * MiB, 4 * MiB);
      expect(g.collections).toBe(0);
      h.level = 20 * MiB;
      g.account(1 * MiB, 5 * MiB); // under one step since the last check
      expect(g.collections).toBe(0);
      g.account(1 * MiB, 6 * MiB);
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
      g.account(1, 2 * MiB);
      expect(h.calls).toEqual(['minor', 'major']);
      expect(h.level).toBe(0);
    } finally {
      g.stop();
    }
  });

  it.each([
    { leaves: 'less than the relaxed limit', survivors: 10 * MiB },
    { leaves: 'more than the relaxed limit (promoted survivors)', survivors: 20 * MiB },
  ])(
    'without a large message, a scavenge that leaves $leaves is enough (no full collection), and sets the floor',
    ({ survivors }) => {
      const h = fakeHeap(survivors);
      const g = startBufferGovernor({
        limitBytes: 8 * MiB,
        relaxedLimitBytes: 16 * MiB,
        stepBytes: 1,
        intervalMs: 60_000,
        ...h,
      });
      try {
        h.level = 30 * MiB;
        g.account(1, 100 * 1024);
        expect(h.calls).toEqual(['minor']);
        expect(h.level).toBe(survivors);
        // what the scavenge left is the new floor: 10 MiB more is under the relaxed limit, no second scavenge
        h.level = survivors + 10 * MiB;
        g.account(1, 100 * 1024);
        expect(h.calls).toEqual(['minor']);
      } finally {
        g.stop();
      }
    },
  );

  it('also checks on its timer (buffers that no message stream reports)', async () => {
    const h = fakeHeap();
    const g = startBufferGovernor({ limitBytes: 1 * MiB, relaxedLimitBytes: 1 * MiB, intervalMs: 5, ...h });
    try {
      h.level = 5 * MiB;
      await waitFor(() => g.collections > 0, { what: 'a collection by the timer' });
      expect(g.collections).toBe(1);
    } finally {
      g.stop();
    }
  });

  // The limit is the tight one only while a large message streams (and strictForMs after its last chunk).
  it.each([
    {
      case: 'medium messages only: 12 MiB of growth is under the relaxed limit',
      messageBytes: 100 * 1024,
      growth: 12,
      at: 0,
      collects: false,
    },
    {
      case: 'medium messages only: 17 MiB is over it',
      messageBytes: 100 * 1024,
      growth: 17,
      at: 0,
      collects: true,
    },
    {
      case: 'a large message streaming: 9 MiB is over the tight limit',
      messageBytes: 2 * MiB,
      growth: 9,
      at: 0,
      collects: true,
    },
    {
      case: 'a large message at exactly largeMessageBytes counts as large',
      messageBytes: 1 * MiB,
      growth: 9,
      at: 0,
      collects: true,
    },
    {
      case: 'just under largeMessageBytes does not',
      messageBytes: 1 * MiB - 1,
      growth: 9,
      at: 0,
      collects: false,
    },
    {
      case: 'within strictForMs of a large chunk: still tight',
      messageBytes: 2 * MiB,
      growth: 9,
      at: 999,
      collects: true,
    },
    {
      case: 'strictForMs after the last large chunk: relaxed again',
      messageBytes: 2 * MiB,
      growth: 9,
      at: 1000,
      collects: false,
    },
  ])('$case', ({ messageBytes, growth, at, collects }) => {
    const h = fakeHeap();
    let t = 0;
    const g = startBufferGovernor({
      limitBytes: 8 * MiB,
      relaxedLimitBytes: 16 * MiB,
      largeMessageBytes: 1 * MiB,
      strictForMs: 1000,
      stepBytes: 1,
      intervalMs: 60_000,
      now: () => t,
      ...h,
    });
    try {
      g.account(1, messageBytes); // a chunk of that message, checked while the heap has not grown
      expect(g.collections).toBe(0);
      t = at;
      h.level = growth * MiB;
      // a later check: by a medium message's chunk (which never makes the limit tight itself)
      g.account(1, 1);
      expect(g.collections).toBe(collects ? 1 : 0);
    } finally {
      g.stop();
    }
  });

  it('the timer uses the same limit: relaxed without a large message, tight during one', () => {
    vi.useFakeTimers();
    const h = fakeHeap();
    const g = startBufferGovernor({
      limitBytes: 1 * MiB,
      relaxedLimitBytes: 4 * MiB,
      stepBytes: 1 << 30,
      intervalMs: 50,
      now: () => Date.now(), // the fake clock
      ...h,
    });
    try {
      h.level = 3 * MiB;
      vi.advanceTimersByTime(500); // ten ticks: 3 MiB of growth stays under the relaxed 4 MiB
      expect(g.collections).toBe(0);
      g.account(1, 2 * MiB); // a large message streams: the next tick collects at the tight 1 MiB
      vi.advanceTimersByTime(50);
      expect(g.collections).toBe(1);
      expect(h.level).toBe(0);
      vi.advanceTimersByTime(1000); // a second after its last chunk the limit is relaxed again
      h.level = 3 * MiB;
      vi.advanceTimersByTime(500);
      expect(g.collections).toBe(1);
    } finally {
      g.stop();
      vi.useRealTimers();
    }
  });
});
