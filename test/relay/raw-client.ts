// A raw SMTP client over net.Socket for the tests that must send exact bytes (smuggling, bare LF/CR) and read each
// reply as sent by the server.
import { Socket } from 'node:net';

export class RawSmtp {
  private buf = '';
  private waiters: (() => void)[] = [];
  private closed = false;
  readonly socket: Socket;

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.on('data', (c: Buffer) => {
      this.buf += c.toString('latin1');
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => undefined);
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** `allowHalfOpen`: the client's side stays open after the server's FIN until close() (a client that lingers). */
  static connect(port: number, host = '127.0.0.1', opts: { allowHalfOpen?: boolean } = {}): Promise<RawSmtp> {
    return new Promise((resolve, reject) => {
      const s = new Socket({ allowHalfOpen: opts.allowHalfOpen ?? false });
      s.once('error', reject);
      s.connect(port, host, () => {
        s.removeListener('error', reject);
        resolve(new RawSmtp(s));
      });
    });
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Reads one complete (possibly multi-line) reply; '' when the connection closed first. */
  async reply(timeoutMs = 10_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = /^(?:\d{3}-[^\n]*\n)*\d{3}(?: [^\n]*)?\r?\n/.exec(this.buf);
      if (m) {
        this.buf = this.buf.slice(m[0].length);
        return m[0].trimEnd();
      }
      if (this.closed) return '';
      const left = deadline - Date.now();
      if (left <= 0)
        throw new Error(`no SMTP reply within ${timeoutMs} ms (buffer: ${JSON.stringify(this.buf)})`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  write(data: string | Buffer): void {
    this.socket.write(typeof data === 'string' ? Buffer.from(data, 'latin1') : data);
  }

  async cmd(line: string): Promise<string> {
    this.write(`${line}\r\n`);
    return this.reply();
  }

  /** Greeting, EHLO, MAIL FROM, RCPT TO (each must be 2xx unless allowFail) and DATA (354). */
  async begin(from: string, rcpts: string[]): Promise<string[]> {
    const out = [await this.reply()];
    out.push(await this.cmd('EHLO client.test'));
    out.push(await this.cmd(`MAIL FROM:<${from}>`));
    for (const r of rcpts) out.push(await this.cmd(`RCPT TO:<${r}>`));
    return out;
  }

  close(): void {
    this.socket.destroy();
  }
}

export const code = (reply: string): number => Number(reply.slice(0, 3));
