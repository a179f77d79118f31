// LazyFS for power-loss tests: a FUSE file system (test/lazyfs) that keeps every write in its own page cache until it
// is fsynced, and drops whatever is not fsynced on `lazyfs::clear-cache`, as a power cut drops the page cache.
//
//   lazyfsAvailability(): can this machine run it (/dev/fuse, fusermount3, a cached binary or the tools to build it)
//   lazyfsBinary(): the binary's path; builds it once per source hash (test/lazyfs/ensure.sh, ~/.cache/mailroute)
//   mountLazyFs({ binary, mountPoint, backing, workDir }): mounts mountPoint over backing and resolves once mounted;
//     .powerCut() drops the unsynced data and resolves when LazyFS reports it done; .unmount() unmounts and waits.
import { spawn, type ChildProcess } from 'node:child_process';
import { createReadStream, existsSync, readdirSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { waitFor, withDeadline } from '../support/wait.ts';
import { ROOT, run } from './support.ts';

const ENSURE = join(ROOT, 'test/lazyfs/ensure.sh');

function onPath(cmd: string): boolean {
  return (process.env['PATH'] ?? '').split(':').some((d) => d !== '' && existsSync(join(d, cmd)));
}

/** A LazyFS binary already in the cache (any source hash: the suite rebuilds only through lazyfsBinary()). */
function cachedBinary(): boolean {
  const root = join(process.env['XDG_CACHE_HOME'] ?? join(homedir(), '.cache'), 'mailroute/lazyfs');
  try {
    return readdirSync(root).some((h) => existsSync(join(root, h, 'src/lazyfs/build/lazyfs')));
  } catch {
    return false;
  }
}

export type LazyFsAvailability = { ok: true } | { ok: false; reason: string };

export function lazyfsAvailability(): LazyFsAvailability {
  if (!existsSync('/dev/fuse')) return { ok: false, reason: 'no /dev/fuse on this machine' };
  if (!onPath('fusermount3'))
    return { ok: false, reason: 'fusermount3 missing (apt-get install fuse3 libfuse3-dev)' };
  if (!cachedBinary() && !(onPath('g++') && onPath('cmake')))
    return {
      ok: false,
      reason: 'no LazyFS binary and no g++/cmake to build it (apt-get install g++ cmake libfuse3-dev fuse3)',
    };
  return { ok: true };
}

/** The LazyFS binary, built from test/lazyfs on first use (minutes) and cached by source hash. */
export async function lazyfsBinary(): Promise<string> {
  const { stdout } = await run('bash', [ENSURE], { maxBuffer: 16 * 1024 * 1024 });
  const path = stdout.trim().split('\n').at(-1) ?? '';
  if (!existsSync(path))
    throw new Error(`test/lazyfs/ensure.sh printed ${JSON.stringify(path)}, not a binary`);
  return path;
}

export interface LazyFsMount {
  readonly mountPoint: string;
  /** LazyFS's own log (stdout and stderr). */
  readonly logs: string[];
  /** Drops every write not fsynced yet (a power cut) and resolves once LazyFS reports the cache cleared. */
  powerCut(): Promise<void>;
  unmount(): Promise<void>;
  /** Whether the LazyFS process still runs, or how it ended (a diagnosis for a test that timed out on the mount). */
  state(): string;
}

async function mounted(mountPoint: string): Promise<boolean> {
  const table = await readFile('/proc/self/mounts', 'utf8');
  return table.split('\n').some((l) => l.split(' ')[1] === mountPoint && l.includes('fuse.lazyfs'));
}

export async function mountLazyFs(opts: {
  binary: string;
  mountPoint: string;
  backing: string;
  /** Where the config and the control FIFOs go. */
  workDir: string;
  /** LazyFS preallocates its cache; unsynced data beyond it is an error. Default 256 MiB. */
  cacheMiB?: number;
}): Promise<LazyFsMount> {
  await mkdir(opts.mountPoint, { recursive: true });
  await mkdir(opts.backing, { recursive: true });
  await mkdir(opts.workDir, { recursive: true });
  const faults = join(opts.workDir, 'faults.fifo');
  const done = join(opts.workDir, 'done.fifo');
  // LazyFS ignores --config-path when the path contains "-o" in any case (main.cpp: strcasestr(path, "-o")) and
  // falls back to config/default.toml; a temp folder such as mailroute-rel-power-o6pXdl hit it one run in ~30.
  // The config therefore lives in a folder whose name has no hyphen at all.
  const configDir = await mkdtemp(join(tmpdir(), 'lazyfscfg'));
  const config = join(configDir, 'lazyfs.toml');
  if (/-o/i.test(config)) throw new Error(`lazyfs would ignore --config-path ${config} (it contains "-o")`);
  await writeFile(
    config,
    [
      '[faults]',
      `fifo_path="${faults}"`,
      `fifo_path_completed="${done}"`,
      '[cache]',
      'apply_eviction=false',
      '[cache.simple]',
      `custom_size="${opts.cacheMiB ?? 256}mb"`,
      'blocks_per_page=1',
      '[filesystem]',
      'log_all_operations=false',
      'logfile=""',
      '',
    ].join('\n'),
  );
  const logs: string[] = [];
  const proc: ChildProcess = spawn(
    opts.binary,
    [
      opts.mountPoint,
      '--config-path',
      config,
      '-o',
      'allow_other',
      '-o',
      'modules=subdir',
      '-o',
      `subdir=${opts.backing}`,
      '-f',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  proc.stdout?.on('data', (c: Buffer) => logs.push(c.toString()));
  proc.stderr?.on('data', (c: Buffer) => logs.push(c.toString()));
  let ended = '';
  const exited = new Promise<number | null>((r) =>
    proc.on('exit', (code, signal) => {
      ended = signal !== null ? `killed by ${signal}` : `exited with code ${String(code)}`;
      r(code);
    }),
  );
  let gone = false;
  void exited.then(() => (gone = true));
  await waitFor(
    async () => {
      if (gone) throw new Error(`lazyfs exited before it mounted:\n${logs.join('')}`);
      return mounted(opts.mountPoint);
    },
    { timeoutMs: 60_000, intervalMs: 50, what: `lazyfs mounted on ${opts.mountPoint}` },
  ).catch((err: unknown) => {
    proc.kill('SIGKILL');
    throw err;
  });

  return {
    mountPoint: opts.mountPoint,
    logs,
    state: () => (gone ? `lazyfs ${ended}; its log: ${logs.join('').slice(-2000)}` : 'lazyfs running'),
    async powerCut() {
      // Listen for the completion notice before asking (LazyFS writes it to its own FIFO once the cache is clear).
      const notices = createReadStream(done, { encoding: 'utf8' });
      let text = '';
      const finished = new Promise<void>((resolve, reject) => {
        notices.on('data', (c) => {
          text += String(c);
          if (text.includes('finished::clear-cache')) resolve();
        });
        notices.on('error', reject);
      });
      try {
        await writeFile(faults, 'lazyfs::clear-cache\n');
        await withDeadline(30_000, finished, 'lazyfs clear-cache');
      } finally {
        notices.destroy();
      }
    },
    async unmount() {
      // a LazyFS that exited on its own (it crashed) leaves its mount behind, dead (ENOTCONN on every access): it is
      // unmounted as well, and reported with its log once that is done
      const diedEarlier = gone;
      await run('fusermount3', ['-u', opts.mountPoint]).catch(async () => {
        await run('fusermount3', ['-uz', opts.mountPoint]).catch(() => undefined);
      });
      await waitFor(() => gone, { timeoutMs: 20_000, what: 'lazyfs to exit after unmount' }).catch(
        (err: unknown) => {
          proc.kill('SIGKILL');
          throw err;
        },
      );
      await rm(configDir, { recursive: true, force: true });
      if (diedEarlier)
        throw new Error(
          `lazyfs on ${opts.mountPoint} exited (${String(await exited)}) before it was unmounted:\n${logs.join('').slice(-4000)}`,
        );
    },
  };
}
