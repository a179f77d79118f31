// Running a tool to completion from a test or a benchmark: its exit code and output, never an exception for a
// non-zero exit (the caller asserts on `code`).
import { spawn } from 'node:child_process';

export interface RunResult {
  /** The exit code; 128 when a signal ended it (e.g. the timeout's SIGTERM). */
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  /** Written to the tool's standard input, which is then closed. */
  stdin?: string;
  /** Added to this process's environment. */
  env?: Record<string, string>;
  cwd?: string;
  /** Default 120 s. */
  timeoutMs?: number;
}

export function runProcess(bin: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const p = spawn(bin, args, {
      ...(opts.cwd !== undefined ? { cwd: opts.cwd } : {}),
      env: { ...process.env, ...opts.env },
      stdio: ['pipe', 'pipe', 'pipe'],
      timeout: opts.timeoutMs ?? 120_000,
    });
    let stdout = '';
    let stderr = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    p.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    p.on('error', reject);
    p.on('close', (code, signal) => resolve({ code: code ?? (signal !== null ? 128 : -1), stdout, stderr }));
    // A tool may exit without reading its input (EPIPE): its exit code and output tell what happened.
    p.stdin.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE') reject(err);
    });
    p.stdin.end(opts.stdin ?? '');
  });
}
