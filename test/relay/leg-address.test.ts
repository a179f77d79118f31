// Every leg of an accepted recipient goes to an address the spool reads back. A copy address is made at RCPT (the
// recipient's local part at the policy's copyRecipientDomain), so only then can it be too long: a local part of 64
// octets at a long alias domain passes 254 characters. Such a message used to be accepted (250), spooled with that
// leg, and quarantined at the next start: accepted mail lost. The relay defers such a recipient at RCPT instead
// (451 4.3.5), until the policy is fixed. (A forwardTo fixed in a TestRecipient is checked by the compiler:
// routing/compile.test.ts, InvalidAddress.) A real relay (startRelay) and smtp-server peers on 127.0.0.1.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSmtpPeer, type SmtpPeer } from '../support/smtp-peer.ts';
import { waitFor } from '../support/wait.ts';
import { RawSmtp } from './raw-client.ts';
import { dualDomain, startRelay, type InProcessRelay } from './relay-harness.ts';

/** 190 characters in labels of 62: a valid domain, but with a 64-octet local part the address has 255. */
const ALIAS = `${['a', 'b', 'c'].map((c) => c.repeat(62)).join('.')}.test`;
const LONG_LOCAL = 'l'.repeat(64);

describe('a leg address the spool would refuse', () => {
  let primary: SmtpPeer;
  let secondary: SmtpPeer;
  let r: InProcessRelay;

  beforeAll(async () => {
    primary = await startSmtpPeer('old');
    secondary = await startSmtpPeer('new');
    r = await startRelay({
      'pilot.yaml': dualDomain('pilot.test', primary.port, secondary.port, {
        scope: 'All',
        extraPolicy: `    copyRecipientDomain: ${ALIAS}\n`,
      }),
    });
  });

  afterAll(async () => {
    await r?.close();
    await Promise.all([primary?.close(), secondary?.close()]);
  });

  it('defers the recipient at RCPT (451 4.3.5, naming the problem) and keeps the others of the transaction', async () => {
    const c = await RawSmtp.connect(r.relay.smtp.port);
    const [greeting, , mail, long, bob] = await c.begin('s@origin.test', [
      `${LONG_LOCAL}@pilot.test`,
      'bob@pilot.test',
    ]);
    expect(greeting).toMatch(/^220/);
    expect(mail).toMatch(/^250/);
    expect(long).toMatch(/^451 4\.3\.5 Configuration error: .*longer than 254 characters/);
    expect(bob).toMatch(/^250 /);
    expect(await c.cmd('DATA')).toMatch(/^354/);
    c.write('Subject: pilot\r\n\r\nhello\r\n.\r\n');
    expect(await c.reply()).toMatch(/^250 2\.0\.0 queued as /);
    c.close();
    await waitFor(() => primary.for('bob@pilot.test').length === 1, { what: "bob's message on the primary" });
    await waitFor(() => secondary.for(`bob@${ALIAS}`).length === 1, { what: "bob's copy on the secondary" });
    await waitFor(async () => (await r.relay.spool.list()).length === 0, { what: 'the spool empty' });
    expect(primary.messages.flatMap((m) => m.rcptTo)).toEqual(['bob@pilot.test']);
    expect(secondary.messages.flatMap((m) => m.rcptTo)).toEqual([`bob@${ALIAS}`]);
  });
});
