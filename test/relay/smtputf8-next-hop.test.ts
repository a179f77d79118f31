// A message for a mailbox with a UTF-8 local part (taken with SMTPUTF8, RFC 6531) whose servers do not offer SMTPUTF8:
// a real relay (startRelay) and smtp-server peers on 127.0.0.1 that leave SMTPUTF8 out of their EHLO reply but, like
// many servers, still take a raw UTF-8 address (storing the mail under whatever the name becomes). The relay used to
// send the address raw; it now refuses that leg with 553 5.6.7 and delivers the message's other recipients.
// rec.test is Dual (copy for the whole domain) to two such servers; sender.test, the sender's domain, is managed here
// on a server that does offer SMTPUTF8, so the DSNs can be counted.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSmtpPeer, type SmtpPeer } from '../support/smtp-peer.ts';
import { waitFor } from '../support/wait.ts';
import { RawSmtp, code } from './raw-client.ts';
import { dualDomain, queuedId, queuedView, startRelay, type InProcessRelay } from './relay-harness.ts';

const isDsn = (m: SmtpPeer['messages'][number]): boolean =>
  m.mailFrom === '' && /delivery-status/i.test(m.raw.toString('utf8'));

describe('a UTF-8 local part to servers without SMTPUTF8', () => {
  let old: SmtpPeer;
  let neu: SmtpPeer;
  let senderBox: SmtpPeer;
  let r: InProcessRelay;

  beforeAll(async () => {
    old = await startSmtpPeer('old', {}, undefined, { hideSmtpUtf8: true });
    neu = await startSmtpPeer('new', {}, undefined, { hideSmtpUtf8: true });
    senderBox = await startSmtpPeer('sender');
    r = await startRelay({
      'rec.yaml': dualDomain('rec.test', old.port, neu.port, { mode: 'Dual', scope: 'All' }),
      'sender.yaml': dualDomain('sender.test', senderBox.port, senderBox.port, { mode: 'Direct' }),
    });
  });
  afterAll(async () => {
    await r?.close();
    await Promise.all([old?.close(), neu?.close(), senderBox?.close()]);
  });

  it('the ASCII recipient is delivered on both legs; the UTF-8 one is bounced once (its primary leg), 5.6.7, never sent raw', async () => {
    const c = await RawSmtp.connect(r.relay.smtp.port);
    const utf8 = async (line: string): Promise<string> => {
      c.write(Buffer.from(`${line}\r\n`, 'utf8'));
      return c.reply();
    };
    let id: string;
    try {
      await c.reply();
      expect(code(await c.cmd('EHLO client.test'))).toBe(250);
      expect(await utf8('MAIL FROM:<alice@sender.test> SMTPUTF8')).toMatch(/^250 /);
      expect(await utf8('RCPT TO:<josé@rec.test>')).toMatch(/^250 /);
      expect(await utf8('RCPT TO:<bob@rec.test>')).toMatch(/^250 /);
      expect(code(await c.cmd('DATA'))).toBe(354);
      c.write('Subject: utf8-next-hop\r\n\r\nhello\r\n.\r\n');
      id = queuedId(await c.reply());
    } finally {
      c.close();
    }
    // every leg ends (553 is final): the message leaves the queue
    await waitFor(async () => (await queuedView(r, id)) === undefined, {
      what: 'message done',
      timeoutMs: 15_000,
    });
    const rcpts = (p: SmtpPeer): string[][] =>
      p.messages.filter((m) => m.raw.includes('Subject: utf8-next-hop')).map((m) => m.rcptTo);
    expect(rcpts(old)).toEqual([['bob@rec.test']]);
    expect(rcpts(neu)).toEqual([['bob@rec.test']]);
    // one DSN, for the primary leg of josé (the copy's failure is never bounced), with the reason
    await waitFor(() => senderBox.messages.some(isDsn), { what: 'DSN', timeoutMs: 15_000 });
    const dsns = senderBox.messages.filter(isDsn);
    expect(dsns).toHaveLength(1);
    const text = dsns[0]?.raw.toString('utf8') ?? '';
    // the address in the DSN's ASCII form (RFC 6533 \x{HEX}), the relay's own refusal as the diagnostic
    expect(text).toMatch(/^Final-Recipient: utf-8; jos\\x\{E9\}@rec\.test$/m);
    expect(text).toMatch(/^Status: 5\.6\.7$/m);
    expect(text).toMatch(
      /553 5\.6\.7 SMTPUTF8 is required for\s+<jos\\x\{E9\}@rec\.test>, but was not offered by host 127\.0\.0\.1/,
    );
    expect(dsns[0]?.rcptTo).toEqual(['alice@sender.test']);
  });
});
