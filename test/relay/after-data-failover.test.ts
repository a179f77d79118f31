// The outbound client's failures that used to duplicate or lose mail, through the real engine, a real spool and the
// relay's own SMTP client against a raw server and an smtp-server peer on 127.0.0.1 (the pattern of
// odd-replies.test.ts):
//   - the first MX host took the whole message, final dot included, then dropped the connection or never answered:
//     it may have queued the message. Before, the message went at once to the next MX host as well (a duplicate, and
//     nothing said so); now the leg is deferred, its reply saying the message may have been delivered, and retried
//     on the schedule. A connection lost before the final dot still goes to the next MX host at once (the server
//     cannot have taken the message).
//   - opportunistic TLS to a server whose STARTTLS handshake fails: delivered in plain text in the same attempt.
//     Before, every attempt failed the handshake, the address was suspended, and the queue lifetime bounced the mail.
import { createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { Leg, ServerRoute } from '../../routing/model.ts';
import type { DeliveryOptions } from '../../relay/delivery/engine.ts';
import { localServer, twoMx } from '../support/delivery.ts';
import { startAttemptHarness, type AttemptHarness } from '../support/peer-engine.ts';
import { expectLine, scriptedServers } from '../support/scripted-smtp.ts';
import { startSmtpPeer, type SmtpPeer } from '../support/smtp-peer.ts';
import { waitFor } from '../support/wait.ts';

type Harness = AttemptHarness;

const cleanups: (() => unknown)[] = [];
const servers = scriptedServers(cleanups);
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  expect(servers.takeErrors()).toEqual([]);
});

const MESSAGE = Buffer.from(
  'From: Alice <alice@sender.example>\r\nTo: a@example.com\r\nSubject: once\r\nMessage-ID: <once@sender.example>\r\n\r\nHello.\r\n',
);
const MAY_BE_DELIVERED = 'after the end of data: the message may have been delivered';

/** The engine on a real spool, recording the attempts of a@example.com. */
async function harness(overrides: Partial<DeliveryOptions> = {}): Promise<Harness> {
  return startAttemptHarness({
    name: 'after-data',
    message: MESSAGE,
    keep: (r) => r === 'a@example.com',
    cleanups,
    overrides,
  });
}

const drained = (h: Harness): Promise<boolean> =>
  waitFor(async () => (await h.spool.list()).length === 0 && h.engine.stats().messages === 0, {
    what: 'the spool to drain',
  });

async function peer(name: string): Promise<SmtpPeer> {
  const p = await startSmtpPeer(name);
  cleanups.push(() => p.close());
  return p;
}

const record = (server: ServerRoute): Leg => ({
  server,
  recipient: 'a@example.com',
  role: 'primary',
  bounces: 'Notify',
});

/**
 * A raw SMTP server on 127.0.0.2:port, the first MX host: each connection is greeted, its EHLO, MAIL, RCPT and DATA
 * accepted (one at a time, no PIPELINING), then `afterData(n, socket, body)` decides (n from 1) once the body ends
 * with the final dot; `midBody(n)` true breaks the connection instead as soon as the body starts arriving.
 */
async function firstMx(
  port: number,
  afterData: (n: number, socket: Socket) => void,
  midBody: (n: number) => boolean = () => false,
): Promise<{ readonly connections: number; readonly bodies: number }> {
  let connections = 0;
  let bodies = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    const n = ++connections;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    let buf = '';
    let inData = false;
    socket.write('220 mx1.example.com ESMTP\r\n');
    socket.on('data', (chunk: Buffer) => {
      buf += chunk.toString('latin1');
      if (inData) {
        if (midBody(n)) {
          socket.destroy();
          return;
        }
        if (!buf.includes('\r\n.\r\n')) return;
        inData = false;
        buf = '';
        bodies++;
        afterData(n, socket);
        return;
      }
      for (let i = buf.indexOf('\r\n'); i !== -1 && !inData; i = buf.indexOf('\r\n')) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 2);
        if (line.startsWith('EHLO')) socket.write('250-mx1.example.com\r\n250 8BITMIME\r\n');
        else if (line === 'DATA') {
          inData = true;
          socket.write('354 go ahead\r\n');
        } else if (line === 'QUIT') socket.end('221 bye\r\n');
        else socket.write('250 ok\r\n');
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.2', () => resolve());
  });
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  );
  return {
    get connections() {
      return connections;
    },
    get bodies() {
      return bodies;
    },
  };
}

describe('no reply to the final dot: the message is never given to the next MX host in the same attempt', () => {
  it.each([
    ['the connection dropped after the final dot', {}, 'ECONNECTION: Connection closed unexpectedly'],
    [
      'no final reply within finalReplyMs',
      { timeouts: { connectionMs: 2000, greetingMs: 2000, socketMs: 300, finalReplyMs: 600 } },
      'ETIMEDOUT: Timeout',
    ],
  ] as const)(
    '%s: deferred, saying it may have been delivered; then taken by the first host',
    async (_, over, error) => {
      const second = await peer('mx2');
      const first = await firstMx(second.port, (n, socket) => {
        if (n > 1) socket.write('250 2.0.0 queued this time\r\n');
        else if (error.startsWith('ECONNECTION')) socket.destroy();
        // else silent: the final reply times out
      });
      const h = await harness({ resolver: twoMx('127.0.0.2'), ...over });
      const mx = { ...localServer('mxdomain', second.port, 2), host: 'example.com', mx: true };
      await h.accept([record(mx)]);

      await drained(h);
      expect(h.attempts).toEqual([
        {
          recipient: 'a@example.com',
          result: 'deferred',
          reply: `${error} ${MAY_BE_DELIVERED}`,
          host: `mx1.example.com:${second.port}`,
        },
        {
          recipient: 'a@example.com',
          result: 'delivered',
          reply: '250 2.0.0 queued this time',
          host: `mx1.example.com:${second.port}`,
        },
      ]);
      // the second MX host never got it: no duplicate
      expect(second.messages).toEqual([]);
      expect(first.bodies).toBe(2);
    },
  );

  it('the connection dropped before the final dot: the next MX host takes it at once (the first cannot have it)', async () => {
    const second = await peer('mx2');
    const first = await firstMx(
      second.port,
      () => undefined,
      () => true,
    );
    const h = await harness({ resolver: twoMx('127.0.0.2') });
    const mx = { ...localServer('mxdomain', second.port, 2), host: 'example.com', mx: true };
    // large enough that the body is still being written when the server breaks the connection
    const big = Buffer.concat([MESSAGE, Buffer.alloc(16 * 1024 * 1024, 'y'), Buffer.from('\r\n')]);
    await h.accept([record(mx)], big);

    await drained(h);
    expect(h.attempts).toEqual([
      {
        recipient: 'a@example.com',
        result: 'delivered',
        reply: expect.stringMatching(/^250 /) as unknown,
        host: `mx2.example.com:${second.port}`,
      },
    ]);
    expect(second.for('a@example.com')).toHaveLength(1);
    expect(first.connections).toBe(1);
    expect(first.bodies).toBe(0);
  });
});

describe('opportunistic TLS whose STARTTLS handshake fails', () => {
  it('delivered in plain text in the same attempt: no deferral, no suspension', async () => {
    const server = await servers.scripted(async (s) => {
      await s.hello(['STARTTLS', '8BITMIME']);
      const next = await s.line();
      if (next === 'STARTTLS') {
        // an old server whose TLS the client refuses: here, bytes that are no TLS record at all
        await s.reply('220 2.0.0 ready');
        await waitFor(() => s.pending().length > 0, { what: 'the ClientHello' });
        await s.write('no TLS here\r\n');
        await s.closed;
        return;
      }
      if (next === undefined || !next.startsWith('MAIL FROM:')) throw new Error(`unexpected ${String(next)}`);
      await s.reply('250 ok');
      await expectLine(s, /^RCPT TO:/);
      await s.reply('250 ok');
      await expectLine(s, 'DATA');
      await s.reply('354 go ahead');
      await s.data();
      await s.reply('250 2.0.0 queued in plain text');
      await s.closed;
    });
    const h = await harness();
    await h.accept([record({ ...localServer('old', server.port, 2), tls: 'Opportunistic' })]);

    await drained(h);
    expect(h.attempts).toEqual([
      {
        recipient: 'a@example.com',
        result: 'delivered',
        reply: '250 2.0.0 queued in plain text',
        host: `127.0.0.1:${server.port}`,
      },
    ]);
    expect(server.connections).toBe(2);
  });
});
