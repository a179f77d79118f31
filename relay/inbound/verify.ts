// Recipient verification by SMTP callout (MAIL FROM:<> / RCPT TO:<address>, then QUIT) over a real connection, with
// a cache of positive and negative answers for the MailDomain's cacheTTL. Anything inconclusive (4xx, timeout,
// connection refused, protocol error) is 'unknown' and is not cached, so the next recipient asks again.
import { Socket } from 'node:net';
import type { MailboxFact, ServerRoute } from '../../routing/model.ts';
import type { Verifier } from './rcpt.ts';

export interface CalloutOptions {
  heloName: string;
  timeoutMs?: number;
  now?: () => number;
  maxEntries?: number;
  /** Where to connect for a server (default: its host; the relay passes MX resolution for mx: true). */
  connect?: (server: ServerRoute) => Promise<{ host: string; port: number } | undefined>;
}

/** Maps the reply to RCPT TO onto a fact. */
export function factOfReply(code: number): MailboxFact {
  if (code === 250 || code === 251) return 'exists';
  if (code === 550 || code === 551 || code === 553) return 'absent';
  return 'unknown';
}

/** One callout. Resolves to the RCPT reply code, or undefined when the exchange did not get that far. */
export function callout(
  host: string,
  port: number,
  heloName: string,
  address: string,
  timeoutMs: number,
): Promise<number | undefined> {
  return new Promise((resolve) => {
    const socket = new Socket();
    let buf = '';
    let step = 0;
    let settled = false;
    let rcptCode: number | undefined;
    const done = (code: number | undefined): void => {
      if (settled) return;
      settled = true;
      socket.destroy();
      resolve(code);
    };
    const commands = [`EHLO ${heloName}`, 'MAIL FROM:<>', `RCPT TO:<${address}>`, 'QUIT'];
    const expect = [220, 250, 250];
    socket.setTimeout(timeoutMs, () => done(undefined));
    socket.setNoDelay(true);
    socket.on('error', () => done(rcptCode));
    socket.on('close', () => done(rcptCode));
    socket.on('data', (chunk: Buffer) => {
      buf += chunk.toString('latin1');
      for (;;) {
        // a complete reply: its last line has a space after the code
        const m = /^(?:\d{3}-[^\n]*\n)*(\d{3})(?: [^\n]*)?\r?\n/.exec(buf);
        if (!m?.[1]) {
          if (buf.length > 64 * 1024) done(undefined);
          return;
        }
        buf = buf.slice(m[0].length);
        const code = Number(m[1]);
        if (step === 3) {
          rcptCode = code;
          socket.write(`${commands[3]}\r\n`);
          done(code);
          return;
        }
        if (code !== expect[step]) {
          done(undefined);
          return;
        }
        socket.write(`${commands[step]}\r\n`);
        step++;
      }
    });
    socket.connect(port, host);
  });
}

export function createCalloutVerifier(opts: CalloutOptions): Verifier & { readonly size: number } {
  const now = opts.now ?? Date.now;
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const maxEntries = opts.maxEntries ?? 100_000;
  const cache = new Map<string, { fact: MailboxFact; until: number }>();
  const inflight = new Map<string, Promise<MailboxFact>>();
  const target = opts.connect ?? ((s: ServerRoute) => Promise.resolve({ host: s.host, port: s.port }));
  return {
    get size() {
      return cache.size;
    },
    async check(server, address, cacheTtlMs) {
      const where = await target(server);
      if (where === undefined) return 'unknown';
      const { host, port } = where;
      const key = `${host}:${port}\u0000${address.toLowerCase()}`;
      const hit = cache.get(key);
      if (hit !== undefined) {
        if (hit.until > now()) return hit.fact;
        cache.delete(key);
      }
      const running = inflight.get(key);
      if (running) return running;
      const p = callout(host, port, opts.heloName, address, timeoutMs).then((code) => {
        const fact = code === undefined ? 'unknown' : factOfReply(code);
        if (fact !== 'unknown' && cacheTtlMs > 0) {
          cache.set(key, { fact, until: now() + cacheTtlMs });
          if (cache.size > maxEntries) {
            const oldest = cache.keys().next();
            if (oldest.done !== true) cache.delete(oldest.value);
          }
        }
        return fact;
      });
      inflight.set(key, p);
      try {
        return await p;
      } finally {
        inflight.delete(key);
      }
    },
  };
}
