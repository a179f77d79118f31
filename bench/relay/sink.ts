// Destinations: Postfix's smtp-sink, run with -v so every RCPT it accepts is logged; counts are taken from that log.
// RecipientCounter is pure (fed chunks of the log); Sink owns the process and the incremental reading.
import { openSync, readSync, closeSync, fstatSync } from 'node:fs';
import type { Procs } from './procs.ts';

/** Probe messages (latency probe) use local parts starting with this, and are not counted as load. */
export const PROBE_LOCAL_PREFIX = 'probe';

const RCPT_RE = /^smtp-sink: RCPT TO:<([^>]*)>/;

/** Counts recipients accepted by smtp-sink from its -v log, fed in arbitrary chunks. */
export class RecipientCounter {
  load = 0;
  probes = 0;
  /** Completed transactions ("." lines), all senders. */
  messages = 0;
  private partial = '';

  feed(chunk: string): void {
    const text = this.partial + chunk;
    const lines = text.split('\n');
    this.partial = lines.pop() ?? '';
    for (const line of lines) this.line(line);
  }

  private line(line: string): void {
    if (line === 'smtp-sink: .') {
      this.messages++;
      return;
    }
    const m = RCPT_RE.exec(line);
    if (!m) return;
    if ((m[1] ?? '').startsWith(PROBE_LOCAL_PREFIX)) this.probes++;
    else this.load++;
  }
}

export class Sink {
  readonly port: number;
  readonly logFile: string;
  readonly counter = new RecipientCounter();
  private fd: number | undefined;
  private offset = 0;
  private readonly buf = Buffer.alloc(1 << 20);

  readonly host: string;

  constructor(port: number, logFile: string, host = '127.0.0.1') {
    this.port = port;
    this.logFile = logFile;
    this.host = host;
  }

  /** Starts `smtp-sink -u nobody -v HOST:PORT 256` with its output in logFile. */
  start(procs: Procs): void {
    const out = openSync(this.logFile, 'a');
    procs.spawn('smtp-sink', ['-u', 'nobody', '-v', `${this.host}:${this.port}`, '256'], {
      stdio: ['ignore', out, out],
      name: `smtp-sink:${this.port}`,
    });
    closeSync(out);
    this.fd = openSync(this.logFile, 'r');
  }

  /** Reads what the sink logged since the last poll; returns the load recipients counted so far. */
  poll(): number {
    if (this.fd === undefined) return this.counter.load;
    for (;;) {
      const size = fstatSync(this.fd).size;
      if (size <= this.offset) break;
      const n = readSync(this.fd, this.buf, 0, Math.min(this.buf.length, size - this.offset), this.offset);
      if (n <= 0) break;
      this.offset += n;
      this.counter.feed(this.buf.toString('latin1', 0, n));
    }
    return this.counter.load;
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}
