// Power cuts on LazyFS (test/reliability/lazyfs.ts): the relay's spool is a LazyFS mount, which keeps every write in
// its own page cache until it is fsynced. Under dual load with destinations that tempfail part of their
// recipients, at a random moment the relay is killed with SIGKILL and LazyFS drops every unsynced write at the same
// moment: a power cut. LazyFS is remounted, the relay restarted on the same spool, and the load goes on; the next cut
// is counted from when the legs that may have been in flight at the last one were tried again. After the last cut
// every destination accepts and one more relay drains the spool.
//
// One client of four sends bodies larger than the spool's first write (WRITE_CHUNK), which take the other durable path
// (written in pieces through a second descriptor and fsynced at their end, relay/spool/spool.ts), the others small
// bodies that one O_DSYNC write makes durable.
//
// Checked: no message answered 250 is lost on either leg; every delivered large body is whole, byte for byte; no leg
// is delivered more than twice; a leg delivered twice was first delivered shortly before a cut (its result was still
// being written). Reported (docs/reliability.md):
// cuts, acknowledged, lost, duplicated legs, max deliveries of one leg, the largest repeat window, quarantined.
//
// The second test cuts where the first never does: during recovery. After a first cut under load, each round restarts
// the relay and cuts again 0-400 ms after it is ready, while the legs in flight at the last cut are being tried again
// (a round whose cut comes after they all were counts as having missed that window). Checked: nothing acknowledged is
// lost, at least one round cut during recovery, and no leg is delivered more than once per cut plus once (a leg in
// flight at several close cuts is repeated once per cut).
//
// The third test cuts while copies are being shed (relay/delivery/shed.ts): 2,000 messages whose primary was delivered
// wait on a secondary that is down; a relay whose volume is under --shed-copies-below sheds them one at a time, and
// the power goes once a tenth are. Checked, after the secondary is back and one more relay drained the spool: every
// primary delivered exactly once, no copy delivered twice, every copy not shed delivered (at most the one being shed
// at the cut shed without its log line), no DSN, nothing quarantined.
import { once } from 'node:events';
import { rename } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { SmtpPeer } from '../support/smtp-peer.ts';
import { waitFor, withDeadline } from '../support/wait.ts';
import { WRITE_CHUNK } from '../../relay/spool/spool.ts';
import { spoolSpace } from '../../relay/delivery/shed.ts';
import { lazyfsAvailability, lazyfsBinary, mountLazyFs, type LazyFsMount } from './lazyfs.ts';
import {
  isDsn,
  adminPort,
  dualDestinations,
  killTree,
  legsNotRetried,
  loadTransport,
  quarantinedFiles,
  queueTotal,
  queueView,
  relayArgs,
  type RelayChild,
  report,
  scale,
  spawnRelay,
  subjectOf,
  allDeliveredAndDrained,
} from './support.ts';

const CUTS = scale(10, 3);
/** Messages waiting on their copy when the shedding relay starts (the third test). */
const SHED_MESSAGES = scale(5000, 2000);
/**
 * Cuts during recovery in the second test, after its first cut under load. A cut later than about 350 ms after the
 * restart often comes when every retried leg has been written (a miss); with two rounds both missed in 1 run of 9.
 */
const RECOVERY_ROUNDS = scale(5, 3);
/**
 * The cut of a recovery round comes at a random moment up to this long after the restarted relay is ready. The first
 * round's comes within RECOVERY_CUT_EARLY_MS, before the relay has written any retry (it starts them about 150 ms after
 * it is ready), so that every run cuts during a recovery at least once; the later rounds range wider.
 */
const RECOVERY_CUT_MAX_MS = 400;
const RECOVERY_CUT_EARLY_MS = 120;
/**
 * The text of a large message (the subject names it: `<tag>-<n>`): 2,200 lines of 71 bytes, 156 KB, in lines short
 * enough for nodemailer to send them as they are (7bit).
 */
const largeText = (id: string): string =>
  Array.from(
    { length: 2200 },
    (_, i) => `${id} line ${String(i).padStart(6, '0')} `.padEnd(70, 'x') + '\n',
  ).join('');
const LARGE_CLIENT = 3;
const availability = lazyfsAvailability();
const required = process.env['MAILROUTE_REQUIRE_LAZYFS'] === '1';
if (!availability.ok) {
  console.warn(
    `\n[power-loss] SKIPPED: ${availability.reason}. .ci/run installs and builds LazyFS (test/lazyfs/ensure.sh).\n`,
  );
}

/** Deliveries per message subject (`<tag>-<n>`: each test sends its own tag), with the time of each. */
function deliveries(peer: SmtpPeer, tag: string): Map<string, number[]> {
  const m = new Map<string, number[]>();
  const mine = new RegExp(`^${tag}-\\d+$`);
  for (const msg of peer.messages) {
    const s = subjectOf(msg.raw);
    if (s === undefined || !mine.test(s)) continue;
    const list = m.get(s) ?? [];
    list.push(msg.receivedAt);
    m.set(s, list);
  }
  return m;
}

/**
 * The legs (`<queue id>/<recipient>/<role>`, as legsNotRetried names them) whose attempt a relay logged: it logs
 * "delivery attempt" once the attempt's result is written to the spool (relay/delivery/results.ts), or with
 * `recorded: false` when that write failed (not counted). A leg whose message is to be removed is logged before the
 * removal is on disk: counted as tried, so a cut is never counted as inside the recovery when it was not.
 */
function legsAttempted(relay: RelayChild): Set<string> {
  const out = new Set<string>();
  for (const line of relay.logs) {
    if (!line.includes('"delivery attempt"')) continue;
    const l = JSON.parse(line) as { queueId: string; recipient: string; role: string; recorded?: boolean };
    if (l.recorded !== false) out.add(`${l.queueId}/${l.recipient}/${l.role}`);
  }
  return out;
}

describe.runIf(availability.ok || required)('power loss: cuts on LazyFS under dual load', () => {
  let binary: string;
  const peers: SmtpPeer[] = [];
  const children: RelayChild[] = [];
  let mount: LazyFsMount | undefined;

  beforeAll(async () => {
    if (!availability.ok)
      throw new Error(`LazyFS is required (MAILROUTE_REQUIRE_LAZYFS=1): ${availability.reason}`);
    binary = await lazyfsBinary();
  }, 900_000);
  // A test that failed half-way leaves its relay running and its spool mounted: the next one starts on its own.
  afterEach(async () => {
    for (const c of children) if (c.proc.exitCode === null) c.kill('SIGKILL');
    await mount?.unmount().catch(() => undefined);
    mount = undefined;
  });
  afterAll(async () => {
    for (const p of peers) await p.close();
  });

  /** Each test's own two destinations and spool folder. */
  async function destinations(tag: string): Promise<{ primary: SmtpPeer; copy: SmtpPeer; dir: string }> {
    const d = await dualDestinations(`rel-power-${tag}`, 'power.test');
    peers.push(d.primary, d.copy);
    // A fifth of the primary's and a third of the copy's recipients get 451 (the legs are deferred and their state
    // rewritten), so results are being written while other legs are delivered when the power goes.
    d.primary.behaviour.rcpt = () =>
      Math.random() < 0.2 ? { code: 451, message: '4.3.0 try later' } : undefined;
    d.copy.behaviour.rcpt = () =>
      Math.random() < 0.33 ? { code: 451, message: '4.3.0 try later' } : undefined;
    return d;
  }

  /** Mounts LazyFS over the spool and starts a relay on it; restartedAt is taken before the relay starts. */
  async function startOnSpool(
    dir: string,
    extra: string[] = [],
  ): Promise<{ relay: RelayChild; restartedAt: number }> {
    mount = await mountLazyFs({
      binary,
      mountPoint: join(dir, 'spool'),
      backing: join(dir, 'backing'),
      workDir: join(dir, 'lazyfs'),
    });
    const restartedAt = Date.now();
    const relay = await spawnRelay(relayArgs(dir, extra));
    children.push(relay);
    return { relay, restartedAt };
  }

  async function unmountSpool(): Promise<void> {
    await mount?.unmount();
    mount = undefined;
  }

  /** One cut during recovery: when it came, and how many of the legs to be tried again still were at that moment. */
  interface RecoveryRound {
    delayMs: number;
    cutAfterReadyMs: number;
    /** Legs that may have been in flight at the last cut and were not tried again when the relay first answered. */
    toRetry: number;
    /** Of those, the legs without a written result at the cut (no "delivery attempt" line): > 0 is a hit. */
    notRetriedAtCut: number;
  }

  interface Load {
    /** Every message answered 250, by subject. */
    acked: Set<string>;
    /** Messages attempted so far (the last number used). */
    seq: number;
    /** Every message sent with a large body (acknowledged or not), by subject. */
    large: Set<string>;
  }

  /**
   * Four clients sending `<tag>-<n>` messages (one recipient each) until the relay is gone; resolves when they end.
   * Client LARGE_CLIENT sends large bodies (largeText), the others small ones.
   */
  function clients(relay: RelayChild, tag: string, load: Load): Promise<void[]> {
    const client = async (k: number): Promise<void> => {
      const t = loadTransport(relay.smtpPort);
      try {
        for (;;) {
          const n = ++load.seq;
          const id = `${tag}-${n}`;
          if (k === LARGE_CLIENT) load.large.add(id);
          try {
            const info = await t.sendMail({
              from: 'sender@origin.test',
              to: `u${n % 7}@power.test`,
              subject: id,
              text: k === LARGE_CLIENT ? largeText(id) : `payload ${id}\n`.repeat(40),
            });
            if (/^250 /.test(info.response)) load.acked.add(id);
          } catch {
            break; // the relay is gone: nothing more is answered 250 in this round
          }
        }
      } finally {
        t.close();
      }
    };
    return Promise.all([client(0), client(1), client(2), client(3)]);
  }

  /** Waits for 20..119 more acknowledged messages: a cut's random point under load. */
  async function moreAcknowledged(load: Load): Promise<void> {
    const target = load.acked.size + 20 + Math.floor(Math.random() * 100);
    await waitFor(() => load.acked.size >= target, {
      timeoutMs: 60_000,
      what: `${target} acknowledged messages`,
    });
  }

  /**
   * The power goes: the relay's processes die and the unsynced writes are gone, at the same moment. Then the clients
   * end (their relay is gone) and LazyFS is unmounted. Returns the time of the cut.
   */
  async function powerCut(relay: RelayChild, load: Promise<void[]>): Promise<number> {
    const at = Date.now();
    await killTree(relay.pid);
    await mount?.powerCut();
    await relay.exited;
    // Every line it wrote before it died is read (legsAttempted).
    const out = relay.proc.stdout;
    if (out && !out.closed) await once(out, 'close');
    await load;
    await mount?.unmount();
    mount = undefined;
    return at;
  }

  /**
   * Every destination accepts now; one more relay drains the spool. Returns its exit code on SIGTERM and what was
   * quarantined.
   */
  async function drain(
    dir: string,
    primary: SmtpPeer,
    copy: SmtpPeer,
    tag: string,
    acked: Set<string>,
  ): Promise<{ exitCode: number | null; quarantined: string[] }> {
    primary.behaviour.rcpt = undefined;
    copy.behaviour.rcpt = undefined;
    const { relay } = await startOnSpool(dir);
    await allDeliveredAndDrained(acked, { primary, copy }, (p) => deliveries(p, tag), adminPort(relay), {
      deliveredMs: 120_000,
      drainedMs: 30_000,
    });
    relay.kill('SIGTERM');
    const exitCode = await relay.exited;
    const quarantined = await quarantinedFiles(join(dir, 'spool'));
    await mount?.unmount();
    mount = undefined;
    return { exitCode, quarantined };
  }

  /** Of the acknowledged messages, those with a large body. */
  const ackedLarge = (load: Load): number => [...load.acked].filter((id) => load.large.has(id)).length;

  /** What reached the destinations of one test: lost and repeated legs, DSNs. */
  function delivered(primary: SmtpPeer, copy: SmtpPeer, tag: string, load: Load) {
    const { acked } = load;
    const byPrimary = deliveries(primary, tag);
    const byCopy = deliveries(copy, tag);
    const legs = [...byPrimary.values(), ...byCopy.values()];
    // Every delivery of a large message, acknowledged or not (a message whose 250 the cut swallowed may still be
    // delivered), carries its whole text. Large messages are known by subject, not by their text, so that one whose
    // first lines were lost still counts as damaged.
    let largeDelivered = 0;
    let largeDamaged = 0;
    for (const msg of [...primary.messages, ...copy.messages]) {
      const id = subjectOf(msg.raw);
      if (id === undefined || !load.large.has(id)) continue;
      largeDelivered++;
      const body = msg.raw
        .subarray(msg.raw.indexOf('\r\n\r\n') + 4)
        .toString('latin1')
        .replace(/\r\n/g, '\n');
      if (body !== largeText(id)) largeDamaged++;
    }
    return {
      legs,
      figures: {
        largeDelivered,
        largeDamaged,
        lostPrimary: [...acked].filter((id) => !byPrimary.has(id)).length,
        lostCopy: [...acked].filter((id) => !byCopy.has(id)).length,
        legs: legs.length,
        duplicatedLegsPrimary: [...byPrimary.values()].filter((t) => t.length > 1).length,
        duplicatedLegsCopy: [...byCopy.values()].filter((t) => t.length > 1).length,
        maxDeliveriesPerLeg: Math.max(0, ...legs.map((t) => t.length)),
        bounces: [...primary.messages, ...copy.messages].filter(isDsn).length,
      },
    };
  }

  it(`${CUTS} power cuts: nothing acknowledged is lost, no leg is delivered more than twice`, async () => {
    const { primary, copy, dir } = await destinations('p');
    const load: Load = { acked: new Set(), seq: 0, large: new Set() };
    const cutTimes: number[] = [];
    const startTimes: number[] = [];
    const retryWaitsMs: number[] = [];
    const started = Date.now();

    for (let cut = 1; cut <= CUTS; cut++) {
      const { relay, restartedAt } = await startOnSpool(dir);
      startTimes.push(restartedAt);
      const sending = clients(relay, 'p', load);
      // A leg that was in flight at the last cut is delivered again now; a cut during that delivery too would repeat
      // it once more (a leg is in flight for tens of ms: two power cuts that close together are outside the bound
      // below; the second test cuts there). So the next cut is counted from when every such leg has been tried
      // again, its result written.
      const lastCut = cutTimes.at(-1);
      if (lastCut !== undefined) {
        const admin = adminPort(relay);
        const waitFrom = Date.now();
        let left: string[] = [];
        await waitFor(
          async () => (left = legsNotRetried(await queueView(admin), restartedAt, lastCut)).length === 0,
          { timeoutMs: 60_000, what: 'every leg that was in flight at the last cut to be tried again' },
        ).catch((err: unknown) => {
          throw new Error(`${String(err)}; not tried again: ${left.slice(0, 10).join(', ')}`);
        });
        retryWaitsMs.push(Date.now() - waitFrom);
      }
      // The cut comes at a random point: after 20..120 more acknowledged messages.
      await moreAcknowledged(load);
      cutTimes.push(await powerCut(relay, sending));
    }

    const { exitCode, quarantined } = await drain(dir, primary, copy, 'p', load.acked);
    expect(exitCode).toBe(0);

    const { legs, figures: outcome } = delivered(primary, copy, 'p', load);
    // A repeated leg: how long before the next cut its first delivery was (its result was being written).
    const repeated = legs.filter((times) => times.length > 1);
    // A destination may record a message a few ms after the kill that cut its connection short: such a delivery still
    // belongs to the run that was cut. A repeat after the last cut would have no cut to blame (Infinity).
    const windows = repeated.map((times) => {
      const first = Math.min(...times);
      const cutAfter = cutTimes.find((c) => c >= first - 500) ?? Infinity;
      return Math.max(0, cutAfter - first);
    });
    const figures = {
      cuts: CUTS,
      acknowledged: load.acked.size,
      acknowledgedLarge: ackedLarge(load),
      attempted: load.seq,
      ...outcome,
      maxRepeatWindowMs: Math.max(0, ...windows),
      repeatWindowsMs: windows.sort((x, y) => y - x).slice(0, 10),
      quarantined: quarantined.length,
      seconds: Math.round((Date.now() - started) / 100) / 10,
      retryWaitsMs,
      // When a leg goes over the bound: its deliveries beside the relay starts and the cuts (ms since the test began).
      ...(legs.some((t) => t.length > 2)
        ? {
            startsAtMs: startTimes.map((t) => t - started),
            cutsAtMs: cutTimes.map((t) => t - started),
            overTwiceAtMs: legs.filter((t) => t.length > 2).map((t) => t.map((x) => x - started)),
          }
        : {}),
    };
    report('power-loss', figures);
    expect(load.acked.size).toBeGreaterThanOrEqual(CUTS * 20);
    expect(largeText('p-1').length, 'a large body takes the bulk path').toBeGreaterThan(WRITE_CHUNK);
    expect(figures.acknowledgedLarge, 'large messages were acknowledged').toBeGreaterThanOrEqual(CUTS);
    expect(figures.largeDamaged).toBe(0);
    expect(figures.lostPrimary).toBe(0);
    expect(figures.lostCopy).toBe(0);
    expect(figures.maxDeliveriesPerLeg).toBeLessThanOrEqual(2);
    // Only what was in flight when the power went repeats (the target is the last ~100 ms; 1 s allows for a loaded
    // machine). Results written without fsync repeated whole seconds of deliveries.
    expect(figures.maxRepeatWindowMs).toBeLessThanOrEqual(1000);
    expect(figures.bounces).toBe(0);
    expect(quarantined).toEqual([]);
  });

  // 300 s, the reliability project's testTimeout (vitest.config.ts) that the first test runs under; a round takes about
  // a second.
  it(`${1 + RECOVERY_ROUNDS} power cuts, ${RECOVERY_ROUNDS} of them during recovery: nothing acknowledged is lost`, async () => {
    const { primary, copy, dir } = await destinations('r');
    const load: Load = { acked: new Set(), seq: 0, large: new Set() };
    const cutTimes: number[] = [];
    const started = Date.now();

    // The first cut under load, as in the first test.
    const first = await startOnSpool(dir);
    const firstLoad = clients(first.relay, 'r', load);
    await moreAcknowledged(load);
    cutTimes.push(await powerCut(first.relay, firstLoad));

    // Then each round restarts the relay and cuts again while it recovers: at a random moment after it is ready, and
    // if possible before every leg that may have been in flight at the last cut has been tried again.
    const rounds: RecoveryRound[] = [];
    for (let round = 1; round <= RECOVERY_ROUNDS; round++) {
      const { relay, restartedAt } = await startOnSpool(dir);
      const readyAt = Date.now();
      const sending = clients(relay, 'r', load);
      // The first round cuts early; so does the last when no round so far cut before the retries were written (the
      // retries may take less time than a cut at a random moment up to RECOVERY_CUT_MAX_MS leaves them).
      const early = round === 1 || (round === RECOVERY_ROUNDS && !rounds.some((r) => r.notRetriedAtCut > 0));
      const delayMs = Math.floor(Math.random() * (early ? RECOVERY_CUT_EARLY_MS : RECOVERY_CUT_MAX_MS));
      // The legs to be tried again, read as soon as the relay answers (20-60 ms, before it starts retrying them; a
      // delay shorter than that answer cuts when it comes).
      const lastCut = cutTimes.at(-1) ?? 0;
      const toRetry = legsNotRetried(await queueView(adminPort(relay)), restartedAt, lastCut);
      // Not a synchronization: when the power goes is what this test varies (a random moment of the recovery), not
      // something it waits for. Whether it came before the retries were written is read from the log afterwards.
      await sleep(Math.max(0, readyAt + delayMs - Date.now()));
      const cutAt = await powerCut(relay, sending);
      cutTimes.push(cutAt);
      const attempted = legsAttempted(relay);
      rounds.push({
        delayMs,
        cutAfterReadyMs: cutAt - readyAt,
        toRetry: toRetry.length,
        notRetriedAtCut: toRetry.filter((leg) => !attempted.has(leg)).length,
      });
    }

    const { exitCode, quarantined } = await drain(dir, primary, copy, 'r', load.acked);
    expect(exitCode).toBe(0);

    const { legs, figures: outcome } = delivered(primary, copy, 'r', load);
    const cuts = cutTimes.length;
    const figures = {
      cuts,
      recoveryRounds: RECOVERY_ROUNDS,
      roundsInWindow: rounds.filter((r) => r.notRetriedAtCut > 0).length,
      rounds,
      acknowledged: load.acked.size,
      acknowledgedLarge: ackedLarge(load),
      attempted: load.seq,
      ...outcome,
      legsOverTwice: legs.filter((t) => t.length > 2).length,
      quarantined: quarantined.length,
      seconds: Math.round((Date.now() - started) / 100) / 10,
    };
    report('power-loss-recovery', figures);
    expect(figures.largeDamaged).toBe(0);
    expect(figures.lostPrimary).toBe(0);
    expect(figures.lostCopy).toBe(0);
    expect(figures.bounces).toBe(0);
    expect(quarantined).toEqual([]);
    // The test must have cut during a recovery at least once, or it did not test what it is for.
    expect(figures.roundsInWindow).toBeGreaterThanOrEqual(1);
    // A leg in flight at a cut is delivered again; one in flight at each of several close cuts, once per cut.
    expect(figures.maxDeliveriesPerLeg).toBeLessThanOrEqual(cuts + 1);
  }, 300_000);
  it(`a power cut while copies are being shed: every primary stays delivered once, every copy is shed or delivered once`, async () => {
    const { primary, copy, dir } = await destinations('s');
    primary.behaviour.rcpt = undefined;
    copy.behaviour.rcpt = undefined;
    await copy.down();
    const started = Date.now();
    // SHED_MESSAGES messages whose primary is delivered and whose copy waits: what a long outage of the secondary
    // leaves on the spool
    // The filling relay runs on the plain folder, which then becomes LazyFS's backing folder: LazyFS (as built here)
    // crashed in 2 of 6 runs while this relay wrote its 2,000 queue files at shutdown, with the relay itself exiting 0
    // and logging nothing; the cut under test needs LazyFS only from the shed on.
    const acked = new Set<string>();
    const filler = await spawnRelay(relayArgs(dir));
    children.push(filler);
    let next = 0;
    const lane = async (): Promise<void> => {
      const t = loadTransport(filler.smtpPort);
      try {
        while (next < SHED_MESSAGES) {
          const id = `s-${++next}`;
          const info = await t.sendMail({
            from: 'sender@origin.test',
            to: `u${next % 7}@power.test`,
            subject: id,
            text: `payload ${id}\n`.repeat(40),
          });
          if (/^250 /.test(info.response)) acked.add(id);
        }
      } finally {
        t.close();
      }
    };
    // each step has its own deadline, so a run that exceeds the test's 300 s says which step hung (once, in a full
    // suite run on 7 December, it timed out with no bounded wait running out; alone it takes 31-57 s)
    await withDeadline(
      120_000,
      Promise.all([lane(), lane(), lane(), lane()]),
      'filling the spool with the copy down',
    );
    await waitFor(
      async () => {
        // (their results are written by then, or at the latest by the SIGTERM below: stop() writes what it holds)
        const total = await queueTotal(adminPort(filler));
        return total === acked.size && deliveries(primary, 's').size === acked.size;
      },
      { timeoutMs: 60_000, intervalMs: 200, what: 'every primary delivered, every copy waiting' },
    );
    filler.kill('SIGTERM');
    expect(await withDeadline(30_000, filler.exited, 'the filling relay to exit')).toBe(0);
    await rename(join(dir, 'spool'), join(dir, 'backing'));

    // A relay whose spool volume is under --shed-copies-below (the volume's free space plus 64 GiB) sheds them, one
    // message at a time; the power goes during the pass.
    mount = await withDeadline(
      30_000,
      mountLazyFs({
        binary,
        mountPoint: join(dir, 'spool'),
        backing: join(dir, 'backing'),
        workDir: join(dir, 'lazyfs'),
      }),
      'mounting LazyFS',
    );
    const threshold = (await spoolSpace(join(dir, 'spool'))).free + 64 * 1024 ** 3;
    await unmountSpool();
    const { relay: shedder } = await withDeadline(
      30_000,
      startOnSpool(dir, ['--shed-copies-below', String(threshold)]),
      'the shedding relay to start',
    );
    const shedLines = (): number =>
      shedder.logs.filter((l) => l.includes('"delivery: copies shed for spool space"')).length;
    await waitFor(() => shedLines() >= SHED_MESSAGES / 10, {
      timeoutMs: 60_000,
      intervalMs: 5,
      what: 'a tenth of the copies shed',
    }).catch((err: unknown) => {
      // a diagnosis for the times this wait ran out in a full suite run (and never alone): was it LazyFS or the relay?
      throw new Error(
        `${(err as Error).message}; ${shedLines()} shed; ${mount?.state() ?? 'no mount'}; the relay's last lines:\n${shedder.logs.slice(-15).join('\n')}`,
      );
    });
    await withDeadline(
      30_000,
      powerCut(shedder, Promise.resolve([])),
      `the power cut (${mount?.state() ?? 'no mount'})`,
    );
    const shedAtCut = shedLines();

    // The secondary is back; a relay without shedding delivers what is left.
    await copy.up();
    const { relay: last } = await withDeadline(30_000, startOnSpool(dir), 'the last relay to start');
    await waitFor(async () => (await queueTotal(adminPort(last))) === 0, {
      timeoutMs: 120_000,
      intervalMs: 200,
      what: 'the queue to drain',
    });
    last.kill('SIGTERM');
    const exitCode = await withDeadline(30_000, last.exited, 'the last relay to exit');
    const quarantined = await quarantinedFiles(join(dir, 'spool'));
    await unmountSpool();

    const byPrimary = deliveries(primary, 's');
    const byCopy = deliveries(copy, 's');
    const figures = {
      acknowledged: acked.size,
      shedLoggedAtCut: shedAtCut,
      copiesDelivered: byCopy.size,
      lostPrimary: [...acked].filter((id) => !byPrimary.has(id)).length,
      duplicatedPrimary: [...byPrimary.values()].filter((t) => t.length > 1).length,
      duplicatedCopy: [...byCopy.values()].filter((t) => t.length > 1).length,
      bounces: [...primary.messages, ...copy.messages].filter(isDsn).length,
      quarantined: quarantined.length,
      seconds: Math.round((Date.now() - started) / 100) / 10,
    };
    report('power-loss-shed', figures);
    expect(exitCode).toBe(0);
    expect(acked.size).toBe(SHED_MESSAGES);
    // the cut came during the pass, not after it
    expect(shedAtCut).toBeLessThan(SHED_MESSAGES);
    expect(figures.lostPrimary).toBe(0);
    expect(figures.duplicatedPrimary).toBe(0);
    expect(figures.duplicatedCopy).toBe(0);
    expect(figures.bounces).toBe(0);
    expect(quarantined).toEqual([]);
    // every copy not shed is delivered: at most the one message being shed at the cut was shed without its line
    expect(byCopy.size).toBeGreaterThanOrEqual(SHED_MESSAGES - shedAtCut - 1);
    // and the copies shed before the cut stay shed (the pass had shed a tenth; a removal the cut took back, not yet
    // durable, is delivered instead, which the bounds above allow)
    expect(byCopy.size).toBeLessThan(SHED_MESSAGES);
    expect([...byCopy.keys()].every((id) => acked.has(id))).toBe(true);
  }, 300_000);
});
