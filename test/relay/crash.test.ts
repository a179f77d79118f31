// kill -9 of the relay under load, then a restart on the same spool: every message that was answered 250 is
// delivered on every leg of its plan (Dual All: primary and copy). Duplicates are allowed (at-least-once) and
// reported. The copy destination is down during the first run so copies are queued when the crash comes.
import { join } from 'node:path';
import nodemailer from 'nodemailer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSmtpPeer, type SmtpPeer } from '../support/smtp-peer.ts';
import { waitFor } from '../support/wait.ts';
import {
  dualDomain,
  loopbackRelayArgs,
  spawnRelay,
  tempDir,
  writeManifests,
  type RelayChild,
} from './relay-harness.ts';

describe('crash safety', () => {
  let oldPeer: SmtpPeer;
  let newPeer: SmtpPeer;
  let dir: string;
  const children: RelayChild[] = [];

  beforeAll(async () => {
    oldPeer = await startSmtpPeer('old');
    newPeer = await startSmtpPeer('new');
    dir = await tempDir('crash');
    await writeManifests(join(dir, 'manifests'), {
      'd.yaml': dualDomain('crash.test', oldPeer.port, newPeer.port),
    });
  });
  afterAll(async () => {
    for (const c of children) c.kill('SIGKILL');
    await oldPeer?.close();
    await newPeer?.close();
  });

  const args = (): string[] => loopbackRelayArgs(dir, ['--retry-schedule', '1s']);

  it('kill -9 during load loses nothing that was answered 250', async () => {
    await newPeer.down();
    const first = await spawnRelay(args());
    children.push(first);
    const acked = new Set<string>();
    let n = 0;
    let killed = false;
    const sender = async (): Promise<void> => {
      const t = nodemailer.createTransport({
        host: '127.0.0.1',
        port: first.smtpPort,
        ignoreTLS: true,
        pool: true,
        maxConnections: 1,
      });
      try {
        while (!killed) {
          const id = `m-${++n}`;
          try {
            const info = await t.sendMail({
              from: 's@origin.test',
              to: `u${n % 7}@crash.test`,
              subject: id,
              text: `payload ${id}\n`.repeat(50),
            });
            if (/^250 /.test(info.response)) acked.add(id);
          } catch {
            return; // the relay died under us: this one was never answered 250
          }
        }
      } finally {
        t.close();
      }
    };
    const senders = Array.from({ length: 6 }, () => sender());
    await waitFor(() => acked.size >= 60, { timeoutMs: 20_000, what: '60 acknowledged messages' });
    first.kill('SIGKILL');
    killed = true;
    await first.exited;
    await Promise.all(senders);
    const ackedAtKill = acked.size;

    await newPeer.up();
    const second = await spawnRelay(args());
    children.push(second);
    const subjectsAt = (peer: SmtpPeer): Map<string, number> => {
      const m = new Map<string, number>();
      for (const msg of peer.messages) {
        const s = /^Subject: (m-\d+)\r?$/m.exec(msg.raw.toString())?.[1];
        if (s) m.set(s, (m.get(s) ?? 0) + 1);
      }
      return m;
    };
    await waitFor(
      () => {
        const o = subjectsAt(oldPeer);
        const c = subjectsAt(newPeer);
        return [...acked].every((id) => o.has(id) && c.has(id));
      },
      { timeoutMs: 30_000, intervalMs: 100, what: 'every acknowledged message on both legs' },
    );
    const dup = (m: Map<string, number>): number => [...m.values()].filter((v) => v > 1).length;
    const report = {
      acked: ackedAtKill,
      primaryDuplicates: dup(subjectsAt(oldPeer)),
      copyDuplicates: dup(subjectsAt(newPeer)),
    };
    console.log(`kill -9 under load: ${JSON.stringify(report)}`);
    expect(ackedAtKill).toBeGreaterThanOrEqual(60);
    second.kill('SIGTERM');
    expect(await second.exited).toBe(0);
  });
});
