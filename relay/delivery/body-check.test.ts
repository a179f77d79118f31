// A large message's body checked against the CRC-32 its initial state recorded, where a delivery attempt reads the
// body: a power cut before the accept's fsync can keep the file's size and last blocks (state and footer) while
// earlier body blocks read back as zeros (ext4 delayed allocation, XFS). Such a file has a valid footer, so the start
// lists it and loads its state without reading the body; it must never be sent. Real spool files in a temp dir, the
// engine's transport seam (no sockets), real timers.
import { chmod, mkdir, mkdtemp, open, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { fakeResolver } from '../../test/support/engine-harness.ts';
import { deliveryOptions, spoolEnvelope } from '../../test/support/delivery.ts';
import { bigBody, chunksOf, trailerState } from '../../test/support/large-body.ts';
import { withDeadline } from '../../test/support/wait.ts';
import { encodeMessageFile } from '../spool/format.ts';
import { initialState, openSpool } from '../spool/spool.ts';
import type { Spool } from '../spool/types.ts';
import { startDelivery } from './engine.ts';
import { readSource, type TransportFactory } from './transport.ts';

const logger = pino({ level: 'silent' });

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mailroute-body-check-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const msgPath = (id: string): string => join(dir, 'queue', `${id}.msg`);

/** What a power cut before the accept's fsync can leave: mode 0700, size and footer kept, a body range read as zeros. */
async function zeroRange(id: string, from: number, length: number): Promise<void> {
  const path = msgPath(id);
  const before = await stat(path);
  const fh = await open(path, 'r+');
  try {
    await fh.write(Buffer.alloc(length), 0, length, from);
  } finally {
    await fh.close();
  }
  await chmod(path, 0o700);
  expect((await stat(path)).size).toBe(before.size);
}

/** Accepts body into a spool that is then closed (the mark set, the file held open released): the next start finds it. */
async function acceptAndClose(body: Buffer): Promise<string> {
  const first = await openSpool({ dir, logger });
  const r = await first.accept(spoolEnvelope(), chunksOf(body));
  if (!r.ok) throw r.error;
  await first.close();
  return r.id;
}

interface Delivered {
  to: string[];
  body: Buffer;
}

/**
 * Starts a spool and an engine on dir, with a transport that reads each body it is given (as the SMTP client does) and
 * answers 250; resolves once the engine let go of `id` (delivered and removed, or quarantined), with what was sent.
 */
async function deliverOnce(
  id: string,
  spool?: Spool,
  log: pino.Logger = logger,
): Promise<{ sent: Delivered[]; spool: Spool }> {
  const s = spool ?? (await openSpool({ dir, logger }));
  const sent: Delivered[] = [];
  const transport: TransportFactory = () => ({
    async send(req) {
      const parts: Buffer[] = [];
      for await (const c of readSource(req.raw)) parts.push(c as Buffer);
      sent.push({ to: req.to, body: Buffer.concat(parts) });
      return new Map(req.to.map((r) => [r, { kind: 'smtp', code: 250, text: '250 2.0.0 ok' }]));
    },
    close: () => undefined,
  });
  let gone!: () => void;
  const left = new Promise<void>((resolve) => (gone = resolve));
  const engine = startDelivery(
    deliveryOptions(s, {
      logger: log,
      transport,
      resolver: fakeResolver,
      onMessageGone: (g) => {
        if (g === id) gone();
      },
    }),
  );
  try {
    await withDeadline(10_000, left, `the engine letting go of ${id}`);
  } finally {
    await engine.stop();
  }
  await s.close();
  return { sent, spool: s };
}

/** Error-level log lines as objects. */
function errorLog(): { logger: pino.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const stream = { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) };
  return { logger: pino({ level: 'error' }, stream), lines };
}

const zeros = (b: Buffer): number => b.reduce((n, x) => n + (x === 0 ? 1 : 0), 0);

describe('a large message body checked against its recorded CRC-32 where delivery reads it', () => {
  it('a file a power cut left with a zeroed body range (mode 0700, size and footer kept) is quarantined, never sent', async () => {
    const body = bigBody(600);
    const id = await acceptAndClose(body);
    await zeroRange(id, 200 * 1024, 130 * 1024);

    // the start does not read bodies: the message is listed and its state loads as a complete one's
    const { logger: log, lines } = errorLog();
    const spool = await openSpool({ dir, logger: log });
    expect(await spool.list()).toEqual([id]);
    await expect(spool.load(id)).resolves.toMatchObject({ ok: true });

    const { sent } = await deliverOnce(id, spool, log);
    expect(sent.map((s) => ({ to: s.to, bytes: s.body.length, zeros: zeros(s.body) }))).toEqual([]);
    expect(await readdir(join(dir, 'queue'))).toEqual([]);
    const q = await readdir(join(dir, 'quarantine'));
    expect(q.some((n) => n.startsWith(`${id}.msg.`))).toBe(true);
    // logged at error level with the reason, by the spool and by the engine, once each
    const spoolLines = lines.filter((l) => l.msg === 'spool: quarantined');
    expect(spoolLines.map((l) => l.queueId)).toEqual([id]);
    expect(String(spoolLines[0]?.reason)).toMatch(
      /^message file: the body's CRC-32 is [0-9a-f]{8}, its initial state recorded [0-9a-f]{8} \(mode 0700: /,
    );
    expect(lines.filter((l) => l.msg === 'delivery: message quarantined').map((l) => l.queueId)).toEqual([
      id,
    ]);
  });

  it('an intact large message records the CRC-32 of its body and, after a restart, is delivered byte for byte', async () => {
    const body = bigBody(600);
    const id = await acceptAndClose(body);
    const st = await trailerState(msgPath(id));
    expect(st.size).toBe(body.length);
    expect(st.bodyCrc32).toBe(crc32(body));

    const { sent } = await deliverOnce(id);
    expect(sent.length).toBe(2); // the primary leg and its copy
    for (const s of sent) expect(s.body.equals(body)).toBe(true);
    expect(await readdir(join(dir, 'queue'))).toEqual([]);
    expect(await readdir(join(dir, 'quarantine'))).toEqual([]);
  });

  it('a message file of an earlier version (no bodyCrc32 in its state) is delivered as before, unchecked', async () => {
    const body = bigBody(300);
    const id = '00mr0ld000000abc';
    const state = initialState(id, spoolEnvelope(), body.length);
    expect(Object.keys(state)).not.toContain('bodyCrc32');
    await mkdir(join(dir, 'queue'), { recursive: true });
    await writeFile(msgPath(id), encodeMessageFile(body, state), { mode: 0o600 });
    const spool = await openSpool({ dir, logger });
    // the check where delivery reads the body finds no CRC to compare with: the message stays, as it did before
    await expect(spool.checkBody(id)).resolves.toEqual({ ok: true });
    expect(await readdir(join(dir, 'queue'))).toEqual([`${id}.msg`]);
    const { sent } = await deliverOnce(id, spool);
    expect(sent.length).toBe(2);
    for (const s of sent) expect(s.body.equals(body)).toBe(true);
    expect(await readdir(join(dir, 'quarantine'))).toEqual([]);
  });
});
