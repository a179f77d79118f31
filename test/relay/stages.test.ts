// Dated stages end to end: a real relay delivering to two real SMTP peers follows a DeliveryPolicy's
// stage schedule by the clock, with no reload (resolve() reads the clock at every RCPT), and its transition timer
// flips mailroute_policy_stage_info at the stage's end. Reverting the manifest (the GitOps undo) brings the previous
// routing back with the next reload. No sleeps: the stage ends a moment from now and the test waits for that instant.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSmtpPeer, type SmtpPeer } from '../support/smtp-peer.ts';
import { waitFor } from '../support/wait.ts';
import { httpGet, metricValue, startRelay, submit, type InProcessRelay } from './relay-harness.ts';

const domainYaml = (oldPort: number, newPort: number) => `apiVersion: mailroute.io/v1alpha1
kind: MailDomain
metadata: {name: stages-test}
spec:
  domain: stages.test
  servers:
    - {name: old, host: 127.0.0.1, port: ${oldPort}, tls: None}
    - {name: new, host: 127.0.0.1, port: ${newPort}, tls: None}
`;

/** Dual with copies to new until `until`, then Direct to new. */
const stagedPolicy = (until: string) => `apiVersion: mailroute.io/v1alpha1
kind: DeliveryPolicy
metadata: {name: cutover}
spec:
  domainRef: {name: stages-test}
  mode: Direct
  primary: new
  stages:
    - name: trial
      until: "${until}"
      mode: Dual
      primary: old
      secondary: new
`;

const dualPolicy = `apiVersion: mailroute.io/v1alpha1
kind: DeliveryPolicy
metadata: {name: cutover}
spec:
  domainRef: {name: stages-test}
  mode: Dual
  primary: old
  secondary: new
`;

describe('dated stages in the relay', () => {
  let oldPeer: SmtpPeer;
  let newPeer: SmtpPeer;
  let r: InProcessRelay;
  let untilMs = 0;

  beforeAll(async () => {
    oldPeer = await startSmtpPeer('old');
    newPeer = await startSmtpPeer('new');
    r = await startRelay({
      'domain.yaml': domainYaml(oldPeer.port, newPeer.port),
      'policy.yaml': dualPolicy,
    });
    // The schedule is written once the relay runs, so a slow start cannot eat into the trial stage: far enough
    // ahead for the first message to be accepted under it on a loaded machine.
    const before = r.relay.revision();
    untilMs = Date.now() + 6000;
    await writeFile(join(r.manifests, 'policy.yaml'), stagedPolicy(new Date(untilMs).toISOString()));
    await waitFor(() => r.relay.revision() !== before, { what: 'the staged policy being served' });
  });
  afterAll(async () => {
    await r?.close();
    await oldPeer?.close();
    await newPeer?.close();
  });

  const send = async (to: string, subject: string): Promise<number> => {
    const at = Date.now();
    await submit(r.relay.smtp.port, { from: 's@origin.test', to, subject, text: subject });
    return at;
  };
  const got = (peer: SmtpPeer, rcpt: string, subject: string): boolean =>
    peer.for(rcpt).some((m) => m.raw.toString().includes(`Subject: ${subject}`));
  const stageGauge = async (stage: string): Promise<number | undefined> =>
    metricValue(
      (await httpGet(r.relay.http.port, '/metrics')).body,
      'mailroute_policy_stage_info',
      `{policy="default/cutover",stage="${stage}"}`,
    );

  it('routes by the stage in force: Dual before until, Direct to new from until on, without a reload', async () => {
    const revision = r.relay.revision();
    expect(await stageGauge('trial')).toBe(1);

    const sentAt = await send('alice@stages.test', 'during trial');
    expect(sentAt, 'the first message must be sent before the stage ends').toBeLessThan(untilMs);
    await waitFor(() => got(oldPeer, 'alice@stages.test', 'during trial'), {
      what: 'the trial primary on old',
    });
    await waitFor(() => got(newPeer, 'alice@stages.test', 'during trial'), { what: 'the trial copy on new' });

    // The relay's transition timer flips the gauge at the stage's end (armed on routing/schedule.ts nextTransition).
    await waitFor(async () => (await stageGauge('final')) === 1, {
      timeoutMs: 15_000,
      what: 'mailroute_policy_stage_info stage="final"',
    });
    expect(Date.now()).toBeGreaterThanOrEqual(untilMs);
    expect(await stageGauge('trial')).toBeUndefined();

    await send('bob@stages.test', 'after cutover');
    await waitFor(() => got(newPeer, 'bob@stages.test', 'after cutover'), {
      what: 'the final primary on new',
    });
    // The leg of record moved to new, and no copy went to old.
    expect(oldPeer.for('bob@stages.test')).toEqual([]);
    expect(r.relay.revision(), 'the table was not reloaded').toBe(revision);
  });

  it('reverting the manifest restores the previous routing with the next reload', async () => {
    const before = r.relay.revision();
    await writeFile(join(r.manifests, 'policy.yaml'), dualPolicy);
    await waitFor(() => r.relay.revision() !== before, { what: 'the reverted table being served' });
    await send('carol@stages.test', 'after revert');
    await waitFor(() => got(oldPeer, 'carol@stages.test', 'after revert'), {
      what: 'the primary on old again',
    });
    await waitFor(() => got(newPeer, 'carol@stages.test', 'after revert'), { what: 'the copy on new again' });
    // No stages any more: the gauge has no series for the policy.
    expect(await stageGauge('final')).toBeUndefined();
  });
});
