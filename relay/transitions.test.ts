// The relay's transition timer against a clock that moves between two readings, as a real one does: the stage gauge
// must reach the next stage whatever instant the timer fires at, including 1 ms before the transition.
import pino from 'pino';
import { Gauge } from 'prom-client';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { compile } from '../routing/compile.ts';
import { exampleDomain, examplePolicy } from '../routing/test-fixtures.ts';
import { startTransitionTimer, type TransitionTimer } from './transitions.ts';

const UNTIL = Date.parse('2026-12-05T02:00:00Z');
const DAY = 86_400_000;

const stagedTable = (until: number) =>
  compile([
    exampleDomain(),
    examplePolicy({
      mode: 'Direct',
      stages: [
        {
          name: 'trial',
          until: new Date(until).toISOString(),
          mode: 'Dual',
          primary: 'old',
          secondary: 'new',
        },
      ],
    }),
  ]).table;

describe('relay transition timer', () => {
  let now = 0;
  let timer: TransitionTimer | undefined;
  let gauge: Gauge<'policy' | 'stage'>;
  let lines: string[];
  let logger: pino.Logger;

  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    gauge = new Gauge({ name: 'stage_info', help: 'stage', labelNames: ['policy', 'stage'], registers: [] });
    lines = [];
    logger = pino({ level: 'info' }, { write: (s: string) => void lines.push(s) });
    // Every reading moves the clock 1 ms on: code that reads it twice for one decision sees two instants.
    timer = startTransitionTimer({ clock: () => new Date(now++), logger, stageGauge: gauge });
  });
  afterEach(() => {
    timer?.close();
    vi.useRealTimers();
  });

  const stages = async (): Promise<string[]> =>
    (await gauge.get()).values
      .filter((v) => v.value === 1)
      .map((v) => `${v.labels.policy}=${v.labels.stage}`);
  const changes = (): unknown[] =>
    lines
      .map((l) => JSON.parse(l) as { msg: string; from?: string; stage?: string })
      .filter((l) => l.msg === 'routing stage changed')
      .map((l) => `${l.from}->${l.stage}`);

  it('shows the stage in force when a table is served, and the final state once it ends', async () => {
    now = UNTIL - 5000;
    timer!.serve(stagedTable(UNTIL));
    expect(await stages()).toEqual(['default/example-com=trial']);
    now = UNTIL;
    vi.advanceTimersByTime(5000);
    expect(await stages()).toEqual(['default/example-com=final']);
    expect(changes()).toEqual(['trial->final']);
  });

  it('a timer that fires 1 ms before the transition re-arms, and the final state follows', async () => {
    now = UNTIL - 5000;
    timer!.serve(stagedTable(UNTIL));
    now = UNTIL - 1; // the wall clock lags the timer by 1 ms; the next reading would be the transition itself
    vi.advanceTimersByTime(5000);
    expect(await stages()).toEqual(['default/example-com=trial']);
    vi.advanceTimersByTime(1);
    expect(await stages()).toEqual(['default/example-com=final']);
    expect(changes()).toEqual(['trial->final']);
  });

  it('a table served 1 ms before the transition still reaches the final state', async () => {
    now = UNTIL - 1;
    timer!.serve(stagedTable(UNTIL));
    expect(await stages()).toEqual(['default/example-com=trial']);
    vi.advanceTimersByTime(1);
    expect(await stages()).toEqual(['default/example-com=final']);
  });

  it('a step of the wall clock forward past the transition shows the final stage within a minute, not an hour', async () => {
    now = UNTIL - 3_600_000;
    timer!.serve(stagedTable(UNTIL));
    now = UNTIL + 3_600_000; // the wall clock jumps two hours; the timer (monotonic) still has an hour to run
    vi.advanceTimersByTime(60_000);
    expect(await stages()).toEqual(['default/example-com=final']);
    expect(changes()).toEqual(['trial->final']);
  });

  it('a transition more than a day ahead is reached through timers of at most a day (safeDelay), with no recheck', async () => {
    timer?.close();
    timer = startTransitionTimer({
      clock: () => new Date(now++),
      logger,
      stageGauge: gauge,
      recheckMs: 2 * DAY,
    });
    now = UNTIL - 2 * DAY - 10;
    timer.serve(stagedTable(UNTIL));
    vi.advanceTimersByTime(DAY);
    expect(await stages()).toEqual(['default/example-com=trial']);
    now = UNTIL - 10;
    vi.advanceTimersByTime(DAY);
    expect(await stages()).toEqual(['default/example-com=trial']);
    now = UNTIL;
    vi.advanceTimersByTime(10);
    expect(await stages()).toEqual(['default/example-com=final']);
    expect(changes()).toEqual(['trial->final']);
  });
});
