// Postfix smtp-sink processes as the destinations of the delivery benchmarks that run the engine without inbound SMTP
// (bench/delivery.ts, recovery-drain.ts, queue-recovery.ts), and the host facts each of them reports.
//
// Exports: startSinks(ports), hostFacts().
import { spawn } from 'node:child_process';
import { cpus, loadavg } from 'node:os';
import { accepts } from '../test/support/net.ts';
import { waitFor } from '../test/support/wait.ts';

/** `smtp-sink 127.0.0.1:PORT 256` on each port (as nobody when root), resolved once each one accepts connections. */
export async function startSinks(ports: readonly number[]): Promise<{ stop(): void }> {
  const procs = ports.map((p) =>
    spawn(
      '/usr/sbin/smtp-sink',
      [...(process.getuid?.() === 0 ? ['-u', 'nobody'] : []), `127.0.0.1:${p}`, '256'],
      {
        stdio: 'ignore',
      },
    ),
  );
  const stop = (): void => {
    for (const p of procs) p.kill('SIGTERM');
  };
  try {
    for (const port of ports) {
      await waitFor(() => accepts(port), { timeoutMs: 10_000, what: `smtp-sink on port ${port}` });
    }
  } catch (err) {
    stop();
    throw err;
  }
  return { stop };
}

/** Load average, CPUs and the Node version, for a benchmark's report. */
export function hostFacts(): { loadavg: number[]; cpus: number; node: string } {
  return {
    loadavg: loadavg().map((x) => Math.round(x * 10) / 10),
    cpus: cpus().length,
    node: process.version,
  };
}
