// Preload that counts the promises a process makes: node --import=/abs/path/bench/relay/promise-count.ts ... counts
// every promise V8 creates (v8.promiseHooks.onInit) from start to exit, samples the stack of one in
// PROMISE_SAMPLE_EVERY (default 31), and at exit writes PROMISE_COUNT_DIR/promises-PID.json (default: the temp folder)
// with the count and the sampled promises by the nearest frame of the project's own code. With the benchmark:
//   npm run bench:relay -- --quick --systems mailroute --workloads direct-4k --messages 8000 --no-write \
//     --node-arg=--import=$PWD/bench/relay/promise-count.ts
// then divide `count` by the messages of the run (docs/perf.md "Fewer promises per message").
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promiseHooks } from 'node:v8';
import { isOwnUrl, ownerOf } from './cpuprofile.ts';

/**
 * The nearest frame of the project's own code in a V8 stack (`relay/...:LINE`, as the CPU profile summary names files:
 * cpuprofile.ts ownerOf, isOwnUrl), or `other` when there is none.
 */
export function ownFrame(stack: string): string {
  for (const line of stack.split('\n').slice(1)) {
    const m = /\(?((?:file:\/\/)?\/[^\s()]+?):(\d+):\d+\)?$/.exec(line.trim());
    const url = m?.[1];
    // the benchmark's own files (this hook among them) are not what is measured
    if (url !== undefined && isOwnUrl(url) && !url.includes('/bench/'))
      return `${ownerOf(url)}:${m?.[2] ?? ''}`;
  }
  return 'other';
}

/** The sampled frames, most promises first, each scaled back to an estimate of all promises made there. */
export function summarize(
  samples: ReadonlyMap<string, number>,
  every: number,
): { frame: string; promises: number }[] {
  return [...samples]
    .map(([frame, n]) => ({ frame, promises: n * every }))
    .sort((a, b) => b.promises - a.promises || a.frame.localeCompare(b.frame));
}

// only when preloaded (--import), not when a test imports the functions above
if (process.execArgv.some((a) => a.includes('promise-count'))) {
  const every = Math.max(1, Number(process.env['PROMISE_SAMPLE_EVERY'] ?? 31) || 31);
  const samples = new Map<string, number>();
  let count = 0;
  promiseHooks.onInit(() => {
    count++;
    if (count % every !== 0) return;
    const frame = ownFrame(new Error().stack ?? '');
    samples.set(frame, (samples.get(frame) ?? 0) + 1);
  });
  process.on('exit', () => {
    const file = join(process.env['PROMISE_COUNT_DIR'] ?? tmpdir(), `promises-${process.pid}.json`);
    try {
      writeFileSync(file, JSON.stringify({ count, sampleEvery: every, byFrame: summarize(samples, every) }));
    } catch (e) {
      // the process is ending: say why there is no count, and leave its exit code alone
      process.stderr.write(
        `promise-count: nothing written to ${file}: ${e instanceof Error ? e.message : String(e)}\n`,
      );
    }
  });
}
