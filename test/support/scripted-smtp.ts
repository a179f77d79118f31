// A raw SMTP server on 127.0.0.1 for client tests that need a server to misbehave exactly: each connection runs a
// script that reads the client's command lines (and DATA) and writes whatever bytes it likes, split as it likes,
// closes or goes silent. Scripts wait for what the client sends, never for time.
//
// Exports: ScriptedSession (what a script gets), ScriptedServer, scriptedServers(cleanups) (a test file's servers:
//   scripted(script) starts one, takeErrors() what their scripts threw), expectLine(session, want).
import { createServer, type Server, type Socket } from 'node:net';

export interface ScriptedSession {
  /** The next line the client sent, without its line end; undefined when the client closed first. */
  line(): Promise<string | undefined>;
  /** The bytes after DATA up to and including "\r\n.\r\n" (still dot-stuffed); undefined when closed first. */
  data(): Promise<Buffer | undefined>;
  /** What the client sent that no line()/data() took yet (did it wait for a reply?). */
  pending(): string;
  /** Writes the text as is (UTF-8). */
  write(text: string | Buffer): Promise<void>;
  /** Writes one reply line, or several joined by CRLF, with the final CRLF. */
  reply(...lines: string[]): Promise<void>;
  /** The usual greeting and EHLO: 220, then the EHLO reply with these extensions. */
  hello(extensions?: string[]): Promise<void>;
  /** Stops reading (the client's writes back up), and reads again. */
  pause(): void;
  resume(): void;
  /** Closes our side (FIN). */
  end(): void;
  /** Resets the connection. */
  destroy(): void;
  /** Resolves when the client's side is closed. */
  readonly closed: Promise<void>;
  /** Every line read so far. */
  readonly lines: string[];
}

export interface ScriptedServer {
  readonly port: number;
  /** Connections accepted so far. */
  readonly connections: number;
  readonly sessions: ScriptedSession[];
  /** Errors thrown by scripts (a test checks it is empty). */
  readonly errors: unknown[];
  close(): Promise<void>;
}

function session(socket: Socket): ScriptedSession {
  let buf = Buffer.alloc(0);
  let ended = false;
  let wake: (() => void) | undefined;
  const lines: string[] = [];
  socket.on('data', (c: Buffer) => {
    buf = Buffer.concat([buf, c]);
    wake?.();
  });
  const closed = new Promise<void>((resolve) => {
    socket.on('close', () => {
      ended = true;
      wake?.();
      resolve();
    });
  });
  socket.on('error', () => undefined);
  /** Waits until take() finds something in the buffer (or the client is gone). */
  const until = async <T>(take: () => T | undefined): Promise<T | undefined> => {
    for (;;) {
      const got = take();
      if (got !== undefined) return got;
      if (ended) return undefined;
      await new Promise<void>((resolve) => (wake = resolve));
      wake = undefined;
    }
  };
  const write = (text: string | Buffer): Promise<void> =>
    new Promise((resolve) => {
      if (socket.destroyed) return resolve();
      socket.write(text, () => resolve());
    });
  return {
    line: () =>
      until(() => {
        const i = buf.indexOf('\n');
        if (i === -1) return undefined;
        const line = buf.subarray(0, i).toString('utf8').replace(/\r$/, '');
        buf = buf.subarray(i + 1);
        lines.push(line);
        return line;
      }),
    data: () =>
      until(() => {
        const i = buf.indexOf('\r\n.\r\n');
        if (i === -1) return undefined;
        const data = buf.subarray(0, i + 5);
        buf = buf.subarray(i + 5);
        return data;
      }),
    pending: () => buf.toString('utf8'),
    write,
    reply: (...replyLines: string[]) => write(`${replyLines.join('\r\n')}\r\n`),
    async hello(extensions = ['PIPELINING', '8BITMIME', 'SMTPUTF8']) {
      await write('220 scripted.test ESMTP\r\n');
      const ehlo = await this.line();
      if (ehlo === undefined) return;
      if (!ehlo.startsWith('EHLO ')) throw new Error(`expected EHLO, got ${ehlo}`);
      const all = ['scripted.test', ...extensions];
      await write(all.map((e, i) => `250${i === all.length - 1 ? ' ' : '-'}${e}`).join('\r\n') + '\r\n');
    },
    pause: () => socket.pause(),
    resume: () => socket.resume(),
    end: () => socket.end(),
    destroy: () => socket.destroy(),
    closed,
    lines,
  };
}

/** The client's next line, which must be want (or match it); throws naming what came instead. */
export async function expectLine(s: ScriptedSession, want: string | RegExp): Promise<string> {
  const line = await s.line();
  if (line === undefined || (typeof want === 'string' ? line !== want : !want.test(line))) {
    throw new Error(`expected ${String(want)}, got ${JSON.stringify(line)}`);
  }
  return line;
}

/** Listens on 127.0.0.1 (a free port) and runs script for each connection. */
async function startScripted(
  script: (s: ScriptedSession, n: number) => Promise<void>,
): Promise<ScriptedServer> {
  const sessions: ScriptedSession[] = [];
  const errors: unknown[] = [];
  const sockets = new Set<Socket>();
  let connections = 0;
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.setNoDelay(true);
    const s = session(socket);
    sessions.push(s);
    connections++;
    script(s, connections).catch((err: unknown) => {
      errors.push(err);
      socket.destroy();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    get connections() {
      return connections;
    },
    sessions,
    errors,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/**
 * The scripted servers of one test file: `scripted(script)` starts one and registers its close with the file's
 * cleanups; `takeErrors()` (in afterEach, after the cleanups) returns what the scripts of the servers started since
 * the last call threw, so that an unexpected command fails the test that ran it.
 */
export function scriptedServers(cleanups: (() => unknown)[]): {
  scripted: (script: (s: ScriptedSession, n: number) => Promise<void>) => Promise<ScriptedServer>;
  takeErrors: () => unknown[];
} {
  const started: ScriptedServer[] = [];
  return {
    scripted: async (script) => {
      const server = await startScripted(script);
      started.push(server);
      cleanups.push(() => server.close());
      return server;
    },
    takeErrors: () => started.splice(0).flatMap((s) => s.errors),
  };
}
