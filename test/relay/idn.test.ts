// Internationalised domains end to end: the relay works on A-labels throughout. A real relay (runRelay)
// with a managed punycode domain, fed by swaks, python smtplib, nodemailer and a raw socket, delivering to peers that
// record the envelope exactly as sent. Before the fix smtp-server rewrote every lowercase xn-- domain to Unicode:
// every sender at a punycode domain got 553 5.6.7 and the managed xn-- domain could not receive mail.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import nodemailer from 'nodemailer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSmtpPeer, type SmtpPeer } from '../support/smtp-peer.ts';
import { waitFor } from '../support/wait.ts';
import { RawSmtp, code } from './raw-client.ts';
import { dualDomain, startRelay, type InProcessRelay } from './relay-harness.ts';

const run = promisify(execFile);
/** münchen.test */
const IDN = 'xn--mnchen-3ya.test';
/** bücher.example: a sender's punycode domain (not managed). */
const SENDER_IDN = 'xn--bcher-kva.example';

describe('IDN: A-labels throughout', () => {
  let primary: SmtpPeer;
  let copy: SmtpPeer;
  let r: InProcessRelay;
  let port: number;

  beforeAll(async () => {
    primary = await startSmtpPeer('primary');
    copy = await startSmtpPeer('copy');
    r = await startRelay({
      'idn.yaml': dualDomain(IDN, primary.port, copy.port, { mode: 'Direct' }),
      'plain.yaml': dualDomain('plain.test', primary.port, copy.port, { mode: 'Direct' }),
    });
    port = r.relay.smtp.port;
  });
  afterAll(async () => {
    await r?.close();
    await primary?.close();
    await copy?.close();
  });

  const bySubject = (subject: string) =>
    primary.messages.filter((m) => m.raw.includes(`Subject: ${subject}`));
  const deliveredOnce = async (subject: string) => {
    await waitFor(() => bySubject(subject).length > 0, { what: `${subject} delivered`, timeoutMs: 10_000 });
    const [m] = bySubject(subject);
    return m!;
  };

  it('swaks: a sender at a punycode domain gets 250 and is relayed with the A-label envelope', async () => {
    const { stdout } = await run('swaks', [
      '--server',
      `127.0.0.1:${port}`,
      '--from',
      `alice@${SENDER_IDN}`,
      '--to',
      'bob@plain.test',
      '--header',
      'Subject: idn-swaks',
    ]);
    expect(stdout).toMatch(/<- {2}250 2\.1\.0/);
    const m = await deliveredOnce('idn-swaks');
    expect(m.mailFrom).toBe(`alice@${SENDER_IDN}`);
    expect(m.rcptTo).toEqual(['bob@plain.test']);
  });

  it('python smtplib: the managed xn-- domain receives mail, in lower, upper and mixed case, from an A-label sender', async () => {
    const py = `
import smtplib
s = smtplib.SMTP('127.0.0.1', ${port})
s.ehlo('py.test')
for to, subj in (('carol@${IDN}', 'idn-lower'), ('dave@${IDN.toUpperCase()}', 'idn-upper'), ('erin@Xn--MNchen-3ya.Test', 'idn-mixed')):
    refused = s.sendmail('py@${SENDER_IDN}', [to], 'Subject: %s\\r\\n\\r\\nhello\\r\\n' % subj)
    assert refused == {}, refused
s.quit()
print('ok')
`;
    const { stdout } = await run('python3', ['-c', py]);
    expect(stdout.trim()).toBe('ok');
    for (const [subject, local] of [
      ['idn-lower', 'carol'],
      ['idn-upper', 'dave'],
      ['idn-mixed', 'erin'],
    ] as const) {
      const m = await deliveredOnce(subject);
      expect(m.mailFrom).toBe(`py@${SENDER_IDN}`);
      // the domain is lowercased (the routing key), the local part kept
      expect(m.rcptTo).toEqual([`${local}@${IDN}`]);
    }
  });

  it('nodemailer: A-label sender and recipient', async () => {
    const t = nodemailer.createTransport({ host: '127.0.0.1', port, secure: false, ignoreTLS: true });
    try {
      const info = await t.sendMail({
        from: `nm@${SENDER_IDN}`,
        to: `frank@${IDN}`,
        subject: 'idn-nodemailer',
        text: 'hello',
      });
      expect(info.response).toMatch(/^250 /);
    } finally {
      t.close();
    }
    const m = await deliveredOnce('idn-nodemailer');
    expect(m.mailFrom).toBe(`nm@${SENDER_IDN}`);
    expect(m.rcptTo).toEqual([`frank@${IDN}`]);
  });

  it('raw: a U-label recipient with SMTPUTF8 routes to the managed xn-- domain and is relayed in A-label form; without SMTPUTF8 it gets 553 5.6.7', async () => {
    const c = await RawSmtp.connect(port);
    const utf8 = async (line: string): Promise<string> => {
      c.write(Buffer.from(`${line}\r\n`, 'utf8'));
      return c.reply();
    };
    try {
      await c.reply();
      expect(code(await c.cmd('EHLO raw.test'))).toBe(250);
      expect(await utf8('MAIL FROM:<raw@bücher.example> SMTPUTF8')).toMatch(/^250 /);
      expect(await utf8('RCPT TO:<gina@MÜNCHEN.test>')).toMatch(/^250 /);
      expect(code(await c.cmd('DATA'))).toBe(354);
      c.write('Subject: idn-utf8\r\n\r\nhello\r\n.\r\n');
      expect(await c.reply()).toMatch(/^250 /);
      // a Unicode address without SMTPUTF8 is still refused (RFC 6531), an A-label one never is
      expect(await utf8('MAIL FROM:<raw@bücher.example>')).toMatch(/^553 5\.6\.7 /);
      expect(await utf8(`MAIL FROM:<raw@${SENDER_IDN}>`)).toMatch(/^250 /);
      expect(await utf8('RCPT TO:<gina@münchen.test>')).toMatch(/^553 5\.6\.7 /);
      expect(await utf8(`RCPT TO:<gina@${IDN}>`)).toMatch(/^250 /);
      // an unmanaged IDN stays refused in both forms
      expect(await utf8(`RCPT TO:<x@${SENDER_IDN}>`)).toMatch(/^554 5\.7\.1 /);
    } finally {
      c.close();
    }
    const m = await deliveredOnce('idn-utf8');
    expect(m.rcptTo).toEqual([`gina@${IDN}`]);
  });
});
