// The mailbox of record end to end: a TestRecipient with keepPrimaryCopy: false under dual.bounces Suppress (the
// default) has its forwardTo mailbox as its only leg. That leg is the leg of record, so a 550 there, or a 4xx until
// the queue lifetime ends, must reach the sender as a DSN; a real copy leg (keepPrimaryCopy: true) stays
// suppressed. A real relay (runRelay) delivers to smtp-server peers; DSNs are routed like any mail, to the
// sender's own managed domain (sender.test), whose server records them.
import { rm } from 'node:fs/promises';
import { Readable } from 'node:stream';
import pino from 'pino';
import { Registry } from 'prom-client';
import type { SendMailOptions } from 'nodemailer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DeliveryPlan } from '../../routing/model.ts';
import { startDelivery } from '../../relay/delivery/engine.ts';
import { openSpool } from '../../relay/spool/spool.ts';
import type { EnvelopeMeta } from '../../relay/spool/types.ts';
import { createRelayMetrics } from '../../relay/telemetry/metrics.ts';
import { deliveryOptions, envelope, localServer } from '../support/delivery.ts';
import { startSmtpPeer, type SmtpPeer } from '../support/smtp-peer.ts';
import { waitFor } from '../support/wait.ts';
import {
  deliveryCount,
  deliveryStatus,
  dualDomain,
  startRelay,
  submit,
  tempDir,
  type InProcessRelay,
} from './relay-harness.ts';

const testRecipient = (name: string, address: string, forwardTo: string, keepPrimaryCopy: boolean) => `---
apiVersion: mailroute.io/v1alpha1
kind: TestRecipient
metadata: {name: ${name}}
spec:
  policyRef: {name: rec-test}
  address: ${address}
  forwardTo: ${forwardTo}
  keepPrimaryCopy: ${keepPrimaryCopy}
`;

describe('the mailbox of record: a lone forwardTo leg bounces to the sender', () => {
  let oldPeer: SmtpPeer;
  let newPeer: SmtpPeer;
  let senderBox: SmtpPeer;
  let r: InProcessRelay;

  beforeAll(async () => {
    oldPeer = await startSmtpPeer('old');
    newPeer = await startSmtpPeer('new', {
      rcpt: (a) => {
        if (a === 'carol@fwd.test' || a === 'dave@fwd.test')
          return { code: 550, message: '5.1.1 no such mailbox' };
        if (a === 'erin@fwd.test') return { code: 450, message: '4.2.1 mailbox busy' };
        return undefined;
      },
    });
    senderBox = await startSmtpPeer('senderbox');
    r = await startRelay(
      {
        // bounces is left out: it defaults to Suppress, the setting that used to lose carol's mail
        'rec.yaml': `${dualDomain('rec.test', oldPeer.port, newPeer.port, { scope: 'TestRecipients' })}${testRecipient(
          'carol',
          'carol@rec.test',
          'carol@fwd.test',
          false,
        )}${testRecipient('dave', 'dave@rec.test', 'dave@fwd.test', true)}${testRecipient(
          'erin',
          'erin@rec.test',
          'erin@fwd.test',
          false,
        )}`,
        'sender.yaml': dualDomain('sender.test', senderBox.port, senderBox.port, { mode: 'Direct' }),
      },
      ['--max-queue-lifetime', '3s'],
    );
  });

  afterAll(async () => {
    await r?.close();
    await Promise.all([oldPeer?.close(), newPeer?.close(), senderBox?.close()]);
  });

  const deliveries = (result: string, leg: string): Promise<number> =>
    deliveryCount(r.relay.metrics, result, leg);
  const dsnsFor = (recipient: string) =>
    senderBox.for(recipient).filter((m) => m.mailFrom === '' && m.raw.toString().includes(recipient));
  /** Submits "to NAME" ("Hello Name.") from `from` to the test recipient NAME@rec.test; `over` adds to the mail. */
  const mailTo = (from: string, name: string, over: SendMailOptions = {}): Promise<string> =>
    submit(r.relay.smtp.port, {
      envelope: { from, to: [`${name}@rec.test`] },
      from,
      to: `${name}@rec.test`,
      subject: `to ${name}`,
      text: `Hello ${name[0]!.toUpperCase()}${name.slice(1)}.`,
      ...over,
    });

  it('keepPrimaryCopy false: a 550 on the forwardTo leg sends a DSN to the sender', async () => {
    const reply = await mailTo('alice@sender.test', 'carol', { messageId: '<rec-carol@sender.test>' });
    expect(reply).toMatch(/^250 /);
    const dsn = await waitFor(() => dsnsFor('alice@sender.test')[0], { what: "the DSN for carol's 550" });
    const raw = dsn.raw.toString();
    const status = deliveryStatus(raw);
    expect(status).toContain('Final-Recipient: rfc822; carol@fwd.test\r\n');
    expect(status).toContain('Original-Recipient: rfc822; carol@rec.test\r\n');
    expect(status).toMatch(/^Status: 5\.1\.1\r$/m);
    expect(raw).toContain('Message-ID: <rec-carol@sender.test>');
    // the leg was delivered as the leg of record (role primary), never as a suppressible copy
    expect(await deliveries('failed', 'primary')).toBeGreaterThanOrEqual(1);
    expect(await deliveries('suppressed', 'copy')).toBe(0);
    expect(oldPeer.for('carol@rec.test')).toEqual([]);
  });

  it('keepPrimaryCopy false: a 4xx until the queue lifetime ends sends a 4.4.7 DSN', async () => {
    await mailTo('bob@sender.test', 'erin');
    const dsn = await waitFor(() => dsnsFor('bob@sender.test')[0], {
      what: "the expiry DSN for erin's 450s",
      timeoutMs: 20_000,
    });
    const status = deliveryStatus(dsn.raw.toString());
    expect(status).toContain('Final-Recipient: rfc822; erin@fwd.test\r\n');
    expect(status).toMatch(/^Status: 4\.4\.7\r$/m);
    expect(oldPeer.for('erin@rec.test')).toEqual([]);
  });

  it('keepPrimaryCopy true: the mailbox of record gets the message and the failed copy stays suppressed', async () => {
    const before = senderBox.messages.length;
    await mailTo('frank@sender.test', 'dave');
    await waitFor(() => oldPeer.for('dave@rec.test')[0], { what: "dave's primary delivery" });
    await waitFor(async () => (await deliveries('suppressed', 'copy')) === 1, {
      what: "dave's suppressed copy",
    });
    expect(senderBox.messages.length).toBe(before);
    expect(dsnsFor('frank@sender.test')).toEqual([]);
  });
});

describe('a recipient whose only leg in the message is a suppressible copy', () => {
  /**
   * Spools one message whose recipient has a lone copy leg (bounces Suppress) to a peer that answers 550, runs the
   * delivery engine on it, and returns the engine's metrics and the DSN mailbox once the leg is final.
   */
  async function deliverLoneCopy(over: Partial<EnvelopeMeta>) {
    const copyPeer = await startSmtpPeer('new', {
      rcpt: () => ({ code: 550, message: '5.1.1 no such mailbox' }),
    });
    const senderBox = await startSmtpPeer('senderbox');
    const dir = await tempDir('record-lone-copy');
    const spool = await openSpool({ dir, logger: pino({ level: 'silent' }) });
    const route = (rcpt: string): DeliveryPlan => ({
      verdict: 'accept',
      recipient: rcpt,
      domain: 'sender.test',
      legs: [
        {
          server: localServer('senderbox', senderBox.port, 1),
          recipient: rcpt,
          role: 'primary',
          bounces: 'Notify',
        },
      ],
    });
    const metrics = createRelayMetrics(new Registry(), false);
    const engine = startDelivery(deliveryOptions(spool, { route, metrics, retryScheduleMs: [50] }));
    const results = (result: string) => deliveryCount(metrics, result);
    try {
      await engine.ready;
      const meta = envelope(
        [
          {
            recipient: 'carol@rec.test',
            legs: [
              {
                server: localServer('new', copyPeer.port, 1),
                recipient: 'carol@fwd.test',
                role: 'copy',
                bounces: 'Suppress',
              },
            ],
          },
        ],
        { mailFrom: 'alice@sender.test', ...over },
      );
      const r = await spool.accept(meta, Readable.from([Buffer.from('Subject: old\r\n\r\nHello.\r\n')]));
      if (!r.ok) throw r.error;
      engine.notify(r.id);
      await waitFor(async () => (await results('failed')) + (await results('suppressed')) === 1, {
        what: 'the copy leg to become final',
      });
      // a DSN, when one is owed, is spooled and sent right after the leg fails
      const dsn =
        (await results('failed')) === 1
          ? await waitFor(() => senderBox.for('alice@sender.test')[0], { what: 'the DSN' })
          : undefined;
      return { dsn, suppressed: await results('suppressed'), received: senderBox.messages.length };
    } finally {
      await engine.stop();
      await Promise.all([copyPeer.close(), senderBox.close()]);
      await rm(dir, { recursive: true, force: true });
    }
  }

  it('spooled by an older version (keepPrimaryCopy: false was a lone copy): it bounces to the sender', async () => {
    const { dsn, suppressed } = await deliverLoneCopy({});
    expect(suppressed).toBe(0);
    expect(dsn?.mailFrom).toBe('');
    expect(deliveryStatus(dsn?.raw.toString() ?? '')).toContain(
      'Final-Recipient: rfc822; carol@fwd.test\r\n',
    );
  });

  it('handed over by a draining relay after its primary was delivered there: it stays suppressed', async () => {
    const { dsn, suppressed, received } = await deliverLoneCopy({
      origin: { queueId: '0mx0qz1k20001a7f', relay: 'relay-0.test' },
    });
    expect(suppressed).toBe(1);
    expect(dsn).toBeUndefined();
    expect(received).toBe(0);
  });
});
