// Copies give way to primary mail on a spool volume low on space (relay/delivery/shed.ts), through a real relay: its
// spool on this machine's temp volume, whose real free space (statfs) is under the threshold the test sets (the
// volume's free space plus 64 GiB), real smtp-server peers, nodemailer. The secondary is down: without shedding, the
// copies would keep their messages on the spool for the queue lifetime (5 days), and a long enough outage fills the
// volume, after which every new message gets 452 4.3.1, primaries too. Checked: every message whose primary was
// delivered gives its copy up (suppressed, reason "shed", no DSN, counted) and leaves the spool; a message whose
// primary still waits keeps both legs.
import { tmpdir } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MessageView, QueueListView } from '../../relay/admin/view.ts';
import { spoolSpace } from '../../relay/delivery/shed.ts';
import { freePort } from '../support/net.ts';
import { startSmtpPeer, type SmtpPeer } from '../support/smtp-peer.ts';
import { waitFor } from '../support/wait.ts';
import {
  dualDomain,
  httpGet,
  metricValue,
  startRelay,
  submit,
  type InProcessRelay,
} from './relay-harness.ts';

const POLICY = 'default/shed-test';

describe('copies shed on a spool volume low on space', () => {
  let primary: SmtpPeer;
  let secondary: SmtpPeer;
  let r: InProcessRelay;

  beforeAll(async () => {
    primary = await startSmtpPeer('primary');
    secondary = await startSmtpPeer('secondary');
    await secondary.down();
    const threshold = (await spoolSpace(tmpdir())).free + 64 * 1024 ** 3;
    r = await startRelay(
      {
        'shed.yaml': dualDomain('shed.test', primary.port, secondary.port),
        'held.yaml': dualDomain('held.test', await freePort(), secondary.port),
      },
      ['--retry-schedule', '1h', '--shed-copies-below', String(threshold)],
      { spaceCheckMs: 100 },
    );
  });
  afterAll(async () => {
    await r?.close();
    await primary?.close();
    await secondary?.close();
  });

  const list = async (): Promise<QueueListView> =>
    JSON.parse((await httpGet(r.relay.admin.port, '/queue')).body) as QueueListView;

  it('the copies of delivered messages are shed and their messages leave the spool; a waiting primary keeps its copy', async () => {
    for (let i = 0; i < 4; i++)
      await submit(r.relay.smtp.port, {
        from: 'writer@shed.test',
        to: `u${i}@shed.test`,
        subject: `shed ${i}`,
        text: 'x',
      });
    await submit(r.relay.smtp.port, {
      from: 'writer@shed.test',
      to: 'kept@held.test',
      subject: 'held',
      text: 'x',
    });

    const left = await waitFor(
      async () => {
        const q = await list();
        return q.total === 1 ? q.messages : undefined;
      },
      { timeoutMs: 15_000, what: 'only the message whose primary waits left in the queue' },
    );
    const held: MessageView | undefined = left[0];
    expect(held?.recipients[0]?.recipient).toBe('kept@held.test');
    expect(held?.recipients[0]?.legs.map((l) => [l.role, l.state])).toEqual([
      ['primary', 'deferred'],
      ['copy', 'deferred'],
    ]);
    expect(primary.for('u0@shed.test')).toHaveLength(1);
    expect(primary.messages.filter((m) => m.mailFrom === '')).toEqual([]); // no DSN to writer@shed.test

    const metrics = (await httpGet(r.relay.http.port, '/metrics')).body;
    expect(metricValue(metrics, 'mailroute_copy_legs_shed_total')).toBe(4);
    expect(metricValue(metrics, 'mailroute_spool_free_bytes')).toBeGreaterThan(0);
    expect(
      metricValue(
        metrics,
        'mailroute_parity_legs_total',
        `{policy="${POLICY}",test_recipient="",leg="copy",result="suppressed",reason="shed"}`,
      ),
    ).toBe(4);
    expect(
      metricValue(metrics, 'mailroute_deliveries_total', '{server="new",leg="copy",result="suppressed"}'),
    ).toBe(4);
  });
});
