// Keeps dead message buffers from piling up. Streaming a message allocates a fresh Buffer per socket read, per
// smtp-server chunk and per spool write; they die at once, but V8 frees their memory (external to its heap) only
// when a GC runs, and with a mostly idle JS heap that is after ~64 MiB of external garbage. Measured: a 50 MiB
// message raised the RSS by 46-52 MiB, all of it dead ArrayBuffers (docs/relay.md). This governor samples
// process.memoryUsage().arrayBuffers and runs a young-generation GC (a scavenge: about a millisecond) when it grew
// by more than limitBytes since the last one, so memory stays bounded by connections x buffers, not by message size.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

type GcFn = (opts?: { type?: 'minor' | 'major'; execution?: 'sync' | 'async' }) => void;

/** The gc() function, exposed at run time (no --expose-gc needed on the command line). */
export function exposeGc(): GcFn | undefined {
  try {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as unknown;
    return typeof gc === 'function' ? (gc as GcFn) : undefined;
  } catch {
    return undefined;
  }
}

export interface BufferGovernor {
  /** GCs run so far. */
  readonly collections: number;
  stop(): void;
}

export function startBufferGovernor(opts: { limitBytes?: number; intervalMs?: number } = {}): BufferGovernor {
  const limit = opts.limitBytes ?? 8 * 1024 * 1024;
  const gc = exposeGc();
  let floor = process.memoryUsage().arrayBuffers;
  let collections = 0;
  const timer = setInterval(() => {
    if (!gc) return;
    const now = process.memoryUsage().arrayBuffers;
    if (now < floor) floor = now;
    if (now - floor <= limit) return;
    gc({ type: 'minor' });
    collections++;
    let after = process.memoryUsage().arrayBuffers;
    if (after - floor > limit) {
      // survivors were promoted: a full collection
      gc({ type: 'major' });
      after = process.memoryUsage().arrayBuffers;
    }
    floor = after;
  }, opts.intervalMs ?? 50);
  timer.unref();
  return {
    get collections() {
      return collections;
    },
    stop: () => clearInterval(timer),
  };
}
