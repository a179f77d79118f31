// A relay restarting on a full spool: N queued dual messages (4 KiB) delivered into two Postfix smtp-sink processes.
// Reports the time until the engine is ready (spool scanned), until the queue is drained, and the peak RSS growth.
// usage: node bench/recovery-drain.ts [N=20000]
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { hostFacts, startSinks } from './sinks.ts';
import { startDelivery } from '../relay/delivery/engine.ts';
import { openSpool } from '../relay/spool/spool.ts';
import { deliveryOptions, writeQueuedDualMessages } from '../test/support/delivery.ts';
import { freePort } from '../test/support/net.ts';

const n = Number(process.argv[2] ?? 20_000);
const dir = await mkdtemp(join(tmpdir(), 'mailroute-recovery-'));
await chmod(dir, 0o755);
const ports = [await freePort(), await freePort()];
const sinks = await startSinks(ports);
const logger = pino({ level: 'warn' });
try {
  await writeQueuedDualMessages(dir, n, [ports[0]!, ports[1]!], { subject: 'recovery' });
  global.gc?.();
  const base = process.memoryUsage().rss;
  const t0 = performance.now();
  const spool = await openSpool({ dir, logger });
  const engine = startDelivery(deliveryOptions(spool, { logger, hostname: 'bench.test' }));
  await engine.ready;
  const readyMs = performance.now() - t0;
  let peak = base;
  let peakJobs = 0;
  while (engine.stats().messages > 0) {
    peak = Math.max(peak, process.memoryUsage().rss);
    peakJobs = Math.max(peakJobs, engine.stats().jobs);
    await new Promise((r) => setTimeout(r, 50));
  }
  const drainMs = performance.now() - t0;
  await engine.stop();
  process.stdout.write(
    JSON.stringify(
      {
        messages: n,
        readyMs: Math.round(readyMs),
        drainMs: Math.round(drainMs),
        messagesPerSec: Math.round(n / (drainMs / 1000)),
        rssGrowthMiB: Math.round((peak - base) / 1048576),
        peakJobs,
        ...hostFacts(),
      },
      null,
      2,
    ) + '\n',
  );
} finally {
  sinks.stop();
  await rm(dir, { recursive: true, force: true });
}
