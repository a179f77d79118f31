// A minimal raw SMTP client over node:net for the latency probe and readiness checks: one command at a time,
// multi-line replies, TCP_NODELAY. Only what the benchmark needs.
import { connect, type Socket } from 'node:net';
import { freePort } from '../../test/support/net.ts';

export interface Reply {
  readonly code: number;
  readonly text: string;
}

/** Parses complete replies off the front of buf; returns them and the unconsumed rest. Pure. */
export function parseReplies(buf: string): { replies: Reply[]; rest: string } {
  const replies: Reply[] = [];
  let lines: string[] = [];
  let start = 0;
  // Where the reply being read began: lines of an incomplete multi-line reply stay in the buffer.
  let replyStart = 0;
  for (;;) {
    const nl = buf.indexOf('\n', start);
    if (nl < 0) break;
    const line = buf.slice(start, nl).replace(/\r$/, '');
    start = nl + 1;
    lines.push(line);
    if (line.length < 4 || line[3] !== '-') {
      replies.push({ code: Number(line.slice(0, 3)), text: lines.join('\n') });
      lines = [];
      replyStart = start;
    }
  }
  return { replies, rest: buf.slice(replyStart) };
}

export class SmtpConnection {
  private readonly socket: Socket;
  private buf = '';
  private readonly ready: Reply[] = [];
  private waiter: ((r: Reply | Error) => void) | undefined;
  private closedError: Error | undefined;

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.setNoDelay(true);
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      this.buf += chunk;
      const { replies, rest } = parseReplies(this.buf);
      this.buf = rest;
      for (const r of replies) this.deliver(r);
    });
    const fail = (err: Error): void => {
      this.closedError ??= err;
      const w = this.waiter;
      this.waiter = undefined;
      w?.(err);
    };
    socket.on('error', fail);
    socket.on('close', () => fail(new Error('connection closed')));
  }

  private deliver(r: Reply): void {
    const w = this.waiter;
    if (w) {
      this.waiter = undefined;
      w(r);
    } else this.ready.push(r);
  }

  static open(port: number, host = '127.0.0.1', timeoutMs = 10_000): Promise<SmtpConnection> {
    return new Promise((resolve, reject) => {
      const s = connect({ port, host });
      const timer = setTimeout(() => {
        s.destroy();
        reject(new Error(`connect ${host}:${port}: timed out`));
      }, timeoutMs);
      s.once('connect', () => {
        clearTimeout(timer);
        resolve(new SmtpConnection(s));
      });
      s.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
  }

  /** The next reply, or rejects after timeoutMs / on close. */
  read(timeoutMs = 60_000): Promise<Reply> {
    const r = this.ready.shift();
    if (r) return Promise.resolve(r);
    if (this.closedError) return Promise.reject(this.closedError);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        reject(new Error(`no SMTP reply within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiter = (x) => {
        clearTimeout(timer);
        if (x instanceof Error) reject(x);
        else resolve(x);
      };
    });
  }

  /** Writes data; resolves when it has been handed to the kernel. */
  write(data: string | Buffer): Promise<void> {
    return new Promise((resolve, reject) => {
      this.socket.write(data, (err) => (err ? reject(err) : resolve()));
    });
  }

  async command(line: string, expect: number, timeoutMs?: number): Promise<Reply> {
    await this.write(`${line}\r\n`);
    const r = await this.read(timeoutMs);
    if (r.code !== expect)
      throw new Error(`${line.split(' ')[0] ?? line}: expected ${expect}, got "${r.text}"`);
    return r;
  }

  close(): void {
    this.socket.destroy();
  }
}

/** Waits until something on port answers 220 (then QUITs), or throws at the deadline. */
export async function waitForSmtp(
  port: number,
  timeoutMs: number,
  alive: () => boolean = () => true,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    if (!alive()) throw new Error(`server for port ${port} exited before answering`);
    try {
      const c = await SmtpConnection.open(port, '127.0.0.1', 2000);
      try {
        const r = await c.read(5000);
        if (r.code === 220) {
          await c.write('QUIT\r\n').catch(() => undefined);
          return;
        }
        last = r.text;
      } finally {
        c.close();
      }
    } catch (err) {
      last = err instanceof Error ? err.message : String(err);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no SMTP greeting on 127.0.0.1:${port} within ${timeoutMs} ms (last: ${last})`);
}

/**
 * n distinct free loopback ports, from below the kernel's ephemeral range (test/support/net.ts): the relay's outgoing
 * connections and every listen(0) take their ports from that range, so a port chosen here cannot be taken by one of
 * them before the sink, Postfix or the relay binds it.
 */
export async function freePorts(n: number): Promise<number[]> {
  const ports: number[] = [];
  while (ports.length < n) {
    const p = await freePort();
    if (ports.includes(p))
      throw new Error(`freePorts: ${n} ports is more than one block of test/support/net.ts`);
    ports.push(p);
  }
  return ports;
}
