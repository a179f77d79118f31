// Two relay processes on one spool folder (a second `mailroute relay` started by hand beside the service, two pods
// given one volume): the second waits for the lock (relay/spool/lock.ts), then exits 1 naming the spool and the
// holder; the first goes on. Before the lock, both started and each delivered the queued messages (the test counts
// two copies of each at the destination). kill -9 lets go of the lock at once (the kernel's record lock), so a relay
// started after a crash starts; with --workers the primary holds it, and its workers end with it.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSmtpPeer, type SmtpPeer } from '../support/smtp-peer.ts';
import { waitFor } from '../support/wait.ts';
import { processTree, relayArgs } from '../reliability/support.ts';
import { dualDomain, spawnRelay, submit, tempDir, writeManifests, type RelayChild } from './relay-harness.ts';

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('one relay process per spool folder', () => {
  let primary: SmtpPeer;
  let copy: SmtpPeer;
  let dir: string;
  const children: RelayChild[] = [];
  const args = (extra: string[] = []): string[] => relayArgs(dir, extra);
  const start = async (extra: string[] = []): Promise<RelayChild> => {
    const c = await spawnRelay(args(extra));
    children.push(c);
    return c;
  };

  beforeAll(async () => {
    primary = await startSmtpPeer('primary');
    copy = await startSmtpPeer('copy');
    dir = await tempDir('spool-lock');
    await writeManifests(join(dir, 'manifests'), {
      'd.yaml': dualDomain('lock.test', primary.port, copy.port),
    });
  });
  afterAll(async () => {
    for (const c of children) {
      if (c.proc.exitCode === null) {
        c.kill('SIGKILL');
        await c.exited;
      }
    }
    await primary?.close();
    await copy?.close();
  });

  it('a second relay on the spool exits 1 naming the holder; the first goes on; kill -9 frees the spool at once', async () => {
    await primary.down();
    const first = await start();
    // queued while the primary is down: a second relay on the spool would deliver it too
    await submit(first.smtpPort, { from: 'a@origin.test', to: 'u@lock.test', subject: 'lock-1', text: 'x' });

    const t0 = performance.now();
    const second = spawnRelay(args());
    await expect(second).rejects.toThrow(/relay exited \(1\) before it started/);
    const waitedMs = performance.now() - t0;
    const err = await second.catch((e: unknown) => String(e));
    expect(err).toContain(`is in use by relay process ${first.pid} on `);
    expect(err).toContain(`--spool ${join(dir, 'spool')}`);
    expect(err).toContain('stop the other relay, or give this one its own --spool');
    expect(waitedMs).toBeGreaterThanOrEqual(10_000); // it waited for a relay that might be stopping

    await primary.up();
    await waitFor(() => primary.messages.length >= 1, {
      what: 'the queued message delivered by the first relay',
    });
    await submit(first.smtpPort, { from: 'a@origin.test', to: 'u@lock.test', subject: 'lock-2', text: 'x' });
    await waitFor(() => primary.messages.length >= 2, {
      what: 'the first relay takes and delivers new mail',
    });
    expect(primary.messages.length).toBe(2); // nothing delivered twice

    first.kill('SIGKILL');
    await first.exited;
    const t1 = performance.now();
    const third = await start();
    expect(performance.now() - t1, 'a relay after kill -9 waits for no lock').toBeLessThan(10_000);
    await submit(third.smtpPort, { from: 'a@origin.test', to: 'u@lock.test', subject: 'lock-3', text: 'x' });
    await waitFor(() => primary.messages.length >= 3, { what: 'the relay after the crash delivers' });
  });

  it('with --workers the primary holds the lock; kill -9 of the primary ends its workers and frees the spool', async () => {
    for (const c of children) {
      if (c.proc.exitCode === null) {
        c.kill('SIGTERM');
        await c.exited;
      }
    }
    const pool = await start(['--workers', '2']);
    const workers = await waitFor(
      async () => {
        const kids = (await processTree(pool.pid)).slice(1);
        return kids.length === 2 ? kids : undefined;
      },
      { what: 'two workers' },
    );
    await expect(spawnRelay(args())).rejects.toThrow(`is in use by relay process ${pool.pid} on `);
    pool.kill('SIGKILL');
    await pool.exited;
    await waitFor(() => workers.every((w) => !alive(w)), { what: 'the workers gone with their primary' });
    const after = await start();
    await submit(after.smtpPort, { from: 'a@origin.test', to: 'u@lock.test', subject: 'lock-4', text: 'x' });
    await waitFor(() => primary.messages.length >= 4, { what: 'the relay after the pool delivers' });
  });
});
