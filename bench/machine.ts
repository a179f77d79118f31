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
