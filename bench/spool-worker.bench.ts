// Would one hand-off to a worker thread per message file cost the main thread less than the five fs/promises calls
// the spool makes (open, writev, fsync, fchmod, close)? docs/perf.md, "Tried and not kept". Each side writes N files
// of 4 KiB, 20 at a time, under TMPDIR, and removes each again; the worker does the same five calls synchronously.
//   node bench/spool-worker.bench.ts [files]       (TMPDIR on the file system to measure)
import { mkdtempSync, rmSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';

const N = Number(process.argv[2] ?? 5000);
const CONCURRENCY = 20;
const body = Buffer.alloc(4096, 0x78);

const WORKER = `
const { parentPort } = require('node:worker_threads');
const fs = require('node:fs');
parentPort.on('message', (m) => {
  try {
    const fd = fs.openSync(m.path, 'wx', 0o700);
    fs.writevSync(fd, [m.body]);
    fs.fsyncSync(fd);
    fs.fchmodSync(fd, 0o600);
    fs.closeSync(fd);
    parentPort.postMessage({ id: m.id });
  } catch (err) {
    parentPort.postMessage({ id: m.id, error: String(err) });
  }
});`;

async function viaPromises(path: string): Promise<void> {
  const fh = await fsp.open(path, 'wx', 0o700);
  await fh.writev([body]);
  await fh.sync();
  await fh.chmod(0o600);
  await fh.close();
}

function viaWorker(): { write: (path: string) => Promise<void>; stop: () => Promise<number> } {
  const worker = new Worker(WORKER, { eval: true });
  const pending = new Map<number, { resolve: () => void; reject: (e: Error) => void }>();
  let next = 0;
  worker.on('message', (m: { id: number; error?: string }) => {
    const p = pending.get(m.id);
    pending.delete(m.id);
    if (m.error === undefined) p?.resolve();
    else p?.reject(new Error(m.error));
  });
  return {
    write: (path) =>
      new Promise((resolve, reject) => {
        const id = next++;
        pending.set(id, { resolve, reject });
        worker.postMessage({ id, path, body });
      }),
    stop: () => worker.terminate(),
  };
}

async function measure(name: string, write: (path: string) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'mailroute-spool-worker-'));
  try {
    const elu0 = performance.eventLoopUtilization();
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    let i = 0;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (i < N) {
          const path = join(dir, `${String(i++)}.msg`);
          await write(path);
          await fsp.unlink(path);
        }
      }),
    );
    const wall = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    const elu = performance.eventLoopUtilization(elu0);
    console.log(
      `${name}: ${((N / wall) * 1000).toFixed(0)} files/s, process CPU ${((cpu.user + cpu.system) / N).toFixed(0)} µs/file, main thread busy ${((elu.active * 1000) / N).toFixed(0)} µs/file`,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

for (let round = 1; round <= 2; round++) {
  await measure(`round ${String(round)} fs/promises`, viaPromises);
  const w = viaWorker();
  await measure(`round ${String(round)} worker thread`, w.write);
  await w.stop();
}
