// A relay restarted on a long outage's queue: N dual messages whose primary leg was delivered and whose copy waits
// for a retry an hour away. How long until the engine has looked at all of them, and how long a new message (to a
// server that works) waits meanwhile.
//
//   npm run bench:queue-restart -- [N=100000]
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import pino from 'pino';
import { startDelivery } from '../relay/delivery/engine.ts';
import { openSpool } from '../relay/spool/spool.ts';
import {
  deliveryOptions,
  waitingOnCopy,
  envelope,
  localServer,
  writeQueuedDualMessages,
} from '../test/support/delivery.ts';
import { freePort } from '../test/support/net.ts';
import { startSmtpPeer } from '../test/support/smtp-peer.ts';

const n = Number(process.argv[2] ?? 100_000);
const logger = pino({ level: 'warn' });
const dir = await mkdtemp(join(tmpdir(), 'mailroute-queue-restart-'));
const sink = await startSmtpPeer('sink');
const sinkPort = sink.port;
try {
  await writeQueuedDualMessages(dir, n, [await freePort(), await freePort()], {
    state: waitingOnCopy(new Date(Date.now() + 3_600_000)),
  });
  const t0 = performance.now();
  const spool = await openSpool({ dir, logger });
  let newDeliveredAt = 0;
  let newId = '';
  const engine = startDelivery(
    deliveryOptions(spool, {
      logger,
      hostname: 'bench.test',
      retryScheduleMs: [3_600_000],
      onLegFinal: (f) => {
        if (f.queueId === newId) newDeliveredAt = performance.now();
      },
    }),
  );
  await engine.ready;
  const readyAt = performance.now();
  // A new message accepted right after the start-up scan.
  const r = 'new@example.com';
  const accepted = await spool.accept(
    envelope([
      {
        recipient: r,
        legs: [{ server: localServer('sink', sinkPort), recipient: r, role: 'primary', bounces: 'Notify' }],
      },
    ]),
    Readable.from([Buffer.from('Subject: new\r\n\r\nhello\r\n')]),
  );
  if (!accepted.ok) throw accepted.error;
  newId = accepted.id;
  const acceptedAt = performance.now();
  engine.notify(newId);
  while ((engine.stats().deferred < n || newDeliveredAt === 0) && performance.now() - t0 < 900_000)
    await new Promise((res) => setTimeout(res, 50));
  const allAt = performance.now();
  await engine.stop();
  console.log(
    JSON.stringify({
      queued: n,
      readyMs: Math.round(readyAt - t0),
      allLookedAtMs: Math.round(allAt - t0),
      newMessageDeliveredAfterMs: newDeliveredAt === 0 ? null : Math.round(newDeliveredAt - acceptedAt),
    }),
  );
} finally {
  await sink.close();
  await rm(dir, { recursive: true, force: true });
}
