// Memory per queued message: N dual messages (4 KiB) whose two servers refuse every connection, so that each is tried
// once and stays deferred. Reports the heap and RSS growth once all N are deferred, and the time to get there.
//
//   node --expose-gc bench/queue-memory.ts [N=20000]
//   node bench/queue-memory.ts --fill DIR N PORT1 PORT2   # only write such a spool into DIR (for a relay to start on)
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { startDelivery } from '../relay/delivery/engine.ts';
import { openSpool } from '../relay/spool/spool.ts';
import { deliveryOptions, writeQueuedDualMessages } from '../test/support/delivery.ts';
import { freePort } from '../test/support/net.ts';

const logger = pino({ level: 'warn' });

/** n queued dual messages for q.test (servers old and new, as a MailDomain for q.test names them) in dir's spool. */
const fill = (dir: string, n: number, ports: readonly [number, number]): Promise<void> =>
  writeQueuedDualMessages(dir, n, ports, { domain: 'q.test', legDomain: 'q.test' });

const args = process.argv.slice(2);
if (args[0] === '--fill') {
  const [, dir, n, p1, p2] = args;
  if (dir === undefined || [n, p1, p2].some((v) => !Number.isInteger(Number(v))))
    throw new Error('usage: --fill DIR N PORT1 PORT2');
  await fill(dir, Number(n), [Number(p1), Number(p2)]);
  console.log(`${n} queued messages in ${dir}`);
} else {
  const n = Number(args[0] ?? 20_000);
  const dir = await mkdtemp(join(tmpdir(), 'mailroute-queue-memory-'));
  try {
    // two free ports with nothing listening: every connection is refused
    await fill(dir, n, [await freePort(), await freePort()]);
    global.gc?.();
    const m0 = process.memoryUsage();
    const t0 = performance.now();
    const spool = await openSpool({ dir, logger });
    const engine = startDelivery(
      deliveryOptions(spool, { logger, hostname: 'bench.test', retryScheduleMs: [3_600_000] }),
    );
    await engine.ready;
    let peak = m0.rss;
    while (engine.stats().deferred < n && performance.now() - t0 < 600_000) {
      peak = Math.max(peak, process.memoryUsage().rss);
      await new Promise((r) => setTimeout(r, 100));
    }
    const seconds = (performance.now() - t0) / 1000;
    global.gc?.();
    const m1 = process.memoryUsage();
    await engine.stop();
    const MiB = (b: number): number => Math.round(b / 1048576);
    console.log(
      JSON.stringify({
        messages: n,
        deferred: engine.stats().deferred,
        secondsToDeferAll: Math.round(seconds),
        heapGrowthMiB: MiB(m1.heapUsed - m0.heapUsed),
        heapBytesPerMessage: Math.round((m1.heapUsed - m0.heapUsed) / n),
        rssGrowthMiB: MiB(m1.rss - m0.rss),
        peakRssGrowthMiB: MiB(peak - m0.rss),
        gcExposed: global.gc !== undefined,
      }),
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
