// Recipient-verification callouts against servers that do not answer the question asked, end to end: a real relay
// (runRelay) asking real peers (smtp-server based, or scripted raw servers). What is checked is what a client of the
// relay sees at RCPT, and where the mail goes:
//   - a 550 that refuses the callout itself (postscreen) is no "absent": Split tempfails (451 4.4.3), it does not
//     send the primary's real users to the secondary;
//   - a subaddress that exists (mary-jane@, delimiter "+-") does not make its mailbox (mary@) exist;
//   - a probe has a deadline: a tarpit that dribbles its RCPT reply costs a client 2 x --callout-timeout at most, and
//     RSET is not waited for;
//   - a server that gives no answer (MAIL FROM:<> refused) is named in a warning, once per minute;
//   - NFC and NFD spellings of a non-ASCII address are asked about once.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import nodemailer from 'nodemailer';
import { pino } from 'pino';
import { startSmtpPeer, type SmtpPeer } from '../support/smtp-peer.ts';
import { scriptedServers, type ScriptedSession } from '../support/scripted-smtp.ts';
import { waitFor } from '../support/wait.ts';
import { code, RawSmtp } from './raw-client.ts';
import { dualDomain, startRelay, type InProcessRelay } from './relay-harness.ts';

const VERIFY_OLD = '  recipientVerification: {server: old, cacheTTL: 1h}\n';

/** A Split domain whose primary (old) is asked about each recipient. */
function splitDomain(domain: string, old: number, neu: number, extraDomain = '', extraPolicy = ''): string {
  return dualDomain(domain, old, neu, {
    mode: 'Split',
    extraDomain: `${VERIFY_OLD}${extraDomain}`,
    ...(extraPolicy !== '' ? { extraPolicy } : {}),
  });
}

/** The relay's reply to one RCPT TO in a fresh session (after EHLO and MAIL FROM), and how long it took. */
async function rcpt(port: number, to: string, smtputf8 = false): Promise<{ reply: string; ms: number }> {
  const c = await RawSmtp.connect(port);
  try {
    await c.reply();
    expect(code(await c.cmd('EHLO client.test'))).toBe(250);
    expect(code(await c.cmd(`MAIL FROM:<sender@origin.test>${smtputf8 ? ' SMTPUTF8' : ''}`))).toBe(250);
    const started = performance.now();
    c.write(Buffer.from(`RCPT TO:<${to}>\r\n`, 'utf8'));
    const reply = await c.reply(15_000);
    return { reply, ms: performance.now() - started };
  } finally {
    c.close();
  }
}

async function send(port: number, to: string, subject: string): Promise<string> {
  const t = nodemailer.createTransport({ host: '127.0.0.1', port, secure: false, ignoreTLS: true });
  try {
    return (
      (await t.sendMail({ from: 'sender@origin.test', to, subject, text: subject })) as { response: string }
    ).response;
  } finally {
    t.close();
  }
}

const subjects = (peer: SmtpPeer, to: string): string[] =>
  peer.for(to).map((m) => /^Subject: (.*)$/m.exec(m.raw.toString())?.[1] ?? '?');

describe('a 550 that refuses the callout, not the address', () => {
  let old: SmtpPeer;
  let neu: SmtpPeer;
  let r: InProcessRelay;

  beforeAll(async () => {
    // postscreen in front of the primary: every RCPT of the callout gets its block-list reply
    old = await startSmtpPeer('old', {
      rcpt: () => ({
        code: 550,
        message: '5.7.1 Service unavailable; client [127.0.0.1] blocked using zen.spamhaus.org',
      }),
    });
    neu = await startSmtpPeer('new');
    r = await startRelay({
      'split.yaml': splitDomain('split.test', old.port, neu.port),
      'reject.yaml': splitDomain(
        'reject.test',
        old.port,
        neu.port,
        '',
        '  split:\n    unknownRecipients: Reject\n',
      ),
    });
  });

  afterAll(async () => {
    await r?.close();
    await old?.close();
    await neu?.close();
  });

  it('Split: 451 4.4.3, not routed to the secondary; with unknownRecipients Reject, not 550 5.1.1', async () => {
    expect((await rcpt(r.relay.smtp.port, 'alice@split.test')).reply).toMatch(/^451 4\.4\.3 /);
    expect((await rcpt(r.relay.smtp.port, 'bob@reject.test')).reply).toMatch(/^451 4\.4\.3 /);
    // the primary was asked (and refused the callout); the secondary was never a destination
    expect(old.rcpts.map((x) => x.address)).toEqual(['alice@split.test', 'bob@reject.test']);
    expect(neu.rcpts).toEqual([]);
  });
});

describe('a subaddress that exists says nothing about its mailbox', () => {
  it('recipientDelimiter "+-": mary-jane@ exists on the primary, mary@ does not; mary@ stays on the secondary', async () => {
    const old = await startSmtpPeer('old', {
      rcpt: (a) => (a === 'mary-jane@sub.test' ? undefined : { code: 550, message: '5.1.1 no such user' }),
    });
    const neu = await startSmtpPeer('new');
    const r = await startRelay({
      'sub.yaml': splitDomain('sub.test', old.port, neu.port, '  recipientDelimiter: "+-"\n'),
    });
    try {
      const port = r.relay.smtp.port;
      expect(await send(port, 'mary@sub.test', 'mary-1')).toMatch(/^250 /);
      expect(await send(port, 'mary-jane@sub.test', 'mary-jane-1')).toMatch(/^250 /);
      expect(await send(port, 'mary@sub.test', 'mary-2')).toMatch(/^250 /);
      await waitFor(() => subjects(neu, 'mary@sub.test').length === 2, {
        what: "mary's two on the secondary",
      });
      await waitFor(() => subjects(old, 'mary-jane@sub.test').includes('mary-jane-1'), {
        what: 'mary-jane on the primary',
      });
      expect(subjects(neu, 'mary@sub.test')).toEqual(['mary-1', 'mary-2']);
      // no delivery of mary's mail was tried on the primary (it would have refused it: a bounce)
      expect(old.for('mary@sub.test')).toEqual([]);
      expect(old.rcpts.filter((x) => x.address === 'mary@sub.test').map((x) => x.code)).toEqual([550]);
    } finally {
      await r.close();
      await old.close();
      await neu.close();
    }
  });
});

describe('the deadline of a probe', () => {
  const cleanups: (() => unknown)[] = [];
  const { scripted, takeErrors } = scriptedServers(cleanups);
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
    expect(takeErrors()).toEqual([]);
  });

  /** Sessions whose client (the relay) has closed the connection. */
  const closedSessions = new Set<ScriptedSession>();

  /** A server that answers MAIL at once and `atRcpt` after RCPT; RSET (unless not `answerRset`) and QUIT as usual. */
  const server = (atRcpt: (s: ScriptedSession) => Promise<void>, answerRset = true) =>
    scripted(async (s) => {
      void s.closed.then(() => closedSessions.add(s));
      await s.hello(['PIPELINING']);
      for (;;) {
        const line = await s.line();
        if (line === undefined) return;
        if (line.startsWith('MAIL FROM:')) await s.reply('250 2.1.0 ok');
        else if (line.startsWith('RCPT TO:')) await atRcpt(s);
        else if (line === 'RSET') {
          if (answerRset) await s.reply('250 2.0.0 ok');
        } else if (line === 'QUIT') {
          await s.reply('221 2.0.0 bye');
          s.end();
          return;
        } else await s.reply('502 5.5.2 not here');
      }
    });

  /** A tarpit's RCPT reply: "250 " and then one byte every 400 ms, a line that never ends. */
  const dribble = async (s: ScriptedSession): Promise<void> => {
    await s.write('250 ');
    const t = setInterval(() => void s.write('x'), 400);
    await s.closed;
    clearInterval(t);
  };

  it('a tarpit dribbling its RCPT reply: three clients, one connection, each answered 451 4.4.3 within 2 x the timeout', async () => {
    const tarpit = await server(dribble);
    const neu = await startSmtpPeer('new');
    cleanups.push(() => neu.close());
    const TIMEOUT_MS = 1000;
    const r = await startRelay({ 'split.yaml': splitDomain('split.test', tarpit.port, neu.port) }, [
      '--callout-timeout',
      `${TIMEOUT_MS}ms`,
      '--callout-connections',
      '1',
    ]);
    cleanups.push(() => r.close());
    const replies = await Promise.all(
      ['a', 'b', 'c'].map((who) => rcpt(r.relay.smtp.port, `${who}@split.test`)),
    );
    for (const { reply, ms } of replies) {
      expect(reply).toMatch(/^451 4\.4\.3 /);
      expect(ms).toBeLessThan(2 * TIMEOUT_MS + 1500);
    }
    // the connection the deadline ended is closed, not reused: each RCPT the tarpit saw came on a connection of its own
    expect(tarpit.connections).toBeGreaterThan(0);
    await waitFor(() => tarpit.sessions.every((s) => closedSessions.has(s)), {
      what: 'every tarpit connection closed by the relay',
    });
    // (a connection a waiter opened just before its own deadline may have got no further than EHLO or MAIL)
    for (const s of tarpit.sessions)
      expect(s.lines.filter((l) => l.startsWith('RCPT')).length).toBeLessThanOrEqual(1);
    expect(neu.rcpts).toEqual([]);
  });

  it('RSET is not waited for: the RCPT answer comes at once, and the connection is not reused before RSET is through', async () => {
    const silentRset = await server((s) => s.reply('550 5.1.1 no such user'), false);
    const neu = await startSmtpPeer('new');
    cleanups.push(() => neu.close());
    const TIMEOUT_MS = 3000;
    const r = await startRelay({ 'split.yaml': splitDomain('split.test', silentRset.port, neu.port) }, [
      '--callout-timeout',
      `${TIMEOUT_MS}ms`,
      '--callout-connections',
      '1',
    ]);
    cleanups.push(() => r.close());
    const first = await rcpt(r.relay.smtp.port, 'nobody@split.test');
    // absent on the primary: accepted for the secondary, without waiting for the RSET reply that never comes
    expect(first.reply).toMatch(/^250 /);
    expect(first.ms).toBeLessThan(TIMEOUT_MS / 2);
    // the next probe does not go down the connection whose RSET is unanswered: a new one, once that one is closed
    const second = await rcpt(r.relay.smtp.port, 'other@split.test');
    expect(second.reply).toMatch(/^250 /);
    expect(silentRset.connections).toBe(2);
    expect(silentRset.sessions[0]?.lines.filter((l) => l.startsWith('RCPT'))).toEqual([
      'RCPT TO:<nobody@split.test>',
    ]);
  });
});

describe('a server that gives no answer is named in the log', () => {
  it('MAIL FROM:<> refused: 451 4.4.3 for each recipient, and one warning with the server and its reply', async () => {
    const old = await startSmtpPeer('old', {
      mail: (from) =>
        from === '' ? { code: 550, message: '5.7.1 null sender not accepted here' } : undefined,
    });
    const neu = await startSmtpPeer('new');
    const warnings: Record<string, unknown>[] = [];
    const logger = pino(
      { level: 'warn' },
      {
        write(line: string) {
          const o = JSON.parse(line) as Record<string, unknown>;
          if (typeof o.msg === 'string' && o.msg.startsWith('recipient verification got no answer'))
            warnings.push(o);
        },
      },
    );
    const r = await startRelay({ 'split.yaml': splitDomain('split.test', old.port, neu.port) }, [], {
      logger,
    });
    try {
      for (const who of ['a', 'b', 'c'])
        expect((await rcpt(r.relay.smtp.port, `${who}@split.test`)).reply).toMatch(/^451 4\.4\.3 /);
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toMatchObject({
        server: 'old',
        host: '127.0.0.1',
        port: old.port,
        result: 'failed',
        reply: 'MAIL FROM:<>: 550 5.7.1 null sender not accepted here',
      });
    } finally {
      await r.close();
      await old.close();
      await neu.close();
    }
  });
});

describe('Unicode normalization of the cache key', () => {
  it('josé@ in NFC, then in NFD: one callout, both answered from it', async () => {
    const nfc = 'jos\u00e9@utf8.test';
    const nfd = 'jose\u0301@utf8.test';
    const old = await startSmtpPeer('old', {
      rcpt: (a) => (a.normalize('NFC') === nfc ? undefined : { code: 550, message: '5.1.1 no such user' }),
    });
    const neu = await startSmtpPeer('new');
    const r = await startRelay({ 'utf8.yaml': splitDomain('utf8.test', old.port, neu.port) });
    try {
      expect((await rcpt(r.relay.smtp.port, nfc, true)).reply).toMatch(/^250 /);
      expect((await rcpt(r.relay.smtp.port, nfd, true)).reply).toMatch(/^250 /);
      // (the catch-all probe that follows an `exists`, mailrouteprobe...@utf8.test, is no callout about josé)
      expect(old.rcpts.map((x) => x.address).filter((a) => !a.startsWith('mailrouteprobe'))).toEqual([nfc]);
    } finally {
      await r.close();
      await old.close();
      await neu.close();
    }
  });
});
