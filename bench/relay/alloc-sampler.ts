// Preload for allocation profiles: node --import=/abs/path/bench/relay/alloc-sampler.ts ... samples every allocation
// (V8's sampling heap profiler, one sample per 8 KiB on average, objects the collectors freed included) from start to
// exit, and writes ALLOC_PROFILE_DIR/alloc-PID.json (default: the temp folder) when the process exits. Summarize it
// with node bench/relay/allocprofile.ts FILE. With the benchmark:
//   npm run bench:relay -- --quick --systems mailroute --workloads dual-4k --no-write \
//     --node-arg=--import=$PWD/bench/relay/alloc-sampler.ts
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const session = new Session();
session.connect();
session.post('HeapProfiler.enable');
session.post('HeapProfiler.startSampling', {
  samplingInterval: 8192,
  includeObjectsCollectedByMajorGC: true,
  includeObjectsCollectedByMinorGC: true,
});
process.on('exit', () => {
  // A session in the same thread answers at once, so the profile is written before the process ends.
  session.post('HeapProfiler.stopSampling', (err, r) => {
    const file = join(process.env['ALLOC_PROFILE_DIR'] ?? tmpdir(), `alloc-${process.pid}.json`);
    try {
      if (err !== null) throw err;
      writeFileSync(file, JSON.stringify(r.profile));
    } catch (e) {
      // the process is ending: say why there is no profile, and leave its exit code alone
      process.stderr.write(
        `alloc-sampler: no profile in ${file}: ${e instanceof Error ? e.message : String(e)}\n`,
      );
    }
  });
});
