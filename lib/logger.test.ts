import { describe, expect, it } from 'vitest';
import { createLogger, prettyLine } from './logger.ts';

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
