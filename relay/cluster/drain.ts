// Scale-down without stranding mail: on SIGTERM, after inbound and delivery have stopped, each message still queued is
// handed to a peer relay over SMTP with its original envelope sender and the recipients whose legs are still open,
// each with the roles of those open legs (RCPT TO ... X-MAILROUTE-LEGS=copy) and the message with its queue id here
// (MAIL FROM ... X-MAILROUTE-ORIGIN=<id>@<relay>; relay/inbound/handoff.ts). The peer plans each recipient with its
// own table and keeps only the legs of those roles, so a leg delivered before the drain is not delivered again.
// The local copy (or the handed-off legs of it) is removed only after the peer answered 250, i.e. after the peer has
// spooled it durably (docs/design.md §4).
// A message whose SMTP transaction is still in flight (delivery stopped with keepRecording: the attempts go on and
// their results are recorded) is handed over only once that result is recorded: a leg the destination took is then
// final and never reaches the peer, which would deliver it again. One still in flight at the deadline stays in the
// spool, as after a crash (tried again at the next start; at-least-once).
import type { LegRole } from '../../routing/model.ts';
import { isOpenLeg, type Spool, type SpoolState } from '../spool/types.ts';
import type { AttemptReply } from '../delivery/outcome.ts';
import { formatAttemptReply } from '../delivery/outcome.ts';
import { skipBytes } from '../delivery/transport.ts';
import type { HandoffTransport, HandoffTransportFactory } from './handoff-transport.ts';
import { ownTraceLength } from '../inbound/trace.ts';
import type { ClusterLogger } from './heartbeat.ts';
import type { Peer } from './peers.ts';
import { safeDelay } from '../../routing/timer.ts';

export type HandoffPlan =
  | {
      kind: 'handoff';
      /** Original RCPT TO addresses with at least one open leg, in first-seen order. */
      recipients: string[];
      /** recipient -> roles of its open legs (what the peer keeps of its own plan). */
      roles: Map<string, LegRole[]>;
      /** Recipients that also have finished legs: only their open legs go (the finished ones are not repeated). */
      partial: string[];
      /** A DSN is owed and not spooled yet: the message stays after the hand-off (only its open legs go). */
      keepAfter: boolean;
    }
  | { kind: 'nothing'; reason: string };

/** Pure: what of a spooled message a draining relay hands to a peer. */
export function handoffPlan(state: SpoolState): HandoffPlan {
  const open: string[] = [];
  const roles = new Map<string, LegRole[]>();
  const finished = new Set<string>();
  let dsnOwed = false;
  for (const leg of state.legs) {
    if (isOpenLeg(leg)) {
      if (!open.includes(leg.recipient)) open.push(leg.recipient);
      const list = roles.get(leg.recipient) ?? [];
      if (!list.includes(leg.leg.role)) list.push(leg.leg.role);
      roles.set(leg.recipient, list);
    } else finished.add(leg.recipient);
    if (leg.dsnPending === true) dsnOwed = true;
  }
  if (open.length === 0) {
    return { kind: 'nothing', reason: dsnOwed ? 'a DSN is owed and not spooled yet' : 'no open legs' };
  }
  return {
    kind: 'handoff',
    recipients: open,
    roles,
    partial: open.filter((r) => finished.has(r)),
    keepAfter: dsnOwed,
  };
}

/** Pure: marks the open legs of the handed-off recipients as delivered (to the peer). */
export function markHandedOff(
  state: SpoolState,
  recipients: ReadonlySet<string>,
  peer: string,
  reply: string,
  at: Date,
): SpoolState {
  return {
    ...state,
    legs: state.legs.map((l) =>
      isOpenLeg(l) && recipients.has(l.recipient)
        ? {
            ...l,
            state: 'delivered',
            lastReply: `handed off to relay ${peer}: ${reply}`,
            lastServer: peer,
            lastAttemptAt: at.toISOString(),
          }
        : l,
    ),
  };
}

/** What the drain asks of the delivery engine (relay/delivery/engine.ts, stopped with keepRecording). */
export interface WorkInFlight {
  /** The queued messages whose state is about to change: a transaction in flight, a DSN being spooled. */
  inFlight(): ReadonlySet<string>;
  /** Resolves when some of that work is done. */
  progress(): Promise<void>;
}

export interface DrainOptions {
  spool: Spool;
  /** The peers to try, asked once, when the first message is to be handed over (bounded by the deadline). */
  peers: () => Promise<Peer[]>;
  /** SMTP client to a peer relay (handoff-transport.ts: STARTTLS when offered, no certificate check). */
  transport: HandoffTransportFactory;
  /** This relay's name (--hostname): with the queue id, the origin a handed-over message carries. */
  relayName: string;
  logger: ClusterLogger;
  /**
   * After this many ms the drain stops taking new messages and waiting for transactions in flight; what is left stays
   * spooled (and is logged).
   */
  deadlineMs: number;
  /**
   * The delivery engine's work in flight: a message in it is handed over only once that work is done (its result
   * recorded); one still in flight at the deadline stays in the spool. Absent: every message is taken as settled.
   */
  work?: WorkInFlight;
  /**
   * The relay's cluster id (relay/inbound/trace.ts). A peer of the same cluster refuses a message carrying its trace
   * as a loop, so the Received: header this relay prepended is left out of the hand-off (the peer adds its own: the
   * hand-off is not a hop).
   */
  clusterId?: string;
  /** Messages in flight at once. Default 4. */
  concurrency?: number;
  clock?: () => Date;
}

export interface DrainReport {
  /** Messages of the spool the drain looked at (those queued when it started, and any spooled while it waited). */
  messages: number;
  /** Messages whose open legs all went to peers (and whose local copy was removed unless keepAfter). */
  handedOff: number;
  /** Messages (or parts of them) left in the spool. */
  left: number;
  /** Messages with a transaction in flight that the drain waited for before handing them over (or not: delivered). */
  waitedFor: number;
  /** Of `left`: messages whose transaction was still in flight at the deadline. */
  inFlight: number;
  /** Recipients handed off with only some of their legs (the others were already finished, and are not repeated). */
  partialRecipients: number;
  peers: string[];
  durationMs: number;
}

const peerKey = (p: Peer): string => `${p.host}:${p.port}`;

const NONE: ReadonlySet<string> = new Set();

/** Resolves with p, or with undefined once ms have passed (p is not waited for any longer). */
async function within<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), safeDelay(ms)))),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Hands the whole queue to peers. Never throws for a message: failures are logged and the message stays. */
export async function drainQueue(opts: DrainOptions): Promise<DrainReport> {
  const { spool, logger: log } = opts;
  const clock = opts.clock ?? (() => new Date());
  // the deadline is a duration on the monotonic clock: a step of the wall clock must not cut the drain short
  const started = performance.now();
  const deadline = started + opts.deadlineMs;
  const remainingMs = (): number => deadline - performance.now();
  const report: DrainReport = {
    messages: 0,
    handedOff: 0,
    left: 0,
    waitedFor: 0,
    inFlight: 0,
    partialRecipients: 0,
    peers: [],
    durationMs: 0,
  };
  let ids = await spool.list();
  if (ids.length === 0) return { ...report, durationMs: Math.round(performance.now() - started) };
  /** Every message looked at; those with work in flight when they were first looked at. */
  const seen = new Set<string>();
  const waitedFor = new Set<string>();

  // Looked up once, when the first message is to be handed over (not at all when every message was in flight and
  // completed here), and never past the deadline: an API server that does not answer must not hold the shutdown.
  let peers: Peer[] | undefined;
  let lookup: Promise<Peer[]> | undefined;
  const lookUpPeers = async (): Promise<Peer[]> => {
    let found: Peer[] | undefined;
    try {
      found = await within(opts.peers(), remainingMs());
      if (found === undefined) log.warn({}, 'drain: no answer from the peer lookup before the deadline');
    } catch (err) {
      log.warn({ err: err instanceof Error ? err.message : String(err) }, 'drain: finding peers failed');
    }
    peers = found ?? [];
    report.peers = peers.map(peerKey);
    const queued = seen.size;
    if (peers.length === 0) log.warn({ queued }, 'drain: no peer relay found; the queue stays in the spool');
    else log.info({ queued, peers: report.peers }, 'drain: handing the queue to peer relays');
    return peers;
  };
  const findPeers = (): Promise<Peer[]> => (lookup ??= lookUpPeers());

  const transports = new Map<string, HandoffTransport>();
  const transportFor = (p: Peer): HandoffTransport => {
    const key = peerKey(p);
    let t = transports.get(key);
    if (t === undefined) {
      t = opts.transport({ host: p.host, port: p.port });
      transports.set(key, t);
    }
    return t;
  };

  const drainOne = async (id: string, n: number): Promise<void> => {
    const loaded = await spool.load(id);
    if (!loaded.ok) {
      if (loaded.reason !== 'missing') report.left++;
      return;
    }
    const plan = handoffPlan(loaded.state);
    if (plan.kind === 'nothing') {
      report.left++;
      log.warn({ queueId: id, reason: plan.reason }, 'drain: message stays in the spool');
      return;
    }
    const to = await findPeers();
    if (to.length === 0) {
      report.left++;
      return;
    }
    // a file an earlier process wrote is compared with its recorded CRC-32 first: a body a power cut damaged is
    // quarantined (the spool logs it), never handed to a peer that would deliver it
    const checked = await spool.checkBody(id);
    if (!checked.ok) {
      if (checked.reason !== 'missing') report.left++;
      return;
    }
    const full = spool.body(id, loaded.state.size);
    const raw =
      opts.clusterId !== undefined
        ? skipBytes(full, ownTraceLength(await spool.readHeaders(id, 16 * 1024), opts.clusterId))
        : full;
    let remaining = [...plan.recipients];
    const tried: string[] = [];
    // Spread messages over peers; on failure, the next peer.
    for (let k = 0; k < to.length && remaining.length > 0; k++) {
      const peer = to[(n + k) % to.length];
      if (peer === undefined) break;
      const key = peerKey(peer);
      const replies: Map<string, AttemptReply> = await transportFor(peer).send({
        from: loaded.state.meta.mailFrom,
        to: remaining,
        raw,
        ...(loaded.state.meta.body8bit ? { body8bit: true } : {}),
        origin: { queueId: id, relay: opts.relayName },
        roles: plan.roles,
      });
      const accepted = new Set(remaining.filter((r) => { const x = replies.get(r); return x?.kind === 'smtp' && x.code >= 200 && x.code < 300; })); // prettier-ignore
      const sample = replies.get(remaining[0] ?? '');
      tried.push(`${key}: ${sample ? formatAttemptReply(sample) : 'no reply'}`);
      if (accepted.size === 0) continue;
      const reply = [...accepted].map((r) => replies.get(r)).find((x) => x !== undefined);
      const text = reply ? formatAttemptReply(reply) : '250';
      remaining = remaining.filter((r) => !accepted.has(r));
      const after = await spool.update(id, (s) => markHandedOff(s, accepted, key, text, clock()));
      if (remaining.length === 0 && !plan.keepAfter && after !== undefined) await spool.remove(id);
      const peerQueueId = /queued as ([0-9a-z]+)/.exec(text)?.[1];
      log.info(
        {
          queueId: id,
          peer: key,
          ...(peerQueueId !== undefined ? { peerQueueId } : {}),
          recipients: accepted.size,
          legs: [...accepted].reduce((k, r) => k + (plan.roles.get(r)?.length ?? 0), 0),
          reply: text,
          ...(plan.partial.length > 0 ? { partial: plan.partial.length } : {}),
        },
        'drain: handed off to peer relay',
      );
    }
    report.partialRecipients += plan.partial.filter((r) => !remaining.includes(r)).length;
    if (remaining.length === 0) report.handedOff++;
    else {
      report.left++;
      log.warn(
        { queueId: id, recipients: remaining.length, tried },
        'drain: no peer took the message; it stays in the spool',
      );
    }
  };

  let spread = 0; // spreads messages over the peers across rounds
  /** Hands these settled messages to peers, `concurrency` at a time, none started after the deadline. */
  const handOver = async (batch: readonly string[]): Promise<void> => {
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < batch.length) {
        if (performance.now() > deadline) return;
        if (peers?.length === 0) return; // no peer to hand to: the rest stays (logged once)
        const id = batch[next++];
        if (id === undefined) return;
        try {
          await drainOne(id, spread++);
        } catch (err) {
          report.left++;
          log.warn(
            { queueId: id, err: err instanceof Error ? err.message : String(err) },
            'drain: hand-off failed; message stays',
          );
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(opts.concurrency ?? 4, batch.length) }, () => worker()));
    const notReached = batch.length - next;
    if (notReached > 0) {
      report.left += notReached;
      if (peers?.length !== 0)
        log.warn({ notReached }, 'drain: deadline passed; the rest of the queue stays in the spool');
    }
  };

  let waited = false;
  try {
    for (;;) {
      // Settled messages go now; those with work in flight wait for it (their legs are about to change).
      const busy = opts.work?.inFlight() ?? NONE;
      const ready: string[] = [];
      const waiting: string[] = [];
      for (const id of ids) {
        seen.add(id);
        if (busy.has(id)) waiting.push(id);
        else ready.push(id);
      }
      if (ready.length > 0) await handOver(ready);
      if (waiting.length > 0 && remainingMs() > 0) {
        for (const id of waiting) {
          if (waitedFor.has(id)) continue;
          waitedFor.add(id);
          log.info({ queueId: id }, 'drain: waiting for the transaction in flight before the hand-off');
        }
        await within(opts.work?.progress() ?? Promise.resolve(), remainingMs());
        waited = true;
        ids = waiting;
        continue;
      }
      if (waiting.length > 0) {
        report.left += waiting.length;
        // those that settled while the last ones were handed over are only late, not in flight
        const still = opts.work?.inFlight() ?? NONE;
        const stuck = waiting.filter((id) => still.has(id));
        report.inFlight = stuck.length;
        if (stuck.length > 0)
          log.warn(
            { queueIds: stuck },
            'drain: deadline passed with transactions in flight; those messages stay in the spool (tried again at the next start)',
          );
        if (stuck.length < waiting.length)
          log.warn(
            { notReached: waiting.length - stuck.length },
            'drain: deadline passed; the rest of the queue stays in the spool',
          );
        break;
      }
      if (!waited) break;
      // The work waited for may have spooled a message (a DSN): one more look at the spool.
      waited = false;
      ids = (await spool.list()).filter((id) => !seen.has(id));
      if (ids.length === 0) break;
    }
  } finally {
    for (const t of transports.values()) t.close();
  }
  report.messages = seen.size;
  report.waitedFor = waitedFor.size;
  report.durationMs = Math.round(performance.now() - started);
  log.info({ ...report }, 'drain: done');
  return report;
}
