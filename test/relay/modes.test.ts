// Every routing mode end to end over SMTP: a real relay (runRelay) fed by nodemailer, swaks and python smtplib,
// delivering to two scriptable smtp-server peers ("old" and "new"). Each domain below exercises one row of the
// docs/design.md §2 semantics table; the assertions are on what each peer actually received (envelope recipients).
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import nodemailer from 'nodemailer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SMTPServer } from 'smtp-server';
import { startSmtpPeer, type SmtpPeer } from '../support/smtp-peer.ts';
import { waitFor } from '../support/wait.ts';
import { dualDomain, startRelay, type InProcessRelay } from './relay-harness.ts';

const run = promisify(execFile);

describe('relay modes end to end', () => {
  let oldPeer: SmtpPeer;
  let newPeer: SmtpPeer;
  let r: InProcessRelay;
  let port: number;
  let calloutsForNobody = 0;
  // A destination that requires AUTH: what it received, and with which user.
  const authed: { user: string; rcpt: string[] }[] = [];
  let authServer: SMTPServer | undefined;

  beforeAll(async () => {
    oldPeer = await startSmtpPeer('old', {
      rcpt: (a) => {
        if (a === 'nobody@verify.test') {
          calloutsForNobody++;
          return { code: 550, message: '5.1.1 no such user' };
        }
        return undefined;
      },
    });
    newPeer = await startSmtpPeer('new');
    authServer = new SMTPServer({
      authMethods: ['PLAIN', 'LOGIN'],
      allowInsecureAuth: true,
      disabledCommands: ['STARTTLS'],
      greetingDelay: 0,
      logger: false,
      onAuth(auth, _session, cb) {
        if (auth.username === 'relay-user' && auth.password === 's3cret')
          return cb(null, { user: auth.username });
        cb(new Error('bad credentials'));
      },
      onData(stream, session, cb) {
        stream.resume();
        stream.on('end', () => {
          authed.push({ user: String(session.user), rcpt: session.envelope.rcptTo.map((r) => r.address) });
          cb(null);
        });
      },
    });
    const authSrv = authServer;
    await new Promise<void>((ok) => authSrv.listen(0, '127.0.0.1', () => ok()));
    const authAddr = authSrv.server.address();
    const authPort = typeof authAddr === 'object' && authAddr !== null ? authAddr.port : 0;
    const o = oldPeer.port;
    const n = newPeer.port;
    r = await startRelay({
      'direct.yaml': dualDomain('direct.test', o, n, { mode: 'Direct' }),
      'all.yaml': dualDomain('all.test', o, n, { scope: 'All' }),
      'tr.yaml': `${dualDomain('tr.test', o, n, { scope: 'TestRecipients' })}---
apiVersion: mailroute.io/v1alpha1
kind: TestRecipient
metadata: {name: alice}
spec:
  policyRef: {name: tr-test}
  address: alice@tr.test
  forwardTo: alice@tr-copy.test
---
apiVersion: mailroute.io/v1alpha1
kind: TestRecipient
metadata: {name: carol}
spec:
  policyRef: {name: tr-test}
  address: carol@tr.test
  keepPrimaryCopy: false
`,
      'acc.yaml': dualDomain('acc.test', o, n, {
        scope: 'Accounts',
        extraPolicy: '    copyRecipientDomain: acc-copy.test\n',
        extraDomain: '  accounts:\n    - {server: new, addresses: [dave@acc.test]}\n',
      }),
      'split.yaml': dualDomain('split.test', o, n, {
        mode: 'Split',
        extraDomain: '  accounts:\n    - {server: old, addresses: [frank@split.test]}\n',
      }),
      'splitrej.yaml': dualDomain('splitrej.test', o, n, {
        mode: 'Split',
        extraPolicy: '  split:\n    unknownRecipients: Reject\n',
        extraDomain: '  accounts:\n    - {server: old, addresses: [hank@splitrej.test]}\n',
      }),
      'auth.yaml': `${dualDomain('auth.test', authPort, n, { mode: 'Direct' }).replace(
        `port: ${authPort}, tls: None}`,
        `port: ${authPort}, tls: None, allowPlaintextAuth: true, authSecretRef: {name: auth-smtp}}`,
      )}---
apiVersion: v1
kind: Secret
metadata: {name: auth-smtp, labels: {mailroute.io/smtp-auth: "true"}}
stringData: {username: relay-user, password: s3cret}
`,
      'verify.yaml': dualDomain('verify.test', o, n, {
        mode: 'Split',
        extraDomain: '  recipientVerification: {server: old, cacheTTL: 1h}\n',
      }),
    });
    port = r.relay.smtp.port;
  });

  afterAll(async () => {
    await r?.close();
    await oldPeer?.close();
    await newPeer?.close();
    await new Promise<void>((ok) => (authServer ? authServer.close(() => ok()) : ok()));
  });

  const send = async (to: string, subject: string): Promise<string> => {
    const t = nodemailer.createTransport({ host: '127.0.0.1', port, secure: false, ignoreTLS: true });
    try {
      const info = await t.sendMail({ from: 'sender@origin.test', to, subject, text: `body of ${subject}` });
      return info.response;
    } finally {
      t.close();
    }
  };
  const subjects = (peer: SmtpPeer, rcpt: string): string[] =>
    peer.for(rcpt).map((m) => /^Subject: (.*)$/m.exec(m.raw.toString())?.[1] ?? '?');
  const delivered = (peer: SmtpPeer, rcpt: string, subject: string) => () =>
    subjects(peer, rcpt).includes(subject);

  it('Direct: the primary only', async () => {
    expect(await send('dan@direct.test', 'direct-1')).toMatch(/^250 /);
    await waitFor(delivered(oldPeer, 'dan@direct.test', 'direct-1'), { what: 'direct delivery' });
    expect(newPeer.for('dan@direct.test')).toEqual([]);
  });

  it('Dual scope All: primary and a copy, both with one Received: header added and the body intact', async () => {
    expect(await send('amy@all.test', 'all-1')).toMatch(/^250 /);
    await waitFor(delivered(oldPeer, 'amy@all.test', 'all-1'), { what: 'primary' });
    await waitFor(delivered(newPeer, 'amy@all.test', 'all-1'), { what: 'copy' });
    for (const peer of [oldPeer, newPeer]) {
      const raw = peer.for('amy@all.test')[0]?.raw.toString() ?? '';
      expect(raw.match(/^Received: /gm)?.length).toBe(1);
      expect(raw).toMatch(
        /^Received: from \S+ \(\[127\.0\.0\.1\]\)\r\n\tby relay\.test \(mailroute relay\.test\) with ESMTP/,
      );
      expect(raw).toContain('body of all-1');
    }
  });

  it('Dual scope TestRecipients: forwardTo copy, keepPrimaryCopy false, and everyone else primary only', async () => {
    await send('alice@tr.test', 'tr-alice');
    await send('carol@tr.test', 'tr-carol');
    await send('bob@tr.test', 'tr-bob');
    await waitFor(delivered(oldPeer, 'alice@tr.test', 'tr-alice'), { what: 'alice primary' });
    await waitFor(delivered(newPeer, 'alice@tr-copy.test', 'tr-alice'), { what: 'alice copy at forwardTo' });
    await waitFor(delivered(newPeer, 'carol@tr.test', 'tr-carol'), { what: 'carol copy' });
    await waitFor(delivered(oldPeer, 'bob@tr.test', 'tr-bob'), { what: 'bob primary' });
    expect(oldPeer.for('carol@tr.test')).toEqual([]);
    expect(newPeer.for('bob@tr.test')).toEqual([]);
    expect(newPeer.for('alice@tr.test')).toEqual([]);
  });

  it('subaddresses (recipientDelimiter, default +) reach the mailbox their base address routes to', async () => {
    // carol moved to the new server only: carol+news must go there too, not to the old one; alice's forwardTo gets
    // the extension; frank+alerts is known on the Split primary by frank's account
    await send('carol+news@tr.test', 'tr-carol-plus');
    await send('alice+news@tr.test', 'tr-alice-plus');
    await send('frank+alerts@split.test', 'split-frank-plus');
    await waitFor(delivered(newPeer, 'carol+news@tr.test', 'tr-carol-plus'), { what: 'carol+news on new' });
    await waitFor(delivered(oldPeer, 'alice+news@tr.test', 'tr-alice-plus'), { what: 'alice+news primary' });
    await waitFor(delivered(newPeer, 'alice+news@tr-copy.test', 'tr-alice-plus'), {
      what: 'alice+news copy at forwardTo with the extension',
    });
    await waitFor(delivered(oldPeer, 'frank+alerts@split.test', 'split-frank-plus'), {
      what: 'frank+alerts on the primary',
    });
    expect(oldPeer.for('carol+news@tr.test')).toEqual([]);
    expect(newPeer.for('frank+alerts@split.test')).toEqual([]);
  });

  it('Dual scope Accounts with copyRecipientDomain (sent with swaks)', async () => {
    for (const [to, subject] of [
      ['dave@acc.test', 'acc-dave'],
      ['erin@acc.test', 'acc-erin'],
    ]) {
      const { stdout } = await run('swaks', [
        '--server',
        `127.0.0.1:${port}`,
        '--from',
        's@origin.test',
        '--to',
        to!,
        '--header',
        `Subject: ${subject}`,
        '--silent',
        '1',
      ]);
      void stdout;
    }
    await waitFor(delivered(oldPeer, 'dave@acc.test', 'acc-dave'), { what: 'dave primary' });
    await waitFor(delivered(newPeer, 'dave@acc-copy.test', 'acc-dave'), {
      what: 'dave copy at copyRecipientDomain',
    });
    await waitFor(delivered(oldPeer, 'erin@acc.test', 'acc-erin'), { what: 'erin primary' });
    expect(newPeer.for('erin@acc-copy.test')).toEqual([]);
    expect(newPeer.for('erin@acc.test')).toEqual([]);
  });

  it('Split both ways: known on the primary -> primary, unknown -> secondary (sent with python smtplib)', async () => {
    const py = `
import smtplib, sys
s = smtplib.SMTP('127.0.0.1', ${port})
s.ehlo('py.test')
for to, subj in (('frank@split.test', 'split-frank'), ('gina@split.test', 'split-gina')):
    refused = s.sendmail('s@origin.test', [to], 'Subject: %s\\r\\n\\r\\nhello\\r\\n' % subj)
    assert refused == {}, refused
s.quit()
print('ok')
`;
    const { stdout } = await run('python3', ['-c', py]);
    expect(stdout.trim()).toBe('ok');
    await waitFor(delivered(oldPeer, 'frank@split.test', 'split-frank'), { what: 'frank on primary' });
    await waitFor(delivered(newPeer, 'gina@split.test', 'split-gina'), { what: 'gina on secondary' });
    expect(newPeer.for('frank@split.test')).toEqual([]);
    expect(oldPeer.for('gina@split.test')).toEqual([]);
  });

  it('Split with unknownRecipients Reject: 550 5.1.1 at RCPT for an unknown mailbox', async () => {
    await expect(send('ivan@splitrej.test', 'rej')).rejects.toThrow(/550 5\.1\.1/);
    expect(await send('hank@splitrej.test', 'rej-hank')).toMatch(/^250 /);
    await waitFor(delivered(oldPeer, 'hank@splitrej.test', 'rej-hank'), { what: 'hank' });
  });

  it('postmaster (RFC 5321 §4.5.1) is accepted and goes to the primary, though the accounts list omits it', async () => {
    expect(await send('PostMaster@splitrej.test', 'rej-postmaster')).toMatch(/^250 /);
    await waitFor(delivered(oldPeer, 'PostMaster@splitrej.test', 'rej-postmaster'), { what: 'postmaster' });
    expect(newPeer.for('PostMaster@splitrej.test')).toEqual([]);
    // in the Split domain without Reject it stays on the primary too (not an unknown recipient for the secondary)
    expect(await send('postmaster@split.test', 'split-postmaster')).toMatch(/^250 /);
    await waitFor(delivered(oldPeer, 'postmaster@split.test', 'split-postmaster'), {
      what: 'postmaster on primary',
    });
    expect(newPeer.for('postmaster@split.test')).toEqual([]);
  });

  it('Split with recipient verification: a real callout decides, and its answer is cached', async () => {
    expect(await send('judy@verify.test', 'verify-judy')).toMatch(/^250 /);
    expect(await send('nobody@verify.test', 'verify-nobody-1')).toMatch(/^250 /);
    expect(await send('nobody@verify.test', 'verify-nobody-2')).toMatch(/^250 /);
    await waitFor(delivered(oldPeer, 'judy@verify.test', 'verify-judy'), { what: 'judy on primary' });
    await waitFor(delivered(newPeer, 'nobody@verify.test', 'verify-nobody-2'), {
      what: 'nobody on secondary',
    });
    expect(calloutsForNobody).toBe(1);
  });

  it('standalone credentials: a Secret in the manifests folder satisfies authSecretRef', async () => {
    expect(await send('olga@auth.test', 'auth-1')).toMatch(/^250 /);
    await waitFor(() => authed.some((a) => a.rcpt.includes('olga@auth.test')), {
      what: 'delivery with AUTH',
    });
    expect(authed.find((a) => a.rcpt.includes('olga@auth.test'))?.user).toBe('relay-user');
  });

  it('a transaction mixing accepted and refused recipients delivers only the accepted ones', async () => {
    const t = nodemailer.createTransport({ host: '127.0.0.1', port, secure: false, ignoreTLS: true });
    const info = await t.sendMail({
      from: 'sender@origin.test',
      to: ['kim@direct.test', 'leo@nowhere.test', 'mia@all.test'],
      subject: 'mixed',
      text: 'x',
    });
    t.close();
    expect(info.accepted.sort()).toEqual(['kim@direct.test', 'mia@all.test']);
    expect(info.rejected).toEqual(['leo@nowhere.test']);
    expect(info.rejectedErrors?.[0]?.message).toMatch(/554 5\.7\.1/);
    await waitFor(delivered(oldPeer, 'kim@direct.test', 'mixed'), { what: 'kim' });
    await waitFor(delivered(newPeer, 'mia@all.test', 'mixed'), { what: 'mia copy' });
    const all = [...oldPeer.messages, ...newPeer.messages].flatMap((m) => m.rcptTo);
    expect(all).not.toContain('leo@nowhere.test');
  });
});
