// Copies give way to primary mail when the spool's volume runs low.
//
// A copy leg (an extra delivery beside the mailbox of record: routing/model.ts) to a secondary that is down keeps its
// message's files on the spool until the queue lifetime ends (5 days by default). A secondary down over a long
// weekend can fill the volume that way, and a full volume refuses every new message with 452 4.3.1, primary mail
// included. So while the volume has less free space than --shed-copies-below (default 10 % of it), the relay ends the
// open copy legs of its oldest messages that wait on copies alone (every leg of record is final), until the volume is
// back above the threshold. A copy ends as any undelivered copy does (outcome.ts endLeg): with bounces Suppress it is
// suppressed (nobody told; parity reason "shed"), with bounces Notify it fails and the sender gets a DSN. A message
// whose leg of record is still open is left alone: its files stay for that leg anyway, so ending its copies would
// free nothing. A copy whose recipient has no leg of record (a spool written before every plan had one) is never shed.
//
// Exports:
//   SpaceThreshold, parseSpaceThreshold(text), thresholdBytes(threshold, totalBytes): the flag (pure)
//   SHED_STATUS, ShedLeg, shedState(state, busy, reply): the state with its copies ended, or undefined (pure)
//   SpoolSpace, spoolSpace(dir) (statfs), shortOfSpace(threshold, space): what the volume is short of, bytes or files
//     (inodes) (pure)
//   watchSpoolSpace(opts): checks the free space on a timer, keeps mailroute_spool_free_bytes, and sheds when low
import { statfs } from 'node:fs/promises';
import type { Logger } from 'pino';
import { parseBytes } from '../../lib/manifests.ts';
import { isOpenLeg, type LegState, type SpoolState } from '../spool/types.ts';
import type { RelayMetrics } from '../telemetry/metrics.ts';
import { endLeg, withOutcome, type EndOutcome } from './outcome.ts';
import { every, type Timers } from './scheduler.ts';

/** --shed-copies-below: a share of the volume (percent, 0-90) or a number of bytes; 0 of either: never shed. */
export type SpaceThreshold = { percent: number } | { bytes: number };

/** "10%", "2.5%", "512MiB", "1GiB", "0"; undefined when it is none of these (the caller names the flag). */
export function parseSpaceThreshold(text: string): SpaceThreshold | undefined {
  const t = text.trim();
  if (t === '0') return { bytes: 0 };
  const pct = /^(\d{1,2}(?:\.\d{1,2})?)\s*%$/.exec(t);
  if (pct?.[1] !== undefined) {
    const percent = Number(pct[1]);
    return percent <= 90 ? { percent } : undefined;
  }
  const bytes = parseBytes(t);
  return bytes === undefined ? undefined : { bytes };
}

/** The threshold in bytes for a volume of totalBytes (0: never shed). */
export function thresholdBytes(t: SpaceThreshold, totalBytes: number): number {
  return 'bytes' in t ? t.bytes : Math.floor((totalBytes * t.percent) / 100);
}

/** RFC 3463 4.3.1: mail system full. */
export const SHED_STATUS = '4.3.1';

/** One copy leg ended by shedState: its index, its state after, and the outcome (for metrics and parity). */
export interface ShedLeg {
  index: number;
  leg: LegState;
  outcome: EndOutcome;
}

/**
 * The state with the open copy legs ended (reply: why, it starts with "shed"), or undefined when there is nothing to
 * shed: a leg of record still open, or no open copy leg that may be shed (busy: indexes with an attempt in flight are
 * left to it; a copy whose recipient has no leg of record is never shed).
 */
export function shedState(
  state: SpoolState,
  busy: ReadonlySet<number>,
  reply: string,
): { state: SpoolState; shed: ShedLeg[] } | undefined {
  if (state.legs.some((l) => l.leg.role === 'primary' && isOpenLeg(l))) return undefined;
  // A message a draining relay handed over holds only the legs still open there: its legs of record were delivered.
  const handedOver = state.meta.origin !== undefined;
  const recorded = new Set(state.legs.filter((l) => l.leg.role === 'primary').map((l) => l.recipient));
  const ctx = { nullSender: state.meta.mailFrom === '' };
  const shed: ShedLeg[] = [];
  const legs = state.legs.map((l, index) => {
    if (l.leg.role !== 'copy' || !isOpenLeg(l) || busy.has(index)) return l;
    if (!handedOver && !recorded.has(l.recipient)) return l;
    const outcome = endLeg(l, { ...ctx, recipientHasRecord: true }, SHED_STATUS, false, reply);
    const after = withOutcome(l, outcome);
    shed.push({ index, leg: after, outcome });
    return after;
  });
  return shed.length === 0 ? undefined : { state: { ...state, legs }, shed };
}

export interface SpoolSpace {
  /** Bytes an unprivileged process may still write. */
  free: number;
  total: number;
  /** Files (inodes) still free, and in all; 0 in all where the file system does not count them (btrfs). */
  freeFiles: number;
  totalFiles: number;
}

export async function spoolSpace(dir: string): Promise<SpoolSpace> {
  const s = await statfs(dir);
  return { free: s.bavail * s.bsize, total: s.blocks * s.bsize, freeFiles: s.ffree, totalFiles: s.files };
}

const MiB = (n: number): string => `${(n / 1048576).toFixed(1)} MiB`;

/**
 * What the volume is short of, or undefined: free bytes under the threshold, or free files (inodes) under the same
 * share of all files (a byte threshold counts as the share of the volume it is). Small messages use up a volume's
 * inodes before its bytes: ext4 makes one inode per 16 KiB, and a queued message of 4 KiB holds one or two files.
 */
export function shortOfSpace(t: SpaceThreshold, s: SpoolSpace): string | undefined {
  const bytes = thresholdBytes(t, s.total);
  if (bytes === 0) return undefined;
  if (s.free < bytes) return `${MiB(s.free)} free, under --shed-copies-below ${MiB(bytes)}`;
  const share = s.total > 0 ? Math.min(1, bytes / s.total) : 0;
  const files = Math.floor(s.totalFiles * share);
  if (s.totalFiles > 0 && s.freeFiles < files)
    return `${s.freeFiles} files (inodes) free of ${s.totalFiles}, under --shed-copies-below ${files}`;
  return undefined;
}

export interface SpaceWatchOptions {
  dir: string;
  threshold: SpaceThreshold;
  /** How often the free space is looked at. */
  intervalMs: number;
  timers: Timers;
  log: Logger;
  metrics: Pick<RelayMetrics, 'spoolFreeBytes' | 'copyLegsShed'>;
  /**
   * The engine's shedCopies: ends copies of the oldest messages until enough() says the volume has room again (or
   * none is left to shed); reply is the text each shed leg records.
   */
  shed: (enough: () => Promise<boolean>, reply: string) => Promise<{ messages: number; legs: number }>;
  /** The volume's space; default statfs. */
  space?: (dir: string) => Promise<SpoolSpace>;
}

export interface SpaceWatch {
  /** Looks at the free space now (and sheds when it is low); resolves when done. Never rejects. */
  check(): Promise<void>;
  stop(): void;
}

export function watchSpoolSpace(o: SpaceWatchOptions): SpaceWatch {
  const space = o.space ?? spoolSpace;
  let running: Promise<void> | undefined;
  let low = false;
  let stopped = false;
  let failing = false;
  /** The volume's space now, kept in the gauge. */
  const look = async (): Promise<SpoolSpace> => {
    const s = await space(o.dir);
    o.metrics.spoolFreeBytes.set(s.free);
    return s;
  };
  const figures = (s: SpoolSpace): Record<string, number> => ({ freeBytes: s.free, freeFiles: s.freeFiles });

  const once = async (): Promise<void> => {
    const s = await look();
    const short = shortOfSpace(o.threshold, s);
    if (short === undefined) {
      if (low) o.log.info(figures(s), 'spool: free space back above the threshold');
      low = false;
      return;
    }
    const reply = `shed: the spool volume had ${short}; the copy gave way to primary mail`;
    o.log.warn({ ...figures(s), short }, 'spool: free space low; shedding copies of the oldest messages');
    const r = await o.shed(
      async () => stopped || shortOfSpace(o.threshold, await look()) === undefined,
      reply,
    );
    o.metrics.copyLegsShed.inc(r.legs);
    const after = await look();
    const still = shortOfSpace(o.threshold, after);
    if (still === undefined) {
      o.log.warn({ ...r, ...figures(after) }, 'spool: copies shed; free space back above the threshold');
      low = false;
      return;
    }
    if (!low || r.legs > 0) {
      // once per episode (and whenever more was shed): nothing more to shed; primary mail keeps the rest
      o.log.error(
        { ...r, ...figures(after), short: still },
        'spool: free space still low with no copy left to shed; new mail gets 452 4.3.1 once the volume is full',
      );
      low = true;
    }
  };

  const check = (): Promise<void> => {
    if (stopped) return Promise.resolve();
    running ??= once()
      .then(
        () => {
          failing = false;
        },
        (err: unknown) => {
          // once until a look succeeds again, not every interval
          if (!failing) o.log.error({ err }, 'spool: could not look at the free space');
          failing = true;
        },
      )
      .finally(() => {
        running = undefined;
      });
    return running;
  };
  const stopTimer = every(o.timers, o.intervalMs, () => void check());
  return {
    check,
    stop() {
      stopped = true;
      stopTimer();
    },
  };
}
