// Results of single runs and their summary across rounds. Pure.
import type { SystemName } from './options.ts';
import type { SettleResult } from './settle.ts';

export interface LatencySummary {
  readonly samples: number;
  readonly p50Ms: number | null;
  readonly p99Ms: number | null;
  readonly maxMs: number | null;
  readonly errors: readonly string[];
}

export interface RunResult {
  readonly workload: string;
  readonly system: SystemName;
  readonly round: number;
  /** Position in the whole benchmark's run order (interleaving evidence). */
  readonly order: number;
  readonly startedAt: string;
  readonly loadAverage: readonly number[];
  /** Share of the run's wall time during which some task waited for a CPU (PSI); contention from outside shows here. */
  readonly cpuPressure: number | null;
  readonly messages: number;
  readonly recipients: number;
  readonly expectedLegs: number;
  readonly deliveredLegs: number;
  readonly sinkLegs: readonly [number, number];
  /** smtp-source finished: every message answered 250. */
  readonly acceptedSeconds: number | null;
  readonly acceptedRate: number | null;
  /** The sinks received every leg of every message. */
  readonly e2eSeconds: number | null;
  readonly e2eRate: number | null;
  readonly latency: LatencySummary;
  readonly cpuSeconds: number | null;
  readonly cpuSecondsPer1k: number | null;
  /**
   * The whole machine's busy CPU time (/proc/stat: all but idle and iowait) over the same window as cpuSeconds, per
   * 1,000 messages: the server plus the load generator, the sinks, the probe, the harness and the kernel's work
   * charged to none of them (absent in older results).
   */
  readonly machineCpuSecondsPer1k?: number | null;
  readonly peakRssMiB: number | null;
  readonly peakPssMiB: number | null;
  readonly maxProcesses: number | null;
  readonly error: string | null;
  /** What preceded the run: the page-cache writeback and the wait for a quiet machine (absent in older results). */
  readonly settle?: SettleResult;
  /** A discarded warm-up run (kept in the results file, left out of every summary and ratio). */
  readonly warmup?: boolean;
}

/** The runs that count: warm-up runs are left out. */
export const measured = (runs: readonly RunResult[]): RunResult[] => runs.filter((r) => r.warmup !== true);

/** Nearest-rank percentile of an ascending array. */
export function percentile(sorted: readonly number[], p: number): number | null {
  if (sorted.length === 0) return null;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1] ?? null;
}

export function median(values: readonly (number | null)[]): number | null {
  const v = values.filter((x): x is number => x !== null && Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 === 1 ? (v[mid] ?? null) : ((v[mid - 1] ?? 0) + (v[mid] ?? 0)) / 2;
}

export function latencySummary(samplesMs: readonly number[], errors: readonly string[]): LatencySummary {
  const sorted = [...samplesMs].sort((a, b) => a - b);
  return {
    samples: sorted.length,
    p50Ms: percentile(sorted, 50),
    p99Ms: percentile(sorted, 99),
    maxMs: sorted.length === 0 ? null : (sorted[sorted.length - 1] ?? null),
    errors: errors.slice(0, 10),
  };
}

export interface SystemSummary {
  readonly workload: string;
  readonly system: SystemName;
  readonly runs: number;
  readonly failedRuns: number;
  readonly acceptedRate: number | null;
  readonly e2eRate: number | null;
  readonly e2eMin: number | null;
  readonly e2eMax: number | null;
  readonly p50Ms: number | null;
  readonly p99Ms: number | null;
  readonly cpuSecondsPer1k: number | null;
  /** Median of the runs' machineCpuSecondsPer1k (null where no run has it). */
  readonly machineCpuSecondsPer1k: number | null;
  /** Median over runs of machine CPU minus the server's, per 1,000 messages: what the rest of the load costs. */
  readonly othersCpuSecondsPer1k: number | null;
  readonly peakRssMiB: number | null;
  readonly peakPssMiB: number | null;
  readonly cpuPressure: number | null;
}

export interface RatioSummary {
  readonly workload: string;
  /** Median over rounds of mailroute/Postfix in the same round. */
  readonly accepted: number | null;
  readonly e2e: number | null;
  readonly perRoundE2e: readonly (number | null)[];
}

const ok = (r: RunResult): boolean => r.error === null;

export function summarize(
  runs: readonly RunResult[],
  workloads: readonly string[],
  systems: readonly SystemName[],
): SystemSummary[] {
  const out: SystemSummary[] = [];
  const counted = measured(runs);
  for (const workload of workloads) {
    for (const system of systems) {
      const all = counted.filter((r) => r.workload === workload && r.system === system);
      if (all.length === 0) continue;
      const good = all.filter(ok);
      const e2e = good.map((r) => r.e2eRate).filter((x): x is number => x !== null);
      out.push({
        workload,
        system,
        runs: all.length,
        failedRuns: all.length - good.length,
        acceptedRate: median(good.map((r) => r.acceptedRate)),
        e2eRate: median(good.map((r) => r.e2eRate)),
        e2eMin: e2e.length === 0 ? null : Math.min(...e2e),
        e2eMax: e2e.length === 0 ? null : Math.max(...e2e),
        p50Ms: median(good.map((r) => r.latency.p50Ms)),
        p99Ms: median(good.map((r) => r.latency.p99Ms)),
        cpuSecondsPer1k: median(good.map((r) => r.cpuSecondsPer1k)),
        machineCpuSecondsPer1k: median(good.map((r) => r.machineCpuSecondsPer1k ?? null)),
        othersCpuSecondsPer1k: median(
          good.map((r) =>
            r.machineCpuSecondsPer1k === undefined || r.machineCpuSecondsPer1k === null
              ? null
              : r.machineCpuSecondsPer1k - (r.cpuSecondsPer1k ?? 0),
          ),
        ),
        peakRssMiB: median(good.map((r) => r.peakRssMiB)),
        peakPssMiB: median(good.map((r) => r.peakPssMiB)),
        cpuPressure: median(all.map((r) => r.cpuPressure)),
      });
    }
  }
  return out;
}

function ratio(a: number | null | undefined, b: number | null | undefined): number | null {
  if (a === null || a === undefined || b === null || b === undefined || b === 0) return null;
  return a / b;
}

/** mailroute/Postfix per round (runs of the same round were interleaved), then the median over rounds. */
export function ratios(runs: readonly RunResult[], workloads: readonly string[]): RatioSummary[] {
  const out: RatioSummary[] = [];
  const counted = measured(runs);
  for (const workload of workloads) {
    const rounds = [...new Set(counted.filter((r) => r.workload === workload).map((r) => r.round))].sort(
      (a, b) => a - b,
    );
    const acc: (number | null)[] = [];
    const e2e: (number | null)[] = [];
    for (const round of rounds) {
      const find = (s: SystemName): RunResult | undefined =>
        counted.find((r) => r.workload === workload && r.round === round && r.system === s && ok(r));
      const p = find('postfix');
      const m = find('mailroute');
      if (!p || !m) continue;
      acc.push(ratio(m.acceptedRate, p.acceptedRate));
      e2e.push(ratio(m.e2eRate, p.e2eRate));
    }
    if (e2e.length === 0) continue;
    out.push({ workload, accepted: median(acc), e2e: median(e2e), perRoundE2e: e2e });
  }
  return out;
}
