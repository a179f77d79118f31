// The seam between accepting and delivering: the inbound side calls accept(), the delivery side reads the spool.
// The spool is the only hand-off between the two (docs/design.md §6.4).
import type { Readable } from 'node:stream';
import type { Leg } from '../../routing/model.ts';

/** One accepted envelope recipient and the legs its delivery plan names. */
export interface AcceptedRecipient {
  /** As given in RCPT TO (lowercased domain). */
  recipient: string;
  legs: Leg[];
}

export interface EnvelopeMeta {
  /** '' for the null sender <> */
  mailFrom: string;
  recipients: AcceptedRecipient[];
  clientAddress: string;
  clientHostname: string;
  helo: string;
  /** RFC 3339 */
  receivedAt: string;
  /** Routing revision the plans were made with. */
  revision: string;
  smtputf8: boolean;
  /** BODY=8BITMIME was declared */
  body8bit: boolean;
  /**
   * Set when a draining relay handed this message over (relay/cluster/drain.ts): the queue id it had there and that
   * relay's name. Logged with the acceptance and shown by `mailroute queue show`.
   */
  origin?: HandoffOrigin;
}

interface HandoffOrigin {
  queueId: string;
  relay: string;
}

export type AcceptResult =
  | { ok: true; id: string }
  /** The body stream failed (the inbound layer's own error is passed through) or the disk failed. Nothing was kept. */
  | { ok: false; error: Error; storage: boolean };

export interface AcceptOptions {
  /**
   * Asked once, after the body's end: true when the writer vouches that every line of the body ends in CRLF and none
   * starts with "." (the inbound content scan knows). The in-memory copy is then sent by DATA as it is
   * (relay/spool/wire-ready.ts). Absent or false: the delivery client scans the body itself.
   */
  wireReady?: () => boolean;
}

export interface SpoolWriter {
  /**
   * Streams body to disk, writes the delivery plan beside it, fsyncs file and directory, and only then resolves
   * with { ok: true }. On any failure nothing remains in the spool.
   */
  accept(meta: EnvelopeMeta, body: Readable, opts?: AcceptOptions): Promise<AcceptResult>;
}

// ---------------------------------------------------------------------------------------------------------------
// What the delivery side reads and writes. One state file per message (JSON, rewritten atomically) next to one
// immutable body file. State lives per leg and recipient.

/** pending: not tried yet; deferred: retry at nextAttemptAt; the other three are final. */
export const LEG_STATE_NAMES = ['pending', 'deferred', 'delivered', 'failed', 'suppressed'] as const;
export type LegStateName = (typeof LEG_STATE_NAMES)[number];

/** pending or deferred: the leg is still to be delivered; the other three states are final. */
export function isOpenLeg(leg: Pick<LegState, 'state'>): boolean {
  return leg.state === 'pending' || leg.state === 'deferred';
}

/** delivered, failed or suppressed: the leg is done (its DSN may still be owed). */
export function isFinalLeg(leg: Pick<LegState, 'state'>): boolean {
  return !isOpenLeg(leg);
}

/** One (envelope recipient, leg) pair of a message and where its delivery stands. */
export interface LegState {
  /** The recipient as accepted in RCPT TO. */
  recipient: string;
  /** The leg from the delivery plan fixed at accept time (leg.recipient is the rewritten envelope recipient). */
  leg: Leg;
  state: LegStateName;
  attempts: number;
  /** RFC 3339; set while deferred. */
  nextAttemptAt?: string;
  /** RFC 3339 */
  lastAttemptAt?: string;
  /** The last reply or error, e.g. "450 4.2.0 mailbox busy" or "connection refused (ECONNREFUSED)". */
  lastReply?: string;
  /** The server that gave lastReply (host:port). */
  lastServer?: string;
  /**
   * The RFC 3463 status a DSN reports for lastReply (outcome.ts): set with every deferral and failure. Absent in
   * state files written before it existed; the DSN then derives it from lastReply (relay/delivery/bounce.ts).
   */
  status?: string;
  /** The leg failed because its queue lifetime ran out (status 4.4.7). */
  expired?: boolean;
  /** A DSN is owed for this failure (set with state failed; cleared once the DSN is itself spooled). */
  dsnPending?: boolean;
  /** The queue id of the DSN that reported this failure. */
  dsnId?: string;
  /** A delay DSN (Action: delayed) is owed: the leg is still deferred --delay-warning after arrival. */
  delayPending?: boolean;
  /** The queue id of the delay DSN sent for this leg (at most one per leg); 'none'/'unroutable' when none went. */
  delayDsnId?: string;
}

/** A message body for sending: its bytes, or the bytes [start (default 0), size) of a file. */
export type MessageBody = Buffer | { path: string; size: number; start?: number };

/** The content of a message's state file. */
export interface SpoolState {
  version: 1;
  id: string;
  meta: Omit<EnvelopeMeta, 'recipients'>;
  /** Bytes in the body file. */
  size: number;
  /**
   * The CRC-32 (zlib's, node:zlib crc32) of those `size` bytes, computed as accept() wrote them. Where a delivery reads
   * a body from a file an earlier process wrote, it is compared first (Spool.checkBody): a power cut before the
   * accept's fsync can keep the file's size, state and footer while body blocks read back as zeros. Absent in files
   * written before it existed (not checked then).
   */
  bodyCrc32?: number;
  legs: LegState[];
}

/** What Spool.checkBody found: the body is as accepted (or cannot be checked: no CRC recorded), or why not. */
export type BodyCheck = { ok: true } | Extract<LoadResult, { ok: false }>;

export type LoadResult =
  | { ok: true; state: SpoolState }
  /** missing: the message is gone (delivered or deleted); corrupt: the files were moved to quarantine/. */
  | { ok: false; reason: 'missing' | 'corrupt'; error: string };

/** Everything the delivery engine and the admin API need from the spool. */
export interface Spool extends SpoolWriter {
  readonly dir: string;
  /** Ids of every committed message, oldest first. Reads the directory only, never a file. */
  list(): Promise<string[]>;
  /**
   * Reads one message's state. Only regular files are read; a state that is too large, does not parse, or carries an
   * address or enum the relay would not accept (relay/spool/check.ts) is quarantined (and logged) and reported as
   * corrupt.
   */
  load(id: string): Promise<LoadResult>;
  /**
   * Read-modify-write of the message's state file, serialized per id: write tmp, fsync, rename, directory fsync
   * (shared by concurrent callers: group commit). Resolves once the new state survives a power cut. When change
   * returns null the message is removed instead (resolves null, also once durable); when it returns the state it was
   * given, nothing is written (a change must not modify that state in place). Resolves undefined when the message is
   * gone.
   */
  update(
    id: string,
    change: (state: SpoolState) => SpoolState | null,
  ): Promise<SpoolState | null | undefined>;
  /** Removes state then body. True when the message existed. */
  remove(id: string): Promise<boolean>;
  /** Moves the message's files to quarantine/ and logs why. */
  quarantine(id: string, reason: string): Promise<void>;
  /**
   * Where to read the body (size bytes, SpoolState.size) from for sending: the bytes themselves while a small,
   * recently accepted message is still held in memory (so the legs of a fresh message do not each read the file
   * back), else the first size bytes of its message file.
   */
  body(id: string, size: number): MessageBody;
  /**
   * Before a body is read from a file an earlier process wrote (found at start): compares its bytes with the CRC-32
   * its initial state recorded, once per process (concurrent callers share one check). A mismatch (or a file that is no
   * longer a readable message) moves the message's files to quarantine/, logged at error level, and resolves corrupt:
   * nothing of it may be sent. Resolves { ok: true } at once for a body this process wrote or holds in memory, one
   * checked already, and one whose state has no CRC (an earlier version's). A spool that holds every body in memory
   * (test/support/memory-spool.ts) has nothing to check.
   */
  checkBody(id: string): Promise<BodyCheck>;
  /** The whole body in memory, byte for byte as accepted (checked as checkBody does; tests, tools; delivery streams with body()). */
  readBody(id: string): Promise<Buffer>;
  /** The header block of the body (up to the first empty line), at most maxBytes. For DSNs. */
  readHeaders(id: string, maxBytes?: number): Promise<Buffer>;
  /** What openSpool found and cleaned up at start. */
  readonly recovery: RecoveryReport;
  /** Why the spool is stuck (a file-system call pending for longer than the stall limit), else undefined. */
  stalled(): string | undefined;
  /**
   * Releases the queue directory's handle (held for its fsyncs) once the directory fsync in progress, if any, ended.
   * Afterwards every call that needs a directory fsync (accept, update, remove) fails as a storage error.
   */
  close(): Promise<void>;
}

export interface RecoveryReport {
  /** Committed messages found. */
  messages: number;
  /** Partial temp files from a crash, removed. */
  removedTemp: number;
  /** State files whose message file is gone (a removal was cut short), removed. */
  removedOrphans: number;
  /** Files moved to quarantine/ (names that are not spool files, or entries that are not regular files). */
  quarantined: number;
  /** Message files rewritten from the accept log (missing, or not what was accepted: a power cut). */
  restoredFromLog: number;
  durationMs: number;
}
