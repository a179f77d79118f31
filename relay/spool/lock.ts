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
// A file system that gives no locks does not stop the mail: the relay starts unguarded and says so.
//
// Exports: lockSpool(dir, opts) -> SpoolLock, SpoolInUseError, LOCK_FILE, LockDatabase (the seam for tests).
import { constants as fsConstants } from 'node:fs';
import { mkdir, open, truncate, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { setTimeout as delay } from 'node:timers/promises';

export const LOCK_FILE = 'spool.lock';
const OWNER_FILE = 'spool.lock.json';

/** SQLite's result codes: a lock another connection holds; a file that is not a database. */
const SQLITE_BUSY = 5;
const SQLITE_LOCKED = 6;
const SQLITE_NOTADB = 26;

export interface SpoolLock {
  /** Undefined when the lock is held; else why the file system gave none (the relay runs unguarded). */
  readonly unguarded: string | undefined;
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

/** What the lock needs of a database (node:sqlite's DatabaseSync); a seam for tests. */
export interface LockDatabase {
  exec(sql: string): void;
  close(): void;
}

const openDatabase = (path: string): LockDatabase => new DatabaseSync(path, { timeout: 0 });

/** Locks held by this process: referenced here so that no garbage collection closes their database (and lets go). */
const held = new Set<LockDatabase>();

const errcode = (err: unknown): unknown => (err as { errcode?: unknown } | null)?.errcode;

/** One try: the lock; 'busy' when another process holds it; 'notadb' for a file that is not a database. */
function tryLock(
  path: string,
  open: (path: string) => LockDatabase,
): LockDatabase | 'busy' | 'notadb' | { failed: unknown } {
  let db: LockDatabase | undefined;
  try {
    db = open(path);
    // no journal file beside it (the journal in memory: OFF is refused on an empty database); the exclusive lock is
    // kept until close()
    db.exec('PRAGMA journal_mode=MEMORY; PRAGMA locking_mode=EXCLUSIVE; BEGIN EXCLUSIVE');
    return db;
  } catch (err) {
    try {
      db?.close();
    } catch {
      // closing a database that did not open: nothing to let go of
    }
    const code = errcode(err);
    if (code === SQLITE_BUSY || code === SQLITE_LOCKED) return 'busy';
    if (code === SQLITE_NOTADB) return 'notadb';
    return { failed: err };
  }
}

export interface LockOptions {
  /** How long to wait for a relay that is still stopping (default 10 s). */
  waitMs?: number;
  /** Between tries (default 250 ms). */
  pollMs?: number;
  /** Told once when the first try finds the lock held. */
  onWait?: (owner: LockOwner | undefined) => void;
  /** Opens the lock's database (default node:sqlite); tests inject failures. */
  database?: (path: string) => LockDatabase;
}

/** The holder's record: its first 4 KiB at most (it is a line of JSON; anything larger is not the relay's). */
async function readOwner(dir: string): Promise<LockOwner | undefined> {
  try {
    const fh = await open(
      join(dir, OWNER_FILE),
      fsConstants.O_RDONLY | fsConstants.O_NONBLOCK | fsConstants.O_NOFOLLOW,
    );
    let text: string;
    try {
      const buf = Buffer.alloc(4096);
      const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
      text = buf.subarray(0, bytesRead).toString('utf8');
    } finally {
      await fh.close();
    }
    const v = JSON.parse(text) as unknown;
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
 * throws SpoolInUseError. A folder that cannot be written throws its errno. A file system that gives no locks (the
 * lock fails otherwise) is not a reason to stop the mail: the lock comes back `unguarded`, with the reason, and the
 * caller warns.
 */
export async function lockSpool(dir: string, opts: LockOptions = {}): Promise<SpoolLock> {
  const waitMs = opts.waitMs ?? 10_000;
  const pollMs = opts.pollMs ?? 250;
  const database = opts.database ?? openDatabase;
  await mkdir(dir, { recursive: true });
  const path = join(dir, LOCK_FILE);
  // made (or opened) here first: a folder the relay may not write fails with its errno (EACCES, EROFS), which
  // explainUnwritable turns into advice; SQLite would only say "unable to open database file"
  await (await open(path, 'a', 0o600)).close();
  const started = performance.now();
  let told = false;
  let emptied = false;
  for (;;) {
    const r = tryLock(path, database);
    if (r === 'notadb' && !emptied) {
      // something else wrote into the lock file (the relay never does): nobody holds it (SQLite reads the file only
      // under a lock), so it is emptied, once
      emptied = true;
      await truncate(path, 0);
      continue;
    }
    if (r !== 'busy' && r !== 'notadb' && !('failed' in r)) {
      held.add(r);
      const owner: LockOwner = { pid: process.pid, host: hostname(), since: new Date().toISOString() };
      // advisory (for the error above): not fsynced, and a failure to write it does not matter
      await writeFile(join(dir, OWNER_FILE), JSON.stringify(owner) + '\n').catch(() => undefined);
      return {
        unguarded: undefined,
        release(): void {
          if (!held.delete(r)) return;
          r.close();
        },
      };
    }
    if (r !== 'busy') {
      const why =
        r === 'notadb' ? 'the lock file is not one SQLite can lock' : String((r.failed as Error).message);
      return { unguarded: `${path}: ${why}`, release: () => undefined };
    }
    if (!told) {
      told = true;
      opts.onWait?.(await readOwner(dir));
    }
    const waited = performance.now() - started;
    if (waited >= waitMs) throw new SpoolInUseError(dir, await readOwner(dir), waited);
    await delay(Math.min(pollMs, waitMs - waited));
  }
}
