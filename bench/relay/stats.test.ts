import { describe, expect, it } from 'vitest';
import { median, percentile, ratios, summarize, type RunResult } from './stats.ts';
import type { SystemName } from './options.ts';
import { runFixture } from './run-fixture.ts';

describe('percentile (nearest rank)', () => {
  const v = Array.from({ length: 100 }, (_, i) => i + 1);
  it.each([
    [50, 50],
    [99, 99],
    [100, 100],
    [1, 1],
  ])('p%i of 1..100 is %i', (p, want) => {
    expect(percentile(v, p)).toBe(want);
  });
  it('is null without samples', () => {
    expect(percentile([], 50)).toBeNull();
  });
});

describe('median', () => {
  it.each([
    [[3, 1, 2], 2],
    [[4, 1, 2, 3], 2.5],
    [[null, 5], 5],
    [[], null],
  ])('%j -> %s', (v, want) => {
    expect(median(v)).toBe(want);
  });
});

function run(
  system: SystemName,
  round: number,
  e2eRate: number | null,
  error: string | null = null,
): RunResult {
  return runFixture({ system, round, e2eRate, error });
}

describe('ratios', () => {
  it('pairs runs of the same round and takes the median; failed runs are left out', () => {
    const runs = [
      run('postfix', 1, 400),
      run('mailroute', 1, 600),
      run('mailroute', 2, 900),
      run('postfix', 2, 450),
      run('postfix', 3, 500),
      run('mailroute', 3, null, 'crashed'),
    ];
    const [r] = ratios(runs, ['dual-4k']);
    expect(r?.perRoundE2e).toEqual([1.5, 2]);
    expect(r?.e2e).toBe(1.75);
  });
});

describe('summarize', () => {
  it('medians of good runs, the range, and the failed count', () => {
    const s = summarize(
      [run('postfix', 1, 400), run('postfix', 2, 500), run('postfix', 3, null, 'x')],
      ['dual-4k'],
      ['postfix'],
    );
    expect(s).toHaveLength(1);
    expect(s[0]).toMatchObject({ runs: 3, failedRuns: 1, e2eRate: 450, e2eMin: 400, e2eMax: 500, p50Ms: 2 });
  });
});

describe('summarize: machine CPU', () => {
  it('medians the machine figure and the rest of the load (machine minus server); null without figures', () => {
    const at = (round: number, cpu: number, machine?: number): RunResult =>
      runFixture({
        system: 'mailroute',
        round,
        cpuSecondsPer1k: cpu,
        ...(machine === undefined ? {} : { machineCpuSecondsPer1k: machine }),
      });
    const [s] = summarize([at(1, 2, 5), at(2, 3, 5), at(3, 2, 4)], ['dual-4k'], ['mailroute']);
    expect(s).toMatchObject({ machineCpuSecondsPer1k: 5, othersCpuSecondsPer1k: 2 });
    const [old] = summarize([at(1, 2)], ['dual-4k'], ['mailroute']);
    expect(old).toMatchObject({ machineCpuSecondsPer1k: null, othersCpuSecondsPer1k: null });
  });
});

describe('warm-up runs', () => {
  it('are left out of the summaries and the ratios', () => {
    const warm = (system: SystemName, rate: number): RunResult => ({ ...run(system, 0, rate), warmup: true });
    const runs = [
      warm('postfix', 10),
      warm('mailroute', 10_000),
      run('postfix', 1, 400),
      run('mailroute', 1, 600),
    ];
    const [r] = ratios(runs, ['dual-4k']);
    expect(r?.perRoundE2e).toEqual([1.5]);
    const s = summarize(runs, ['dual-4k'], ['postfix', 'mailroute']);
    expect(s.map((x) => [x.system, x.runs, x.e2eMax])).toEqual([
      ['postfix', 1, 400],
      ['mailroute', 1, 600],
    ]);
  });
});
