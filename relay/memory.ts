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
//
// The limit is tight (8 MiB) only while a large message streams, and for a second after its last chunk: that is what
// the RSS bound is about. Otherwise it is 16 MiB: under a load of many medium messages (20 sessions of 100 KiB) the
// 8 MiB limit sat just below the level that V8's own scavenges keep, and forced 64 scavenges of about 5.5 ms and 10
// full collections per 3,000 messages (about 4 % of the relay's CPU there); at 16 MiB, 2 and 2 (docs/perf.md).
// A full collection is forced only under the tight limit. Under the relaxed one the buffers a scavenge leaves are
// old-generation garbage of small messages (bodies the spool holds for a second or more), which V8's own incremental
// marking collects: forcing it stopped the relay for 14-21 ms about once a second at 1,800 small messages a second
// (docs/perf.md, "No forced full collection without a large message").
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
  /**
   * Reports message bytes just streamed, and how many bytes that message has streamed so far (with them); every
   * stepBytes of them triggers a check. A message past largeMessageBytes makes the limit the tight one.
   */
  account(bytes: number, messageBytes: number): void;
  stop(): void;
}

export interface BufferGovernorOptions {
  /** Growth of arrayBuffers since the last collection that triggers one while a large message streams (default 8 MiB). */
  limitBytes?: number;
  /** The same when no large message has streamed for strictForMs (default 16 MiB). */
  relaxedLimitBytes?: number;
  /** A message that has streamed this many bytes is a large one (default 1 MiB). */
  largeMessageBytes?: number;
  /** How long after a large message's last chunk the tight limit stays (default 1 s). */
  strictForMs?: number;
  /** Injected for tests; default performance.now(). */
  now?: () => number;
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
  const relaxed = Math.max(limit, opts.relaxedLimitBytes ?? 16 * 1024 * 1024);
  const large = opts.largeMessageBytes ?? 1024 * 1024;
  const strictFor = opts.strictForMs ?? 1000;
  const now = opts.now ?? (() => performance.now());
  let strictUntil = -Infinity;
  const step = opts.stepBytes ?? 2 * 1024 * 1024;
  const gc = opts.gc ?? exposeGc();
  const read = opts.arrayBuffers ?? (() => process.memoryUsage().arrayBuffers);
  // process.memoryUsage() reads the RSS too, from a /proc file it opens on every call: with every file descriptor in
  // use (a connection flood under a low limit) it throws EMFILE, which from the timer would end the process. A level
  // that cannot be read skips that check.
  const arrayBuffers = (): number | undefined => {
    try {
      return read();
    } catch {
      return undefined;
    }
  };
  let floor = arrayBuffers() ?? Number.POSITIVE_INFINITY; // the first level read sets it
  let collections = 0;
  let streamed = 0;
  const check = (): void => {
    if (!gc) return;
    const level = arrayBuffers();
    if (level === undefined) return;
    if (level < floor) floor = level;
    const strict = now() < strictUntil;
    const allowed = strict ? limit : relaxed;
    if (level - floor <= allowed) return;
    gc({ type: 'minor' });
    collections++;
    let after = arrayBuffers() ?? floor;
    if (strict && after - floor > allowed) {
      // survivors were promoted while a large message streams: a full collection
      gc({ type: 'major' });
      after = arrayBuffers() ?? floor;
    }
    floor = after;
  };
  const timer = setInterval(check, safeDelay(opts.intervalMs ?? 50));
  timer.unref();
  return {
    get collections() {
      return collections;
    },
    account(bytes: number, messageBytes: number) {
      if (messageBytes >= large) strictUntil = now() + strictFor;
      streamed += bytes;
      if (streamed < step) return;
      streamed = 0;
      check();
    },
    stop: () => clearInterval(timer),
  };
}
