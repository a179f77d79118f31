// One relay process per spool folder. Two relays started on the same folder (a second `mailroute relay` on one machine,
// a copy of the unit started by hand, two pods given one ReadWriteMany volume, or two on one node sharing a
// ReadWriteOnce one) would each deliver every queued message, so every recipient would get it twice. Each would also
// clean up at start what looks abandoned to it: the other's temporary files, its log segments, its former worker
// folders, which hold messages already answered 250.
//
// The lock is the kernel's: an exclusive POSIX record lock (fcntl) on <spool>/spool.lock, taken through SQLite
// (node:sqlite, built into Node; an exclusive transaction in exclusive locking mode holds it until the database is
// closed). Node has no flock of its own. The kernel lets go of it when the process ends in any way, kill -9
// included, so a restart never finds a stale lock; a lock file with a pid in it would (and pid 1 in every container
// would look alive). It holds between processes of one machine, containers of one node included, and over NFS where
// the mount has locking (not `nolock`). Beside it, <spool>/spool.lock.json names the holder (pid, host, since), for
// the error a second relay prints. It is taken by the process the operator started (the primary with --workers; its
// workers share its spool and exit with it).
//
// Exports: lockSpool(dir, opts) -> SpoolLock, SpoolInUseError, LOCK_FILE.
import { mkdir, open, readFile, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { setTimeout as delay } from 'node:timers/promises';

export const LOCK_FILE = 'spool.lock';
const OWNER_FILE = 'spool.lock.json';

/** SQLite's result codes for a lock another connection holds. */
const SQLITE_BUSY = 5;
const SQLITE_LOCKED = 6;

export interface SpoolLock {
  /** Lets go of the lock (also done by the kernel when the process ends). Idempotent. */
  release(): void;
}

interface LockOwner {
  pid?: number;
  host?: string;
  since?: string;
}

export class SpoolInUseError extends Error {
  constructor(dir: string, owner: LockOwner | undefined, waitedMs: number) {
    const who =
      owner?.pid !== undefined
        ? `relay process ${owner.pid} on ${owner.host ?? 'an unknown host'}${owner.since !== undefined ? `, running since ${owner.since}` : ''}`
        : 'another relay process';
    super(
      `the spool folder ${dir} is in use by ${who} (it holds ${join(dir, LOCK_FILE)}; waited ${Math.round(waitedMs / 1000)} s). ` +
        'Two relays on one spool would deliver every queued message twice and remove files the other one still needs: ' +
        'stop the other relay, or give this one its own --spool',
    );
    this.name = 'SpoolInUseError';
  }
}

/** Locks held by this process: referenced here so that no garbage collection closes their database (and lets go). */
const held = new Set<DatabaseSync>();

function isBusy(err: unknown): boolean {
  const code = (err as { errcode?: unknown } | null)?.errcode;
  return code === SQLITE_BUSY || code === SQLITE_LOCKED;
}

/** One try: the lock, or undefined when another process holds it; any other failure throws. */
function tryLock(path: string): DatabaseSync | undefined {
  let db: DatabaseSync | undefined;
  try {
    db = new DatabaseSync(path, { timeout: 0 });
    // no journal file beside it; the exclusive lock is kept until close()
    db.exec('PRAGMA journal_mode=OFF; PRAGMA locking_mode=EXCLUSIVE; BEGIN EXCLUSIVE');
    return db;
  } catch (err) {
    try {
      db?.close();
    } catch {
      // closing a database that did not open: nothing to let go of
    }
    if (isBusy(err)) return undefined;
    throw err;
  }
}

export interface LockOptions {
  /** How long to wait for a relay that is still stopping (default 10 s). */
  waitMs?: number;
  /** Between tries (default 250 ms). */
  pollMs?: number;
  /** Told once when the first try finds the lock held. */
  onWait?: (owner: LockOwner | undefined) => void;
}

async function readOwner(dir: string): Promise<LockOwner | undefined> {
  try {
    const v = JSON.parse(await readFile(join(dir, OWNER_FILE), 'utf8')) as unknown;
    if (typeof v !== 'object' || v === null) return undefined;
    const o = v as Record<string, unknown>;
    return {
      ...(typeof o['pid'] === 'number' ? { pid: o['pid'] } : {}),
      ...(typeof o['host'] === 'string' ? { host: o['host'].slice(0, 253) } : {}),
      ...(typeof o['since'] === 'string' ? { since: o['since'].slice(0, 40) } : {}),
    };
  } catch {
    return undefined;
  }
}

/**
 * Takes the spool folder's lock, creating the folder if needed; waits up to waitMs for a holder that is stopping, then
 * throws SpoolInUseError. Other failures (a folder that cannot be written) throw as they are.
 */
export async function lockSpool(dir: string, opts: LockOptions = {}): Promise<SpoolLock> {
  const waitMs = opts.waitMs ?? 10_000;
  const pollMs = opts.pollMs ?? 250;
  await mkdir(dir, { recursive: true });
  const path = join(dir, LOCK_FILE);
  // made (or opened) here first: a folder the relay may not write fails with its errno (EACCES, EROFS), which
  // explainUnwritable turns into advice; SQLite would only say "unable to open database file"
  await (await open(path, 'a', 0o600)).close();
  const started = performance.now();
  let db = tryLock(path);
  if (db === undefined) opts.onWait?.(await readOwner(dir));
  while (db === undefined) {
    const waited = performance.now() - started;
    if (waited >= waitMs) throw new SpoolInUseError(dir, await readOwner(dir), waited);
    await delay(Math.min(pollMs, waitMs - waited));
    db = tryLock(path);
  }
  const mine = db;
  held.add(mine);
  const owner: LockOwner = { pid: process.pid, host: hostname(), since: new Date().toISOString() };
  // advisory (for the error above): not fsynced, and a failure to write it does not matter
  await writeFile(join(dir, OWNER_FILE), JSON.stringify(owner) + '\n').catch(() => undefined);
  return {
    release(): void {
      if (!held.delete(mine)) return;
      mine.close();
    },
  };
}
