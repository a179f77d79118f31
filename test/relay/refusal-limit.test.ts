// What one SMTP session can make the relay write (audit48 telemetry findings 1, 2 and 4), against a real in-process
// relay with its log captured (a pino logger in deps) and raw SMTP clients:
// - --max-errors (Postfix's smtpd_hard_error_limit, default 20): a session that pipelines 2,000 refused commands is
//   closed with 421 4.7.0 after 20 refusals, so it logs a bounded number of lines; a legitimate session with a few
//   refusals per message (an accepted message starts the count again) is not affected;
// - a client's parameter name is repeated in the 555 reply and its log line clipped to 64 characters;
// - a client that resets its connection inside a transaction is one info line with the phase and its address, no
//   warning and no stack trace.
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSmtpPeer, type SmtpPeer } from '../support/smtp-peer.ts';
import { waitFor } from '../support/wait.ts';
import { RawSmtp, code } from './raw-client.ts';
import { dualDomain, startRelay, type InProcessRelay } from './relay-harness.ts';

let relay: InProcessRelay;
let old: SmtpPeer;
let neu: SmtpPeer;
const lines: string[] = [];

interface LogLine {
  level: number;
  msg: string;
  session?: string;
  phase?: string;
  client?: string;
  code?: string;
  reply?: string;
  err?: { stack?: string };
}
const parsed = (from: number): LogLine[] => lines.slice(from).map((l) => JSON.parse(l) as LogLine);

beforeAll(async () => {
  old = await startSmtpPeer('old');
  neu = await startSmtpPeer('new');
  relay = await startRelay({ 'd.yaml': dualDomain('managed.test', old.port, neu.port) }, [], {
    logger: pino({ level: 'info' }, { write: (l: string) => void lines.push(l) }),
  });
});
afterAll(async () => {
  await relay.close();
  await old.close();
  await neu.close();
});

const rejected = async (reason: string): Promise<number> =>
  (await relay.relay.metrics.messagesRejected.get()).values.find((v) => v.labels.reason === reason)?.value ??
  0;

/** Replies until the relay closes the connection or sends a 421 (then waits for the close), at most `max`. */
async function repliesUntilClosed(c: RawSmtp, max: number): Promise<string[]> {
  const out: string[] = [];
  while (out.length < max) {
    const r = await c.reply(30_000);
    if (r === '') break;
    out.push(r);
    if (r.startsWith('421')) {
      await waitFor(() => c.isClosed, { timeoutMs: 30_000, what: 'the relay to close the connection' });
      break;
    }
  }
  return out;
}

/** A whole transaction on an open session: MAIL, RCPTs (replies returned), DATA; the final reply last. */
async function transaction(c: RawSmtp, mailFrom: string, rcpts: string[]): Promise<string[]> {
  const out = [await c.cmd(mailFrom)];
  for (const r of rcpts) out.push(await c.cmd(r));
  out.push(await c.cmd('DATA'));
  out.push(await c.cmd('Subject: t\r\n\r\nhello\r\n.'));
  return out;
}

describe('--max-errors: refusals one session can cause', () => {
  it('a session pipelining 2,000 RCPTs with an 8,000-character unsupported parameter gets 20 × 555, then 421 4.7.0 and is closed; it logs 21 lines under 1 KiB each; the next session is served', async () => {
    const tooMany = await rejected('TooManyErrors');
    const c = await RawSmtp.connect(relay.relay.smtp.port);
    expect(code(await c.reply())).toBe(220);
    expect(code(await c.cmd('EHLO hostile.test'))).toBe(250);
    expect(code(await c.cmd('MAIL FROM:<s@origin.test>'))).toBe(250);
    const before = lines.length;
    const big = 'P'.repeat(8000);
    let s = '';
    for (let i = 0; i < 2000; i++) s += `RCPT TO:<u${i}@managed.test> ${big}${i}=1\r\n`;
    c.write(s);
    const replies = await repliesUntilClosed(c, 2000);
    c.close();

    expect(replies.length).toBeLessThanOrEqual(21);
    expect(Math.max(...replies.map((r) => r.length))).toBeLessThan(200);
    expect(replies.at(-1)).toMatch(/^421 4\.7\.0 Too many errors/);
    for (const r of replies.slice(0, -1)) {
      // the name clipped to 64 characters, the rest counted (lib/one-line.ts clip)
      expect(r).toMatch(/^555 5\.5\.4 Unsupported parameter P{64}\.\.\. \(\d+ more\)$/);
      expect(r.length).toBeLessThan(200);
    }
    expect(replies.slice(0, -1)).toHaveLength(20);

    const mine = lines.slice(before);
    expect(mine.length).toBeLessThanOrEqual(25);
    expect(Math.max(...mine.map((l) => l.length))).toBeLessThan(1024);
    expect(mine.reduce((n, l) => n + l.length, 0)).toBeLessThan(25 * 1024);
    const refused = parsed(before).filter((l) => l.msg === 'refused');
    expect(refused).toHaveLength(21);
    expect(refused.at(-1)?.reply).toMatch(/^421 4\.7\.0 Too many errors/);
    expect(await rejected('TooManyErrors')).toBe(tooMany + 1);

    // the relay still serves the next client
    const n = await RawSmtp.connect(relay.relay.smtp.port);
    await n.begin('s@origin.test', ['alice@managed.test']);
    expect(code(await n.cmd('DATA'))).toBe(354);
    expect(await n.cmd('Subject: after\r\n\r\nhello\r\n.')).toMatch(/^250 /);
    n.close();
  });

  it('MAIL FROM refusals count too: 2,000 pipelined MAIL FROM with an unsupported parameter end after 20 with 421', async () => {
    const c = await RawSmtp.connect(relay.relay.smtp.port);
    await c.reply();
    await c.cmd('EHLO hostile.test');
    const before = lines.length;
    let s = '';
    for (let i = 0; i < 2000; i++) s += `MAIL FROM:<s${i}@origin.test> BOGUS${i}=1\r\n`;
    c.write(s);
    const replies = await repliesUntilClosed(c, 2000);
    c.close();
    expect(replies).toHaveLength(21);
    expect(replies.slice(0, 20).every((r) => r.startsWith('555 5.5.4 Unsupported parameter BOGUS'))).toBe(
      true,
    );
    expect(replies[20]).toMatch(/^421 4\.7\.0 Too many errors/);
    expect(lines.length - before).toBeLessThanOrEqual(25);
  });

  it('a legitimate client is not affected: 25 recipients of which 20 unknown; a few refusals in each of several messages of one session (an accepted message starts the count again)', async () => {
    // 5 known recipients, then 20 at a domain the relay does not serve: those are counted by --max-unknown-recipients
    // (20), not by --max-errors
    const a = await RawSmtp.connect(relay.relay.smtp.port);
    expect(code(await a.reply())).toBe(220);
    expect(code(await a.cmd('EHLO list.test'))).toBe(250);
    const known = Array.from({ length: 5 }, (_, i) => `RCPT TO:<k${i}@managed.test>`);
    const unknown = Array.from({ length: 20 }, (_, i) => `RCPT TO:<u${i}@elsewhere.test>`);
    const first = await transaction(a, 'MAIL FROM:<list@origin.test>', [...known, ...unknown]);
    expect(first.slice(1, 6).every((r) => code(r) === 250)).toBe(true);
    expect(first.slice(6, 26).every((r) => r.startsWith('554 5.7.1'))).toBe(true);
    expect(first.at(-1)).toMatch(/^250 /);
    expect(await a.cmd('QUIT')).toMatch(/^221 /);
    a.close();

    // three messages in one session, each after 15 refusals of other kinds (45 in the session, never over 20 between
    // two accepted messages): a parameter the relay does not implement, a non-ASCII address without SMTPUTF8,
    // sender-specified (%) routing
    const c = await RawSmtp.connect(relay.relay.smtp.port);
    expect(code(await c.reply())).toBe(220);
    expect(code(await c.cmd('EHLO legit.test'))).toBe(250);
    for (let m = 0; m < 3; m++) {
      for (let i = 0; i < 5; i++)
        expect(await c.cmd(`MAIL FROM:<s@origin.test> NOTIFY${i}=NEVER`)).toMatch(/^555 5\.5\.4 /);
      expect(code(await c.cmd('MAIL FROM:<s@origin.test>'))).toBe(250);
      for (let i = 0; i < 5; i++)
        expect(await c.cmd(`RCPT TO:<jörg${i}@managed.test>`)).toMatch(/^553 5\.6\.7 /);
      for (let i = 0; i < 5; i++)
        expect(await c.cmd(`RCPT TO:<u${i}%evil.test@managed.test>`)).toMatch(/^554 5\.7\.1 /);
      expect(code(await c.cmd('RCPT TO:<alice@managed.test>'))).toBe(250);
      expect(code(await c.cmd('DATA'))).toBe(354);
      expect(await c.cmd('Subject: t\r\n\r\nhello\r\n.')).toMatch(/^250 /);
    }
    expect(await c.cmd('QUIT')).toMatch(/^221 /);
    c.close();
  });
});

describe('--max-unknown-recipients: an accepted message starts the session count again', () => {
  it('three messages on one connection, each naming 15 unknown recipients beside 5 known ones (45 in the session, never over 20 between two accepted messages): all three are accepted', async () => {
    const before = await rejected('TooManyUnknownRecipients');
    const c = await RawSmtp.connect(relay.relay.smtp.port);
    expect(code(await c.reply())).toBe(220);
    expect(code(await c.cmd('EHLO lists.test'))).toBe(250);
    for (let m = 0; m < 3; m++) {
      const known = Array.from({ length: 5 }, (_, i) => `RCPT TO:<k${i}@managed.test>`);
      const unknown = Array.from({ length: 15 }, (_, i) => `RCPT TO:<stale${m}-${i}@elsewhere.test>`);
      const r = await transaction(c, 'MAIL FROM:<list@origin.test>', [...known, ...unknown]);
      expect(r.slice(1, 6).every((x) => code(x) === 250)).toBe(true);
      expect(r.slice(6, 21).every((x) => x.startsWith('554 5.7.1'))).toBe(true);
      expect(r.at(-1), `message ${m + 1}`).toMatch(/^250 /);
    }
    expect(await c.cmd('QUIT')).toMatch(/^221 /);
    c.close();
    expect(await rejected('TooManyUnknownRecipients')).toBe(before);
  });

  it('without an accepted message the limit holds: the RCPT after 20 unknown ones in a session gets 421 4.7.0 and the connection is closed', async () => {
    const c = await RawSmtp.connect(relay.relay.smtp.port);
    expect(code(await c.reply())).toBe(220);
    expect(code(await c.cmd('EHLO harvest.test'))).toBe(250);
    expect(code(await c.cmd('MAIL FROM:<h@origin.test>'))).toBe(250);
    for (let i = 0; i < 20; i++)
      expect(await c.cmd(`RCPT TO:<h${i}@elsewhere.test>`)).toMatch(/^554 5\.7\.1 /);
    expect(await c.cmd('RCPT TO:<k0@managed.test>')).toMatch(/^421 4\.7\.0 /);
    await waitFor(() => c.isClosed, { timeoutMs: 30_000, what: 'the relay to close the connection' });
  });
});

describe('a client that resets its connection inside a transaction', () => {
  /** The line the relay writes about a socket error: now the first, before this change the second (a warning). */
  const ABOUT_THE_ERROR = new Set(['client connection lost', 'smtp connection error']);
  const cases: { phase: string; steps: string[] }[] = [
    { phase: 'MAIL FROM', steps: ['MAIL FROM:<s@origin.test>'] },
    { phase: 'RCPT TO', steps: ['MAIL FROM:<s@origin.test>', 'RCPT TO:<alice@managed.test>'] },
  ];
  for (const { phase, steps } of cases) {
    it(`after ${phase}: one info line "client connection lost" with the phase, the address and the code; no warning, no stack`, async () => {
      const before = lines.length;
      const c = await RawSmtp.connect(relay.relay.smtp.port);
      await c.reply();
      await c.cmd('EHLO flaky.test');
      for (const s of steps) expect(code(await c.cmd(s))).toBe(250);
      c.socket.resetAndDestroy();
      await waitFor(() => parsed(before).some((l) => ABOUT_THE_ERROR.has(l.msg)), {
        what: 'the line about the lost client',
      });
      expect(parsed(before).filter((l) => l.level >= 40)).toEqual([]);
      expect(lines.slice(before).join('\n')).not.toMatch(/stack|onStreamRead/);
      const lost = parsed(before).find((l) => l.msg === 'client connection lost');
      expect(lost).toMatchObject({ level: 30, phase, client: '127.0.0.1', code: 'ECONNRESET' });
      expect(lost?.session).toEqual(expect.any(String));
    });
  }

  it('in DATA: the refusal line (ConnectionLost) and the lost-client line at info, no warning, no stack', async () => {
    const before = lines.length;
    const c = await RawSmtp.connect(relay.relay.smtp.port);
    await c.begin('s@origin.test', ['alice@managed.test']);
    expect(code(await c.cmd('DATA'))).toBe(354);
    c.write('Subject: half\r\n\r\npart of a message\r\n');
    c.socket.resetAndDestroy();
    await waitFor(() => parsed(before).some((l) => ABOUT_THE_ERROR.has(l.msg)), {
      what: 'the line about the client lost in DATA',
    });
    expect(parsed(before).filter((l) => l.level >= 40)).toEqual([]);
    expect(lines.slice(before).join('\n')).not.toMatch(/stack|onStreamRead/);
    expect(parsed(before).find((l) => l.msg === 'client connection lost')).toMatchObject({
      level: 30,
      phase: 'DATA',
      client: '127.0.0.1',
    });
  });
});
