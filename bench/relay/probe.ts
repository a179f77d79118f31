// The latency probe: one SMTP connection sending a message every intervalMs during the load, timing each from the
// write of the end-of-data "\r\n.\r\n" to the 250 reply. smtp-source reports no per-message latency.
import { performance } from 'node:perf_hooks';
import { SmtpConnection } from './smtp-client.ts';
import { PROBE_LOCAL_PREFIX } from './sink.ts';
import { BENCH_DOMAIN, SENDER } from './workloads.ts';

/** Headers and a payload of about sizeBytes in 78-byte lines, without the final CRLF. Pure. */
export function probeMessage(n: number, sizeBytes: number): string {
  const headers = [
    `From: <${SENDER}>`,
    `To: <${PROBE_LOCAL_PREFIX}${n}@${BENCH_DOMAIN}>`,
    `Subject: latency probe ${n}`,
    `Message-ID: <probe-${n}-${Date.now()}@bench.localhost>`,
    `Date: ${new Date().toUTCString()}`,
  ];
  const line = 'x'.repeat(76);
  const lines = Math.max(1, Math.ceil(sizeBytes / (line.length + 2)));
  return `${headers.join('\r\n')}\r\n\r\n${Array.from({ length: lines }, () => line).join('\r\n')}`;
}

export interface ProbeResult {
  readonly samplesMs: number[];
  readonly errors: string[];
}

export class LatencyProbe {
  private stopped = false;
  private readonly port: number;
  private readonly sizeBytes: number;
  private readonly intervalMs: number;
  private readonly max: number;

  constructor(port: number, sizeBytes: number, intervalMs: number, max: number) {
    this.port = port;
    this.sizeBytes = sizeBytes;
    this.intervalMs = intervalMs;
    this.max = max;
  }

  stop(): void {
    this.stopped = true;
  }

  async run(): Promise<ProbeResult> {
    const samplesMs: number[] = [];
    const errors: string[] = [];
    if (this.max === 0) return { samplesMs, errors };
    let c: SmtpConnection | undefined;
    try {
      c = await SmtpConnection.open(this.port);
      const greeting = await c.read(10_000);
      if (greeting.code !== 220) throw new Error(`greeting: ${greeting.text}`);
      await c.command('EHLO probe.bench.localhost', 250);
      for (let n = 1; n <= this.max && !this.stopped; n++) {
        await c.command(`MAIL FROM:<${SENDER}>`, 250);
        await c.command(`RCPT TO:<${PROBE_LOCAL_PREFIX}${n}@${BENCH_DOMAIN}>`, 250);
        await c.command('DATA', 354);
        await c.write(probeMessage(n, this.sizeBytes));
        const t0 = performance.now();
        await c.write('\r\n.\r\n');
        const r = await c.read(60_000);
        const ms = performance.now() - t0;
        if (r.code === 250) samplesMs.push(ms);
        else errors.push(`end of DATA: ${r.text}`);
        if (this.intervalMs > 0 && !this.stopped)
          await new Promise((res) => setTimeout(res, this.intervalMs));
      }
      await c.write('QUIT\r\n').catch(() => undefined);
    } catch (err) {
      errors.push(err instanceof Error ? err.message : String(err));
    } finally {
      c?.close();
    }
    return { samplesMs, errors };
  }
}
