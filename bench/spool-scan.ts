// How long the spool takes to come back with N queued messages (docs/design.md §8: 100,000 must stay fast).
// usage: node bench/spool-scan.ts [N=100000]
// Writes N messages (4 KiB body + state file, as accept() leaves them, without fsync to save time), then measures
// openSpool() (the start-up scan: directory listing only), list(), and reading every state file with the engine's
// load concurrency (64), which the engine does in the background after it is ready.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { encodeMessageFile, messageFile } from '../relay/spool/format.ts';
import { initialState, newQueueIdGenerator, openSpool } from '../relay/spool/spool.ts';
import { dualEnvelope } from '../test/support/delivery.ts';

const n = Number(process.argv[2] ?? 100_000);
const dir = await mkdtemp(join(tmpdir(), 'mailroute-scan-'));
const logger = pino({ level: 'silent' });
const meta = dualEnvelope();
const body = Buffer.alloc(4096, 'x');
try {
  const first = await openSpool({ dir, logger });
  const gen = newQueueIdGenerator(() => new Date());
  const q = join(dir, 'queue');
  const t0 = Date.now();
  for (let i = 0; i < n; i += 500) {
    await Promise.all(
      Array.from({ length: Math.min(500, n - i) }, async () => {
        const id = gen();
        await writeFile(
          join(q, messageFile(id)),
          encodeMessageFile(body, initialState(id, meta, body.length)),
        );
      }),
    );
  }
  const writeMs = Date.now() - t0;
  void first;

  const t1 = performance.now();
  const spool = await openSpool({ dir, logger });
  const openMs = performance.now() - t1;
  const t2 = performance.now();
  const ids = await spool.list();
  const listMs = performance.now() - t2;
  const t3 = performance.now();
  let next = 0;
  let ok = 0;
  await Promise.all(
    Array.from({ length: 64 }, async () => {
      while (next < ids.length) {
        const id = ids[next++]!;
        const r = await spool.load(id);
        if (r.ok) ok++;
      }
    }),
  );
  const loadMs = performance.now() - t3;
  const result = {
    messages: n,
    found: spool.recovery.messages,
    openSpoolMs: Math.round(openMs),
    listMs: Math.round(listMs),
    loadAllStatesMs: Math.round(loadMs),
    loaded: ok,
    rssMiB: Math.round(process.memoryUsage().rss / 1048576),
    setupWriteMs: writeMs,
    cpus: cpus().length,
    node: process.version,
  };
  process.stdout.write(JSON.stringify(result, null, 2) + '\n');
} finally {
  await rm(dir, { recursive: true, force: true });
}
