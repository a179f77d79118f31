// The back half of the relay alone: spool.accept() (fsync, group commit) + the delivery engine, dual legs into two
// Postfix smtp-sink processes. No inbound SMTP. Shows what the spool and the engine cost per message.
// usage: node bench/delivery.ts [MESSAGES=5000] [CONCURRENCY=20] [SIZE=4096]
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import pino from 'pino';
import { hostFacts, startSinks } from './sinks.ts';
import { Registry } from 'prom-client';
import { startDelivery } from '../relay/delivery/engine.ts';
import { openSpool } from '../relay/spool/spool.ts';
import type { EnvelopeMeta } from '../relay/spool/types.ts';
import { createRelayMetrics } from '../relay/telemetry/metrics.ts';
import { deliveryOptions, envelope, localServer } from '../test/support/delivery.ts';
import { freePort } from '../test/support/net.ts';

const total = Number(process.argv[2] ?? 5000);
const concurrency = Number(process.argv[3] ?? 20);
const size = Number(process.argv[4] ?? 4096);

const dir = await mkdtemp(join(tmpdir(), 'mailroute-bench-delivery-'));
await chmod(dir, 0o755);
const sinkPorts = [await freePort(), await freePort()];
const sinks = await startSinks(sinkPorts);
const logger = pino({ level: 'warn' });
const metrics = createRelayMetrics(new Registry(), false);
try {
  const spool = await openSpool({ dir, logger });
  const engine = startDelivery(deliveryOptions(spool, { logger, hostname: 'bench.test', metrics }));
  const body = Buffer.concat([
    Buffer.from('Subject: bench\r\n\r\n'),
    Buffer.alloc(size, 'x'),
    Buffer.from('\r\n'),
  ]);
  const meta = (i: number): EnvelopeMeta =>
    envelope(
      [
        {
          recipient: `u${i}@example.com`,
          legs: [
            {
              server: localServer('old', sinkPorts[0]!),
              recipient: `u${i}@example.com`,
              role: 'primary',
              bounces: 'Notify',
            },
            {
              server: localServer('new', sinkPorts[1]!),
              recipient: `u${i}@copy.example`,
              role: 'copy',
              bounces: 'Suppress',
            },
          ],
        },
      ],
      { mailFrom: 'bench@sender.example' },
    );
  const acceptMs: number[] = [];
  const t0 = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < total) {
        const i = next++;
        const t = performance.now();
        const r = await spool.accept(meta(i), Readable.from([body]));
        acceptMs.push(performance.now() - t);
        if (!r.ok) throw r.error;
        engine.notify(r.id);
      }
    }),
  );
  const acceptedAt = performance.now();
  const cpu0 = process.cpuUsage();
  for (;;) {
    const s = engine.stats();
    if (s.messages === 0) break;
    await new Promise((r) => setTimeout(r, 10));
  }
  const doneAt = performance.now();
  const delivered = (await metrics.deliveries.get()).values
    .filter((v) => v.labels.result === 'delivered')
    .reduce((a, v) => a + v.value, 0);
  acceptMs.sort((a, b) => a - b);
  const cpu = process.cpuUsage();
  await engine.stop();
  process.stdout.write(
    JSON.stringify(
      {
        messages: total,
        concurrency,
        bodyBytes: body.length,
        legsDelivered: delivered,
        acceptPerSec: Math.round(total / ((acceptedAt - t0) / 1000)),
        acceptP50Ms: Number(acceptMs[Math.floor(acceptMs.length * 0.5)]?.toFixed(2)),
        acceptP99Ms: Number(acceptMs[Math.floor(acceptMs.length * 0.99)]?.toFixed(2)),
        endToEndPerSec: Math.round(total / ((doneAt - t0) / 1000)),
        drainAfterAcceptMs: Math.round(doneAt - acceptedAt),
        cpuMsPerMessage: Number(((cpu.user + cpu.system) / 1000 / total).toFixed(3)),
        cpuAfterAcceptMs: Math.round((cpu.user + cpu.system - cpu0.user - cpu0.system) / 1000),
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
