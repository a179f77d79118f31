// A DSN to a sender whose own domain is managed here goes through that domain's policy, like any recipient of it. In
// the middle of a migration that domain is often Split with recipient verification on the old server: the DSN's
// route needs the callout's answer, as an inbound RCPT does. It used to be routed without one, got the policy's
// tempfail ("verification unavailable"), and was dropped as undeliverable. A real relay (startRelay) delivers to
// smtp-server peers on 127.0.0.1; the sender's servers answer the callouts.
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSmtpPeer, type SmtpPeer } from '../support/smtp-peer.ts';
import { waitFor } from '../support/wait.ts';
import { dualDomain, startRelay, submit, type InProcessRelay } from './relay-harness.ts';

const logger = pino({ level: process.env.TEST_LOG ?? 'silent' });

describe('a DSN to a sender whose domain is Split with recipient verification', () => {
  let senderOld: SmtpPeer;
  let senderNew: SmtpPeer;
  let rec: SmtpPeer;
  let r: InProcessRelay;
  let verifyDown = false;

  beforeAll(async () => {
    // the sender domain's old server has alice and carol; it refuses every other mailbox (and is down when asked)
    senderOld = await startSmtpPeer('sender-old', {
      rcpt: (a) => {
        if (verifyDown) return { code: 421, message: '4.3.2 service shutting down' };
        return a === 'alice@sender.test' || a === 'carol@sender.test'
          ? undefined
          : { code: 550, message: '5.1.1 no such user' };
      },
    });
    senderNew = await startSmtpPeer('sender-new');
    // every recipient of rec.test is refused: each message owes its sender a DSN
    rec = await startSmtpPeer('rec', { rcpt: () => ({ code: 550, message: '5.1.1 no such mailbox here' }) });
    r = await startRelay({
      'sender.yaml': dualDomain('sender.test', senderOld.port, senderNew.port, {
        mode: 'Split',
        // a short cache: the "no answer" of the third case is forgotten within a second
        extraDomain: '  recipientVerification: {server: old, cacheTTL: 1s}\n',
      }),
      'rec.yaml': dualDomain('rec.test', rec.port, rec.port, { mode: 'Direct' }),
    });
    logger.debug({ port: r.relay.smtp.port }, 'relay up');
  });

  afterAll(async () => {
    await r?.close();
    await Promise.all([senderOld?.close(), senderNew?.close(), rec?.close()]);
  });

  const dsnKinds = async (): Promise<Record<string, number>> =>
    Object.fromEntries(
      (await r.relay.metrics.dsnSent.get()).values.map((v): [string, number] => [
        String(v.labels.kind),
        v.value,
      ]),
    );

  const send = (from: string, subject: string): Promise<string> =>
    submit(r.relay.smtp.port, { from, to: 'bob@rec.test', subject, text: 'hello' });

  it("a sender with a mailbox on the old server gets the DSN there, after the old server's answer", async () => {
    await send('alice@sender.test', 'to alice');
    const dsn = await waitFor(() => senderOld.for('alice@sender.test')[0], {
      what: "alice's DSN on the old server",
    });
    expect(dsn.mailFrom).toBe('');
    expect(dsn.raw.toString()).toContain('Final-Recipient: rfc822; bob@rec.test');
    expect(senderNew.for('alice@sender.test')).toEqual([]);
    expect((await dsnKinds())['unroutable'] ?? 0).toBe(0);
  });

  it('a sender the old server does not know gets it on the other server (the unknown half of Split)', async () => {
    await send('zed@sender.test', 'to zed');
    const dsn = await waitFor(() => senderNew.for('zed@sender.test')[0], {
      what: "zed's DSN on the new server",
    });
    expect(dsn.mailFrom).toBe('');
    expect(senderOld.for('zed@sender.test')).toEqual([]);
    expect((await dsnKinds())['unroutable'] ?? 0).toBe(0);
  });

  it('while the verification gets no answer the DSN waits (not dropped), and a flush sends it once there is one', async () => {
    verifyDown = true;
    const before = (await dsnKinds())['deferred'] ?? 0;
    await send('carol@sender.test', 'to carol');
    await waitFor(async () => ((await dsnKinds())['deferred'] ?? 0) > before, { what: 'the DSN put off' });
    expect(senderOld.for('carol@sender.test')).toEqual([]);
    expect(senderNew.for('carol@sender.test')).toEqual([]);
    // the message still owes it: it stays queued
    expect((await r.relay.spool.list()).length).toBeGreaterThan(0);
    verifyDown = false;
    // an operator's flush, repeated until the cached "no answer" (a second) is gone: the DSN goes at a flush
    const dsn = await waitFor(
      () => {
        r.relay.delivery.flush();
        return senderOld.for('carol@sender.test')[0];
      },
      { what: "carol's DSN after a flush", intervalMs: 250 },
    );
    expect(dsn.mailFrom).toBe('');
    expect((await dsnKinds())['unroutable'] ?? 0).toBe(0);
  });
});

describe('a DSN to an SMTPUTF8 sender whose managed domain it wrote with U-labels', () => {
  let senderBox: SmtpPeer;
  let trap: SmtpPeer;
  let rec: SmtpPeer;
  let r: InProcessRelay;

  beforeAll(async () => {
    senderBox = await startSmtpPeer('buecher');
    trap = await startSmtpPeer('dsn-relay'); // where a DSN to a domain not managed here would go
    rec = await startSmtpPeer('rec', { rcpt: () => ({ code: 550, message: '5.1.1 no such mailbox here' }) });
    r = await startRelay(
      {
        'buecher.yaml': dualDomain('xn--bcher-kva.example', senderBox.port, senderBox.port, {
          mode: 'Direct',
        }),
        'rec.yaml': dualDomain('rec.test', rec.port, rec.port, { mode: 'Direct' }),
      },
      ['--dsn-relay', `127.0.0.1:${trap.port}`],
    );
  });

  afterAll(async () => {
    await r?.close();
    await Promise.all([senderBox?.close(), trap?.close(), rec?.close()]);
  });

  it("gets it through its domain's policy, as the A-label sender does (it went by MX to the relay itself: a loop)", async () => {
    await submit(r.relay.smtp.port, {
      from: 'jörg@bücher.example',
      to: 'bob@rec.test',
      subject: 'idn',
      text: 'hi',
    });
    const dsn = await waitFor(() => senderBox.messages.find((m) => m.mailFrom === ''), {
      what: "the DSN at the sender domain's server",
    });
    expect(dsn.rcptTo).toEqual(['jörg@bücher.example']);
    expect(trap.messages).toEqual([]);
  });
});
