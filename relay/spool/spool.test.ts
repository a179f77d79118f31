import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { headerBlock, isQueueId, newQueueIdGenerator, openSpool } from './spool.ts';
import { isWireReady } from './wire-ready.ts';
import { spoolEnvelope } from '../../test/support/delivery.ts';
import { spoolFsWith } from '../../test/support/spool-fs.ts';
import { waitFor } from '../../test/support/wait.ts';

const logger = pino({ level: 'silent' });

const MESSAGE = 'Received: from x\r\nSubject: hi\r\nFrom: a@b\r\n\r\nbody line\r\n.. dotted\r\n';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mailroute-spool-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('queue ids', () => {
  it('are unique, 16 chars of [0-9a-z] and sort by time', () => {
    let t = 1_700_000_000_000;
    const gen = newQueueIdGenerator(() => new Date(t));
    const ids: string[] = [];
    for (let i = 0; i < 2000; i++) {
      if (i % 100 === 0) t += 1;
      ids.push(gen());
    }
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids.every(isQueueId)).toBe(true);
    const firsts = ids.filter((_, i) => i % 100 === 0);
    expect([...firsts].sort()).toEqual(firsts);
  });
  it('keep sorting by arrival within a process after the wall clock steps back', () => {
    let t = 1_700_000_000_000;
    const gen = newQueueIdGenerator(() => new Date(t));
    const before = gen();
    t -= 3_600_000; // NTP steps the clock back an hour
    const after = gen();
    expect(after.slice(0, 9)).toBe(before.slice(0, 9)); // the last time kept (the counter orders them)
    t += 3_600_000 + 5; // the clock passes the last time again
    const later = gen();
    expect(later.slice(0, 9) > after.slice(0, 9)).toBe(true);
  });
  it('rejects path-like input', () => {
    expect(isQueueId('../../etc/passwd')).toBe(false);
    expect(isQueueId('ABCDEFGHIJKLMNOP')).toBe(false);
  });
});

describe('headerBlock', () => {
  it.each([
    ['A: 1\r\nB: 2\r\n\r\nbody', 'A: 1\r\nB: 2\r\n'],
    ['A: 1\nB: 2\n\nbody', 'A: 1\nB: 2\n'],
    ['A: 1\r\nB: 2', 'A: 1\r\n'],
  ])('%j', (raw, want) => {
    expect(headerBlock(Buffer.from(raw)).toString()).toBe(want);
  });
});

describe('spool', () => {
  // the file format; without the accept log, whose messages get a file only if they stay queued (accept-log.test.ts)
  it('accepts, loads, updates and removes a message', async () => {
    const spool = await openSpool({ dir, logger, acceptLog: false });
    const r = await spool.accept(spoolEnvelope(), Readable.from([Buffer.from(MESSAGE)]));
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    // one file: the body byte for byte, then the initial state and the footer (format.ts)
    const file = await readFile(join(dir, 'queue', `${r.id}.msg`));
    expect(file.subarray(0, Buffer.byteLength(MESSAGE)).toString()).toBe(MESSAGE);
    expect(file.subarray(Buffer.byteLength(MESSAGE)).toString()).toMatch(
      /^\{"version":1,.*\}\nmailroute-spool-v1 \d{12}\n$/s,
    );
    expect(await readdir(join(dir, 'queue'))).toEqual([`${r.id}.msg`]);
    expect((await (await openSpool({ dir, logger, acceptLog: false })).readBody(r.id)).toString()).toBe(
      MESSAGE,
    );
    expect(await spool.list()).toEqual([r.id]);
    const loaded = await spool.load(r.id);
    expect(loaded.ok && loaded.state.legs.map((l) => [l.recipient, l.leg.role, l.state])).toEqual([
      ['bob@example.com', 'primary', 'pending'],
      ['bob@example.com', 'copy', 'pending'],
    ]);
    expect(loaded.ok && loaded.state.size).toBe(Buffer.byteLength(MESSAGE));
    const updated = await spool.update(r.id, (s) => ({
      ...s,
      legs: s.legs.map((l, i) => (i === 0 ? { ...l, state: 'delivered', attempts: 1 } : l)),
    }));
    expect(updated?.legs[0]?.state).toBe('delivered');
    const again = await spool.load(r.id);
    expect(again.ok && again.state.legs[0]?.state).toBe('delivered');
    expect((await spool.readHeaders(r.id)).toString()).toBe(
      'Received: from x\r\nSubject: hi\r\nFrom: a@b\r\n',
    );
    expect(await spool.remove(r.id)).toBe(true);
    expect(await spool.remove(r.id)).toBe(false);
    expect(await readdir(join(dir, 'queue'))).toEqual([]);
    expect(await spool.load(r.id)).toMatchObject({ ok: false, reason: 'missing' });
  });

  it('an update that returns the state it was given writes nothing', async () => {
    const spool = await openSpool({ dir, logger, acceptLog: false });
    const r = await spool.accept(spoolEnvelope(), Readable.from([MESSAGE]));
    if (!r.ok) throw r.error;
    const before = await spool.load(r.id);
    const same = await spool.update(r.id, (s) => s);
    expect(same).toEqual(before.ok && before.state);
    // no state file was written beside the message file
    expect(await readdir(join(dir, 'queue'))).toEqual([`${r.id}.msg`]);
    const changed = await spool.update(r.id, (s) => ({
      ...s,
      legs: s.legs.map((l) => ({ ...l, attempts: 1 })),
    }));
    expect(changed?.legs[0]?.attempts).toBe(1);
    expect((await readdir(join(dir, 'queue'))).sort()).toEqual([`${r.id}.json`, `${r.id}.msg`]);
  });

  it('serves states it wrote from memory (write-through); another instance reads the file', async () => {
    // no accept log: the message has its own file from the start, so its state changes go to a state file
    const spool = await openSpool({ dir, logger, acceptLog: false });
    const r = await spool.accept(spoolEnvelope(), Readable.from([MESSAGE]));
    if (!r.ok) throw r.error;
    const path = join(dir, 'queue', `${r.id}.json`);
    const initial = await spool.load(r.id);
    if (!initial.ok) throw new Error(initial.error);
    await writeFile(path, JSON.stringify(initial.state).replaceAll('"attempts":0', '"attempts":7'));
    const a = await spool.load(r.id);
    expect(a.ok && a.state.legs[0]?.attempts).toBe(0);
    const updated = await spool.update(r.id, (st) => ({
      ...st,
      legs: st.legs.map((l) => ({ ...l, attempts: 1 })),
    }));
    expect(updated && updated.legs[0]?.attempts).toBe(1);
    expect(JSON.parse(await readFile(path, 'utf8'))).toEqual(updated);
    const other = await openSpool({ dir, logger });
    const b = await other.load(r.id);
    expect(b.ok && b.state).toEqual(updated);
  });

  it('keeps small fresh bodies in memory (exactly the file bytes), large ones and other instances read the file', async () => {
    const spool = await openSpool({ dir, logger });
    // split into chunks that are views into one larger buffer: the copy must not keep the parent alive
    const parent = Buffer.alloc(MESSAGE.length + 1000, 'x'); // not from the shared pool
    parent.write(MESSAGE);
    const small = await spool.accept(
      spoolEnvelope(),
      Readable.from([parent.subarray(0, 10), parent.subarray(10, MESSAGE.length)]),
    );
    if (!small.ok) throw small.error;
    const kept = spool.body(small.id, MESSAGE.length);
    expect(Buffer.isBuffer(kept)).toBe(true);
    expect(Buffer.isBuffer(kept) && kept.toString()).toBe(MESSAGE);
    expect(Buffer.isBuffer(kept) && kept.buffer.byteLength).toBe(MESSAGE.length); // its own memory, no pool slab
    const other = await openSpool({ dir, logger });
    expect((await other.readBody(small.id)).toString()).toBe(MESSAGE);

    const bigText = `Subject: big\r\n\r\n${`${'y'.repeat(998)}\r\n`.repeat(300)}`;
    const big = await spool.accept(spoolEnvelope(), Readable.from([Buffer.from(bigText)]));
    if (!big.ok) throw big.error;
    const bigSize = Buffer.byteLength(bigText);
    const msgFile = (id: string): string => join(dir, 'queue', `${id}.msg`);
    expect(spool.body(big.id, bigSize)).toEqual({ path: msgFile(big.id), size: bigSize });
    expect((await spool.readBody(big.id)).toString()).toBe(bigText);
    expect(other.body(small.id, MESSAGE.length)).toEqual({ path: msgFile(small.id), size: MESSAGE.length });

    await spool.remove(small.id);
    expect(spool.body(small.id, MESSAGE.length)).toEqual({ path: msgFile(small.id), size: MESSAGE.length });
  });

  it('marks a body kept in memory wire-ready only when its writer vouched for it, asking once after the end', async () => {
    const spool = await openSpool({ dir, logger });
    const text = 'Subject: s\r\n\r\nplain\r\n';
    let asked = 0;
    let endedWhenAsked = false;
    const body = Readable.from([Buffer.from(text)]);
    const vouched = await spool.accept(spoolEnvelope(), body, {
      wireReady: () => {
        asked++;
        endedWhenAsked = body.readableEnded;
        return true;
      },
    });
    if (!vouched.ok) throw vouched.error;
    expect(asked).toBe(1);
    expect(endedWhenAsked).toBe(true);
    const kept = spool.body(vouched.id, text.length);
    expect(Buffer.isBuffer(kept) && isWireReady(kept)).toBe(true);
    for (const opts of [undefined, { wireReady: () => false }]) {
      const r = await spool.accept(spoolEnvelope(), Readable.from([Buffer.from(text)]), opts);
      if (!r.ok) throw r.error;
      const b = spool.body(r.id, text.length);
      expect(Buffer.isBuffer(b)).toBe(true);
      expect(Buffer.isBuffer(b) && isWireReady(b)).toBe(false);
    }
  });

  it('bounds the bodies kept in memory: the oldest leave first', async () => {
    const spool = await openSpool({ dir, logger });
    const text = `Subject: s\r\n\r\n${`${'z'.repeat(998)}\r\n`.repeat(200)}`; // ~200 KiB, under the per-message cap
    const ids: string[] = [];
    for (let i = 0; i < 45; i++) {
      const r = await spool.accept(spoolEnvelope(), Readable.from([Buffer.from(text)]));
      if (!r.ok) throw r.error;
      ids.push(r.id);
    }
    const inMemory = ids.filter((id) => Buffer.isBuffer(spool.body(id, Buffer.byteLength(text))));
    expect(inMemory.length).toBeGreaterThan(0);
    expect(inMemory.length * Buffer.byteLength(text)).toBeLessThanOrEqual(8 * 1024 * 1024);
    expect(inMemory).toEqual(ids.slice(ids.length - inMemory.length));
  });
  it('serializes concurrent updates of one message', async () => {
    const spool = await openSpool({ dir, logger });
    const r = await spool.accept(spoolEnvelope(), Readable.from([MESSAGE]));
    if (!r.ok) throw r.error;
    await Promise.all(
      [0, 1].map((i) =>
        spool.update(r.id, (s) => ({
          ...s,
          legs: s.legs.map((l, j) => (j === i ? { ...l, state: 'delivered' } : l)),
        })),
      ),
    );
    const s = await spool.load(r.id);
    expect(s.ok && s.state.legs.map((l) => l.state)).toEqual(['delivered', 'delivered']);
  });

  it('group-commits: concurrent accepts share directory fsyncs and all are durable before they resolve', async () => {
    let dirSyncs = 0;
    const fs = spoolFsWith((p, flags, fh) =>
      p.endsWith('queue') && flags === 'r'
        ? {
            async sync() {
              dirSyncs++;
              await fh.sync();
            },
          }
        : {},
    );
    const spool = await openSpool({ dir, logger, acceptLog: false, fs });
    const results = await Promise.all(
      Array.from({ length: 40 }, () => spool.accept(spoolEnvelope(), Readable.from([MESSAGE]))),
    );
    expect(results.every((r) => r.ok)).toBe(true);
    expect(dirSyncs).toBeGreaterThan(0);
    expect(dirSyncs).toBeLessThan(40);
    expect((await spool.list()).length).toBe(40);
  });

  it('a body stream that errors leaves nothing behind and is not a storage error', async () => {
    const spool = await openSpool({ dir, logger });
    const body = new Readable({ read() {} });
    body.push(Buffer.alloc(1000, 'a'));
    setImmediate(() => body.destroy(new Error('bare LF in DATA')));
    const r = await spool.accept(spoolEnvelope(), body);
    expect(r).toMatchObject({ ok: false, storage: false });
    expect(!r.ok && r.error.message).toBe('bare LF in DATA');
    expect(await readdir(join(dir, 'queue'))).toEqual([]);
  });

  // a body of one write (O_DSYNC) and one of several (the bulk descriptor): the file exists from the start of either
  it.each([1000, 200_000])(
    'list() never names an accept that was in progress when it started, even one cut short while it listed (%i bytes)',
    async (bytes) => {
      // The listing is taken while the accept's file exists; the accept then fails and removes it before list() returns.
      let hold = false;
      let listingTaken!: () => void;
      let releaseListing!: () => void;
      const taken = new Promise<void>((resolve) => (listingTaken = resolve));
      const released = new Promise<void>((resolve) => (releaseListing = resolve));
      const fs = spoolFsWith(() => ({}), {
        async readdir(p) {
          const names = await readdir(p);
          if (hold) {
            listingTaken();
            await released;
          }
          return names;
        },
      });
      // (without the accept log: every accept has its file from the start)
      const spool = await openSpool({ dir, logger, fs, acceptLog: false });
      const kept = await spool.accept(spoolEnvelope(), Readable.from([Buffer.from(MESSAGE)]));
      if (!kept.ok) throw kept.error;
      const body = new Readable({ read() {} });
      body.push(Buffer.alloc(bytes, 'a'));
      const accepting = spool.accept(spoolEnvelope(), body);
      await waitFor(async () => (await readdir(join(dir, 'queue'))).length === 2, {
        what: 'the second file',
      });
      hold = true;
      const listing = spool.list();
      await taken;
      body.destroy(new Error('DATA timeout'));
      expect(await accepting).toMatchObject({ ok: false, storage: false });
      expect(await readdir(join(dir, 'queue'))).toEqual([`${kept.id}.msg`]);
      releaseListing();
      expect(await listing).toEqual([kept.id]);
    },
  );

  it('a failure to mark the file complete after its fsync does not fail the accept: the footer decides', async () => {
    const fs = spoolFsWith((p) =>
      p.endsWith('.msg')
        ? { chmod: () => Promise.reject(Object.assign(new Error('EIO: injected'), { code: 'EIO' })) }
        : {},
    );
    const spool = await openSpool({ dir, logger, fs });
    const r = await spool.accept(spoolEnvelope(), Readable.from([MESSAGE]));
    if (!r.ok) throw r.error;
    const again = await openSpool({ dir, logger });
    await expect(again.load(r.id)).resolves.toMatchObject({ ok: true });
    expect((await again.readBody(r.id)).toString()).toBe(MESSAGE);
  });

  // 300 KB: written in pieces through the bulk descriptor and fsynced; 1 KB: one O_DSYNC write, no fsync of the file
  it.each([
    ['write', 'ENOSPC', 300_000],
    ['sync', 'EIO', 300_000],
    ['directory sync', 'EIO', 300_000],
    ['write', 'EIO', 1000],
    ['directory sync', 'EIO', 1000],
  ])(
    'an injected %s failure (%s) is a storage error and leaves no file (%i bytes)',
    async (op, code, bytes) => {
      const fail = (): Promise<never> =>
        Promise.reject(Object.assign(new Error(`${code}: injected`), { code }));
      const fs = spoolFsWith((p, flags, fh) => {
        const isDir = p.endsWith('queue') && flags === 'r';
        if (!p.endsWith('.msg') && !isDir) return {};
        return {
          write: (d) => (op === 'write' ? fail() : fh.write(d)),
          writev: (d, p) => (op === 'write' ? fail() : fh.writev(d, p)),
          sync: () => (op === (isDir ? 'directory sync' : 'sync') ? fail() : fh.sync()),
        };
      });
      const spool = await openSpool({ dir, logger, acceptLog: false, fs });
      const r = await spool.accept(
        spoolEnvelope(),
        Readable.from([Buffer.alloc(bytes, 'x'), Buffer.from('\r\n')]),
      );
      expect(r).toMatchObject({ ok: false, storage: true });
      expect(!r.ok && (r.error as NodeJS.ErrnoException).code).toBe(code);
      expect(await readdir(join(dir, 'queue'))).toEqual([]);
    },
  );

  it('recovery removes temp files and state files without a message, and quarantines unknown files', async () => {
    const first = await openSpool({ dir, logger });
    const a = await first.accept(spoolEnvelope(), Readable.from([MESSAGE]));
    const b = await first.accept(spoolEnvelope(), Readable.from([MESSAGE]));
    if (!a.ok || !b.ok) throw new Error('accept failed');
    const q = join(dir, 'queue');
    await writeFile(join(q, '0000000000000zzz.msg.tmp'), 'partial');
    await writeFile(join(q, '0000000000001zzz.json'), '{}'); // its message file is gone: a removal cut short
    await writeFile(join(q, '0000000000002zzz.eml'), 'a body in an unknown format');
    await writeFile(join(q, 'notes.txt'), 'what is this');
    const spool = await openSpool({ dir, logger });
    expect(spool.recovery).toMatchObject({ messages: 2, removedTemp: 1, removedOrphans: 1, quarantined: 2 });
    expect(await spool.list()).toEqual([a.id, b.id].sort());
    expect((await readdir(q)).sort()).toEqual([`${a.id}.msg`, `${b.id}.msg`].sort());
    const quarantined = await readdir(join(dir, 'quarantine'));
    expect(quarantined.some((n) => n.startsWith('0000000000002zzz.eml'))).toBe(true);
    expect(quarantined.some((n) => n.startsWith('notes.txt'))).toBe(true);
  });

  it('an unreadable state file is quarantined and the message goes on from its initial state', async () => {
    // no accept log: the message has its own file from the start, so its state changes go to a state file
    const first = await openSpool({ dir, logger, acceptLog: false });
    const r = await first.accept(spoolEnvelope(), Readable.from([MESSAGE]));
    if (!r.ok) throw r.error;
    await first.update(r.id, (s) => ({
      ...s,
      legs: s.legs.map((l) => ({ ...l, state: 'delivered' as const })),
    }));
    // what a machine crash can leave of an update that was never fsynced
    await writeFile(join(dir, 'queue', `${r.id}.json`), '{"version":1,"id":');
    const spool = await openSpool({ dir, logger });
    const loaded = await spool.load(r.id);
    expect(loaded.ok && loaded.state.legs.map((l) => l.state)).toEqual(['pending', 'pending']);
    expect(await spool.list()).toEqual([r.id]);
    const q = await readdir(join(dir, 'quarantine'));
    expect(q.filter((n) => n.startsWith(`${r.id}.json`)).length).toBe(1);
    expect(q.filter((n) => n.startsWith(`${r.id}.msg`)).length).toBe(0);
    // the next update writes a state file again
    await spool.update(r.id, (s) => ({ ...s, legs: s.legs.map((l) => ({ ...l, attempts: 1 })) }));
    const again = await (await openSpool({ dir, logger })).load(r.id);
    expect(again.ok && again.state.legs.map((l) => l.attempts)).toEqual([1, 1]);
  });

  it.each([
    ['cut short (no footer)', (f: Buffer) => f.subarray(0, f.length - 10)],
    [
      'state JSON damaged',
      (f: Buffer) => Buffer.from(f.toString('latin1').replace('"version":1', '"version":9'), 'latin1'),
    ],
    ['body grew (size does not match)', (f: Buffer) => Buffer.concat([Buffer.from('X'), f])],
    ['empty', () => Buffer.alloc(0)],
  ])('a message file %s is quarantined on load, never dropped', async (_what, damage) => {
    const first = await openSpool({ dir, logger, acceptLog: false });
    const r = await first.accept(spoolEnvelope(), Readable.from([MESSAGE]));
    if (!r.ok) throw r.error;
    // complete: marked (mode 0600), which the spool does a second or two after the 250, or when it closes
    await first.close();
    const path = join(dir, 'queue', `${r.id}.msg`);
    await writeFile(path, damage(await readFile(path)));
    const spool = await openSpool({ dir, logger, acceptLog: false });
    expect(await spool.list()).toEqual([r.id]);
    const loaded = await spool.load(r.id);
    expect(loaded).toMatchObject({ ok: false, reason: 'corrupt' });
    expect(await spool.list()).toEqual([]);
    expect((await readdir(join(dir, 'quarantine'))).filter((n) => n.startsWith(`${r.id}.msg`)).length).toBe(
      1,
    );
  });

  it('streams a 50 MiB body to disk with RSS growth under 32 MiB (child process)', async () => {
    const script = `
      import { openSpool } from ${JSON.stringify(join(import.meta.dirname, 'spool.ts'))};
      import { Readable } from 'node:stream';
      import pino from 'pino';
      const spool = await openSpool({ dir: process.argv[1], logger: pino({ level: 'silent' }) });
      // A ring of reused buffers: the producer makes no garbage, so RSS shows what the spool holds.
      const ring = Array.from({ length: 8 }, () => { const b = Buffer.alloc(64 * 1024, 'a'); b.write('\\r\\n', b.length - 2); return b; });
      let n = 0;
      let sent = 0; const total = 50 * 1024 * 1024;
      globalThis.gc?.();
      const base = process.memoryUsage().rss; let peak = base;
      const timer = setInterval(() => { peak = Math.max(peak, process.memoryUsage().rss); }, 5);
      const body = new Readable({ read() {
        peak = Math.max(peak, process.memoryUsage().rss);
        if (sent >= total) { this.push(null); return; }
        const chunk = ring[n++ % ring.length]; sent += chunk.length; this.push(chunk);
      } });
      const r = await spool.accept({ mailFrom: 'a@b', recipients: [], clientAddress: '', clientHostname: '', helo: '',
        receivedAt: new Date().toISOString(), revision: '', smtputf8: false, body8bit: false }, body);
      clearInterval(timer);
      process.stdout.write(JSON.stringify({ ok: r.ok, growth: peak - base, sent }));
    `;
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['--expose-gc', '--input-type=module', '-e', script, dir],
      { cwd: join(import.meta.dirname, '../..') },
    );
    const out = JSON.parse(stdout) as { ok: boolean; growth: number; sent: number };
    expect(out.sent).toBe(50 * 1024 * 1024);
    expect(out.ok).toBe(true);
    expect(out.growth).toBeLessThan(32 * 1024 * 1024);
    const bodies = (await readdir(join(dir, 'queue'))).filter((n) => n.endsWith('.msg'));
    expect(bodies.length).toBe(1);
    const id = bodies[0]!.slice(0, -4);
    const loaded = await (await openSpool({ dir, logger })).load(id);
    expect(loaded.ok && loaded.state.size).toBe(50 * 1024 * 1024);
    expect((await stat(join(dir, 'queue', bodies[0]!))).size).toBeGreaterThan(50 * 1024 * 1024);
  });
});
