// A DSN with a long server reply: its lines stay within 998 octets (RFC 5322 §2.1.1), or a strict receiver refuses it,
// and a refused DSN (its sender is <>) is dropped: the sender never learns of the failure. The Diagnostic-Code and the
// text part used to carry the reply (up to 1,000 characters and "... (N more)") on one line. A real relay
// (startRelay) delivers to smtp-server peers on 127.0.0.1; the sender's server receives the DSN.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSmtpPeer, type SmtpPeer } from '../support/smtp-peer.ts';
import { waitFor } from '../support/wait.ts';
import { dualDomain, startRelay, submit, type InProcessRelay } from './relay-harness.ts';

// ten sentences of ~115 characters, one reply line of ~1,150 (what a multi-line reply becomes once joined)
const REPLY = Array.from(
  { length: 10 },
  (_, i) =>
    `line ${i}: your message was refused by the policy of this site because of a rule that hits it hard, again and again.`,
).join(' ');

describe('a DSN for a long server reply', () => {
  let senderBox: SmtpPeer;
  let rec: SmtpPeer;
  let r: InProcessRelay;

  beforeAll(async () => {
    senderBox = await startSmtpPeer('sender');
    rec = await startSmtpPeer('rec', { rcpt: () => ({ code: 550, message: `5.7.1 ${REPLY}` }) });
    r = await startRelay({
      'sender.yaml': dualDomain('sender.test', senderBox.port, senderBox.port, { mode: 'Direct' }),
      'rec.yaml': dualDomain('rec.test', rec.port, rec.port, { mode: 'Direct' }),
    });
  });

  afterAll(async () => {
    await r?.close();
    await Promise.all([senderBox?.close(), rec?.close()]);
  });

  it('has no line over 998 octets and is a well-formed multipart/report', async () => {
    await submit(r.relay.smtp.port, {
      from: 'alice@sender.test',
      to: 'bob@rec.test',
      subject: 'long reply',
      text: 'hello',
    });
    const dsn = await waitFor(() => senderBox.for('alice@sender.test')[0], { what: "alice's DSN" });
    expect(dsn.mailFrom).toBe('');
    const raw = dsn.raw.toString('utf8');
    const lines = raw.split('\r\n');
    expect(raw.replace(/\r\n/g, '')).not.toMatch(/[\r\n]/);
    expect(Math.max(...lines.map((l) => Buffer.byteLength(l)))).toBeLessThanOrEqual(998);

    // the structure, by hand (no MIME parser in node_modules): top-level multipart/report and its three parts
    const headEnd = raw.indexOf('\r\n\r\n');
    const head = raw.slice(0, headEnd).replace(/\r\n(?=[ \t])/g, '');
    const ct = /^Content-Type: multipart\/report; report-type=delivery-status;\s*boundary="([^"]+)"$/im.exec(
      head,
    );
    expect(ct).not.toBeNull();
    const boundary = ct?.[1] ?? '';
    const body = raw.slice(headEnd + 4);
    expect(body.endsWith(`\r\n--${boundary}--\r\n`)).toBe(true);
    const parts = body
      .split(new RegExp(`^--${boundary.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(?:--)?\\r$`, 'm'))
      .slice(1, -1)
      .map((p) => {
        const t = p.replace(/^\n/, '');
        const i = t.indexOf('\r\n\r\n');
        return { headers: t.slice(0, i), body: t.slice(i + 4) };
      });
    expect(parts.map((p) => /^Content-Type: ([^;\r\n]+)/im.exec(p.headers)?.[1])).toEqual([
      'text/plain',
      'message/delivery-status',
      'text/rfc822-headers',
    ]);
    // the delivery-status part: header-syntax blocks; unfolded, the whole reply is in Diagnostic-Code
    const status = (parts[1]?.body ?? '').replace(/\r\n(?=[ \t])/g, '');
    const fields = status.split('\r\n').filter((l) => l !== '');
    for (const f of fields) expect(f).toMatch(/^[A-Za-z-]+: \S/);
    const diag = fields.find((f) => f.startsWith('Diagnostic-Code: '));
    expect(diag).toMatch(/^Diagnostic-Code: smtp; 550 5\.7\.1 line 0: .*line 8: .*\.\.\. \(\d+ more\)$/);
    expect(fields).toContain('Final-Recipient: rfc822; bob@rec.test');
    expect(parts[2]?.body).toContain('Subject: long reply\r\n');
  });
});
