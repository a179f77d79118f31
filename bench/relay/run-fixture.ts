// A RunResult for the tests of the pure modules that summarize runs (stats.ts, targets.ts): 1,000 dual messages
// delivered, one second, every figure set; a test overrides what it is about.
import { latencySummary, type RunResult } from './stats.ts';

export function runFixture(o: Partial<RunResult> & Pick<RunResult, 'system' | 'round'>): RunResult {
  const e2eRate = o.e2eRate === undefined ? 1000 : o.e2eRate;
  return {
    workload: 'dual-4k',
    order: 0,
    startedAt: '',
    loadAverage: [],
    cpuPressure: null,
    messages: 1000,
    recipients: 1,
    expectedLegs: 2000,
    deliveredLegs: 2000,
    sinkLegs: [1000, 1000],
    acceptedSeconds: 1,
    acceptedRate: e2eRate,
    e2eSeconds: 1,
    e2eRate,
    latency: latencySummary([1, 2, 3], []),
    cpuSeconds: 1,
    cpuSecondsPer1k: 1,
    peakRssMiB: 10,
    peakPssMiB: 5,
    maxProcesses: 1,
    error: null,
    ...o,
  };
}
