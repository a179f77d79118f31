// `npm run bench:relay`: mailroute against Postfix on loopback, in one go.
// Sets up two smtp-sink destinations, a private Postfix, the mailroute relay and smtp-source load; interleaves
// Postfix and mailroute runs per workload (ABBA order over rounds) so machine drift hits both; writes
// bench/results/<date>-<mode>.json, the "Relay vs Postfix" section of docs/benchmarks.md and docs/bench-relay.svg.
import {
  chmodSync,
  cpSync,
  symlinkSync,
  mkdtempSync,
  rmSync,
  mkdirSync,
  writeFileSync,
  readFileSync,
  existsSync,
  readdirSync,
  openSync,
  closeSync,
} from 'node:fs';
import { availableParallelism, tmpdir, totalmem, loadavg } from 'node:os';
import { join, resolve, dirname, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFileSync } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { parseOptions, USAGE, WORKERS_WORKLOAD, type BenchOptions, type SystemName } from './options.ts';
import { WORKLOADS, findWorkload, sourcePlans, expectedLegs, SENDER, type Workload } from './workloads.ts';
import { Procs } from './procs.ts';
import { Sink } from './sink.ts';
import { PostfixInstance, postfixVersion } from './postfix.ts';
import { MailrouteInstance } from './mailroute.ts';
import { LatencyProbe } from './probe.ts';
import { freePorts, waitForSmtp } from './smtp-client.ts';
import {
  busyTicks,
  sampleTree,
  clockTicksPerSecond,
  cpuPressureTotalUs,
  cpuTimes,
  MemoryPeaks,
} from './procstat.ts';
import { latencySummary, measured, summarize, ratios, type RunResult } from './stats.ts';
import { markdownSection, markdownTables, replaceSection, svgChart } from './report.ts';
import { cpuModel, ext4Journal, journalWarning } from '../machine.ts';
import {
  cpuBudget,
  cpuBudgetTable,
  evaluateTargets,
  runRatios,
  targetsTable,
  versionHistory,
  type RunRatios,
} from './targets.ts';
import { settle } from './settle.ts';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

const log = (msg: string): void => {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
};

const sh = (cmd: string, args: string[]): string => {
  try {
    // a failing command's own message (git outside a checkout: "fatal: not a git repository") is the 'unknown' below
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return 'unknown';
  }
};

function machineInfo(): { text: string; json: Record<string, unknown>; journal: boolean | undefined } {
  const model = cpuModel();
  const nproc = Number(sh('nproc', []));
  const memGiB = totalmem() / 2 ** 30;
  const kernel = sh('uname', ['-r']);
  const [fstype = 'unknown', source = 'unknown'] = (
    sh('df', ['--output=fstype,source', tmpdir()]).split('\n').pop() ?? ''
  ).split(/\s+/);
  const journal = ext4Journal(
    fstype,
    source,
    existsSync('/proc/fs/jbd2') ? readdirSync('/proc/fs/jbd2') : [],
  );
  const fs = journal === undefined ? fstype : `${fstype} ${journal ? 'with' : 'without'} a journal`;
  const json = {
    cpuModel: model,
    nproc,
    memGiB: Number(memGiB.toFixed(1)),
    kernel,
    tmpFilesystem: fs,
    tmpJournal: journal ?? null,
  };
  return {
    journal,
    text: `${model}, ${nproc} CPUs (nproc), ${memGiB.toFixed(1)} GiB RAM, Linux ${kernel}, queues and spool on ${fs} (${tmpdir()})`,
    json,
  };
}

/**
 * The commit of the relay's sources that run: the checkout's HEAD (+dirty when its sources differ from it), or for
 * --mailroute-root the tree's own: its HEAD when it is a git checkout, else the first line of its COMMIT file (a
 * `git archive` copy carries none: write it beside the sources), else "unknown tree DIR". Before 7 December a
 * --mailroute-root run was labelled with the checkout's HEAD, whatever the tree held.
 */
function mailrouteCommit(mailrouteRoot: string | undefined): string {
  const root = mailrouteRoot ?? repoRoot;
  const head = sh('git', ['-C', root, 'rev-parse', '--show-toplevel']);
  if (head !== 'unknown' && resolve(head) === resolve(root)) {
    const commit = sh('git', ['-C', root, 'rev-parse', '--short', 'HEAD']);
    const dirty = sh('git', [
      '-C',
      root,
      'status',
      '--porcelain',
      '--',
      'relay',
      'routing',
      'cli',
      'contract',
      'lib',
      'patches',
    ]);
    return dirty === '' ? commit : `${commit}+dirty`;
  }
  try {
    const first = readFileSync(join(root, 'COMMIT'), 'utf8').split('\n')[0]?.trim() ?? '';
    if (first !== '') return first;
  } catch {
    // no COMMIT file
  }
  return `unknown tree ${root}`;
}

function versions(tmp: string, mailrouteRoot: string | undefined): Record<string, string> {
  const pv = join(tmp, 'postconf-version');
  mkdirSync(pv, { recursive: true });
  writeFileSync(join(pv, 'main.cf'), '');
  writeFileSync(join(pv, 'master.cf'), '');
  const node = sh(join(repoRoot, 'node_modules', '.bin', 'node'), ['--version']);
  let mailroute = 'unknown';
  let smtpServer = 'unknown';
  let nodemailer = 'unknown';
  try {
    mailroute = (
      JSON.parse(readFileSync(join(mailrouteRoot ?? repoRoot, 'package.json'), 'utf8')) as { version: string }
    ).version;
    smtpServer = (
      JSON.parse(readFileSync(join(repoRoot, 'node_modules/smtp-server/package.json'), 'utf8')) as {
        version: string;
      }
    ).version;
    nodemailer = (
      JSON.parse(readFileSync(join(repoRoot, 'node_modules/nodemailer/package.json'), 'utf8')) as {
        version: string;
      }
    ).version;
  } catch {
    // Reported as unknown.
  }
  const commit = mailrouteCommit(mailrouteRoot);
  return {
    postfix: postfixVersion(pv),
    node,
    mailroute: `${mailroute} (${commit})`,
    'smtp-server': smtpServer,
    nodemailer,
  };
}

/**
 * Copies the relay's sources (as they are on disk now, committed or not) into the temp folder, with node_modules
 * linked, so every mailroute run of this benchmark runs the same code while others keep editing the checkout.
 */
function snapshotSources(tmp: string): string {
  const dest = join(tmp, 'mailroute-src');
  mkdirSync(dest, { recursive: true });
  for (const entry of [
    'bin',
    'cli',
    'contract',
    'lib',
    'relay',
    'routing',
    'operator',
    'test/support',
    'bench/relay/floor-relay.ts',
    'bench/relay/floor-plan.ts',
    'bench/relay/accept-log.ts',
    'bench/relay/smtp-server-options.ts',
    'package.json',
    'tsconfig.json',
  ]) {
    const from = join(repoRoot, entry);
    if (!existsSync(from)) continue;
    cpSync(from, join(dest, entry), { recursive: true, filter: (src) => !src.includes('node_modules') });
  }
  symlinkSync(join(repoRoot, 'node_modules'), join(dest, 'node_modules'));
  return dest;
}

interface RunContext {
  readonly options: BenchOptions;
  readonly procs: Procs;
  readonly tmp: string;
  /** Where bin/mailroute.js is run from (a snapshot, or the checkout with --no-snapshot). */
  readonly mailrouteRoot: string;
}

async function runOne(
  ctx: RunContext,
  wl: Workload,
  system: SystemName,
  round: number,
  order: number,
  messagesOverride?: number,
): Promise<RunResult> {
  const { options, procs } = ctx;
  const messages =
    messagesOverride ?? options.messages ?? (options.mode === 'full' ? wl.fullMessages : wl.quickMessages);
  const dir = join(ctx.tmp, `${String(order).padStart(2, '0')}-${wl.id}-${system}`);
  mkdirSync(dir, { recursive: true });
  const [pA, pB, pSmtp, pHttp, pAdmin] = await freePorts(5);
  if (
    pA === undefined ||
    pB === undefined ||
    pSmtp === undefined ||
    pHttp === undefined ||
    pAdmin === undefined
  ) {
    throw new Error('could not get free ports');
  }
  const expected = expectedLegs(system === 'ceiling' ? 'Ceiling' : wl.mode, messages, wl.recipients);
  const base = {
    workload: wl.id,
    system,
    round,
    order,
    startedAt: new Date().toISOString(),
    loadAverage: loadavg().map((x) => Number(x.toFixed(2))),
    messages,
    recipients: wl.recipients,
    expectedLegs: expected,
    cpuPressure: null as number | null,
  };
  const pressureStart = cpuPressureTotalUs();
  const wallStart = performance.now();
  const sinkA = new Sink(pA, join(dir, 'sink-a.log'));
  const sinkB = new Sink(pB, join(dir, 'sink-b.log'));
  let postfix: PostfixInstance | undefined;
  let mailroute: MailrouteInstance | undefined;
  const memory = new MemoryPeaks(() => roots);
  let roots: number[] = [];
  let poller: NodeJS.Timeout | undefined;
  const probe = new LatencyProbe(
    system === 'ceiling' ? pA : pSmtp,
    wl.sizeBytes,
    options.probeIntervalMs,
    options.probeMax,
  );
  try {
    sinkA.start(procs);
    sinkB.start(procs);
    await waitForSmtp(pA, 10_000);
    await waitForSmtp(pB, 10_000);
    let target = pA;
    switch (system) {
      case 'ceiling':
        break;
      case 'postfix': {
        postfix = new PostfixInstance({
          root: join(dir, 'postfix'),
          port: pSmtp,
          sinkA: pA,
          sinkB: pB,
          mode: wl.mode,
        });
        const pf = postfix;
        procs.onCleanup('postfix', () => pf.kill());
        postfix.start();
        await waitForSmtp(pSmtp, 30_000);
        roots = postfix.roots();
        target = pSmtp;
        break;
      }
      case 'mailroute':
      case 'mailroute-workers':
      case 'floor': {
        mailroute = new MailrouteInstance({
          root: join(dir, 'mailroute'),
          sinkA: pA,
          sinkB: pB,
          mode: wl.mode,
          recipients: wl.recipients,
        });
        mailroute.start(procs, {
          repoRoot: ctx.mailrouteRoot,
          port: pSmtp,
          httpPort: pHttp,
          adminPort: pAdmin,
          extraArgs:
            system === 'floor'
              ? [
                  ...(options.floorWith.length > 0 ? ['--with', options.floorWith.join(',')] : []),
                  ...(options.floorProcesses > 1 ? ['--processes', String(options.floorProcesses)] : []),
                ]
              : system === 'mailroute-workers'
                ? [...options.mailrouteArgs, '--workers=auto']
                : options.mailrouteArgs,
          floor: system === 'floor',
          cpuProfDir: options.cpuProfDir,
          nodeArgs: options.nodeArgs,
        });
        const mr = mailroute;
        try {
          await waitForSmtp(pSmtp, 60_000, () => !mr.exited());
        } catch (err) {
          throw new Error(
            `${err instanceof Error ? err.message : String(err)}\nrelay log:\n${mr.logTail()}`,
            {
              cause: err,
            },
          );
        }
        roots = mailroute.roots();
        target = pSmtp;
        break;
      }
    }

    const cpuBefore = system === 'ceiling' ? 0 : sampleTree(roots, false).cpuTicks;
    const machineBefore = cpuTimes();
    if (system !== 'ceiling') memory.start(250);
    const deadline = performance.now() + options.runTimeoutMs;
    let e2eAt: number | undefined;
    const t0 = performance.now();
    const poll = (): number => {
      const n = sinkA.poll() + sinkB.poll();
      if (n >= expected && e2eAt === undefined) e2eAt = performance.now();
      return n;
    };
    poller = setInterval(poll, 25);
    const probeDone = probe.run();
    const sources = sourcePlans(system === 'ceiling' ? 'Direct' : wl.mode, options.sessions, messages).map(
      (p, i) => {
        const errFile = join(dir, `smtp-source-${i}.log`);
        const fd = openSync(errFile, 'w');
        const t = procs.spawn(
          'smtp-source',
          [
            '-s',
            String(p.sessions),
            '-l',
            String(wl.sizeBytes),
            '-m',
            String(p.messages),
            '-r',
            String(wl.recipients),
            '-f',
            SENDER,
            '-M',
            'client.bench.localhost',
            '-t',
            p.to,
            `127.0.0.1:${target}`,
          ],
          { stdio: ['ignore', fd, fd], name: `smtp-source-${i}` },
        );
        closeSync(fd);
        return { t, errFile };
      },
    );
    let sourceTimer: NodeJS.Timeout | undefined;
    const sourceTimeout = new Promise<'timeout'>((res) => {
      sourceTimer = setTimeout(() => res('timeout'), options.runTimeoutMs);
    });
    const codes = await Promise.race([Promise.all(sources.map((s) => s.t.exited)), sourceTimeout]);
    clearTimeout(sourceTimer);
    const acceptedSeconds = (performance.now() - t0) / 1000;
    probe.stop();
    let error: string | null = null;
    if (codes === 'timeout') {
      error = `smtp-source did not finish within ${options.runTimeoutMs / 1000} s`;
      for (const s of sources) await procs.stop(s.t, 1000);
    } else if (codes.some((c) => c !== 0)) {
      const why = sources
        .map((s) => readFileSync(s.errFile, 'utf8').trim().split('\n').slice(-3).join(' | '))
        .join(' ; ');
      error = `smtp-source exit ${codes.join(',')}: ${why}`;
    }
    while (error === null && poll() < expected && performance.now() < deadline) {
      if (mailroute?.exited() === true) {
        error = `mailroute exited during the run:\n${mailroute.logTail()}`;
        break;
      }
      await new Promise((r) => setTimeout(r, 25));
    }
    const delivered = poll();
    clearInterval(poller);
    poller = undefined;
    if (error === null && delivered < expected)
      error = `end to end incomplete: ${delivered} of ${expected} legs after ${options.runTimeoutMs / 1000} s`;
    const e2eSeconds = e2eAt === undefined ? null : (e2eAt - t0) / 1000;
    const cpuAfter = system === 'ceiling' ? 0 : sampleTree(roots, false).cpuTicks;
    const machineAfter = cpuTimes();
    if (system !== 'ceiling') memory.sample();
    memory.stop();
    const probeResult = await probeDone;
    const cpuSeconds = system === 'ceiling' ? null : (cpuAfter - cpuBefore) / clockTicksPerSecond();
    const handled = messages + probeResult.samplesMs.length;
    const machineBusyTicks =
      machineBefore === undefined || machineAfter === undefined
        ? undefined
        : busyTicks(machineBefore, machineAfter);
    const pressureEnd = cpuPressureTotalUs();
    const wallUs = (performance.now() - wallStart) * 1000;
    return {
      ...base,
      cpuPressure:
        pressureStart === undefined || pressureEnd === undefined || wallUs <= 0
          ? null
          : Number(Math.min(1, (pressureEnd - pressureStart) / wallUs).toFixed(3)),
      deliveredLegs: delivered,
      sinkLegs: [sinkA.counter.load, sinkB.counter.load],
      acceptedSeconds: codes === 'timeout' ? null : acceptedSeconds,
      acceptedRate: codes === 'timeout' ? null : messages / acceptedSeconds,
      e2eSeconds,
      e2eRate: e2eSeconds === null ? null : messages / e2eSeconds,
      latency: latencySummary(probeResult.samplesMs, probeResult.errors),
      cpuSeconds,
      cpuSecondsPer1k: cpuSeconds === null ? null : (cpuSeconds / handled) * 1000,
      machineCpuSecondsPer1k:
        machineBusyTicks === undefined ? null : (machineBusyTicks / clockTicksPerSecond() / handled) * 1000,
      peakRssMiB: system === 'ceiling' ? null : memory.rssKb / 1024,
      peakPssMiB: system === 'ceiling' ? null : memory.pssKb / 1024,
      maxProcesses: system === 'ceiling' ? null : memory.maxPids,
      error,
    };
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    return {
      ...base,
      deliveredLegs: sinkA.counter.load + sinkB.counter.load,
      sinkLegs: [sinkA.counter.load, sinkB.counter.load],
      acceptedSeconds: null,
      acceptedRate: null,
      e2eSeconds: null,
      e2eRate: null,
      latency: latencySummary([], []),
      cpuSeconds: null,
      cpuSecondsPer1k: null,
      peakRssMiB: null,
      peakPssMiB: null,
      maxProcesses: null,
      error: message,
    };
  } finally {
    if (poller) clearInterval(poller);
    memory.stop();
    probe.stop();
    if (postfix) {
      await postfix.stop();
      procs.dropCleanup('postfix');
    }
    if (mailroute) await mailroute.stop(procs);
    sinkA.close();
    sinkB.close();
    await procs.stopAllNamed('smtp-sink');
  }
}

function schedule(options: BenchOptions): { wl: Workload; system: SystemName; round: number }[] {
  const out: { wl: Workload; system: SystemName; round: number }[] = [];
  for (const id of options.workloads) {
    const wl = findWorkload(id);
    if (!wl) continue;
    if (options.systems.includes('ceiling')) out.push({ wl, system: 'ceiling', round: 0 });
    for (let round = 1; round <= options.rounds; round++) {
      // ABBA: postfix first in odd rounds, mailroute first in even rounds; the relay with --workers auto (the
      // workers target) right beside the one-process relay, in one workload; the floor (when asked for) beside them.
      const relays: SystemName[] = [
        ...(id === WORKERS_WORKLOAD
          ? (['mailroute', 'mailroute-workers'] as const)
          : (['mailroute'] as const)),
        'floor',
      ];
      const pair: SystemName[] = round % 2 === 1 ? ['postfix', ...relays] : [...relays.reverse(), 'postfix'];
      for (const system of pair) if (options.systems.includes(system)) out.push({ wl, system, round });
    }
  }
  return out;
}

function fmtRun(r: RunResult): string {
  const f = (v: number | null, d = 0): string => (v === null ? '—' : v.toFixed(d));
  const base = `${r.workload} ${r.system}${r.round > 0 ? ` r${r.round}` : ''}: accepted ${f(r.acceptedRate)} msg/s, e2e ${f(r.e2eRate)} msg/s, p50 ${f(r.latency.p50Ms, 1)} ms, p99 ${f(r.latency.p99Ms, 1)} ms (${r.latency.samples} probes), CPU ${f(r.cpuSecondsPer1k, 2)} s/1k, RSS ${f(r.peakRssMiB)} MiB, legs ${r.deliveredLegs}/${r.expectedLegs} [${r.sinkLegs.join('+')}], load ${r.loadAverage.join(' ')}, cpu pressure ${r.cpuPressure === null ? '—' : `${Math.round(r.cpuPressure * 100)}%`}${r.settle === undefined ? '' : `, settled ${f(r.settle.ms / 1000, 1)} s (dirty ${f(r.settle.dirtyKiB / 1024, 1)} MiB, busy ${f(r.settle.busy === null ? null : r.settle.busy * 100)}%)`}`;
  return r.error === null ? base : `${base}\n  ERROR: ${r.error}`;
}

/** What bench/results/*.json holds (summary and ratios are recomputed from runs when rendering). */
interface ResultsFile {
  date: string;
  mode: string;
  command: string;
  machine: Record<string, unknown>;
  machineText?: string;
  versions: Record<string, string>;
  options: Pick<BenchOptions, 'workloads' | 'systems' | 'rounds' | 'probeIntervalMs'> &
    Partial<Pick<BenchOptions, 'settleMs' | 'warmupMessages' | 'neighbour'>>;
  runs: RunResult[];
}

/** The full-run results files in bench/results other than exclude, oldest first, read once per report. */
function fullRunFiles(exclude: string): { name: string; text: string }[] {
  const dir = join(repoRoot, 'bench', 'results');
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((n) => n.endsWith('-full.json') && join('bench', 'results', n) !== exclude)
    .sort()
    .map((n) => ({ name: join('bench', 'results', n), text: readFileSync(join(dir, n), 'utf8') }));
}

const DOC_INTRO =
  '# Benchmarks\n\nEvery figure here was measured on the machine named next to it, with the command shown. Re-run them yourself: each section says how.\n';

/**
 * Prints the tables; with resultFile, writes it (JSON), the "Relay vs Postfix" section of docs/benchmarks.md and
 * docs/bench-relay.svg. writeJson false: re-render the docs from an existing results file.
 */
function writeReport(r: ResultsFile, resultFile: string | undefined, writeJson = true): void {
  const titles = new Map(WORKLOADS.map((w) => [w.id, w.title]));
  const summary = summarize(r.runs, r.options.workloads, r.options.systems);
  const ratioRows = ratios(r.runs, r.options.workloads);
  process.stdout.write(`\n${markdownTables(summary, ratioRows, titles)}\n`);
  if (resultFile === undefined) return;
  const m = r.machine;
  const machineText =
    r.machineText ??
    `${String(m['cpuModel'])}, ${String(m['nproc'])} CPUs (nproc), ${String(m['memGiB'])} GiB RAM, Linux ${String(m['kernel'])}, queues and spool on ${String(m['tmpFilesystem'])}`;
  const counted = measured(r.runs);
  const pressures = counted.map((x) => x.cpuPressure).filter((x): x is number => x !== null);
  const loads = counted.map((x) => x.loadAverage[0] ?? 0);
  const notes = [
    "Needs root (the private Postfix instance is started with `postfix -c DIR start`; nothing under /etc/postfix is touched) and Debian's `postfix` package for smtp-source, smtp-sink and postfix. `--quick` is a 2,000-message development run; `--help` lists the flags (workloads, rounds, systems, `--cpu-prof DIR`, `--render FILE`). Everything listens on 127.0.0.1 only, each run and the whole benchmark have a timeout, and every process is killed on exit or Ctrl-C.",
    'Load: `smtp-source -s SESSIONS -l SIZE -m MESSAGES -r RCPTS` with a new connection per message (no `-d`); split mode runs two smtp-source processes with half the sessions each, one to recipients known on the primary, one to unknown ones.',
    '"accepted" = messages / time until smtp-source had every message answered 250; "end to end" = messages / time until the two smtp-sink destinations had received every leg (counted per recipient from `smtp-sink -v`).',
    `p50/p99: a separate probe connection sends one message every ${r.options.probeIntervalMs} ms during the load and times the write of \`<CR><LF>.<CR><LF>\` to the 250 reply.`,
    'CPU s / 1k msgs: utime+stime (+ reaped children) of the server process tree from /proc (Postfix: master and all its daemons; mailroute: the relay process and its children), per 1,000 messages including probe messages. Sinks, smtp-source and the harness are not counted.',
    'Peak RSS: largest sum of VmRSS over the process tree, sampled every 250 ms; PSS (shared pages split between processes) in parentheses is the fairer figure for multi-process Postfix.',
    'Runs are interleaved per workload: ceiling, then Postfix and mailroute alternating in ABBA order over rounds; the ratio is taken per round, then the median. Ceiling = smtp-source straight into one smtp-sink (one leg).',
    ...(r.options.settleMs !== undefined && r.options.settleMs > 0
      ? [
          `Before each run: \`sync\`, then a wait of at most ${r.options.settleMs / 1000} s for a 0.5 s window in which the machine was less than 25 % busy (each run records the dirty page cache written back, the wait, and the busy share it started with).`,
        ]
      : []),
    ...(r.options.warmupMessages !== undefined && r.options.warmupMessages > 0
      ? [
          `Before the first workload, one warm-up run of each system with ${r.options.warmupMessages} messages: kept in the results file (\`warmup: true\`), left out of every figure here.`,
        ]
      : []),
    ...(r.options.neighbour === true
      ? ['A CPU-bound neighbour (`yes > /dev/null`, one process) ran through every run of both systems.']
      : []),
    ...[journalWarning(m['tmpJournal'] === false ? false : undefined)].filter(
      (w): w is string => w !== undefined,
    ),
    'Both sides fsync: Postfix by default (queue files), mailroute by design (before the 250: a small message in its group-committed accept log, the file and directory entry of a larger one). Both log every message (Postfix to its maillog via postlogd, mailroute pino JSON to a file). mailroute runs with its defaults, one process; mailroute-workers (dual 4 KiB, full runs) is the same relay with `--workers auto` (one process per core), run right after mailroute in round 1 and right before it in round 2. Its 100 ms early-talker greeting delay (design.md §7) applies only until a client address has passed the check once, so it does not cap this load.',
    `The machine is shared (2 cores) with other work. "CPU pressure" is the share of each run's wall time in which some task waited for a CPU (Linux PSI, /proc/pressure/cpu)${pressures.length > 0 ? `: ${Math.round(Math.min(...pressures) * 100)}–${Math.round(Math.max(...pressures) * 100)} % in this run, load average ${Math.min(...loads).toFixed(0)}–${Math.max(...loads).toFixed(0)}` : ''}. High values mean every figure is depressed by contention (design.md §7 has the same machine quiet: Postfix 716–790 msg/s direct, 444–483 dual, ceiling ~10,000), and a single-threaded process suffers more from it than a multi-process one. Trust the interleaved ratios more than the absolute rates.`,
  ];
  const neighbour = r.options.neighbour === true;
  // The spread target compares the full runs of one relay version (quiet ones: no neighbour), this one last.
  const version = r.versions['mailroute'];
  const files = version === undefined ? [] : fullRunFiles(resultFile);
  const ofVersion = (o: { neighbour?: boolean } = {}): RunRatios[] =>
    version === undefined ? [] : versionHistory(files, version, o);
  const history =
    r.mode === 'full' && !neighbour ? [...ofVersion(), runRatios(resultFile, ratioRows)] : undefined;
  // A quiet run shows the neighbour target from the latest neighbour run of the same version, if there is one.
  const neighbourRun = neighbour ? undefined : ofVersion({ neighbour: true }).at(-1);
  const table = targetsTable(
    evaluateTargets(r.runs, { workloads: r.options.workloads, neighbour }, history, neighbourRun),
  );
  const budget = cpuBudget(r.runs, r.options.workloads, Number(m['nproc']));
  const budgetTable = budget.length === 0 ? '' : cpuBudgetTable(budget);
  const budgetText =
    budgetTable === ''
      ? ''
      : `\n\n**What the rest of the load leaves the relay.** smtp-source, the two smtp-sinks, the latency probe, this harness and the kernel's work charged to no server share the ${String(m['nproc'])} cores with the server under test. Machine CPU (/proc/stat) minus the relay's own, per 1,000 messages in the relay's runs, bounds every ratio: even a relay that used no CPU at all would stop where the rest of the load fills every core. An upper bound: it assumes every core could be kept busy and that the rest costs the same per message at any rate.\n\n${budgetTable.trimEnd()}`;
  const verdict = `**Targets** (what limits each one, and what was tried: [perf.md](perf.md)):\n\n${table.trimEnd()}${budgetText}`;
  process.stdout.write(`${table}\n${budgetTable === '' ? '' : `${budgetTable}\n`}`);
  const ctxReport = {
    verdict,
    command: r.command,
    date: r.date,
    mode: r.mode,
    machine: machineText,
    versions: Object.entries(r.versions)
      .map(([k, v]) => `${k} ${v}`)
      .join(', '),
    resultFile,
    titles,
    notes,
  };
  if (writeJson) {
    mkdirSync(join(repoRoot, 'bench', 'results'), { recursive: true });
    writeFileSync(
      join(repoRoot, resultFile),
      `${JSON.stringify({ ...r, summary, ratios: ratioRows }, null, 2)}\n`,
    );
  }
  const docPath = join(repoRoot, 'docs', 'benchmarks.md');
  mkdirSync(dirname(docPath), { recursive: true });
  const doc = existsSync(docPath) ? readFileSync(docPath, 'utf8') : DOC_INTRO;
  writeFileSync(docPath, replaceSection(doc, markdownSection(summary, ratioRows, ctxReport)));
  writeFileSync(
    join(repoRoot, 'docs', 'bench-relay.svg'),
    svgChart(
      summary,
      r.options.workloads,
      titles,
      `${r.mode} run ${r.date.slice(0, 16).replace('T', ' ')} UTC; median of ${r.options.rounds} round(s)`,
    ),
  );
  log(`wrote ${writeJson ? `${resultFile}, ` : ''}${relative(repoRoot, docPath)}, docs/bench-relay.svg`);
}

async function main(): Promise<number> {
  const parsed = parseOptions(process.argv.slice(2), process.env);
  if (parsed.ok === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  if (!parsed.ok) {
    process.stderr.write(`bench:relay: ${parsed.error}\n\n${USAGE}`);
    return 2;
  }
  const options = parsed.options;
  if (options.render !== undefined) {
    const file = resolve(options.render);
    writeReport(JSON.parse(readFileSync(file, 'utf8')) as ResultsFile, relative(repoRoot, file), false);
    return 0;
  }
  if (process.getuid?.() !== 0 && options.systems.includes('postfix')) {
    process.stderr.write(
      'bench:relay: the Postfix peer must be started as root (postfix -c DIR start); run as root or --systems ceiling,mailroute\n',
    );
    return 2;
  }
  for (const bin of ['/usr/sbin/smtp-source', '/usr/sbin/smtp-sink', '/usr/sbin/postfix']) {
    if (!existsSync(bin)) {
      process.stderr.write(`bench:relay: ${bin} is missing; install Debian's postfix package\n`);
      return 2;
    }
  }

  const tmp = mkdtempSync(join(tmpdir(), 'mailroute-bench-'));
  // Postfix daemons run as the postfix user and must reach their data and queue folders below it.
  chmodSync(tmp, 0o755);
  const procs = new Procs();
  let cleaned = false;
  const cleanup = (): void => {
    if (cleaned) return;
    cleaned = true;
    procs.killAll();
    if (!options.keepTemp) rmSync(tmp, { recursive: true, force: true });
  };
  process.on('exit', cleanup);
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      log(`${sig}: stopping everything`);
      cleanup();
      process.exit(130);
    });
  }
  const total = setTimeout(() => {
    log(`global timeout of ${options.totalTimeoutMs / 1000} s reached: stopping everything`);
    cleanup();
    process.exit(124);
  }, options.totalTimeoutMs);
  total.unref();

  const machine = machineInfo();
  const vers = versions(tmp, options.mailrouteRoot);
  const argv = process.argv.slice(2);
  // TMPDIR decides the file system of both systems' queues, so the command shown with the results names it.
  // So do BENCH_MAILROUTE_ARGS and BENCH_NODE_ARGS: what the relay ran with.
  const env = ['TMPDIR', 'BENCH_MAILROUTE_ARGS', 'BENCH_NODE_ARGS']
    .map((k) => [k, process.env[k] ?? ''] as const)
    .filter(([, v]) => v !== '')
    .map(([k, v]) => `${k}=${/\s/.test(v) ? JSON.stringify(v) : v} `)
    .join('');
  const command = `${env}npm run bench:relay${argv.length > 0 ? ` -- ${argv.join(' ')}` : ''}`;
  log(`${command}\n  machine: ${machine.text}\n  versions: ${JSON.stringify(vers)}\n  temp: ${tmp}`);
  const fsWarning = journalWarning(machine.journal, tmpdir());
  if (fsWarning !== undefined) log(`warning: ${fsWarning}`);

  const plan = schedule(options);
  const runs: RunResult[] = [];
  const mailrouteRoot =
    options.mailrouteRoot !== undefined
      ? resolve(options.mailrouteRoot)
      : options.systems.some((s) => s.startsWith('mailroute') || s === 'floor') && options.snapshot
        ? snapshotSources(tmp)
        : repoRoot;
  const ctx: RunContext = { options, procs, tmp, mailrouteRoot };
  // A quiet machine is one less than 25 % busy, beside the neighbour's one core when there is one.
  const quietBelow = 0.25 + (options.neighbour ? 1 / Math.max(1, availableParallelism()) : 0);
  if (options.neighbour) {
    // One CPU-bound neighbour through every run of both systems (stdout ignored: /dev/null); killed with everything
    // else by cleanup() at the end, on a signal or at the global timeout.
    const yes = procs.spawn('yes', [], { name: 'neighbour' });
    log(`neighbour: yes > /dev/null (pid ${String(yes.child.pid)})`);
  }
  // Discarded warm-up runs: the first runs of a benchmark do more work per message (docs/perf.md, "The first round
  // of a workload is the slowest"); one short run of each system before the first workload keeps that out of the
  // measured rounds. They are kept in the results file with warmup: true.
  const first = plan.find((s) => s.system !== 'ceiling');
  if (first !== undefined && options.warmupMessages > 0) {
    for (const system of ['postfix', 'mailroute'] as const) {
      if (!options.systems.includes(system)) continue;
      log(`warm-up: ${first.wl.id} ${system}, ${options.warmupMessages} messages (not counted)`);
      const settled = await settle(options.settleMs, quietBelow);
      const r: RunResult = {
        ...(await runOne(ctx, first.wl, system, 0, 0, options.warmupMessages)),
        settle: settled,
        warmup: true,
      };
      runs.push(r);
      log(`${fmtRun(r)} (warm-up)`);
    }
  }
  for (const [i, step] of plan.entries()) {
    log(
      `run ${i + 1}/${plan.length}: ${step.wl.id} ${step.system}${step.round > 0 ? ` round ${step.round}` : ''}`,
    );
    const settled = await settle(options.settleMs, quietBelow);
    const r: RunResult = { ...(await runOne(ctx, step.wl, step.system, step.round, i + 1)), settle: settled };
    runs.push(r);
    log(fmtRun(r));
  }

  const date = new Date().toISOString();
  const resultFile = join(
    'bench',
    'results',
    `${date.slice(0, 10)}-${date.slice(11, 13)}${date.slice(14, 16)}-${options.mode}.json`,
  );
  const results: ResultsFile = {
    date,
    mode: options.mode,
    command,
    machine: machine.json,
    machineText: machine.text,
    versions: vers,
    options,
    runs,
  };
  writeReport(results, options.write ? resultFile : undefined);
  cleanup();
  return runs.some((r) => r.error !== null) ? 1 : 0;
}

process.exitCode = await main();
