import fc from 'fast-check';
import { stdTimeFunctions } from 'pino';
import { describe, expect, it, vi } from 'vitest';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { ATOMIC_WRITE_BYTES, createLogger, isoTimeCached, lineBatcher, prettyLine } from './logger.ts';

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

describe('lineBatcher', () => {
  /** A batcher whose end of turn the test triggers; returns the chunks written. */
  const manual = (maxBytes?: number) => {
    const chunks: string[] = [];
    let turnEnd: (() => void) | undefined;
    const b = lineBatcher((c) => chunks.push(c), {
      schedule: (fn) => {
        expect(turnEnd).toBeUndefined(); // one scheduled flush per turn, not one per line
        turnEnd = fn;
      },
      ...(maxBytes === undefined ? {} : { maxBytes }),
    });
    const endTurn = (): void => {
      const fn = turnEnd;
      turnEnd = undefined;
      fn?.();
    };
    return { b, chunks, endTurn };
  };

  it('writes the lines of one turn as one chunk at its end, in order', () => {
    const { b, chunks, endTurn } = manual();
    b.write('a\n');
    b.write('b\n');
    expect(chunks).toEqual([]);
    endTurn();
    b.write('c\n');
    endTurn();
    expect(chunks).toEqual(['a\nb\n', 'c\n']);
  });

  it('flush() writes what is pending, and nothing when nothing is', () => {
    const { b, chunks, endTurn } = manual();
    b.flush();
    b.write('a\n');
    b.flush();
    endTurn();
    expect(chunks).toEqual(['a\n']);
  });

  it('counts bytes, not characters: a chunk of multi-byte lines stays within the bound', () => {
    const { b, chunks, endTurn } = manual(10);
    b.write('ééé\n'); // 7 bytes in 4 characters
    b.write('ééé\n');
    endTurn();
    expect(chunks).toEqual(['ééé\n', 'ééé\n']);
  });

  it('keeps every line, in order, in chunks within the bound unless a chunk is one longer line', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.string({ unit: 'grapheme', maxLength: 40 }), fc.boolean()), { maxLength: 60 }),
        fc.integer({ min: 1, max: 64 }),
        (steps, maxBytes) => {
          const { b, chunks, endTurn } = manual(maxBytes);
          const lines: string[] = [];
          for (const [text, turnEnds] of steps) {
            const line = `${text}\n`;
            lines.push(line);
            b.write(line);
            if (turnEnds) endTurn();
          }
          endTurn();
          expect(chunks.join('')).toBe(lines.join(''));
          for (const c of chunks) {
            expect(c).not.toBe('');
            if (Buffer.byteLength(c) > maxBytes) expect(lines).toContain(c);
          }
        },
      ),
    );
  });

  it('is bounded by the atomic pipe write by default', () => {
    const chunks: string[] = [];
    const b = lineBatcher((c) => chunks.push(c), { schedule: () => undefined });
    const line = `${'x'.repeat(299)}\n`;
    for (let i = 0; i < 100; i++) b.write(line);
    b.flush();
    expect(chunks.join('')).toBe(line.repeat(100));
    expect(Math.max(...chunks.map((c) => Buffer.byteLength(c)))).toBeLessThanOrEqual(ATOMIC_WRITE_BYTES);
  });
});

describe('the default stdout logger (a real process)', () => {
  const logger = fileURLToPath(new URL('./logger.ts', import.meta.url));
  const run = (body: string) =>
    spawnSync(
      process.execPath,
      ['--input-type=module', '-e', `import { createLogger } from ${JSON.stringify(logger)};\n${body}`],
      { encoding: 'utf8', timeout: 30_000 },
    );
  const numbers = (stdout: string): unknown[] =>
    stdout
      .trim()
      .split('\n')
      .map((l) => (JSON.parse(l) as { n?: unknown }).n);

  it('writes the lines of the last turn when the process exits (process.exit)', () => {
    const r = run(`const a = createLogger({ level: 'info', format: 'json', base: {} });
const b = createLogger({ level: 'info', format: 'json', base: {} });
for (let n = 0; n < 500; n++) (n % 2 ? b : a).info({ n }, 'line');
process.exit(3);`);
    expect(r.status).toBe(3);
    expect(numbers(r.stdout)).toEqual(Array.from({ length: 500 }, (_, n) => n));
  });

  it('writes lines logged across turns, and those before an uncaught error', () => {
    const r = run(`const a = createLogger({ level: 'info', format: 'pretty', base: {} });
a.info('first');
await new Promise((resolve) => setTimeout(resolve, 1));
a.info('second');
throw new Error('boom');`);
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(/INFO {2}first\n.*INFO {2}second\n$/s);
    expect(r.stderr).toContain('boom');
  });
});
