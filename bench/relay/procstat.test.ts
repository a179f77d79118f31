import { describe, expect, it } from 'vitest';
import {
  busyShare,
  busyTicks,
  parseCpuTimes,
  parseKb,
  parsePressureTotal,
  parseStat,
  sampleTree,
  treeOf,
  type ProcStat,
} from './procstat.ts';

// A real line shape: pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime ...
const line = (
  pid: number,
  comm: string,
  ppid: number,
  u: number,
  s: number,
  cu: number,
  cs: number,
): string =>
  `${pid} (${comm}) S ${ppid} ${pid} ${pid} 0 -1 4194560 100 0 0 0 ${u} ${s} ${cu} ${cs} 20 0 1 0 123 1000 50 18446744073709551615`;

describe('parseStat', () => {
  it.each([
    ['plain name', line(10, 'master', 1, 5, 3, 100, 20), { pid: 10, ppid: 1, cpuTicks: 128 }],
    [
      'name with spaces and parentheses',
      line(11, 'a (b) c', 10, 1, 1, 0, 0),
      { pid: 11, ppid: 10, cpuTicks: 2 },
    ],
  ])('%s', (_name, text, want) => {
    expect(parseStat(text)).toEqual(want);
  });

  it('returns undefined for garbage', () => {
    expect(parseStat('nonsense')).toBeUndefined();
  });

  it('reads this process from /proc', () => {
    const me = sampleTree([process.pid], true);
    expect(me.pids).toBeGreaterThanOrEqual(1);
    expect(me.rssKb).toBeGreaterThan(1000);
    expect(me.pssKb).toBeGreaterThan(0);
  });
});

describe('parseKb', () => {
  it('finds a key at the start of a line', () => {
    const status = 'Name:\tnode\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n';
    expect(parseKb(status, 'VmRSS')).toBe(1024);
    expect(parseKb(status, 'VmHWM')).toBe(2048);
    expect(parseKb(status, 'Pss')).toBe(0);
  });
});

describe('treeOf', () => {
  it('collects the roots and all descendants, nothing else', () => {
    const stats = new Map<number, ProcStat>(
      [
        { pid: 1, ppid: 0, cpuTicks: 0 },
        { pid: 10, ppid: 1, cpuTicks: 0 },
        { pid: 11, ppid: 10, cpuTicks: 0 },
        { pid: 12, ppid: 11, cpuTicks: 0 },
        { pid: 20, ppid: 1, cpuTicks: 0 },
      ].map((s) => [s.pid, s]),
    );
    expect(treeOf([10], stats).sort()).toEqual([10, 11, 12]);
    expect(treeOf([99], stats)).toEqual([]);
  });
});

describe('parsePressureTotal', () => {
  it('reads the "some" total', () => {
    const text =
      'some avg10=92.14 avg60=92.03 avg300=85.05 total=1046000803\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n';
    expect(parsePressureTotal(text)).toBe(1046000803);
    expect(parsePressureTotal('')).toBeUndefined();
  });
});

describe('machine CPU times (/proc/stat) and the busy share between two samples', () => {
  it.each([
    ['cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n', { total: 1000, idle: 850 }],
    ['cpu  10 20 30 40 50 60 70 80\n', { total: 360, idle: 90 }],
    ['cpu  1 2 3\n', undefined],
    ['intr 1 2 3\n', undefined],
  ])('parses %j', (text, want) => {
    expect(parseCpuTimes(text)).toEqual(want);
  });

  it.each([
    [{ total: 1000, idle: 850 }, { total: 2000, idle: 1600 }, 0.25],
    [{ total: 1000, idle: 850 }, { total: 2000, idle: 1850 }, 0],
    [{ total: 1000, idle: 850 }, { total: 2000, idle: 850 }, 1],
    [{ total: 1000, idle: 850 }, { total: 1000, idle: 850 }, 0],
  ])('busy share from %j to %j is %d', (a, b, want) => {
    expect(busyShare(a, b)).toBeCloseTo(want, 6);
  });
});

describe('busyTicks', () => {
  it.each([
    [{ total: 1000, idle: 800 }, { total: 1400, idle: 900 }, 300],
    [{ total: 1000, idle: 800 }, { total: 1000, idle: 800 }, 0],
    // counters that went backwards (a wrapped or reset sample) never give a negative time
    [{ total: 1400, idle: 900 }, { total: 1000, idle: 800 }, 0],
  ])('busy ticks from %j to %j are %d', (a, b, want) => {
    expect(busyTicks(a, b)).toBe(want);
  });
});
