import { describe, expect, it } from 'vitest';
import { envName, flagUsage, parseDuration, readFlags } from './flags.ts';

describe('parseDuration', () => {
  it.each([
    ['500ms', 500],
    ['1500ms', 1500],
    ['30s', 30_000],
    ['30', 30_000],
    ['1.5s', 1500],
    ['0.5m', 30_000],
    ['10m', 600_000],
    ['1h', 3_600_000],
    ['2h', 7_200_000],
    ['5d', 432_000_000],
    [' 1d ', 86_400_000],
    ['0', 0],
    ['1x', undefined],
    ['', undefined],
    ['-1s', undefined],
    ['1e3s', undefined],
    ['.5s', undefined],
    ['1 s', undefined],
    ['s', undefined],
  ] as const)('%j -> %s', (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });
});

describe('flags', () => {
  const TABLE = {
    'lease-name': { type: 'string', default: 'a', help: 'the lease' },
    verbose: { type: 'boolean', help: 'more' },
    help: { type: 'boolean', help: 'print this help' },
  } as const;

  it('maps a flag to its environment variable', () => {
    expect(envName('lease-name')).toBe('MAILROUTE_LEASE_NAME');
    expect(envName('max-message-size')).toBe('MAILROUTE_MAX_MESSAGE_SIZE');
  });

  it.each([
    [[], {}, 'a'],
    [[], { MAILROUTE_LEASE_NAME: 'env' }, 'env'],
    [[], { MAILROUTE_LEASE_NAME: '' }, 'a'],
    [['--lease-name', 'flag'], { MAILROUTE_LEASE_NAME: 'env' }, 'flag'],
  ] as const)('argv %j, env %j: %s (flag, else env, else default)', (argv, env, want) => {
    const r = readFlags(TABLE, argv, env);
    expect(r.ok && r.get('lease-name')).toBe(want);
  });

  it('refuses an unknown flag and a positional argument', () => {
    const r = readFlags(TABLE, ['--nope'], {});
    expect(r.ok === false && r.error).toMatch(/nope/);
    expect(readFlags(TABLE, ['x'], {}).ok).toBe(false);
    expect(readFlags(TABLE, ['--help'], {})).toMatchObject({ ok: true, help: true });
  });

  it('tells where a value came from, and names it so: --flag, or MAILROUTE_<FLAG> from the environment', () => {
    const from = (argv: string[], env: Record<string, string>) => {
      const r = readFlags(TABLE, argv, env);
      if (!r.ok) throw new Error(r.error);
      return [r.origin('lease-name'), r.nameOf('lease-name')];
    };
    expect(from([], {})).toEqual(['default', '--lease-name']);
    expect(from([], { MAILROUTE_LEASE_NAME: 'e' })).toEqual(['env', 'MAILROUTE_LEASE_NAME']);
    expect(from([], { MAILROUTE_LEASE_NAME: '' })).toEqual(['default', '--lease-name']);
    expect(from(['--lease-name', 'f'], { MAILROUTE_LEASE_NAME: 'e' })).toEqual(['argv', '--lease-name']);
  });

  it('pads the names to the longest, with at least two spaces before the description', () => {
    const long = 'a-flag-name-longer-than-twenty-four';
    const u = flagUsage('usage: x', { ...TABLE, [long]: { type: 'string', help: 'the long one' } });
    expect(u).toContain(`  --${long}  the long one\n`);
    expect(u).toContain(`  --${'lease-name'.padEnd(long.length + 2)}the lease (default a)\n`);
  });

  it('prints every flag but --help, with its default', () => {
    const u = flagUsage('usage: x', TABLE);
    expect(u).toMatch(/^usage: x\n\nflags \(each also read from MAILROUTE_<FLAG>\):\n/);
    expect(u).toContain('--lease-name');
    expect(u).toContain('the lease (default a)');
    expect(u).not.toContain('--help');
  });
});
