// The on-disk spool: the only hand-off between accepting and delivering (docs/design.md §6.4).
//
// Exports (called by the relay wiring):
//   openSpool(opts: { dir; logger; clock?; fs? }): Promise<Spool>
//     Creates <dir>/queue and <dir>/quarantine, removes partial temp files left by a crash and state files whose
//     message file is gone, quarantines what it cannot read, and returns a Spool (relay/spool/types.ts).
//   isQueueId(s): boolean
//   newQueueIdGenerator(clock): () => string
//
// Layout (state lives in files and their places, as in Postfix and Haraka; the file format is in format.ts):
//   <dir>/queue/<id>.msg         the message byte for byte as accepted, then its initial state; written once, in
//                                mode 0700 while it is being written and 0600 once complete (as Postfix marks its
//                                queue files by a mode bit)
//   <dir>/queue/<id>.json        the latest delivery state, once an attempt changed it; rewritten atomically
//   <dir>/queue/<id>.json.tmp    a state write in progress (removed at start)
//   <dir>/quarantine/            files that could not be read, with a log line each; bounded by age and count
//   <dir>/log/                   the accept log (accept-log.ts)
// Only regular files are read (lstat, then a non-blocking open without following symlinks), a state is at most
// MAX_STATE_BYTES, and every field of a state is checked as SMTP input is (check.ts) before it is used.
// A message exists once its .msg exists with a valid footer, or once the accept log holds it: a small message (one
// write) goes into the log alone and gets its file only if it stays queued (materialize; served from memory until
// then, docs/queue.md "Messages in the log alone"). A larger one: accept() creates <id>.msg under its final name in
// mode 0700 once its first WRITE_CHUNK is ready, writes the rest, the state and footer, fsyncs the file and a
// (group-committed) directory fsync; only then does it resolve { ok: true }. Without the log, the file is created at
// once with O_DSYNC, its directory fsync starting then: one durable write between the end of DATA and the 250. Mode
// 0600 follows a second or two later, unless the message was removed first (marks.ts). After a crash, a message file
// with a valid footer is complete (delivered, even if its 250 never reached the client: at-least-once); one without a
// footer in mode 0700 was cut short before its fsync, never acknowledged, and is removed; one without a footer in any
// other mode was damaged after it was complete and is quarantined. A valid footer does not vouch for the body: a power
// cut before the fsync can keep the file's size and last blocks while earlier body blocks read back as zeros, so the
// initial state records the body's CRC-32 (computed on the batches as they are written) and checkBody compares it,
// once per process, before delivery first sends the body of a file found at start (never at start itself: the start
// reads no file); a mismatch is quarantined, whatever the mode. Until accept() is done the id is neither listed nor
// loaded. Directory fsyncs are shared by concurrent accepts, state updates and removals (group commit). State
// updates are written to a temp file, fsynced and renamed (update()), so a power cut repeats only the attempts whose
// results were in flight.
import { constants as fsConstants } from 'node:fs';
import * as nodeFs from 'node:fs/promises';
import { join, sep } from 'node:path';
import type { Readable } from 'node:stream';
import { crc32 } from 'node:zlib';
import type { Logger } from 'pino';
import { checkState } from './check.ts';
import { explainUnwritable } from './writable.ts';
import {
  classifyEntry,
  encodeTrailer,
  FOOTER_LEN,
  messageFile,
  parseFooter,
  stateFile,
  TEMP_EXT,
} from './format.ts';
import type {
  AcceptOptions,
  AcceptResult,
  BodyCheck,
  EnvelopeMeta,
  LegState,
  LoadResult,
  MessageBody,
  RecoveryReport,
  Spool,
  SpoolState,
} from './types.ts';
import { GroupSync } from './group-sync.ts';
import { AcceptLog, replayAcceptLog, writevAll, type HeldLog } from './accept-log.ts';
import { CompletionMarks } from './marks.ts';
import { markWireReady } from './wire-ready.ts';

/** The part of a file handle the spool uses (node:fs/promises FileHandle fits). */
export interface SpoolFileHandle {
  write(data: Uint8Array): Promise<{ bytesWritten: number }>;
  /** At `position` when given, else at the file position (the accept log writes side by side at offsets). */
  writev(data: Uint8Array[], position?: number): Promise<{ bytesWritten: number }>;
  read(buffer: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesRead: number }>;
  /** `blocks`: 512-byte units allocated (node's Stats; the accept log checks a kept segment has no holes). */
  stat(): Promise<{ size: number; mode: number; blocks?: number; isFile(): boolean }>;
  chmod(mode: number): Promise<void>;
  sync(): Promise<void>;
  close(): Promise<void>;
}

/** What lstat and a directory listing tell about an entry (node:fs Stats and Dirent fit). */
interface SpoolEntryType {
  isFile(): boolean;
}

/** The file-system subset the spool uses; injectable for fault injection (ENOSPC, EIO). */
export interface SpoolFs {
  open(path: string, flags: string | number, mode?: number): Promise<SpoolFileHandle>;
  /**
   * Opens a spool file for reading without following a symlink and without blocking (a FIFO in its place would hold a
   * libuv thread until someone writes to it). The caller checks stat().isFile().
   */
  openRead(path: string): Promise<SpoolFileHandle>;
  lstat(path: string): Promise<SpoolEntryType & { mtimeMs: number }>;
  rename(from: string, to: string): Promise<void>;
  unlink(path: string): Promise<void>;
  /** Removes a file or a whole directory (quarantine pruning). */
  rm(path: string): Promise<void>;
  readdir(path: string): Promise<string[]>;
  /** Names with their types, from the listing alone (d_type; lstat where the file system gives none). */
  scan(path: string): Promise<(SpoolEntryType & { name: string })[]>;
  mkdir(path: string, opts: { recursive: true }): Promise<unknown>;
}

const READ_FLAGS = fsConstants.O_RDONLY | fsConstants.O_NONBLOCK | fsConstants.O_NOFOLLOW;

export const defaultSpoolFs: SpoolFs = {
  open: (p, flags, mode) => nodeFs.open(p, flags, mode),
  openRead: (p) => nodeFs.open(p, READ_FLAGS),
  lstat: (p) => nodeFs.lstat(p),
  rename: (a, b) => nodeFs.rename(a, b),
  unlink: (p) => nodeFs.unlink(p),
  rm: (p) => nodeFs.rm(p, { recursive: true, force: true }),
  readdir: (p) => nodeFs.readdir(p),
  scan: (p) => nodeFs.readdir(p, { withFileTypes: true }),
  mkdir: (p, o) => nodeFs.mkdir(p, o),
};

/**
 * Every spool fs call in progress and since when: a call that never returns (a FIFO, a hung NFS server, a dying disk)
 * holds one of libuv's few threads, and once they are all held nothing in the process touches a file again. The
 * relay's /healthz reports a call older than the stall limit so that the liveness probe restarts the pod.
 */
export class FsWatch {
  private readonly started = new Map<number, { op: string; at: number }>();
  private next = 0;
  private readonly now: () => number;

  /** now: a monotonic clock in ms: a call's age must not jump with the wall clock (a step forward would report every
   * call in flight as stalled, and the liveness probe would restart a healthy pod). */
  constructor(now: () => number = () => performance.now()) {
    this.now = now;
  }

  track<T>(op: string, p: Promise<T>): Promise<T> {
    const key = this.next++;
    this.started.set(key, { op, at: this.now() });
    const done = (): void => {
      this.started.delete(key);
    };
    p.then(done, done);
    return p;
  }

  /** The oldest call in progress (Map order is start order), or undefined when none is. */
  oldest(): { op: string; ageMs: number } | undefined {
    for (const v of this.started.values()) return { op: v.op, ageMs: this.now() - v.at };
    return undefined;
  }

  /** Wraps fs so that each of its calls (and each call on a handle it opened) is tracked. */
  wrap(fs: SpoolFs): SpoolFs {
    const handle = (fh: SpoolFileHandle): SpoolFileHandle => ({
      write: (d) => this.track('write', fh.write(d)),
      writev: (d, p) => this.track('write', fh.writev(d, p)),
      read: (b, o, l, pos) => this.track('read', fh.read(b, o, l, pos)),
      stat: () => this.track('fstat', fh.stat()),
      chmod: (m) => this.track('fchmod', fh.chmod(m)),
      sync: () => this.track('fsync', fh.sync()),
      close: () => this.track('close', fh.close()),
    });
    return {
      open: async (p, f, m) => handle(await this.track('open', fs.open(p, f, m))),
      openRead: async (p) => handle(await this.track('open', fs.openRead(p))),
      lstat: (p) => this.track('lstat', fs.lstat(p)),
      rename: (a, b) => this.track('rename', fs.rename(a, b)),
      unlink: (p) => this.track('unlink', fs.unlink(p)),
      rm: (p) => this.track('rm', fs.rm(p)),
      readdir: (p) => this.track('readdir', fs.readdir(p)),
      scan: (p) => this.track('readdir', fs.scan(p)),
      mkdir: (p, o) => this.track('mkdir', fs.mkdir(p, o)),
    };
  }
}

const SETTLED: Promise<void> = Promise.resolve();

/** The spool's metrics (relay/telemetry/metrics.ts). */
interface SpoolMetrics {
  /** Entries in quarantine/ now. */
  quarantined: { set(n: number): void };
  /** Files moved to quarantine/ since start. */
  quarantinedTotal: { inc(n?: number): void };
  /** Each accept-log write's time from issue to completion, in seconds. */
  logWriteSeconds?: { observe(seconds: number): void };
  /** Accept-log writes that failed. */
  logWriteFailures?: { inc(): void };
  /** Given what reads the accept log's status (messages it holds alone, in use or not), read at each scrape. */
  setLogSource?: (read: () => { messages: number; active: boolean }) => void;
}

export interface OpenSpoolOptions {
  dir: string;
  logger: Logger;
  clock?: () => Date;
  fs?: SpoolFs;
  metrics?: SpoolMetrics;
  /** A state larger than this is not read (quarantined). Default MAX_STATE_BYTES. */
  maxStateBytes?: number;
  /** Quarantined files older than this are deleted. Default 7 days. */
  quarantineMaxAgeMs?: number;
  /**
   * The age limit is applied only once the process has run this long (monotonic): right after a boot is when a
   * node's clock is most often wrong, before NTP steps it, and a clock 8 days ahead would delete the whole quarantine
   * at start. Default 1 hour (the hourly prune is the first to apply it).
   */
  quarantineAgeAfterMs?: number;
  /** At most this many entries stay in quarantine/ (the oldest go first). Default 1000. */
  quarantineMaxFiles?: number;
  /** A spool fs call in progress for longer than this makes stalled() report it. Default 60 s. */
  stallMs?: number;
  /** A message file not removed or rewritten is marked complete one to two of these after its 250. Default 1 s. */
  markPeriodMs?: number;
  /**
   * Small messages are made durable by the accept log (accept-log.ts) instead of their file's own O_DSYNC write and a
   * directory fsync. Default true; false: every message as a large one (an existing log is replayed either way).
   */
  acceptLog?: boolean;
  /** The accept log's segment size (default SEGMENT_BYTES) and checkpoint delay (CHECKPOINT_AFTER_MS); for tests. */
  logSegmentBytes?: number;
  checkpointAfterMs?: number;
}

const ID_RE = /^[0-9a-z]{16}$/;
/**
 * Body bytes gathered before one write(): bounds memory per message, keeps syscalls few. A message that fits the first
 * write is made durable by it (O_DSYNC); a larger one goes through the bulk descriptor and an fsync (accept()).
 */
export const WRITE_CHUNK = 128 * 1024;
/** State files kept in memory (write-through) for the engine's read-modify-write cycles. */
const FRESH_MAX = 2048;
/** Bodies up to this size are kept in memory after accept, for the first delivery attempts (no read-back). */
const BODY_CACHE_ITEM = 256 * 1024;
/** All bodies kept in memory together; the oldest leave first. */
const BODY_CACHE_TOTAL = 8 * 1024 * 1024;
/**
 * The largest state the spool reads. A state is a few hundred bytes per (recipient, leg) pair: 1,000 recipients with
 * two legs each and long replies stay well under 4 MiB. A footer or a state file claiming more is corrupt.
 */
const MAX_STATE_BYTES = 8 * 1024 * 1024;
/** The mode of a message file while accept() writes it, and once it is complete (set after its fsync). */
const MODE_WRITING = 0o700;
/** A message file is marked complete one to two of these after its 250, unless it was removed first (marks.ts). */
const MARK_PERIOD_MS = 1000;
/** Message files held open for their mark at most; beyond it a file is marked at once. */
const MARKS_HELD_MAX = 512;
/** A new message file, as 'wx': created, never opened if anything exists at its path (a symlink included). */
const CREATE = fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL;
/** The same, each write durable (data and size) when it returns: for a message written in one write. */
const CREATE_DSYNC = CREATE | fsConstants.O_DSYNC;
/** The file just created, again, for a body written in pieces (fsynced once at its end). */
const WRITE_BULK = fsConstants.O_WRONLY | fsConstants.O_NOFOLLOW;
const MODE_COMPLETE = 0o600;
/** Message files a checkpoint writes or fsyncs at once (each holds a descriptor and a thread-pool call). */
const CHECKPOINT_PARALLEL = 32;
/** Bytes of a body read at a time to compare it with its CRC-32 (checkBody): the memory one check holds. */
const CHECK_CHUNK = WRITE_CHUNK;
/** checkBody's answer when there is nothing to check (the common case: no read, no allocation). */
const BODY_OK: Promise<BodyCheck> = Promise.resolve({ ok: true });
const hex32 = (n: number): string => n.toString(16).padStart(8, '0');

/** A committed message whose only durable copy is in the accept log: its file's bytes, and its latest state. */
interface Unwritten {
  body: Buffer;
  trailer: Buffer;
  state: SpoolState;
  /** Its file being written (materialize). */
  writing?: Promise<void>;
  /** Its file is written and fsynced; its directory entry is not durable yet (a directory fsync failed). */
  written?: boolean;
}

/**
 * A message kept in the accept log alone at start (a full volume) as the spool serves it until it has a file: its
 * file's bytes split into body and trailer, and its state checked as a load checks one; or why it cannot be read.
 */
function messageFromLog(id: string, data: Buffer, maxStateBytes: number): Unwritten | string {
  const layout = parseFooter(data.subarray(Math.max(0, data.length - FOOTER_LEN)), data.length);
  if (typeof layout === 'string') return layout;
  if (layout.jsonLength > maxStateBytes) return `footer claims ${layout.jsonLength} bytes of state`;
  let parsed: unknown;
  try {
    parsed = JSON.parse(data.toString('utf8', layout.jsonOffset, layout.jsonOffset + layout.jsonLength));
  } catch (err) {
    return `state is not JSON: ${asError(err).message}`;
  }
  const state = checkState(parsed, id);
  if (typeof state === 'string') return `state is malformed: ${state}`;
  if (state.size !== layout.bodySize) return `state: size ${state.size}, body ${layout.bodySize} bytes`;
  return { body: data.subarray(0, layout.bodySize), trailer: data.subarray(layout.bodySize), state };
}

export function isQueueId(s: string): boolean {
  return ID_RE.test(s);
}

/**
 * Queue ids: 9 base36 chars of milliseconds (sortable until the year 5188), a 4-char per-process counter and
 * 3 random chars. 16 chars of [0-9a-z]: safe as a file name, sorts by arrival (to the millisecond). The time never
 * goes back within a process: after a step of the wall clock back, ids keep the last time until the clock passes it
 * (ids of a later process after such a step sort before the earlier ones; they are still unique).
 */
export function newQueueIdGenerator(clock: () => Date): () => string {
  let counter = Math.floor(Math.random() * 36 ** 4);
  let last = 0;
  return () => {
    counter = (counter + 1) % 36 ** 4;
    last = Math.max(last, clock().getTime());
    const time = last.toString(36).padStart(9, '0').slice(-9);
    const rand = Math.floor(Math.random() * 36 ** 3)
      .toString(36)
      .padStart(3, '0');
    return `${time}${counter.toString(36).padStart(4, '0')}${rand}`;
  };
}

function errno(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string'
    ? err.code
    : undefined;
}

/**
 * The chunks joined into a buffer of its own: the chunks may be views into larger socket buffers, and Buffer.concat
 * of a small size takes a slice of the shared 64 KiB allocation pool; either would keep far more memory alive than
 * the message.
 */
function ownCopy(chunks: Buffer[], size: number): Buffer {
  const out = Buffer.allocUnsafeSlow(size);
  let off = 0;
  for (const c of chunks) off += c.copy(out, off);
  return out;
}

const byteLength = (bufs: readonly Buffer[]): number => bufs.reduce((n, b) => n + b.length, 0);

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

/** How long the queue directory's handle is held for fsyncs before it is opened again (syncDir). */
const DIR_HANDLE_MAX_AGE_MS = 1000;

/**
 * The initial state of an accepted message: every (recipient, leg) pair pending. bodyCrc32: the body's CRC-32, as
 * accept() computed it (left out, the state is one an earlier version wrote: tests, benchmarks).
 */
export function initialState(id: string, meta: EnvelopeMeta, size: number, bodyCrc32?: number): SpoolState {
  const { recipients, ...rest } = meta;
  const legs: LegState[] = [];
  for (const r of recipients) {
    for (const leg of r.legs) legs.push({ recipient: r.recipient, leg, state: 'pending', attempts: 0 });
  }
  return bodyCrc32 === undefined
    ? { version: 1, id, meta: rest, size, legs }
    : { version: 1, id, meta: rest, size, bodyCrc32, legs };
}

export async function openSpool(opts: OpenSpoolOptions): Promise<Spool> {
  const watch = new FsWatch();
  const fs = watch.wrap(opts.fs ?? defaultSpoolFs);
  const clock = opts.clock ?? (() => new Date());
  const log = opts.logger;
  const maxStateBytes = opts.maxStateBytes ?? MAX_STATE_BYTES;
  const quarantineMaxAgeMs = opts.quarantineMaxAgeMs ?? 7 * 24 * 3600_000;
  const quarantineMaxFiles = opts.quarantineMaxFiles ?? 1000;
  const quarantineAgeAfterMs = opts.quarantineAgeAfterMs ?? 3600_000;
  const stallMs = opts.stallMs ?? 60_000;
  const queueDir = join(opts.dir, 'queue');
  const quarantineDir = join(opts.dir, 'quarantine');
  await explainUnwritable(opts.dir, async () => {
    await fs.mkdir(queueDir, { recursive: true });
    await fs.mkdir(quarantineDir, { recursive: true });
  });
  const nextId = newQueueIdGenerator(clock);

  // (queueDir is already normalized: a plain concatenation, not join() for every message)
  const statePath = (id: string): string => `${queueDir}${sep}${stateFile(id)}`;
  // Ids whose <id>.json exists (found at start, or written since): most messages never get one, and neither a load
  // nor a removal should pay for a failing syscall (and the error object it throws) to find that out.
  const stateFiles = new Set<string>();
  const msgPath = (id: string): string => `${queueDir}${sep}${messageFile(id)}`;
  // Ids whose message file accept() is writing now: not listed, loaded or updated (their file exists from the first
  // byte on, without a footer and in mode 0700, which a load would take for a write cut short).
  const inProgress = new Set<string>();
  // Message files found at start (an earlier process wrote them, perhaps just before a power cut) whose body was not
  // compared with its recorded CRC-32 yet (checkBody); they leave once checked, removed or quarantined. The set the
  // start's listing makes anyway, kept: files this process writes are never in it.
  const unchecked = new Set<string>();

  // The queue directory's handle is held for its fsyncs (one thread-pool hand-off per directory fsync instead of
  // three: open, fsync, close). A failed fsync drops it, and so does age: a handle older than DIR_HANDLE_MAX_AGE_MS
  // is replaced, so that a queue directory removed and made again under a running relay gets its fsyncs within that.
  let dirHandle: Promise<SpoolFileHandle> | undefined;
  let dirOpenedAt = 0;
  let closed = false;
  /** Forgets the held handle and closes it (resolves once closed; never rejects). */
  const dropDirHandle = async (): Promise<void> => {
    const held = dirHandle;
    dirHandle = undefined;
    await held?.then((fh) => fh.close()).catch(() => undefined);
  };
  const syncDir = async (): Promise<void> => {
    if (closed) throw new Error(`spool ${opts.dir}: closed`);
    const t = clock().getTime();
    // (a clock set back counts as old too, or the handle would be kept until the clock caught up)
    if (dirHandle !== undefined && (t - dirOpenedAt > DIR_HANDLE_MAX_AGE_MS || t < dirOpenedAt)) {
      void dropDirHandle();
    }
    if (dirHandle === undefined) dirOpenedAt = t;
    const opening = (dirHandle ??= fs.open(queueDir, 'r'));
    let fh: SpoolFileHandle;
    try {
      fh = await opening;
    } catch (err) {
      if (dirHandle === opening) dirHandle = undefined;
      throw err;
    }
    try {
      await fh.sync();
    } catch (err) {
      if (dirHandle === opening) void dropDirHandle();
      throw err;
    }
  };
  const dirSync = new GroupSync(syncDir);
  // Mode 0600 is set a second or two after the 250, or never when the message is removed first (marks.ts).
  const marks = new CompletionMarks({
    mode: MODE_COMPLETE,
    periodMs: opts.markPeriodMs ?? MARK_PERIOD_MS,
    maxHeld: MARKS_HELD_MAX,
    onMarkError: (err, id) => log.warn({ err, queueId: id }, 'spool: could not mark a message file complete'),
  });

  const unlinkQuiet = async (p: string): Promise<void> => {
    try {
      await fs.unlink(p);
    } catch (err) {
      if (errno(err) !== 'ENOENT') log.warn({ err, path: p }, 'spool: could not remove file');
    }
  };

  const writeAll = async (fh: SpoolFileHandle, data: Uint8Array): Promise<void> => {
    let off = 0;
    while (off < data.length) {
      const { bytesWritten } = await fh.write(off === 0 ? data : data.subarray(off));
      if (bytesWritten <= 0) throw Object.assign(new Error('write returned 0 bytes'), { code: 'EIO' });
      off += bytesWritten;
    }
  };

  /** Writes a whole small file and fsyncs it (no rename). */
  const writeFileDurably = async (path: string, data: Uint8Array): Promise<void> => {
    const fh = await fs.open(path, 'w', 0o600);
    try {
      await writeAll(fh, data);
      await fh.sync();
    } finally {
      await fh.close();
    }
  };

  // Write-through cache of state files: what this instance last wrote (accept, update) or read, so the engine's
  // read-modify-write cycles do not read the file back. This process owns its spool folder, so the cache is what is on
  // disk. Bounded; entries leave with their message. Cached states are shared: callers treat them as immutable.
  const fresh = new Map<string, SpoolState>();
  const remember = (id: string, state: SpoolState): void => {
    if (fresh.size < FRESH_MAX || fresh.has(id)) fresh.set(id, state);
  };

  // Bodies of small messages just accepted, exactly the bytes of the body file, kept so that the first attempts of
  // every leg send from memory. Bounded in total (the oldest leave first); entries leave with their message.
  const bodies = new Map<string, Buffer>();
  let bodiesBytes = 0;
  const forgetBody = (id: string): void => {
    const b = bodies.get(id);
    if (!b) return;
    bodies.delete(id);
    bodiesBytes -= b.length;
  };
  const keepBody = (id: string, b: Buffer): void => {
    if (b.length > BODY_CACHE_ITEM || b.length > BODY_CACHE_TOTAL) return;
    for (const [old, ob] of bodies) {
      if (bodiesBytes + b.length <= BODY_CACHE_TOTAL) break;
      bodies.delete(old);
      bodiesBytes -= ob.length;
    }
    bodies.set(id, b);
    bodiesBytes += b.length;
  };

  // ---- quarantine/: bounded by age and count ----
  let inQuarantine = 0;
  let pruning: Promise<void> | undefined;
  let lastPrune = Number.NEGATIVE_INFINITY;
  let pruneSoon: NodeJS.Timeout | undefined;
  const publishQuarantine = (): void => opts.metrics?.quarantined.set(inQuarantine);
  const openedWall = clock().getTime();
  const openedMono = performance.now();
  /**
   * Whether the age limit may be applied now: not in the process's first quarantineAgeAfterMs, and not after the wall
   * clock moved ahead of the monotonic one by an hour or more since the spool was opened (a step forward: the files'
   * ages are not to be trusted then; logged, and only the count limit applies).
   */
  const ageTrusted = (now: number): boolean => {
    const mono = performance.now() - openedMono;
    if (mono < quarantineAgeAfterMs) return false;
    const ahead = now - openedWall - mono;
    if (ahead < 3600_000) return true;
    log.warn(
      { dir: quarantineDir, aheadMs: Math.round(ahead) },
      'spool: the wall clock moved ahead of the monotonic clock since start; quarantine age limit not applied',
    );
    return false;
  };
  /** Deletes quarantined entries older than the age limit (when ageTrusted), then the oldest beyond the count limit. */
  const pruneQuarantine = (): Promise<void> =>
    (pruning ??= (async () => {
      try {
        const names = await fs.readdir(quarantineDir);
        const now = clock().getTime();
        const byAge = ageTrusted(now);
        const aged: { name: string; at: number }[] = [];
        for (const name of names) {
          try {
            aged.push({ name, at: (await fs.lstat(join(quarantineDir, name))).mtimeMs });
          } catch (err) {
            if (errno(err) !== 'ENOENT') throw err;
          }
        }
        aged.sort((a, b) => b.at - a.at); // newest first
        let removed = 0;
        for (const [i, e] of aged.entries()) {
          if (i < quarantineMaxFiles && (!byAge || now - e.at <= quarantineMaxAgeMs)) continue;
          await fs.rm(join(quarantineDir, e.name));
          removed++;
        }
        inQuarantine = aged.length - removed;
        publishQuarantine();
        if (removed > 0)
          log.info({ dir: quarantineDir, removed, kept: inQuarantine }, 'spool: pruned quarantine');
      } catch (err) {
        log.warn({ err, dir: quarantineDir }, 'spool: could not prune quarantine');
      } finally {
        lastPrune = performance.now(); // a rate limit: a duration (a step of the wall clock back would stall it)
        pruning = undefined;
      }
    })());
  const afterQuarantine = (moved: number): void => {
    inQuarantine += moved;
    opts.metrics?.quarantinedTotal.inc(moved);
    publishQuarantine();
    // Over the count limit: prune (a burst prunes once per second at most); the age limit is checked hourly.
    if (inQuarantine <= quarantineMaxFiles || pruneSoon) return;
    pruneSoon = setTimeout(
      () => {
        pruneSoon = undefined;
        void pruneQuarantine();
      },
      Math.max(0, 1000 - (performance.now() - lastPrune)),
    );
    pruneSoon.unref();
  };
  const pruneTimer = setInterval(() => void pruneQuarantine(), 3600_000);
  pruneTimer.unref();

  // Moves files into quarantine/, never overwriting an earlier quarantined file of the same name.
  const moveToQuarantine = async (names: string[], reason: string, id?: string): Promise<number> => {
    if (id !== undefined) {
      fresh.delete(id);
      forgetBody(id);
      stateFiles.delete(id);
      unchecked.delete(id);
    }
    let moved = 0;
    const stamp = clock().getTime().toString(36);
    for (const name of names) {
      try {
        await fs.rename(join(queueDir, name), join(quarantineDir, `${name}.${stamp}`));
        moved++;
      } catch (err) {
        if (errno(err) !== 'ENOENT')
          log.error({ err, file: name }, 'spool: could not move file to quarantine');
      }
    }
    if (moved > 0) {
      log.error({ queueId: id, files: names, reason, dir: quarantineDir }, 'spool: quarantined');
      afterQuarantine(moved);
    }
    return moved;
  };

  // ---- recovery at start: directory listing only, no file is read ----
  const started = performance.now();
  const recovery: RecoveryReport = {
    messages: 0,
    removedTemp: 0,
    removedOrphans: 0,
    quarantined: 0,
    restoredFromLog: 0,
    durationMs: 0,
  };
  // The accept log first: every message it holds is made durable in its own file before the queue is read. On a full
  // volume those whose files do not fit stay in the log (replay.held): served from memory below, and written by their
  // segment's checkpoint once space returns. Failing instead kept a relay on a full spool from starting, and so from
  // delivering, which is what frees the space (a rollout or an OOM kill gave CrashLoopBackOff). Without the log
  // (acceptLog: false) nothing would retire the segments kept, so such a start still fails, saying the volume is full.
  const replay = await replayAcceptLog(opts.dir, fs, log, isQueueId, {
    keepOnFull: opts.acceptLog !== false,
  });
  recovery.restoredFromLog = replay.restored;
  // what the replay set aside counts as the start's other quarantined files do (the gauge reads quarantine/ below)
  recovery.quarantined += replay.quarantined;
  if (replay.quarantined > 0) opts.metrics?.quarantinedTotal.inc(replay.quarantined);
  {
    const listing = await fs.scan(queueDir);
    const messages = unchecked;
    const states: string[] = [];
    const strange: string[] = [];
    for (const dirent of listing) {
      const name = dirent.name;
      // Only regular files are spool files: a FIFO, a directory or a symlink under a spool name is not read.
      const entry = dirent.isFile() ? classifyEntry(name, isQueueId) : ({ kind: 'unknown' } as const);
      if (entry.kind === 'temp') {
        await unlinkQuiet(join(queueDir, name));
        recovery.removedTemp++;
      } else if (entry.kind === 'message') messages.add(entry.id);
      else if (entry.kind === 'state') states.push(entry.id);
      else strange.push(name);
    }
    for (const id of states) {
      if (messages.has(id)) stateFiles.add(id);
      else {
        // remove() deletes the message file first: a state file alone is a removal that was cut short
        await unlinkQuiet(statePath(id));
        recovery.removedOrphans++;
      }
    }
    for (const name of strange) {
      recovery.quarantined += await moveToQuarantine(
        [name],
        'unknown file in the queue directory, or not a regular file',
      );
    }
    await pruneQuarantine();
    recovery.messages = messages.size;
    recovery.durationMs = Math.round(performance.now() - started);
    if (recovery.removedTemp + recovery.removedOrphans + recovery.quarantined > 0 || recovery.messages > 0) {
      log.info({ spool: opts.dir, ...recovery }, 'spool: recovered');
    }
  }

  // ---- messages held by the accept log alone (no file yet) ----
  // A small message's file is written only when it is still queued as the log lets it go (a checkpoint), when it is
  // quarantined, or when the log could not take it (its state changes go into the log too: relog): most are delivered
  // and removed first, and never touch the queue directory. Until then its bytes are here (the body shared with the
  // body cache) and in the log, from which a restart writes its file (replayAcceptLog).
  const unwritten = new Map<string, Unwritten>();
  // Records a full volume kept in the log at start (replay.held) whose bytes are no message file this spool can read
  // (not expected: each passed its CRC): written as they are by their checkpoint, as the replay would have, and
  // quarantined by the load of the next start. Not listed meanwhile.
  const unreadableInLog = new Map<string, Buffer>();
  for (const [id, data] of replay.held?.messages ?? []) {
    const m = messageFromLog(id, data, maxStateBytes);
    if (typeof m === 'string') {
      unreadableInLog.set(id, data);
      log.error(
        { queueId: id, reason: m },
        'spool: a message the accept log holds cannot be read; kept for quarantine',
      );
    } else unwritten.set(id, m);
  }
  if (replay.held !== undefined) {
    // no file of their own (the replay removed what it began of one): not in the listing above
    recovery.messages += unwritten.size;
    log.error(
      { spool: opts.dir, heldInLog: replay.held.messages.size },
      'spool: the volume is full: messages stay in the accept log alone until their files fit; grow the volume or ' +
        'let delivery free it',
    );
  }
  /** Writes a message file whole, durably: created (never over anything), written, fsynced, marked complete. */
  const writeMessageFile = async (id: string, data: Buffer[]): Promise<void> => {
    const path = msgPath(id);
    let fh: SpoolFileHandle;
    try {
      fh = await fs.open(path, CREATE, MODE_WRITING);
    } catch (err) {
      if (errno(err) !== 'EEXIST') throw err;
      // Something is under the new message's name (queue ids are unique: not a message of this spool): set aside, as
      // an unknown file at start would be, and the message written in its place.
      await moveToQuarantine([messageFile(id)], 'something under the name of a message being written');
      fh = await fs.open(path, CREATE, MODE_WRITING);
    }
    try {
      await writevAll(fh, data);
      await fh.sync();
      await fh.chmod(MODE_COMPLETE);
    } catch (err) {
      await fh.close().catch(() => undefined);
      await unlinkQuiet(path);
      throw err;
    }
    await fh.close();
  };
  /** Writes the file of a record kept at start that is no readable message (unreadableInLog), for quarantine. */
  const writeUnreadable = async (id: string): Promise<void> => {
    const data = unreadableInLog.get(id);
    if (data === undefined) return;
    await writeMessageFile(id, [data]);
    await dirSync.sync();
    unreadableInLog.delete(id);
  };
  /** Gives a message the accept log holds alone its own durable file (and directory entry); once at a time. */
  const materialize = (id: string): Promise<void> => {
    const u = unwritten.get(id);
    if (u === undefined) return writeUnreadable(id);
    return (u.writing ??= (async () => {
      try {
        if (u.written !== true) {
          await writeMessageFile(id, [u.body, u.trailer]);
          u.written = true; // a retry after a failed directory fsync does not write it again (O_EXCL: it is ours)
        }
        await dirSync.sync();
      } catch (err) {
        u.writing = undefined; // tried again by the next caller; the log still holds the message meanwhile
        throw err;
      }
      if (unwritten.get(id) === u) unwritten.delete(id);
    })());
  };

  /**
   * A new state of a message the accept log holds alone, made durable as one more record of it there: its file's bytes
   * with the new state in the trailer (accept-log.ts). One shared log write, where the message's file, a state file and
   * their fsyncs would be four file-system round trips with a journal commit each. False: the caller writes the files
   * (the message has a file or is getting one, no log, a record too large, or the log failed).
   */
  const relog = async (id: string, next: SpoolState): Promise<boolean> => {
    const u = unwritten.get(id);
    if (u === undefined || u.writing !== undefined || u.written === true || acceptLog === undefined)
      return false;
    const trailer = encodeTrailer(next);
    if (u.body.length + trailer.length > acceptLog.maxRecordData) return false;
    try {
      await acceptLog.accept(id, [u.body, trailer]);
    } catch (err) {
      log.warn({ err, queueId: id }, 'spool: the accept log failed; writing the state to files instead');
      return false;
    }
    // a checkpoint that began meanwhile writes the earlier state into the file: the state file goes beside it
    if (unwritten.get(id) !== u || u.writing !== undefined) return false;
    u.trailer = trailer;
    u.state = next;
    return true;
  };

  // Small messages' durability (accept-log.ts): a message still queued when its segment is retired gets its file then
  // (a checkpoint). Every other message the log still names is gone, or has its durable file and entry already: a file
  // is only written for a logged message by materialize, which fsyncs it and the directory. (The log fsyncs the
  // directory again before the segment goes, for the removals.)
  const checkpoint = async (ids: readonly string[]): Promise<void> => {
    const pending = ids.filter((id) => unwritten.has(id) || unreadableInLog.has(id));
    // CHECKPOINT_PARALLEL at a time: their writes and fsyncs overlap, and their directory fsyncs are shared
    for (let i = 0; i < pending.length; i += CHECKPOINT_PARALLEL) {
      const done = await Promise.allSettled(pending.slice(i, i + CHECKPOINT_PARALLEL).map(materialize));
      const failed = done.find((r) => r.status === 'rejected');
      if (failed) throw failed.reason;
    }
  };
  const { logWriteSeconds, logWriteFailures } = opts.metrics ?? {};
  const openLog = (held?: HeldLog['segments']): Promise<AcceptLog> =>
    AcceptLog.open({
      ...(held !== undefined ? { held } : {}),
      spoolDir: opts.dir,
      fs,
      log,
      checkpoint,
      syncQueue: () => dirSync.sync(),
      ...(logWriteSeconds ? { onWrite: (seconds: number) => logWriteSeconds.observe(seconds) } : {}),
      ...(logWriteFailures ? { onWriteFailed: () => logWriteFailures.inc() } : {}),
      ...(opts.logSegmentBytes !== undefined ? { segmentBytes: opts.logSegmentBytes } : {}),
      ...(opts.checkpointAfterMs !== undefined ? { checkpointAfterMs: opts.checkpointAfterMs } : {}),
    });
  // No room for a segment (a small or full volume): every message is made durable by its own fsyncs, as a large one.
  // The segments a full volume kept at start are taken over (their messages' removals and checkpoints need the log):
  // AcceptLog.open then goes on without a current segment rather than fail, and an error here fails the start.
  const held = replay.held?.segments;
  const acceptLog =
    opts.acceptLog === false
      ? undefined
      : held !== undefined
        ? await openLog(held)
        : await openLog().catch((err: unknown) => {
            log.warn(
              { err, spool: opts.dir },
              'spool: no accept log (its first segment could not be made); fsyncing each message',
            );
            return undefined;
          });

  // What the metrics read at a scrape: the messages only the log holds, and whether small messages go into it.
  opts.metrics?.setLogSource?.(() => ({
    messages: unwritten.size,
    active: acceptLog?.usable === true,
  }));

  // ---- per-id serialization of read-modify-write ----
  const locks = new Map<string, Promise<unknown>>();
  /** Runs fn (in a later microtask) once every call before it for the same id has settled. */
  const withLock = <T>(id: string, fn: () => Promise<T>): Promise<T> => {
    const run = (locks.get(id) ?? SETTLED).then(fn, fn);
    const release = (): void => {
      if (locks.get(id) === tail) locks.delete(id);
    };
    const tail: Promise<void> = run.then(release, release);
    locks.set(id, tail);
    return run;
  };

  // Message file first: a state file left alone by a crash is removed at the next start, while a message file left
  // alone would be delivered again.
  const removeFiles = async (id: string): Promise<boolean> => {
    const u = unwritten.get(id);
    // its file being written: removed once it is, or once that failed (no await otherwise: the common removal)
    if (u?.writing !== undefined) await u.writing.catch(() => undefined);
    fresh.delete(id);
    forgetBody(id);
    unchecked.delete(id);
    // still open for its mark: closed without it (a file removed needs none)
    marks.release(id);
    if (u !== undefined && unwritten.get(id) === u) {
      unwritten.delete(id);
      // in the log alone: a removal record there is the whole removal (with a file written whose entry is not durable
      // yet, a failed directory fsync, the file goes below as any other)
      if (u.written !== true) {
        acceptLog?.removed(id);
        return true;
      }
    }
    let existed = true;
    try {
      await fs.unlink(msgPath(id));
    } catch (err) {
      if (errno(err) !== 'ENOENT') throw err;
      existed = false;
    }
    if (stateFiles.delete(id)) await unlinkQuiet(statePath(id));
    // Durable before the caller goes on: a removal lost in a power cut delivers every leg again. A message the accept
    // log still holds also gets a removal record there; every removed file, a directory fsync shared with concurrent
    // accepts, updates and removals (one per batch).
    // A message with a file of its own whose accept record is still live (a state change the log could not take)
    // needs the directory fsync too: a replay does not delete files for a removal record, so unlinks a power cut
    // undid brought the message back with its state, and its legs were sent again.
    acceptLog?.removed(id);
    if (existed) await dirSync.sync();
    return existed;
  };

  const quarantineMessage = async (id: string, why: string): Promise<LoadResult> => {
    await moveToQuarantine([stateFile(id), messageFile(id)], why, id);
    acceptLog?.removed(id); // out of the queue: not restored from the log after a restart either
    return { ok: false, reason: 'corrupt', error: why };
  };

  /** Parses and checks state JSON; a string names the problem. */
  const parseState = (id: string, raw: Buffer, what: string): SpoolState | string => {
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw.toString('utf8'));
    } catch (err) {
      return `${what} is not JSON: ${asError(err).message}`;
    }
    const checked = checkState(parsed, id);
    return typeof checked === 'string' ? `${what} is malformed: ${checked}` : checked;
  };

  /** Reads exactly length bytes at position (fewer only at the end of the file). */
  const readAt = async (fh: SpoolFileHandle, length: number, position: number): Promise<Buffer> => {
    const buf = Buffer.alloc(length);
    let got = 0;
    while (got < length) {
      const { bytesRead } = await fh.read(buf, got, length - got, position + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    return got === length ? buf : buf.subarray(0, got);
  };

  type Layout = { ok: true; bodySize: number; state?: Buffer } | { ok: false; why: string };

  /** Where the body ends in a message file of `size` bytes, and (withState) the initial state's JSON from its trailer. */
  const readLayout = async (fh: SpoolFileHandle, size: number, withState: boolean): Promise<Layout> => {
    const footer = await readAt(fh, FOOTER_LEN, Math.max(0, size - FOOTER_LEN));
    const layout = parseFooter(footer, size);
    if (typeof layout === 'string') return { ok: false, why: `message file: ${layout}` };
    if (!withState) return { ok: true, bodySize: layout.bodySize };
    if (layout.jsonLength > maxStateBytes)
      return {
        ok: false,
        why: `message file: footer claims ${layout.jsonLength} bytes of state, more than the limit of ${maxStateBytes}`,
      };
    const state = await readAt(fh, layout.jsonLength, layout.jsonOffset);
    return { ok: true, bodySize: layout.bodySize, state };
  };

  type Opened =
    | { ok: true; fh: SpoolFileHandle; size: number; mode: number }
    | { ok: false; missing: true }
    | { ok: false; missing: false; why: string };

  /**
   * Opens a spool file for reading only if it is a regular file: lstat first (a FIFO, a device, a directory or a
   * symlink under a spool name is never opened), then a non-blocking open that does not follow symlinks, and fstat
   * again (the entry may have been replaced in between).
   */
  const openSpoolFile = async (path: string): Promise<Opened> => {
    const notRegular = { ok: false, missing: false, why: 'not a regular file' } as const;
    try {
      if (!(await fs.lstat(path)).isFile()) return notRegular;
    } catch (err) {
      if (errno(err) === 'ENOENT') return { ok: false, missing: true };
      throw err;
    }
    let fh: SpoolFileHandle;
    try {
      fh = await fs.openRead(path);
    } catch (err) {
      if (errno(err) === 'ENOENT') return { ok: false, missing: true };
      if (errno(err) === 'ELOOP') return notRegular;
      throw err;
    }
    try {
      const st = await fh.stat();
      if (st.isFile()) return { ok: true, fh, size: st.size, mode: st.mode };
    } catch (err) {
      await fh.close().catch(() => undefined);
      throw err;
    }
    await fh.close();
    return notRegular;
  };

  /** Reads a message's <id>.json: its bytes, 'missing', or why it cannot be read. */
  const readStateFile = async (id: string): Promise<Buffer | 'missing' | { why: string }> => {
    const o = await openSpoolFile(statePath(id));
    if (!o.ok) return o.missing ? 'missing' : { why: `state file: ${o.why}` };
    try {
      if (o.size > maxStateBytes)
        return { why: `state file: ${o.size} bytes, more than the limit of ${maxStateBytes}` };
      return await readAt(o.fh, o.size, 0);
    } finally {
      await o.fh.close();
    }
  };

  /** The latest state: <id>.json when an attempt wrote one, else the initial state in the message file. */
  const readState = async (id: string): Promise<LoadResult> => {
    const u = unwritten.get(id);
    if (u !== undefined) return { ok: true, state: u.state };
    if (stateFiles.has(id)) {
      const raw = await readStateFile(id);
      if (raw === 'missing') stateFiles.delete(id);
      else if (Buffer.isBuffer(raw) && raw.length === 0) {
        // An empty state file: a write cut short by a power cut under an older version (state files are now written
        // to a temp file, fsynced and renamed). Nothing to inspect: remove it and go on from the initial state.
        stateFiles.delete(id);
        fresh.delete(id);
        await unlinkQuiet(statePath(id));
        log.warn({ queueId: id }, 'spool: removed an empty state file; going on from the initial state');
      } else {
        const st = Buffer.isBuffer(raw) ? parseState(id, raw, 'state file') : raw.why;
        if (typeof st !== 'string') return { ok: true, state: st };
        // The message file still holds the initial state, so the message goes on from there (legs already
        // delivered are delivered again: at-least-once); the unreadable file is kept in quarantine/ for inspection.
        await moveToQuarantine(
          [stateFile(id)],
          `${st}; going on from the initial state in the message file`,
          id,
        );
      }
    }
    const o = await openSpoolFile(msgPath(id));
    if (!o.ok) {
      if (o.missing) return { ok: false, reason: 'missing', error: 'no such message' };
      return quarantineMessage(id, `message file: ${o.why}`);
    }
    let layout: Layout;
    try {
      layout = await readLayout(o.fh, o.size, true);
    } finally {
      await o.fh.close();
    }
    if (!layout.ok) {
      // Still in mode 0700: a crash cut its accept short before the fsync that precedes the 250, so it was never
      // acknowledged (the client still has it). Anything else without a footer is kept for inspection.
      if ((o.mode & 0o777) === MODE_WRITING) {
        await removeFiles(id);
        log.warn(
          { queueId: id, bytes: o.size, reason: layout.why },
          'spool: removed a message file whose accept never finished (never acknowledged)',
        );
        return { ok: false, reason: 'missing', error: 'its accept never finished' };
      }
      return quarantineMessage(id, layout.why);
    }
    const st = parseState(id, layout.state ?? Buffer.alloc(0), 'initial state');
    if (typeof st === 'string') return quarantineMessage(id, st);
    if (st.size !== layout.bodySize)
      return quarantineMessage(id, `initial state: size ${st.size}, body ${layout.bodySize} bytes`);
    return { ok: true, state: st };
  };

  /** Opens a message file for its body (readBody, readHeaders); throws what is wrong with it. */
  const openBody = async (id: string): Promise<{ fh: SpoolFileHandle; bodySize: number }> => {
    const o = await openSpoolFile(msgPath(id));
    if (!o.ok) {
      if (o.missing) throw Object.assign(new Error(`spool: ${id}: no such message`), { code: 'ENOENT' });
      throw new Error(`spool: ${id}: message file: ${o.why}`);
    }
    try {
      const layout = await readLayout(o.fh, o.size, false);
      if (!layout.ok) throw new Error(`spool: ${id}: ${layout.why}`);
      return { fh: o.fh, bodySize: layout.bodySize };
    } catch (err) {
      await o.fh.close();
      throw err;
    }
  };

  /** The CRC-32 of the first bodySize bytes of a message file, read CHECK_CHUNK at a time; a string if it is shorter. */
  const bodyCrc = async (fh: SpoolFileHandle, bodySize: number): Promise<number | string> => {
    const buf = Buffer.allocUnsafe(Math.min(CHECK_CHUNK, bodySize));
    let crc = 0;
    for (let pos = 0; pos < bodySize;) {
      const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, bodySize - pos), pos);
      if (bytesRead === 0) return `message file: the body ends after ${pos} of ${bodySize} bytes`;
      crc = crc32(buf.subarray(0, bytesRead), crc);
      pos += bytesRead;
    }
    return crc;
  };

  /**
   * Compares a message file's body with the CRC-32 in the initial state of its trailer (the file's own record of what
   * was written with it, whatever <id>.json says since). Quarantines what does not match or cannot be read as a message.
   */
  const checkFileBody = async (id: string): Promise<BodyCheck> => {
    const o = await openSpoolFile(msgPath(id));
    if (!o.ok) {
      if (o.missing) return { ok: false, reason: 'missing', error: 'no such message' };
      return quarantineMessage(id, `message file: ${o.why}`);
    }
    let why: string | undefined;
    try {
      const layout = await readLayout(o.fh, o.size, true);
      if (!layout.ok) why = layout.why;
      else {
        const st = parseState(id, layout.state ?? Buffer.alloc(0), 'initial state');
        if (typeof st === 'string') why = st;
        else if (st.size !== layout.bodySize)
          why = `initial state: size ${st.size}, body ${layout.bodySize} bytes`;
        else if (st.bodyCrc32 !== undefined) {
          const got = await bodyCrc(o.fh, layout.bodySize);
          if (typeof got === 'string') why = got;
          else if (got !== st.bodyCrc32) {
            why =
              `message file: the body's CRC-32 is ${hex32(got)}, its initial state recorded ${hex32(st.bodyCrc32)}` +
              ((o.mode & 0o777) === MODE_WRITING
                ? ' (mode 0700: most likely an accept a power cut interrupted before its fsync, never acknowledged)'
                : '');
          }
        }
      }
    } finally {
      await o.fh.close();
    }
    return why === undefined ? { ok: true } : quarantineMessage(id, why);
  };

  // One check per message at a time: the legs of a message tried together share it.
  const checking = new Map<string, Promise<BodyCheck>>();
  const checkBody = (id: string): Promise<BodyCheck> => {
    if (!unchecked.has(id)) return BODY_OK;
    let p = checking.get(id);
    if (p === undefined) {
      // under the message's lock: an update or removal does not run beside the quarantine
      p = withLock(id, async () => {
        if (!unchecked.has(id)) return { ok: true } as const; // removed (or checked) meanwhile
        const r = await checkFileBody(id);
        unchecked.delete(id); // a read that failed (EIO) throws instead: checked again next time
        return r;
      });
      const q = p;
      const forget = (): void => {
        if (checking.get(id) === q) checking.delete(id);
      };
      q.then(forget, forget);
      checking.set(id, q);
    }
    return p;
  };

  const spool: Spool = {
    dir: opts.dir,
    recovery,

    async close(): Promise<void> {
      // A stop leaves each message still queued in its own file: queue/ alone then holds the queue, for tools, another
      // version or a folder adopted elsewhere. What the accept log still holds alone (this failed) is replayed at the
      // next start.
      await checkpoint([...unwritten.keys()]).catch((err: unknown) =>
        log.warn(
          { err, spool: opts.dir },
          'spool: could not write the files of messages the accept log holds; the next start restores them from it',
        ),
      );
      await acceptLog?.close();
      closed = true;
      await marks.flush();
      // A directory fsync in progress ends first: its accepts, updates and removals still learn how it went.
      await dirSync.settled();
      await dropDirHandle();
    },

    stalled(): string | undefined {
      const o = watch.oldest();
      if (!o || o.ageMs <= stallMs) return undefined;
      return `spool ${opts.dir}: a file-system call (${o.op}) has been waiting for ${Math.round(o.ageMs / 1000)} s`;
    },

    async accept(meta: EnvelopeMeta, body: Readable, opts?: AcceptOptions): Promise<AcceptResult> {
      // Listen before the first await: the inbound layer may destroy the body with an error at any time.
      // 'data' events in paused-then-resumed mode hand over chunks as they were pushed (read() would concatenate
      // buffered chunks into new buffers, garbage that lets RSS grow with the message size until the next GC).
      body.pause();
      let bodyError: Error | undefined;
      let ended = false;
      let onSettled: (() => void) | undefined;
      let paused = false;
      let pending: Buffer[] = [];
      let pendingBytes = 0;
      // The chunks of a small body, for the in-memory copy (dropped once the body outgrows BODY_CACHE_ITEM).
      let small: Buffer[] | undefined = [];
      let size = 0;
      let storageError: Error | undefined;
      let writing: Promise<void> | undefined;
      let fh: SpoolFileHandle | undefined;
      // The body's CRC-32, over each batch as it is written (the chunks in hand: no second pass, no copy), for the
      // initial state (checkBody).
      let bodyCrc32 = 0;
      const settle = (): void => {
        ended = true;
        if (!writing) onSettled?.();
      };
      const onData = (c: Buffer | string): void => {
        const chunk = typeof c === 'string' ? Buffer.from(c) : c;
        size += chunk.length;
        if (storageError) return; // keep reading so the SMTP session can still answer
        pending.push(chunk);
        pendingBytes += chunk.length;
        if (small) {
          if (size <= BODY_CACHE_ITEM) small.push(chunk);
          else small = undefined;
        }
        if (pendingBytes >= WRITE_CHUNK && !writing) {
          body.pause();
          paused = true;
          writing = flush().finally(() => {
            writing = undefined;
            if (ended) onSettled?.();
            else if (paused) {
              paused = false;
              body.resume();
            }
          });
        }
      };
      const onError = (err: Error): void => {
        bodyError ??= err;
        settle();
      };
      const onClose = (): void => {
        if (!body.readableEnded) bodyError ??= new Error('the message body stream closed before its end');
        settle();
      };
      body.on('data', onData);
      body.on('error', onError);
      body.once('end', settle);
      body.once('close', onClose);
      if (body.errored) onError(body.errored);
      else if (body.destroyed && !body.readableEnded) onClose();

      const id = nextId();
      const path = msgPath(id);
      let created = false;
      // Without the accept log, the file is created at once, with O_DSYNC: a message that fits one write (the usual
      // case) is written durably by that one system call, where a write and an fsync were two thread-pool hand-offs. A
      // larger body is written in WRITE_CHUNK pieces as it arrives, through a second descriptor without O_DSYNC
      // (`bulk`), and fsynced at its end. The directory entry is made durable by a directory fsync that starts with the
      // create (shared with other accepts), while the body arrives.
      // With the accept log (the default), a message whose file fits one record of it gets no file at all here: the
      // file's bytes go into the log, and the file is written only if the message is still queued when the log lets it
      // go (materialize). A larger one's file is created, without O_DSYNC, when its first WRITE_CHUNK is ready, and
      // made durable by its fsync and a directory fsync started at its end.
      let bulk: SpoolFileHandle | undefined;
      let entryDurable: Promise<Error | undefined> | undefined;
      /** The buffers of the message file's bytes when they go into the accept log alone (body chunks, trailer). */
      let logOnly: Buffer[] | undefined;
      let trailer: Buffer | undefined;
      const startEntrySync = (): Promise<Error | undefined> =>
        dirSync.sync().then(
          () => undefined,
          (err: unknown) => asError(err),
        );
      const openFile = async (): Promise<void> => {
        try {
          fh = await fs.open(path, acceptLog ? CREATE : CREATE_DSYNC, MODE_WRITING);
          created = true;
          if (!acceptLog) entryDurable = startEntrySync();
        } catch (err) {
          storageError = asError(err);
        }
      };
      inProgress.add(id);
      if (!acceptLog) await openFile();
      /** Writes what is pending; `last`: nothing follows it (the message's only write when it is also the first). */
      async function flush(last = false): Promise<void> {
        if (pendingBytes === 0) return;
        const data = pending;
        pending = [];
        pendingBytes = 0;
        if (storageError) return;
        if (
          last &&
          fh === undefined &&
          acceptLog !== undefined &&
          small !== undefined &&
          byteLength(data) <= acceptLog.maxRecordData
        ) {
          logOnly = data;
          return;
        }
        if (fh === undefined) await openFile();
        if (!fh || storageError) return;
        // a batch before the last is body alone (the last one's body was counted before its trailer was added)
        if (!last) for (const b of data) bodyCrc32 = crc32(b, bodyCrc32);
        try {
          if (!last && bulk === undefined && !acceptLog) bulk = await fs.open(path, WRITE_BULK);
          // writev: no copy into one big buffer; a short write (rare on files) goes on from where it stopped
          await writevAll(bulk ?? fh, data);
        } catch (err) {
          storageError = asError(err);
        }
      }
      await new Promise<void>((resolve) => {
        onSettled = resolve;
        if (ended && !writing) resolve();
        else body.resume();
      });
      body.off('data', onData);
      body.off('end', settle);
      body.off('close', onClose);
      // keep onError attached: a late error must not become an uncaught exception
      let state: SpoolState | undefined;
      if (!bodyError) {
        if (!storageError) {
          // the initial state goes behind the body, in the same write as the body's last bytes (format.ts)
          for (const b of pending) bodyCrc32 = crc32(b, bodyCrc32);
          state = initialState(id, meta, size, bodyCrc32);
          trailer = encodeTrailer(state);
          pending.push(trailer);
          pendingBytes += trailer.length;
        }
        await flush(true);
      } else {
        pending = [];
        pendingBytes = 0;
      }

      let committed = false;
      if (!bodyError && !storageError && state && trailer && logOnly && small && acceptLog) {
        const copy = ownCopy(small, size);
        try {
          try {
            await acceptLog.accept(id, logOnly);
            unwritten.set(id, { body: copy, trailer, state });
          } catch (err) {
            // the log could not take it (a failed write, no room for a segment): its own durable file instead
            log.warn(
              { err, queueId: id },
              'spool: the accept log failed; writing the message file durably instead',
            );
            await writeMessageFile(id, [copy, trailer]);
            created = true; // ours: removed below if its entry cannot be made durable
            await dirSync.sync();
          }
          committed = true;
          remember(id, state);
          if (opts?.wireReady?.() === true) markWireReady(copy);
          keepBody(id, copy);
        } catch (err) {
          storageError = asError(err);
        }
      } else if (!bodyError && !storageError && fh && state) {
        const handle = fh;
        try {
          if (acceptLog) {
            // without O_DSYNC: the file and its entry are made durable here
            entryDurable = startEntrySync();
            await handle.sync();
          } else if (bulk) {
            // one O_DSYNC write was durable when it returned; a body written in pieces is fsynced now
            await bulk.sync();
          }
          fh = undefined;
          const entryError = await entryDurable;
          if (entryError) {
            void handle.close().catch(() => undefined);
            throw entryError;
          }
          committed = true;
          // Data, state and footer are durable. Mode 0600 then marks the file complete, so that after a crash a file
          // without a valid footer tells apart an accept cut short (still 0700: never acknowledged, removed) from a
          // complete file damaged later (0600: quarantined). Neither the mark nor the close is needed for the 250: a
          // complete file still in 0700 is delivered (its footer decides). The marks set it a second or two later,
          // or only close the file when the message is removed first (marks.ts).
          marks.hold(id, handle);
          remember(id, state);
          if (small) {
            const copy = ownCopy(small, size);
            if (opts?.wireReady?.() === true) markWireReady(copy);
            keepBody(id, copy);
          }
        } catch (err) {
          storageError = asError(err);
        }
      }
      if (bulk) {
        const b2 = bulk;
        bulk = undefined;
        if (committed) void b2.close().catch(() => undefined);
        else await b2.close().catch(() => undefined);
      }
      if (fh) {
        try {
          await fh.close();
        } catch {
          /* the file is removed below */
        }
      }
      if (committed) {
        inProgress.delete(id);
        return { ok: true, id };
      }

      // Nothing half-accepted: remove whatever was created (the entry's directory fsync needs no waiting for). The accept
      // log holds nothing of it: a failed log write took its record out (accept-log.ts drain), and a record written is
      // a message committed.
      if (created) await unlinkQuiet(path);
      inProgress.delete(id);
      const error = bodyError ?? storageError ?? new Error('spool: body was not written');
      const storage = bodyError === undefined;
      if (storage) log.error({ err: error, code: errno(error) }, 'spool: could not store message');
      return { ok: false, error, storage };
    },

    async list(): Promise<string[]> {
      // The messages committed before the call. An accept in progress when the listing starts may end before it
      // returns: cut short, its file is gone, yet the listing still names it; so it is left out whichever way it ends.
      const busy = new Set(inProgress);
      // Those the accept log holds alone have no file (some may get one while the listing runs).
      const ids = new Set(unwritten.keys());
      const names = await fs.readdir(queueDir);
      for (const name of names) {
        const entry = classifyEntry(name, isQueueId);
        if (entry.kind === 'message' && !busy.has(entry.id) && !inProgress.has(entry.id)) ids.add(entry.id);
      }
      return [...ids].sort();
    },

    load(id: string): Promise<LoadResult> {
      if (!isQueueId(id)) return Promise.resolve({ ok: false, reason: 'missing', error: 'not a queue id' });
      // Its file has no footer yet and is in mode 0700: a load would take it for a write cut short and remove it.
      if (inProgress.has(id))
        return Promise.resolve({ ok: false, reason: 'missing', error: 'being accepted' });
      return withLock(id, () => {
        const cached = fresh.get(id);
        if (cached) return Promise.resolve({ ok: true, state: cached });
        return readState(id).then((r) => {
          if (r.ok) remember(id, r.state);
          return r;
        });
      });
    },

    update(
      id: string,
      change: (state: SpoolState) => SpoolState | null,
    ): Promise<SpoolState | null | undefined> {
      if (inProgress.has(id)) return Promise.resolve(undefined); // as load(): not a message until accept() is done
      return withLock(id, async () => {
        const cached = fresh.get(id);
        const cur: LoadResult = cached ? { ok: true, state: cached } : await readState(id);
        if (!cur.ok) return undefined;
        const next = change(cur.state);
        if (next === null) {
          await removeFiles(id);
          return null;
        }
        if (next === cur.state) return next; // nothing changed: nothing to write
        if (await relog(id, next)) {
          remember(id, next);
          return next;
        }
        const tmp = join(queueDir, `${stateFile(id)}${TEMP_EXT}`);
        // a state file never stands without its message file (a start removes it as a removal cut short)
        await materialize(id);
        try {
          // Atomic and durable: temp file, fsync, rename, directory fsync. A power cut leaves the old state or the
          // new one, never an empty file, and a result recorded here is not repeated after one. Concurrent updates
          // (the engine records the results of many messages at once) fsync their files in parallel, which the
          // file system commits together, and share one directory fsync with accepts and removals (group commit).
          // it stays queued: its message file gets its mark now rather than at the next sweep (marks.ts)
          marks.markNow(id);
          await writeFileDurably(tmp, Buffer.from(JSON.stringify(next)));
          await fs.rename(tmp, statePath(id));
          stateFiles.add(id);
          await dirSync.sync();
        } catch (err) {
          // What is on disk is unknown now: read it next time.
          fresh.delete(id);
          await unlinkQuiet(tmp);
          throw err;
        }
        remember(id, next);
        return next;
      });
    },

    remove(id: string): Promise<boolean> {
      if (!isQueueId(id)) return Promise.resolve(false);
      return withLock(id, () => removeFiles(id));
    },

    quarantine(id: string, reason: string): Promise<void> {
      return withLock(id, async () => {
        // kept for inspection: a message the log holds alone gets its file first (and leaves the log with it)
        await materialize(id).catch((err: unknown) =>
          log.error({ err, queueId: id }, 'spool: could not write a message file to quarantine it'),
        );
        if (unwritten.has(id)) return; // still queued: nothing is set aside that is not kept
        if ((await moveToQuarantine([stateFile(id), messageFile(id)], reason, id)) > 0)
          acceptLog?.removed(id);
      });
    },

    body(id: string, size: number): MessageBody {
      return bodies.get(id) ?? unwritten.get(id)?.body ?? { path: msgPath(id), size };
    },

    checkBody,

    async readBody(id: string): Promise<Buffer> {
      const kept = bodies.get(id) ?? unwritten.get(id)?.body;
      if (kept) return kept;
      const checked = await checkBody(id);
      if (!checked.ok) {
        const err = new Error(`spool: ${id}: ${checked.error}`);
        throw checked.reason === 'missing' ? Object.assign(err, { code: 'ENOENT' }) : err;
      }
      const { fh, bodySize } = await openBody(id);
      try {
        return await readAt(fh, bodySize, 0);
      } finally {
        await fh.close();
      }
    },

    async readHeaders(id: string, maxBytes = 64 * 1024): Promise<Buffer> {
      const kept = bodies.get(id) ?? unwritten.get(id)?.body;
      if (kept) return headerBlock(kept.subarray(0, maxBytes));
      const { fh, bodySize } = await openBody(id);
      try {
        return headerBlock(await readAt(fh, Math.min(maxBytes, bodySize), 0));
      } finally {
        await fh.close();
      }
    },
  };
  return spool;
}

/** The header block of a raw message: up to and including the line break before the first empty line. */
export function headerBlock(raw: Buffer): Buffer {
  const crlf = raw.indexOf('\r\n\r\n');
  const lf = raw.indexOf('\n\n');
  if (crlf >= 0 && (lf < 0 || crlf < lf)) return raw.subarray(0, crlf + 2);
  if (lf >= 0) return raw.subarray(0, lf + 1);
  // No empty line within the limit: keep whole lines only.
  const last = raw.lastIndexOf('\n');
  return last >= 0 ? raw.subarray(0, last + 1) : raw;
}
