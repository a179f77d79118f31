// A relay restarted on a long outage's queue: the copy server has been down for hours, so thousands of messages wait
// for their copy leg's retry (their primary leg was delivered). The start-up scan looks at every one of them; new
// mail accepted meanwhile is delivered at once, not after the whole backlog (it waited for all of it before: with
// 200,000 queued, 11 s on a warm page cache, bench/queue-restart.ts). Real relay process, smtp-server peer, nodemailer.
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import nodemailer from 'nodemailer';
import { afterAll, describe, expect, it } from 'vitest';
import { tempDir, writeManifests, domainManifests, dualDomain } from '../relay/relay-harness.ts';
import { freePort } from '../support/net.ts';
import { startSmtpPeer, type SmtpPeer } from '../support/smtp-peer.ts';
import { waitingOnCopy, writeQueuedDualMessages } from '../support/delivery.ts';
import { waitFor } from '../support/wait.ts';
import { metrics, metricSum, relayArgs, spawnRelay, subjectCounts, type RelayChild } from './support.ts';

const BACKLOG = 30_000;

describe('restart on a backlog', () => {
  let peer: SmtpPeer | undefined;
  let relay: RelayChild | undefined;
  let dir: string | undefined;
  afterAll(async () => {
    if (relay && relay.proc.exitCode === null) {
      relay.kill('SIGTERM');
      await relay.exited;
    }
    await peer?.close();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it(`new mail is delivered while ${BACKLOG} deferred messages are still being looked at`, async () => {
    peer = await startSmtpPeer('new-primary');
    dir = await tempDir('restart-backlog');
    const closed: [number, number] = [await freePort(), await freePort()];
    await writeManifests(join(dir, 'manifests'), {
      'q.yaml': dualDomain('q.test', closed[0], closed[1]),
      'n.yaml': domainManifests({
        domain: 'n.test',
        servers: [`name: main, host: 127.0.0.1, port: ${peer.port}, tls: None`],
        policy: '  mode: Direct\n  primary: main\n',
      }),
    });
    await writeQueuedDualMessages(join(dir, 'spool'), BACKLOG, closed, {
      domain: 'q.test',
      legDomain: 'q.test',
      state: waitingOnCopy(new Date(Date.now() + 3_600_000)),
    });

    const r = await spawnRelay(relayArgs(dir));
    relay = r;
    const deferred = async (): Promise<number> =>
      metricSum(await metrics(r.httpPort), 'mailroute_queue_messages', { state: 'deferred' });
    const t = nodemailer.createTransport({ host: '127.0.0.1', port: r.smtpPort, ignoreTLS: true });
    const sent = await t.sendMail({
      from: 'someone@outside.test',
      to: 'user@n.test',
      subject: 'after-restart',
      text: 'new mail\n',
    });
    t.close();
    expect(sent.response).toMatch(/^250 /);
    const p = peer;
    await waitFor(() => subjectCounts(p, /^after-restart$/).size === 1, {
      timeoutMs: 30_000,
      what: 'the new message at its server',
    });
    // The backlog was still being looked at when the new message arrived (it went after all of it before).
    const lookedAt = await deferred();
    expect(lookedAt).toBeLessThan(BACKLOG);
    // And nothing of the backlog was lost or tried early: every message is deferred, none went anywhere.
    await waitFor(async () => (await deferred()) === BACKLOG, {
      timeoutMs: 120_000,
      what: `all ${BACKLOG} backlog messages looked at and deferred`,
    });
    expect(subjectCounts(p, /./).size).toBe(1);
  });
});
