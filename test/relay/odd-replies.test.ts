// Replies that used to end in the wrong outcome, through the real engine, a real spool and the relay's own SMTP client
// against smtp-server peers and raw servers on 127.0.0.1 (the pattern of delivery.test.ts):
//   - one transaction, one recipient greylisted at RCPT TO (450) and the end of data refused for the other (552): the
//     552 is the accepted recipient's only. Before, both got it: the greylisted one bounced, with a DSN, although its
//     own answer asked for a retry. And the reverse: a 550 at RCPT TO is not deferred by a 451 at the end of data.
//   - a server that greets with a 554 banner ("too many connections", common under load): a failure of that host, not
//     a refusal of the message. Before, the leg failed for good (a DSN) and a second MX host was never tried; now the
//     next MX host takes it at once, and with none the leg is deferred, the banner in its reply, and delivered later.
//     The same for a 421 at EHLO (a rate limit after the banner): it was the destination's answer, and the leg waited
//     for its next retry while the second MX host was free.
import { connect, createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { Leg } from '../../routing/model.ts';
import type { DeliveryOptions } from '../../relay/delivery/engine.ts';
import { localServer, twoMx } from '../support/delivery.ts';
import { startAttemptHarness, type AttemptHarness } from '../support/peer-engine.ts';
import { startSmtpPeer, type SmtpPeer } from '../support/smtp-peer.ts';
import { waitFor } from '../support/wait.ts';
import { deliveryCount } from './relay-harness.ts';

const MESSAGE =
  'From: Alice <alice@sender.example>\r\nTo: a@example.com, b@example.com\r\nSubject: odd replies\r\n' +
  'Message-ID: <odd@sender.example>\r\n\r\nHello.\r\n';
const BANNER = '554 5.7.1 too many connections from your IP, try later';

interface Harness extends AttemptHarness {
  counter(result: string): Promise<number>;
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function harness(overrides: Partial<DeliveryOptions> = {}): Promise<Harness> {
  // the test's recipients, not the DSNs' (to alice@sender.example)
  const h = await startAttemptHarness({
    name: 'odd-replies',
    message: Buffer.from(MESSAGE),
    keep: (r) => r.endsWith('@example.com'),
    cleanups,
    overrides,
  });
  return { ...h, counter: (result) => deliveryCount(h.metrics, result) };
}

async function peer(name: string): Promise<SmtpPeer> {
  const p = await startSmtpPeer(name);
  cleanups.push(() => p.close());
  return p;
}

const drained = async (h: Harness): Promise<void> => {
  await waitFor(async () => (await h.spool.list()).length === 0 && h.engine.stats().messages === 0, {
    what: 'the spool to drain',
  });
};

/** The Final-Recipient and Status lines of a DSN's delivery-status part. */
function dsnRecipients(raw: Buffer): string[] {
  const text = raw.toString();
  const part = text.slice(text.indexOf('Content-Type: message/delivery-status'));
  return [...part.matchAll(/^Final-Recipient: rfc822; (\S+)\r\n(?:.*\r\n)*?Status: (\S+)\r$/gm)].map(
    (m) => `${m[1]} ${m[2]}`,
  );
}

/** How greeter refuses a session: the BANNER and a close, or a 220 and then EHLO_421 (and a close). */
type Refusal = 'banner' | 'ehlo';
const EHLO_421 = '421 4.7.0 mx1.example.com Try again later, closing connection';

/**
 * A server on host:port (0: a free one) that refuses the connections refuse(n) picks (n from 1) as `refusal` says,
 * and passes the others through to passTo on 127.0.0.1 (a real SMTP server behind it). connections: how many it took.
 */
async function greeter(
  host: string,
  port: number,
  refuse: (n: number) => boolean,
  passTo?: number,
  refusal: Refusal = 'banner',
): Promise<{ readonly port: number; readonly connections: number }> {
  let connections = 0;
  const sockets = new Set<Socket>();
  const track = (s: Socket): void => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
  };
  const server: Server = createServer((socket) => {
    connections++;
    track(socket);
    if (refuse(connections) || passTo === undefined) {
      if (refusal === 'banner') {
        socket.end(`${BANNER}\r\n`);
        return;
      }
      socket.write('220 mx1.example.com ESMTP\r\n');
      let seen = '';
      socket.on('data', (d: Buffer) => {
        seen += d.toString('latin1');
        if (/^EHLO .*\r\n/.test(seen)) socket.end(`${EHLO_421}\r\n`);
      });
      return;
    }
    const upstream = connect(passTo, '127.0.0.1');
    track(upstream);
    socket.pipe(upstream).pipe(socket);
    upstream.on('close', () => socket.destroy());
    socket.on('close', () => upstream.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  );
  const bound = (server.address() as { port: number }).port;
  return {
    port: bound,
    get connections() {
      return connections;
    },
  };
}

const record = (recipient: string, server: Leg['server']): Leg => ({
  server,
  recipient,
  role: 'primary',
  bounces: 'Notify',
});

describe('a refusal after RCPT TO is for the recipients the server accepted', () => {
  it('b greylisted (450) and the end of data refused for a (552): b deferred and delivered later, a failed with a DSN naming a alone', async () => {
    const h = await harness();
    const dest = await peer('dest');
    let greylisted = 0;
    dest.behaviour.rcpt = (address) =>
      address === 'b@example.com' && greylisted++ === 0
        ? { code: 450, message: '4.7.1 <b@example.com>: greylisted, try again later' }
        : undefined;
    dest.behaviour.data = (msg) =>
      msg.rcptTo.includes('a@example.com')
        ? { code: 552, message: '5.2.2 <a@example.com>: mailbox full' }
        : undefined;
    const server = localServer('dest', dest.port, 2);
    await h.accept([record('a@example.com', server), record('b@example.com', server)]);

    await drained(h);
    // a: the 552 of its own transaction; b: its 450, then delivered on the next try, alone
    expect(h.attempts.map((a) => `${a.recipient} ${a.result} ${a.reply}`)).toEqual([
      'a@example.com failed 552 5.2.2 <a@example.com>: mailbox full',
      'b@example.com deferred 450 4.7.1 <b@example.com>: greylisted, try again later',
      expect.stringMatching(/^b@example\.com delivered 250 /),
    ]);
    expect(dest.messages.map((m) => m.rcptTo)).toEqual([['b@example.com']]);
    // one DSN, for a only
    const dsns = h.senderBox.for('alice@sender.example');
    expect(dsns).toHaveLength(1);
    expect(dsnRecipients(dsns[0]!.raw)).toEqual(['a@example.com 5.2.2']);
    expect(await h.counter('failed')).toBe(1);
  });

  it('a refused at RCPT (550) and the end of data deferred for b (451): a failed at once with a DSN, b deferred and delivered later', async () => {
    const h = await harness();
    const dest = await peer('dest');
    let deferred = 0;
    dest.behaviour.rcpt = (address) =>
      address === 'a@example.com' ? { code: 550, message: '5.1.1 <a@example.com>: no such user' } : undefined;
    dest.behaviour.data = () =>
      deferred++ === 0 ? { code: 451, message: '4.3.0 queue file write error, try later' } : undefined;
    const server = localServer('dest', dest.port, 2);
    await h.accept([record('a@example.com', server), record('b@example.com', server)]);

    await drained(h);
    expect(h.attempts.map((a) => `${a.recipient} ${a.result} ${a.reply}`)).toEqual([
      'a@example.com failed 550 5.1.1 <a@example.com>: no such user',
      'b@example.com deferred 451 4.3.0 queue file write error, try later',
      expect.stringMatching(/^b@example\.com delivered 250 /),
    ]);
    expect(dest.messages.map((m) => m.rcptTo)).toEqual([['b@example.com']]);
    const dsns = h.senderBox.for('alice@sender.example');
    expect(dsns).toHaveLength(1);
    expect(dsnRecipients(dsns[0]!.raw)).toEqual(['a@example.com 5.1.1']);
  });
});

describe('a server that greets with a 5xx banner is a failure of that host', () => {
  it('the first connection greeted with 554, the next normally: deferred with the banner in its reply, then delivered; no DSN', async () => {
    const h = await harness();
    const dest = await peer('dest');
    const front = await greeter('127.0.0.1', 0, (n) => n === 1, dest.port);
    await h.accept([record('a@example.com', localServer('dest', front.port, 2))]);

    await drained(h);
    expect(h.attempts[0]).toMatchObject({
      recipient: 'a@example.com',
      result: 'deferred',
      reply: `EGREETING: Session refused at the greeting: ${BANNER}`,
    });
    expect(h.attempts.at(-1)).toMatchObject({ recipient: 'a@example.com', result: 'delivered' });
    expect(dest.for('a@example.com')).toHaveLength(1);
    expect(front.connections).toBeGreaterThanOrEqual(2);
    expect(await h.counter('failed')).toBe(0);
    expect(h.senderBox.messages).toEqual([]);
  });

  it.each([
    ['greeting with 554', 'banner'],
    ['answering EHLO with 421', 'ehlo'],
  ] as const)(
    'with mx: true, the first MX host %s: delivered through the second at once, no deferral',
    async (_, how) => {
      // two MX hosts on one port, as MX hosts are: the first (preference 10) on 127.0.0.2, the second on 127.0.0.1
      const dest = await peer('dest');
      const first = await greeter('127.0.0.2', dest.port, () => true, undefined, how);
      const h = await harness({
        resolver: twoMx('127.0.0.2'),
      });
      const mx = { ...localServer('mxdomain', dest.port, 2), host: 'example.com', mx: true };
      await h.accept([record('a@example.com', mx)]);

      await drained(h);
      expect(h.attempts).toEqual([
        {
          recipient: 'a@example.com',
          result: 'delivered',
          reply: expect.stringMatching(/^250 /) as unknown,
          host: `mx2.example.com:${dest.port}`,
        },
      ]);
      expect(first.connections).toBe(1);
      expect(dest.for('a@example.com')).toHaveLength(1);
      expect(h.senderBox.messages).toEqual([]);
    },
  );
});
