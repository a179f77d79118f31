// The wall clock stepped back: a node that booted with its clock a year ahead (a bad RTC, a VM restored from a
// snapshot) deferred a message, and NTP then set the clock right. The leg's stored nextAttemptAt is a year away; the
// relay must try it again within its retry schedule, not in a year. Real relays (runRelay, the first on a clock a year
// ahead) on one spool folder, a real SMTP peer that refuses at first and then accepts.
import { afterAll, describe, expect, it } from 'vitest';
import type { MessageView } from '../../relay/admin/view.ts';
import type { RelayDeps, RelayHandle } from '../../relay/relay.ts';
import { startSmtpPeer, type SmtpPeer } from '../support/smtp-peer.ts';
import { waitFor } from '../support/wait.ts';
import {
  dualDomain,
  httpGet,
  queuedId,
  runRelayIn,
  submit,
  tempDir,
  writeManifests,
} from './relay-harness.ts';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';

const YEAR_MS = 365 * 24 * 3_600_000;

describe('a deferred leg after the clock was stepped back', () => {
  let peer: SmtpPeer | undefined;
  let dir = '';
  const relays: RelayHandle[] = [];

  afterAll(async () => {
    for (const r of relays) await r.shutdown('test');
    await peer?.close();
    if (dir !== '') await rm(dir, { recursive: true, force: true });
  });

  // a one-hour retry step: the first relay stores a next attempt a year and an hour away
  const start = async (deps: RelayDeps): Promise<RelayHandle> => {
    const r = await runRelayIn(dir, ['--retry-schedule', '1h'], deps);
    relays.push(r);
    return r;
  };
  const view = async (r: RelayHandle, id: string): Promise<MessageView | undefined> => {
    const res = await httpGet(r.admin.port, `/queue/${id}`);
    return res.status === 200 ? (JSON.parse(res.body) as MessageView) : undefined;
  };

  it('is tried again at once, not when the wall clock reaches its stored time a year later', async () => {
    let refusing = true;
    peer = await startSmtpPeer('old', {
      rcpt: () => (refusing ? { code: 451, message: '4.3.0 try later' } : undefined),
    });
    dir = await tempDir('clock-step');
    await writeManifests(join(dir, 'manifests'), {
      'd.yaml': dualDomain('clock.test', peer.port, peer.port, { mode: 'Direct' }),
    });

    // 1. a relay whose clock is a year ahead defers the message: nextAttemptAt is a year and an hour from now
    const ahead = await start({ clock: () => new Date(Date.now() + YEAR_MS) });
    const id = queuedId(
      await submit(ahead.smtp.port, {
        from: 's@origin.test',
        to: 'pat@clock.test',
        subject: 'clock',
        text: 'x',
      }),
    );
    await waitFor(async () => (await view(ahead, id))?.state === 'deferred', {
      what: 'the first attempt deferred',
    });
    const stored = (await view(ahead, id))?.recipients[0]?.legs[0]?.nextAttemptAt ?? '';
    expect(Date.parse(stored) - Date.now()).toBeGreaterThan(YEAR_MS);
    await ahead.shutdown('test');
    relays.pop();

    // 2. the clock is right again; the destination takes mail now
    refusing = false;
    const right = await start({});
    await waitFor(() => peer!.for('pat@clock.test').length === 1, {
      what: 'the deferred message delivered after the clock went back a year',
      timeoutMs: 20_000,
    });
    await waitFor(async () => (await view(right, id)) === undefined, { what: 'the message removed' });
  });
});
