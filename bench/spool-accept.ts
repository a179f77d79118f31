// The spool's accept latency alone: from the end of a message's body to accept() resolving (the message and its
// plan on disk: the file fsync and the directory fsync of its entry), with N sessions accepting at once, as the
// relay's SMTP sessions do. Each accepted message is removed again (as delivery would), so the queue folder stays
// small.
// usage: node bench/spool-accept.ts [--sessions 20] [--messages 4000] [--size 4096] [--dir DIR]
// Prints one JSON line: p50/p90/p99 ms, messages per second.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { openSpool } from '../relay/spool/spool.ts';
import { dualEnvelope } from '../test/support/delivery.ts';

const { values: v } = parseArgs({
  options: {
    sessions: { type: 'string', default: '20' },
    messages: { type: 'string', default: '4000' },
    size: { type: 'string', default: '4096' },
    dir: { type: 'string' },
  },
});
const sessions = Number(v.sessions);
const messages = Number(v.messages);
const body = Buffer.alloc(Number(v.size), 'x');
const dir = await mkdtemp(join(v.dir ?? tmpdir(), 'mailroute-accept-'));
const meta = dualEnvelope('sink', 'copy');

try {
  const spool = await openSpool({ dir, logger: pino({ level: 'silent' }) });
  const samples: number[] = [];
  let next = 0;
  const t0 = performance.now();
  const session = async (): Promise<void> => {
    while (next < messages) {
      next++;
      const stream = new PassThrough();
      stream.write(body);
      // the body's end arrives a moment after its bytes, as the end-of-data line does
      const done = new Promise<number>((resolve) =>
        setImmediate(() => {
          const start = performance.now();
          stream.end();
          resolve(start);
        }),
      );
      const r = await spool.accept(meta, stream);
      const ms = performance.now() - (await done);
      if (!r.ok) throw r.error;
      samples.push(ms);
      await spool.remove(r.id);
    }
  };
  await Promise.all(Array.from({ length: sessions }, session));
  const wallS = (performance.now() - t0) / 1000;
  samples.sort((a, b) => a - b);
  const q = (p: number): number =>
    Number((samples[Math.min(samples.length - 1, Math.floor(p * samples.length))] ?? 0).toFixed(2));
  console.log(
    JSON.stringify({
      sessions,
      messages,
      size: body.length,
      p50: q(0.5),
      p90: q(0.9),
      p99: q(0.99),
      perSecond: Math.round(messages / wallS),
    }),
  );
} finally {
  await rm(dir, { recursive: true, force: true });
}
