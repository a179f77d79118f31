// The accept log: where a small message is durable from its 250 until its own file is (docs/queue.md "The accept
// log"). A message whose whole file would be written in one call gets no file: its file's bytes go into this log, and
// the 250 waits for them there; spool.ts writes the file only if the message is still queued when the log lets it go
// (the checkpoint) or it is quarantined. The log is a few preallocated segment files under <spool>/log/, opened with
// O_DSYNC and written in place from their start: the blocks exist already, so a write commits no metadata (no journal
// commit of the file system); the records that arrive during a write go out together at the end of that event-loop
// turn, beside it, at their own offset (group commit, at most MAX_WRITES_IN_FLIGHT writes at once), and every record is
// answered only once every record before it in the segment is on disk. docs/perf.md "The journal's share" measured
// why, and "Log writes side by side" the writes side by side.
//
// Records (pure, tested with tables): a 24-byte header, then the queue id (16 bytes) and, for an accept, the message
// file's bytes.
//   0 magic "MRL1" | 4 segment number (u64) | 12 kind (1 accept, 2 removal) | 13 zero (3) | 16 payload length (u32)
//   | 20 CRC-32 of bytes 4..20 and the payload
// A segment is parsed from its start until the first record that is not whole, not of this segment (a reused file's
// earlier life) or fails its CRC (a write cut short). A whole record of this segment whose CRC holds but whose kind
// this version does not know (or whose reserved bytes are not zero) was written by a later version: it is skipped,
// not taken for the end (the records after it are accept records answered 250), and its segment is kept in
// quarantine/ instead of reused (replayAcceptLog).
//
// A message's state change before it has a file (spool.ts update) is one more accept record of the same id: the file's
// bytes with the new state in the trailer. The later record replaces the earlier one.
//
// A segment is retired only when each message it accepted is removed, checkpointed (its file written) or accepted again
// in a later segment, and after a directory fsync that makes those removals and entries durable; retired files are
// reused for later segments. At start (replayAcceptLog, before the spool reads its queue), the last accept record of
// each id without a later removal record has its file rewritten from the record unless it is the same, and fsynced
// either way; then the segments go. On a full volume (ENOSPC, EDQUOT) the messages whose files do not fit stay in the
// log alone: their segments are kept and taken over by the new AcceptLog as sealed ones (AcceptLogOptions.held), and
// the spool serves those messages from memory until their segment's checkpoint writes their files (spool.ts): a
// relay starts, and delivers, on a full spool. With no room for a new segment, the newest segment kept is reopened
// where its records end (its blocks exist), and removal records go there: with no current segment a removal record
// goes into the newest sealed segment while it has room, and one that fits nowhere is kept and tried again at each
// checkpoint tick (never dropped while the segment of its accept record stays: a restart would deliver it again).
//
// A message file larger than a quarter of a segment, and every message while no segment can be made (a small or full
// volume) or after a failed log write, is made durable by its own fsyncs instead (spool.ts).
//
// Exports: encodeRecord, parseSegment, replayAcceptLog (and its ReplayResult, HeldLog),
// AcceptLog (AcceptLog.open).
import { constants as fsConstants } from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import type { Logger } from 'pino';
import { FOOTER_LEN, parseFooter, stateFile } from './format.ts';
import type { SpoolFileHandle, SpoolFs } from './spool.ts';
import { isNoSpace } from '../../lib/errors.ts';

const MAGIC = 0x4d524c31; // "MRL1"
export const RECORD_HEADER = 24;
const ID_BYTES = 16;
export const KIND_ACCEPT = 1;
export const KIND_REMOVAL = 2;
type Kind = typeof KIND_ACCEPT | typeof KIND_REMOVAL;

/** Default segment size; a record is at most a quarter of it (larger messages take the file's own fsync). */
const SEGMENT_BYTES = 8 * 1024 * 1024;
/** A sealed segment's messages still queued this long after it was sealed are checkpointed (their files fsynced). */
const CHECKPOINT_AFTER_MS = 1000;
/** A segment file larger than this is not read at start (quarantined): the largest segment made is SEGMENT_BYTES. */
const MAX_SEGMENT_FILE = 64 * 1024 * 1024;
/** How long after a failed attempt to make a segment (a full disk) the next one waits. */
const RETRY_PREPARE_MS = 10_000;
/** A warning repeated at every retry while the volume stays full (ENOSPC, EDQUOT) is logged once in this long. */
const NO_SPACE_WARN_MS = 60_000;
const SEGMENT_RE = /^([0-9a-f]{16})\.seg$/;
const FREE_RE = /^free-[0-9a-f]{16}\.seg$/;
const ZEROS = Buffer.alloc(1024 * 1024);
const WRITE_DSYNC = fsConstants.O_WRONLY | fsConstants.O_DSYNC | fsConstants.O_NOFOLLOW;
/** Log writes in flight at once (each at its own offset of the segment; docs/perf.md "Log writes side by side"). */
const MAX_WRITES_IN_FLIGHT = 4;

const noop = (): void => undefined;
const segmentName = (seq: number): string => `${seq.toString(16).padStart(16, '0')}.seg`;
const freeName = (seq: number): string => `free-${seq.toString(16).padStart(16, '0')}.seg`;

/** One record's buffers (header and id, then the data, not copied). */
export function encodeRecord(segment: number, kind: Kind, id: string, data: readonly Buffer[]): Buffer[] {
  if (id.length !== ID_BYTES)
    throw new Error(`accept log: a queue id has ${ID_BYTES} characters, not "${id}"`);
  let length = ID_BYTES;
  for (const d of data) length += d.length;
  const head = Buffer.alloc(RECORD_HEADER + ID_BYTES);
  head.writeUInt32BE(MAGIC, 0);
  head.writeBigUInt64BE(BigInt(segment), 4);
  head.writeUInt8(kind, 12);
  head.writeUInt32BE(length, 16);
  head.write(id, RECORD_HEADER, 'latin1');
  let crc = crc32(head.subarray(4, 20));
  crc = crc32(head.subarray(RECORD_HEADER), crc);
  for (const d of data) crc = crc32(d, crc);
  head.writeUInt32BE(crc, 20);
  return [head, ...data];
}

export interface LogRecord {
  kind: Kind;
  id: string;
  /** An accept's message file bytes (a view into the segment's buffer). */
  data: Buffer;
}

/**
 * The records of one segment, from its start to the first that is not whole, not of `segment`, or fails its CRC.
 * `unknown` counts the whole records skipped for a kind (or reserved bytes) this version does not know: a later
 * version's (the CRC covers the header, so such a record is whole and meant as it is, not a write cut short).
 */
export function parseSegment(
  buf: Buffer,
  segment: number,
): { records: LogRecord[]; end: number; unknown: number } {
  const records: LogRecord[] = [];
  let off = 0;
  let unknown = 0;
  const want = BigInt(segment);
  while (off + RECORD_HEADER + ID_BYTES <= buf.length) {
    if (buf.readUInt32BE(off) !== MAGIC || buf.readBigUInt64BE(off + 4) !== want) break;
    const length = buf.readUInt32BE(off + 16);
    if (length < ID_BYTES || off + RECORD_HEADER + length > buf.length) break;
    const payload = buf.subarray(off + RECORD_HEADER, off + RECORD_HEADER + length);
    if (crc32(payload, crc32(buf.subarray(off + 4, off + 20))) !== buf.readUInt32BE(off + 20)) break;
    const kind = buf.readUInt8(off + 12);
    const known = (kind === KIND_ACCEPT || kind === KIND_REMOVAL) && buf.readUIntBE(off + 13, 3) === 0;
    off += RECORD_HEADER + length;
    if (!known) {
      unknown++;
      continue;
    }
    records.push({ kind, id: payload.toString('latin1', 0, ID_BYTES), data: payload.subarray(ID_BYTES) });
  }
  return { records, end: off, unknown };
}

/**
 * A regular file's bytes, one open: undefined when it is missing or not a regular file, 'too large' (unread) when it
 * holds more than maxBytes.
 */
async function readWhole(
  fs: SpoolFs,
  path: string,
  maxBytes = Infinity,
): Promise<Buffer | 'too large' | undefined> {
  let fh: SpoolFileHandle;
  try {
    fh = await fs.openRead(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) return undefined;
    if (st.size > maxBytes) return 'too large';
    const buf = Buffer.alloc(st.size);
    let got = 0;
    while (got < buf.length) {
      const { bytesRead } = await fh.read(buf, got, buf.length - got, got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    return buf.subarray(0, got);
  } finally {
    await fh.close();
  }
}

/**
 * Writes every byte of data, going on after a short write; at `position` when given, else at the file position. Used
 * by the spool's own writes too (spool.ts).
 */
export async function writevAll(
  fh: SpoolFileHandle,
  data: readonly Uint8Array[],
  position?: number,
): Promise<void> {
  let left = data.reduce((n, b) => n + b.length, 0);
  let bufs: Uint8Array[] = [...data];
  let at = position;
  while (left > 0) {
    const { bytesWritten } = await fh.writev(bufs, at);
    if (at !== undefined) at += bytesWritten;
    if (bytesWritten <= 0) throw Object.assign(new Error('write returned 0 bytes'), { code: 'EIO' });
    left -= bytesWritten;
    let skip = bytesWritten;
    const rest: Uint8Array[] = [];
    for (const b of bufs) {
      if (skip >= b.length) skip -= b.length;
      else {
        rest.push(skip > 0 ? b.subarray(skip) : b);
        skip = 0;
      }
    }
    bufs = rest;
  }
}

async function syncDir(fs: SpoolFs, dir: string): Promise<void> {
  const fh = await fs.open(dir, fsConstants.O_RDONLY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

interface ReplayReport {
  /** Accept records without a removal record: their files were checked (and fsynced). */
  live: number;
  /** Of those, the files rewritten from the log (missing, or not the record's bytes). */
  restored: number;
  /** Segment files read. */
  segments: number;
  /** Files set aside in quarantine/: a segment far too large, something not a regular file under a message's name. */
  quarantined: number;
  /** Of the live records, those whose files a full volume could not take: they stay in the log alone (held). */
  heldInLog: number;
}

/**
 * What a replay on a full volume leaves in the log (keepOnFull): the messages whose files could not be written, and
 * the segments kept for them, which the spool's AcceptLog takes over as sealed segments (AcceptLogOptions.held).
 */
export interface HeldLog {
  /** The segments kept, oldest first: each with the ids whose last record it holds among `messages`, and where its
   * records end (parseSegment). The segments after the first of those are kept too (with no id, perhaps): their
   * removal records cancel its earlier accepts. */
  segments: { seq: number; ids: string[]; end: number }[];
  /** id -> the message file's bytes (its own copy, not a view into the segment). */
  messages: Map<string, Buffer>;
}

export interface ReplayOptions {
  /**
   * On a full volume (ENOSPC, EDQUOT) keep in the log the messages whose files cannot be written, and report them
   * (ReplayResult.held), instead of failing: a relay must start on a full spool, since delivering is what frees it.
   * Without it (a former worker's folder being adopted) such a replay throws an error that says the volume is full.
   */
  keepOnFull?: boolean;
}

export interface ReplayResult extends ReplayReport {
  /** Set when keepOnFull kept messages in the log. */
  held?: HeldLog;
}

/** The last accept record of each id not removed since, and its segment's number, in order of first appearance. */
type LiveRecords = Map<string, { data: Buffer; seq: number }>;

/** What restoring one message's file did: written, the same already (fsynced), or no room for it. */
type Restored = 'restored' | 'same' | 'no space';

/** Whether a message file holds the same body as `record` (a message file's bytes), with a whole footer of its own. */
function sameBody(file: Buffer, record: Buffer): boolean {
  const layout = (b: Buffer) => parseFooter(b.subarray(Math.max(0, b.length - FOOTER_LEN)), b.length);
  const f = layout(file);
  const r = layout(record);
  if (typeof f === 'string' || typeof r === 'string' || f.bodySize !== r.bodySize) return false;
  return file.compare(record, 0, r.bodySize, 0, f.bodySize) === 0;
}

/**
 * Makes <queue>/<id>.msg hold `data`, durably: rewritten in place when missing or different (never renamed over: a
 * state file beside it stays as it is), fsynced either way. `full`: the volume is known full, so only a file that is
 * the same already is fsynced. On a full volume a file this call emptied or cut short is removed: the message stays
 * in the log alone, and a file without its footer under its name would be quarantined when it gets its file.
 *
 * A whole file of the same body with an earlier state in its trailer, and a state file beside it (`statePath`), is
 * kept as it is (fsynced): a checkpoint wrote it while a state change went into the log (spool.ts relog), and the
 * update then wrote the state file, which is as new as the record or newer (the log takes no record of a message once
 * its file is written). Rewriting it gained nothing; on a full volume it was removed, and the start then removed the
 * state file as one without its message (a removal cut short): that newer state was lost (a leg delivered again).
 */
async function restoreFile(
  fs: SpoolFs,
  path: string,
  statePath: string,
  data: Buffer,
  full: boolean,
): Promise<Restored> {
  const now = await readWhole(fs, path).catch(() => undefined);
  const same =
    Buffer.isBuffer(now) &&
    (now.equals(data) ||
      (sameBody(now, data) && (await fs.lstat(statePath).catch(() => undefined))?.isFile() === true));
  if (full && !same) {
    // a file cut short (a checkpoint's write when the process was killed): the record is the message
    if (now !== undefined) await fs.unlink(path).catch(() => undefined);
    return 'no space';
  }
  const flags = fsConstants.O_WRONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK;
  let fh: SpoolFileHandle | undefined;
  try {
    fh = await fs.open(path, same ? flags : flags | fsConstants.O_CREAT | fsConstants.O_TRUNC, 0o600);
    if (!same) {
      await writevAll(fh, [data]);
      await fh.chmod(0o600);
    }
    await fh.sync();
  } catch (err) {
    if (!isNoSpace(err)) throw err;
    await fh?.close().catch(() => undefined);
    fh = undefined;
    if (!same) await fs.unlink(path).catch(() => undefined);
    return 'no space';
  } finally {
    await fh?.close();
  }
  return same ? 'same' : 'restored';
}

/**
 * The segments a replay on a full volume keeps: from the first that holds a message kept in the log, on. `ends`: the
 * segments read, and where the records of each end.
 */
function heldSegments(
  ends: ReadonlyMap<number, number>,
  held: ReadonlyMap<string, number>,
): HeldLog['segments'] {
  if (held.size === 0) return [];
  const first = Math.min(...held.values());
  const kept = [...ends].filter(([s]) => s >= first).map(([seq, end]) => ({ seq, ids: [] as string[], end }));
  const bySeq = new Map(kept.map((k) => [k.seq, k.ids]));
  for (const [id, seq] of held) bySeq.get(seq)?.push(id);
  return kept;
}

/**
 * Makes every message the log holds durable in its own file, then removes the log: run before the spool reads its
 * queue (openSpool), and on a folder before its messages are adopted (adopt.ts). `isId` checks a record's queue id.
 * On a full volume see ReplayOptions.keepOnFull.
 */
export async function replayAcceptLog(
  spoolDir: string,
  fs: SpoolFs,
  log: Logger,
  isId: (id: string) => boolean,
  opts: ReplayOptions = {},
): Promise<ReplayResult> {
  const logDir = join(spoolDir, 'log');
  const queueDir = join(spoolDir, 'queue');
  const report: ReplayReport = { live: 0, restored: 0, segments: 0, quarantined: 0, heldInLog: 0 };
  let names: string[];
  try {
    names = await fs.readdir(logDir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return report;
    throw err;
  }
  const segments = names
    .map((n) => ({ name: n, m: SEGMENT_RE.exec(n) }))
    .filter((s): s is { name: string; m: RegExpExecArray } => s.m !== null)
    .map((s) => ({ name: s.name, seq: Number.parseInt(s.m[1] ?? '', 16) }))
    .sort((a, b) => a.seq - b.seq);
  /** Moves path into quarantine/ as name.<time> (never over an earlier one), counted; returns where it went. */
  const setAside = async (path: string, name: string): Promise<string> => {
    const aside = join(spoolDir, 'quarantine', `${name}.${Date.now().toString(36)}`);
    await fs.mkdir(join(spoolDir, 'quarantine'), { recursive: true });
    await fs.rename(path, aside);
    report.quarantined++;
    return aside;
  };
  const live: LiveRecords = new Map();
  /** segment number -> where its records end, of the segments read (in order) */
  const ends = new Map<number, number>();
  /** segments holding records of a kind this version does not know (a later version's): kept, never reused */
  const foreign = new Set<number>();
  for (const s of segments) {
    const path = join(logDir, s.name);
    // never larger than a segment as this relay makes them; a file far larger (a sparse file, another program's) is
    // set aside in quarantine/ unread rather than read into memory
    const buf = await readWhole(fs, path, MAX_SEGMENT_FILE);
    if (buf === 'too large') {
      const aside = await setAside(path, s.name);
      log.error({ segment: s.name, moved: aside }, 'accept log: a segment file far too large, quarantined');
      continue;
    }
    if (buf === undefined) continue;
    report.segments++;
    const parsed = parseSegment(buf, s.seq);
    ends.set(s.seq, parsed.end);
    if (parsed.unknown > 0) {
      foreign.add(s.seq);
      log.warn(
        { segment: s.name, records: parsed.unknown },
        'accept log: records of a kind this version does not know (written by a later version), skipped; the records after them are replayed, and the segment is kept in quarantine/',
      );
    }
    for (const r of parsed.records) {
      if (!isId(r.id)) {
        log.warn({ segment: s.name, id: r.id }, 'accept log: a record with a malformed queue id, skipped');
        continue;
      }
      if (r.kind === KIND_ACCEPT) live.set(r.id, { data: r.data, seq: s.seq });
      else live.delete(r.id);
    }
  }
  /** id -> segment number, of the messages a full volume keeps in the log */
  const heldSeq = new Map<string, number>();
  const heldData = new Map<string, Buffer>();
  for (const [id, { data, seq }] of live) {
    report.live++;
    const path = join(queueDir, `${id}.msg`);
    // Something else under the message's name (a FIFO, a directory, a symlink: the spool's contents are input too) is
    // set aside in quarantine/, as the spool's own start would, and the message written in its place.
    const entry = await fs.lstat(path).catch(() => undefined);
    if (entry !== undefined && !entry.isFile()) {
      const aside = await setAside(path, `${id}.msg`);
      log.error(
        { queueId: id, moved: aside },
        'accept log: not a regular file under a message name, quarantined',
      );
    }
    const done = await restoreFile(fs, path, join(queueDir, stateFile(id)), data, heldSeq.size > 0);
    if (done === 'restored') report.restored++;
    else if (done === 'no space') {
      heldSeq.set(id, seq);
      heldData.set(id, Buffer.from(data)); // its own copy: the segment's buffer goes
    }
  }
  report.heldInLog = heldSeq.size;
  if (heldSeq.size > 0 && opts.keepOnFull !== true) throw volumeFull(spoolDir, heldSeq.size);
  if (report.live > heldSeq.size) await syncDir(fs, queueDir);
  // of the segments read: one set aside (far too large) is not kept
  const kept = heldSegments(ends, heldSeq);
  const keptSeqs = new Set(kept.map((k) => k.seq));
  // Every message is durable in its own file now, or (a full volume) in a segment kept: the others are free for
  // reuse (their records can never be read as a later segment's: each names the segment it was written to)
  // a segment with a later version's records goes to quarantine/ (for a roll forward or a human), never reused
  for (const s of segments.filter((x) => foreign.has(x.seq) && !keptSeqs.has(x.seq))) {
    const aside = await setAside(join(logDir, s.name), s.name);
    log.warn(
      { segment: s.name, moved: aside },
      'accept log: a segment with records of a later version, kept',
    );
  }
  const freed = segments.filter((s) => !keptSeqs.has(s.seq) && !foreign.has(s.seq));
  for (const s of freed)
    await fs.rename(join(logDir, s.name), join(logDir, freeName(s.seq))).catch((err: unknown) => {
      // one set aside above is gone from here
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    });
  if (freed.length > 0) await syncDir(fs, logDir);
  if (report.segments > 0)
    log.info(
      { spool: spoolDir, ...report },
      heldSeq.size === 0
        ? 'accept log: replayed; every message it held is in its own file'
        : 'accept log: replayed; the volume is full: some messages stay in the log until their files fit',
    );
  return heldSeq.size === 0 ? report : { ...report, held: { segments: kept, messages: heldData } };
}

/** The error of a replay that may not keep messages in the log (adoption) on a full volume. */
function volumeFull(spoolDir: string, held: number): Error {
  return Object.assign(
    new Error(
      `accept log of ${spoolDir}: the volume is full (ENOSPC): ${held} messages it holds cannot be written to files ` +
        'of their own; grow the volume (or free space on it) and start again',
    ),
    { code: 'ENOSPC' },
  );
}

interface Segment {
  seq: number;
  fh: SpoolFileHandle;
  /** Bytes given to writes so far (where the next write goes); the whole segment after a failed write. */
  used: number;
  /** The bytes records may take: segmentBytes, or a kept segment's size once reopened (AcceptLog.reopen). */
  capacity: number;
  /** Ids accepted in this segment, not removed or checkpointed yet. */
  live: Set<string>;
  sealedAt?: number;
  /** A write into this segment failed: the records of later writes into it lie beyond a hole and are refused too. */
  failed?: unknown;
  /** Renamed free: its records are no longer read at a start (a removal of a message it accepted needs no record). */
  retired?: boolean;
}

/** One write in flight, answered in the order of issue (issued). */
interface Issued {
  seg: Segment;
  batch: Pending[];
  done: boolean;
  failed: { err: unknown } | undefined;
}

interface Pending {
  kind: Kind;
  id: string;
  /** An accept of an id the log held already: the segment of its earlier record (set when the batch is written). */
  earlier?: Segment | undefined;
  data: readonly Buffer[];
  /** The record's size once encoded. */
  bytes: number;
  resolve: () => void;
  reject: (err: unknown) => void;
}

export interface AcceptLogOptions {
  spoolDir: string;
  fs: SpoolFs;
  log: Logger;
  /** Makes these messages' files and entries durable (not those gone): they no longer need the log. */
  checkpoint: (ids: readonly string[]) => Promise<void>;
  /** Makes every removal and directory entry so far durable (the queue directory's fsync). */
  syncQueue: () => Promise<void>;
  /** A monotonic clock in ms (default performance.now): a segment's age and the pause after a failed one are
   * durations, which a step of the wall clock (NTP, a VM resumed) must not stretch or cut short. */
  now?: () => number;
  segmentBytes?: number;
  checkpointAfterMs?: number;
  /** Each write's time from its issue to its completion as the event loop takes it up, in seconds (a metric). */
  onWrite?: (seconds: number) => void;
  /** A write failed (a metric; the log goes on in a new segment, its records' messages get files of their own). */
  onWriteFailed?: () => void;
  /**
   * The segments a replay on a full volume kept (HeldLog.segments): taken over as sealed segments, retired as any
   * other once their messages are removed or checkpointed (the checkpoint writes their files when space returns).
   */
  held?: readonly { seq: number; ids: readonly string[]; end?: number }[];
}

export class AcceptLog {
  private readonly o: Required<Omit<AcceptLogOptions, 'now' | 'onWrite' | 'onWriteFailed' | 'held'>> &
    Pick<AcceptLogOptions, 'onWrite' | 'onWriteFailed'> & { now: () => number };
  private readonly logDir: string;
  private current: Segment | undefined;
  private spare: Promise<Segment> | undefined;
  private readonly sealed: Segment[] = [];
  /** Retired segment files, to be reused. */
  private readonly free: string[] = [];
  private readonly segOf = new Map<string, Segment>();
  private nextSeq: number;
  private queue: Pending[] = [];
  /** Writes issued whose records are not answered yet, in the order they were issued: the order of the answers. */
  private readonly issued: Issued[] = [];
  /** Waiting until no write in `issued` matches `of` (answered()). */
  private answerWaiters: { of: (w: Issued) => boolean; resolve: () => void }[] = [];
  /** A rotation in progress: no write is issued until the next segment is current. */
  private rotating: Promise<void> | undefined;
  /** The queue is to be issued at the end of this event-loop turn's I/O callbacks. */
  private issueScheduled = false;
  private retiring: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  /** After a segment could not be made, none is tried again before this time. */
  private noSpaceUntil = 0;
  /** Why the last segment could not be made (the error of the attempts refused until noSpaceUntil). */
  private prepareFailure: unknown;
  /** Removed messages whose removal record could not be written yet, and the segment of their accept record: tried
   * again at each checkpoint tick until written, or until that segment is retired (nothing left to cancel). */
  private readonly unrecorded = new Map<string, Segment>();
  /** A warning repeated while the volume stays full -> when it may be logged again (warnQuietly). */
  private readonly quietUntil = new Map<string, number>();

  private constructor(o: AcceptLogOptions, firstSeq: number) {
    this.o = {
      ...o,
      now: o.now ?? (() => performance.now()),
      segmentBytes: o.segmentBytes ?? SEGMENT_BYTES,
      checkpointAfterMs: o.checkpointAfterMs ?? CHECKPOINT_AFTER_MS,
    };
    this.logDir = join(o.spoolDir, 'log');
    this.nextSeq = firstSeq;
  }

  /** Opens the log of a spool whose earlier log was replayed (replayAcceptLog): its first segment is made now. */
  static async open(o: AcceptLogOptions): Promise<AcceptLog> {
    const logDir = join(o.spoolDir, 'log');
    await o.fs.mkdir(logDir, { recursive: true });
    const names = await o.fs.readdir(logDir);
    // A segment number is never used twice in a folder: a free file's old records name the segment they were written
    // to, and must never read as a later segment's.
    let seq = Date.now();
    for (const n of names) {
      const m = SEGMENT_RE.exec(n) ?? /^free-([0-9a-f]{16})\.seg$/.exec(n);
      if (m?.[1] !== undefined) seq = Math.max(seq, Number.parseInt(m[1], 16) + 1);
    }
    const l = new AcceptLog(o, seq);
    for (const n of names) if (FREE_RE.test(n)) l.free.push(n);
    for (const h of o.held ?? []) await l.takeOver(h.seq, h.ids);
    try {
      l.current = await l.prepare();
    } catch (err) {
      // With segments taken over, the log is needed even with no room for a new one: it retires them (their removals
      // and checkpoints). Each message meanwhile is made durable in its own file, as after a failure later on. The
      // removal records go into the newest segment kept, from where its records end (issueRemovals): dropped for want
      // of a segment, they left the accept records of delivered messages live in the segments kept, and each later
      // start delivered those messages again.
      if (l.sealed.length === 0) throw err;
      const end = o.held?.at(-1)?.end;
      const reopened = end !== undefined && (await l.reopen(end));
      o.log.warn(
        { err, spool: o.spoolDir },
        reopened
          ? 'accept log: no new segment for now (a full volume); removals are recorded in the last segment kept'
          : 'accept log: no new segment for now (a full volume)',
      );
    }
    l.kickRetire();
    return l;
  }

  /** A segment a replay kept (a full volume): sealed now, its messages live in it until removed or checkpointed. */
  private async takeOver(seq: number, ids: readonly string[]): Promise<void> {
    // only closed at its retirement: nothing more is written into it
    const fh = await this.o.fs.openRead(join(this.logDir, segmentName(seq)));
    const bytes = this.o.segmentBytes;
    const seg: Segment = {
      seq,
      fh,
      used: bytes,
      capacity: bytes,
      live: new Set(ids),
      sealedAt: this.o.now(),
    };
    for (const id of ids) this.segOf.set(id, seg);
    this.sealed.push(seg);
  }

  /**
   * Opens the newest segment taken over (no new segment could be made) for writing at `end`, where its records end, as
   * the one removal records go into. Its blocks exist: it was made of zeros written and fsynced (prepare), so a write
   * into it needs no new space on a file system that writes in place (ext4, xfs without shared extents, tmpfs; a
   * copy-on-write one such as btrfs or ZFS may still refuse it: the write fails, and the removals wait, below). What
   * lies after `end` is zeroed first (in place, O_DSYNC): a write a crash cut short there, with a later one of this
   * segment beside it (never answered), must not read as records behind the new ones. False (a warning): a file with
   * holes or shorter than `end` (not made by prepare: copied, restored), or no write access; the removals then wait
   * for a new segment (removed).
   */
  private async reopen(end: number): Promise<boolean> {
    const seg = this.sealed.at(-1);
    if (seg === undefined) return false;
    const path = join(this.logDir, segmentName(seg.seq));
    let fh: SpoolFileHandle | undefined;
    try {
      fh = await this.o.fs.open(path, WRITE_DSYNC);
      const st = await fh.stat();
      // st.blocks counts 512-byte units: fewer than the size, the file has holes (writing into one takes new space)
      if (!st.isFile() || end > st.size || (st.blocks !== undefined && st.blocks * 512 < st.size))
        throw new Error(
          `not preallocated: ${st.size} bytes, ${st.blocks ?? '?'} blocks, records end at ${end}`,
        );
      for (let off = end; off < st.size; off += ZEROS.length)
        await writevAll(fh, [ZEROS.subarray(0, Math.min(ZEROS.length, st.size - off))], off);
      await seg.fh.close().catch(noop);
      seg.fh = fh;
      seg.used = end;
      seg.capacity = st.size;
      return true;
    } catch (err) {
      await fh?.close().catch(noop);
      this.o.log.warn(
        { err, segment: segmentName(seg.seq) },
        'accept log: the last segment kept cannot take removal records; they wait for a new segment',
      );
      return false;
    }
  }

  /**
   * Whether small messages go into the log now: false once it is closed, and while no segment is current and none
   * may be made yet (the last attempt failed: a full or small volume; each message gets its own fsynced file).
   */
  get usable(): boolean {
    return !this.closed && (this.current !== undefined || this.o.now() >= this.noSpaceUntil);
  }

  /** The largest message file the log takes; a larger one is made durable by its own fsync. */
  get maxRecordData(): number {
    return Math.floor(this.o.segmentBytes / 4) - RECORD_HEADER - ID_BYTES;
  }

  /**
   * Durable once it resolves: the message file's bytes of `id`, which is live until removed() or checkpointed. An id
   * the log holds already (its file's bytes with a later state: spool.ts update) is accepted again: once the new record
   * is durable it is the one a replay restores, and the earlier record's segment no longer waits for the id.
   */
  accept(id: string, data: readonly Buffer[]): Promise<void> {
    return this.append(KIND_ACCEPT, id, data);
  }

  /**
   * The message is removed: true when its accept record was still live (a removal record is appended, durable with the
   * next write, and its file's unlink needs no directory fsync of its own); false when the log no longer holds it.
   */
  removed(id: string): boolean {
    const seg = this.segOf.get(id);
    if (seg === undefined) return false;
    this.segOf.delete(id);
    seg.live.delete(id);
    this.recordRemoval(id, seg);
    this.kickRetire();
    return true;
  }

  /**
   * Appends the removal record of `id`, whose accept record is in `seg`. Nothing waits for it (no promise made): one
   * that cannot be written (no segment to write it into: a full volume) is kept and tried again at each checkpoint
   * tick, until written or until `seg` is retired. Dropped, it left the accept record live in a segment a full volume
   * kept, and every start after it delivered the message again.
   */
  private recordRemoval(id: string, seg: Segment): void {
    this.enqueue(KIND_REMOVAL, id, [], noop, (err: unknown) => {
      if (seg.retired === true) return; // its accept record is no longer read: nothing to cancel
      this.unrecorded.set(id, seg);
      this.warnQuietly(
        'removal',
        err,
        { queueId: id, unrecorded: this.unrecorded.size },
        'accept log: could not record a removal yet; trying again (a restart meanwhile delivers it again)',
      );
      this.schedule();
    });
  }

  /** The removals not recorded yet (unrecorded), tried again. */
  private retryRemovals(): void {
    const again = [...this.unrecorded];
    this.unrecorded.clear();
    for (const [id, seg] of again) if (seg.retired !== true) this.recordRemoval(id, seg);
  }

  /**
   * A warning; one that a full volume (ENOSPC, EDQUOT) repeats at every retry (each second) is logged once a minute
   * per kind (`what`) while the volume stays full.
   */
  private warnQuietly(what: string, err: unknown, fields: object, msg: string): void {
    if (isNoSpace(err)) {
      const now = this.o.now();
      if (now < (this.quietUntil.get(what) ?? -Infinity)) return;
      this.quietUntil.set(what, now + NO_SPACE_WARN_MS);
    }
    this.o.log.warn({ err, ...fields }, msg);
  }

  /** Waits for every record appended so far, then closes the segment files (the log is replayed at the next start). */
  async close(): Promise<void> {
    // the removals not recorded yet: a last attempt
    this.retryRemovals();
    this.closed = true;
    clearTimeout(this.timer);
    for (;;) {
      if (this.queue.length > 0) this.issue();
      if (this.queue.length === 0 && this.issued.length === 0 && !this.rotating && !this.retiring) break;
      await Promise.all([this.answered(() => true), this.rotating, this.retiring]);
    }
    if (this.unrecorded.size > 0)
      this.o.log.error(
        {
          spool: this.o.spoolDir,
          unrecorded: this.unrecorded.size,
          queueIds: [...this.unrecorded.keys()].slice(0, 100),
        },
        'accept log: removals that could not be recorded (no room in the log): the next start delivers these messages again',
      );
    const spare = this.spare;
    this.spare = undefined;
    const handles = [this.current?.fh, ...this.sealed.map((s) => s.fh)];
    if (spare !== undefined) handles.push(await spare.then((s) => s.fh).catch(() => undefined));
    for (const fh of handles) await fh?.close().catch(() => undefined);
  }

  private append(kind: Kind, id: string, data: readonly Buffer[]): Promise<void> {
    return new Promise<void>((resolve, reject) => this.enqueue(kind, id, data, resolve, reject));
  }

  private enqueue(
    kind: Kind,
    id: string,
    data: readonly Buffer[],
    resolve: () => void,
    reject: (err: unknown) => void,
  ): void {
    if (this.closed) return reject(new Error('accept log: closed'));
    let bytes = RECORD_HEADER + ID_BYTES;
    for (const d of data) bytes += d.length;
    this.queue.push({ kind, id, data, bytes, resolve, reject });
    this.pump();
  }

  /**
   * Gets what is queued written (group commit). With no write in flight, at once: a lone record waits for nothing.
   * Otherwise once this event-loop turn's I/O callbacks have run (setImmediate), as one write that runs beside those
   * in flight, rather than after them: the records that arrive during a write no longer wait for its end and for the
   * event loop to take up its completion before theirs starts (docs/perf.md, "Log writes side by side").
   */
  private pump(): void {
    if (this.issued.length === 0 && this.rotating === undefined && !this.issueScheduled) return this.issue();
    if (this.issueScheduled) return;
    this.issueScheduled = true;
    setImmediate(() => {
      this.issueScheduled = false;
      this.issue();
    });
  }

  /**
   * Issues the queue as writes of the records that fit the current segment, each at its own offset, at most
   * MAX_WRITES_IN_FLIGHT at a time. A record is answered only once its write and every earlier write have ended
   * (answer): a replay reads a segment up to its first hole, so a record is acknowledged only when none lies before it.
   */
  private issue(): void {
    while (
      this.queue.length > 0 &&
      this.issued.length < MAX_WRITES_IN_FLIGHT &&
      this.rotating === undefined
    ) {
      const seg = this.current;
      if (seg === undefined && this.issueRemovals()) continue;
      // the records that fit what is left of the segment, in order
      let room = seg === undefined ? 0 : seg.capacity - seg.used;
      const batch: Pending[] = [];
      while (this.queue.length > 0 && (this.queue[0]?.bytes ?? Infinity) <= room) {
        const p = this.queue.shift() as Pending;
        room -= p.bytes;
        batch.push(p);
      }
      if (seg === undefined || batch.length === 0) {
        this.rotating = this.rotate()
          .catch((err: unknown) => {
            // no segment: the removal records still go into the newest sealed one while it has room (issueRemovals)
            const keep = this.removalSegment() !== undefined;
            const queued = this.queue.splice(0);
            for (const p of queued) if (!keep || p.kind !== KIND_REMOVAL) p.reject(err);
            if (keep) this.queue = queued.filter((p) => p.kind === KIND_REMOVAL);
          })
          .finally(() => {
            this.rotating = undefined;
            if (this.queue.length > 0) this.pump();
          });
        return;
      }
      this.write(seg, batch);
    }
  }

  /**
   * With no current segment (none could be made: a full volume), the removal records at the head of the queue go into
   * the newest sealed segment while it has room: the blocks of a segment exist, so this needs no new space, and each
   * comes after every accept record it cancels (no segment is newer). False: none went (an accept first, or no room).
   */
  private issueRemovals(): boolean {
    const seg = this.removalSegment();
    if (seg === undefined) return false;
    let room = seg.capacity - seg.used;
    const batch: Pending[] = [];
    for (let p = this.queue[0]; p?.kind === KIND_REMOVAL && p.bytes <= room; p = this.queue[0]) {
      this.queue.shift();
      room -= p.bytes;
      batch.push(p);
    }
    if (batch.length === 0) return false;
    this.write(seg, batch);
    return true;
  }

  /** The newest sealed segment if a removal record fits it: written by this log (not one taken over, unless reopened),
   * no write into it failed. */
  private removalSegment(): Segment | undefined {
    const seg = this.sealed.at(-1);
    return seg !== undefined &&
      seg.failed === undefined &&
      seg.capacity - seg.used >= RECORD_HEADER + ID_BYTES
      ? seg
      : undefined;
  }

  /** Issues one write of `batch`'s records at the segment's next offset (issue). */
  private write(seg: Segment, batch: Pending[]): void {
    const bufs: Buffer[] = [];
    let bytes = 0;
    for (const p of batch) {
      bufs.push(...encodeRecord(seg.seq, p.kind, p.id, p.data));
      bytes += p.bytes;
      if (p.kind === KIND_ACCEPT) {
        p.earlier = this.segOf.get(p.id);
        seg.live.add(p.id);
        this.segOf.set(p.id, seg);
      }
    }
    const position = seg.used;
    seg.used += bytes;
    const onWrite = this.o.onWrite;
    const issuedAt = onWrite === undefined ? 0 : performance.now();
    const w: Issued = { seg, batch, done: false, failed: undefined };
    this.issued.push(w);
    writevAll(seg.fh, bufs, position).then(
      () => {
        onWrite?.((performance.now() - issuedAt) / 1000);
        this.completed(w, undefined);
      },
      (err: unknown) => this.completed(w, { err }),
    );
  }

  /** A write has ended: its records, and those of every write after it that has ended too, are answered in order. */
  private completed(w: Issued, failed: { err: unknown } | undefined): void {
    w.done = true;
    w.failed = failed;
    for (let head = this.issued[0]; head?.done === true; head = this.issued[0]) {
      this.issued.shift();
      this.answer(head.seg, head.batch, head.failed);
    }
    if (this.answerWaiters.length > 0) {
      const still = this.answerWaiters.filter((x) => this.issued.some(x.of));
      for (const x of this.answerWaiters) if (!still.includes(x)) x.resolve();
      this.answerWaiters = still;
    }
    if (this.queue.length > 0) this.pump();
  }

  /** Resolves once no write issued so far that matches `of` is waiting for its answer (at most four are in flight). */
  private answered(of: (w: Issued) => boolean): Promise<void> {
    if (!this.issued.some(of)) return Promise.resolve();
    return new Promise((resolve) => this.answerWaiters.push({ of, resolve }));
  }

  /** Answers a write's records, in the order the writes were issued: written, or refused with the failure. */
  private answer(seg: Segment, batch: readonly Pending[], failed: { err: unknown } | undefined): void {
    if (failed !== undefined) this.o.onWriteFailed?.();
    if (failed !== undefined && seg.failed === undefined) {
      // what lies from here on in this segment is unknown: no more records go into it
      seg.failed = failed.err;
      seg.used = seg.capacity;
      this.o.log.error(
        { err: failed.err, segment: segmentName(seg.seq) },
        'accept log: a write failed; going on in a new segment',
      );
    }
    const err = failed?.err ?? seg.failed;
    if (err === undefined) {
      let superseded = false;
      for (const p of batch) {
        // an earlier record replaced: its segment may retire without it
        if (p.earlier !== undefined && p.earlier !== seg && this.segOf.get(p.id) === seg) {
          p.earlier.live.delete(p.id);
          superseded = true;
        }
        p.resolve();
      }
      if (superseded) this.kickRetire();
      return;
    }
    // this write failed, or an earlier one into the segment did (its records would lie beyond a hole)
    for (const p of batch) {
      if (p.kind !== KIND_ACCEPT || this.segOf.get(p.id) !== seg) continue;
      // an earlier record of the id still holds it (in this segment too: it was written before)
      if (p.earlier === undefined) {
        seg.live.delete(p.id);
        this.segOf.delete(p.id);
      } else if (p.earlier !== seg) {
        seg.live.delete(p.id);
        this.segOf.set(p.id, p.earlier);
      }
    }
    for (const p of batch) p.reject(err);
  }

  /** Seals the current segment (if any) and goes on in the next, prepared ahead when it could be. */
  private async rotate(): Promise<void> {
    const old = this.current;
    if (old !== undefined) {
      old.sealedAt = this.o.now();
      this.sealed.push(old);
      this.current = undefined;
      this.kickRetire();
    }
    const ready = this.spare;
    this.spare = undefined;
    // a spare that could not be made is made again now; its failure is this rotation's
    this.current = await (ready ?? this.prepare()).catch(() => this.prepare());
    const spare = this.prepare();
    spare.catch(() => undefined); // awaited (and its error met) at the next rotation
    this.spare = spare;
  }

  /** The next segment file: a free one renamed, or a new one of zeros; fsynced, its name durable, opened O_DSYNC. */
  private async prepare(): Promise<Segment> {
    const seq = this.nextSeq++;
    const path = join(this.logDir, segmentName(seq));
    const reuse = this.free.shift();
    if (reuse !== undefined) {
      await this.o.fs.rename(join(this.logDir, reuse), path);
    } else {
      if (this.o.now() < this.noSpaceUntil)
        throw Object.assign(new Error('accept log: no new segment (the last attempt failed)'), {
          code: (this.prepareFailure as NodeJS.ErrnoException | undefined)?.code,
          cause: this.prepareFailure,
        });
      const fh = await this.o.fs.open(
        path,
        fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL,
        0o600,
      );
      let made = false;
      try {
        for (let off = 0; off < this.o.segmentBytes; off += ZEROS.length)
          await writevAll(fh, [ZEROS.subarray(0, Math.min(ZEROS.length, this.o.segmentBytes - off))]);
        await fh.sync();
        made = true;
      } catch (err) {
        this.prepareFailure = err;
        throw err;
      } finally {
        await fh.close().catch(() => undefined);
        if (!made) {
          // a full disk: nothing half-made stays, and no new attempt for a while (the spool makes messages durable
          // without the log meanwhile)
          this.noSpaceUntil = this.o.now() + RETRY_PREPARE_MS;
          await this.o.fs.unlink(path).catch(() => undefined);
        }
      }
    }
    await syncDir(this.o.fs, this.logDir);
    const fh = await this.o.fs.open(path, WRITE_DSYNC);
    return { seq, fh, used: 0, capacity: this.o.segmentBytes, live: new Set() };
  }

  private kickRetire(): void {
    if (this.retiring !== undefined || this.sealed.length === 0 || this.closed) return;
    this.retiring = this.retire()
      .catch((err: unknown) =>
        // each second while the volume stays full (the checkpoint cannot write its files): logged once a minute then
        this.warnQuietly('retire', err, {}, 'accept log: could not retire a segment; trying again'),
      )
      .finally(() => {
        this.retiring = undefined;
        this.schedule();
      });
  }

  /** The checkpoint tick: retires (or checkpoints) sealed segments, and tries the removals not recorded yet again. */
  private schedule(): void {
    if (this.closed || this.timer !== undefined) return;
    if (this.sealed.length === 0 && this.unrecorded.size === 0) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.retryRemovals();
      this.kickRetire();
      if (this.retiring === undefined) this.schedule(); // else once the retirement ends
    }, this.o.checkpointAfterMs);
    this.timer.unref();
  }

  /** Retires sealed segments in order: checkpointing what they still hold once they are old enough. */
  private async retire(): Promise<void> {
    for (;;) {
      const seg = this.sealed[0];
      if (seg === undefined) return;
      if (seg.live.size > 0) {
        if (this.o.now() - (seg.sealedAt ?? 0) < this.o.checkpointAfterMs) return;
        // Every write into it answered first: the spool takes a message as held by the log alone only once its
        // accept is answered (spool.ts), so a checkpoint while its write was still on its way (a disk slower than
        // checkpointAfterMs at a segment's end) skipped it, and the segment went free with the message's only copy.
        // A turn of the event loop after the answers: their continuations (the spool's bookkeeping) have run.
        await this.answered((w) => w.seg === seg);
        await new Promise<void>((resolve) => setImmediate(resolve));
        const ids = [...seg.live];
        await this.o.checkpoint(ids);
        for (const id of ids) {
          if (this.segOf.get(id) === seg) this.segOf.delete(id);
          seg.live.delete(id);
        }
      }
      // the unlinks of its removed messages are durable before their accept records go
      await this.o.syncQueue();
      this.sealed.shift();
      await this.answered((w) => w.seg === seg); // its removal records may still be in flight
      await seg.fh.close().catch(() => undefined);
      const free = freeName(seg.seq);
      await this.o.fs.rename(join(this.logDir, segmentName(seg.seq)), join(this.logDir, free));
      seg.retired = true;
      await syncDir(this.o.fs, this.logDir);
      this.free.push(free);
    }
  }
}
