// Options of `npm run bench:relay`: flags, then BENCH_* environment variables, then the mode's defaults.
// Parsed once, validated, frozen; a bad value names its flag.
import { parseArgs } from 'node:util';
import { FLOOR_PARTS } from './floor-plan.ts';
import { WORKLOADS, findWorkload } from './workloads.ts';

export const SYSTEMS = ['ceiling', 'postfix', 'mailroute', 'mailroute-workers', 'floor'] as const;
/** The relay with `--workers auto`, run beside the one-process relay in this workload only (the workers target). */
export const WORKERS_WORKLOAD = 'dual-4k';
export type SystemName = (typeof SYSTEMS)[number];

export interface BenchOptions {
  readonly mode: 'full' | 'quick';
  /** Interleaved rounds of (postfix, mailroute) per workload. */
  readonly rounds: number;
  readonly workloads: readonly string[];
  /** Overrides every workload's message count. */
  readonly messages: number | undefined;
  readonly sessions: number;
  readonly systems: readonly SystemName[];
  /** Latency probe: pause between its messages, and the most it sends per run. */
  readonly probeIntervalMs: number;
  readonly probeMax: number;
  /** Before each run: sync, then wait up to this long for a quiet machine (0: neither). */
  readonly settleMs: number;
  /** One run (one system, one workload) may take this long end to end. */
  readonly runTimeoutMs: number;
  /** The whole benchmark is stopped (everything killed) after this. */
  readonly totalTimeoutMs: number;
  /** Write bench/results/*.json, docs/benchmarks.md and docs/bench-relay.svg. */
  readonly write: boolean;
  readonly keepTemp: boolean;
  /** Messages of the discarded warm-up run of each system before the first workload (0: none). */
  readonly warmupMessages: number;
  /** Run one CPU-bound process (`yes > /dev/null`) through the whole benchmark. */
  readonly neighbour: boolean;
  /** Run mailroute from a copy of its sources taken at the start (default), not the live checkout. */
  readonly snapshot: boolean;
  /** Run mailroute from this folder instead (a patched copy, for experiments). */
  readonly mailrouteRoot: string | undefined;
  /** Don't run anything: re-render docs/benchmarks.md and the chart from this results file. */
  readonly render: string | undefined;
  /** Extra arguments for `mailroute relay`. */
  readonly mailrouteArgs: readonly string[];
  /** Run mailroute with --cpu-prof into this folder. */
  readonly cpuProfDir: string | undefined;
  /** Extra options for the node binary that runs mailroute (V8 flags NODE_OPTIONS refuses, for experiments). */
  readonly nodeArgs: readonly string[];
  /** The parts of the relay the floor system uses instead of its own (floor-relay.ts --with). */
  readonly floorWith: readonly string[];
  /** Processes of the floor system (floor-relay.ts --processes). */
  readonly floorProcesses: number;
}

export type OptionsResult =
  { ok: true; options: BenchOptions } | { ok: false; error: string } | { ok: 'help' };

export const USAGE = `usage: npm run bench:relay -- [--quick] [flags]

  --quick                 development run: ~2,000 messages per 4 KiB workload, 1 round (BENCH_MODE=quick)
  --rounds N              interleaved (postfix, mailroute) rounds per workload (BENCH_ROUNDS; full 2, quick 1)
  --workloads A,B         subset of: ${WORKLOADS.map((w) => w.id).join(', ')} (BENCH_WORKLOADS)
  --messages N            messages per run for every workload (BENCH_MESSAGES)
  --sessions N            smtp-source sessions (BENCH_SESSIONS, default 20)
  --systems A,B           subset of: ceiling, postfix, mailroute, mailroute-workers, floor (BENCH_SYSTEMS; full:
                          all but floor, quick: all but mailroute-workers and floor). mailroute-workers is the relay
                          with --workers auto, in dual-4k only; floor is bench/relay/floor-relay.ts, the least a
                          durable relay in Node does per message (docs/perf.md, "A floor")
  --floor-with A,B        parts of the relay the floor uses instead of its own: smtp-server, client (the relay's SMTP
                          client) or nodemailer (the one it used before), pino, spool; or log (not a part of the
                          relay: its files made durable by a write-ahead log instead, docs/perf.md)
  --floor-processes N     floor processes sharing the port with SO_REUSEPORT (default 1)
  --probe-interval MS     pause between latency-probe messages (default 50)
  --probe-max N           latency-probe messages per run at most (default 1000)
  --settle S              before each run: sync, then wait up to S seconds for a quiet machine (default 15; 0 off)
  --run-timeout S         seconds one run may take (default 600)
  --timeout S             seconds for the whole benchmark (default 5400 full, 900 quick)
  --no-write              print only; don't write results, docs and chart
  --keep                  keep the temp folder (configs, logs, spools)
  --warmup N              before the first workload, one discarded run of each system with N messages (full 2000,
                          quick 0); kept in the results file, left out of every summary and ratio
  --neighbour             run one CPU-bound process (yes > /dev/null) through every run, as a busy neighbour
  --no-snapshot           run mailroute from the checkout (default: from a copy of its sources taken at the start)
  --mailroute-root DIR    run mailroute's bin/mailroute.js from DIR (a patched copy of the sources, for experiments)
  --mailroute-arg=ARG     extra argument for \`mailroute relay\` (repeatable; BENCH_MAILROUTE_ARGS, space-separated)
  --node-arg=ARG          extra option for the node binary that runs mailroute, e.g. --node-arg=--single-threaded-gc
                          (repeatable; BENCH_NODE_ARGS, space-separated)
  --render FILE           run nothing: re-render the docs section and chart from a bench/results/*.json file
  --cpu-prof DIR          run mailroute under node --cpu-prof, profiles into DIR
`;

function positiveInt(name: string, raw: string | undefined, min = 1): number | string | undefined {
  if (raw === undefined || raw === '') return undefined;
  if (!/^\d+$/.test(raw)) return `--${name}: expected a whole number, got "${raw}"`;
  const n = Number(raw);
  if (n < min) return `--${name}: must be at least ${min}, got ${n}`;
  return n;
}

function list(raw: string | undefined): string[] | undefined {
  if (raw === undefined || raw.trim() === '') return undefined;
  return raw
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

export function parseOptions(
  argv: readonly string[],
  env: Record<string, string | undefined>,
): OptionsResult {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        quick: { type: 'boolean' },
        full: { type: 'boolean' },
        rounds: { type: 'string' },
        workloads: { type: 'string' },
        messages: { type: 'string' },
        sessions: { type: 'string' },
        systems: { type: 'string' },
        'probe-interval': { type: 'string' },
        'probe-max': { type: 'string' },
        settle: { type: 'string' },
        'run-timeout': { type: 'string' },
        timeout: { type: 'string' },
        'no-write': { type: 'boolean' },
        keep: { type: 'boolean' },
        warmup: { type: 'string' },
        neighbour: { type: 'boolean' },
        'no-snapshot': { type: 'boolean' },
        'mailroute-root': { type: 'string' },
        render: { type: 'string' },
        'mailroute-arg': { type: 'string', multiple: true },
        'node-arg': { type: 'string', multiple: true },
        'cpu-prof': { type: 'string' },
        'floor-with': { type: 'string' },
        'floor-processes': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    return { ok: false, error: err instanceof Error ? err.message : String(err) };
  }
  const v = parsed.values;
  if (v.help === true) return { ok: 'help' };
  if (v.quick === true && v.full === true)
    return { ok: false, error: '--quick and --full exclude each other' };
  const envMode = env.BENCH_MODE;
  if (envMode !== undefined && envMode !== '' && envMode !== 'quick' && envMode !== 'full') {
    return { ok: false, error: `BENCH_MODE: expected quick or full, got "${envMode}"` };
  }
  const mode: 'full' | 'quick' =
    v.quick === true ? 'quick' : v.full === true ? 'full' : envMode === 'quick' ? 'quick' : 'full';

  const ints: Record<string, number | undefined> = {};
  const intFlags: [string, string | undefined, number][] = [
    ['rounds', v.rounds ?? env.BENCH_ROUNDS, 1],
    ['messages', v.messages ?? env.BENCH_MESSAGES, 1],
    ['sessions', v.sessions ?? env.BENCH_SESSIONS, 1],
    ['probe-interval', v['probe-interval'], 0],
    ['probe-max', v['probe-max'], 0],
    ['settle', v.settle, 0],
    ['warmup', v.warmup, 0],
    ['run-timeout', v['run-timeout'], 1],
    ['timeout', v.timeout, 1],
    ['floor-processes', v['floor-processes'], 1],
  ];
  for (const [name, raw, min] of intFlags) {
    const r = positiveInt(name, raw, min);
    if (typeof r === 'string') return { ok: false, error: r };
    ints[name] = r;
  }

  const workloads = list(v.workloads ?? env.BENCH_WORKLOADS) ?? WORKLOADS.map((w) => w.id);
  for (const id of workloads) {
    if (findWorkload(id) === undefined) {
      return {
        ok: false,
        error: `--workloads: unknown workload "${id}" (known: ${WORKLOADS.map((w) => w.id).join(', ')})`,
      };
    }
  }
  const systemsRaw =
    list(v.systems ?? env.BENCH_SYSTEMS) ??
    SYSTEMS.filter((s) => s !== 'floor' && (mode === 'full' || s !== 'mailroute-workers'));
  const systems: SystemName[] = [];
  for (const s of systemsRaw) {
    const known = SYSTEMS.find((k) => k === s);
    if (known === undefined)
      return { ok: false, error: `--systems: unknown system "${s}" (known: ${SYSTEMS.join(', ')})` };
    systems.push(known);
  }

  const mailrouteArgs = [
    ...(env.BENCH_MAILROUTE_ARGS?.split(/\s+/).filter((s) => s !== '') ?? []),
    ...(v['mailroute-arg'] ?? []),
  ];

  const nodeArgs = [
    ...(env.BENCH_NODE_ARGS?.split(/\s+/).filter((s) => s !== '') ?? []),
    ...(v['node-arg'] ?? []),
  ];
  const bad = nodeArgs.find((a) => !a.startsWith('--'));
  if (bad !== undefined)
    return { ok: false, error: `--node-arg: "${bad}" is not an option (it must start with --)` };

  const floorWith = list(v['floor-with']) ?? [];
  const unknownPart = floorWith.find((p) => !FLOOR_PARTS.some((k) => k === p));
  if (unknownPart !== undefined)
    return {
      ok: false,
      error: `--floor-with: unknown part "${unknownPart}" (known: ${FLOOR_PARTS.join(', ')})`,
    };

  const options: BenchOptions = {
    mode,
    rounds: ints.rounds ?? (mode === 'full' ? 2 : 1),
    workloads,
    messages: ints.messages,
    sessions: ints.sessions ?? 20,
    systems,
    probeIntervalMs: ints['probe-interval'] ?? 50,
    probeMax: ints['probe-max'] ?? 1000,
    settleMs: (ints.settle ?? 15) * 1000,
    runTimeoutMs: (ints['run-timeout'] ?? 600) * 1000,
    totalTimeoutMs: (ints.timeout ?? (mode === 'full' ? 5400 : 900)) * 1000,
    write: v['no-write'] !== true,
    keepTemp: v.keep === true,
    warmupMessages: ints.warmup ?? (mode === 'full' ? 2000 : 0),
    neighbour: v.neighbour === true,
    snapshot: v['no-snapshot'] !== true,
    mailrouteRoot: v['mailroute-root'],
    render: v.render,
    mailrouteArgs,
    cpuProfDir: v['cpu-prof'],
    nodeArgs,
    floorWith,
    floorProcesses: ints['floor-processes'] ?? 1,
  };
  return { ok: true, options: Object.freeze(options) };
}
