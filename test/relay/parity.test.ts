// Parity while dual, end to end: a relay delivering to two real SMTP peers counts, per DeliveryPolicy
// and per TestRecipient, primaries delivered, copies delivered, suppressed (a 5xx from the secondary) and pending
// (a 4xx), and the copy lag; in its metrics (labels are names, never addresses) and in `mailroute queue stats`.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSmtpPeer, type SmtpPeer } from '../support/smtp-peer.ts';
import { waitFor } from '../support/wait.ts';
import { dualDomain, httpGet, NODE, ROOT, startRelay, submit, type InProcessRelay } from './relay-harness.ts';

const run = promisify(execFile);
const POLICY = 'default/parity-test';
const ALICE = 'default/alice';

describe('parity counters in the relay', () => {
  let oldPeer: SmtpPeer;
  let newPeer: SmtpPeer;
  let r: InProcessRelay;

  beforeAll(async () => {
    oldPeer = await startSmtpPeer('old');
    newPeer = await startSmtpPeer('new', {
      rcpt: (a) =>
        a === 'nobody@parity.test'
          ? { code: 550, message: '5.1.1 no such mailbox here' }
          : a === 'later@parity.test'
            ? { code: 450, message: '4.2.0 try later' }
            : undefined,
    });
    r = await startRelay(
      {
        'parity.yaml': `${dualDomain('parity.test', oldPeer.port, newPeer.port, { scope: 'All' })}---
apiVersion: mailroute.io/v1alpha1
kind: TestRecipient
metadata: {name: alice}
spec: {policyRef: {name: parity-test}, address: alice@parity.test, forwardTo: alice@copy.example}
`,
      },
      ['--retry-schedule', '1h'],
    );
  });
  afterAll(async () => {
    await r?.close();
    await oldPeer?.close();
    await newPeer?.close();
  });

  const legs = async (): Promise<Map<string, number>> => {
    const m = new Map<string, number>();
    for (const v of (await r.relay.metrics.parityLegs.get()).values) {
      const l = v.labels;
      m.set(`${l.policy}|${l.test_recipient}|${l.leg}|${l.result}|${l.reason ?? ''}`, v.value);
    }
    return m;
  };

  it('counts primaries, copies, suppressed and pending copies per policy and per TestRecipient', async () => {
    for (const to of ['bob@parity.test', 'alice@parity.test', 'nobody@parity.test', 'later@parity.test'])
      await submit(r.relay.smtp.port, { from: 's@origin.test', to, subject: to, text: to });
    await waitFor(
      async () => {
        const m = await legs();
        return m.get(`${POLICY}||copy|suppressed|rejected`) === 1 &&
          m.get(`${POLICY}||primary|delivered|`) === 3
          ? m
          : undefined;
      },
      { what: 'the parity counters of the four messages' },
    );
    await waitFor(() => newPeer.rcpts.some((x) => x.address === 'later@parity.test' && x.code === 450), {
      what: 'the deferred copy',
    });
    const m = await legs();
    expect(Object.fromEntries(m)).toEqual({
      [`${POLICY}||primary|delivered|`]: 3, // bob, nobody, later
      [`${POLICY}||copy|delivered|`]: 1, // bob
      [`${POLICY}||copy|suppressed|rejected`]: 1, // nobody: 550 from the secondary, bounces Suppress
      [`${POLICY}|${ALICE}|primary|delivered|`]: 1,
      [`${POLICY}|${ALICE}|copy|delivered|`]: 1,
    });
    // No label carries an address.
    const text = (await httpGet(r.relay.http.port, '/metrics')).body;
    const parityLines = text.split('\n').filter((l) => l.startsWith('mailroute_parity_'));
    expect(parityLines.length).toBeGreaterThan(0);
    expect(parityLines.filter((l) => l.includes('@'))).toEqual([]);

    const pending = (await r.relay.metrics.parityCopiesPending.get()).values.filter((v) => v.value !== 0);
    expect(pending.map((v) => [v.labels.policy, v.labels.test_recipient, v.value])).toEqual([
      [POLICY, '', 1],
    ]);
    const lag = (await r.relay.metrics.parityCopyLag.get()).values.filter(
      (v) => v.metricName === 'mailroute_parity_copy_lag_seconds_count',
    );
    expect(Object.fromEntries(lag.map((v) => [v.labels.test_recipient, v.value]))).toEqual({
      '': 1,
      [ALICE]: 1,
    });
  });

  it('mailroute queue stats shows the same, one line per policy and TestRecipient', async () => {
    const admin = `127.0.0.1:${r.relay.admin.port}`;
    const text = await run(NODE, [join(ROOT, 'bin/mailroute.js'), 'queue', 'stats', '--admin', admin]);
    const lines = text.stdout.split('\n');
    expect(lines[1]).toMatch(/^KIND\s+NAME\s+PRIMARY\s+COPIES\s+SUPPRESSED\s+PENDING\s+LAG P95$/);
    expect(lines.find((l) => l.startsWith('DeliveryPolicy'))).toMatch(
      /^DeliveryPolicy\s+default\/parity-test\s+4\s+2\s+1 \(rejected 1\)\s+1\s+<= 1s$/,
    );
    expect(lines.find((l) => l.startsWith('TestRecipient'))).toMatch(
      /^TestRecipient\s+default\/alice\s+1\s+1\s+0\s+0\s+<= 1s$/,
    );
    const json = await run(NODE, [
      join(ROOT, 'bin/mailroute.js'),
      'queue',
      'stats',
      '--admin',
      admin,
      '-o',
      'json',
    ]);
    const stats = JSON.parse(json.stdout) as {
      parity: { policies: Record<string, { copiesPending: number; suppressedBy: Record<string, number> }> };
    };
    expect(stats.parity.policies[POLICY]).toMatchObject({ copiesPending: 1, suppressedBy: { rejected: 1 } });
  });
});
