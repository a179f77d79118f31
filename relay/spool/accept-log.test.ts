import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtemp, readdir, readFile, rm, truncate, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { spoolEnvelope } from '../../test/support/delivery.ts';
import { spoolFsWith } from '../../test/support/spool-fs.ts';
import { waitFor, withDeadline } from '../../test/support/wait.ts';
import { adoptQueue } from './adopt.ts';
import { encodeRecord, KIND_ACCEPT, KIND_REMOVAL, parseSegment, RECORD_HEADER } from './accept-log.ts';
import { defaultSpoolFs, openSpool, type OpenSpoolOptions, type SpoolFileHandle } from './spool.ts';

const logger = pino({ level: 'silent' });
const run = promisify(execFile);
const MESSAGE = 'Subject: hi\r\n\r\nbody\r\n';
const ID = '0123456789abcdef';
const ID2 = 'fedcba9876543210';

const concat = (bufs: Buffer[]): Buffer => Buffer.concat(bufs);

describe('accept log records', () => {
  const a = concat(encodeRecord(7, KIND_ACCEPT, ID, [Buffer.from('hello '), Buffer.from('world')]));
  const r = concat(encodeRecord(7, KIND_REMOVAL, ID2, []));
  const both = Buffer.concat([a, r, Buffer.alloc(64)]);

  it.each<[string, Buffer, number, { kind: number; id: string; data: string }[], number]>([
    [
      'an accept and a removal, then zeros',
      both,
      7,
      [
        { kind: KIND_ACCEPT, id: ID, data: 'hello world' },
        { kind: KIND_REMOVAL, id: ID2, data: '' },
      ],
      a.length + r.length,
    ],
    ['records of another segment (a reused file): none', both, 8, [], 0],
    [
      'the last record cut short (a write a power cut interrupted)',
      both.subarray(0, a.length + r.length - 1),
      7,
      [{ kind: KIND_ACCEPT, id: ID, data: 'hello world' }],
      a.length,
    ],
    [
      'a flipped byte in the first payload: nothing after it is trusted',
      Buffer.concat([Buffer.from(a).fill(0x21, a.length - 3, a.length - 2), r]),
      7,
      [],
      0,
    ],
    ['a header only', a.subarray(0, RECORD_HEADER), 7, [], 0],
    ['an empty file', Buffer.alloc(0), 7, [], 0],
    ['random bytes', Buffer.from('not a log segment at all, but long enough to hold a header'), 7, [], 0],
  ])('%s', (_what, buf, segment, records, end) => {
    const p = parseSegment(buf, segment);
    expect(p.records.map((x) => ({ kind: x.kind, id: x.id, data: x.data.toString() }))).toEqual(records);
    expect(p.end).toBe(end);
  });

  it('refuses an id that is not 16 characters', () => {
    expect(() => encodeRecord(1, KIND_ACCEPT, 'short', [])).toThrow('queue id');
  });
});

describe('accept log in the spool', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mailroute-acceptlog-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const open = (o: Partial<OpenSpoolOptions> = {}) => openSpool({ dir, logger, ...o });
  const accept = async (spool: Awaited<ReturnType<typeof open>>, body = MESSAGE): Promise<string> => {
    const r = await spool.accept(spoolEnvelope(), Readable.from([body]));
    if (!r.ok) throw r.error;
    return r.id;
  };
  const msg = (id: string): string => join(dir, 'queue', `${id}.msg`);

  it('a power cut that loses the files of acknowledged messages: each is restored from the log, byte for byte', async () => {
    const first = await open();
    const ids = [
      await accept(first),
      await accept(first),
      await accept(first, 'Subject: x\r\n\r\n' + 'y'.repeat(5000)),
    ];
    const bytes = await Promise.all(ids.map((id) => readFile(msg(id))));
    // what a power cut leaves of files never fsynced: an empty file, a file cut short, no entry at all
    await truncate(msg(ids[0] ?? ''), 0);
    await truncate(msg(ids[1] ?? ''), 10);
    await unlink(msg(ids[2] ?? ''));
    const before = await readdir(join(dir, 'log'));
    const again = await open();
    expect(again.recovery.restoredFromLog).toBe(3);
    for (const [i, id] of ids.entries())
      expect((await readFile(msg(id))).equals(bytes[i] ?? Buffer.alloc(0))).toBe(true);
    expect(await again.list()).toEqual([...ids].sort());
    for (const id of ids) expect(await again.load(id)).toMatchObject({ ok: true });
    // every message is in its own durable file now: the segments replayed are free (or reused under a new number), so
    // no record is read twice
    const replayed = (await readdir(join(dir, 'log'))).filter((n) => !n.startsWith('free-'));
    expect(replayed.filter((n) => before.includes(n))).toEqual([]);
    await again.close();
    const third = await open();
    expect(third.recovery.restoredFromLog).toBe(0);
    await third.close();
  });

  it('a removed message is not restored; a removal record lost with the process repeats it (at least once)', async () => {
    const spool = await open();
    const kept = await accept(spool);
    const gone = await accept(spool);
    expect(await spool.remove(gone)).toBe(true);
    await spool.close(); // the removal record is written before close() resolves
    await unlink(msg(kept));
    const again = await open();
    expect(again.recovery.restoredFromLog).toBe(1);
    expect(await again.list()).toEqual([kept]);
    await again.close();
  });

  it('segments rotate under load and are retired once their messages are removed or checkpointed (fsynced)', async () => {
    const synced = new Set<string>();
    const recordSync = (p: string, fh: SpoolFileHandle): SpoolFileHandle => ({
      ...fh,
      stat: () => fh.stat(),
      read: (b, o, l, pos) => fh.read(b, o, l, pos),
      close: () => fh.close(),
      async sync() {
        await fh.sync();
        if (p.endsWith('.msg')) synced.add(p.slice(p.lastIndexOf('/') + 1, -4));
      },
    });
    // a checkpoint opens the file for reading and fsyncs it
    const fs = spoolFsWith(() => ({}), {
      openRead: async (p) => recordSync(p, await defaultSpoolFs.openRead(p)),
    });
    // 64 KiB segments: a record of at most 16 KiB, about 60 small messages per segment
    const spool = await open({ fs, logSegmentBytes: 64 * 1024, checkpointAfterMs: 20 });
    const ids = await Promise.all(Array.from({ length: 300 }, () => accept(spool)));
    // half are delivered (removed); the other half stay queued and must be checkpointed before their segment goes
    const removed = ids.filter((_, i) => i % 2 === 0);
    const queued = ids.filter((_, i) => i % 2 === 1);
    for (const id of removed) await spool.remove(id);
    await accept(spool, 'Subject: x\r\n\r\n' + 'z'.repeat(40_000)); // a rotation after the removals
    await waitFor(
      async () => (await readdir(join(dir, 'log'))).filter((n) => n.startsWith('free-')).length >= 3,
      { what: 'retired segments' },
    );
    const retiredQueued = queued.filter((id) => synced.has(id));
    expect(retiredQueued.length).toBeGreaterThan(0);
    expect(removed.some((id) => synced.has(id))).toBe(false);
    await spool.close();
    // a power cut now: the files of the queued messages are there (checkpointed) or restored from the log
    for (const id of queued) if (!synced.has(id)) await truncate(msg(id), 0);
    const again = await open();
    const listed = await again.list();
    for (const id of queued) expect(listed).toContain(id);
    for (const id of removed) expect(listed).not.toContain(id);
    for (const id of queued) expect(await again.load(id)).toMatchObject({ ok: true });
    await again.close();
  });

  it('a log write that fails: that message is made durable by its own fsyncs instead, and the log goes on in a new segment', async () => {
    let failNext = false;
    const synced: string[] = [];
    const fs = spoolFsWith((p, _f, fh) =>
      p.endsWith('.seg')
        ? {
            writev(d: Uint8Array[]) {
              if (failNext) {
                failNext = false;
                return Promise.reject(Object.assign(new Error('EIO: injected'), { code: 'EIO' }));
              }
              return fh.writev(d);
            },
          }
        : p.endsWith('.msg')
          ? {
              async sync() {
                await fh.sync();
                synced.push(p);
              },
            }
          : {},
    );
    const spool = await open({ fs });
    failNext = true;
    const first = await accept(spool);
    expect(synced).toEqual([msg(first)]);
    const second = await accept(spool);
    expect(synced).toEqual([msg(first)]); // in the log again
    expect(await spool.list()).toEqual([first, second].sort());
    await spool.close();
    // the second is restored from the log, the first was never in it and is durable on its own
    await truncate(msg(second), 0);
    const again = await open();
    expect(again.recovery.restoredFromLog).toBe(1);
    for (const id of [first, second]) expect(await again.load(id)).toMatchObject({ ok: true });
    await again.close();
  });

  it('no room for a segment (a small volume): every message is made durable by its own fsyncs', async () => {
    const fs = spoolFsWith((p) =>
      p.endsWith('.seg')
        ? { writev: () => Promise.reject(Object.assign(new Error('ENOSPC: injected'), { code: 'ENOSPC' })) }
        : {},
    );
    const spool = await open({ fs });
    const id = await accept(spool);
    expect(await spool.list()).toEqual([id]);
    // the half-made segment was removed
    expect((await readdir(join(dir, 'log'))).filter((n) => n.endsWith('.seg'))).toEqual([]);
    await spool.close();
  });

  it('hostile log contents: a garbage segment, a record with a bad id, a 1.2 GB sparse segment, foreign files: start goes on, nothing is invented', async () => {
    const spool = await open();
    const id = await accept(spool);
    await spool.close();
    const logDir = join(dir, 'log');
    await writeFile(join(logDir, '00000000000000ff.seg'), Buffer.alloc(4096, 0xab));
    const bad = concat(encodeRecord(0x100, KIND_ACCEPT, '../../etc/passwd', [Buffer.from('x')]));
    await writeFile(join(logDir, '0000000000000100.seg'), bad);
    await writeFile(join(logDir, 'notes.txt'), 'not a segment');
    // a sparse file of 1.2 GB named like a segment: set aside unread
    await writeFile(join(logDir, '0000000000000101.seg'), '');
    await truncate(join(logDir, '0000000000000101.seg'), 1_200_000_000);
    // a FIFO where the message file was: set aside, never opened for writing (that would wait for a reader)
    await unlink(msg(id));
    await run('mkfifo', [msg(id)]);
    const again = await withDeadline(5000, open(), 'openSpool');
    expect(again.recovery.restoredFromLog).toBe(1);
    expect(await again.list()).toEqual([id]);
    expect(await again.load(id)).toMatchObject({ ok: true });
    expect((await readdir(join(dir, 'quarantine'))).some((n) => n.startsWith(`${id}.msg.`))).toBe(true);
    expect((await readdir(join(dir, 'quarantine'))).some((n) => n.startsWith('0000000000000101.seg.'))).toBe(
      true,
    );
    await again.close();
  });

  it("a former worker's folder is adopted with its log replayed first: a file the power cut emptied arrives whole", async () => {
    const from = join(dir, 'w1');
    const worker = await openSpool({ dir: from, logger });
    const r = await worker.accept(spoolEnvelope(), Readable.from([MESSAGE]));
    if (!r.ok) throw r.error;
    const bytes = await readFile(join(from, 'queue', `${r.id}.msg`));
    await worker.close();
    await truncate(join(from, 'queue', `${r.id}.msg`), 0);
    expect(await adoptQueue(from, dir)).toBe(1);
    expect((await readFile(msg(r.id))).equals(bytes)).toBe(true);
    const spool = await open();
    expect(await spool.load(r.id)).toMatchObject({ ok: true });
    await spool.close();
  });

  it('short writes (a file system that takes at most 1000 bytes a call) still leave every file and record whole', async () => {
    const short = (fh: SpoolFileHandle) => ({
      writev: (d: Uint8Array[]) => {
        const first = d.find((b) => b.length > 0) ?? new Uint8Array(0);
        return fh.writev([first.subarray(0, 1000)]);
      },
    });
    const fs = spoolFsWith((p, _f, fh) => (p.endsWith('.msg') || p.endsWith('.seg') ? short(fh) : {}));
    const spool = await open({ fs });
    const small = await accept(spool, 'Subject: s\r\n\r\n' + 'a'.repeat(3000) + '\r\n');
    const large = await accept(spool, 'Subject: l\r\n\r\n' + 'b'.repeat(300_000) + '\r\n');
    for (const id of [small, large]) expect(await spool.load(id)).toMatchObject({ ok: true });
    expect((await spool.readBody(large)).length).toBeGreaterThan(300_000);
    await spool.close();
    // the small one's record in the log is whole too: restored byte for byte
    const bytes = await readFile(msg(small));
    await truncate(msg(small), 0);
    const again = await open();
    expect(again.recovery.restoredFromLog).toBe(1);
    expect((await readFile(msg(small))).equals(bytes)).toBe(true);
    await again.close();
  });

  it('a write that takes nothing is a storage error, never a loop', async () => {
    const fs = spoolFsWith((p, _f, fh) =>
      p.endsWith('.msg')
        ? { writev: () => Promise.resolve({ bytesWritten: 0 }) }
        : { writev: (d) => fh.writev(d) },
    );
    const spool = await open({ fs });
    const r = await withDeadline(5000, spool.accept(spoolEnvelope(), Readable.from([MESSAGE])), 'accept');
    expect(r).toMatchObject({ ok: false, storage: true });
    expect(await readdir(join(dir, 'queue'))).toEqual([]);
    await spool.close();
  });
});
