// Keeps dead message buffers from piling up. Streaming a message allocates a fresh Buffer per socket read, per
// smtp-server chunk and per spool write; they die at once, but V8 frees their memory (external to its heap) only
// when a GC runs, and with a mostly idle JS heap that is after ~64 MiB of external garbage. Measured: a 50 MiB
// message raised the RSS by 46-52 MiB, all of it dead ArrayBuffers (docs/relay.md).
//
// The governor compares process.memoryUsage().arrayBuffers with the level after its last collection and runs a
// young-generation GC (a scavenge: about a millisecond) when it grew by more than limitBytes, so memory stays
// bounded by connections x buffers, not by message size. It checks at two moments: every intervalMs (any source of
// buffers), and every stepBytes of message bytes that the DATA phase reports through account(). The second is what
// bounds a fast stream: at 150+ MiB/s of intake a 50 ms timer alone let 15 MiB of garbage through between two ticks.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { safeDelay } from '../routing/timer.ts';

type GcFn = (opts?: { type?: 'minor' | 'major'; execution?: 'sync' | 'async' }) => void;

/** The gc() function, exposed at run time (no --expose-gc needed on the command line). */
function exposeGc(): GcFn | undefined {
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
  /** Reports message bytes just streamed; every stepBytes of them triggers a check. */
  account(bytes: number): void;
  stop(): void;
}

export interface BufferGovernorOptions {
  /** Growth of arrayBuffers since the last collection that triggers one (default 8 MiB). */
  limitBytes?: number;
  /** Timer period of the check (default 50 ms). */
  intervalMs?: number;
  /** Message bytes reported through account() between two checks (default 2 MiB). */
  stepBytes?: number;
  /** Injected for tests; default: the real gc(), exposed at run time. */
  gc?: GcFn;
  /** Injected for tests; default: process.memoryUsage().arrayBuffers. */
  arrayBuffers?: () => number;
}

export function startBufferGovernor(opts: BufferGovernorOptions = {}): BufferGovernor {
  const limit = opts.limitBytes ?? 8 * 1024 * 1024;
  const step = opts.stepBytes ?? 2 * 1024 * 1024;
  const gc = opts.gc ?? exposeGc();
  const arrayBuffers = opts.arrayBuffers ?? (() => process.memoryUsage().arrayBuffers);
  let floor = arrayBuffers();
  let collections = 0;
  let streamed = 0;
  const check = (): void => {
    if (!gc) return;
    const now = arrayBuffers();
    if (now < floor) floor = now;
    if (now - floor <= limit) return;
    gc({ type: 'minor' });
    collections++;
    let after = arrayBuffers();
    if (after - floor > limit) {
      // survivors were promoted: a full collection
      gc({ type: 'major' });
      after = arrayBuffers();
    }
    floor = after;
  };
  const timer = setInterval(check, safeDelay(opts.intervalMs ?? 50));
  timer.unref();
  return {
    get collections() {
      return collections;
    },
    account(bytes: number) {
      streamed += bytes;
      if (streamed < step) return;
      streamed = 0;
      check();
    },
    stop: () => clearInterval(timer),
  };
}
