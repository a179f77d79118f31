// Fixes and recoveries reach queued mail at once (--manifests mode, in-process relays, real smtp-server peers):
//   - a wrong port corrected in the manifest: the queued message goes to the corrected port at once (its next retry
//     is an hour away);
//   - a rotated Secret (the peer requires AUTH with the new password): delivered at once (its next retry is an hour
//     away);
//   - a server removed from the table: its queued leg is held (not bounced), `queue show` says why, the
//     mailroute_queue_legs_unroutable gauge counts it, and `queue reroute` onto the new server delivers it without
//     delivering the primary again.
//   - a TestRecipient switched to keepPrimaryCopy: false while its primary leg waits on a down server: reroute moves
//     the primary to the copy's mailbox, which has the message already, and does not send it there a second time.
//   - a server that was down and comes back: the copies queued for it go at once (the first new message that
//     reaches it wakes them), not after the hour their retry schedule had reached.
//   - the same after a restart: the relay has not heard from the server since it started, and the first answer
//     from it sends the copies queued during the outage.
//   - the same for a server that refused every transaction with 452 4.3.1 (Exchange's back pressure): it answered,
//     but only to say its mail system is full.
// Each of these failed before: a queued leg carried the server definition it had at accept, and a Secret change
// was ignored until a restart (it is not part of the routing revision).
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { run as queueCli } from '../../cli/commands/queue.ts';
import { freePort } from '../support/net.ts';
import type { MessageView } from '../../relay/admin/view.ts';
import { startSmtpPeer, type PeerOptions, type SmtpPeer } from '../support/smtp-peer.ts';
import { waitFor } from '../support/wait.ts';
import {
  domainManifests,
  dualDomain,
  httpGet,
  metricValue,
  queuedId,
  queuedView,
  runRelayIn,
  startRelay,
  submit,
  tempDir,
  writeManifests,
  type InProcessRelay,
} from './relay-harness.ts';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function peer(name: string, options: PeerOptions = {}): Promise<SmtpPeer> {
  const p = await startSmtpPeer(name, {}, undefined, options);
  cleanups.push(() => p.close());
  return p;
}

async function relay(files: Record<string, string>): Promise<InProcessRelay> {
  const r = await startRelay(files);
  cleanups.push(() => r.close());
  return r;
}

async function send(r: InProcessRelay, to: string, subject: string): Promise<string> {
  const reply = await submit(r.relay.smtp.port, {
    envelope: { from: 'sender@outside.test', to: [to] },
    raw: `From: sender@outside.test\r\nTo: ${to}\r\nSubject: ${subject}\r\n\r\n${subject}\r\n`,
  });
  return queuedId(reply);
}

async function cli(r: InProcessRelay, argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await queueCli(
    [...argv, '--admin', `127.0.0.1:${r.relay.admin.port}`, '--spool', r.spoolDir],
    {
      stdout: (s) => (out += s),
      stderr: (s) => (err += s),
      env: {},
      fetch: (...a) => fetch(...a),
      now: () => new Date(),
    },
  );
  return { code, out, err };
}

const legState = (v: MessageView | undefined, role: 'primary' | 'copy') =>
  v?.recipients[0]?.legs.find((l) => l.role === role);

describe('fixes and recoveries reach queued mail at once', () => {
  it('a corrected port in the manifests folder: the queued message is delivered at once, not at its next retry', async () => {
    const dest = await peer('dest');
    const wrongPort = await freePort(); // nothing listens there
    // its next retry is an hour away
    const r = await startRelay(
      { 'd.yaml': dualDomain('port.test', wrongPort, dest.port, { mode: 'Direct' }) },
      ['--retry-schedule', '1h'],
    );
    cleanups.push(() => r.close());
    const id = await send(r, 'alice@port.test', 'wrong port');
    await waitFor(async () => legState(await queuedView(r, id), 'primary')?.state === 'deferred', {
      what: 'the leg deferred (connection refused)',
    });
    expect(dest.messages).toHaveLength(0);

    // Fix the port of server "old"; no restart, no flush.
    await writeFile(
      join(r.manifests, 'd.yaml'),
      dualDomain('port.test', dest.port, dest.port, { mode: 'Direct' }),
    );
    // the change is picked up within the 2 s of a manifest change, and the leg's new destination is tried then
    await waitFor(() => dest.for('alice@port.test').length === 1, {
      timeoutMs: 10_000,
      what: 'the queued message at the corrected port',
    });
    await waitFor(async () => (await queuedView(r, id)) === undefined, {
      what: 'the message gone from the queue',
    });
    expect(dest.messages).toHaveLength(1);
  });

  it('a rotated Secret: the queued message is delivered with the new password at once, not at its next retry', async () => {
    const dest = await peer('auth', { auth: { user: 'relay', pass: 'new-password' } });
    const domain = domainManifests({
      domain: 'auth.test',
      servers: [
        `name: old, host: 127.0.0.1, port: ${dest.port}, tls: None, allowPlaintextAuth: true, authSecretRef: {name: old-smtp}`,
      ],
      policy: '  mode: Direct\n  primary: old\n',
    });
    const secret = (password: string) => `apiVersion: v1
kind: Secret
metadata: {name: old-smtp, labels: {mailroute.io/smtp-auth: "true"}}
stringData: {username: relay, password: ${password}}
`;
    // its next retry is an hour away
    const r = await startRelay({ 'd.yaml': domain, 'secret.yaml': secret('old-password') }, [
      '--retry-schedule',
      '1h',
    ]);
    cleanups.push(() => r.close());
    const id = await send(r, 'bob@auth.test', 'rotated');
    const deferred = await waitFor(
      async () => {
        const l = legState(await queuedView(r, id), 'primary');
        return l?.state === 'deferred' ? l : undefined;
      },
      { what: 'the leg deferred by the refused password' },
    );
    expect(deferred.lastReply).toMatch(/EAUTH|535/);

    const rotatedAt = Date.now();
    await writeFile(join(r.manifests, 'secret.yaml'), secret('new-password'));
    const got = await waitFor(() => dest.for('bob@auth.test')[0], {
      timeoutMs: 10_000,
      what: 'the queued message delivered with the new password',
    });
    expect(got.user).toBe('relay');
    // The change is picked up within the 2 s of a manifest change, and the leg is tried then.
    expect(Date.now() - rotatedAt).toBeLessThan(5_000);
  });

  it('a server that comes back gets the mail queued for it at once, not at the end of its hour of retry time', async () => {
    const primary = await peer('primary');
    const port = await freePort(); // the secondary is down: nothing listens on its port yet
    const r = await startRelay({ 'd.yaml': dualDomain('back.test', primary.port, port) }, [
      '--retry-schedule',
      '2s,1h',
    ]);
    cleanups.push(() => r.close());
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push(await send(r, `u${i}@back.test`, `queued ${i}`));
    // each copy tried twice (the second time after 2 s, or suspended): its next try is an hour away
    await waitFor(
      async () => {
        for (const id of ids) {
          const l = legState(await queuedView(r, id), 'copy');
          if (l?.state !== 'deferred' || l.attempts < 2) return false;
        }
        return true;
      },
      { timeoutMs: 15_000, what: 'every copy deferred twice' },
    );
    expect(primary.messages).toHaveLength(5);

    const back = await startSmtpPeer('back', {}, port);
    cleanups.push(() => back.close());
    const started = Date.now();
    // new mail reaches the server (after at most the 2 s the destination stays suspended); the queued copies follow
    await send(r, 'fresh@back.test', 'fresh');
    await waitFor(() => back.messages.length === 6, {
      timeoutMs: 15_000,
      what: 'the five queued copies and the new one at the server that came back',
    });
    expect(Date.now() - started).toBeLessThan(10_000);
    for (const i of [0, 1, 2, 3, 4]) expect(back.for(`u${i}@back.test`)).toHaveLength(1);
    const metrics = (await httpGet(r.relay.http.port, '/metrics')).body;
    expect(metricValue(metrics, 'mailroute_destination_recoveries_total', '{server="new"}')).toBe(1);
    expect(primary.messages).toHaveLength(6); // no primary was delivered again
  });

  it('a relay restarted after the outage sends the queue at the first answer from the server, not at the retry times', async () => {
    const primary = await peer('primary');
    const port = await freePort(); // the secondary is down
    const dir = await tempDir('restart-back');
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    await writeManifests(join(dir, 'manifests'), { 'd.yaml': dualDomain('again.test', primary.port, port) });
    const flags = ['--retry-schedule', '1h'];
    const first = await runRelayIn(dir, flags);
    const ids: string[] = [];
    try {
      for (let i = 0; i < 3; i++) {
        const reply = await submit(first.smtp.port, {
          envelope: { from: 'sender@outside.test', to: [`u${i}@again.test`] },
          raw: `Subject: ${i}\r\n\r\nqueued ${i}\r\n`,
        });
        ids.push(queuedId(reply));
      }
      await waitFor(() => primary.messages.length === 3, { what: 'the three primaries' });
    } finally {
      await first.shutdown('test');
    }
    // the secondary comes back, then the relay (its copies' next try is an hour away)
    const back = await startSmtpPeer('back', {}, port);
    cleanups.push(() => back.close());
    const second = await runRelayIn(dir, flags);
    cleanups.push(() => second.shutdown('test'));
    await submit(second.smtp.port, {
      envelope: { from: 'sender@outside.test', to: ['fresh@again.test'] },
      raw: 'Subject: fresh\r\n\r\nfresh\r\n',
    });
    await waitFor(() => back.messages.length === 4, {
      timeoutMs: 15_000,
      what: 'the three queued copies and the new one at the server that came back',
    });
    for (const i of [0, 1, 2]) expect(back.for(`u${i}@again.test`)).toHaveLength(1);
    expect(primary.messages).toHaveLength(4);
  });

  it('a server under back pressure (452 4.3.1 to MAIL FROM) gets the mail queued for it as soon as it accepts again', async () => {
    // Exchange refuses every transaction while its disk or queue is over its limits (back pressure), as Postfix
    // and sendmail do with a full queue disk: the server answers, so nothing suspends it, but no mail gets in.
    let full = true;
    const primary = await peer('primary');
    const secondary = await startSmtpPeer('secondary', {
      mail: () => (full ? { code: 452, message: '4.3.1 Insufficient system resources' } : undefined),
    });
    cleanups.push(() => secondary.close());
    const r = await startRelay({ 'd.yaml': dualDomain('pressure.test', primary.port, secondary.port) }, [
      '--retry-schedule',
      '1h',
    ]);
    cleanups.push(() => r.close());
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push(await send(r, `u${i}@pressure.test`, `queued ${i}`));
    await waitFor(
      async () => {
        for (const id of ids) {
          const l = legState(await queuedView(r, id), 'copy');
          if (l?.state !== 'deferred' || !/^452 4\.3\.1/.test(l.lastReply ?? '')) return false;
        }
        return true;
      },
      { timeoutMs: 15_000, what: 'every copy deferred by the back pressure, its next try an hour away' },
    );
    expect(primary.messages).toHaveLength(5);

    full = false;
    const started = Date.now();
    await send(r, 'fresh@pressure.test', 'fresh');
    await waitFor(() => secondary.messages.length === 6, {
      timeoutMs: 15_000,
      what: 'the five queued copies and the new one at the server that accepts again',
    });
    expect(Date.now() - started).toBeLessThan(10_000);
    for (const i of [0, 1, 2, 3, 4]) expect(secondary.for(`u${i}@pressure.test`)).toHaveLength(1);
    const metrics = (await httpGet(r.relay.http.port, '/metrics')).body;
    expect(metricValue(metrics, 'mailroute_destination_recoveries_total', '{server="new"}')).toBe(1);
    expect(primary.messages).toHaveLength(6);
  });

  it('a removed server holds its legs with a reason and a metric; reroute sends them to the new server', async () => {
    const primary = await peer('primary');
    const copy = await peer('copy');
    const gone = await freePort(); // the secondary the copy was planned for never answers
    const r = await relay({ 'd.yaml': dualDomain('move.test', primary.port, gone) });
    const id = await send(r, 'carol@move.test', 'moved');
    await waitFor(
      async () => {
        const v = await queuedView(r, id);
        return legState(v, 'primary')?.state === 'delivered' && legState(v, 'copy')?.state === 'deferred';
      },
      { what: 'primary delivered, copy deferred' },
    );

    // The secondary "new" leaves the table (the policy goes Direct).
    await writeFile(
      join(r.manifests, 'd.yaml'),
      dualDomain('move.test', primary.port, gone, { mode: 'Direct' }).replace(
        /\n\s+- \{name: new,[^\n]*/,
        '',
      ),
    );
    const held = await waitFor(
      async () => {
        const l = legState(await queuedView(r, id), 'copy');
        return l?.unroutable !== undefined ? l : undefined;
      },
      { timeoutMs: 10_000, what: 'the copy leg reported unroutable' },
    );
    expect(held.unroutable).toContain('server new is no longer declared by the MailDomain of move.test');
    expect(held.state).toBe('deferred'); // held, not bounced
    await waitFor(
      async () =>
        metricValue(
          (await httpGet(r.relay.http.port, '/metrics')).body,
          'mailroute_queue_legs_unroutable',
        ) === 1,
      { what: 'mailroute_queue_legs_unroutable 1' },
    );
    const shown = await cli(r, ['show', id]);
    expect(shown.code).toBe(0);
    expect(shown.out).toContain('HELD: unroutable: server new is no longer declared');

    // A new secondary under another name; the held leg does not move by itself...
    await writeFile(
      join(r.manifests, 'd.yaml'),
      dualDomain('move.test', primary.port, copy.port)
        .replaceAll('name: new', 'name: zoho')
        .replace('secondary: new', 'secondary: zoho'),
    );
    await waitFor(async () => (await cli(r, ['reroute', id])).out.includes('1 leg rerouted'), {
      timeoutMs: 10_000,
      what: 'reroute to find the new secondary',
    });
    // ...reroute re-plans it onto "zoho"; the delivered primary is not sent again.
    await waitFor(() => copy.for('carol@move.test').length === 1, {
      what: 'the copy delivered to the new server',
    });
    await waitFor(async () => (await queuedView(r, id)) === undefined, {
      what: 'the message gone from the queue',
    });
    expect(primary.for('carol@move.test')).toHaveLength(1);
    expect(
      metricValue((await httpGet(r.relay.http.port, '/metrics')).body, 'mailroute_queue_legs_unroutable'),
    ).toBe(0);
  });

  it('reroute does not send a message twice to one mailbox: a test user switched to copy only, primary waiting', async () => {
    const copy = await peer('copy');
    const down = await freePort(); // the old server: the primary leg waits on it
    const manifests = (
      keep: boolean,
    ): string => `${dualDomain('tr.test', down, copy.port, { scope: 'TestRecipients' })}---
apiVersion: mailroute.io/v1alpha1
kind: TestRecipient
metadata: {name: dave}
spec:
  policyRef: {name: tr-test}
  address: dave@tr.test
  forwardTo: dave@tr-copy.test
  keepPrimaryCopy: ${keep}
`;
    const r = await relay({ 'd.yaml': manifests(true) });
    const id = await send(r, 'dave@tr.test', 'switched');
    await waitFor(
      async () => {
        const v = await queuedView(r, id);
        return legState(v, 'primary')?.state === 'deferred' && legState(v, 'copy')?.state === 'delivered';
      },
      { what: 'primary deferred, copy delivered' },
    );
    expect(copy.for('dave@tr-copy.test')).toHaveLength(1);

    // dave is moved: the new mailbox only. The primary leg's new plan is the mailbox the copy reached.
    await writeFile(join(r.manifests, 'd.yaml'), manifests(false));
    const out = await waitFor(
      async () => {
        const o = (await cli(r, ['reroute', id])).out;
        return o.includes('1 leg rerouted') ? o : undefined;
      },
      { timeoutMs: 10_000, what: 'reroute to see the new plan' },
    );
    expect(out).toContain('delivered already by leg 1');
    await waitFor(async () => (await queuedView(r, id)) === undefined, {
      what: 'the message gone from the queue',
    });
    expect(copy.for('dave@tr-copy.test')).toHaveLength(1);
  });
});
