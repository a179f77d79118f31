// softBounce (DeliveryPolicy spec.softBounce, Postfix's soft_bounce) during a cutover: the new server refuses a
// mailbox that has not been made there yet with 550. Without it the relay bounces the message at once; with it the
// message stays queued (no DSN), is retried on the schedule and arrives once the mailbox exists. A real relay on a
// manifests folder, real SMTP peers (smtp-server), nodemailer and Python's smtplib as clients:
// - a 550 on the leg of record: retried, counted as soft_bounced, no DSN, delivered once the server takes it;
// - softBounce turned off (the manifest rewritten): the next 550 bounces with a DSN that reports 5.1.1;
// - the relay's own refusal of an unknown recipient (Split, unknownRecipients Reject) is 450 4.1.1, then 550 5.1.1.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSmtpPeer, type SmtpPeer } from '../support/smtp-peer.ts';
import { waitFor } from '../support/wait.ts';
import {
  deliveryCount,
  deliveryStatus,
  dualDomain,
  queuedId,
  queuedView,
  rcptReply,
  served,
  startRelay,
  submit,
  type InProcessRelay,
} from './relay-harness.ts';

describe('softBounce: a permanent refusal during a cutover keeps the mail queued', () => {
  let newServer: SmtpPeer;
  let senderBox: SmtpPeer;
  let r: InProcessRelay;
  /** Mailboxes the new server has (anything else at cut.test gets 550 5.1.1). */
  const made = new Set<string>(['alice@cut.test']);

  // cut.test: Direct to the new server, softBounce on; split.test: Split with an accounts list on the primary,
  // unknown recipients refused, softBounce on.
  const cut = (soft: boolean) =>
    dualDomain('cut.test', newServer.port, newServer.port, {
      mode: 'Direct',
      extraPolicy: soft ? '  softBounce: true\n' : '',
    });
  const split = (soft: boolean) =>
    dualDomain('split.test', newServer.port, newServer.port, {
      mode: 'Split',
      extraDomain: '  accounts:\n    - {server: old, addresses: [ann@split.test]}\n',
      extraPolicy: `  split:\n    unknownRecipients: Reject\n${soft ? '  softBounce: true\n' : ''}`,
    });

  beforeAll(async () => {
    newServer = await startSmtpPeer('new', {
      rcpt: (a) =>
        a.endsWith('@cut.test') && !made.has(a) ? { code: 550, message: '5.1.1 no such mailbox' } : undefined,
    });
    senderBox = await startSmtpPeer('senderbox');
    r = await startRelay({
      'cut.yaml': cut(true),
      'split.yaml': split(true),
      'sender.yaml': dualDomain('sender.test', senderBox.port, senderBox.port, { mode: 'Direct' }),
    });
  });

  afterAll(async () => {
    await r?.close();
    await Promise.all([newServer?.close(), senderBox?.close()]);
  });

  const deliveries = (result: string): Promise<number> => deliveryCount(r.relay.metrics, result);
  const refusals = (address: string) =>
    newServer.rcpts.filter((x) => x.address === address && x.code === 550).length;
  const dsnsTo = (sender: string) => senderBox.for(sender).filter((m) => m.mailFrom === '');
  const mail = (from: string, to: string) =>
    submit(r.relay.smtp.port, {
      envelope: { from, to: [to] },
      from,
      to,
      subject: `to ${to}`,
      text: 'Hello.',
    });

  it('a 550 is retried without a DSN, and the message arrives once the mailbox is made', async () => {
    const reply = await mail('sam@sender.test', 'bob@cut.test');
    expect(reply).toMatch(/^250 /);
    // refused, and tried again on the 1 s schedule: the 550 did not end the leg
    await waitFor(() => refusals('bob@cut.test') >= 2, { what: 'two 550s for bob', timeoutMs: 10_000 });
    // the peer sees the 550 before the relay records it: wait for the count
    await waitFor(async () => (await deliveries('soft_bounced')) >= 2, { what: 'two soft_bounced results' });
    expect(await deliveries('failed')).toBe(0);
    const view = await queuedView(r, queuedId(reply));
    const leg = view?.recipients[0]?.legs[0];
    expect(leg?.state).toBe('deferred');
    expect(leg?.lastReply).toMatch(/^550 5\.1\.1 /);
    expect(leg?.softBounced).toBe(true); // what `mailroute queue show` prints as SOFT BOUNCE
    expect(dsnsTo('sam@sender.test')).toEqual([]);

    made.add('bob@cut.test');
    await waitFor(() => newServer.for('bob@cut.test').length === 1, {
      what: "bob's delivery once his mailbox exists",
    });
    expect(dsnsTo('sam@sender.test')).toEqual([]);
  });

  it('turned off, the next 550 bounces to the sender with the server’s status', async () => {
    const reply = await mail('tom@sender.test', 'carol@cut.test');
    expect(reply).toMatch(/^250 /);
    await waitFor(() => refusals('carol@cut.test') >= 1, { what: 'a 550 for carol' });
    await served(r.relay, () => writeFile(join(r.manifests, 'cut.yaml'), cut(false)));
    const dsn = await waitFor(() => dsnsTo('tom@sender.test')[0], {
      what: "the DSN for carol's 550",
      timeoutMs: 10_000,
    });
    const status = deliveryStatus(dsn.raw.toString());
    expect(status).toContain('Final-Recipient: rfc822; carol@cut.test\r\n');
    expect(status).toMatch(/^Status: 5\.1\.1\r$/m);
    expect(newServer.for('carol@cut.test')).toEqual([]);
  });

  it('the relay answers 450 4.1.1 where it would refuse an unknown recipient with 550 5.1.1', async () => {
    expect(await rcptReply(r.relay.smtp.port, 'zed@split.test')).toBe(
      '450 4.1.1 mailbox unavailable: recipient unknown',
    );
    expect(await rcptReply(r.relay.smtp.port, 'ann@split.test')).toMatch(/^250 /);
    // nodemailer: the message's only recipient refused for now
    await expect(mail('sam@sender.test', 'zed@split.test')).rejects.toThrow(/450 4\.1\.1/);
    await served(r.relay, () => writeFile(join(r.manifests, 'split.yaml'), split(false)));
    expect(await rcptReply(r.relay.smtp.port, 'zed@split.test')).toBe(
      '550 5.1.1 mailbox unavailable: recipient unknown',
    );
  });
});
