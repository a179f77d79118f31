// A mailbox with a UTF-8 local part (SMTPUTF8, RFC 6531) listed in a Split domain's accounts: a real relay (startRelay)
// and real smtp-server peers. The accounts list names josé@xn--mnchen-3ya.test (é as U+00E9, NFC); a client sends
// RCPT TO:<josé@münchen.test> with SMTPUTF8, in NFC or in NFD (e + U+0301, as some macOS input produces). Both spellings
// are accepted at RCPT and delivered to the primary, the mailbox of record, with the local part as the client wrote it
// (the domain in U-labels on an SMTPUTF8 leg, as relay/delivery/envelope.ts shapes it).
// Before the fix the manifest was refused (`must be an email address`), and without the entry the mailbox got
// 550 5.1.1 under unknownRecipients: Reject, or went to the secondary under Secondary.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSmtpPeer, type SmtpPeer } from '../support/smtp-peer.ts';
import { waitFor } from '../support/wait.ts';
import { RawSmtp, code } from './raw-client.ts';
import { domainManifests, queuedId, queuedView, startRelay, type InProcessRelay } from './relay-harness.ts';

/** münchen.test: unknownRecipients Reject */
const REJECT = 'xn--mnchen-3ya.test';
/** bücher.test: unknownRecipients Secondary */
const SECONDARY = 'xn--bcher-kva.test';
const NFC = 'jos\u00e9';
const NFD = 'jose\u0301';

describe('Split: an accounts entry with a UTF-8 local part', () => {
  let primary: SmtpPeer;
  let secondary: SmtpPeer;
  let r: InProcessRelay;

  const split = (domain: string, unknown: string): string =>
    domainManifests({
      domain,
      servers: [
        `name: old, host: 127.0.0.1, port: ${primary.port}, tls: None`,
        `name: new, host: 127.0.0.1, port: ${secondary.port}, tls: None`,
      ],
      extraDomain: `  accounts:\n    - server: old\n      addresses: [alice@${domain}, ${NFC}@${domain}]\n`,
      policy: `  mode: Split\n  primary: old\n  secondary: new\n  split: {unknownRecipients: ${unknown}}\n`,
    });

  beforeAll(async () => {
    primary = await startSmtpPeer('primary');
    secondary = await startSmtpPeer('secondary');
    r = await startRelay({
      'reject.yaml': split(REJECT, 'Reject'),
      'secondary.yaml': split(SECONDARY, 'Secondary'),
    });
  });
  afterAll(async () => {
    await r?.close();
    await primary?.close();
    await secondary?.close();
  });

  /** The queue id of each message accepted by send(), by subject. */
  const ids = new Map<string, string>();
  /** One SMTPUTF8 transaction: the RCPT replies, and the message's reply when a recipient was accepted. */
  async function send(subject: string, rcpts: string[]): Promise<string[]> {
    const c = await RawSmtp.connect(r.relay.smtp.port);
    const utf8 = async (line: string): Promise<string> => {
      c.write(Buffer.from(`${line}\r\n`, 'utf8'));
      return c.reply();
    };
    try {
      await c.reply();
      expect(code(await c.cmd('EHLO client.test'))).toBe(250);
      expect(await utf8('MAIL FROM:<sender@origin.test> SMTPUTF8')).toMatch(/^250 /);
      const replies: string[] = [];
      for (const to of rcpts) replies.push(await utf8(`RCPT TO:<${to}>`));
      if (replies.some((x) => x.startsWith('250'))) {
        expect(code(await c.cmd('DATA'))).toBe(354);
        c.write(`Subject: ${subject}\r\n\r\nhello\r\n.\r\n`);
        ids.set(subject, queuedId(await c.reply()));
      }
      return replies;
    } finally {
      c.close();
    }
  }

  const delivered = async (peer: SmtpPeer, subject: string) => {
    const of = () => peer.messages.filter((m) => m.raw.includes(`Subject: ${subject}`));
    await waitFor(() => of().length > 0, { what: `${subject} delivered`, timeoutMs: 10_000 });
    return of();
  };

  it.each([
    ['unknownRecipients: Reject', REJECT, 'münchen.test'],
    ['unknownRecipients: Secondary', SECONDARY, 'bücher.test'],
  ])(
    '%s: josé@ in NFC and in NFD is accepted and delivered to the primary as written',
    async (_what, domain, uLabel) => {
      const subject = `utf8-local-${domain}`;
      const replies = await send(subject, [`${NFC}@${uLabel}`, `${NFD}@${uLabel}`]);
      expect(replies.map((x) => x.slice(0, 3))).toEqual(['250', '250']);
      const [m, ...more] = await delivered(primary, subject);
      expect(more).toEqual([]);
      // the local part as the client wrote it; the domain in U-labels, as nodemailer shapes an envelope whose local
      // part needs SMTPUTF8 (relay/delivery/envelope.ts)
      const want = [`${NFC}@${uLabel}`, `${NFD}@${uLabel}`];
      expect([...m!.rcptTo].sort()).toEqual([...want].sort());
      // relayed with SMTPUTF8 (the peer refuses a UTF-8 address without it)
      const seen = primary.rcpts.filter((x) => want.includes(x.address));
      expect(seen.map((x) => `${x.code} ${x.smtputf8 === true}`)).toEqual(['250 true', '250 true']);
      // Split: the listed mailbox is on the primary only (every leg is done once the message leaves the queue)
      await waitFor(async () => (await queuedView(r, ids.get(subject)!)) === undefined, {
        what: 'the message gone from the queue',
      });
      expect(secondary.messages.filter((x) => x.raw.includes(`Subject: ${subject}`))).toEqual([]);
    },
  );

  it('a mailbox not listed is still refused under Reject', async () => {
    const replies = await send('utf8-local-unknown', [`ren\u00e9@münchen.test`]);
    expect(replies[0]).toMatch(/^550 5\.1\.1 /);
  });
});
