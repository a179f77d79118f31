import { describe, expect, it } from 'vitest';
import { latencySummary, type RunResult } from './stats.ts';
import type { SystemName } from './options.ts';
import { runFixture } from './run-fixture.ts';
import {
  cpuBudget,
  cpuBudgetTable,
  evaluateTargets,
  spreadRows,
  targetsTable,
  versionHistory,
  workersRatios,
  type TargetRow,
} from './targets.ts';

interface Fig {
  e2e: number;
  p50?: number;
  p99?: number;
  cpu?: number;
  warmup?: boolean;
  error?: string;
}

function run(workload: string, system: SystemName, round: number, f: Fig): RunResult {
  return runFixture({
    workload,
    system,
    round,
    e2eRate: f.e2e,
    latency: latencySummary([f.p50 ?? 5, f.p99 ?? 50], []),
    cpuSecondsPer1k: f.cpu ?? 1,
    error: f.error ?? null,
    ...(f.warmup === true ? { warmup: true } : {}),
  });
}

/** Two ABBA rounds of a workload with the given mailroute/Postfix figures. */
function rounds(workload: string, postfix: Fig, mailroute: Fig): RunResult[] {
  return [1, 2].flatMap((r) => [
    run(workload, 'postfix', r, postfix),
    run(workload, 'mailroute', r, mailroute),
  ]);
}

const byTarget = (rows: TargetRow[], prefix: string): TargetRow | undefined =>
  rows.find((r) => r.target.startsWith(prefix));

describe('evaluateTargets', () => {
  const workloads = ['dual-4k', 'direct-4k'];

  it('judges each ratio target on the median of its rounds, and says by how much it missed', () => {
    const runs = [
      ...rounds('dual-4k', { e2e: 400, p50: 6, p99: 60, cpu: 4 }, { e2e: 1000, p50: 5, p99: 40, cpu: 1.2 }),
      ...rounds('direct-4k', { e2e: 600, p50: 6 }, { e2e: 900, p50: 9 }),
    ];
    const rows = evaluateTargets(runs, { workloads, neighbour: false });
    expect(byTarget(rows, 'dual-4k end to end ≥ 2.50×')).toMatchObject({ measured: '2.50×', status: 'met' });
    expect(byTarget(rows, 'direct-4k end to end ≥ 2.00×')).toMatchObject({
      measured: '1.50×',
      status: 'missed',
      detail: 'by 25 %',
    });
    // a miss that two decimals would show as the target itself gets a third, and its share one decimal
    const close = evaluateTargets(
      [
        ...rounds('dual-4k', { e2e: 500, p50: 6 }, { e2e: 1248, p50: 5 }),
        ...rounds('direct-4k', { e2e: 500, p50: 6 }, { e2e: 1000, p50: 5 }),
      ],
      { workloads, neighbour: false },
    );
    expect(byTarget(close, 'dual-4k end to end ≥ 2.50×')).toMatchObject({
      measured: '2.496×',
      status: 'missed',
      detail: 'by 0.2 %',
    });
    expect(byTarget(close, 'direct-4k end to end ≥ 2.00×')).toMatchObject({
      measured: '2.00×',
      status: 'met',
    });
    // a workload this run did not include is not judged
    expect(byTarget(rows, 'split-4k')).toMatchObject({ status: 'not measured' });
    expect(byTarget(rows, 'p50')).toMatchObject({
      status: 'missed',
      detail: "Postfix's p50 × direct-4k 1.50×",
    });
    expect(byTarget(rows, 'p99')).toMatchObject({ status: 'met' });
    expect(byTarget(rows, 'CPU per 1,000')).toMatchObject({ measured: '1.20/4.00 s = 0.30×', status: 'met' });
    expect(byTarget(rows, 'dual-4k end to end ≥ 2.00× Postfix with a CPU-bound neighbour')).toMatchObject({
      status: 'not measured',
    });
    expect(byTarget(rows, '`--workers auto`')).toMatchObject({ status: 'not measured' });
  });

  it('leaves warm-up and failed runs out', () => {
    const runs = [
      run('dual-4k', 'postfix', 0, { e2e: 100, warmup: true }),
      run('dual-4k', 'mailroute', 0, { e2e: 10_000, warmup: true }),
      run('dual-4k', 'postfix', 1, { e2e: 400 }),
      run('dual-4k', 'mailroute', 1, { e2e: 800 }),
      run('dual-4k', 'postfix', 2, { e2e: 400 }),
      run('dual-4k', 'mailroute', 2, { e2e: 4000, error: 'lost legs' }),
    ];
    const rows = evaluateTargets(runs, { workloads: ['dual-4k'], neighbour: false });
    expect(byTarget(rows, 'dual-4k end to end ≥ 2.50×')).toMatchObject({
      measured: '2.00×',
      status: 'missed',
    });
  });

  it('with a neighbour judges dual against 2× and leaves the quiet targets unjudged', () => {
    const runs = rounds('dual-4k', { e2e: 300 }, { e2e: 660 });
    const rows = evaluateTargets(runs, { workloads: ['dual-4k'], neighbour: true });
    expect(byTarget(rows, 'dual-4k end to end ≥ 2.00× Postfix with a CPU-bound neighbour')).toMatchObject({
      measured: '2.20×',
      status: 'met',
    });
    expect(byTarget(rows, 'dual-4k end to end ≥ 2.50× Postfix (quiet machine)')).toMatchObject({
      status: 'not measured',
    });
  });

  it('without a neighbour shows the neighbour target from the latest neighbour run of the version, if any', () => {
    const runs = rounds('dual-4k', { e2e: 300 }, { e2e: 600 });
    const name = 'dual-4k end to end ≥ 2.00× Postfix with a CPU-bound neighbour';
    const separate = { label: 'bench/results/n.json', ratios: new Map([['dual-4k', 1.29]]) };
    expect(
      byTarget(
        evaluateTargets(runs, { workloads: ['dual-4k'], neighbour: false }, undefined, separate),
        name,
      ),
    ).toMatchObject({
      measured: '1.29× (its own run: bench/results/n.json)',
      status: 'missed',
      detail: 'by 36 %',
    });
    const met = { label: 'm', ratios: new Map([['dual-4k', 2.1]]) };
    expect(
      byTarget(evaluateTargets(runs, { workloads: ['dual-4k'], neighbour: false }, undefined, met), name),
    ).toMatchObject({ status: 'met' });
    // a neighbour run without a dual figure leaves the target unmeasured
    const other = { label: 'o', ratios: new Map([['direct-4k', 3]]) };
    expect(
      byTarget(evaluateTargets(runs, { workloads: ['dual-4k'], neighbour: false }, undefined, other), name),
    ).toMatchObject({ status: 'not measured' });
  });

  it('takes the workers ratio per round from mailroute-workers against mailroute', () => {
    const runs = [
      ...rounds('dual-4k', { e2e: 400 }, { e2e: 500 }),
      run('dual-4k', 'mailroute-workers', 1, { e2e: 450 }),
      run('dual-4k', 'mailroute-workers', 2, { e2e: 700 }),
    ];
    expect(workersRatios(runs, 'dual-4k')).toEqual([0.9, 1.4]);
    const rows = evaluateTargets(runs, { workloads: ['dual-4k'], neighbour: false });
    expect(byTarget(rows, '`--workers auto`')).toMatchObject({
      measured: '1.15× (rounds 0.90×, 1.40×)',
      status: 'missed',
      detail: 'by 12 %',
    });
  });
});

describe('spreadRows', () => {
  const r = (
    label: string,
    dual: number,
    direct?: number,
  ): { label: string; ratios: Map<string, number> } => ({
    label,
    ratios: new Map([['dual-4k', dual], ...(direct === undefined ? [] : [['direct-4k', direct] as const])]),
  });

  it('needs three runs', () => {
    expect(spreadRows([r('a', 2), r('b', 2)], ['dual-4k'])).toMatchObject({ status: 'not measured' });
  });

  it('is met when every run is within ±15 % of the median of the last three', () => {
    const row = spreadRows([r('old', 9), r('a', 2.0), r('b', 2.2), r('c', 1.8)], ['dual-4k']);
    expect(row).toMatchObject({ status: 'met', measured: 'dual-4k 2.00×, 2.20×, 1.80× (±10 %)' });
  });

  it('names each workload that swings more', () => {
    const row = spreadRows([r('a', 2.0, 1.0), r('b', 2.1, 1.5), r('c', 2.0, 1.0)], ['dual-4k', 'direct-4k']);
    expect(row).toMatchObject({ status: 'missed', detail: 'direct-4k ±50 %' });
  });
});

describe('versionHistory', () => {
  const file = (version: string, neighbour: boolean, mailroute: number): string =>
    JSON.stringify({
      versions: { mailroute: version },
      options: { workloads: ['dual-4k'], neighbour },
      runs: rounds('dual-4k', { e2e: 400 }, { e2e: mailroute }),
    });

  it('keeps the quiet full runs of one version, in order, and leaves out whatever else is in the folder', () => {
    const h = versionHistory(
      [
        { name: 'a', text: file('v1', false, 600) },
        { name: 'b', text: file('v0', false, 800) },
        { name: 'c', text: file('v1', true, 900) },
        { name: 'd', text: '{ not json' },
        { name: 'e', text: '{"versions": null}' },
        { name: 'f', text: '[]' },
        { name: 'g', text: file('v1', false, 1000) },
      ],
      'v1',
    );
    expect(h.map((r) => [r.label, r.ratios.get('dual-4k')])).toEqual([
      ['a', 1.5],
      ['g', 2.5],
    ]);
    const n = versionHistory(
      [
        { name: 'a', text: file('v1', false, 600) },
        { name: 'c', text: file('v1', true, 900) },
        { name: 'h', text: file('v0', true, 700) },
      ],
      'v1',
      { neighbour: true },
    );
    expect(n.map((r) => [r.label, r.ratios.get('dual-4k')])).toEqual([['c', 2.25]]);
  });
});

describe('targetsTable', () => {
  it('has one row per target with its status and detail', () => {
    const t = targetsTable([
      { target: 'a', measured: '1×', status: 'met', detail: '' },
      { target: 'b', measured: '—', status: 'not measured', detail: 'run it' },
    ]);
    expect(t.split('\n')).toEqual([
      '| target | this run | status |',
      '|---|---|---|',
      '| a | 1× | met |',
      '| b | — | not measured: run it |',
      '',
    ]);
  });
});

describe('cpuBudget', () => {
  const at = (system: SystemName, round: number, e2eRate: number, cpu: number, machine?: number): RunResult =>
    runFixture({
      system,
      round,
      e2eRate,
      cpuSecondsPer1k: cpu,
      ...(machine === undefined ? {} : { machineCpuSecondsPer1k: machine }),
    });

  it('takes the rest of the load from the relay runs and says what it leaves the relay on the cores', () => {
    // Postfix 300 msg/s; the relay 450 msg/s at 2 s per 1k, the machine 4 s per 1k in its runs: the rest costs 2 s.
    const runs = [
      at('postfix', 1, 300, 5, 6.5),
      at('mailroute', 1, 450, 2, 4),
      at('postfix', 2, 300, 5, 6.5),
      at('mailroute', 2, 450, 2, 4),
    ];
    const [row, ...rest] = cpuBudget(runs, ['dual-4k'], 2);
    expect(rest).toEqual([]);
    expect(row).toMatchObject({
      workload: 'dual-4k',
      min: 2.5,
      othersPer1k: 2,
      relayPer1k: 2,
      zeroCpuRate: 1000,
    });
    expect(row?.machineBusy).toBeCloseTo(0.9);
    expect(row?.zeroCpuRatio).toBeCloseTo(1000 / 300);
    // 2.5 × 300 = 750 msg/s fills 2 cores at 2000 / 750 = 2.67 s per 1k, of which the rest of the load takes 2.
    expect(row?.budgetPer1k).toBeCloseTo(2000 / 750 - 2);
    expect(cpuBudgetTable(cpuBudget(runs, ['dual-4k'], 2))).toContain(
      '| dual-4k | 2.00 | 2.00 | 90 % | 1000 msg/s = 3.33× Postfix | ≤ 0.67 s for 2.50×: 67 % less |',
    );
  });

  it('says when the rest of the load alone leaves no room, and when the relay is within its budget', () => {
    const tight = [at('postfix', 1, 400, 5, 6), at('mailroute', 1, 500, 1, 3)];
    expect(cpuBudgetTable(cpuBudget(tight, ['dual-4k'], 2))).toContain('out of reach');
    const roomy = [at('postfix', 1, 100, 5, 6), at('mailroute', 1, 300, 1, 2)];
    expect(cpuBudgetTable(cpuBudget(roomy, ['dual-4k'], 2))).toContain('≤ 7.00 s for 2.50×: within it');
  });

  it('leaves out workloads without machine figures (older results) or without Postfix', () => {
    expect(cpuBudget([at('postfix', 1, 300, 5), at('mailroute', 1, 450, 2)], ['dual-4k'], 2)).toEqual([]);
    expect(cpuBudget([at('mailroute', 1, 450, 2, 4)], ['dual-4k'], 2)).toEqual([]);
    // a results file without the machine's core count: no rows, rather than NaN in the table
    const both = [at('postfix', 1, 300, 5, 6.5), at('mailroute', 1, 450, 2, 4)];
    expect(cpuBudget(both, ['dual-4k'], 2)).toHaveLength(1);
    expect(cpuBudget(both, ['dual-4k'], Number.NaN)).toEqual([]);
  });
});
