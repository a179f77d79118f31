// A MailDomain deleted by mistake (a manifest removed from the folder here; kubectl delete, a GitOps prune or a
// namespace deletion in a cluster): the relay's answer to that domain's mail decides whether senders keep it or bounce
// it. Real relays on a manifests folder, real SMTP clients (nodemailer, Python's smtplib), a real destination:
// - with the default --removed-domain-grace (24 h): 451 4.3.0 naming the domain, logged, counted as DomainRemoved; the
//   domain's mail is accepted and delivered again as soon as its manifest is back;
// - a relay restarted on the same spool during the grace still answers 451 (the state is saved in the spool folder);
// - with --removed-domain-grace 0: 554 5.7.1 relay access denied at once (the behaviour before the grace existed);
// - a domain the relay never served is refused with 554 either way.
import { unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RelayHandle } from '../../relay/relay.ts';
import { startSmtpPeer, type SmtpPeer } from '../support/smtp-peer.ts';
import { waitFor } from '../support/wait.ts';
import {
  dualDomain,
  httpGet,
  metricValue,
  rcptReply,
  runRelayIn,
  served,
  startRelay,
  submit,
  type InProcessRelay,
} from './relay-harness.ts';

describe('a domain that leaves the routing table', () => {
  let peer: SmtpPeer;
  let graced: InProcessRelay;
  let strict: InProcessRelay;
  let restarted: RelayHandle | undefined;
  const manifests = {
    'keep.yaml': '',
    'gone.yaml': '',
  };

  beforeAll(async () => {
    peer = await startSmtpPeer('dest');
    manifests['keep.yaml'] = dualDomain('keep.test', peer.port, peer.port, { mode: 'Direct' });
    manifests['gone.yaml'] = dualDomain('gone.test', peer.port, peer.port, { mode: 'Direct' });
    graced = await startRelay(manifests);
    strict = await startRelay(manifests, ['--removed-domain-grace', '0']);
  });
  afterAll(async () => {
    await restarted?.shutdown('test');
    await graced?.close();
    await strict?.close();
    await peer?.close();
  });

  it('gets 451 during the grace, also after a restart (554 with grace 0), and is delivered again once restored', async () => {
    expect(await rcptReply(graced.relay.smtp.port, 'ann@gone.test')).toMatch(/^250 /);
    for (const r of [graced, strict]) await served(r.relay, () => unlink(join(r.manifests, 'gone.yaml')));
    expect(await rcptReply(graced.relay.smtp.port, 'ann@gone.test')).toMatch(
      /^451 4\.3\.0 gone\.test left the routing table less than a minute ago; try again later$/,
    );
    expect(await rcptReply(strict.relay.smtp.port, 'ann@gone.test')).toMatch(/^554 5\.7\.1 /);
    // a domain never served, and one still served, are not affected
    expect(await rcptReply(graced.relay.smtp.port, 'ann@never.test')).toMatch(/^554 5\.7\.1 /);
    expect(await rcptReply(graced.relay.smtp.port, 'ann@keep.test')).toMatch(/^250 /);
    // nodemailer sees a temporary refusal of the whole message (its only recipient)
    await expect(
      submit(graced.relay.smtp.port, { from: 's@origin.test', to: 'ann@gone.test', subject: 'x', text: 'x' }),
    ).rejects.toThrow(/451 4\.3\.0/);
    const metricsText = (await httpGet(graced.relay.http.port, '/metrics')).body;
    expect(
      metricValue(metricsText, 'mailroute_messages_rejected_total', '{reason="DomainRemoved"}'),
    ).toBeGreaterThanOrEqual(2);

    // a restart on the same spool during the grace (the domain still gone): still 451
    await graced.relay.shutdown('test');
    restarted = await runRelayIn(graced.dir);
    const again = restarted;
    expect(await rcptReply(again.smtp.port, 'ann@gone.test')).toMatch(
      /^451 4\.3\.0 gone\.test left the routing table/,
    );
    expect(await rcptReply(again.smtp.port, 'ann@never.test')).toMatch(/^554 5\.7\.1 /);

    // restored: accepted and delivered again
    await served(again, () => writeFile(join(graced.manifests, 'gone.yaml'), manifests['gone.yaml']));
    expect(
      await submit(again.smtp.port, {
        from: 's@origin.test',
        to: 'ann@gone.test',
        subject: 'back',
        text: 'x',
      }),
    ).toMatch(/^250 /);
    await waitFor(() => peer.for('ann@gone.test').length === 1, { what: 'delivery after the restore' });
  });
});
