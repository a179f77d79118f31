// The hand-off parameters (relay/inbound/handoff.ts) are honoured only from a peer relay: a client whose address is
// one the relay's --peers resolves to. Before, any SMTP client could send RCPT TO ... X-MAILROUTE-LEGS=copy and get
// a message without its mailbox of record (a lone copy in a handed-over message is suppressible), and forge an
// X-MAILROUTE-ORIGIN into the logs and queue show. Real relay, real smtp-server destinations, a raw SMTP client
// bound to a chosen loopback address (127.0.0.2 is not a peer; --peers names 127.0.0.1).
import { connect, type Socket } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import type { QueueListView } from '../../relay/admin/view.ts';
import { startSmtpPeer, type SmtpPeer } from '../support/smtp-peer.ts';
import { waitFor, withDeadline } from '../support/wait.ts';
import { dualDomain, httpGet, startRelay, type InProcessRelay } from './relay-harness.ts';

/** A line-at-a-time SMTP client from a given local address. */
interface RawClient {
  /** Sends a command and resolves with the last line of its reply ("250 ...", "555 ..."). */
  command(line: string): Promise<string>;
  close(): void;
}

async function rawClient(port: number, localAddress: string): Promise<RawClient> {
  const socket: Socket = await new Promise((resolve, reject) => {
    const s = connect({ port, host: '127.0.0.1', localAddress }, () => resolve(s));
    s.once('error', reject);
  });
  socket.setEncoding('latin1');
  let buffered = '';
  let waiting: ((line: string) => void) | undefined;
  const complete = (): void => {
    // a reply is complete at a line "NNN text" (not "NNN-text")
    const m = /(?:^|\r\n)(\d{3} [^\r\n]*)\r\n/.exec(buffered);
    if (m?.[1] === undefined || waiting === undefined) return;
    buffered = buffered.slice((m.index ?? 0) + m[0].length);
    const w = waiting;
    waiting = undefined;
    w(m[1]);
  };
  socket.on('data', (chunk: string) => {
    buffered += chunk;
    complete();
  });
  const next = (what: string): Promise<string> =>
    withDeadline(
      10_000,
      new Promise<string>((resolve) => {
        waiting = resolve;
        complete();
      }),
      `reply to ${what}`,
    );
  const greeting = await next('greeting');
  expect(greeting).toMatch(/^220 /);
  return {
    command(line) {
      const reply = next(line);
      socket.write(`${line}\r\n`);
      return reply;
    },
    close: () => socket.destroy(),
  };
}

const ORIGIN = 'X-MAILROUTE-ORIGIN=0mx0qz1k20001a7f@relay-0.example';

describe('hand-off parameters only from a peer relay', () => {
  const closers: (() => Promise<void> | void)[] = [];
  afterAll(async () => {
    for (const c of closers.reverse()) await c();
  });

  it('a client that is not a peer gets 555 for each; without them its message keeps the leg of record; a peer may narrow', async () => {
    const primary: SmtpPeer = await startSmtpPeer('primary');
    const copy: SmtpPeer = await startSmtpPeer('copy');
    closers.push(
      () => primary.close(),
      () => copy.close(),
    );
    const relay: InProcessRelay = await startRelay(
      { 'd.yaml': dualDomain('trust.test', primary.port, copy.port) },
      // the peers resolve to 127.0.0.1 only (the port is where this relay would drain to; trust is by address)
      ['--peers', '127.0.0.1:2525', '--drain-on-shutdown', 'false'],
    );
    closers.push(() => relay.close());
    const port = relay.relay.smtp.port;
    const queue = async (): Promise<QueueListView> =>
      JSON.parse((await httpGet(relay.relay.admin.port, '/queue')).body) as QueueListView;

    // 127.0.0.2: not a peer.
    const stranger = await rawClient(port, '127.0.0.2');
    closers.push(() => stranger.close());
    expect(await stranger.command('EHLO stranger.test')).toMatch(/^250 /);
    expect(await stranger.command(`MAIL FROM:<s@outside.test> ${ORIGIN}`)).toBe(
      '555 5.5.4 Unsupported parameter X-MAILROUTE-ORIGIN',
    );
    expect(await stranger.command('MAIL FROM:<s@outside.test>')).toMatch(/^250 /);
    expect(await stranger.command('RCPT TO:<bob@trust.test> X-MAILROUTE-LEGS=copy')).toBe(
      '555 5.5.4 Unsupported parameter X-MAILROUTE-LEGS',
    );
    // The retry without the parameter gets the recipient's whole plan: the leg of record and the copy.
    expect(await stranger.command('RCPT TO:<bob@trust.test>')).toMatch(/^250 /);
    expect(await stranger.command('DATA')).toMatch(/^354 /);
    expect(await stranger.command('Subject: from a stranger\r\n\r\nbody\r\n.')).toMatch(/^250 /);
    stranger.close();
    await waitFor(() => primary.messages.length === 1 && copy.messages.length === 1, {
      what: 'the primary and the copy delivered',
    });
    await waitFor(async () => (await queue()).total === 0, { what: 'the queue empty' });

    // 127.0.0.1: a peer; its hand-off keeps only the copy and records its origin.
    const peer = await rawClient(port, '127.0.0.1');
    closers.push(() => peer.close());
    expect(await peer.command('EHLO relay-0.example')).toMatch(/^250 /);
    expect(await peer.command(`MAIL FROM:<s@outside.test> ${ORIGIN}`)).toMatch(/^250 /);
    expect(await peer.command('RCPT TO:<bob@trust.test> X-MAILROUTE-LEGS=copy')).toMatch(/^250 /);
    expect(await peer.command('DATA')).toMatch(/^354 /);
    expect(await peer.command('Subject: handed over\r\n\r\nbody\r\n.')).toMatch(/^250 /);
    peer.close();
    await waitFor(() => copy.messages.length === 2, { what: 'the handed-over copy delivered' });
    await waitFor(async () => (await queue()).total === 0, { what: 'the queue empty again' });
    expect(primary.messages).toHaveLength(1);
  });

  it('without --peers no client is a peer, not even loopback', async () => {
    const primary: SmtpPeer = await startSmtpPeer('primary');
    const copy: SmtpPeer = await startSmtpPeer('copy');
    closers.push(
      () => primary.close(),
      () => copy.close(),
    );
    const relay = await startRelay({ 'd.yaml': dualDomain('alone.test', primary.port, copy.port) });
    closers.push(() => relay.close());
    const c = await rawClient(relay.relay.smtp.port, '127.0.0.1');
    closers.push(() => c.close());
    expect(await c.command('EHLO client.test')).toMatch(/^250 /);
    expect(await c.command(`MAIL FROM:<s@outside.test> ${ORIGIN}`)).toBe(
      '555 5.5.4 Unsupported parameter X-MAILROUTE-ORIGIN',
    );
    expect(await c.command('MAIL FROM:<s@outside.test>')).toMatch(/^250 /);
    expect(await c.command('RCPT TO:<bob@alone.test> X-MAILROUTE-LEGS=primary,copy')).toBe(
      '555 5.5.4 Unsupported parameter X-MAILROUTE-LEGS',
    );
    c.close();
  });
});
