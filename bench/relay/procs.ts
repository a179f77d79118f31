// Child processes of the benchmark: every one is tracked by pid and killed on exit, timeout or SIGINT.
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';

export interface SpawnOptions {
  stdio?: StdioOptions;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  name: string;
}

export interface Tracked {
  readonly name: string;
  readonly child: ChildProcess;
  /** Resolves with the exit code (or 128 + signal number style -1 when killed by a signal). */
  readonly exited: Promise<number>;
}

export class Procs {
  private readonly live = new Map<number, Tracked>();
  /** Extra cleanups (e.g. `postfix stop`), run synchronously by killAll. */
  private readonly cleanups = new Map<string, () => void>();

  spawn(cmd: string, args: readonly string[], opts: SpawnOptions): Tracked {
    const child = spawn(cmd, args, { stdio: opts.stdio ?? 'ignore', env: opts.env, cwd: opts.cwd });
    const pid = child.pid;
    const exited = new Promise<number>((resolve) => {
      child.once('error', () => resolve(-1));
      child.once('exit', (code) => {
        if (pid !== undefined) this.live.delete(pid);
        resolve(code ?? -1);
      });
    });
    const t: Tracked = { name: opts.name, child, exited };
    if (pid !== undefined) this.live.set(pid, t);
    return t;
  }

  onCleanup(key: string, fn: () => void): void {
    this.cleanups.set(key, fn);
  }

  dropCleanup(key: string): void {
    this.cleanups.delete(key);
  }

  /** SIGTERM, then SIGKILL after graceMs if still alive. */
  async stop(t: Tracked, graceMs = 5000): Promise<number> {
    if (t.child.exitCode !== null || t.child.signalCode !== null) return t.exited;
    t.child.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const killed = new Promise<number>((resolve) => {
      timer = setTimeout(() => {
        t.child.kill('SIGKILL');
        resolve(-1);
      }, graceMs);
    });
    const code = await Promise.race([t.exited, killed]);
    if (timer) clearTimeout(timer);
    await t.exited;
    return code;
  }

  /** Stops every live process spawned with this name. */
  async stopAllNamed(name: string, graceMs = 5000): Promise<void> {
    const mine = [...this.live.values()].filter((t) => t.name === name || t.name.startsWith(`${name}:`));
    await Promise.all(mine.map((t) => this.stop(t, graceMs)));
  }

  /** Synchronous: usable from exit and signal handlers. */
  killAll(): void {
    for (const [key, fn] of this.cleanups) {
      try {
        fn();
      } catch (err) {
        process.stderr.write(`cleanup ${key} failed: ${String(err)}\n`);
      }
    }
    this.cleanups.clear();
    for (const [pid, t] of this.live) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
      this.live.delete(pid);
      process.stderr.write(`killed ${t.name} (pid ${pid})\n`);
    }
  }
}
