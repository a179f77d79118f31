// Every leg of an accepted recipient goes to an address the spool reads back. A TestRecipient's forwardTo whose local
// part is longer than 64 octets passes the CRD and the compiler; a message to its address used to be accepted (250),
// spooled with that leg, and quarantined at the next start: accepted mail lost. The relay defers such a recipient at
// RCPT instead (451 4.3.5), until the object is fixed. A real relay (startRelay) and smtp-server peers on 127.0.0.1.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSmtpPeer, type SmtpPeer } from '../support/smtp-peer.ts';
import { waitFor } from '../support/wait.ts';
import { RawSmtp } from './raw-client.ts';
import { dualDomain, startRelay, type InProcessRelay } from './relay-harness.ts';

const LONG = 'l'.repeat(65);

describe('a leg address the spool would refuse', () => {
  let primary: SmtpPeer;
  let secondary: SmtpPeer;
  let r: InProcessRelay;

  beforeAll(async () => {
    primary = await startSmtpPeer('old');
    secondary = await startSmtpPeer('new');
    r = await startRelay({
      'pilot.yaml': `${dualDomain('pilot.test', primary.port, secondary.port, { scope: 'TestRecipients' })}---
apiVersion: mailroute.io/v1alpha1
kind: TestRecipient
metadata: {name: alice}
spec:
  policyRef: {name: pilot-test}
  address: alice@pilot.test
  forwardTo: ${LONG}@fwd.test
  keepPrimaryCopy: false
`,
    });
  });

  afterAll(async () => {
    await r?.close();
    await Promise.all([primary?.close(), secondary?.close()]);
  });

  it('defers the recipient at RCPT (451 4.3.5, naming the problem) and keeps the others of the transaction', async () => {
    const c = await RawSmtp.connect(r.relay.smtp.port);
    const [greeting, , mail, alice, bob] = await c.begin('s@origin.test', [
      'alice@pilot.test',
      'bob@pilot.test',
    ]);
    expect(greeting).toMatch(/^220/);
    expect(mail).toMatch(/^250/);
    expect(alice).toMatch(/^451 4\.3\.5 Configuration error: .*local part longer than 64 octets/);
    expect(bob).toMatch(/^250 /);
    expect(await c.cmd('DATA')).toMatch(/^354/);
    c.write('Subject: pilot\r\n\r\nhello\r\n.\r\n');
    expect(await c.reply()).toMatch(/^250 2\.0\.0 queued as /);
    c.close();
    await waitFor(() => primary.for('bob@pilot.test').length === 1, { what: "bob's message on the primary" });
    await waitFor(async () => (await r.relay.spool.list()).length === 0, { what: 'the spool empty' });
    expect(primary.messages.flatMap((m) => m.rcptTo)).toEqual(['bob@pilot.test']);
    expect(secondary.messages).toEqual([]);
  });
});
