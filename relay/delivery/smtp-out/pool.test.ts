// The relay's SMTP client (smtp-out) against real servers on 127.0.0.1: scripted raw servers that misbehave exactly
// (replies in pieces or together, multi-line replies, 421, closes, silence, refusals, no PIPELINING, no STARTTLS,
// the AUTH mechanisms) and the project's smtp-server peer (TLS modes, AUTH, refusals, SMTPUTF8). Each case checks
// what every recipient is told, what the server saw, and how many connections it took. No sleeps: scripts wait for
// what the client sends, tests for what the server saw.
import { createHmac } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { SmtpTimeouts } from '../../../lib/smtp-client.ts';
import { expectLine, scriptedServers, type ScriptedSession } from '../../../test/support/scripted-smtp.ts';
import {
  startSmtpPeer,
  type PeerBehaviour,
  type PeerOptions,
  type SmtpPeer,
} from '../../../test/support/smtp-peer.ts';
import { fakeWallClock, restoreWallClock, stepWallClock } from '../../../test/support/clock.ts';
import { makeSelfSigned, type SelfSigned } from '../../../test/support/tls.ts';
import { waitFor } from '../../../test/support/wait.ts';
import type { MessageBody } from '../../spool/types.ts';
import type { AttemptReply } from '../outcome.ts';
import type { SendRequest, ServerTarget, ServerTransport } from '../transport.ts';
import { stuffWhole } from './data-encoder.ts';
import {
  connectionSettings,
  envelopeAddresses,
  smtpOutTransportFactory,
  type SmtpOutRequest,
  type SmtpOutTransport,
} from './pool.ts';
import { MAX_RESPONSE_SIZE } from './reply.ts';

const FAST: SmtpTimeouts = { connectionMs: 3000, greetingMs: 3000, socketMs: 3000 };
const BODY = Buffer.from('Subject: t\r\n\r\nhello\r\n.a dot line\r\nlast\r\n');
const WIRE = Buffer.concat(Object.values(stuffWhole(BODY))).toString('latin1');

const cleanups: (() => unknown)[] = [];
const servers = scriptedServers(cleanups);
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  // a script that threw (an unexpected command) fails the test that ran it
  expect(servers.takeErrors()).toEqual([]);
});

function client(
  port: number,
  target: Partial<ServerTarget> = {},
  timeouts: Partial<SmtpTimeouts> = FAST,
): SmtpOutTransport {
  const t = smtpOutTransportFactory({ hostname: 'relay.test', timeouts })({
    host: '127.0.0.1',
    port,
    tls: 'None',
    maxConnections: 1,
    ...target,
  });
  cleanups.push(() => t.close());
  return t;
}

const scripted = servers.scripted;

async function peer(behaviour: PeerBehaviour = {}, options: PeerOptions = {}): Promise<SmtpPeer> {
  const p = await startSmtpPeer('peer', behaviour, undefined, options);
  cleanups.push(() => p.close());
  return p;
}

const req = (to: string[] = ['b@x.example'], raw: MessageBody = BODY, from = 'a@x.example'): SendRequest => ({
  from,
  to,
  raw,
  size: Buffer.isBuffer(raw) ? raw.length : raw.size - (raw.start ?? 0),
});

/** The replies of one send as plain data. */
async function send(t: ServerTransport, r: SendRequest = req()): Promise<Record<string, AttemptReply>> {
  return Object.fromEntries(await t.send(r));
}

/**
 * The server side of a pipelined transaction to one recipient up to the body: MAIL, RCPT and DATA read, accepted in
 * one write, and the body taken; no final reply (each test decides it). Returns the body (undefined: closed).
 */
async function takeBody(s: ScriptedSession): Promise<Buffer | undefined> {
  for (const l of [/^MAIL/, /^RCPT/, 'DATA']) await expectLine(s, l);
  await s.reply('250 ok', '250 ok', '354 go ahead');
  return s.data();
}

/**
 * A pipelined transaction on the server side: MAIL, the RCPTs, DATA read first, then their replies in one write, the
 * body, and the final reply. Returns the body as received (still dot-stuffed).
 */
async function transaction(
  s: ScriptedSession,
  rcptReplies: string[] = ['250 2.1.5 ok'],
  final = '250 2.0.0 queued',
): Promise<string> {
  await expectLine(s, /^MAIL FROM:</);
  for (let i = 0; i < rcptReplies.length; i++) await expectLine(s, /^RCPT TO:</);
  await expectLine(s, 'DATA');
  await s.reply('250 2.1.0 ok', ...rcptReplies, '354 go ahead');
  const data = await s.data();
  if (data === undefined) throw new Error('closed during DATA');
  await s.reply(final);
  return data.toString('latin1');
}

const smtp = (code: number, text: string): AttemptReply => ({ kind: 'smtp', code, text });
/** A failure without a reply after the final dot was written: the server may have the message (no other host gets it). */
const afterDot = (text: string): AttemptReply => ({
  kind: 'network',
  text: `${text} after the end of data: the message may have been delivered`,
  afterEndOfData: true,
});

/** Lines from a socket, for the one test that speaks TLS on the server side itself; stop() lets go of the socket. */
function lineReader(socket: Socket): { line(): Promise<string>; stop(): void } {
  let buf = '';
  let wake: (() => void) | undefined;
  const onData = (c: Buffer): void => {
    buf += c.toString('latin1');
    wake?.();
  };
  socket.on('data', onData);
  return {
    async line() {
      for (;;) {
        const i = buf.indexOf('\r\n');
        if (i !== -1) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 2);
          return line;
        }
        await new Promise<void>((resolve) => (wake = resolve));
      }
    },
    stop: () => socket.removeListener('data', onData),
  };
}

describe('replies however they arrive', () => {
  it('a greeting in single bytes, EHLO in pieces, the envelope in one write and its replies in one, a multi-line final reply', async () => {
    let batch = '';
    const server = await scripted(async (s) => {
      for (const c of '220 scripted.test ESMTP\r\n') await s.write(c);
      await expectLine(s, 'EHLO relay.test');
      await s.write('250-scripted.test\r\n250-PIPE');
      await s.write('LINING\r\n250 SI');
      await s.write('ZE 1000\r\n');
      await expectLine(s, `MAIL FROM:<a@x.example> SIZE=${BODY.length}`);
      // PIPELINING: the rest of the envelope and DATA came with MAIL FROM, before any reply
      batch = s.pending();
      for (const l of ['RCPT TO:<b@x.example>', 'RCPT TO:<c@x.example>', 'DATA']) await expectLine(s, l);
      await s.reply('250 2.1.0 ok', '250 2.1.5 ok', '250 2.1.5 ok', '354 go ahead');
      expect((await s.data())?.toString('latin1')).toBe(WIRE);
      await s.reply('250-2.0.0 queued', '250 2.0.0 as X');
    });
    const final = smtp(250, '250-2.0.0 queued\n250 2.0.0 as X');
    expect(await send(client(server.port), req(['b@x.example', 'c@x.example']))).toEqual({
      'b@x.example': final,
      'c@x.example': final,
    });
    expect(batch).toBe('RCPT TO:<b@x.example>\r\nRCPT TO:<c@x.example>\r\nDATA\r\n');
  });

  it('too long a reply ends the connection (EPROTOCOL), nothing is sent', async () => {
    const server = await scripted(async (s) => {
      await s.write(`220-${'x'.repeat(MAX_RESPONSE_SIZE + 16)}`);
      await s.closed;
    });
    expect(await send(client(server.port))).toEqual({
      'b@x.example': { kind: 'network', text: 'EPROTOCOL: Server response exceeds maximum allowed size' },
    });
    expect(server.sessions[0]?.lines).toEqual([]);
  });
});

describe('without PIPELINING', () => {
  it('one command at a time; a refused envelope sends no DATA, then RSET, and the connection is used again', async () => {
    const server = await scripted(async (s) => {
      await s.hello(['8BITMIME']);
      await expectLine(s, 'MAIL FROM:<a@x.example>');
      expect(s.pending()).toBe('');
      await s.reply('250 2.1.0 ok');
      await expectLine(s, 'RCPT TO:<b@x.example>');
      expect(s.pending()).toBe('');
      await s.reply('550 5.1.1 no such user');
      await expectLine(s, 'RSET');
      await s.reply('250 2.0.0 reset');
      // the second message, on the same connection; its sender is refused: no RCPT TO at all
      await expectLine(s, 'MAIL FROM:<a@x.example>');
      await s.reply('553 5.7.1 sender refused');
      await expectLine(s, 'RSET');
      await s.reply('250 2.0.0 reset');
      await expectLine(s, 'MAIL FROM:<a@x.example>');
      await s.reply('250 2.1.0 ok');
      await expectLine(s, 'RCPT TO:<b@x.example>');
      await s.reply('250 2.1.5 ok');
      await expectLine(s, 'DATA');
      expect(s.pending()).toBe('');
      await s.reply('354 go ahead');
      expect((await s.data())?.toString('latin1')).toBe(WIRE);
      await s.reply('250 2.0.0 queued');
    });
    const t = client(server.port);
    expect(await send(t)).toEqual({ 'b@x.example': smtp(550, '550 5.1.1 no such user') });
    expect(await send(t)).toEqual({ 'b@x.example': smtp(553, '553 5.7.1 sender refused') });
    expect(await send(t)).toEqual({ 'b@x.example': smtp(250, '250 2.0.0 queued') });
    expect(server.connections).toBe(1);
  });
});

describe('refused recipients', () => {
  it('one refused among accepted ones gets its own refusal, the others the final reply (smtp-server)', async () => {
    const p = await peer({
      rcpt: (a) => (a === 'no@x.example' ? { code: 550, message: '5.1.1 no such user' } : undefined),
    });
    const got = await send(client(p.port), req(['a@x.example', 'no@x.example', 'c@x.example']));
    expect(got['no@x.example']).toEqual(smtp(550, '550 5.1.1 no such user'));
    expect(got['a@x.example']).toMatchObject({ kind: 'smtp', code: 250 });
    expect(got['c@x.example']).toMatchObject({ kind: 'smtp', code: 250 });
    expect(p.messages.map((m) => m.rcptTo)).toEqual([['a@x.example', 'c@x.example']]);
  });

  it('all refused: each its own refusal, no message (smtp-server)', async () => {
    const p = await peer({
      rcpt: (a) =>
        a === 'later@x.example' ? { code: 451, message: '4.3.0 later' } : { code: 550, message: '5.1.1 no' },
    });
    const t = client(p.port);
    expect(await send(t, req(['later@x.example', 'no@x.example']))).toEqual({
      'later@x.example': smtp(451, '451 4.3.0 later'),
      'no@x.example': smtp(550, '550 5.1.1 no'),
    });
    expect(p.messages).toEqual([]);
    // the session was reset and is used again
    p.behaviour.rcpt = undefined;
    expect(await send(t)).toMatchObject({ 'b@x.example': { kind: 'smtp', code: 250 } });
    expect(p.stats.connections).toBe(1);
  });

  it('all refused but DATA answered 354 anyway: the empty message is ended with a dot, the session kept', async () => {
    const server = await scripted(async (s) => {
      await s.hello(['PIPELINING']);
      for (const l of [/^MAIL/, /^RCPT/, 'DATA']) await expectLine(s, l);
      await s.reply('250 ok', '550 5.1.1 no', '354 go ahead');
      await expectLine(s, '.');
      await s.reply('554 5.5.1 no valid recipients');
      await expectLine(s, 'RSET');
      await s.reply('250 reset');
      await transaction(s);
    });
    const t = client(server.port);
    expect(await send(t)).toEqual({ 'b@x.example': smtp(550, '550 5.1.1 no') });
    expect(await send(t)).toEqual({ 'b@x.example': smtp(250, '250 2.0.0 queued') });
    expect(server.connections).toBe(1);
  });

  it('the sender refused but DATA answered 354 anyway: the connection is dropped, no byte of the message sent', async () => {
    const server = await scripted(async (s) => {
      await s.hello(['PIPELINING']);
      for (const l of [/^MAIL/, /^RCPT/, 'DATA']) await expectLine(s, l);
      await s.reply('550 5.7.1 sender refused', '250 ok', '354 go ahead');
      await s.closed;
    });
    expect(await send(client(server.port))).toEqual({ 'b@x.example': smtp(550, '550 5.7.1 sender refused') });
    await server.sessions[0]?.closed;
    expect(server.sessions[0]?.pending()).toBe('');
    expect(server.connections).toBe(1);
  });
});

describe('a refusal after RCPT TO is for the accepted recipients only: each refused one keeps its own reply', () => {
  // Postfix applies the reply to DATA and to the end of data to the recipients the server accepted. Before, every
  // recipient got it: a 450 greylisted recipient was bounced by another's 552, a 550 unknown one deferred by a 451.
  const ab = ['a@x.example', 'b@x.example'];

  it('PIPELINING: a 552 at the end of data does not bounce the recipient greylisted at RCPT (450), nor a 451 defer one refused (550)', async () => {
    const server = await scripted(async (s) => {
      await s.hello(['PIPELINING']);
      await transaction(
        s,
        ['250 2.1.5 ok', '450 4.7.1 <b@x.example>: greylisted'],
        '552 5.2.2 <a@x.example>: mailbox full',
      );
      await expectLine(s, 'RSET');
      await s.reply('250 2.0.0 reset');
      await transaction(s, ['250 2.1.5 ok', '550 5.1.1 <b@x.example>: no such user'], '451 4.3.0 try later');
      await expectLine(s, 'RSET');
      await s.reply('250 2.0.0 reset');
    });
    const t = client(server.port);
    expect(await send(t, req(ab))).toEqual({
      'a@x.example': smtp(552, '552 5.2.2 <a@x.example>: mailbox full'),
      'b@x.example': smtp(450, '450 4.7.1 <b@x.example>: greylisted'),
    });
    expect(await send(t, req(ab))).toEqual({
      'a@x.example': smtp(451, '451 4.3.0 try later'),
      'b@x.example': smtp(550, '550 5.1.1 <b@x.example>: no such user'),
    });
    expect(server.connections).toBe(1);
  });

  it('PIPELINING: DATA refused after one recipient was accepted: that recipient gets the refusal, the refused one its own', async () => {
    const server = await scripted(async (s) => {
      await s.hello(['PIPELINING']);
      for (const l of [/^MAIL/, /^RCPT/, /^RCPT/, 'DATA']) await expectLine(s, l);
      await s.reply('250 ok', '250 2.1.5 ok', '450 4.7.1 greylisted', '554 5.7.1 no data for you');
      await expectLine(s, 'RSET');
      await s.reply('250 2.0.0 reset');
    });
    expect(await send(client(server.port), req(ab))).toEqual({
      'a@x.example': smtp(554, '554 5.7.1 no data for you'),
      'b@x.example': smtp(450, '450 4.7.1 greylisted'),
    });
  });

  it('without PIPELINING: the same for a refused end of data and a refused DATA', async () => {
    const server = await scripted(async (s) => {
      await s.hello(['8BITMIME']);
      const envelope = async (rcpt: string[]): Promise<void> => {
        await expectLine(s, 'MAIL FROM:<a@x.example>');
        await s.reply('250 2.1.0 ok');
        for (const r of rcpt) {
          await expectLine(s, /^RCPT TO:</);
          expect(s.pending()).toBe('');
          await s.reply(r);
        }
        await expectLine(s, 'DATA');
      };
      await envelope(['250 2.1.5 ok', '450 4.7.1 greylisted']);
      await s.reply('354 go ahead');
      expect((await s.data())?.toString('latin1')).toBe(WIRE);
      await s.reply('552 5.2.2 <a@x.example>: mailbox full');
      await expectLine(s, 'RSET');
      await s.reply('250 2.0.0 reset');
      await envelope(['250 2.1.5 ok', '550 5.1.1 no such user']);
      await s.reply('451 4.3.0 try later');
      await expectLine(s, 'RSET');
      await s.reply('250 2.0.0 reset');
    });
    const t = client(server.port);
    expect(await send(t, req(ab))).toEqual({
      'a@x.example': smtp(552, '552 5.2.2 <a@x.example>: mailbox full'),
      'b@x.example': smtp(450, '450 4.7.1 greylisted'),
    });
    expect(await send(t, req(ab))).toEqual({
      'a@x.example': smtp(451, '451 4.3.0 try later'),
      'b@x.example': smtp(550, '550 5.1.1 no such user'),
    });
    expect(server.connections).toBe(1);
  });

  it('the connection lost after the body: the accepted recipient gets the failure, the refused one its refusal', async () => {
    const server = await scripted(async (s) => {
      await s.hello(['PIPELINING']);
      for (const l of [/^MAIL/, /^RCPT/, /^RCPT/, 'DATA']) await expectLine(s, l);
      await s.reply('250 ok', '550 5.1.1 no such user', '250 2.1.5 ok', '354 go ahead');
      await s.data();
      s.destroy();
    });
    expect(await send(client(server.port), req(ab))).toEqual({
      'a@x.example': smtp(550, '550 5.1.1 no such user'),
      'b@x.example': afterDot('ECONNECTION: Connection closed unexpectedly'),
    });
  });

  it('the sender refused: its refusal for everyone (the RCPT TO replies after it say nothing)', async () => {
    const server = await scripted(async (s) => {
      await s.hello(['PIPELINING']);
      for (const l of [/^MAIL/, /^RCPT/, /^RCPT/, 'DATA']) await expectLine(s, l);
      await s.reply(
        '451 4.3.0 sender check failed',
        '503 5.5.1 no MAIL',
        '503 5.5.1 no MAIL',
        '503 5.5.1 no MAIL',
      );
      await expectLine(s, 'RSET');
      await s.reply('250 2.0.0 reset');
    });
    expect(await send(client(server.port), req(ab))).toEqual({
      'a@x.example': smtp(451, '451 4.3.0 sender check failed'),
      'b@x.example': smtp(451, '451 4.3.0 sender check failed'),
    });
  });
});

describe('421, closes and silence', () => {
  it.each([
    ['554 5.7.1 too many connections from your IP, try later', 'Session refused at the greeting'],
    ['421 4.7.0 busy, closing', 'Session refused at the greeting'],
    ['554-5.7.1 listed at\r\n554 5.7.1 a blocklist', 'Session refused at the greeting'],
    // a 2xx that is not a greeting is no delivery
    ['250 ok', 'Invalid greeting'],
  ])(
    'a greeting of %j: a network failure of this host with its reply in the text (the next host is tried), nothing sent',
    async (greeting, why) => {
      const server = await scripted(async (s) => {
        await s.write(`${greeting}\r\n`);
        await s.closed;
      });
      expect(await send(client(server.port))).toEqual({
        'b@x.example': { kind: 'network', text: `EGREETING: ${why}: ${greeting.replace('\r\n', '\n')}` },
      });
      expect(server.sessions[0]?.lines).toEqual([]);
      expect(server.connections).toBe(1);
    },
  );

  it('421 after the greeting (at EHLO): a network failure of this host, as a 421 banner (the next host is tried), not tried again here', async () => {
    const server = await scripted(async (s) => {
      await s.reply('220 hello');
      await expectLine(s, /^EHLO /);
      await s.reply('421 4.3.2 shutting down');
      await s.closed;
    });
    expect(await send(client(server.port))).toEqual({
      'b@x.example': { kind: 'network', text: 'EGREETING: Session refused at EHLO: 421 4.3.2 shutting down' },
    });
    expect(server.connections).toBe(1);
  });

  it.each(['Opportunistic', 'Required'] as const)(
    '421 to STARTTLS (tls %s): a network failure of this host, as a 421 at EHLO (the next host is tried), not tried again here',
    async (tls) => {
      const server = await scripted(async (s) => {
        await s.hello(['PIPELINING', 'STARTTLS']);
        await expectLine(s, 'STARTTLS');
        await s.reply('421 4.7.0 TLS not available now, closing connection');
        await s.closed;
      });
      expect(await send(client(server.port, { tls }))).toEqual({
        'b@x.example': {
          kind: 'network',
          text: 'EGREETING: Session refused at STARTTLS: 421 4.7.0 TLS not available now, closing connection',
        },
      });
      expect(server.sessions[0]?.lines).toEqual(['EHLO relay.test', 'STARTTLS']);
      expect(server.connections).toBe(1);
    },
  );

  it('EHLO refused, then HELO refused for now (4xx): a network failure of this host; a 5xx to HELO stays a refusal', async () => {
    const helo = (answer: string) => async (s: ScriptedSession) => {
      await s.reply('220 hello');
      await expectLine(s, /^EHLO /);
      await s.reply('502 5.5.2 no EHLO here');
      await expectLine(s, /^HELO /);
      await s.reply(answer);
      await s.closed;
    };
    const soft = await scripted(helo('450 4.7.1 try again later'));
    expect(await send(client(soft.port))).toEqual({
      'b@x.example': {
        kind: 'network',
        text: 'EGREETING: Session refused at HELO: 450 4.7.1 try again later',
      },
    });
    const hard = await scripted(helo('550 5.7.1 go away'));
    expect(await send(client(hard.port))).toEqual({ 'b@x.example': smtp(550, '550 5.7.1 go away') });
  });

  it('421 at MAIL FROM on a fresh connection: the 421 reply, not tried again', async () => {
    const server = await scripted(async (s) => {
      await s.hello(['PIPELINING']);
      for (const l of [/^MAIL/, /^RCPT/, 'DATA']) await expectLine(s, l);
      await s.reply('421 4.3.2 busy');
      await s.closed;
    });
    expect(await send(client(server.port))).toEqual({ 'b@x.example': smtp(421, '421 4.3.2 busy') });
    expect(server.connections).toBe(1);
  });

  it('421 at RCPT TO on a reused connection, before a byte of the message: sent on a fresh connection', async () => {
    const bodies: string[] = [];
    const server = await scripted(async (s, n) => {
      await s.hello(['PIPELINING']);
      if (n === 1) {
        bodies.push(await transaction(s));
        for (const l of [/^MAIL/, /^RCPT/, 'DATA']) await expectLine(s, l);
        await s.reply('250 2.1.0 ok', '421 4.7.0 closing');
        s.end();
        return;
      }
      bodies.push(await transaction(s));
    });
    const t = client(server.port);
    expect(await send(t)).toEqual({ 'b@x.example': smtp(250, '250 2.0.0 queued') });
    expect(await send(t)).toEqual({ 'b@x.example': smtp(250, '250 2.0.0 queued') });
    expect(bodies).toEqual([WIRE, WIRE]);
    expect(server.connections).toBe(2);
  });

  it('closed before the greeting: tried once more on a fresh connection, which delivers', async () => {
    const server = await scripted(async (s, n) => {
      if (n === 1) return s.destroy();
      await s.hello(['PIPELINING']);
      await transaction(s);
    });
    expect(await send(client(server.port))).toEqual({ 'b@x.example': smtp(250, '250 2.0.0 queued') });
    expect(server.connections).toBe(2);
  });

  it('closing the pool while a send waits to be tried again answers it with its failure', async () => {
    const server = await scripted((s) => Promise.resolve(s.destroy()));
    const t = smtpOutTransportFactory({ hostname: 'relay.test', timeouts: FAST, requeueDelayMs: 600_000 })({
      host: '127.0.0.1',
      port: server.port,
      tls: 'None',
      maxConnections: 1,
    });
    cleanups.push(() => t.close());
    const sent = send(t);
    await waitFor(() => server.connections === 1, { what: 'the first connection' });
    await server.sessions[0]?.closed;
    t.close();
    expect(await sent).toEqual({
      'b@x.example': { kind: 'network', text: 'ECONNECTION: Connection closed unexpectedly' },
    });
    expect(server.connections).toBe(1);
  });

  it('closed before the greeting twice: the failure, after two connections', async () => {
    const server = await scripted((s) => Promise.resolve(s.destroy()));
    expect(await send(client(server.port))).toEqual({
      'b@x.example': { kind: 'network', text: 'ECONNECTION: Connection closed unexpectedly' },
    });
    expect(server.connections).toBe(2);
  });

  it('a server that closes leaving a failure reply unterminated: that reply (as a greeting: refused at the greeting)', async () => {
    const server = await scripted(async (s, n) => {
      if (n === 1) {
        await s.write('554 5.7.1 no');
        return s.end();
      }
      await s.hello(['PIPELINING']);
      for (const l of [/^MAIL/, /^RCPT/, 'DATA']) await expectLine(s, l);
      await s.write('421 4.3.2 no');
      s.end();
    });
    const t = client(server.port);
    expect(await send(t)).toEqual({
      'b@x.example': { kind: 'network', text: 'EGREETING: Session refused at the greeting: 554 5.7.1 no' },
    });
    expect(await send(t)).toEqual({ 'b@x.example': smtp(421, '421 4.3.2 no') });
    expect(server.connections).toBe(2);
  });

  it('no greeting: the greeting timeout', async () => {
    const server = await scripted((s) => s.closed);
    expect(await send(client(server.port, {}, { ...FAST, greetingMs: 200 }))).toEqual({
      'b@x.example': { kind: 'network', text: 'ETIMEDOUT: Greeting never received' },
    });
    expect(server.connections).toBe(1);
  });

  it('no reply after the body: the socket timeout, and the message is not sent again', async () => {
    const server = await scripted(async (s) => {
      await s.hello(['PIPELINING']);
      await takeBody(s);
      await s.closed;
    });
    // finalReplyMs 0: the final reply waits socketMs, as any reply (the wait is the next test's)
    expect(await send(client(server.port, {}, { ...FAST, socketMs: 300, finalReplyMs: 0 }))).toEqual({
      'b@x.example': afterDot('ETIMEDOUT: Timeout'),
    });
    expect(server.connections).toBe(1);
  });

  it('a final reply slower than the inactivity limit but within finalReplyMs (RFC 5321: 10 minutes): delivered once, and the limit is back for the next transaction', async () => {
    // Before, the inactivity limit (5 minutes by default) applied to the final reply too: a server still delivering
    // got the message again at the next attempt.
    let sessions = 0;
    const server = await scripted(async (s) => {
      const first = ++sessions === 1;
      await s.hello(['PIPELINING']);
      if (first) {
        await takeBody(s);
        // the server delivering: slower than socketMs (the delay is the server's behaviour, not a synchronization)
        await new Promise((r) => setTimeout(r, 900));
        await s.reply('250 2.0.0 queued after a while');
      }
      // the next transaction (and the pool's one retry of it on a fresh connection): never answered
      await expectLine(s, /^MAIL/);
      await s.closed;
    });
    const t = client(server.port, {}, { ...FAST, socketMs: 300, finalReplyMs: 5000 });
    expect(await send(t)).toEqual({ 'b@x.example': smtp(250, '250 2.0.0 queued after a while') });
    const started = performance.now();
    expect(await send(t)).toEqual({ 'b@x.example': { kind: 'network', text: 'ETIMEDOUT: Timeout' } });
    // the silent MAIL timed out on the inactivity limit (twice: the retry on a fresh connection), not on finalReplyMs
    expect(performance.now() - started).toBeLessThan(2500);
    expect(server.connections).toBe(2);
  });

  it('no final reply within finalReplyMs: the timeout, measured from the final dot', async () => {
    const server = await scripted(async (s) => {
      await s.hello(['PIPELINING']);
      await takeBody(s);
      await s.closed;
    });
    const started = performance.now();
    expect(await send(client(server.port, {}, { ...FAST, socketMs: 200, finalReplyMs: 700 }))).toEqual({
      'b@x.example': afterDot('ETIMEDOUT: Timeout'),
    });
    const took = performance.now() - started;
    expect(took).toBeGreaterThanOrEqual(650);
    expect(took).toBeLessThan(3000);
    expect(server.connections).toBe(1);
  });

  it('a reused connection closed after the body arrived: not sent again', async () => {
    const server = await scripted(async (s) => {
      await s.hello(['PIPELINING']);
      await transaction(s);
      await takeBody(s);
      s.destroy();
    });
    const t = client(server.port);
    expect(await send(t)).toEqual({ 'b@x.example': smtp(250, '250 2.0.0 queued') });
    expect((await send(t))['b@x.example']).toEqual({
      kind: 'network',
      text: expect.stringMatching(
        /^E(CONNECTION|SOCKET): .* after the end of data: the message may have been delivered$/,
      ) as unknown,
      afterEndOfData: true,
    });
    expect(server.connections).toBe(1);
  });

  it('an idle connection ended by a 421, or by a reply nobody asked for, is dropped; the next send opens another', async () => {
    const server = await scripted(async (s, n) => {
      await s.hello(['PIPELINING']);
      await transaction(s);
      if (n === 1) await s.reply('421 4.4.2 idle too long');
      if (n === 2) await s.reply('250 surprise');
      if (n < 3) await s.closed;
      else await transaction(s);
    });
    const t = client(server.port);
    for (let n = 1; n <= 3; n++) {
      expect(await send(t)).toEqual({ 'b@x.example': smtp(250, '250 2.0.0 queued') });
      // the client closed it (not the server): then the next send cannot have gone to it
      if (n < 3) await server.sessions[n - 1]?.closed;
    }
    expect(server.connections).toBe(3);
  });

  it('an idle connection the server closed: the next send goes on a new one without failing', async () => {
    const server = await scripted(async (s) => {
      await s.hello(['PIPELINING']);
      await transaction(s);
      s.end();
    });
    const t = client(server.port);
    expect(await send(t)).toEqual({ 'b@x.example': smtp(250, '250 2.0.0 queued') });
    await server.sessions[0]?.closed;
    expect(await send(t)).toEqual({ 'b@x.example': smtp(250, '250 2.0.0 queued') });
    expect(server.connections).toBe(2);
  });
});

describe('the envelope', () => {
  it('SIZE= when offered; a message over the limit is not sent but refused for good, 552 5.3.4 (and the session reset)', async () => {
    const server = await scripted(async (s) => {
      await s.hello(['PIPELINING', 'SIZE 100']);
      await expectLine(s, `MAIL FROM:<> SIZE=${BODY.length}`);
      for (const l of [/^RCPT/, 'DATA']) await expectLine(s, l);
      await s.reply('250 ok', '250 ok', '354 go ahead');
      await s.data();
      await s.reply('250 2.0.0 queued');
      await expectLine(s, 'RSET');
      await s.reply('250 reset');
      await s.closed;
    });
    const t = client(server.port);
    expect(await send(t, req(['b@x.example'], BODY, ''))).toEqual({
      'b@x.example': smtp(250, '250 2.0.0 queued'),
    });
    const big = Buffer.alloc(101, 0x61);
    expect(await send(t, req(['b@x.example'], big))).toEqual({
      'b@x.example': smtp(552, '552 5.3.4 message size 101 exceeds size limit 100 of server 127.0.0.1'),
    });
    await waitFor(() => server.sessions[0]?.lines.includes('RSET'), { what: 'RSET' });
  });

  it('SMTPUTF8 when an address needs it and the server offers it; an ASCII envelope without it', async () => {
    const mails: string[] = [];
    const rcpts: string[] = [];
    const serve = (extensions: string[]) => async (s: ScriptedSession) => {
      await s.hello(extensions);
      mails.push(await expectLine(s, /^MAIL/));
      rcpts.push(await expectLine(s, /^RCPT/));
      await expectLine(s, 'DATA');
      await s.reply('250 ok', '250 ok', '354 go ahead');
      await s.data();
      await s.reply('250 2.0.0 queued');
    };
    const utf8 = await scripted(serve(['PIPELINING', 'SMTPUTF8']));
    const plain = await scripted(serve(['PIPELINING']));
    // the IDN domain of a recipient goes in A-labels, and needs no SMTPUTF8 then; a local part that is not ASCII does
    expect(await send(client(utf8.port), req(['b@bücher.example'], BODY, 'jörg@x.example'))).toEqual({
      'b@bücher.example': smtp(250, '250 2.0.0 queued'),
    });
    expect(await send(client(plain.port), req(['b@bücher.example'], BODY, 'a@bücher.example'))).toEqual({
      'b@bücher.example': smtp(250, '250 2.0.0 queued'),
    });
    expect(mails).toEqual(['MAIL FROM:<jörg@x.example> SMTPUTF8', 'MAIL FROM:<a@xn--bcher-kva.example>']);
    expect(rcpts).toEqual(['RCPT TO:<b@xn--bcher-kva.example>', 'RCPT TO:<b@xn--bcher-kva.example>']);
  });

  it('a server without SMTPUTF8 is never sent a non-ASCII address: 553 5.6.7 for it, the rest delivered', async () => {
    // smtp-server without SMTPUTF8 in its EHLO reply still takes raw UTF-8 addresses (as many servers do, storing the
    // mail under whatever the name becomes): what it receives is what was sent
    const p = await peer({}, { hideSmtpUtf8: true });
    const required = (a: string): AttemptReply =>
      smtp(553, `553 5.6.7 SMTPUTF8 is required for <${a}>, but was not offered by host 127.0.0.1`);
    // a non-ASCII sender: no recipient can be sent the message
    expect(await send(client(p.port), req(['b@x.example', 'c@x.example'], BODY, 'jörg@x.example'))).toEqual({
      'b@x.example': required('jörg@x.example'),
      'c@x.example': required('jörg@x.example'),
    });
    // only non-ASCII recipients: none is sent
    expect(await send(client(p.port), req(['ü@x.example'], BODY))).toEqual({
      'ü@x.example': required('ü@x.example'),
    });
    // mixed: the ASCII recipients get the message, in a transaction without SMTPUTF8
    const mixed = await send(client(p.port), req(['ü@x.example', 'b@x.example', 'ö@bücher.example'], BODY));
    expect(mixed['b@x.example']).toMatchObject({ kind: 'smtp', code: 250 });
    expect(mixed['ü@x.example']).toEqual(required('ü@x.example'));
    expect(mixed['ö@bücher.example']).toEqual(required('ö@bücher.example'));
    expect(p.messages.map((m) => [m.mailFrom, m.rcptTo])).toEqual([['a@x.example', ['b@x.example']]]);
  });

  it('SMTPUTF8 to smtp-server: the sender arrives as sent', async () => {
    const p = await peer();
    const got = await send(client(p.port), req(['ü@x.example'], BODY, 'jörg@x.example'));
    expect(got['ü@x.example']).toMatchObject({ kind: 'smtp', code: 250 });
    expect(p.messages.map((m) => [m.mailFrom, m.rcptTo])).toEqual([['jörg@x.example', ['ü@x.example']]]);
  });

  it('an envelope nodemailer would refuse is answered without connecting', async () => {
    const server = await scripted((s) => s.closed);
    expect(await send(client(server.port), req(['']))).toEqual({
      '': { kind: 'network', text: 'EENVELOPE: No recipients defined' },
    });
    expect(server.connections).toBe(0);
  });
});

describe("the caller's ESMTP parameters", () => {
  const params = (
    to: string[],
    rcpt: [string, string[]][],
    mail: string[] | undefined = ['X-ORIGIN=0mx0qz1k20001a7f@relay-0.example'],
  ): SmtpOutRequest => ({
    ...req(to),
    ...(mail !== undefined ? { mailParams: mail } : {}),
    rcptParams: new Map(rcpt),
  });

  it("on MAIL FROM after the client's own, and on each recipient's own RCPT TO, however its address was shaped", async () => {
    let envelope: string[] = [];
    const server = await scripted(async (s) => {
      await s.hello(['PIPELINING', 'SMTPUTF8', 'SIZE 100000']);
      envelope = [await expectLine(s, /^MAIL FROM:/)];
      for (let i = 0; i < 6; i++) envelope.push(await expectLine(s, /^RCPT TO:/));
      await expectLine(s, 'DATA');
      await s.reply('250 ok', '250 ok', '550 5.1.1 no Bob', '250 ok', '250 ok', '250 ok', '250 ok', '354 go');
      await s.data();
      await s.reply('250 2.0.0 queued');
    });
    const to = [
      'plain@x.example',
      'Bob@Example.COM',
      'b@BÜCHER.example',
      'jörg@bücher.example',
      'none@x.example',
      'c@xn--bcher-kva.example',
    ];
    const got = await send(
      client(server.port),
      params(to, [
        ['plain@x.example', ['X-LEGS=primary']],
        ['Bob@Example.COM', ['X-LEGS=copy']],
        ['b@BÜCHER.example', ['X-LEGS=primary,copy', 'X-MORE']],
        ['jörg@bücher.example', ['X-LEGS=copy']],
        ['c@xn--bcher-kva.example', ['X-LEGS=primary']],
      ]),
    );
    expect(envelope).toEqual([
      `MAIL FROM:<a@x.example> SMTPUTF8 SIZE=${BODY.length} X-ORIGIN=0mx0qz1k20001a7f@relay-0.example`,
      'RCPT TO:<plain@x.example> X-LEGS=primary',
      'RCPT TO:<Bob@example.com> X-LEGS=copy',
      'RCPT TO:<b@xn--bcher-kva.example> X-LEGS=primary,copy X-MORE',
      'RCPT TO:<jörg@bücher.example> X-LEGS=copy',
      'RCPT TO:<none@x.example>',
      'RCPT TO:<c@xn--bcher-kva.example> X-LEGS=primary',
    ]);
    const queued = smtp(250, '250 2.0.0 queued');
    expect(got).toEqual({
      'plain@x.example': queued,
      'Bob@Example.COM': smtp(550, '550 5.1.1 no Bob'),
      'b@BÜCHER.example': queued,
      'jörg@bücher.example': queued,
      'none@x.example': queued,
      'c@xn--bcher-kva.example': queued,
    });
  });

  it('without PIPELINING on the lines written one at a time; the next send on the connection has only its own', async () => {
    const server = await scripted(async (s) => {
      await s.hello(['8BITMIME']);
      await expectLine(s, 'MAIL FROM:<a@x.example> X-ORIGIN=q');
      await s.reply('250 ok');
      await expectLine(s, 'RCPT TO:<Bob@example.com> X-LEGS=copy');
      expect(s.pending()).toBe('');
      await s.reply('250 ok');
      await expectLine(s, 'RCPT TO:<c@xn--bcher-kva.example>');
      await s.reply('250 ok');
      await expectLine(s, 'RCPT TO:<d@x.example> X-LEGS=primary');
      await s.reply('250 ok');
      await expectLine(s, 'DATA');
      await s.reply('354 go');
      await s.data();
      await s.reply('250 2.0.0 queued');
      // the same connection, a send without parameters
      await expectLine(s, 'MAIL FROM:<a@x.example>');
      await s.reply('250 ok');
      await expectLine(s, 'RCPT TO:<Bob@example.com>');
      await s.reply('250 ok');
      await expectLine(s, 'DATA');
      await s.reply('354 go');
      await s.data();
      await s.reply('250 2.0.0 queued again');
    });
    const t = client(server.port);
    const to = ['Bob@Example.COM', 'c@bücher.example', 'd@x.example'];
    const queued = smtp(250, '250 2.0.0 queued');
    expect(
      await send(
        t,
        params(
          to,
          [
            ['Bob@Example.COM', ['X-LEGS=copy']],
            ['d@x.example', ['X-LEGS=primary']],
          ],
          ['X-ORIGIN=q'],
        ),
      ),
    ).toEqual({ 'Bob@Example.COM': queued, 'c@bücher.example': queued, 'd@x.example': queued });
    expect(await send(t, req(['Bob@Example.COM']))).toEqual({
      'Bob@Example.COM': smtp(250, '250 2.0.0 queued again'),
    });
    expect(server.connections).toBe(1);
  });

  it('two recipients that become one envelope address: sent once when their parameters are the same', async () => {
    const server = await scripted(async (s) => {
      await s.hello(['PIPELINING']);
      await expectLine(s, /^MAIL FROM:<a@x.example> X-ORIGIN=/);
      await expectLine(s, 'RCPT TO:<Bob@example.com> X-LEGS=copy');
      await expectLine(s, 'DATA');
      await s.reply('250 ok', '250 ok', '354 go');
      await s.data();
      await s.reply('250 2.0.0 queued');
    });
    const to = ['Bob@Example.COM', 'Bob@example.com'];
    expect(envelopeAddresses('Bob@Example.COM')).toEqual(envelopeAddresses('Bob@example.com'));
    const queued = smtp(250, '250 2.0.0 queued');
    expect(
      await send(
        client(server.port),
        params(
          to,
          to.map((r) => [r, ['X-LEGS=copy']]),
        ),
      ),
    ).toEqual({ 'Bob@Example.COM': queued, 'Bob@example.com': queued });
  });

  it.each([
    [
      'a MAIL FROM parameter that is not one esmtp-param',
      params(['b@x.example'], [], ['X-ORIGIN=a b']),
      'MAIL FROM: Invalid ESMTP parameter "X-ORIGIN=a b"',
    ],
    [
      'a MAIL FROM parameter the client writes itself',
      params(['b@x.example'], [], ['SIZE=1']),
      'MAIL FROM: ESMTP parameter "SIZE=1": SIZE is the client\'s own',
    ],
    [
      'a RCPT TO parameter with a line break',
      params(['b@x.example', 'c@x.example'], [['c@x.example', ['X-LEGS=copy\r\nRCPT TO:<evil@z.example>']]]),
      'RCPT TO "c@x.example": Invalid ESMTP parameter "X-LEGS=copy\\r\\nRCPT TO:<evil@z.example>"',
    ],
    [
      'a RCPT TO parameter without its value',
      params(['b@x.example'], [['b@x.example', ['X-LEGS=']]]),
      'RCPT TO "b@x.example": Invalid ESMTP parameter "X-LEGS="',
    ],
    [
      'two recipients that become one envelope address with different parameters',
      params(
        ['b@x.example', 'Bob@Example.COM', 'Bob@example.com'],
        [
          ['Bob@Example.COM', ['X-LEGS=copy']],
          ['Bob@example.com', ['X-LEGS=primary']],
        ],
      ),
      'recipients "Bob@Example.COM" and "Bob@example.com" are both the envelope address "Bob@example.com", with different ESMTP parameters',
    ],
  ])('%s: answered locally, naming it, without connecting', async (_what, r, problem) => {
    const server = await scripted((s) => s.closed);
    const text = `ESMTP parameters refused, nothing sent: ${problem}`;
    expect(await send(client(server.port), r)).toEqual(
      Object.fromEntries(r.to.map((rc) => [rc, { kind: 'local', text }])),
    );
    expect(server.connections).toBe(0);
  });
});

describe('AUTH', () => {
  const creds = { auth: { user: 'relay', pass: 's3cret' }, authKey: 'k', allowPlaintextAuth: true } as const;

  it('PLAIN when offered (smtp-server), on every message of the connection as that user', async () => {
    const p = await peer({}, { auth: { user: 'relay', pass: 's3cret' } });
    const t = client(p.port, creds);
    for (let i = 0; i < 2; i++)
      expect((await send(t))['b@x.example']).toMatchObject({ kind: 'smtp', code: 250 });
    expect(p.messages.map((m) => m.user)).toEqual(['relay', 'relay']);
    expect(p.auths).toHaveLength(1);
  });

  it('refused (535): local "EAUTH: ...", retried later, never bounced; nothing sent', async () => {
    const p = await peer({}, { auth: { user: 'relay', pass: 'other' } });
    expect(await send(client(p.port, creds))).toEqual({
      'b@x.example': { kind: 'local', text: 'EAUTH: Invalid login: 535 5.7.8 authentication failed' },
    });
    expect(p.messages).toEqual([]);
  });

  it('LOGIN when the server offers only LOGIN', async () => {
    let seen: string[] = [];
    const server = await scripted(async (s) => {
      await s.hello(['PIPELINING', 'AUTH LOGIN']);
      await expectLine(s, 'AUTH LOGIN');
      await s.reply('334 VXNlcm5hbWU6');
      const user = await expectLine(s, /./);
      await s.reply('334 UGFzc3dvcmQ6');
      const pass = await expectLine(s, /./);
      seen = [user, pass].map((b) => Buffer.from(b, 'base64').toString());
      await s.reply('235 2.7.0 authenticated');
      await transaction(s);
    });
    expect(await send(client(server.port, creds))).toEqual({ 'b@x.example': smtp(250, '250 2.0.0 queued') });
    expect(seen).toEqual(['relay', 's3cret']);
  });

  it('CRAM-MD5 when the server offers only CRAM-MD5', async () => {
    const challenge = '<1896.697170952@scripted.test>';
    let answer = '';
    const server = await scripted(async (s) => {
      await s.hello(['PIPELINING', 'AUTH CRAM-MD5']);
      await expectLine(s, 'AUTH CRAM-MD5');
      await s.reply(`334 ${Buffer.from(challenge).toString('base64')}`);
      answer = Buffer.from(await expectLine(s, /./), 'base64').toString();
      await s.reply('235 2.7.0 authenticated');
      await transaction(s);
    });
    expect(await send(client(server.port, creds))).toEqual({ 'b@x.example': smtp(250, '250 2.0.0 queued') });
    expect(answer).toBe(`relay ${createHmac('md5', 's3cret').update(challenge).digest('hex')}`);
  });

  it('credentials for a server that offers no AUTH: none sent, the message goes (as nodemailer)', async () => {
    const server = await scripted(async (s) => {
      await s.hello(['PIPELINING']);
      await transaction(s);
    });
    expect(await send(client(server.port, creds))).toEqual({ 'b@x.example': smtp(250, '250 2.0.0 queued') });
    expect(server.sessions[0]?.lines.some((l) => l.startsWith('AUTH'))).toBe(false);
  });
});

describe('connection settings per TLS mode (smtpClientOptions decides them)', () => {
  const of = (t: Partial<ServerTarget>) => {
    const c = connectionSettings(
      { host: '192.0.2.1', port: 25, tls: 'None', maxConnections: 1, ...t },
      'relay.test',
      FAST,
    );
    return {
      implicit: c.implicitTls,
      ignore: c.ignoreTls,
      require: c.requireTls,
      opportunistic: c.opportunisticTls,
      verify: c.tls.rejectUnauthorized,
      sni: c.tls.servername,
    };
  };
  const auth = { user: 'u', pass: 'p' };
  it.each([
    [
      'None',
      {},
      {
        implicit: false,
        ignore: true,
        require: false,
        opportunistic: false,
        verify: undefined,
        sni: undefined,
      },
    ],
    [
      'Opportunistic',
      { tls: 'Opportunistic' },
      { implicit: false, ignore: false, require: false, opportunistic: true, verify: false, sni: undefined },
    ],
    [
      'Opportunistic with credentials: STARTTLS required',
      { tls: 'Opportunistic', auth },
      { implicit: false, ignore: false, require: true, opportunistic: false, verify: false, sni: undefined },
    ],
    [
      'Opportunistic with credentials and allowPlaintextAuth',
      { tls: 'Opportunistic', auth, allowPlaintextAuth: true },
      { implicit: false, ignore: false, require: false, opportunistic: true, verify: false, sni: undefined },
    ],
    [
      'Required',
      { tls: 'Required', servername: 'mx.example' },
      {
        implicit: false,
        ignore: false,
        require: true,
        opportunistic: false,
        verify: false,
        sni: 'mx.example',
      },
    ],
    [
      'RequiredVerify',
      { tls: 'RequiredVerify', servername: 'mx.example' },
      {
        implicit: false,
        ignore: false,
        require: true,
        opportunistic: false,
        verify: true,
        sni: 'mx.example',
      },
    ],
    [
      'RequiredVerify to a host name',
      { tls: 'RequiredVerify', host: 'mx.example' },
      {
        implicit: false,
        ignore: false,
        require: true,
        opportunistic: false,
        verify: true,
        sni: 'mx.example',
      },
    ],
    [
      'Implicit',
      { tls: 'Implicit' },
      { implicit: true, ignore: false, require: false, opportunistic: false, verify: false, sni: undefined },
    ],
  ] as const)('%s', (_what, target, want) => {
    expect(of(target)).toEqual(want);
  });

  it('the EHLO name cannot carry a line break', () => {
    expect(
      connectionSettings({ host: '192.0.2.1', port: 25, tls: 'None', maxConnections: 1 }, 'a\r\nb', FAST)
        .name,
    ).toBe('ab');
  });
});

describe('TLS modes', () => {
  let cert: SelfSigned | undefined;
  const selfSigned = (): SelfSigned => (cert ??= makeSelfSigned());
  const secureOf = async (p: SmtpPeer, target: Partial<ServerTarget>): Promise<boolean | undefined> => {
    expect((await send(client(p.port, target)))['b@x.example']).toMatchObject({ kind: 'smtp', code: 250 });
    return p.messages.at(-1)?.secure;
  };

  it.each([
    ['None', false],
    ['Opportunistic', true],
    ['Required', true],
  ] as const)('%s to a server offering STARTTLS: over TLS %s', async (tls, secure) => {
    const p = await peer({}, { tls: selfSigned() });
    expect(await secureOf(p, { tls })).toBe(secure);
  });

  it('Implicit to an implicit-TLS server: TLS from the first byte', async () => {
    const p = await peer({}, { tls: selfSigned(), implicitTls: true });
    expect(await secureOf(p, { tls: 'Implicit' })).toBe(true);
  });

  it('SNI: the host name given as servername, none for an address', async () => {
    const p = await peer({}, { tls: selfSigned() });
    await secureOf(p, { tls: 'Required', servername: 'localhost' });
    await secureOf(p, { tls: 'Required' });
    expect(p.messages.map((m) => m.servername)).toEqual(['localhost', undefined]);
  });

  // Under required TLS, a host that cannot give it is a failure of that host (network: the next MX host is tried,
  // test/relay/starttls-next-hop.test.ts), named as Postfix names it ("TLS is required, but ..."). It was a local ETLS
  // (not offered, refused), an ESOCKET (handshake, certificate) or the server's reply (EHLO refused: a 5xx bounced).
  it('RequiredVerify with a certificate that does not verify: network ETLS naming the host, nothing sent', async () => {
    const p = await peer({}, { tls: selfSigned() });
    const got = await send(client(p.port, { tls: 'RequiredVerify', servername: 'localhost' }));
    expect(got['b@x.example']).toMatchObject({
      kind: 'network',
      text: expect.stringMatching(
        /^ETLS: TLS is required, but the certificate of host localhost\[127\.0\.0\.1\] did not verify: self-signed certificate/,
      ) as unknown,
    });
    expect(p.messages).toEqual([]);
  });

  it('Required to a server without STARTTLS: STARTTLS is sent anyway, refused: network ETLS "not offered", no envelope', async () => {
    const server = await scripted(async (s) => {
      await s.hello(['PIPELINING']);
      await expectLine(s, 'STARTTLS');
      await s.reply('502 5.5.1 unrecognized command');
      await s.closed;
    });
    expect(await send(client(server.port, { tls: 'Required' }))).toEqual({
      'b@x.example': {
        kind: 'network',
        text: 'ETLS: TLS is required, but was not offered by host 127.0.0.1: 502 5.5.1 unrecognized command',
      },
    });
    expect(server.sessions[0]?.lines).toEqual(['EHLO relay.test', 'STARTTLS']);
  });

  it.each([
    ['454 4.7.0 TLS not available due to local problem'],
    ['502 5.5.1 not now'],
    ['554 5.7.0 no TLS for you'],
  ])(
    'Required, STARTTLS offered and refused (%s): network ETLS "refused to start TLS", no envelope',
    async (refusal) => {
      const server = await scripted(async (s) => {
        await s.hello(['PIPELINING', 'STARTTLS']);
        await expectLine(s, 'STARTTLS');
        await s.reply(refusal);
        await s.closed;
      });
      expect(await send(client(server.port, { tls: 'Required', servername: 'mx.example' }))).toEqual({
        'b@x.example': {
          kind: 'network',
          text: `ETLS: TLS is required, but host mx.example[127.0.0.1] refused to start TLS: ${refusal}`,
        },
      });
      expect(server.sessions[0]?.lines).toEqual(['EHLO relay.test', 'STARTTLS']);
    },
  );

  /**
   * A server that speaks STARTTLS itself (the project's peer hides the plain-text side): the greeting, EHLO offering
   * STARTTLS, `220 go ahead` with `injected` after it in the same write (as a man in the middle would), then EHLO,
   * the envelope and the body over TLS. `atStarttls` runs when STARTTLS arrives, before the 220; `handshakeDelayMs`
   * makes the server slow to start its side of the handshake. Every line it reads goes to `seen`. Returns its port.
   */
  async function starttlsServer(
    o: { injected?: string; atStarttls?: () => void; handshakeDelayMs?: number },
    seen: string[] = [],
  ): Promise<number> {
    const { key, cert } = selfSigned();
    const server = createServer((plain) => {
      plain.on('error', () => undefined);
      void (async () => {
        const s = lineReader(plain);
        plain.write('220 hello\r\n');
        seen.push(await s.line());
        plain.write('250-scripted.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n');
        seen.push(await s.line());
        o.atStarttls?.();
        s.stop();
        plain.pause(); // the ClientHello waits in the socket for the TLS side
        plain.write(`220 go ahead\r\n${o.injected ?? ''}`);
        if (o.handshakeDelayMs !== undefined) await new Promise((r) => setTimeout(r, o.handshakeDelayMs));
        const secure = new TLSSocket(plain, { isServer: true, key, cert });
        secure.on('error', () => undefined);
        const t = lineReader(secure);
        seen.push(await t.line());
        secure.write('250-scripted.test\r\n250 PIPELINING\r\n');
        for (let i = 0; i < 3; i++) seen.push(await t.line());
        secure.write('250 ok\r\n250 ok\r\n354 go ahead\r\n');
        while ((await t.line()) !== '.');
        secure.write('250 2.0.0 queued over TLS\r\n');
      })();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
    return (server.address() as { port: number }).port;
  }

  it('STARTTLS: what came in plain text after its 220 is dropped (RFC 3207 §4.2), EHLO is sent again over TLS', async () => {
    const seen: string[] = [];
    // a man in the middle's reply, after the 220, in the same packet
    const port = await starttlsServer({ injected: '250-scripted.test\r\n250 AUTH PLAIN\r\n' }, seen);
    expect(await send(client(port, { tls: 'Required', auth: { user: 'u', pass: 'p' } }))).toEqual({
      'b@x.example': smtp(250, '250 2.0.0 queued over TLS'),
    });
    // no AUTH: the injected EHLO reply offering it was never read; the TLS one does not offer it
    expect(seen).toEqual([
      'EHLO relay.test',
      'STARTTLS',
      'EHLO relay.test',
      'MAIL FROM:<a@x.example>',
      'RCPT TO:<b@x.example>',
      'DATA',
    ]);
  });

  it('a step of the wall clock (an hour forward) during the set-up times nothing out: the deadline is monotonic', async () => {
    fakeWallClock();
    try {
      const port = await starttlsServer({
        // the clock steps before the 220 that starts the handshake, whose time is what is left of the set-up's
        atStarttls: () => stepWallClock(3600_000),
        // a server slow to start its side of the handshake (what the set-up deadline is for)
        handshakeDelayMs: 50,
      });
      expect(await send(client(port, { tls: 'Required' }))).toEqual({
        'b@x.example': smtp(250, '250 2.0.0 queued over TLS'),
      });
    } finally {
      restoreWallClock();
    }
  });

  it('EHLO refused: HELO, and no extension is used', async () => {
    const server = await scripted(async (s) => {
      await s.reply('220 old server');
      await expectLine(s, 'EHLO relay.test');
      await s.reply('502 5.5.2 what?');
      await expectLine(s, 'HELO relay.test');
      await s.reply('250 hi');
      await expectLine(s, 'MAIL FROM:<a@x.example>');
      await s.reply('250 ok');
      await expectLine(s, 'RCPT TO:<b@x.example>');
      await s.reply('250 ok');
      await expectLine(s, 'DATA');
      await s.reply('354 go ahead');
      await s.data();
      await s.reply('250 2.0.0 queued');
    });
    expect(await send(client(server.port))).toEqual({ 'b@x.example': smtp(250, '250 2.0.0 queued') });
  });

  it('EHLO refused when TLS is required: no HELO, STARTTLS not offered (network ETLS, never the 5xx: no bounce)', async () => {
    const server = await scripted(async (s) => {
      await s.reply('220 old server');
      await expectLine(s, 'EHLO relay.test');
      await s.reply('502 5.5.2 what?');
      await s.closed;
    });
    expect(await send(client(server.port, { tls: 'Required' }))).toEqual({
      'b@x.example': {
        kind: 'network',
        text: 'ETLS: TLS is required, but was not offered by host 127.0.0.1 (EHLO refused): 502 5.5.2 what?',
      },
    });
    expect(server.sessions[0]?.lines).toEqual(['EHLO relay.test']);
  });

  it('Opportunistic, STARTTLS offered but refused: plain text goes on, without AUTH', async () => {
    const server = await scripted(async (s) => {
      await s.hello(['PIPELINING', 'STARTTLS', 'AUTH PLAIN LOGIN']);
      await expectLine(s, 'STARTTLS');
      await s.reply('454 4.7.0 TLS not available');
      await transaction(s);
    });
    const target = {
      tls: 'Opportunistic',
      auth: { user: 'relay', pass: 's3cret' },
      allowPlaintextAuth: true,
    } as const;
    expect(await send(client(server.port, target))).toEqual({ 'b@x.example': smtp(250, '250 2.0.0 queued') });
    expect(server.sessions[0]?.lines.some((l) => l.startsWith('AUTH'))).toBe(false);
  });

  it('Opportunistic with credentials to a server without STARTTLS: STARTTLS required, the password never sent', async () => {
    const p = await peer({}, { auth: { user: 'relay', pass: 's3cret' } });
    const got = await send(client(p.port, { tls: 'Opportunistic', auth: { user: 'relay', pass: 's3cret' } }));
    expect(got['b@x.example']).toMatchObject({
      kind: 'network',
      text: expect.stringMatching(
        /^ETLS: TLS is required, but was not offered by host 127\.0\.0\.1: /,
      ) as unknown,
    });
    expect(p.auths).toEqual([]);
  });

  it('STARTTLS and AUTH: EHLO again over TLS, AUTH over TLS only', async () => {
    const p = await peer(
      {},
      { tls: selfSigned(), auth: { user: 'relay', pass: 's3cret' }, authRequiresTls: true },
    );
    expect(await secureOf(p, { tls: 'Opportunistic', auth: { user: 'relay', pass: 's3cret' } })).toBe(true);
    expect(p.auths.map((a) => a.secure)).toEqual([true]);
  });
});

describe('opportunistic TLS whose STARTTLS handshake fails: plain text on a fresh connection', () => {
  // Before, the handshake's failure (an error, or its timeout) was a network failure like any other: the address was
  // suspended and every attempt failed the same way until the queue lifetime bounced the mail.
  const WITH_STARTTLS = ['PIPELINING', 'STARTTLS', 'AUTH PLAIN'];

  /**
   * A server offering STARTTLS that breaks the handshake after its 220 as `breakTls` says, and that takes the message
   * in plain text from a client that does not send STARTTLS.
   */
  const breaksTls = (breakTls: (s: ScriptedSession) => Promise<void>) =>
    scripted(async (s) => {
      await s.hello(WITH_STARTTLS);
      const next = await s.line();
      if (next === 'STARTTLS') {
        await s.reply('220 2.0.0 go ahead');
        await breakTls(s);
        return;
      }
      if (next === undefined || !next.startsWith('MAIL FROM:')) throw new Error(`unexpected ${String(next)}`);
      for (const l of [/^RCPT/, 'DATA']) await expectLine(s, l);
      await s.reply('250 ok', '250 ok', '354 go ahead');
      await s.data();
      await s.reply('250 2.0.0 queued in plain text');
      await s.closed;
    });
  /** Answers the ClientHello with bytes that are no TLS record (what came with the 220 would be dropped unread). */
  const garbage = async (s: ScriptedSession): Promise<void> => {
    await waitFor(() => s.pending().length > 0, { what: 'the ClientHello' });
    await s.write('this is no TLS record\r\n');
    await s.closed;
  };
  const opportunistic = {
    tls: 'Opportunistic',
    auth: { user: 'relay', pass: 's3cret' },
    allowPlaintextAuth: true,
  } as const;

  it('a handshake that fails (garbage after the 220): delivered in plain text on a second connection, without AUTH', async () => {
    const server = await breaksTls(garbage);
    expect(await send(client(server.port, opportunistic))).toEqual({
      'b@x.example': smtp(250, '250 2.0.0 queued in plain text'),
    });
    expect(server.connections).toBe(2);
    expect(server.sessions[0]?.lines).toEqual(['EHLO relay.test', 'STARTTLS']);
    // the fallback never asks for TLS, nor sends the password in plain text
    expect(server.sessions[1]?.lines.slice(0, 2)).toEqual(['EHLO relay.test', 'MAIL FROM:<a@x.example>']);
    expect(server.sessions[1]?.lines.some((l) => l.startsWith('AUTH') || l === 'STARTTLS')).toBe(false);
  });

  it('the host is remembered: a new pool of the same factory goes in plain text at once', async () => {
    const server = await breaksTls(garbage);
    const factory = smtpOutTransportFactory({ hostname: 'relay.test', timeouts: FAST });
    const target: ServerTarget = {
      host: '127.0.0.1',
      port: server.port,
      tls: 'Opportunistic',
      maxConnections: 1,
    };
    for (let i = 0; i < 2; i++) {
      const t = factory(target);
      cleanups.push(() => t.close());
      expect(await send(t)).toEqual({ 'b@x.example': smtp(250, '250 2.0.0 queued in plain text') });
      t.close();
    }
    // one failed handshake, then plain text: the second pool's connection never sent STARTTLS
    expect(server.connections).toBe(3);
    expect(server.sessions.map((s) => s.lines.includes('STARTTLS'))).toEqual([true, false, false]);
  });

  it('a handshake that never completes: its timeout, then plain text', async () => {
    const server = await breaksTls((s) => s.closed);
    const started = performance.now();
    expect(await send(client(server.port, { tls: 'Opportunistic' }, { ...FAST, greetingMs: 300 }))).toEqual({
      'b@x.example': smtp(250, '250 2.0.0 queued in plain text'),
    });
    expect(performance.now() - started).toBeLessThan(2500);
    expect(server.connections).toBe(2);
  });

  it('a server that speaks only TLS 1.0 (refused by the client): plain text', async () => {
    const { key, cert } = makeSelfSigned();
    let connections = 0;
    const seen: string[] = [];
    const server = createServer((plain) => {
      connections++;
      plain.on('error', () => undefined);
      void (async () => {
        const s = lineReader(plain);
        plain.write('220 old.test ESMTP\r\n');
        await s.line();
        plain.write('250-old.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n');
        const next = await s.line();
        seen.push(next);
        if (next === 'STARTTLS') {
          s.stop();
          plain.pause();
          plain.write('220 go ahead\r\n');
          // an old server: TLS 1.0 only (its ciphers at OpenSSL's level 0), which the client refuses
          const secure = new TLSSocket(plain, {
            isServer: true,
            key,
            cert,
            minVersion: 'TLSv1',
            maxVersion: 'TLSv1',
            ciphers: 'DEFAULT@SECLEVEL=0',
          });
          secure.on('error', () => undefined);
          return;
        }
        for (let i = 0; i < 2; i++) seen.push(await s.line());
        plain.write('250 ok\r\n250 ok\r\n354 go ahead\r\n');
        while ((await s.line()) !== '.');
        plain.write('250 2.0.0 queued in plain text\r\n');
      })();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const port = (server.address() as { port: number }).port;
    expect(await send(client(port, { tls: 'Opportunistic' }))).toEqual({
      'b@x.example': smtp(250, '250 2.0.0 queued in plain text'),
    });
    expect(connections).toBe(2);
    expect(seen).toEqual(['STARTTLS', 'MAIL FROM:<a@x.example>', 'RCPT TO:<b@x.example>', 'DATA']);
  });

  it.each(['Required', 'RequiredVerify'] as const)(
    '%s: a failed handshake stays a failure (never plain text), one connection',
    async (tls) => {
      const server = await breaksTls(garbage);
      const got = await send(client(server.port, { tls, servername: 'localhost' }));
      expect(got['b@x.example']).toMatchObject({
        kind: 'network',
        text: expect.stringMatching(
          /^ETLS: TLS is required, but the TLS handshake with host localhost\[127\.0\.0\.1\] failed: .*wrong version number/,
        ) as unknown,
      });
      expect(server.connections).toBe(1);
    },
  );

  it('Opportunistic with credentials (STARTTLS required for AUTH): a failed handshake is no reason for plain text', async () => {
    const server = await breaksTls(garbage);
    const got = await send(
      client(server.port, { tls: 'Opportunistic', auth: { user: 'relay', pass: 's3cret' } }),
    );
    expect(got['b@x.example']).toMatchObject({
      kind: 'network',
      text: expect.stringMatching(
        /^ETLS: TLS is required, but the TLS handshake with host 127\.0\.0\.1 failed: /,
      ) as unknown,
    });
    expect(server.connections).toBe(1);
  });

  it('Required: a server that closes the connection after its 220, before the handshake: network ETLS, one connection', async () => {
    const server = await breaksTls(async (s) => {
      await waitFor(() => s.pending().length > 0, { what: 'the ClientHello' });
      s.end();
      await s.closed;
    });
    const got = await send(client(server.port, { tls: 'Required' }));
    expect(got['b@x.example']).toMatchObject({
      kind: 'network',
      text: expect.stringMatching(
        /^ETLS: TLS is required, but the TLS handshake with host 127\.0\.0\.1 failed: /,
      ) as unknown,
    });
    expect(server.connections).toBe(1);
  });
});

describe('bodies from their files', () => {
  let dir: string | undefined;
  const file = async (name: string, content: Buffer | string): Promise<string> => {
    if (dir === undefined) {
      const d = await mkdtemp(join(tmpdir(), 'mailroute-smtp-out-'));
      dir = d;
      cleanups.push(() => {
        dir = undefined;
        return rm(d, { recursive: true, force: true });
      });
    }
    const path = join(dir, name);
    await writeFile(path, content);
    return path;
  };

  it('a large body streamed with backpressure: bytes [start, size) of the file, encoded exactly as a whole body', async () => {
    // lines with dots, bare CR and LF, and long runs without any
    const parts: string[] = [];
    for (let i = 0; i < 40_000; i++)
      parts.push(i % 7 === 0 ? '.dot\n' : i % 11 === 0 ? 'cr\r' : `line ${i} ${'x'.repeat(i % 200)}\r\n`);
    const content = Buffer.from(parts.join(''), 'latin1');
    const path = await file(
      'big.msg',
      Buffer.concat([Buffer.from('TRACE'), content, Buffer.from('|{"state":1}')]),
    );
    let got = '';
    const server = await scripted(async (s) => {
      await s.hello(['PIPELINING']);
      got = await transaction(s);
    });
    const raw = { path, start: 5, size: 5 + content.length };
    expect(await send(client(server.port), req(['b@x.example'], raw))).toEqual({
      'b@x.example': smtp(250, '250 2.0.0 queued'),
    });
    expect(got === Buffer.concat(Object.values(stuffWhole(content))).toString('latin1')).toBe(true);
  });

  it('an empty body file: just the final dot line', async () => {
    const path = await file('empty.msg', 'state only');
    let got = '';
    const server = await scripted(async (s) => {
      await s.hello(['PIPELINING']);
      got = await transaction(s);
    });
    expect(
      (await send(client(server.port), req(['b@x.example'], { path, size: 0 })))['b@x.example'],
    ).toMatchObject({ code: 250 });
    expect(got).toBe('\r\n.\r\n');
  });

  it('a body file shorter than its size, or missing: ESTREAM, and never a final dot', async () => {
    const short = await file('short.msg', 'Subject: x\r\n\r\nonly this');
    const server = await scripted(async (s) => {
      await s.hello(['PIPELINING']);
      for (const l of [/^MAIL/, /^RCPT/, 'DATA']) await expectLine(s, l);
      await s.reply('250 ok', '250 ok', '354 go ahead');
      await s.closed;
    });
    const t = client(server.port);
    expect(await send(t, req(['b@x.example'], { path: short, size: 1000 }))).toEqual({
      'b@x.example': { kind: 'local', text: 'ESTREAM: the body file ended after 23 of 1000 bytes' },
    });
    expect(
      await send(t, req(['b@x.example'], { path: join(dir ?? tmpdir(), 'gone.msg'), size: 10 })),
    ).toMatchObject({
      'b@x.example': { kind: 'local', text: expect.stringMatching(/^ESTREAM: ENOENT/) as unknown },
    });
    await Promise.all(server.sessions.map((s) => s.closed));
    for (const s of server.sessions) expect(s.pending()).not.toContain('\r\n.\r\n');
    expect(server.connections).toBe(2);
  });

  it.each([
    ['552 5.3.4 message too big', smtp(552, '552 5.3.4 message too big')],
    // acceptance of bytes the server cannot all have had is no delivery: retried later
    [
      '250 2.0.0 queued',
      { kind: 'network', text: 'EPROTOCOL: Server replied before the end of the message: 250 2.0.0 queued' },
    ],
  ] as const)(
    'a reply (%s) before the end of the body: the connection dropped at once, the rest not sent, no final dot',
    async (early, want) => {
      const path = await file('huge.msg', Buffer.alloc(16 * 1024 * 1024, 'y'));
      let session: ScriptedSession | undefined;
      const server = await scripted(async (s) => {
        session = s;
        await s.hello(['PIPELINING']);
        for (const l of [/^MAIL/, /^RCPT/, 'DATA']) await expectLine(s, l);
        await s.reply('250 ok', '250 ok', '354 go ahead');
        // the client's writes back up while the server answers
        s.pause();
        await s.reply(early);
      });
      const t = client(server.port);
      expect(await send(t, req(['b@x.example'], { path, size: 16 * 1024 * 1024 }))).toEqual({
        'b@x.example': want,
      });
      session?.resume();
      await session?.closed;
      const got = session?.pending() ?? '';
      expect(got.length).toBeLessThan(16 * 1024 * 1024);
      expect(got).not.toContain('\r\n.\r\n');
      // nothing after the body either (no RSET into the middle of it): the client just went
      expect(got.replace(/y/g, '')).toBe('');
      expect(server.connections).toBe(1);
    },
  );
});

describe('the pool', () => {
  it('at most maxConnections connections, every send answered, waiting sends in order', async () => {
    const p = await peer({ dataDelayMs: 20 });
    const t = client(p.port, { maxConnections: 2 });
    const subjects = Array.from({ length: 8 }, (_, i) => `m${i}`);
    const all = await Promise.all(
      subjects.map((s) => send(t, req(['b@x.example'], Buffer.from(`Subject: ${s}\r\n\r\nx\r\n`)))),
    );
    expect(all.every((r) => r['b@x.example']?.kind === 'smtp' && r['b@x.example'].code === 250)).toBe(true);
    expect(p.stats.maxOpen).toBeLessThanOrEqual(2);
    expect(p.stats.connections).toBe(2);
    const one = await peer();
    const t1 = client(one.port);
    await Promise.all(
      subjects.map((s) => send(t1, req(['b@x.example'], Buffer.from(`Subject: ${s}\r\n\r\nx\r\n`)))),
    );
    expect(one.messages.map((m) => /Subject: (\w+)/.exec(m.raw.toString())?.[1])).toEqual(subjects);
    expect(one.stats.connections).toBe(1);
  });

  it('close(): waiting sends answered at once, the one in flight finishes, then QUIT; later sends refused', async () => {
    let release: () => void = () => undefined;
    const held = new Promise<void>((resolve) => (release = resolve));
    const server = await scripted(async (s) => {
      await s.hello(['PIPELINING']);
      await takeBody(s);
      await held;
      await s.reply('250 2.0.0 queued');
      await expectLine(s, 'QUIT');
      await s.reply('221 bye');
    });
    const t = client(server.port);
    const first = send(t);
    await waitFor(() => server.sessions[0]?.lines.includes('DATA'), { what: 'the first transaction' });
    const waiting = [send(t), send(t)];
    t.close();
    const closed = { 'b@x.example': { kind: 'network', text: 'Connection pool was closed' } };
    expect(await Promise.all(waiting)).toEqual([closed, closed]);
    release();
    expect(await first).toEqual({ 'b@x.example': smtp(250, '250 2.0.0 queued') });
    await server.sessions[0]?.closed;
    expect(server.sessions[0]?.lines.at(-1)).toBe('QUIT');
    expect(await send(t)).toEqual({
      'b@x.example': { kind: 'network', text: 'ECONNECTION: Connection pool was closed' },
    });
  });

  it('a connection idle for idleMs gets QUIT; the next send opens another', async () => {
    const server = await scripted(async (s) => {
      await s.hello(['PIPELINING']);
      await transaction(s);
      await expectLine(s, 'QUIT');
      await s.reply('221 bye');
    });
    const t = smtpOutTransportFactory({ hostname: 'relay.test', timeouts: FAST, idleMs: 50 })({
      host: '127.0.0.1',
      port: server.port,
      tls: 'None',
      maxConnections: 1,
    });
    cleanups.push(() => t.close());
    expect(await send(t)).toEqual({ 'b@x.example': smtp(250, '250 2.0.0 queued') });
    await server.sessions[0]?.closed;
    expect(server.sessions[0]?.lines.at(-1)).toBe('QUIT');
    expect(await send(t)).toEqual({ 'b@x.example': smtp(250, '250 2.0.0 queued') });
    expect(server.connections).toBe(2);
  });

  it('close() says QUIT on an idle connection', async () => {
    const server = await scripted(async (s) => {
      await s.hello(['PIPELINING']);
      await transaction(s);
      await expectLine(s, 'QUIT');
    });
    const t = client(server.port);
    expect(await send(t)).toEqual({ 'b@x.example': smtp(250, '250 2.0.0 queued') });
    t.close();
    await server.sessions[0]?.closed;
    expect(server.sessions[0]?.lines.at(-1)).toBe('QUIT');
  });
});
