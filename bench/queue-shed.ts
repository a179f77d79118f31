// How fast a relay low on spool space frees it by shedding copies (relay/delivery/shed.ts): N dual messages whose
// primary leg was delivered and whose copy waits for a retry an hour away, then one shed pass over all of them
// (enough() never says there is room). Reports messages shed a second and the bytes of spool freed a second.
//
//   TMPDIR=/mnt/bench-ext4 npm run bench:queue-shed -- [N=20000]
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { startDelivery } from '../relay/delivery/engine.ts';
import { spoolSpace } from '../relay/delivery/shed.ts';
import { openSpool } from '../relay/spool/spool.ts';
import { deliveryOptions, waitingOnCopy, writeQueuedDualMessages } from '../test/support/delivery.ts';
import { freePort } from '../test/support/net.ts';

const n = Number(process.argv[2] ?? 20_000);
const logger = pino({ level: 'error' });
const dir = await mkdtemp(join(tmpdir(), 'mailroute-queue-shed-'));
const free = async (): Promise<number> => (await spoolSpace(dir)).free;
try {
  await writeQueuedDualMessages(dir, n, [await freePort(), await freePort()], {
    state: waitingOnCopy(new Date(Date.now() + 3_600_000)),
  });
  const spool = await openSpool({ dir, logger });
  const engine = startDelivery(
    deliveryOptions(spool, { logger, hostname: 'bench.test', retryScheduleMs: [3_600_000] }),
  );
  await engine.ready;
  while (engine.stats().deferred < n) await new Promise((r) => setTimeout(r, 50));
  const before = await free();
  const t0 = performance.now();
  const r = await engine.shedCopies(() => Promise.resolve(false), 'shed: bench');
  const seconds = (performance.now() - t0) / 1000;
  const freed = (await free()) - before;
  await engine.stop();
  console.log(
    JSON.stringify({
      queued: n,
      shed: r.messages,
      seconds: Math.round(seconds * 10) / 10,
      messagesPerSecond: Math.round(r.messages / seconds),
      freedMiBPerSecond: Math.round((freed / 1048576 / seconds) * 10) / 10,
      left: (await spool.list()).length,
    }),
  );
} finally {
  await rm(dir, { recursive: true, force: true });
}
