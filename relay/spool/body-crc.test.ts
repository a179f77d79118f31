// The body's CRC-32 in a message's initial state (spool.ts accept, checkBody): recorded for every message, on the
// path of a large body, of a small one through the accept log and of one written without it; compared once, where
// delivery first reads a body from a file found at start, never by the start itself; a malformed one is damage.
// Real files in a temp dir.
import { mkdir, mkdtemp, open, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { crc32 } from 'node:zlib';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { spoolEnvelope } from '../../test/support/delivery.ts';
import { bigBody, chunksOf, trailerState } from '../../test/support/large-body.ts';
import { withCalls } from '../../test/support/spool-fs.ts';
import { encodeMessageFile } from './format.ts';
import { defaultSpoolFs, initialState, openSpool, type SpoolFs } from './spool.ts';
import type { SpoolState } from './types.ts';

const logger = pino({ level: 'silent' });

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mailroute-body-crc-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const SMALL = Buffer.from('From: a@b.example\r\nSubject: small\r\n\r\nhello\r\n.. dotted\r\n');

const msgPath = (id: string): string => join(dir, 'queue', `${id}.msg`);

/** The real spool fs, counting the bytes read from message files (loads, checks, bodies; not the accept log's replay). */
function countingFs(): { fs: SpoolFs; read: () => number } {
  let bytes = 0;
  const fs: SpoolFs = {
    ...defaultSpoolFs,
    async openRead(p) {
      const fh = await defaultSpoolFs.openRead(p);
      if (!p.endsWith('.msg')) return fh;
      return withCalls(fh, {
        async read(b, o, l, pos) {
          const r = await fh.read(b, o, l, pos);
          bytes += r.bytesRead;
          return r;
        },
      });
    },
  };
  return { fs, read: () => bytes };
}

/** Error-level log lines as objects. */
function errorLog(): { logger: pino.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const stream = { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) };
  return { logger: pino({ level: 'error' }, stream), lines };
}

describe("the body's CRC-32 in the initial state", () => {
  it('is recorded for a large body, a small one through the accept log (the file its stop writes), and one written without the log', async () => {
    const big = bigBody(400);
    const spool = await openSpool({ dir, logger });
    const large = await spool.accept(spoolEnvelope(), chunksOf(big));
    const logged = await spool.accept(spoolEnvelope(), Readable.from([SMALL]));
    if (!large.ok || !logged.ok) throw new Error('not accepted');
    expect(await readdir(join(dir, 'queue'))).toEqual([`${large.id}.msg`]); // the small one is in the log alone
    await expect(spool.load(logged.id)).resolves.toMatchObject({
      ok: true,
      state: { bodyCrc32: crc32(SMALL) },
    });
    await spool.close(); // writes the file of the message the log holds alone
    const noLog = await openSpool({ dir, logger, acceptLog: false });
    const direct = await noLog.accept(spoolEnvelope(), Readable.from([SMALL]));
    if (!direct.ok) throw direct.error;
    await noLog.close();

    for (const [id, body] of [
      [large.id, big],
      [logged.id, SMALL],
      [direct.id, SMALL],
    ] as const) {
      const st = await trailerState(msgPath(id));
      expect({ id, size: st.size, bodyCrc32: st.bodyCrc32 }).toEqual({
        id,
        size: body.length,
        bodyCrc32: crc32(body),
      });
    }
  });

  it('the start reads no body; the first check of a file found at start reads it once (shared), one written since is never read', async () => {
    const big = bigBody(600);
    const first = await openSpool({ dir, logger });
    const r = await first.accept(spoolEnvelope(), chunksOf(big));
    if (!r.ok) throw r.error;
    await first.close();

    const { fs, read } = countingFs();
    const spool = await openSpool({ dir, logger, fs });
    expect(await spool.list()).toEqual([r.id]);
    await expect(spool.load(r.id)).resolves.toMatchObject({ ok: true });
    const atStart = read();
    expect(atStart).toBeLessThan(4096); // footer and state: the trailer alone

    // two legs tried together: one read of the body between them
    const both = await Promise.all([spool.checkBody(r.id), spool.checkBody(r.id)]);
    expect(both).toEqual([{ ok: true }, { ok: true }]);
    const checked = read() - atStart;
    expect(checked).toBeGreaterThanOrEqual(big.length);
    expect(checked).toBeLessThan(big.length + 4096);
    // checked once per process
    await expect(spool.checkBody(r.id)).resolves.toEqual({ ok: true });
    expect(read() - atStart).toBe(checked);

    // a file this process wrote: nothing to check (its bytes are the ones accept() had in hand)
    const fresh = await spool.accept(spoolEnvelope(), chunksOf(big));
    if (!fresh.ok) throw fresh.error;
    await expect(spool.checkBody(fresh.id)).resolves.toEqual({ ok: true });
    expect(read() - atStart).toBe(checked);
    await spool.close();
  });

  it('a small file (written without the log) with a changed body byte is quarantined at its check; readBody refuses it', async () => {
    const first = await openSpool({ dir, logger, acceptLog: false });
    const r = await first.accept(spoolEnvelope(), Readable.from([SMALL]));
    if (!r.ok) throw r.error;
    await first.close(); // complete: mode 0600
    const fh = await open(msgPath(r.id), 'r+');
    await fh.write(Buffer.from('J'), 0, 1, SMALL.indexOf('hello'));
    await fh.close();

    const { logger: log, lines } = errorLog();
    const spool = await openSpool({ dir, logger: log, acceptLog: false });
    await expect(spool.load(r.id)).resolves.toMatchObject({ ok: true }); // the state alone is fine
    await expect(spool.readBody(r.id)).rejects.toThrow(/CRC-32/);
    expect(await readdir(join(dir, 'queue'))).toEqual([]);
    expect((await readdir(join(dir, 'quarantine'))).some((n) => n.startsWith(`${r.id}.msg.`))).toBe(true);
    const line = lines.find((l) => l.msg === 'spool: quarantined');
    expect(line?.queueId).toBe(r.id);
    expect(String(line?.reason)).toMatch(
      new RegExp(
        `the body's CRC-32 is [0-9a-f]{8}, its initial state recorded ${crc32(SMALL).toString(16).padStart(8, '0')}$`,
      ),
    );
    await expect(spool.checkBody(r.id)).resolves.toEqual({ ok: true }); // gone: nothing left to check
    await spool.close();
  });

  it('a state whose bodyCrc32 is malformed is damaged: quarantined at load, never listed again', async () => {
    const body = bigBody(200);
    await mkdir(join(dir, 'queue'), { recursive: true });
    const ids = ['00mr0ld000000ab1', '00mr0ld000000ab2', '00mr0ld000000ab3'];
    const bad: unknown[] = ['0badc0de', -1, 2 ** 32];
    for (const [i, id] of ids.entries()) {
      const state = { ...initialState(id, spoolEnvelope(), body.length), bodyCrc32: bad[i] } as SpoolState;
      await writeFile(msgPath(id), encodeMessageFile(body, state), { mode: 0o600 });
    }
    const { logger: log, lines } = errorLog();
    const spool = await openSpool({ dir, logger: log });
    expect(await spool.list()).toEqual(ids);
    for (const id of ids) {
      const loaded = await spool.load(id);
      expect(loaded).toMatchObject({ ok: false, reason: 'corrupt' });
      expect(loaded.ok ? '' : loaded.error).toMatch(/initial state is malformed: bodyCrc32: /);
    }
    expect(await spool.list()).toEqual([]);
    expect((await readdir(join(dir, 'quarantine'))).length).toBe(ids.length);
    expect(lines.filter((l) => l.msg === 'spool: quarantined').map((l) => l.queueId)).toEqual(ids);
    await spool.close();
  });
});
