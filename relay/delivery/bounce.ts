// The DSN hand-off (Postfix's bounce daemon): for a message whose legs owe a DSN (a failure, or the delay notice of a
// leg still deferred), builds the DSN (dsn.ts), spools it as a new message from <> routed with `route`, and only then
// clears what was owed in the message's state. No scheduling of its own: the engine decides what comes next from the
// result. A DSN spooled whose record in the message's state failed (a full disk: the DSN fits the accept log, the
// state file does not) is remembered in memory, and the next pass records it instead of spooling another: one DSN per
// owed leg, not one per retry while the disk stays full. A restart in between repeats the DSN rather than losing it.
//
// Exports:
//   owesDsn(leg): a DSN is owed for the leg.
//   legDsnStatus(leg): the RFC 3463 status and expiry a DSN reports for the leg (the structured fields outcome.ts
//     wrote; derived from lastReply for state files written before those fields existed).
//   Bouncer: bounce(id, state) -> BounceResult.
import { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { domainOf } from '../../routing/address.ts';
import type { DeliveryPlan } from '../../routing/model.ts';
import { traceComment } from '../inbound/trace.ts';
import type { LegState, Spool, SpoolState } from '../spool/types.ts';
import type { RelayMetrics } from '../telemetry/metrics.ts';
import { createDsnLimiter, type DsnRateLimit } from './dsn-rate.ts';
import { buildDsn, remoteMtaName, rfc5322Date, type DsnRecipient } from './dsn.ts';
import { enhancedStatus } from './outcome.ts';

/** A DSN is owed for the leg: its failure, or the delay notice of a leg still deferred. */
export function owesDsn(l: LegState): boolean {
  return l.dsnPending === true || l.delayPending === true;
}

/**
 * What a DSN reports for the leg: for a delay notice (the leg is still deferred) the status of its last temporary
 * reply (4.4.1 when no server answered); for a failure its status, 4.4.7 when it expired.
 */
export function legDsnStatus(l: LegState): { status: string; expired: boolean } {
  const delayed = l.dsnPending !== true;
  if (l.status !== undefined) return { status: l.status, expired: !delayed && l.expired === true };
  // A state file written before status and expired were stored: derive them from the reply text as it was written.
  const reply = l.lastReply ?? '';
  if (delayed) {
    const m = /^(4\d\d)\b/.exec(reply);
    return {
      status: m ? enhancedStatus({ kind: 'smtp', code: Number(m[1]), text: reply }) : '4.4.1',
      expired: false,
    };
  }
  if (reply.startsWith('expired')) return { status: '4.4.7', expired: true };
  const m = /^(\d{3})\b/.exec(reply);
  return {
    status: m ? enhancedStatus({ kind: 'smtp', code: Number(m[1]), text: reply }) : '5.0.0',
    expired: false,
  };
}

export interface BounceDeps {
  spool: Pick<Spool, 'accept' | 'update' | 'readHeaders'>;
  clock: () => Date;
  /**
   * The monotonic clock (ms) the rate limit's buckets refill on: a step of the wall clock back must not keep them empty
   * for as long as the step (docs/design.md §6 rule 10). Default `performance.now()`.
   */
  elapsed?: () => number;
  log: Logger;
  metrics: Pick<RelayMetrics, 'dsnSent'>;
  /** EHLO name, Reporting-MTA and MAILER-DAEMON@ of DSNs. */
  hostname: string;
  /** The relay's cluster id: a DSN starts with the relay's Received: trace (a DSN sent back is refused as a loop). */
  clusterId?: string;
  maxQueueLifetimeMs: number;
  /** DSNs per minute per recipient domain (dsn-rate.ts); 0: unlimited. */
  dsnRate?: DsnRateLimit;
  /**
   * Where a DSN to this sender goes: the sender's managed domain's policy (with its recipient verification, as for
   * any recipient), else its MX. A tempfail (no verification answer yet, no policy for a moment) puts the DSN off.
   */
  route: (recipient: string) => DeliveryPlan | Promise<DeliveryPlan>;
  /** A DSN was spooled: deliver it. */
  spooled: (dsnId: string) => void;
}

/** How soon a DSN without a route to its sender (a tempfail) is tried again. */
export const DSN_ROUTE_RETRY_MS = 60_000;

export type BounceResult =
  /** The DSN was spooled (or none could go) and the state updated: as spool.update resolved. */
  | { kind: 'done'; state: SpoolState | null | undefined }
  /**
   * The DSN cannot go yet: the rate limit for the recipient domain, or no route to the sender for now. Try again at
   * `at` (ms on the wall clock, that long after its clock() now: the engine waits for it on the monotonic clock); the
   * message's own legs go on meanwhile.
   */
  | { kind: 'later'; at: number }
  /** The DSN could not be spooled: try again later. */
  | { kind: 'failed' };

/** What a DSN is owed for: a failure (dsnPending) or a delay notice (delayPending). */
type OwedKind = 'failed' | 'delayed';

const owedKind = (l: LegState): OwedKind => (l.dsnPending === true ? 'failed' : 'delayed');

/** The key of one owed leg's DSN in Bouncer.spooled: message, leg index and what it is owed for. */
const spooledKey = (id: string, leg: number, kind: OwedKind): string => `${id} ${leg} ${kind}`;

export class Bouncer {
  private readonly limiter;
  private readonly elapsed: () => number;

  private readonly d: BounceDeps;

  /**
   * DSNs spooled whose ids are not recorded in their message's state yet (its update failed): spooledKey -> DSN id.
   * An entry goes once the update has run; one whose message then never comes back (removed through another path
   * first) stays until the process ends, a few bytes each.
   */
  private readonly spooled = new Map<string, string>();

  constructor(d: BounceDeps) {
    this.d = d;
    this.limiter = createDsnLimiter(d.dsnRate ?? { perMinute: 0, burst: 0 });
    this.elapsed = d.elapsed ?? ((): number => performance.now());
  }

  async bounce(id: string, state: SpoolState): Promise<BounceResult> {
    const { d } = this;
    const owed = state.legs.map((l, i) => ({ l, i })).filter(({ l }) => owesDsn(l));
    const keys = new Map(owed.map(({ l, i }) => [i, spooledKey(id, i, owedKind(l))]));
    // the legs whose DSN an earlier pass spooled already (its state update failed) get that DSN's id, not another
    const dsnIds = new Map<number, string>();
    for (const [i, key] of keys) {
      const spooled = this.spooled.get(key);
      if (spooled !== undefined) dsnIds.set(i, spooled);
    }
    const toSend = owed.filter(({ i }) => !dsnIds.has(i));
    const delayed = (l: LegState): boolean => l.dsnPending !== true;
    const sender = state.meta.mailFrom;
    let dsnId: string;
    if (toSend.length === 0) {
      dsnId = 'none'; // not used: every owed leg has its DSN id already
      d.log.info(
        { queueId: id, dsnIds: [...new Set(dsnIds.values())] },
        'delivery: DSN spooled already; recording it',
      );
    } else if (sender === '') {
      dsnId = 'none';
    } else {
      const plan = await d.route(sender);
      if (plan.verdict === 'tempfail') {
        // No route for now (the sender's mailbox not verified yet, its policy not accepted for a moment): the DSN is
        // put off, as a message to a deferring server would be, until the queue lifetime after the failure ends.
        const now = d.clock().getTime();
        const since = Math.min(
          ...toSend
            .map(({ l }) => (l.lastAttemptAt ? Date.parse(l.lastAttemptAt) : NaN))
            .filter(Number.isFinite),
          Date.parse(state.meta.receivedAt) || now,
        );
        if (now < since + d.maxQueueLifetimeMs) {
          d.metrics.dsnSent.inc({ kind: 'deferred' });
          d.log.info(
            { queueId: id, sender, reply: plan.reply, retryInMs: DSN_ROUTE_RETRY_MS },
            'delivery: DSN deferred: no route to the sender for now',
          );
          return { kind: 'later', at: now + DSN_ROUTE_RETRY_MS };
        }
      }
      if (plan.verdict !== 'accept') {
        // Undeliverable: the sender's domain is not a valid host name, or its managed domain refuses it (or has had
        // no route for it for the whole queue lifetime).
        d.log.warn(
          { queueId: id, verdict: plan.verdict, reply: plan.reply },
          'delivery: DSN not sent: the sender address is undeliverable',
        );
        d.metrics.dsnSent.inc({ kind: 'unroutable' });
        dsnId = 'unroutable';
      } else {
        const now = d.clock();
        // Per recipient domain: a flood of 550s for one managed domain does not become a flood of DSNs.
        const firstOwed = toSend[0];
        const rcptDomain = firstOwed ? domainOf(firstOwed.l.recipient) : '';
        const token = this.limiter.take(rcptDomain, this.elapsed());
        if (!token.ok) {
          d.metrics.dsnSent.inc({ kind: 'deferred' });
          d.log.info(
            { queueId: id, domain: rcptDomain, retryInMs: token.retryInMs },
            'delivery: DSN deferred: rate limit for the recipient domain',
          );
          return { kind: 'later', at: now.getTime() + token.retryInMs };
        }
        const retryUntil = new Date(Date.parse(state.meta.receivedAt) + d.maxQueueLifetimeMs);
        const recipients: DsnRecipient[] = toSend.map(({ l }) => {
          const { status, expired } = legDsnStatus(l);
          return {
            finalRecipient: l.leg.recipient,
            originalRecipient: l.recipient,
            status,
            diagnostic: l.lastReply ?? 'delivery failed',
            ...(l.lastServer ? { remoteMta: remoteMtaName(l.lastServer) } : {}),
            ...(l.lastAttemptAt ? { lastAttemptAt: new Date(l.lastAttemptAt) } : {}),
            expired,
            ...(delayed(l) ? { action: 'delayed' as const, willRetryUntil: retryUntil } : {}),
          };
        });
        const headers = await d.spool.readHeaders(id).catch(() => Buffer.from(''));
        const raw = buildDsn({
          hostname: d.hostname,
          sender,
          queueId: id,
          arrivalDate: new Date(state.meta.receivedAt),
          now,
          boundary: `mailroute-dsn-${id}-${now.getTime().toString(36)}`,
          recipients,
          originalHeaders: headers,
        });
        const res = await d.spool.accept(
          {
            mailFrom: '',
            recipients: [{ recipient: sender, legs: plan.legs }],
            clientAddress: '127.0.0.1',
            clientHostname: d.hostname,
            helo: d.hostname,
            receivedAt: now.toISOString(),
            revision: state.meta.revision,
            // eslint-disable-next-line no-control-regex
            smtputf8: /[^\x00-\x7f]/.test(sender),
            // the original's headers (or a UTF-8 address) may bring 8-bit bytes: say so (BODY=8BITMIME, RFC 6152)
            body8bit: raw.some((b) => b > 0x7f),
          },
          Readable.from([this.trace(id, now), raw]),
        );
        if (!res.ok) {
          d.log.error({ queueId: id, err: res.error }, 'delivery: could not spool the DSN; will retry');
          return { kind: 'failed' };
        }
        dsnId = res.id;
        // remembered until the state records it: an update that fails must not spool it again at the next pass
        for (const { i } of toSend) this.spooled.set(keys.get(i) ?? '', res.id);
        const nDelayed = toSend.filter(({ l }) => delayed(l)).length;
        if (nDelayed < toSend.length) d.metrics.dsnSent.inc({ kind: 'failed' });
        if (nDelayed > 0) d.metrics.dsnSent.inc({ kind: 'delayed' });
        d.log.info(
          { queueId: id, dsnId, sender, failed: toSend.length - nDelayed, delayed: nDelayed },
          'delivery: DSN queued',
        );
        d.spooled(res.id);
      }
    }
    for (const { i } of toSend) dsnIds.set(i, dsnId);
    const kinds = new Map(owed.map(({ l, i }) => [i, owedKind(l)]));
    const after = await d.spool.update(id, (s) => recordDsns(s, kinds, dsnIds));
    // recorded (or the message is gone): nothing left to remember; a throw above keeps them for the next pass
    for (const key of keys.values()) this.spooled.delete(key);
    return { kind: 'done', state: after };
  }

  private trace(id: string, now: Date): Buffer {
    const { d } = this;
    return Buffer.from(
      d.clusterId === undefined
        ? ''
        : `Received: by ${d.hostname} ${traceComment(d.clusterId)} id ${id}.dsn;\r\n\t${rfc5322Date(now)}\r\n`,
      'latin1',
    );
  }
}

/** The state with what was owed cleared and each leg's DSN id recorded (pure: spool.update's change). */
function recordDsns(
  s: SpoolState,
  kinds: ReadonlyMap<number, OwedKind>,
  dsnIds: ReadonlyMap<number, string>,
): SpoolState {
  return {
    ...s,
    legs: s.legs.map((l, i) => {
      const kind = kinds.get(i);
      const dsnId = dsnIds.get(i) ?? 'none';
      if (kind === 'failed') {
        const { dsnPending: _drop, ...rest } = l;
        return { ...rest, dsnId };
      }
      if (kind === 'delayed') {
        // at most one delay notice per leg: delayDsnId stays (a failure meanwhile keeps its own dsnPending)
        const { delayPending: _drop, ...rest } = l;
        return { ...rest, delayDsnId: dsnId };
      }
      return l;
    }),
  };
}
