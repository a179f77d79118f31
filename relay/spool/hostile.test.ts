// The spool's contents are input too: what a corrupted disk, a bad restore or a local writer can put in the queue
// folder must never hang the process, exhaust its memory, reach a downstream server, or stay in the queue forever.
import { execFile } from 'node:child_process';
import { constants as fsConstants } from 'node:fs';
import {
  chmod,
  mkdir,
  mkdtemp,
  open,
  readdir,
  readFile,
  rm,
  stat,
  truncate,
  utimes,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { fakeWallClock, restoreWallClock, stepWallClock } from '../../test/support/clock.ts';
import { spoolEnvelope } from '../../test/support/delivery.ts';
import { spoolFsWith } from '../../test/support/spool-fs.ts';
import { waitFor, withDeadline } from '../../test/support/wait.ts';
import { adoptQueue } from './adopt.ts';
import { encodeMessageFile, FOOTER_LEN } from './format.ts';
import { defaultSpoolFs, FsWatch, openSpool, type SpoolFs } from './spool.ts';
import type { LoadResult, SpoolState } from './types.ts';

const logger = pino({ level: 'silent' });
const MESSAGE = 'Subject: hi\r\n\r\nbody\r\n';
const run = promisify(execFile);

/** A spool fs that records each message file's mode changes and closes as "chmod ID MODE" and "close ID". */
function markEvents(): { events: string[]; fs: SpoolFs } {
  const events: string[] = [];
  const fs = spoolFsWith((p, _flags, fh) => {
    const name = p.slice(p.lastIndexOf('/') + 1);
    const id = name.slice(0, name.indexOf('.'));
    if (!name.endsWith('.msg')) return {}; // the accept log's segments, the directory
    return {
      async chmod(m: number) {
        await fh.chmod(m);
        events.push(`chmod ${id} ${m.toString(8)}`);
      },
      async close() {
        await fh.close();
        events.push(`close ${id}`);
      },
    };
  });
  return { events, fs };
}

/** The permission bits of a queued message file. */
const modeOf = async (dir: string, id: string): Promise<number> =>
  (await stat(join(dir, 'queue', `${id}.msg`))).mode & 0o777;

let dir: string;
const fifos: string[] = [];
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mailroute-hostile-'));
});
afterEach(async () => {
  // A reader blocked on a FIFO (the old behaviour) is released by a writer: do not leave libuv threads stuck.
  for (const f of fifos.splice(0)) {
    await open(f, fsConstants.O_WRONLY | fsConstants.O_NONBLOCK).then(
      (fh) => fh.close(),
      () => undefined,
    );
  }
  await rm(dir, { recursive: true, force: true });
});

const quarantined = async (): Promise<string[]> => readdir(join(dir, 'quarantine'));
const idAt = (i: number): string => `00000000000${String(i).padStart(5, '0')}`;

/** Counts what the spool reports through its metrics. */
function recorder(): { gauge: number[]; total: number; metrics: Parameters<typeof openSpool>[0]['metrics'] } {
  const r = {
    gauge: [] as number[],
    total: 0,
    metrics: undefined as Parameters<typeof openSpool>[0]['metrics'],
  };
  r.metrics = {
    quarantined: { set: (n: number) => r.gauge.push(n) },
    quarantinedTotal: { inc: (n = 1) => (r.total += n) },
  };
  return r;
}

describe('spool: hostile or damaged contents', () => {
  it('20 FIFOs named like messages: loads answer at once, are quarantined, and accepting still works', async () => {
    const first = await openSpool({ dir, logger });
    // 10 FIFOs in place of state files of real messages, 10 in place of message files
    const withState: string[] = [];
    for (let i = 0; i < 10; i++) {
      const r = await first.accept(spoolEnvelope(), Readable.from([MESSAGE]));
      if (!r.ok) throw r.error;
      withState.push(r.id);
    }
    const statePaths = withState.map((id) => join(dir, 'queue', `${id}.json`));
    fifos.push(...statePaths);
    await run('mkfifo', statePaths);
    // A state file is only looked for when the listing at start showed one: a fresh instance.
    const spool = await openSpool({ dir, logger });
    const bare = Array.from({ length: 10 }, (_, i) => idAt(i));
    const msgPaths = bare.map((id) => join(dir, 'queue', `${id}.msg`));
    fifos.push(...msgPaths);
    await run('mkfifo', msgPaths);
    const loads = await withDeadline(
      5000,
      Promise.all([...withState, ...bare].map((id) => spool.load(id))),
      'load of FIFOs',
    );
    // a FIFO state file is set aside and its message goes on from the initial state; a FIFO message is quarantined
    for (const r of loads.slice(0, 10)) expect(r.ok).toBe(true);
    for (const r of loads.slice(10)) expect(r).toMatchObject({ ok: false, reason: 'corrupt' });
    const accepted = await withDeadline(
      5000,
      spool.accept(spoolEnvelope(), Readable.from([MESSAGE])),
      'accept',
    );
    expect(accepted.ok).toBe(true);
    expect(spool.stalled()).toBeUndefined();
    expect((await quarantined()).length).toBe(20);
  });

  it('FIFOs present at start are quarantined by the listing alone, never opened', async () => {
    const paths = Array.from({ length: 20 }, (_, i) => join(dir, 'queue', `${idAt(i)}.msg`));
    await mkdir(join(dir, 'queue'), { recursive: true });
    fifos.push(...paths);
    await run('mkfifo', paths);
    const spool = await withDeadline(5000, openSpool({ dir, logger }), 'openSpool');
    expect(spool.recovery).toMatchObject({ messages: 0, quarantined: 20 });
    expect(await spool.list()).toEqual([]);
  });

  it('a directory named <id>.msg is quarantined (at start, and on load when it appears later)', async () => {
    await mkdir(join(dir, 'queue', `${idAt(1)}.msg`), { recursive: true });
    const spool = await openSpool({ dir, logger });
    expect(spool.recovery.quarantined).toBe(1);
    await mkdir(join(dir, 'queue', `${idAt(2)}.msg`));
    expect(await spool.list()).toEqual([idAt(2)]);
    await expect(spool.load(idAt(2))).resolves.toMatchObject({ ok: false, reason: 'corrupt' });
    expect(await spool.list()).toEqual([]);
    expect((await quarantined()).filter((n) => n.includes('.msg.')).length).toBe(2);
  });

  it('a symlink named <id>.msg is not followed', async () => {
    const spool = await openSpool({ dir, logger });
    const r = await spool.accept(spoolEnvelope(), Readable.from([MESSAGE]));
    if (!r.ok) throw r.error;
    await run('ln', ['-s', join(dir, 'queue', `${r.id}.msg`), join(dir, 'queue', `${idAt(3)}.msg`)]);
    await expect(spool.load(idAt(3))).resolves.toMatchObject({ ok: false, reason: 'corrupt' });
    await expect(spool.load(r.id)).resolves.toMatchObject({ ok: true });
  });

  it('a 1.2 GB sparse message file whose footer claims a 1.2 GB state is quarantined without reading it', async () => {
    const spool = await openSpool({ dir, logger });
    const id = idAt(4);
    const path = join(dir, 'queue', `${id}.msg`);
    const size = 1_200_000_000;
    await writeFile(path, '');
    await truncate(path, size);
    const fh = await open(path, 'r+');
    const claim = size - FOOTER_LEN - 100;
    await fh.write(
      Buffer.from(`\nmailroute-spool-v1 ${String(claim).padStart(12, '0')}\n`),
      0,
      FOOTER_LEN,
      size - FOOTER_LEN,
    );
    await fh.close();
    const rss = process.memoryUsage().rss;
    const r = await spool.load(id);
    expect(process.memoryUsage().rss - rss).toBeLessThan(64 * 1024 * 1024);
    expect(r).toMatchObject({ ok: false, reason: 'corrupt' });
    expect(!r.ok && r.error).toMatch(/more than the limit/);
  });

  it('a state file larger than the limit is set aside; the message goes on from its initial state', async () => {
    // no accept log: the message has its own file from the start, so its state changes go to a state file
    const spool = await openSpool({ dir, logger, maxStateBytes: 64 * 1024, acceptLog: false });
    const r = await spool.accept(spoolEnvelope(), Readable.from([MESSAGE]));
    if (!r.ok) throw r.error;
    await spool.update(r.id, (s) => ({ ...s, legs: s.legs.map((l) => ({ ...l, attempts: 1 })) }));
    await truncate(join(dir, 'queue', `${r.id}.json`), 200 * 1024);
    const again = await openSpool({ dir, logger, maxStateBytes: 64 * 1024 });
    const loaded = await again.load(r.id);
    expect(loaded.ok && loaded.state.legs.map((l) => l.attempts)).toEqual([0, 0]);
    expect((await quarantined()).some((n) => n.startsWith(`${r.id}.json`))).toBe(true);
  });

  const damage: [string, (s: SpoolState) => void][] = [
    [
      'CRLF in a leg recipient',
      (s) => (s.legs[0]!.leg.recipient = 'bob@example.com>\r\nRCPT TO:<x@evil.example'),
    ],
    ['CRLF in the sender', (s) => (s.meta.mailFrom = 'a@b.example>\r\nRSET')],
    ['an unknown TLS mode', (s) => Object.assign(s.legs[0]!.leg.server, { tls: 'Sometimes' })],
  ];
  it.each(damage)(
    'a state file with %s is never delivered: the message is quarantined',
    async (_what, hurt) => {
      const spool = await openSpool({ dir, logger, acceptLog: false });
      const r = await spool.accept(spoolEnvelope(), Readable.from([MESSAGE]));
      if (!r.ok) throw r.error;
      const st = await spool.load(r.id);
      if (!st.ok) throw new Error(st.error);
      const bad = structuredClone(st.state);
      hurt(bad);
      // the initial state in the message file is damaged the same way: nothing valid is left to go on from
      const path = join(dir, 'queue', `${r.id}.msg`);
      await writeFile(path, encodeMessageFile(Buffer.from(MESSAGE), bad));
      await writeFile(join(dir, 'queue', `${r.id}.json`), JSON.stringify(bad));
      const again = await openSpool({ dir, logger, acceptLog: false });
      const loaded: LoadResult = await again.load(r.id);
      expect(loaded).toMatchObject({ ok: false, reason: 'corrupt' });
      expect(await again.list()).toEqual([]);
    },
  );

  it('an empty state file (an old, unsynced write cut short) is removed, not quarantined', async () => {
    const spool = await openSpool({ dir, logger });
    const r = await spool.accept(spoolEnvelope(), Readable.from([MESSAGE]));
    if (!r.ok) throw r.error;
    await writeFile(join(dir, 'queue', `${r.id}.json`), '');
    const again = await openSpool({ dir, logger });
    await expect(again.load(r.id)).resolves.toMatchObject({ ok: true });
    expect(await quarantined()).toEqual([]);
    expect(await readdir(join(dir, 'queue'))).toEqual([`${r.id}.msg`]);
  });

  it('the quarantine is bounded by count and age, with a gauge and a total', async () => {
    const m = recorder();
    const q = join(dir, 'quarantine');
    await mkdir(q, { recursive: true });
    const old = new Date(Date.now() - 8 * 24 * 3600_000);
    for (let i = 0; i < 3; i++) {
      await writeFile(join(q, `old-${i}`), 'x');
      await utimes(join(q, `old-${i}`), old, old);
    }
    await writeFile(join(q, 'recent'), 'x');
    const spool = await openSpool({
      dir,
      logger,
      metrics: m.metrics,
      quarantineMaxFiles: 5,
      quarantineAgeAfterMs: 0,
    });
    // the old ones are past the 7-day default
    expect((await quarantined()).sort()).toEqual(['recent']);
    expect(m.gauge.at(-1)).toBe(1);
    for (let i = 0; i < 8; i++) {
      await writeFile(join(dir, 'queue', `${idAt(i)}.msg`), 'not a message file');
      await spool.load(idAt(i));
    }
    expect(m.total).toBe(8);
    await waitFor(async () => (await quarantined()).length <= 5, { timeoutMs: 5000, what: 'prune' });
    const left = await quarantined();
    expect(left.length).toBe(5);
    expect(left).not.toContain('recent'); // the oldest went first
    expect(m.gauge.at(-1)).toBeLessThanOrEqual(5);
  });

  it('the age limit is not applied in the first hour, nor after the wall clock jumped ahead: a clock 8 days ahead at boot deletes nothing', async () => {
    const q = join(dir, 'quarantine');
    await mkdir(q, { recursive: true });
    await writeFile(join(q, 'an-hour-ago'), 'x');
    const hourAgo = new Date(Date.now() - 3600_000);
    await utimes(join(q, 'an-hour-ago'), hourAgo, hourAgo);
    fakeWallClock(); // before the spool exists
    try {
      stepWallClock(8 * 24 * 3600_000); // the node's clock at boot, before NTP
      const first = await openSpool({ dir, logger });
      expect(await quarantined()).toEqual(['an-hour-ago']); // the start's prune: count only
      await first.close();
      // a relay that has run an hour (monotonic) and whose wall clock then jumped 8 days ahead: count only again
      restoreWallClock();
      fakeWallClock();
      const m = recorder();
      const second = await openSpool({
        dir,
        logger,
        metrics: m.metrics,
        quarantineMaxFiles: 2,
        quarantineAgeAfterMs: 0,
      });
      stepWallClock(8 * 24 * 3600_000);
      // two damaged files go to quarantine: over the count limit, so a prune comes within a second; they are taken
      // away meanwhile, so that only the age limit could remove the hour-old entry
      for (let i = 0; i < 2; i++) {
        await writeFile(join(dir, 'queue', `${idAt(i)}.msg`), 'not a message file');
        await second.load(idAt(i));
      }
      for (const name of await quarantined()) if (name !== 'an-hour-ago') await rm(join(q, name));
      await waitFor(() => (m.gauge.at(-1) ?? 3) < 3, { timeoutMs: 5000, what: 'the prune' });
      expect(await quarantined()).toEqual(['an-hour-ago']);
      await second.close();
    } finally {
      restoreWallClock();
    }
  });

  it('a step of the wall clock back does not hold the next prune back for the size of the step', async () => {
    fakeWallClock(); // before the spool exists
    try {
      const spool = await openSpool({ dir, logger, quarantineMaxFiles: 2 });
      stepWallClock(-3_600_000); // the start's prune was an hour "ahead" now
      for (let i = 0; i < 4; i++) {
        await writeFile(join(dir, 'queue', `${idAt(i)}.msg`), 'not a message file');
        await spool.load(idAt(i));
      }
      // a burst over the count prunes once a second at most: on the wall clock the next would wait an hour
      await waitFor(async () => (await quarantined()).length <= 2, { timeoutMs: 5000, what: 'prune' });
      expect(await quarantined()).toHaveLength(2);
    } finally {
      restoreWallClock();
    }
  });
});

describe('spool: durability of results (power cuts)', () => {
  it.each([
    [
      'without the accept log, a message that fits one write: created with O_DSYNC, written durably in that one write',
      false,
      false,
      ['open .msg 700 dsync', 'durable write .msg', 'sync dir'],
    ],
    [
      'without the accept log, a larger message: written in pieces through a second descriptor, then fsynced',
      true,
      false,
      ['open .msg 700 dsync', 'open .msg 0', 'sync .msg', 'sync dir'],
    ],
    [
      'with the accept log, a message too large for it: written in pieces, then fsynced, and its entry',
      true,
      true,
      ['open .msg 700', 'sync .msg', 'sync dir'],
    ],
  ])(
    'accept creates the message file under its final name, makes it and its entry durable before it resolves: %s',
    async (_, large, withLog, expected) => {
      const events: string[] = [];
      const fs = spoolFsWith(
        (p, flags, fh, mode) => {
          const name = p.endsWith('queue') ? 'dir' : p.slice(p.lastIndexOf('.'));
          const dsync = typeof flags === 'number' && (flags & fsConstants.O_DSYNC) !== 0;
          if (name !== 'dir') events.push(`open ${name} ${(mode ?? 0).toString(8)}${dsync ? ' dsync' : ''}`);
          return {
            async writev(d: Uint8Array[], p?: number) {
              const r = await fh.writev(d, p);
              if (dsync) events.push(`durable write ${name}`);
              return r;
            },
            async chmod(m: number) {
              await fh.chmod(m);
              events.push(`chmod ${name} ${m.toString(8)}`);
            },
            async sync() {
              await fh.sync();
              events.push(`sync ${name}`);
            },
          };
        },
        {
          async rename(a, b) {
            await defaultSpoolFs.rename(a, b);
            events.push('rename');
          },
        },
      );
      const spool = await openSpool({ dir, logger, fs, acceptLog: withLog });
      events.length = 0; // the log's first segment is made at the open
      const body = large
        ? [Buffer.from(MESSAGE), Buffer.alloc(300_000, 'x'), Buffer.from('\r\n')]
        : [MESSAGE];
      const r = await spool.accept(spoolEnvelope(), Readable.from(body));
      if (!r.ok) throw r.error;
      const durable = large ? 'sync .msg' : 'durable write .msg';
      const beforeMark = events.filter((e) => !e.startsWith('chmod'));
      expect(beforeMark[0]).toBe(expected[0]);
      expect([...beforeMark].sort()).toEqual([...expected].sort());
      // then the file is marked complete (not needed for the 250: a complete file in 0700 is delivered too)
      await waitFor(() => events.includes('chmod .msg 600'), { timeoutMs: 5000, what: 'the mode change' });
      // only after the message is durable: 0600 is what tells a complete file from one cut short after a crash
      expect(events.indexOf('chmod .msg 600')).toBeGreaterThan(events.indexOf(durable));
      expect(events).not.toContain('rename');
      const fh = await open(join(dir, 'queue', `${r.id}.msg`));
      expect((await fh.stat()).mode & 0o777).toBe(0o600);
      await fh.close();
      await spool.close();
    },
  );

  // without the log, a body of one write (O_DSYNC) and one of several (the bulk descriptor): the file exists from the
  // start of either; with the log, a body too large for it has its file from its first WRITE_CHUNK
  it.each([
    [0, false],
    [200_000, false],
    [200_000, true],
  ])(
    'an id being accepted is not listed, loaded or updated while its file is written (%i bytes before the end, log %s)',
    async (bytes, acceptLog) => {
      const spool = await openSpool({ dir, logger, acceptLog });
      const body = new Readable({ read() {} });
      body.push(Buffer.concat([Buffer.from('Subject: slow\r\n\r\n'), Buffer.alloc(bytes, 'x')]));
      const accepting = spool.accept(spoolEnvelope(), body);
      await waitFor(async () => (await readdir(join(dir, 'queue'))).some((n) => n.endsWith('.msg')), {
        timeoutMs: 5000,
        what: 'the message file created',
      });
      expect(await spool.list()).toEqual([]);
      // the admin API or a hand-off may ask for the id: the half-written file (no footer, 0700) must not be removed
      const name = (await readdir(join(dir, 'queue'))).find((n) => n.endsWith('.msg')) ?? '';
      const id = name.slice(0, -'.msg'.length);
      await expect(spool.load(id)).resolves.toMatchObject({ ok: false, reason: 'missing' });
      await expect(spool.update(id, (s) => s)).resolves.toBeUndefined();
      expect(await readdir(join(dir, 'queue'))).toEqual([name]);
      body.push('body\r\n');
      body.push(null);
      const r = await accepting;
      if (!r.ok) throw r.error;
      expect(r.id).toBe(id);
      expect(await spool.list()).toEqual([r.id]);
      await expect(spool.load(r.id)).resolves.toMatchObject({ ok: true });
    },
  );

  it('after a crash: a message file cut short in mode 0700 (never acknowledged) is removed, not quarantined', async () => {
    const first = await openSpool({ dir, logger, acceptLog: false });
    const r = await first.accept(spoolEnvelope(), Readable.from([MESSAGE]));
    if (!r.ok) throw r.error;
    const path = join(dir, 'queue', `${r.id}.msg`);
    // what a crash before the fsync leaves: part of the body, no footer, still in the mode of a file being written
    await writeFile(path, 'Subject: hi\r\n\r\nbo');
    await chmod(path, 0o700);
    const again = await openSpool({ dir, logger, acceptLog: false });
    expect(await again.list()).toEqual([r.id]);
    await expect(again.load(r.id)).resolves.toMatchObject({ ok: false, reason: 'missing' });
    expect(await readdir(join(dir, 'queue'))).toEqual([]);
    expect(await quarantined()).toEqual([]);
  });

  it('after a crash: a complete message file still in mode 0700 (its 250 may not have been sent) is delivered', async () => {
    const first = await openSpool({ dir, logger, acceptLog: false });
    const r = await first.accept(spoolEnvelope(), Readable.from([MESSAGE]));
    if (!r.ok) throw r.error;
    await chmod(join(dir, 'queue', `${r.id}.msg`), 0o700);
    const again = await openSpool({ dir, logger, acceptLog: false });
    await expect(again.load(r.id)).resolves.toMatchObject({ ok: true });
    expect((await again.readBody(r.id)).toString()).toBe(MESSAGE);
  });

  it('a message file without a footer in mode 0600 (complete, then damaged) is quarantined, not removed', async () => {
    const first = await openSpool({ dir, logger, acceptLog: false });
    const r = await first.accept(spoolEnvelope(), Readable.from([MESSAGE]));
    if (!r.ok) throw r.error;
    // the mark comes a second or two after the 250 (marks.ts), at the latest when the spool closes
    await first.close();
    const path = join(dir, 'queue', `${r.id}.msg`);
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    await truncate(path, 10);
    const again = await openSpool({ dir, logger, acceptLog: false });
    await expect(again.load(r.id)).resolves.toMatchObject({ ok: false, reason: 'corrupt' });
    expect((await quarantined()).some((n) => n.startsWith(`${r.id}.msg.`))).toBe(true);
  });

  it('a message removed before its mark is closed without one; one still queued is marked a period or two later', async () => {
    const { events, fs } = markEvents();
    const spool = await openSpool({ dir, logger, fs, markPeriodMs: 500, acceptLog: false });
    const removed = await spool.accept(spoolEnvelope(), Readable.from([MESSAGE]));
    const kept = await spool.accept(spoolEnvelope(), Readable.from([MESSAGE]));
    if (!removed.ok) throw removed.error;
    if (!kept.ok) throw kept.error;
    expect(await spool.remove(removed.id)).toBe(true);
    for (const e of [`close ${removed.id}`, `chmod ${kept.id} 600`, `close ${kept.id}`])
      await waitFor(() => events.includes(e), { timeoutMs: 5000, what: e });
    expect(events.filter((e) => e.startsWith(`chmod ${removed.id}`))).toEqual([]);
    expect(events.indexOf(`chmod ${kept.id} 600`)).toBeLessThan(events.indexOf(`close ${kept.id}`));
    expect(await modeOf(dir, kept.id)).toBe(0o600);
    await spool.close();
  });

  it('a message whose state is rewritten (it stays queued) is marked then, not at the sweep', async () => {
    const { events, fs } = markEvents();
    // a sweep that never comes within the test: only the rewrite can mark the file
    const spool = await openSpool({ dir, logger, fs, markPeriodMs: 3_600_000, acceptLog: false });
    const r = await spool.accept(spoolEnvelope(), Readable.from([MESSAGE]));
    if (!r.ok) throw r.error;
    expect(events).toEqual([]);
    await spool.update(r.id, (s) => ({ ...s }));
    await waitFor(() => events.includes(`chmod ${r.id} 600`), { timeoutMs: 5000, what: 'the mark' });
    expect(await modeOf(dir, r.id)).toBe(0o600);
    await spool.close();
  });

  it('close() marks and closes every message file still waiting for its mark', async () => {
    const spool = await openSpool({ dir, logger, acceptLog: false });
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const r = await spool.accept(spoolEnvelope(), Readable.from([MESSAGE]));
      if (!r.ok) throw r.error;
      ids.push(r.id);
    }
    await spool.close();
    for (const id of ids) expect(await modeOf(dir, id)).toBe(0o600);
  });

  it('a flood of messages nobody removes holds at most 512 files open for their mark (the rest are marked at once)', async () => {
    const openFiles = async (): Promise<number> => (await readdir('/proc/self/fd')).length;
    const spool = await openSpool({ dir, logger, acceptLog: false });
    const before = await openFiles();
    const ids: string[] = [];
    let most = 0;
    for (let i = 0; i < 700; i++) {
      const r = await spool.accept(spoolEnvelope(), Readable.from([MESSAGE]));
      if (!r.ok) throw r.error;
      ids.push(r.id);
      if (i % 50 === 49) most = Math.max(most, (await openFiles()) - before);
    }
    // 512 held, plus the queue directory's handle and the files beyond the cap being marked: never the 700
    expect(most).toBeGreaterThan(0);
    expect(most).toBeLessThanOrEqual(512 + 32);
    await spool.close();
    expect((await openFiles()) - before).toBeLessThanOrEqual(1);
    const modes = await Promise.all(ids.map((id) => modeOf(dir, id)));
    expect(modes.filter((m) => m !== 0o600)).toEqual([]);
  });

  it('update writes a temp file, fsyncs it, renames it, and fsyncs the directory before it resolves', async () => {
    const events: string[] = [];
    const fs = spoolFsWith(
      (p, _flags, fh) => {
        const name = p.endsWith('queue') ? 'dir' : p.slice(p.lastIndexOf('.', p.length - 5));
        return {
          async sync() {
            await fh.sync();
            events.push(`sync ${name}`);
          },
        };
      },
      {
        async rename(a, b) {
          await defaultSpoolFs.rename(a, b);
          events.push(`rename ${b.slice(b.lastIndexOf('.'))}`);
        },
      },
    );
    const spool = await openSpool({ dir, logger, acceptLog: false, fs });
    const r = await spool.accept(spoolEnvelope(), Readable.from([MESSAGE]));
    if (!r.ok) throw r.error;
    events.length = 0;
    await spool.update(r.id, (s) => ({ ...s, legs: s.legs.map((l) => ({ ...l, attempts: 1 })) }));
    expect(events).toEqual(['sync .json.tmp', 'rename .json', 'sync dir']);
    events.length = 0;
    await spool.remove(r.id);
    expect(events).toEqual(['sync dir']);
    expect(JSON.parse(await readFile(join(dir, 'queue', `${r.id}.json`), 'utf8').catch(() => 'null'))).toBe(
      null,
    );
  });

  it('concurrent updates share directory fsyncs (group commit)', async () => {
    let dirSyncs = 0;
    const fs = spoolFsWith((p, _flags, fh) =>
      p.endsWith('queue')
        ? {
            async sync() {
              dirSyncs++;
              await fh.sync();
            },
          }
        : {},
    );
    // no accept log: the messages have their own files, so their state changes go to state files
    const spool = await openSpool({ dir, logger, fs, acceptLog: false });
    const ids: string[] = [];
    for (let i = 0; i < 40; i++) {
      const r = await spool.accept(spoolEnvelope(), Readable.from([MESSAGE]));
      if (!r.ok) throw r.error;
      ids.push(r.id);
    }
    dirSyncs = 0;
    await Promise.all(
      ids.map((id) => spool.update(id, (s) => ({ ...s, legs: s.legs.map((l) => ({ ...l, attempts: 1 })) }))),
    );
    expect(dirSyncs).toBeGreaterThan(0);
    expect(dirSyncs).toBeLessThan(40);
  });

  it('holds the queue directory open for its fsyncs: opened once, reopened after a failed fsync, after 1 s or a clock set back, released by close()', async () => {
    let dirOpens = 0;
    let dirCloses = 0;
    let failNext = false;
    const synced: number[] = []; // inode of the directory each fsync went to
    const fs = spoolFsWith((p, _flags, fh) => {
      if (!p.endsWith('queue')) return {};
      dirOpens++;
      const ino = stat(p).then((st) => st.ino); // the directory this handle was opened on (nothing replaces it yet)
      return {
        async sync() {
          if (failNext) {
            failNext = false;
            throw Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' });
          }
          synced.push(await ino);
          await fh.sync();
        },
        async close() {
          dirCloses++;
          await fh.close();
        },
      };
    });
    let now = Date.parse('2026-12-03T12:00:00Z');
    const spool = await openSpool({ dir, logger, acceptLog: false, fs, clock: () => new Date(now) });
    const opensAtStart = dirOpens;
    const accept = () => spool.accept(spoolEnvelope(), Readable.from([MESSAGE]));
    for (let i = 0; i < 5; i++) expect((await accept()).ok).toBe(true);
    expect(dirOpens - opensAtStart).toBe(1);
    // A failed directory fsync fails the accepts that waited for it (nothing kept), and drops the handle.
    failNext = true;
    expect(await accept()).toMatchObject({ ok: false, storage: true });
    expect(await spool.list()).toHaveLength(5);
    expect((await accept()).ok).toBe(true);
    expect(dirOpens - opensAtStart).toBe(2);
    // A queue directory removed and made again under the running spool: within a second its fsyncs go to the new one.
    const queue = join(dir, 'queue');
    await rm(queue, { recursive: true });
    await mkdir(queue);
    const newIno = (await stat(queue)).ino;
    now += 1001;
    const r = await accept();
    if (!r.ok) throw r.error;
    expect(synced.at(-1)).toBe(newIno);
    expect(await spool.list()).toEqual([r.id]);
    expect(dirOpens - opensAtStart).toBe(3);
    // The clock set back an hour: the handle is replaced too, not kept until the clock catches up.
    now -= 3_600_000;
    expect((await accept()).ok).toBe(true);
    expect(dirOpens - opensAtStart).toBe(4);
    await spool.close();
    await waitFor(() => dirCloses === dirOpens, { what: 'every directory handle closed' });
    // After close() nothing more is acknowledged: the directory fsync an accept needs fails as a storage error.
    expect(await accept()).toMatchObject({ ok: false, storage: true });
    expect(dirOpens - opensAtStart).toBe(4);
  });
});

describe('spool: stall watchdog', () => {
  it('FsWatch reports the oldest call in progress and forgets finished ones', async () => {
    let now = 1000;
    const w = new FsWatch(() => now);
    let release: () => void = () => undefined;
    void w.track('open', new Promise<void>((r) => (release = r)));
    await w.track('fsync', Promise.resolve());
    now = 5000;
    expect(w.oldest()).toEqual({ op: 'open', ageMs: 4000 });
    release();
    await new Promise((r) => setImmediate(r));
    expect(w.oldest()).toBeUndefined();
  });

  it('a step of the wall clock (an hour forward) makes no call in flight look stalled: ages are monotonic', () => {
    fakeWallClock();
    let release: () => void = () => undefined;
    try {
      const w = new FsWatch();
      void w.track('open', new Promise<void>((r) => (release = r)));
      stepWallClock(3600_000);
      // a liveness probe reading this would restart a healthy pod
      expect(w.oldest()?.ageMs).toBeLessThan(60_000);
    } finally {
      release();
      restoreWallClock();
    }
  });

  it('stalled() names a spool call pending longer than the limit', async () => {
    let hang = false;
    const fs: SpoolFs = {
      ...defaultSpoolFs,
      openRead: (p) => (hang ? new Promise(() => undefined) : defaultSpoolFs.openRead(p)),
    };
    const spool = await openSpool({ dir, logger, fs, stallMs: 50 });
    const r = await spool.accept(spoolEnvelope(), Readable.from([MESSAGE]));
    if (!r.ok) throw r.error;
    const other = await openSpool({ dir, logger, fs, stallMs: 50 });
    hang = true;
    void other.load(r.id);
    expect(other.stalled()).toBeUndefined();
    await waitFor(() => other.stalled() !== undefined, {
      timeoutMs: 5000,
      intervalMs: 10,
      what: 'stall report',
    });
    expect(other.stalled()).toMatch(/\(open\) has been waiting/);
  });
});

describe('spool: adopting a former worker folder', () => {
  it('moves regular message files only; a FIFO or a directory under a spool name stays behind', async () => {
    const from = join(dir, 'w1');
    const to = join(dir, 'root');
    const first = await openSpool({ dir: from, logger });
    const r = await first.accept(spoolEnvelope(), Readable.from([MESSAGE]));
    if (!r.ok) throw r.error;
    const fifo = join(from, 'queue', `${idAt(7)}.msg`);
    fifos.push(fifo);
    await run('mkfifo', [fifo]);
    await mkdir(join(from, 'queue', `${idAt(8)}.msg`));
    expect(await withDeadline(5000, adoptQueue(from, to), 'adoptQueue')).toBe(1);
    expect(await readdir(join(to, 'queue'))).toEqual([`${r.id}.msg`]);
    expect((await readdir(join(from, 'queue'))).sort()).toEqual([`${idAt(7)}.msg`, `${idAt(8)}.msg`]);
  });
});
