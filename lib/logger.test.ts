import fc from 'fast-check';
import { stdTimeFunctions } from 'pino';
import { describe, expect, it, vi } from 'vitest';
import { createLogger, isoTimeCached, prettyLine } from './logger.ts';

describe('logger', () => {
  it('pretty: ISO time, level name, component, message, then the fields', () => {
    const lines: string[] = [];
    const log = createLogger({
      level: 'info',
      format: 'pretty',
      base: { component: 'relay' },
      write: (l) => lines.push(l),
    });
    log.info({ queueId: 'Q1', to: 'a b', err: new Error('boom') }, 'accepted');
    log.debug('not shown');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(
      /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO {2}relay: accepted queueId=Q1 to="a b" err=boom\n$/,
    );
  });

  it('json (the default): ISO time and the level name', () => {
    const lines: string[] = [];
    createLogger({
      level: 'info',
      format: 'json',
      base: { component: 'operator' },
      write: (l) => lines.push(l),
    }).warn({ key: 'k' }, 'slow');
    const o = JSON.parse(lines[0] ?? '{}') as Record<string, unknown>;
    expect(o).toMatchObject({ level: 'warn', component: 'operator', key: 'k', msg: 'slow' });
    expect(o.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  });

  it('pretty passes a line that is not JSON through', () => {
    expect(prettyLine('plain')).toBe('plain\n');
  });
});

describe('isoTimeCached', () => {
  const reference = (ms: number): string => `,"time":"${new Date(ms).toISOString()}"`;

  it.each([
    ['the epoch', 0],
    ['the last millisecond of a second', 1_764_676_800_999],
    ['the first of the next', 1_764_676_801_000],
    ['one millisecond in', 1_764_676_801_001],
    ['ten in', 1_764_676_801_010],
    ['before 1970', -1],
    ['a five-digit year', 253_402_300_800_000],
  ])('%s', (_what, ms) => {
    expect(isoTimeCached(() => ms)()).toBe(reference(ms));
  });

  it("gives pino's isoTime for any sequence of clock readings (forwards, backwards, across seconds)", () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: -1e12, max: 4e12 }), { minLength: 1, maxLength: 40 }),
        (times) => {
          let i = 0;
          const f = isoTimeCached(() => times[i] ?? 0);
          for (; i < times.length; i++) expect(f()).toBe(reference(times[i] ?? 0));
        },
      ),
    );
  });

  it("is pino's own isoTime (the reference above is what pino writes)", () => {
    vi.useFakeTimers();
    try {
      for (const ms of [0, 1_764_676_801_001, 1_764_676_801_999]) {
        vi.setSystemTime(ms);
        expect(isoTimeCached()()).toBe(stdTimeFunctions.isoTime());
      }
    } finally {
      vi.useRealTimers();
    }
  });
});
