import { execFile } from 'node:child_process';
import { constants as fsConstants } from 'node:fs';
import { promisify } from 'node:util';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { Readable } from 'node:stream';
import { crc32 } from 'node:zlib';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { spoolEnvelope } from '../../test/support/delivery.ts';
import { spoolFsWith, withCalls } from '../../test/support/spool-fs.ts';
import { fakeWallClock, restoreWallClock, stepWallClock } from '../../test/support/clock.ts';
import { waitFor, withDeadline } from '../../test/support/wait.ts';
import { adoptQueue } from './adopt.ts';
import {
  AcceptLog,
  encodeRecord,
  KIND_ACCEPT,
  KIND_REMOVAL,
  parseSegment,
  RECORD_HEADER,
  replayAcceptLog,
} from './accept-log.ts';
import { defaultSpoolFs, openSpool, type OpenSpoolOptions, type SpoolFileHandle } from './spool.ts';
import type { LoadResult, SpoolState } from './types.ts';

const logger = pino({ level: 'silent' });
const run = promisify(execFile);
const MESSAGE = 'Subject: hi\r\n\r\nbody\r\n';
const ID = '0123456789abcdef';
const ID2 = 'fedcba9876543210';

const concat = (bufs: Buffer[]): Buffer => Buffer.concat(bufs);
const eio = (): Promise<never> => Promise.reject(Object.assign(new Error('EIO: injected'), { code: 'EIO' }));

// a fresh spool folder for each test
let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mailroute-acceptlog-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

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

  it("skips a whole record of a kind (or reserved bytes) it does not know, a later version's, and reads on", () => {
    /** `rec` with header byte `at` set to `value` and its CRC made right again: whole, as a later version wrote it. */
    const later = (rec: Buffer, at: number, value: number): Buffer => {
      const b = Buffer.from(rec);
      b.writeUInt8(value, at);
      b.writeUInt32BE(crc32(b.subarray(RECORD_HEADER), crc32(b.subarray(4, 20))), 20);
      return b;
    };
    const c = concat(encodeRecord(7, KIND_ACCEPT, ID2, [Buffer.from('after')]));
    for (const odd of [later(a, 12, 3), later(a, 13, 1)]) {
      const p = parseSegment(Buffer.concat([odd, c, Buffer.alloc(64)]), 7);
      expect(p.records.map((x) => [x.kind, x.id, x.data.toString()])).toEqual([[KIND_ACCEPT, ID2, 'after']]);
      expect(p.unknown).toBe(1);
      expect(p.end).toBe(odd.length + c.length);
    }
    // without a right CRC it is a write cut short: nothing after it is trusted
    const torn = Buffer.from(a);
    torn.writeUInt8(3, 12);
    expect(parseSegment(Buffer.concat([torn, c]), 7)).toMatchObject({ records: [], end: 0, unknown: 0 });
  });

  it('refuses an id that is not 16 characters', () => {
    expect(() => encodeRecord(1, KIND_ACCEPT, 'short', [])).toThrow('queue id');
  });
});

describe('accept log writes side by side', () => {
  /** A log whose segment writes wait for the test (`release`, `fail`) once `hold` is set; `done`: writes ended. */
  const heldLog = async () => {
    const ctl = {
      hold: false,
      done: 0,
      waiting: [] as { go: () => void; fail: () => void }[],
    };
    const fs = spoolFsWith((p, _f, fh) =>
      p.endsWith('.seg')
        ? {
            async writev(d: Uint8Array[], at?: number) {
              if (ctl.hold) {
                const ok = await new Promise<boolean>((r) =>
                  ctl.waiting.push({ go: () => r(true), fail: () => r(false) }),
                );
                if (!ok) return eio();
              }
              const r = await fh.writev(d, at);
              ctl.done++;
              return r;
            },
          }
        : {},
    );
    const log = await AcceptLog.open({
      spoolDir: dir,
      fs,
      log: logger,
      checkpoint: () => Promise.resolve(),
      syncQueue: () => Promise.resolve(),
    });
    ctl.hold = true;
    ctl.done = 0; // the segment's zeros, written when it was made
    return { ctl, log };
  };
  /** Every promise callback that is ready has run (one turn of the event loop). */
  const turn = (): Promise<void> => new Promise((r) => setImmediate(r));
  const ID3 = 'aaaaaaaaaaaaaaaa';

  it('a record that arrives during a write goes out beside it, and is answered only after it', async () => {
    const { ctl, log } = await heldLog();
    const answered: string[] = [];
    const first = log.accept(ID, [Buffer.from('one')]).then(() => answered.push('one'));
    await waitFor(() => ctl.waiting.length === 1, { what: 'the first write' });
    const second = log.accept(ID2, [Buffer.from('two')]).then(() => answered.push('two'));
    await waitFor(() => ctl.waiting.length === 2, { what: 'the second write, beside the first' });
    ctl.waiting[1]?.go(); // the later write ends first
    await waitFor(() => ctl.done === 1, { what: 'the second write to end' });
    await turn();
    expect(answered).toEqual([]); // a record before it is not on disk yet
    ctl.waiting[0]?.go();
    await Promise.all([first, second]);
    expect(answered).toEqual(['one', 'two']);
    await log.close();
    const [name] = (await readdir(join(dir, 'log'))).filter((n) => n.endsWith('.seg'));
    const seq = Number.parseInt(name ?? '', 16);
    const records = parseSegment(await readFile(join(dir, 'log', name ?? '')), seq).records;
    expect(records.map((r) => [r.id, r.data.toString()])).toEqual([
      [ID, 'one'],
      [ID2, 'two'],
    ]);
  });

  it('a write that fails refuses the records written after it into its segment (beyond a hole); the next go into a new segment', async () => {
    const { ctl, log } = await heldLog();
    const first = log.accept(ID, [Buffer.from('one')]);
    await waitFor(() => ctl.waiting.length === 1, { what: 'the first write' });
    const second = log.accept(ID2, [Buffer.from('two')]);
    await waitFor(() => ctl.waiting.length === 2, { what: 'the second write' });
    ctl.waiting[1]?.go(); // written, but after a hole
    ctl.waiting[0]?.fail();
    await expect(first).rejects.toThrow('EIO');
    await expect(second).rejects.toThrow('EIO');
    ctl.hold = false;
    await log.accept(ID3, [Buffer.from('three')]);
    expect((await readdir(join(dir, 'log'))).filter((n) => n.endsWith('.seg')).length).toBe(2);
    await log.close();
    // a start restores what was answered, and only that
    await mkdir(join(dir, 'queue'));
    const report = await replayAcceptLog(dir, defaultSpoolFs, logger, (id) => id.length === 16);
    expect(report.live).toBe(1);
    expect(await readdir(join(dir, 'queue'))).toEqual([`${ID3}.msg`]);
  });

  it('at most four writes are in flight; what arrives meanwhile waits for one of them', async () => {
    const { ctl, log } = await heldLog();
    const ids = Array.from({ length: 12 }, (_, i) => i.toString(16).padStart(16, '0'));
    const all: Promise<void>[] = [];
    for (const id of ids) {
      all.push(log.accept(id, [Buffer.from(id)]));
      await turn(); // each in its own event-loop turn: its own write when a slot is free
    }
    expect(ctl.waiting.length).toBe(4);
    ctl.hold = false;
    for (const w of ctl.waiting) w.go();
    await Promise.all(all);
    await log.close();
    await mkdir(join(dir, 'queue'));
    const report = await replayAcceptLog(dir, defaultSpoolFs, logger, (id) => id.length === 16);
    expect(report.live).toBe(12);
  });
});

describe('accept log in the spool', () => {
  const open = (o: Partial<OpenSpoolOptions> = {}) => openSpool({ dir, logger, ...o });
  const accept = async (spool: Awaited<ReturnType<typeof open>>, body = MESSAGE): Promise<string> => {
    const r = await spool.accept(spoolEnvelope(), Readable.from([body]));
    if (!r.ok) throw r.error;
    return r.id;
  };
  const msg = (id: string): string => join(dir, 'queue', `${id}.msg`);
  /** The spool's metrics as the relay wires them (relay/telemetry/metrics.ts), recorded. */
  const recordedMetrics = () => {
    const seen = {
      writes: [] as number[],
      failures: 0,
      quarantined: -1,
      quarantinedTotal: 0,
      read: undefined as (() => { messages: number; active: boolean }) | undefined,
    };
    const status = (): { messages: number; active: boolean } | undefined => seen.read?.();
    const metrics: NonNullable<OpenSpoolOptions['metrics']> = {
      quarantined: { set: (n) => void (seen.quarantined = n) },
      quarantinedTotal: { inc: (n = 1) => void (seen.quarantinedTotal += n) },
      logWriteSeconds: { observe: (s) => void seen.writes.push(s) },
      logWriteFailures: { inc: () => void seen.failures++ },
      setLogSource: (read) => {
        seen.read = read;
      },
    };
    return { seen, status, metrics };
  };

  const queueFiles = async (): Promise<string[]> => (await readdir(join(dir, 'queue'))).sort();
  /** The queue id of a message file's path (queue/ID.msg). */
  const msgId = (p: string): string => basename(p, '.msg');
  /** A restart restores nothing from the log, and the queue then holds exactly these messages. */
  const expectRestartWith = async (ids: readonly string[]): Promise<void> => {
    const again = await open();
    expect(again.recovery.restoredFromLog).toBe(0);
    expect(await again.list()).toEqual([...ids].sort());
    await again.close();
  };
  /** The message file spool.ts writes: the body, then the initial state and the footer (format.ts). */
  const expectMessageFile = async (id: string, body: string): Promise<void> => {
    const file = await readFile(msg(id));
    expect(file.subarray(0, Buffer.byteLength(body)).toString()).toBe(body);
    expect(file.subarray(Buffer.byteLength(body)).toString()).toMatch(
      /^\{"version":1,.*\}\nmailroute-spool-v1 \d{12}\n$/s,
    );
  };

  it('a message delivered before the log lets it go never touches the queue directory', async () => {
    const opened: string[] = [];
    const fs = spoolFsWith((p) => {
      opened.push(p);
      return {};
    });
    const { seen, status, metrics } = recordedMetrics();
    const spool = await open({ fs, metrics });
    opened.length = 0; // the log's first segment
    expect(status()).toEqual({ messages: 0, active: true });
    const id = await accept(spool);
    expect(await queueFiles()).toEqual([]);
    // the metrics: one message in the log alone, its write timed
    expect(status()).toEqual({ messages: 1, active: true });
    expect(seen.writes.length).toBe(1);
    expect(seen.writes[0]).toBeGreaterThanOrEqual(0);
    expect(seen.writes[0]).toBeLessThan(60);
    // a committed message all the same: listed, loaded, its body and headers served
    expect(await spool.list()).toEqual([id]);
    expect(await spool.load(id)).toMatchObject({ ok: true, state: { size: MESSAGE.length } });
    expect((await spool.readBody(id)).toString()).toBe(MESSAGE);
    expect((await spool.readHeaders(id)).toString()).toBe('Subject: hi\r\n');
    expect(Buffer.isBuffer(spool.body(id, MESSAGE.length))).toBe(true);
    expect(await spool.remove(id)).toBe(true);
    expect(await spool.remove(id)).toBe(false);
    expect(await spool.list()).toEqual([]);
    expect(await spool.load(id)).toMatchObject({ ok: false, reason: 'missing' });
    expect(opened.filter((p) => p.includes(`${join(dir, 'queue')}/`))).toEqual([]);
    expect(status()).toEqual({ messages: 0, active: true });
    expect(seen.failures).toBe(0);
    await spool.close();
    expect(status()).toEqual({ messages: 0, active: false });
    // the removal record went with it: nothing comes back
    await expectRestartWith([]);
  });

  it('a power cut while messages are in the log alone: each gets its file from the log at start, byte for byte', async () => {
    const first = await open();
    const bodies = [MESSAGE, MESSAGE, 'Subject: x\r\n\r\n' + 'y'.repeat(5000)];
    const ids: string[] = [];
    for (const b of bodies) ids.push(await accept(first, b));
    expect(await queueFiles()).toEqual([]);
    // what else a power cut may leave under a name: an empty file, a file cut short
    await writeFile(msg(ids[0] ?? ''), '');
    await writeFile(msg(ids[1] ?? ''), 'Subject: hi');
    const before = await readdir(join(dir, 'log'));
    // no close(): the process is gone
    const again = await open();
    expect(again.recovery.restoredFromLog).toBe(3);
    for (const [i, id] of ids.entries()) await expectMessageFile(id, bodies[i] ?? '');
    expect(await again.list()).toEqual([...ids].sort());
    for (const id of ids) expect(await again.load(id)).toMatchObject({ ok: true });
    // every message is in its own durable file now: the segments replayed are free (or reused under a new number), so
    // no record is read twice
    const replayed = (await readdir(join(dir, 'log'))).filter((n) => !n.startsWith('free-'));
    expect(replayed.filter((n) => before.includes(n))).toEqual([]);
    await again.close();
    await expectRestartWith(ids);
  });

  const attemptsOnce = (st: SpoolState): SpoolState => ({
    ...st,
    legs: st.legs.map((l) => ({ ...l, attempts: 1 })),
  });
  const attemptsOf = (r: LoadResult): number[] | undefined =>
    r.ok ? r.state.legs.map((l) => l.attempts) : undefined;

  it('a removed message is not restored; a removal record lost with the process repeats it (at least once)', async () => {
    const spool = await open();
    const kept = await accept(spool);
    const gone = await accept(spool);
    expect(await spool.remove(gone)).toBe(true);
    // records are written in order: the removal record is on disk once a later accept is
    const later = await accept(spool);
    // no close(): the process is gone
    const again = await open();
    expect(again.recovery.restoredFromLog).toBe(2);
    expect(await again.list()).toEqual([kept, later].sort());
    await again.close();
  });

  it('a stop writes each message the log still holds into its own file, with its latest state: queue/ alone holds the queue', async () => {
    const spool = await open();
    const [plain, changed, gone] = [await accept(spool), await accept(spool), await accept(spool)];
    await spool.update(changed, attemptsOnce);
    await spool.remove(gone);
    expect(await queueFiles()).toEqual([]);
    await spool.close();
    expect(await queueFiles()).toEqual([`${plain}.msg`, `${changed}.msg`].sort());
    for (const id of [plain, changed]) await expectMessageFile(id, MESSAGE);
    const files = await open({ acceptLog: false }); // queue/ alone
    expect(await files.list()).toEqual([plain, changed].sort());
    expect(attemptsOf(await files.load(plain))).toEqual([0, 0]);
    expect(attemptsOf(await files.load(changed))).toEqual([1, 1]);
    await files.close();
    await expectRestartWith([plain, changed]);
  });

  it('a state change while the message is in the log alone is one more record there: no file, and a power cut restores the latest state', async () => {
    const opened: string[] = [];
    const fs = spoolFsWith((p) => {
      opened.push(p);
      return {};
    });
    const spool = await open({ fs });
    const id = await accept(spool);
    expect(attemptsOf({ ok: true, state: (await spool.update(id, attemptsOnce)) as SpoolState })).toEqual([
      1, 1,
    ]);
    expect(await queueFiles()).toEqual([]);
    expect(opened.filter((p) => p.includes(`${join(dir, 'queue')}/`))).toEqual([]);
    expect(attemptsOf(await spool.load(id))).toEqual([1, 1]);
    // no close(): the process is gone; the last record comes back, the new state in its file's trailer
    const again = await open();
    expect(again.recovery.restoredFromLog).toBe(1);
    await expectMessageFile(id, MESSAGE);
    expect(attemptsOf(await again.load(id))).toEqual([1, 1]);
    // removed after its state changed: gone for good
    expect(await again.remove(id)).toBe(true);
    await again.close();
    await expectRestartWith([]);
  });

  it('a state change the log cannot take (a failed write): the message gets its own durable file first, then its state file', async () => {
    const events: string[] = [];
    let failLog = false;
    const fs = spoolFsWith((p, _f, fh) =>
      p.endsWith('.seg')
        ? { writev: (d, p) => (failLog ? ((failLog = false), eio()) : fh.writev(d, p)) }
        : {
            async sync() {
              await fh.sync();
              events.push(`sync ${p.slice(p.lastIndexOf('.'))}`);
            },
          },
    );
    const spool = await open({ fs });
    const id = await accept(spool);
    events.length = 0;
    failLog = true;
    const next = await spool.update(id, attemptsOnce);
    expect(next?.legs.every((l) => l.attempts === 1)).toBe(true);
    expect(events.indexOf('sync .msg')).toBeGreaterThanOrEqual(0);
    expect(events.indexOf('sync .msg')).toBeLessThan(events.indexOf('sync .tmp'));
    expect(await queueFiles()).toEqual([`${id}.json`, `${id}.msg`]);
    await expectMessageFile(id, MESSAGE);
    expect((await stat(msg(id))).mode & 0o777).toBe(0o600);
    await spool.close();
    const again = await open();
    expect(attemptsOf(await again.load(id))).toEqual([1, 1]);
    await again.close();
  });

  it('a state change too large for a record of the log: the message gets its files', async () => {
    // 64 KiB segments: a record of at most 16 KiB
    const spool = await open({ logSegmentBytes: 64 * 1024 });
    const id = await accept(spool, 'Subject: x\r\n\r\n' + 'y'.repeat(5000));
    expect(await queueFiles()).toEqual([]);
    await spool.update(id, (st) => ({
      ...st,
      legs: st.legs.map((l) => ({ ...l, attempts: 1, lastReply: `451 4.3.0 ${'z'.repeat(12_000)}` })),
    }));
    expect(await queueFiles()).toEqual([`${id}.json`, `${id}.msg`]);
    await spool.close();
    const again = await open();
    expect(attemptsOf(await again.load(id))).toEqual([1, 1]);
    await again.close();
  });

  it('the removal of a message with files whose accept record is still live fsyncs the queue folder', async () => {
    // a power cut undoes unlinks the folder's fsync did not make durable, and a replay deletes no file for a removal
    // record: the files came back with their state, and the delivered legs were sent again
    const events: string[] = [];
    const queueDir = join(dir, 'queue');
    const spool = await open({
      logSegmentBytes: 64 * 1024,
      fs: spoolFsWith(
        (p, _flags, fh) => (p === queueDir ? { sync: () => (events.push('sync queue/'), fh.sync()) } : {}),
        {
          unlink: async (p) => {
            events.push(`unlink ${p.slice(p.lastIndexOf('.'))}`);
            await defaultSpoolFs.unlink(p);
          },
        },
      ),
    });
    const id = await accept(spool, 'Subject: x\r\n\r\n' + 'y'.repeat(5000));
    await spool.update(id, (st) => ({
      ...st,
      legs: st.legs.map((l) => ({ ...l, attempts: 1, lastReply: `451 4.3.0 ${'z'.repeat(12_000)}` })),
    }));
    expect(await queueFiles()).toEqual([`${id}.json`, `${id}.msg`]); // files, and the accept record still live
    events.length = 0;
    await spool.remove(id);
    const unlinked = events.indexOf('unlink .msg');
    expect(unlinked).toBeGreaterThanOrEqual(0);
    expect(events.indexOf('sync queue/', unlinked)).toBeGreaterThan(unlinked);
    await spool.close();
  });

  it('the earlier record of a message whose state changed no longer holds its segment back', async () => {
    // no checkpoint within the test: a segment retires only when nothing in it is still queued
    const spool = await open({ logSegmentBytes: 64 * 1024, checkpointAfterMs: 3_600_000 });
    const id = await accept(spool);
    const others = await Promise.all(Array.from({ length: 80 }, () => accept(spool))); // the segment rotates
    for (const o of others) await spool.remove(o);
    await spool.update(id, attemptsOnce); // a record in the current segment
    await accept(spool, 'Subject: x\r\n\r\n' + 'z'.repeat(12_000)); // and one more rotation
    await waitFor(async () => (await readdir(join(dir, 'log'))).some((n) => n.startsWith('free-')), {
      what: 'the first segment retired',
    });
    expect(await queueFiles()).toEqual([]); // retired without writing the message's file
    const again = await open(); // a power cut: the later record is there
    expect(attemptsOf(await again.load(id))).toEqual([1, 1]);
    await again.close();
  });

  it('a message whose state changed in the log gets a file with its latest state when its segment retires', async () => {
    const spool = await open({ logSegmentBytes: 64 * 1024, checkpointAfterMs: 20 });
    const id = await accept(spool);
    await spool.update(id, attemptsOnce);
    const others = await Promise.all(Array.from({ length: 80 }, () => accept(spool)));
    for (const o of others) await spool.remove(o);
    await accept(spool, 'Subject: x\r\n\r\n' + 'z'.repeat(12_000));
    await waitFor(async () => (await queueFiles()).includes(`${id}.msg`), { what: 'the checkpoint' });
    await spool.close();
    await expectMessageFile(id, MESSAGE);
    expect(await queueFiles()).not.toContain(`${id}.json`); // the latest state is in the file's trailer
    const again = await open({ acceptLog: false }); // the file alone
    expect(attemptsOf(await again.load(id))).toEqual([1, 1]);
    await again.close();
  });

  it('the wall clock stepping back an hour (NTP, a VM resumed) does not hold a sealed segment back: its age is monotonic', async () => {
    fakeWallClock();
    const spool = await open({ logSegmentBytes: 64 * 1024, checkpointAfterMs: 2000 });
    const retired = async (): Promise<boolean> =>
      (await readdir(join(dir, 'log'))).some((n) => n.startsWith('free-'));
    try {
      // about 60 small messages fill a 64 KiB segment: the first segment is sealed during these accepts, and the
      // clock steps back before it is two seconds old (checked: nothing retired yet, or the step would prove nothing)
      const ids = await Promise.all(Array.from({ length: 80 }, () => accept(spool)));
      expect(await retired()).toBe(false);
      stepWallClock(-3600_000);
      await accept(spool, 'Subject: x\r\n\r\n' + 'z'.repeat(12_000)); // and the next one sealed after the step
      // the messages of the first segment get their files two seconds after it was sealed, not an hour later (its
      // age on the wall clock is negative for an hour, and segments retire in order)
      await waitFor(retired, { what: 'a retired segment', timeoutMs: 8000 });
      const files = await queueFiles();
      const checkpointed = ids.filter((id) => files.includes(`${id}.msg`));
      expect(checkpointed.length).toBeGreaterThan(0);
      for (const id of checkpointed) await expectMessageFile(id, MESSAGE);
    } finally {
      restoreWallClock();
      await spool.close();
    }
  });

  it('a state change neither the log nor a file can take: the update fails and the earlier record still holds the message', async () => {
    let failLog = false;
    let failFile = false;
    const fs = spoolFsWith((p, _f, fh) =>
      p.endsWith('.seg')
        ? { writev: (d, p) => (failLog ? ((failLog = false), eio()) : fh.writev(d, p)) }
        : p.endsWith('.msg')
          ? { writev: (d, p) => (failFile ? ((failFile = false), eio()) : fh.writev(d, p)) }
          : {},
    );
    const spool = await open({ fs, logSegmentBytes: 64 * 1024, checkpointAfterMs: 20 });
    const id = await accept(spool);
    failLog = true;
    failFile = true;
    await expect(spool.update(id, attemptsOnce)).rejects.toThrow('EIO');
    expect(await queueFiles()).toEqual([]);
    // its segment (sealed by the failed write) is retired only after the message's file is written: the checkpoint
    await accept(spool);
    await waitFor(async () => (await queueFiles()).includes(`${id}.msg`), { what: 'the checkpoint' });
    await expectMessageFile(id, MESSAGE);
    expect(attemptsOf(await spool.load(id))).toEqual([0, 0]);
    await spool.close();
  });

  // the queue directory's fsyncs fail while `failDirSyncs` > 0 (the spool holds the directory open for them), and the
  // log's segment writes while `failLogWrites` > 0
  const dirSyncFailing = () => {
    const ctl = { failDirSyncs: 0, failLogWrites: 0 };
    const fs = spoolFsWith((p, _f, fh) =>
      p.endsWith('queue')
        ? { sync: () => (ctl.failDirSyncs-- > 0 ? eio() : fh.sync()) }
        : p.endsWith('.seg')
          ? { writev: (d, p) => (ctl.failLogWrites-- > 0 ? eio() : fh.writev(d, p)) }
          : {},
    );
    return { ctl, fs };
  };

  it('something already under a new message’s name when its file is written is set aside, not written into', async () => {
    const { ctl, fs } = dirSyncFailing();
    const spool = await open({ fs });
    const id = await accept(spool);
    await writeFile(msg(id), 'not this message');
    ctl.failLogWrites = 1; // the state change goes to files
    await spool.update(id, (s) => ({ ...s }));
    await expectMessageFile(id, MESSAGE);
    const aside = (await readdir(join(dir, 'quarantine'))).filter((n) => n.startsWith(`${id}.msg.`));
    expect(aside.length).toBe(1);
    expect(await readFile(join(dir, 'quarantine', aside[0] ?? ''), 'utf8')).toBe('not this message');
    await spool.close();
  });

  it('a directory fsync that fails after a message’s file was written: the retry keeps that file, and so does removal', async () => {
    const { ctl, fs } = dirSyncFailing();
    const spool = await open({ fs });
    const id = await accept(spool);
    ctl.failLogWrites = 1; // the state change goes to files
    ctl.failDirSyncs = 1;
    await expect(spool.update(id, (s) => ({ ...s }))).rejects.toThrow('EIO');
    await spool.update(id, (s) => ({ ...s }));
    await expectMessageFile(id, MESSAGE);
    expect(await readdir(join(dir, 'quarantine'))).toEqual([]); // its own file was not taken for a stranger's
    // the same, then removed before any retry: the file goes with it
    const other = await accept(spool);
    ctl.failLogWrites = 1;
    ctl.failDirSyncs = 1;
    await expect(spool.update(other, (s) => ({ ...s }))).rejects.toThrow('EIO');
    expect(await queueFiles()).toContain(`${other}.msg`);
    expect(await spool.remove(other)).toBe(true);
    expect(await queueFiles()).not.toContain(`${other}.msg`);
    expect(await spool.list()).toEqual([id]);
    await spool.close();
  });

  it('the log fails and then the file’s directory fsync too: 4xx, and the file written for it is removed', async () => {
    const { ctl, fs } = dirSyncFailing();
    const spool = await open({ fs });
    ctl.failLogWrites = 1;
    ctl.failDirSyncs = 1;
    const r = await spool.accept(spoolEnvelope(), Readable.from([MESSAGE]));
    expect(r).toMatchObject({ ok: false, storage: true });
    expect(await queueFiles()).toEqual([]);
    expect(await spool.list()).toEqual([]);
    // healthy again: accepted (in the log, or in its own file while the log starts a new segment)
    const id = await accept(spool);
    expect(await spool.list()).toEqual([id]);
    await spool.close();
  });

  it('a message quarantined while in the log alone is kept in quarantine/ and not restored at the next start', async () => {
    const spool = await open();
    const id = await accept(spool);
    await spool.quarantine(id, 'a test');
    expect(await spool.list()).toEqual([]);
    const aside = (await readdir(join(dir, 'quarantine'))).filter((n) => n.startsWith(`${id}.msg.`));
    expect(aside.length).toBe(1);
    await spool.close();
    await expectRestartWith([]);
  });

  it('bodies the body cache let go are served from the log’s copy until the message has a file', async () => {
    // 100 messages of 100 KiB: more than the 8 MiB body cache holds; no checkpoint within the test
    const spool = await open({ checkpointAfterMs: 3_600_000 });
    const bodies = Array.from(
      { length: 100 },
      (_, i) => `Subject: ${i}\r\n\r\n` + String(i % 10).repeat(100_000),
    );
    const ids: string[] = [];
    for (const b of bodies) ids.push(await accept(spool, b));
    for (const [i, id] of ids.entries()) expect((await spool.readBody(id)).toString()).toBe(bodies[i]);
    await spool.close();
  });

  it('a message whose write is still on its way when its segment is sealed is not lost with the segment (a slow disk at a rotation)', async () => {
    // The disk stalls on one write into the log: longer than checkpointAfterMs after the segment is sealed. The
    // segment used to be checkpointed and retired without the message in that write (the spool took it as its own
    // only once the write was answered), and a crash before its first state change lost a message answered 250.
    let slow: string | undefined;
    const fs = spoolFsWith((p, _f, fh) =>
      p.endsWith('.seg')
        ? {
            async writev(d, pos) {
              if (
                slow !== undefined &&
                d.some((b) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).includes(slow as string))
              ) {
                slow = undefined;
                await new Promise<void>((resolve) => setTimeout(resolve, 300)); // the stalled disk
              }
              return fh.writev(d, pos);
            },
          }
        : {},
    );
    const spool = await open({ fs, logSegmentBytes: 64 * 1024, checkpointAfterMs: 20 });
    for (let i = 0; i < 4; i++) await accept(spool, 'Subject: fill\r\n\r\n' + 'f'.repeat(12_000));
    // X's write stalls; Y does not fit what is left of the segment: the segment is sealed while X is on its way
    slow = 'the-stalled-one';
    const [x, y] = await Promise.all([
      accept(spool, 'Subject: the-stalled-one\r\n\r\n' + 'x'.repeat(8_000)),
      accept(spool, 'Subject: next\r\n\r\n' + 'y'.repeat(12_000)),
    ]);
    await waitFor(async () => (await readdir(join(dir, 'log'))).some((n) => n.startsWith('free-')), {
      what: 'the sealed segment retired',
    });
    // a crash now (no close): a new spool on the same folder, as after a restart
    const again = await open();
    try {
      for (const id of [x, y]) expect((await again.load(id)).ok, `message ${id}`).toBe(true);
    } finally {
      await again.close();
      await spool.close();
    }
  });

  it('segments rotate under load and are retired once their messages are removed or checkpointed (written)', async () => {
    const synced = new Set<string>();
    /** Ids whose removal has returned: a file written for one of them after that would bring it back. */
    const gone = new Set<string>();
    const writtenAfterRemoval: string[] = [];
    const fs = spoolFsWith((p, _f, fh) =>
      p.endsWith('.msg')
        ? {
            async sync() {
              await fh.sync();
              const id = msgId(p);
              synced.add(id);
              if (gone.has(id)) writtenAfterRemoval.push(id);
            },
          }
        : {},
    );
    // 64 KiB segments: a record of at most 16 KiB, about 60 small messages per segment
    const spool = await open({ fs, logSegmentBytes: 64 * 1024, checkpointAfterMs: 20 });
    const ids = await Promise.all(Array.from({ length: 300 }, () => accept(spool)));
    // half are delivered (removed); the other half stay queued and must be checkpointed before their segment goes
    const removed = ids.filter((_, i) => i % 2 === 0);
    const queued = ids.filter((_, i) => i % 2 === 1);
    for (const id of removed) {
      await spool.remove(id);
      gone.add(id);
    }
    await accept(spool, 'Subject: x\r\n\r\n' + 'z'.repeat(12_000)); // a rotation after the removals
    await waitFor(
      async () => {
        const names = (await readdir(join(dir, 'log'))).sort();
        if (names.filter((n) => n.startsWith('free-')).length >= 3) return true;
        // a timeout reports the last listing (this wait timed out once in a full suite run, not reproduced since)
        throw new Error(`the log holds ${names.join(' ')}`);
      },
      { what: 'retired segments' },
    );
    const retiredQueued = queued.filter((id) => synced.has(id));
    expect(retiredQueued.length).toBeGreaterThan(0);
    for (const id of retiredQueued) await expectMessageFile(id, MESSAGE);
    // A message removed while the log held it alone never got a file: at least those of the segment still current at
    // the removals (a segment sealed during the accepts may have been checkpointed before them: 20 ms). None got one
    // after its removal.
    expect(removed.filter((id) => !synced.has(id)).length).toBeGreaterThan(0);
    expect(writtenAfterRemoval).toEqual([]);
    const files = await queueFiles();
    for (const id of removed) expect(files).not.toContain(`${id}.msg`);
    await spool.close();
    // a power cut now: the files of the queued messages are there (checkpointed) or restored from the log
    const again = await open();
    const listed = await again.list();
    for (const id of queued) expect(listed).toContain(id);
    for (const id of removed) expect(listed).not.toContain(id);
    for (const id of queued) expect(await again.load(id)).toMatchObject({ ok: true });
    await again.close();
  });

  it('a message that got its file when its state changed (the log failed) is not written or fsynced again when its segment retires', async () => {
    const syncs = new Map<string, number>();
    let failLog = false;
    const counted = (p: string, fh: SpoolFileHandle): Partial<SpoolFileHandle> =>
      p.endsWith('.seg')
        ? { writev: (d, p) => (failLog ? ((failLog = false), eio()) : fh.writev(d, p)) }
        : p.endsWith('.msg')
          ? {
              async sync() {
                await fh.sync();
                const id = msgId(p);
                syncs.set(id, (syncs.get(id) ?? 0) + 1);
              },
            }
          : {};
    // opened for writing or for reading (an fsync needs no write access)
    const fs = spoolFsWith((p, _f, fh) => counted(p, fh), {
      openRead: async (p) => {
        const fh = await defaultSpoolFs.openRead(p);
        return withCalls(fh, counted(p, fh));
      },
    });
    const spool = await open({ fs, logSegmentBytes: 64 * 1024, checkpointAfterMs: 20 });
    const id = await accept(spool);
    failLog = true;
    await spool.update(id, (s) => ({ ...s }));
    expect(syncs.get(id)).toBe(1);
    // its segment fills and is sealed; the others are delivered; it retires
    const others = await Promise.all(Array.from({ length: 80 }, () => accept(spool)));
    for (const o of others) await spool.remove(o);
    await accept(spool, 'Subject: x\r\n\r\n' + 'z'.repeat(12_000));
    await waitFor(async () => (await readdir(join(dir, 'log'))).some((n) => n.startsWith('free-')), {
      what: 'a retired segment',
    });
    expect(syncs.get(id)).toBe(1);
    expect(await spool.load(id)).toMatchObject({ ok: true });
    await spool.close();
  });

  it('a log write that fails: that message gets its own durable file instead, and the log goes on in a new segment', async () => {
    let failNext = false;
    const synced: string[] = [];
    const fs = spoolFsWith((p, _f, fh) =>
      p.endsWith('.seg')
        ? {
            writev(d: Uint8Array[], p?: number) {
              if (failNext) {
                failNext = false;
                return Promise.reject(Object.assign(new Error('EIO: injected'), { code: 'EIO' }));
              }
              return fh.writev(d, p);
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
    const { seen, status, metrics } = recordedMetrics();
    const spool = await open({ fs, metrics });
    failNext = true;
    const first = await accept(spool);
    expect(synced).toEqual([msg(first)]);
    await expectMessageFile(first, MESSAGE);
    // counted; the log is still in use (a new segment), and the first message has a file, not a record
    expect(seen.failures).toBe(1);
    expect(status()).toEqual({ messages: 0, active: true });
    const second = await accept(spool);
    expect(synced).toEqual([msg(first)]); // in the log again
    expect(status()).toEqual({ messages: 1, active: true });
    expect(seen.failures).toBe(1);
    expect(await queueFiles()).toEqual([`${first}.msg`]);
    expect(await spool.list()).toEqual([first, second].sort());
    // no close(): the process is gone. The second is restored from the log; the first was never in it and is durable on
    // its own
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
    const { seen, status, metrics } = recordedMetrics();
    const spool = await open({ fs, metrics });
    // no log in use: what an operator's alert on mailroute_spool_log_active 0 sees
    expect(status()).toEqual({ messages: 0, active: false });
    const id = await accept(spool);
    expect(await spool.list()).toEqual([id]);
    expect(status()).toEqual({ messages: 0, active: false });
    expect(seen.writes).toEqual([]);
    // the half-made segment was removed
    expect((await readdir(join(dir, 'log'))).filter((n) => n.endsWith('.seg'))).toEqual([]);
    await spool.close();
  });

  it('the volume fills while the log is in use: no next segment, the log reads inactive, messages get their own files', async () => {
    let full = false;
    const fs = spoolFsWith((p, flags, fh) =>
      // a new segment is created (O_CREAT) and filled with zeros: that is what a full volume refuses
      p.endsWith('.seg') && typeof flags === 'number' && (flags & fsConstants.O_CREAT) !== 0
        ? {
            writev: (d, pos) =>
              full
                ? Promise.reject(Object.assign(new Error('ENOSPC: injected'), { code: 'ENOSPC' }))
                : fh.writev(d, pos),
          }
        : {},
    );
    const { status, metrics } = recordedMetrics();
    // 64 KiB segments: about 60 small messages fill one
    const spool = await open({ fs, metrics, logSegmentBytes: 64 * 1024 });
    expect(status()?.active).toBe(true);
    full = true;
    const ids: string[] = [];
    for (let i = 0; i < 150 && status()?.active === true; i++) ids.push(await accept(spool));
    // the first segment took messages until it was full
    expect(ids.length).toBeGreaterThan(20);
    expect(status()?.active).toBe(false);
    // accepted all the same, durable in files of their own
    const after = await accept(spool);
    expect(await queueFiles()).toContain(`${after}.msg`);
    expect(await spool.list()).toEqual([...ids, after].sort());
    await spool.close();
  });

  it('hostile log contents: a garbage segment, a record with a bad id, a 1.2 GB sparse segment, foreign files: start goes on, nothing is invented', async () => {
    const spool = await open();
    const id = await accept(spool);
    // no close(): the process is gone, the message in the log alone
    const logDir = join(dir, 'log');
    await writeFile(join(logDir, '00000000000000ff.seg'), Buffer.alloc(4096, 0xab));
    const bad = concat(encodeRecord(0x100, KIND_ACCEPT, '../../etc/passwd', [Buffer.from('x')]));
    await writeFile(join(logDir, '0000000000000100.seg'), bad);
    await writeFile(join(logDir, 'notes.txt'), 'not a segment');
    // a sparse file of 1.2 GB named like a segment: set aside unread
    await writeFile(join(logDir, '0000000000000101.seg'), '');
    await truncate(join(logDir, '0000000000000101.seg'), 1_200_000_000);
    // a FIFO under the name of a message the log holds: set aside, never opened for writing (that would wait for a
    // reader)
    await run('mkfifo', [msg(id)]);
    const { seen, metrics } = recordedMetrics();
    const again = await withDeadline(5000, open({ metrics }), 'openSpool');
    expect(again.recovery.restoredFromLog).toBe(1);
    // both set-asides are counted, in the start's report and in the metrics
    expect(again.recovery.quarantined).toBe(2);
    expect(seen.quarantinedTotal).toBe(2);
    expect(seen.quarantined).toBe(2);
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
    await worker.close();
    // (in its log alone; and what a power cut may leave under its name)
    await writeFile(join(from, 'queue', `${r.id}.msg`), '');
    expect(await adoptQueue(from, dir)).toBe(1);
    await expectMessageFile(r.id, MESSAGE);
    const spool = await open();
    expect(await spool.load(r.id)).toMatchObject({ ok: true });
    await spool.close();
  });

  it('short writes (a file system that takes at most 1000 bytes a call) still leave every file and record whole', async () => {
    const short = (fh: SpoolFileHandle) => ({
      writev: (d: Uint8Array[], p?: number) => {
        const first = d.find((b) => b.length > 0) ?? new Uint8Array(0);
        return fh.writev([first.subarray(0, 1000)], p);
      },
    });
    const fs = spoolFsWith((p, _f, fh) => (p.endsWith('.msg') || p.endsWith('.seg') ? short(fh) : {}));
    const spool = await open({ fs });
    const small = await accept(spool, 'Subject: s\r\n\r\n' + 'a'.repeat(3000) + '\r\n');
    const large = await accept(spool, 'Subject: l\r\n\r\n' + 'b'.repeat(300_000) + '\r\n');
    for (const id of [small, large]) expect(await spool.load(id)).toMatchObject({ ok: true });
    expect((await spool.readBody(large)).length).toBeGreaterThan(300_000);
    // no close(): the process is gone. The small one's record in the log is whole too: its file is written from it,
    // byte for byte
    expect(await queueFiles()).toEqual([`${large}.msg`]);
    const again = await open();
    expect(again.recovery.restoredFromLog).toBe(1);
    await expectMessageFile(small, 'Subject: s\r\n\r\n' + 'a'.repeat(3000) + '\r\n');
    await again.close();
  });

  it('a write that takes nothing is a storage error, never a loop', async () => {
    let logTakesNothing = false;
    const nothing = { writev: () => Promise.resolve({ bytesWritten: 0 }) };
    const fs = spoolFsWith((p, _f, fh) =>
      p.endsWith('.msg')
        ? nothing
        : p.endsWith('.seg')
          ? { writev: (d, p) => (logTakesNothing ? nothing.writev() : fh.writev(d, p)) }
          : {},
    );
    const spool = await open({ fs });
    // too large for the log: its own file
    const large = Readable.from(['Subject: l\r\n\r\n' + 'b'.repeat(300_000) + '\r\n']);
    expect(await withDeadline(5000, spool.accept(spoolEnvelope(), large), 'accept')).toMatchObject({
      ok: false,
      storage: true,
    });
    // a log that takes nothing, then its own file, which takes nothing either
    logTakesNothing = true;
    const small = await withDeadline(5000, spool.accept(spoolEnvelope(), Readable.from([MESSAGE])), 'accept');
    expect(small).toMatchObject({ ok: false, storage: true });
    expect(await queueFiles()).toEqual([]);
    expect(await spool.list()).toEqual([]);
    await spool.close();
  });
});

describe('accept log with no room for a new segment', () => {
  it('a removal goes into the newest sealed segment; one no segment takes is kept and written once one can be made', async () => {
    const ctl = { full: false, broken: false, t: 0 };
    const enospc = (): Promise<never> =>
      Promise.reject(Object.assign(new Error('ENOSPC: injected'), { code: 'ENOSPC' }));
    // a new segment (created: O_CREAT) is refused while `full`; a write into an existing one fails while `broken`
    const fs = spoolFsWith((p, flags, fh) => {
      if (!p.endsWith('.seg')) return {};
      const creating = typeof flags === 'number' && (flags & fsConstants.O_CREAT) !== 0;
      return {
        writev: (d, at) =>
          creating && ctl.full ? enospc() : !creating && ctl.broken ? eio() : fh.writev(d, at),
      };
    });
    const lines: string[] = [];
    const log = await AcceptLog.open({
      spoolDir: dir,
      fs,
      log: pino({ level: 'warn' }, { write: (l: string) => void lines.push(l) }),
      // the messages' files never fit: a sealed segment stays (its checkpoint fails)
      checkpoint: () => enospc(),
      syncQueue: () => Promise.resolve(),
      now: () => ctl.t,
      segmentBytes: 64 * 1024,
      checkpointAfterMs: 20,
    });
    const ids = ['aaaaaaaaaaaaaaa1', 'aaaaaaaaaaaaaaa2', 'aaaaaaaaaaaaaaa3'];
    for (const id of ids) await log.accept(id, [Buffer.from('small message')]);
    ctl.full = true;
    // large records until one does not fit: the segment is sealed, and no next one can be made
    const big = Buffer.alloc(16_000, 0x61);
    for (let i = 0; i < 4; i++) await log.accept(`bbbbbbbbbbbbbbb${i}`, [big]);
    await expect(log.accept('bbbbbbbbbbbbbbb4', [big])).rejects.toThrow('no new segment');
    expect(log.usable).toBe(false);
    const [first] = (await readdir(join(dir, 'log'))).filter((n) => /^[0-9a-f]{16}\.seg$/.test(n));
    if (first === undefined) throw new Error('no segment');
    /** The ids of the removal records in the segment files under log/ now. */
    const removals = async (): Promise<string[]> => {
      const found: string[] = [];
      for (const n of await readdir(join(dir, 'log'))) {
        if (!/^[0-9a-f]{16}\.seg$/.test(n)) continue;
        const { records } = parseSegment(await readFile(join(dir, 'log', n)), Number.parseInt(n, 16));
        for (const r of records) if (r.kind === KIND_REMOVAL) found.push(r.id);
      }
      return found.sort();
    };

    // no current segment: the removal record goes into the sealed one, where its records end (its blocks exist)
    expect(log.removed(ids[0] ?? '')).toBe(true);
    await waitFor(async () => (await removals()).includes(ids[0] ?? ''), {
      what: 'the removal record in the sealed segment',
    });
    // a removal that no segment takes (that write fails: nothing more goes into the segment) is kept, not dropped
    ctl.broken = true;
    expect(log.removed(ids[1] ?? '')).toBe(true);
    await waitFor(() => lines.some((l) => l.includes('could not record a removal')), {
      what: 'the removal not recorded',
    });
    // space returns (and the pause after the failed attempt is over): the next tick makes a segment and writes it
    ctl.broken = false;
    ctl.full = false;
    ctl.t += 60_000;
    await waitFor(async () => (await removals()).includes(ids[1] ?? ''), {
      what: 'the removal record written once a segment could be made',
    });
    await log.close();
    // a start restores only the message not removed (and the large ones)
    await mkdir(join(dir, 'queue'), { recursive: true });
    await replayAcceptLog(dir, defaultSpoolFs, logger, (id) => id.length === 16);
    const restored = (await readdir(join(dir, 'queue'))).filter((n) => n.startsWith('aaaa'));
    expect(restored).toEqual([`${ids[2]}.msg`]);
  });
});
