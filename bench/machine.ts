// What machine a benchmark ran on, for its report.
import { execFileSync } from 'node:child_process';
import { cpus } from 'node:os';

/** The CPU model as lscpu names it (os.cpus() as the fallback). */
export function cpuModel(): string {
  try {
    const m = /Model name:\s*(.+)/.exec(execFileSync('lscpu', { encoding: 'utf8' }))?.[1]?.trim();
    if (m) return m;
  } catch {
    // no lscpu
  }
  return cpus()[0]?.model ?? 'unknown';
}

/**
 * Whether an ext4 file system has a journal, from its source device (`df --output=source`) and the entries of
 * /proc/fs/jbd2 (one `<device>-8` per mounted journal). Undefined for other file systems. It matters to the relay
 * benchmark: ext4 without a journal walks past recently deleted inodes on every create (docs/perf.md).
 */
export function ext4Journal(
  fstype: string,
  source: string,
  jbd2Entries: readonly string[],
): boolean | undefined {
  if (fstype !== 'ext4') return undefined;
  const dev = source.split('/').pop() ?? source;
  return jbd2Entries.some((e) => e.startsWith(`${dev}-`));
}

/**
 * What a benchmark says when its queues are on ext4 without a journal (journal false), else undefined: there, every
 * file created soon after many were deleted costs far more (ext4 checks each free inode it considers against the
 * recently deleted ones only without a journal), which made the relay's first round of each workload slow on such a
 * file system in every full run (docs/perf.md), and the results are not those of a production spool.
 */
export function journalWarning(journal: boolean | null | undefined, dir?: string): string | undefined {
  if (journal !== false) return undefined;
  return `The queues and spools${dir === undefined ? '' : ` (${dir})`} are on ext4 without a journal, where every file created soon after many were deleted costs far more: the relay's first round of each workload is slowed, and the figures are not those of a production spool (docs/perf.md, "The first round"). Set TMPDIR to a journaled file system.`;
}
