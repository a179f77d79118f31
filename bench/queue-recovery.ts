// A long outage ends: N dual messages (4 KiB) were queued while both servers refused every connection, so each was
// tried once and waits an hour for its next try (--retry-schedule 1h). Then both servers come back (two Postfix
// smtp-sink processes on their ports) and one new message arrives: its delivery is the first answer from them, and it
// wakes the queue (relay/delivery/recovery.ts). Reports the time from that message to every leg delivered and the
// peak RSS growth meanwhile. Without the wake the queue would wait for its hour.
//
//   node bench/queue-recovery.ts [N=20000]
//
// The suspension of a destination that refused a connection is 1 s here (destinationBackoffMs), so that the new
// message is not held by it; with the defaults the first connection after a recovery is at most 60 s after the last
// refused one, whenever mail for the server comes.
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import pino from 'pino';
import { hostFacts, startSinks } from './sinks.ts';
import { startDelivery } from '../relay/delivery/engine.ts';
import { openSpool } from '../relay/spool/spool.ts';
import { deliveryOptions, envelope, localServer, writeQueuedDualMessages } from '../test/support/delivery.ts';
import { copyLeg, primaryLeg } from '../test/support/engine-harness.ts';
import { freePort } from '../test/support/net.ts';

const n = Number(process.argv[2] ?? 20_000);
const dir = await mkdtemp(join(tmpdir(), 'mailroute-queue-recovery-'));
await chmod(dir, 0o755);
const ports = [await freePort(), await freePort()] as const;
const logger = pino({ level: 'warn' });
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
let sinks: { stop(): void } | undefined;
try {
  await writeQueuedDualMessages(dir, n, ports, { subject: 'outage' });
  const spool = await openSpool({ dir, logger });
  const engine = startDelivery(
    deliveryOptions(spool, {
      logger,
      hostname: 'bench.test',
      retryScheduleMs: [3_600_000],
      destinationBackoffMs: 1_000,
    }),
  );
  await engine.ready;
  const t0 = performance.now();
  while (engine.stats().deferred < n && performance.now() - t0 < 600_000) await sleep(100);
  const deferSeconds = (performance.now() - t0) / 1000;

  // the servers come back
  sinks = await startSinks(ports);
  // the 1 s suspension since the last refused connection is over (bench only: with it the new message is deferred)
  await sleep(1_000);
  global.gc?.();
  const base = process.memoryUsage().rss;
  const before = engine.stats();
  // one new message for the same two servers
  const to = 'fresh@q.test';
  const accepted = await spool.accept(
    envelope([
      {
        recipient: to,
        legs: [
          // the same two servers as the queued legs (the same destinations)
          primaryLeg(to, localServer('old', ports[0])),
          copyLeg(to, localServer('new', ports[1])),
        ],
      },
    ]),
    Readable.from([Buffer.from('Subject: fresh\r\n\r\nafter the outage\r\n')]),
  );
  if (!accepted.ok) throw accepted.error;
  const t1 = performance.now();
  engine.notify(accepted.id);
  let peak = base;
  while (engine.stats().messages > 0 && performance.now() - t1 < 600_000) {
    peak = Math.max(peak, process.memoryUsage().rss);
    await sleep(50);
  }
  const drainMs = performance.now() - t1;
  const left = engine.stats().messages;
  await engine.stop();
  process.stdout.write(
    JSON.stringify(
      {
        messages: n,
        deferredBefore: before.deferred,
        secondsToDeferAll: Math.round(deferSeconds),
        left,
        drainMs: Math.round(drainMs),
        messagesPerSec: Math.round((n + 1) / (drainMs / 1000)),
        rssGrowthMiB: Math.round((peak - base) / 1048576),
        ...hostFacts(),
      },
      null,
      2,
    ) + '\n',
  );
} finally {
  sinks?.stop();
  await rm(dir, { recursive: true, force: true });
}
