// 8-bit bodies (RFC 6152). The relay offers 8BITMIME and records BODY=8BITMIME at accept; it must say so again to the
// servers it delivers to, or a strict server refuses the body (Postfix with strict_8bitmime: "554 5.6.0 Improper use
// of 8-bit data in message body"), and a refused primary leg bounces. Before, MAIL FROM never carried BODY=8BITMIME.
// A real relay (runRelay), python smtplib as the client, smtp-server peers: a strict one that offers 8BITMIME and an
// older one that does not (it gets the body as it is, without the parameter).
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSmtpPeer, type SmtpPeer } from '../support/smtp-peer.ts';
import { waitFor } from '../support/wait.ts';
import { makeSelfSigned } from '../support/tls.ts';
import { domainManifests, dualDomain, startRelay, type InProcessRelay } from './relay-harness.ts';

const run = promisify(execFile);

/** Postfix's strict_8bitmime_body: 8-bit bytes in a body sent without BODY=8BITMIME are refused. */
const STRICT = (m: { raw: Buffer; bodyType: string }): { code: number; message: string } | undefined =>
  m.bodyType !== '8bitmime' && m.raw.some((b) => b > 0x7f)
    ? { code: 554, message: '5.6.0 Improper use of 8-bit data in message body' }
    : undefined;

describe('8-bit bodies: BODY=8BITMIME is passed on', () => {
  let strict: SmtpPeer;
  let older: SmtpPeer;
  /** Strict too, and wants STARTTLS, then AUTH: the 8BITMIME it offers is read from the EHLO after STARTTLS. */
  let secure: SmtpPeer;
  let relay: InProcessRelay;

  beforeAll(async () => {
    strict = await startSmtpPeer('strict', {
      data: STRICT,
      rcpt: (a) => (a === 'nobody@eight.test' ? { code: 550, message: '5.1.1 no such user' } : undefined),
    });
    older = await startSmtpPeer('older', {}, undefined, { hide8BitMime: true });
    secure = await startSmtpPeer('secure', { data: STRICT }, undefined, {
      tls: makeSelfSigned(),
      auth: { user: 'relay-user', pass: 's3cret' },
      authRequiresTls: true,
    });
    relay = await startRelay({
      'd.yaml': dualDomain('eight.test', strict.port, older.port),
      's.yaml': `${domainManifests({
        domain: 'tls8.test',
        servers: [
          `name: main, host: 127.0.0.1, port: ${secure.port}, tls: Required, authSecretRef: {name: tls8-smtp}`,
        ],
        policy: '  mode: Direct\n  primary: main\n',
      })}---
apiVersion: v1
kind: Secret
metadata: {name: tls8-smtp, labels: {mailroute.io/smtp-auth: "true"}}
stringData: {username: relay-user, password: s3cret}
`,
    });
  });
  afterAll(async () => {
    await relay?.close();
    await strict?.close();
    await older?.close();
    await secure?.close();
  });

  /** Sends with python smtplib; mailOptions: MAIL FROM parameters. The body is given as Python bytes literal text. */
  const send = async (
    to: string,
    body: string,
    mailOptions: string[],
    from = 'sender@outside.test',
  ): Promise<void> => {
    const py = `
import smtplib
s = smtplib.SMTP('127.0.0.1', ${relay.relay.smtp.port})
s.ehlo('py.test')
refused = s.sendmail('${from}', ['${to}'], ${body}, mail_options=${JSON.stringify(mailOptions)})
assert refused == {}, refused
s.quit()
print('ok')
`;
    const { stdout } = await run('python3', ['-c', py]);
    expect(stdout.trim()).toBe('ok');
  };

  it('a body sent with BODY=8BITMIME reaches the strict server with it, and the older one without, unchanged', async () => {
    await send(
      'anna@eight.test',
      `'Subject: eight\\r\\nContent-Type: text/plain; charset=utf-8\\r\\nContent-Transfer-Encoding: 8bit\\r\\n\\r\\ncaf\\u00e9 cr\\u00e8me\\r\\n'.encode('utf-8')`,
      ['BODY=8BITMIME'],
    );
    await waitFor(
      () => strict.for('anna@eight.test').length === 1 && older.for('anna@eight.test').length === 1,
      {
        what: 'the 8-bit message on both servers',
      },
    );
    const [primary] = strict.for('anna@eight.test');
    const [copy] = older.for('anna@eight.test');
    expect(primary?.bodyType).toBe('8bitmime');
    expect(copy?.bodyType).toBe('7bit');
    for (const m of [primary, copy]) expect(m?.raw.toString('utf8')).toContain('café crème\r\n');
    expect(strict.messages.filter((m) => m.mailFrom === '')).toEqual([]); // no DSN
  });

  it('a 7-bit message goes on without the parameter', async () => {
    await send('bert@eight.test', `b'Subject: seven\\r\\n\\r\\nplain\\r\\n'`, []);
    await waitFor(() => strict.for('bert@eight.test').length === 1, { what: 'the 7-bit message' });
    expect(strict.for('bert@eight.test')[0]?.bodyType).toBe('7bit');
  });

  it('a DSN that quotes 8-bit headers is sent with BODY=8BITMIME (a strict server took it)', async () => {
    await send(
      'nobody@eight.test',
      `'Subject: r\\u00e9sum\\u00e9\\r\\n\\r\\nhello\\r\\n'.encode('utf-8')`,
      ['BODY=8BITMIME'],
      'writer@eight.test',
    );
    const dsn = await waitFor(() => strict.for('writer@eight.test').find((m) => m.mailFrom === ''), {
      what: 'the DSN to writer@eight.test on the strict server',
    });
    expect(dsn.bodyType).toBe('8bitmime');
    expect(dsn.raw.toString('utf8')).toContain('Subject: résumé');
  });

  it('to a server that wants STARTTLS and AUTH: BODY=8BITMIME after the TLS session, delivered as the user', async () => {
    await send('tina@tls8.test', `'Subject: tls\\r\\n\\r\\nna\\u00efve\\r\\n'.encode('utf-8')`, [
      'BODY=8BITMIME',
    ]);
    const m = await waitFor(() => secure.for('tina@tls8.test')[0], {
      what: 'the 8-bit message at the secure server',
    });
    expect(m).toMatchObject({ bodyType: '8bitmime', secure: true, user: 'relay-user' });
    expect(m.raw.toString('utf8')).toContain('naïve\r\n');
  });
});
