// CPU time and memory of a process tree, read from /proc. Parsing is pure; sampleTree does the reading.
import { readFileSync, readdirSync } from 'node:fs';
import { execFileSync } from 'node:child_process';

export interface ProcStat {
  readonly pid: number;
  readonly ppid: number;
  /** utime + stime + cutime + cstime, in clock ticks: the process and its reaped children. */
  readonly cpuTicks: number;
}

/** Parses /proc/PID/stat. The command name may contain spaces and parentheses: fields start after the last ")". */
export function parseStat(text: string): ProcStat | undefined {
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  if (open < 0 || close < open) return undefined;
  const pid = Number(text.slice(0, open).trim());
  // After ")": state(3) ppid(4) pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime(14) stime cutime cstime(17)
  const f = text
    .slice(close + 1)
    .trim()
    .split(/\s+/);
  const num = (fieldNo: number): number => Number(f[fieldNo - 3]);
  const ppid = num(4);
  const cpuTicks = num(14) + num(15) + num(16) + num(17);
  if (!Number.isFinite(pid) || !Number.isFinite(ppid) || !Number.isFinite(cpuTicks)) return undefined;
  return { pid, ppid, cpuTicks };
}

/** A "Key:   123 kB" line of /proc/PID/status or smaps_rollup, in KiB (0 when absent). */
export function parseKb(text: string, key: string): number {
  const m = new RegExp(`^${key}:\\s+(\\d+)\\s+kB`, 'm').exec(text);
  return m?.[1] === undefined ? 0 : Number(m[1]);
}

/** The roots and every process below them, from a pid -> ppid table. */
export function treeOf(roots: readonly number[], stats: ReadonlyMap<number, ProcStat>): number[] {
  const children = new Map<number, number[]>();
  for (const s of stats.values()) {
    const list = children.get(s.ppid) ?? [];
    list.push(s.pid);
    children.set(s.ppid, list);
  }
  const out: number[] = [];
  const seen = new Set<number>();
  const stack = roots.filter((r) => stats.has(r));
  while (stack.length > 0) {
    const pid = stack.pop();
    if (pid === undefined || seen.has(pid)) continue;
    seen.add(pid);
    out.push(pid);
    for (const c of children.get(pid) ?? []) stack.push(c);
  }
  return out;
}

export interface TreeSample {
  readonly pids: number;
  /** Clock ticks of the tree (live processes plus the children they reaped). */
  readonly cpuTicks: number;
  readonly rssKb: number;
  /** Proportional set size: shared pages divided among the processes sharing them. */
  readonly pssKb: number;
}

function readAllStats(): Map<number, ProcStat> {
  const stats = new Map<number, ProcStat>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const s = parseStat(readFileSync(`/proc/${name}/stat`, 'utf8'));
      if (s) stats.set(s.pid, s);
    } catch {
      // The process ended while we listed /proc.
    }
  }
  return stats;
}

/** CPU and memory of the trees under roots; memory is read only when withMemory (smaps_rollup is not free). */
export function sampleTree(roots: readonly number[], withMemory: boolean): TreeSample {
  const stats = readAllStats();
  const pids = treeOf(roots, stats);
  let cpuTicks = 0;
  let rssKb = 0;
  let pssKb = 0;
  for (const pid of pids) {
    cpuTicks += stats.get(pid)?.cpuTicks ?? 0;
    if (!withMemory) continue;
    try {
      rssKb += parseKb(readFileSync(`/proc/${pid}/status`, 'utf8'), 'VmRSS');
      pssKb += parseKb(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'), 'Pss');
    } catch {
      // Ended meanwhile.
    }
  }
  return { pids: pids.length, cpuTicks, rssKb, pssKb };
}

let clockTicks: number | undefined;
export function clockTicksPerSecond(): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/** Samples memory of a tree periodically and keeps the peaks. */
export class MemoryPeaks {
  rssKb = 0;
  pssKb = 0;
  maxPids = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly roots: () => readonly number[];

  constructor(roots: () => readonly number[]) {
    this.roots = roots;
  }

  start(intervalMs: number): void {
    this.sample();
    this.timer = setInterval(() => this.sample(), intervalMs);
  }

  sample(): void {
    const s = sampleTree(this.roots(), true);
    this.rssKb = Math.max(this.rssKb, s.rssKb);
    this.pssKb = Math.max(this.pssKb, s.pssKb);
    this.maxPids = Math.max(this.maxPids, s.pids);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}

/** The "some" total (µs any task waited for a CPU) from /proc/pressure/cpu text. */
export function parsePressureTotal(text: string): number | undefined {
  const m = /^some .*total=(\d+)/m.exec(text);
  return m?.[1] === undefined ? undefined : Number(m[1]);
}

/** Reads /proc/pressure/cpu (PSI); undefined where the kernel has none. */
export function cpuPressureTotalUs(): number | undefined {
  try {
    return parsePressureTotal(readFileSync('/proc/pressure/cpu', 'utf8'));
  } catch {
    return undefined;
  }
}

/** The machine's CPU time from the "cpu" line of /proc/stat, in clock ticks: all of it, and the idle part. */
export interface CpuTimes {
  readonly total: number;
  readonly idle: number;
}

/** Parses the aggregate "cpu" line of /proc/stat (user nice system idle iowait irq softirq steal ...). */
export function parseCpuTimes(text: string): CpuTimes | undefined {
  const line = /^cpu\s+([\d\s]+)$/m.exec(text)?.[1];
  if (line === undefined) return undefined;
  const f = line.trim().split(/\s+/).map(Number);
  if (f.length < 5 || f.some((n) => !Number.isFinite(n))) return undefined;
  // guest and guest_nice (fields 9 and 10) are already counted in user and nice
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
  const idle = (f[3] ?? 0) + (f[4] ?? 0); // idle + iowait
  return { total, idle };
}

/** The machine's busy CPU time between two samples, in clock ticks (all but idle and iowait; never negative). */
export function busyTicks(a: CpuTimes, b: CpuTimes): number {
  return Math.max(0, b.total - b.idle - (a.total - a.idle));
}

/** The share of the machine's CPU time that was busy between two samples (0 when no time passed). */
export function busyShare(a: CpuTimes, b: CpuTimes): number {
  const total = b.total - a.total;
  return total <= 0 ? 0 : Math.min(1, Math.max(0, 1 - (b.idle - a.idle) / total));
}

/** Reads /proc/stat; undefined where there is none. */
export function cpuTimes(): CpuTimes | undefined {
  try {
    return parseCpuTimes(readFileSync('/proc/stat', 'utf8'));
  } catch {
    return undefined;
  }
}

/** Dirty page-cache memory (waiting to be written back), in KiB, from /proc/meminfo. */
export function dirtyKiB(): number {
  try {
    return parseKb(readFileSync('/proc/meminfo', 'utf8'), 'Dirty');
  } catch {
    return 0;
  }
}
