// Crash rounds: kill -9 of the real relay process (node bin/mailroute.js relay) at a random point under dual load,
// N rounds, each restart on the same spool. Odd rounds run the relay as it runs by default (one process); even rounds
// run it with --workers 2 and first kill one worker (the primary restarts it), then the whole process tree; the next
// single-process round adopts the worker folder's queue (relay/spool/adopt.ts). Load: nodemailer pooled clients and raw-socket clients sending one
// message per connection. Deliveries are in flight when the kill comes (the destinations answer after a random
// delay). After the last round one more relay drains the spool: every message that was answered 250 must have
// reached both legs (primary and copy); duplicates are counted and reported, never a loss.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RawSmtp, code } from '../relay/raw-client.ts';
import type { SmtpPeer } from '../support/smtp-peer.ts';
import { waitFor } from '../support/wait.ts';
import {
  isDsn,
  adminPort,
  dualDestinations,
  duplicates,
  killTree,
  loadTransport,
  processTree,
  quarantinedFiles,
  relayArgs,
  type RelayChild,
  report,
  scale,
  spawnRelay,
  subjectCounts,
  allDeliveredAndDrained,
} from './support.ts';

const ROUNDS = scale(20, 3);

describe('crash: kill -9 at random points under dual load', () => {
  let primary: SmtpPeer;
  let copy: SmtpPeer;
  let dir: string;
  const children: RelayChild[] = [];

  beforeAll(async () => {
    // Random small delays before the destinations answer DATA, so legs are in flight when the kill comes.
    ({ primary, copy, dir } = await dualDestinations('rel-crash', 'crash.test'));
    primary.behaviour.dataDelayMs = 0;
    copy.behaviour.dataDelayMs = 20;
  });
  afterAll(async () => {
    for (const c of children) if (c.proc.exitCode === null) c.kill('SIGKILL');
    await primary?.close();
    await copy?.close();
  });

  it(`${ROUNDS} rounds: every message answered 250 reaches both legs`, async () => {
    const acked = new Set<string>();
    let seq = 0;
    const started = Date.now();
    const perRound: number[] = [];
    const roundMs: number[] = [];
    const startMs: number[] = [];
    const afterKillMs: number[] = [];
    let workerKills = 0;
    let processesKilled = 0;

    for (let round = 1; round <= ROUNDS; round++) {
      const roundStart = Date.now();
      const withWorkers = round % 2 === 0;
      const relay = await spawnRelay(relayArgs(dir, withWorkers ? ['--workers', '2'] : []));
      children.push(relay);
      startMs.push(Date.now() - roundStart);
      let stop = false;
      const before = acked.size;

      // Clients keep sending through errors (a killed worker drops its sessions) until the round stops.
      const pooled = async (): Promise<void> => {
        const transport = () => loadTransport(relay.smtpPort);
        let t = transport();
        try {
          while (!stop) {
            const id = `c-${++seq}`;
            try {
              const info = await t.sendMail({
                from: 'sender@origin.test',
                to: [`u${seq % 5}@crash.test`, `v${seq % 3}@crash.test`],
                subject: id,
                messageId: `<${id}@crash.test>`,
                text: `payload ${id}\n`.repeat(40),
              });
              if (/^250 /.test(info.response)) acked.add(id);
            } catch {
              // never answered 250 (the relay or its worker died): not counted
              t.close();
              t = transport();
            }
          }
        } finally {
          t.close();
        }
      };
      const raw = async (): Promise<void> => {
        while (!stop) {
          const id = `c-${++seq}`;
          let c: RawSmtp | undefined;
          try {
            c = await RawSmtp.connect(relay.smtpPort);
            const replies = await c.begin('sender@origin.test', [`w${seq % 4}@crash.test`]);
            if (replies.some((r) => code(r) >= 400 || r === '')) continue;
            if (code(await c.cmd('DATA')) !== 354) continue;
            c.write(`Subject: ${id}\r\nMessage-ID: <${id}@crash.test>\r\n\r\nraw ${id}\r\n.\r\n`);
            const final = await c.reply(5000);
            if (code(final) === 250) acked.add(id);
            c.write('QUIT\r\n');
          } catch {
            // connection refused or dropped: not answered 250
          } finally {
            c?.close();
          }
        }
      };
      const load = [pooled(), pooled(), pooled(), raw(), raw()];
      // With workers, one worker process is killed first, at a random point; the primary restarts it and the relay
      // goes on serving (its queue is recovered by the new worker).
      if (withWorkers) {
        const at = acked.size + 3 + Math.floor(Math.random() * 15);
        await waitFor(() => acked.size >= at, { timeoutMs: 30_000, what: `${at} acknowledged messages` });
        const workers = (await processTree(relay.pid)).slice(1);
        const victim = workers[Math.floor(Math.random() * workers.length)];
        if (victim !== undefined) {
          process.kill(victim, 'SIGKILL');
          workerKills++;
        }
      }
      // Then the whole relay (primary and workers) at a random point: after 5..40 more acknowledged messages.
      const target = acked.size + 5 + Math.floor(Math.random() * 36);
      await waitFor(() => acked.size >= target, {
        timeoutMs: 30_000,
        what: `${target} acknowledged messages`,
      });
      processesKilled += await killTree(relay.pid);
      stop = true;
      const killedAt = Date.now();
      await relay.exited;
      await Promise.all(load);
      afterKillMs.push(Date.now() - killedAt);
      perRound.push(acked.size - before);
      roundMs.push(Date.now() - roundStart);
    }

    // The final start drains the spool.
    const last = await spawnRelay(relayArgs(dir));
    children.push(last);
    await allDeliveredAndDrained(
      acked,
      { primary, copy },
      (p) => subjectCounts(p, /^c-\d+$/),
      adminPort(last),
      {
        deliveredMs: 60_000,
        drainedMs: 20_000,
      },
    );

    // kill -9 at any point never leaves a file the spool cannot read (it would be quarantined at start).
    const quarantined = await quarantinedFiles(join(dir, 'spool'));
    const p = subjectCounts(primary, /^c-\d+$/);
    const c = subjectCounts(copy, /^c-\d+$/);
    const figures = {
      rounds: ROUNDS,
      workerKills,
      processesKilled,
      acked: acked.size,
      ackedPerRound: perRound,
      roundMs,
      startMs,
      afterKillMs,
      attempted: seq,
      lostPrimary: [...acked].filter((id) => !p.has(id)).length,
      lostCopy: [...acked].filter((id) => !c.has(id)).length,
      duplicatesPrimary: duplicates(p),
      duplicatesCopy: duplicates(c),
      quarantined: quarantined.length,
      bounces: primary.messages.filter(isDsn).length,
      seconds: Math.round((Date.now() - started) / 100) / 10,
    };
    report('crash', figures);
    expect(acked.size).toBeGreaterThanOrEqual(ROUNDS * 5);
    expect(workerKills).toBe(Math.floor(ROUNDS / 2));
    expect(figures.lostPrimary).toBe(0);
    expect(figures.lostCopy).toBe(0);
    expect(figures.bounces).toBe(0);
    expect(quarantined).toEqual([]);
    last.kill('SIGTERM');
    expect(await last.exited).toBe(0);
  });
});
