import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { runProcess } from '../../test/support/process.ts';
import { LOCK_FILE, lockSpool, SpoolInUseError, type SpoolLock } from './lock.ts';

let dir: string;
const locks: SpoolLock[] = [];
const take = async (d: string, waitMs = 0): Promise<SpoolLock> => {
  const l = await lockSpool(d, { waitMs, pollMs: 20 });
  locks.push(l);
  return l;
};

afterEach(async () => {
  for (const l of locks.splice(0)) l.release();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** A child process that holds the lock until it is killed; resolves once it holds it. */
async function holder(d: string): Promise<{ pid: number; kill: () => Promise<void> }> {
  const code = `import { lockSpool } from ${JSON.stringify(new URL('./lock.ts', import.meta.url).pathname)};
await lockSpool(process.argv[1]); process.stdout.write('locked\\n'); setInterval(() => {}, 1000);`;
  const p = spawn(process.execPath, ['--input-type=module', '-e', code, d], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    p.stdout.on('data', (b: Buffer) => {
      if (b.toString().includes('locked')) resolve();
    });
    p.on('exit', (c) => reject(new Error(`holder exited ${c}`)));
  });
  return {
    pid: p.pid as number,
    kill: () =>
      new Promise<void>((resolve) => {
        p.once('exit', () => resolve());
        p.kill('SIGKILL');
      }),
  };
}

describe('lockSpool', () => {
  it('creates the folder, and a second lock on it fails naming the holder; released, it can be taken again', async () => {
    dir = await mkdtemp(join(tmpdir(), 'mailroute-lock-'));
    const spool = join(dir, 'spool');
    const first = await take(spool);
    const err = await take(spool).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SpoolInUseError);
    expect(String(err)).toContain(`the spool folder ${spool} is in use by relay process ${process.pid} on `);
    expect(String(err)).toContain(join(spool, LOCK_FILE));
    first.release();
    first.release(); // idempotent
    await take(spool);
  });

  it('waits for a holder that lets go within waitMs', async () => {
    dir = await mkdtemp(join(tmpdir(), 'mailroute-lock-'));
    const first = await take(dir);
    let waiting = false;
    const second = lockSpool(dir, { waitMs: 10_000, pollMs: 20, onWait: () => (waiting = true) });
    await expect.poll(() => waiting).toBe(true);
    first.release();
    locks.push(await second);
  });

  it('holds against another process, and the kernel lets go when that process is killed (kill -9)', async () => {
    dir = await mkdtemp(join(tmpdir(), 'mailroute-lock-'));
    const h = await holder(dir);
    await expect(take(dir, 200)).rejects.toThrow(`is in use by relay process ${h.pid} on `);
    await h.kill();
    await take(dir); // at once: no stale lock
  });

  it('a holder file with garbage in it still gives a clear error', async () => {
    dir = await mkdtemp(join(tmpdir(), 'mailroute-lock-'));
    await take(dir);
    for (const garbage of [
      'not json',
      '[1,2]',
      JSON.stringify({ pid: 'x', host: 'h'.repeat(10_000) }),
      JSON.stringify({ pid: 7, host: 'h' }) + ' '.repeat(64 * 1024 * 1024), // read no further than 4 KiB
    ]) {
      await writeFile(join(dir, 'spool.lock.json'), garbage);
      const err = String(await take(dir).catch((e: unknown) => e));
      expect(err).toMatch(/is in use by (another relay process|relay process)/);
      expect(err.length).toBeLessThan(1000);
    }
    // a FIFO in its place (nothing ever writes to it): the error comes, nothing hangs
    await rm(join(dir, 'spool.lock.json'));
    expect((await runProcess('mkfifo', [join(dir, 'spool.lock.json')])).code).toBe(0);
    await expect(take(dir)).rejects.toThrow('is in use by another relay process');
  });

  it('a lock file something else wrote into is emptied and locked; a file system without locks leaves the relay unguarded, not stopped', async () => {
    dir = await mkdtemp(join(tmpdir(), 'mailroute-lock-'));
    await writeFile(join(dir, LOCK_FILE), 'not a database '.repeat(100));
    const l = await take(dir);
    expect(l.unguarded).toBeUndefined();
    await expect(take(dir)).rejects.toThrow(SpoolInUseError);
    l.release();
    const noLocks = await lockSpool(dir, {
      database: () => ({
        exec() {
          throw Object.assign(new Error('disk I/O error'), { errcode: 10 }); // SQLITE_IOERR, as ENOLCK gives
        },
        close: () => undefined,
      }),
    });
    expect(noLocks.unguarded).toBe(`${join(dir, LOCK_FILE)}: disk I/O error`);
    noLocks.release();
  });

  it('a path under a file throws as it is', async () => {
    dir = await mkdtemp(join(tmpdir(), 'mailroute-lock-'));
    await writeFile(join(dir, 'file'), 'x');
    await expect(lockSpool(join(dir, 'file', 'spool'))).rejects.toThrow(/ENOTDIR|EEXIST/);
    expect(await readFile(join(dir, 'file'), 'utf8')).toBe('x');
  });
});
