// The relay's performance targets against Postfix, in one place, and how one benchmark run (or several) measures up
// to each. Pure: run.ts renders the rows into docs/benchmarks.md.
import { median, measured, ratios, summarize, type RatioSummary, type RunResult } from './stats.ts';
import type { SystemName } from './options.ts';

/** End-to-end rate of mailroute over Postfix, median of the interleaved rounds, on a quiet machine. */
export const RATIO_TARGETS: readonly { readonly workload: string; readonly min: number }[] = Object.freeze([
  { workload: 'dual-4k', min: 2.5 },
  { workload: 'direct-4k', min: 2.0 },
  { workload: 'split-4k', min: 2.5 },
  { workload: 'dual-100k', min: 1.6 },
  { workload: 'dual-4k-10rcpt', min: 2.5 },
]);
/** dual 4 KiB with one CPU-bound neighbour (`--neighbour`) running through both systems' rounds. */
export const NEIGHBOUR_TARGET = Object.freeze({ workload: 'dual-4k', min: 2.0 });
/** CPU seconds per 1,000 dual 4 KiB messages, mailroute over Postfix, at most. */
export const CPU_TARGET = Object.freeze({ workload: 'dual-4k', max: 0.35 });
/** `--workers auto` over `--workers 1` (the system mailroute-workers over mailroute), dual 4 KiB, at least. */
export const WORKERS_TARGET = Object.freeze({ workload: 'dual-4k', min: 1.3 });
/** Each run's ratio within this share of the median of the last three runs, per workload. */
export const SPREAD_TARGET = Object.freeze({ runs: 3, within: 0.15 });

export type TargetStatus = 'met' | 'missed' | 'not measured';

export interface TargetRow {
  readonly target: string;
  /** What this run measured, in words and figures. */
  readonly measured: string;
  readonly status: TargetStatus;
  /** For a miss: how far off, in words ("by 40 %"); for "not measured": how to measure it. */
  readonly detail: string;
}

/** One earlier or this run's ratios, for the spread across runs. */
export interface RunRatios {
  readonly label: string;
  readonly ratios: ReadonlyMap<string, number>;
}

/** One run's median end-to-end ratio per workload (workloads without one are left out). */
export function runRatios(label: string, rows: readonly RatioSummary[]): RunRatios {
  return {
    label,
    ratios: new Map(rows.flatMap((r) => (r.e2e === null ? [] : [[r.workload, r.e2e] as const]))),
  };
}

/**
 * The full runs of one relay version among results files (name and text, oldest first): the quiet ones (the spread
 * history), or with neighbour: true the runs with a CPU-bound neighbour (the neighbour target, measured in a run of
 * its own). A file that is not JSON, or not a results file of this benchmark, is left out, as are runs of other
 * versions.
 */
export function versionHistory(
  files: readonly { readonly name: string; readonly text: string }[],
  version: string,
  opts: { readonly neighbour?: boolean } = {},
): RunRatios[] {
  const neighbour = opts.neighbour === true;
  const out: RunRatios[] = [];
  for (const { name, text } of files) {
    try {
      const f = JSON.parse(text) as {
        versions: Record<string, string>;
        options: { workloads: string[]; neighbour?: boolean };
        runs: RunResult[];
      };
      if (
        f.versions['mailroute'] !== version ||
        (f.options.neighbour === true) !== neighbour ||
        !Array.isArray(f.runs)
      )
        continue;
      out.push(runRatios(name, ratios(f.runs, f.options.workloads)));
    } catch {
      /* not a results file of this benchmark */
    }
  }
  return out;
}

const x = (v: number): string => `${v.toFixed(2)}×`;
const pct = (v: number): string => `${Math.round(v * 100)} %`;

/** How far `value` falls short of `min` (or exceeds `max`), as a share of the target; under 0.5 % with one decimal. */
function shortBy(value: number, bound: number, kind: 'min' | 'max'): string {
  const share = kind === 'min' ? 1 - value / bound : value / bound - 1;
  return `by ${share < 0.005 ? `${(share * 100).toFixed(1)} %` : pct(share)}`;
}

/** A ratio as x() shows it, with a third decimal when two would show a missed minimum as the target itself. */
const ratioVs = (value: number, min: number): string =>
  value < min && x(value) === x(min) ? `${value.toFixed(3)}×` : x(value);

function rowFor(target: string, measuredText: string, ok: boolean, miss: string): TargetRow {
  return { target, measured: measuredText, status: ok ? 'met' : 'missed', detail: ok ? '' : miss };
}

function notMeasured(target: string, how: string): TargetRow {
  return { target, measured: '—', status: 'not measured', detail: how };
}

/** mailroute-workers over mailroute per round of a workload, then the median. */
export function workersRatios(runs: readonly RunResult[], workload: string): (number | null)[] {
  const counted = measured(runs).filter((r) => r.workload === workload && r.error === null);
  const out: (number | null)[] = [];
  for (const round of [...new Set(counted.map((r) => r.round))].sort((a, b) => a - b)) {
    const rate = (s: SystemName): number | null | undefined =>
      counted.find((r) => r.round === round && r.system === s)?.e2eRate;
    const w = rate('mailroute-workers');
    const one = rate('mailroute');
    if (w === undefined || one === undefined) continue;
    out.push(w === null || one === null || one === 0 ? null : w / one);
  }
  return out;
}

/** Per workload: is every run's ratio within SPREAD_TARGET.within of the median of the runs? */
export function spreadRows(runsRatios: readonly RunRatios[], workloads: readonly string[]): TargetRow {
  const target = `ratios within ±${pct(SPREAD_TARGET.within)} across ${SPREAD_TARGET.runs} runs`;
  const last = runsRatios.slice(-SPREAD_TARGET.runs);
  if (last.length < SPREAD_TARGET.runs) {
    return notMeasured(
      target,
      `${last.length} full run(s) of this version in bench/results; run \`npm run bench:relay\` ${SPREAD_TARGET.runs - last.length} more time(s)`,
    );
  }
  const parts: string[] = [];
  const misses: string[] = [];
  for (const w of workloads) {
    const values = last.map((r) => r.ratios.get(w)).filter((v): v is number => v !== undefined);
    if (values.length < SPREAD_TARGET.runs) continue;
    const mid = median(values) ?? 0;
    const worst = Math.max(...values.map((v) => Math.abs(v / mid - 1)));
    parts.push(`${w} ${values.map(x).join(', ')} (±${pct(worst)})`);
    if (worst > SPREAD_TARGET.within) misses.push(`${w} ±${pct(worst)}`);
  }
  if (parts.length === 0) return notMeasured(target, 'no workload ran in all of the last three runs');
  return rowFor(target, parts.join('; '), misses.length === 0, misses.join(', '));
}

/** Every target, judged on one run's measured (non-warm-up) runs. */
export function evaluateTargets(
  runs: readonly RunResult[],
  opts: { readonly workloads: readonly string[]; readonly neighbour: boolean },
  runsRatios?: readonly RunRatios[],
  /** The latest run of the same version with a neighbour, for the neighbour target of a quiet run. */
  neighbourRun?: RunRatios,
): TargetRow[] {
  const rows: TargetRow[] = [];
  const ratioRows = ratios(runs, opts.workloads);
  const summary = summarize(runs, opts.workloads, ['postfix', 'mailroute']);
  const sys = (w: string, s: SystemName): (typeof summary)[number] | undefined =>
    summary.find((r) => r.workload === w && r.system === s);
  const rerun = (w: string): string => `run \`npm run bench:relay -- --workloads ${w}\``;

  for (const t of RATIO_TARGETS) {
    const name = `${t.workload} end to end ≥ ${x(t.min)} Postfix (quiet machine)`;
    const r = ratioRows.find((q) => q.workload === t.workload);
    if (opts.neighbour) rows.push(notMeasured(name, 'this run had a neighbour; run without `--neighbour`'));
    else if (r?.e2e === null || r?.e2e === undefined) rows.push(notMeasured(name, rerun(t.workload)));
    else rows.push(rowFor(name, ratioVs(r.e2e, t.min), r.e2e >= t.min, shortBy(r.e2e, t.min, 'min')));
  }
  {
    const name = `${NEIGHBOUR_TARGET.workload} end to end ≥ ${x(NEIGHBOUR_TARGET.min)} Postfix with a CPU-bound neighbour`;
    const r = ratioRows.find((q) => q.workload === NEIGHBOUR_TARGET.workload);
    const separate = neighbourRun?.ratios.get(NEIGHBOUR_TARGET.workload);
    if (!opts.neighbour && separate !== undefined)
      rows.push(
        rowFor(
          name,
          `${ratioVs(separate, NEIGHBOUR_TARGET.min)} (its own run: ${neighbourRun?.label ?? ''})`,
          separate >= NEIGHBOUR_TARGET.min,
          shortBy(separate, NEIGHBOUR_TARGET.min, 'min'),
        ),
      );
    else if (!opts.neighbour)
      rows.push(
        notMeasured(
          name,
          `run \`npm run bench:relay -- --workloads ${NEIGHBOUR_TARGET.workload} --neighbour\``,
        ),
      );
    else if (r?.e2e === null || r?.e2e === undefined)
      rows.push(notMeasured(name, rerun(NEIGHBOUR_TARGET.workload)));
    else
      rows.push(
        rowFor(
          name,
          ratioVs(r.e2e, NEIGHBOUR_TARGET.min),
          r.e2e >= NEIGHBOUR_TARGET.min,
          shortBy(r.e2e, NEIGHBOUR_TARGET.min, 'min'),
        ),
      );
  }
  for (const [label, key] of [
    ['p50', 'p50Ms'],
    ['p99', 'p99Ms'],
  ] as const) {
    const name = `${label} end of DATA → 250 ≤ Postfix's ${label}, every workload`;
    const parts: string[] = [];
    const misses: string[] = [];
    for (const w of opts.workloads) {
      const m = sys(w, 'mailroute')?.[key];
      const p = sys(w, 'postfix')?.[key];
      if (m === null || m === undefined || p === null || p === undefined) continue;
      parts.push(`${w} ${m.toFixed(1)}/${p.toFixed(1)} ms`);
      if (m > p) misses.push(`${w} ${x(m / p)}`);
    }
    if (parts.length === 0)
      rows.push(notMeasured(name, 'run Postfix and mailroute (`--systems postfix,mailroute`)'));
    else
      rows.push(
        rowFor(name, parts.join('; '), misses.length === 0, `Postfix's ${label} × ${misses.join(', ')}`),
      );
  }
  {
    const name = `CPU per 1,000 ${CPU_TARGET.workload} messages ≤ ${CPU_TARGET.max}× Postfix's`;
    const m = sys(CPU_TARGET.workload, 'mailroute')?.cpuSecondsPer1k;
    const p = sys(CPU_TARGET.workload, 'postfix')?.cpuSecondsPer1k;
    if (m === null || m === undefined || p === null || p === undefined || p === 0)
      rows.push(notMeasured(name, rerun(CPU_TARGET.workload)));
    else {
      const r = m / p;
      rows.push(
        rowFor(
          name,
          `${m.toFixed(2)}/${p.toFixed(2)} s = ${x(r)}`,
          r <= CPU_TARGET.max,
          shortBy(r, CPU_TARGET.max, 'max'),
        ),
      );
    }
  }
  {
    const name = `\`--workers auto\` ≥ ${x(WORKERS_TARGET.min)} \`--workers 1\` (${WORKERS_TARGET.workload})`;
    const per = workersRatios(runs, WORKERS_TARGET.workload).filter((v): v is number => v !== null);
    const mid = median(per);
    if (mid === null)
      rows.push(
        notMeasured(
          name,
          `run \`npm run bench:relay -- --workloads ${WORKERS_TARGET.workload} --systems postfix,mailroute,mailroute-workers\``,
        ),
      );
    else
      rows.push(
        rowFor(
          name,
          `${x(mid)} (rounds ${per.map(x).join(', ')})`,
          mid >= WORKERS_TARGET.min,
          shortBy(mid, WORKERS_TARGET.min, 'min'),
        ),
      );
  }
  if (runsRatios !== undefined) rows.push(spreadRows(runsRatios, opts.workloads));
  return rows;
}

/** The rows as a markdown table. */
export function targetsTable(rows: readonly TargetRow[]): string {
  const lines = ['| target | this run | status |', '|---|---|---|'];
  for (const r of rows) {
    const status = r.status === 'met' ? 'met' : `${r.status}${r.detail === '' ? '' : `: ${r.detail}`}`;
    lines.push(`| ${r.target} | ${r.measured} | ${status} |`);
  }
  return `${lines.join('\n')}\n`;
}

/** How much of the machine the rest of the load leaves the relay, for one ratio target (cpuBudget). */
export interface CpuBudgetRow {
  readonly workload: string;
  readonly min: number;
  /** Machine CPU minus the relay's, per 1,000 messages, in the relay's runs: smtp-source, sinks, probe, harness, kernel. */
  readonly othersPer1k: number;
  readonly relayPer1k: number;
  /** Share of all cores busy during the relay's runs. */
  readonly machineBusy: number;
  /** The end-to-end rate at which the rest of the load alone fills every core: the relay's rate at zero CPU. */
  readonly zeroCpuRate: number;
  readonly zeroCpuRatio: number;
  /** The relay's CPU per 1,000 messages at which min × Postfix's rate fills every core (≤ 0: out of reach). */
  readonly budgetPer1k: number;
}

/**
 * For each ratio target: the CPU the rest of the load (load generator, sinks, probe, harness, kernel work charged to
 * no server) spends per message in the relay's runs, and what that leaves the relay on `cores` cores. An upper
 * bound: it assumes every core could be busy and that the rest of the load costs the same per message at any rate.
 * Workloads without machine CPU figures (older results) or without both systems are left out. Pure.
 */
export function cpuBudget(
  runs: readonly RunResult[],
  workloads: readonly string[],
  cores: number,
): CpuBudgetRow[] {
  const summary = summarize(runs, workloads, ['postfix', 'mailroute']);
  const out: CpuBudgetRow[] = [];
  for (const t of RATIO_TARGETS) {
    if (!workloads.includes(t.workload)) continue;
    const m = summary.find((s) => s.workload === t.workload && s.system === 'mailroute');
    const p = summary.find((s) => s.workload === t.workload && s.system === 'postfix');
    const others = m?.othersCpuSecondsPer1k ?? null;
    const relay = m?.cpuSecondsPer1k ?? null;
    const machine = m?.machineCpuSecondsPer1k ?? null;
    const rate = m?.e2eRate ?? null;
    const postfixRate = p?.e2eRate ?? null;
    // !(x > 0) also refuses NaN (a results file without nproc)
    if (others === null || relay === null || machine === null || rate === null || postfixRate === null)
      continue;
    if (!(others > 0) || !(postfixRate > 0) || !(cores > 0)) continue;
    const zeroCpuRate = (cores * 1000) / others;
    out.push({
      workload: t.workload,
      min: t.min,
      othersPer1k: others,
      relayPer1k: relay,
      machineBusy: Math.min(1, (machine * rate) / 1000 / cores),
      zeroCpuRate,
      zeroCpuRatio: zeroCpuRate / postfixRate,
      budgetPer1k: (cores * 1000) / (t.min * postfixRate) - others,
    });
  }
  return out;
}

/** The rows as a markdown table. */
export function cpuBudgetTable(rows: readonly CpuBudgetRow[]): string {
  const lines = [
    "| workload | rest of the load, CPU s / 1k msgs | relay, CPU s / 1k msgs | machine busy in the relay's runs | relay at zero CPU | relay CPU for the target |",
    '|---|---:|---:|---:|---:|---|',
  ];
  for (const r of rows) {
    const budget =
      r.budgetPer1k <= 0
        ? `out of reach: the rest of the load alone needs more than the machine at ${x(r.min)} Postfix`
        : r.budgetPer1k >= r.relayPer1k
          ? `≤ ${r.budgetPer1k.toFixed(2)} s for ${x(r.min)}: within it`
          : `≤ ${r.budgetPer1k.toFixed(2)} s for ${x(r.min)}: ${Math.round((1 - r.budgetPer1k / r.relayPer1k) * 100)} % less`;
    lines.push(
      `| ${r.workload} | ${r.othersPer1k.toFixed(2)} | ${r.relayPer1k.toFixed(2)} | ${Math.round(r.machineBusy * 100)} % | ${Math.round(r.zeroCpuRate)} msg/s = ${x(r.zeroCpuRatio)} Postfix | ${budget} |`,
    );
  }
  return `${lines.join('\n')}\n`;
}
