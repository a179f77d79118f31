import { describe, expect, it } from 'vitest';
import { parseOptions } from './options.ts';

describe('parseOptions', () => {
  it('defaults to the full benchmark: 2 rounds, 20 sessions, every workload and system', () => {
    const r = parseOptions([], {});
    expect(r.ok).toBe(true);
    if (r.ok !== true) return;
    expect(r.options).toMatchObject({
      mode: 'full',
      rounds: 2,
      sessions: 20,
      messages: undefined,
      write: true,
    });
    expect(r.options.systems).toEqual(['ceiling', 'postfix', 'mailroute', 'mailroute-workers']);
    expect(r.options.workloads).toContain('dual-4k');
    expect(Object.isFrozen(r.options)).toBe(true);
  });

  it('--quick runs 1 round; flags win over the environment', () => {
    const r = parseOptions(['--quick', '--rounds', '3', '--systems', 'postfix'], {
      BENCH_ROUNDS: '5',
      BENCH_SYSTEMS: 'mailroute',
    });
    expect(r.ok === true && r.options).toMatchObject({ mode: 'quick', rounds: 3, systems: ['postfix'] });
    const q = parseOptions([], { BENCH_MODE: 'quick' });
    expect(q.ok === true && q.options).toMatchObject({ mode: 'quick', rounds: 1 });
    // the workers comparison only in full runs, unless asked for
    expect(q.ok === true && q.options.systems).toEqual(['ceiling', 'postfix', 'mailroute']);
  });

  it('runs the floor only when asked for, with the parts of the relay named by --floor-with', () => {
    const r = parseOptions(['--systems', 'floor,mailroute', '--floor-with', 'smtp-server,pino'], {});
    expect(r.ok === true && r.options).toMatchObject({
      systems: ['floor', 'mailroute'],
      floorWith: ['smtp-server', 'pino'],
    });
    expect(r.ok === true && r.options.floorProcesses).toBe(1);
    const two = parseOptions(['--systems', 'floor', '--floor-processes', '2'], {});
    expect(two.ok === true && two.options.floorProcesses).toBe(2);
    expect(parseOptions(['--floor-processes', '0'], {}).ok).toBe(false);
    const bad = parseOptions(['--floor-with', 'smtp-server,postfix'], {});
    expect(bad).toEqual({
      ok: false,
      error:
        '--floor-with: unknown part "postfix" (known: smtp-server, client, nodemailer, pino, spool, log)',
    });
  });

  it('collects mailroute arguments from the environment and repeated flags', () => {
    const r = parseOptions(['--mailroute-arg=--greeting-delay=0'], {
      BENCH_MAILROUTE_ARGS: '--log-level warn',
    });
    expect(r.ok === true && r.options.mailrouteArgs).toEqual(['--log-level', 'warn', '--greeting-delay=0']);
  });

  it('collects node options for the relay the same way, and refuses one that is not an option', () => {
    const r = parseOptions(['--node-arg=--single-threaded-gc'], {
      BENCH_NODE_ARGS: '--max-semi-space-size=16',
    });
    expect(r.ok === true && r.options.nodeArgs).toEqual(['--max-semi-space-size=16', '--single-threaded-gc']);
    const bad = parseOptions(['--node-arg=/tmp/evil.js'], {});
    expect(bad.ok === false && bad.error).toBe(
      '--node-arg: "/tmp/evil.js" is not an option (it must start with --)',
    );
  });

  it.each([
    [['--rounds', 'x'], '--rounds: expected a whole number'],
    [['--rounds', '0'], '--rounds: must be at least 1'],
    [['--workloads', 'dual-4k,nope'], '--workloads: unknown workload "nope"'],
    [['--systems', 'exim'], '--systems: unknown system "exim"'],
    [['--quick', '--full'], '--quick and --full exclude each other'],
    [['--bogus'], "Unknown option '--bogus'"],
  ])('%j fails naming the flag', (argv, message) => {
    const r = parseOptions(argv, {});
    expect(r.ok).toBe(false);
    expect(r.ok === false && r.error).toContain(message);
  });

  it('runs mailroute from a snapshot unless told otherwise', () => {
    const d = parseOptions([], {});
    expect(d.ok === true && d.options).toMatchObject({ snapshot: true, mailrouteRoot: undefined });
    const e = parseOptions(['--no-snapshot', '--mailroute-root', '/tmp/patched'], {});
    expect(e.ok === true && e.options).toMatchObject({ snapshot: false, mailrouteRoot: '/tmp/patched' });
  });

  it('rejects a bad BENCH_MODE', () => {
    const r = parseOptions([], { BENCH_MODE: 'fast' });
    expect(r.ok === false && r.error).toContain('BENCH_MODE');
  });

  it('--help', () => {
    expect(parseOptions(['--help'], {}).ok).toBe('help');
  });
});
