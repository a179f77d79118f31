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
