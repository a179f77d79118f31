// Pure: what happens to one leg of one recipient after a delivery attempt.
//
// Exports: AttemptReply (what an attempt produced), LegOutcome, decideLeg(leg, reply, ctx), applyOutcome(leg, outcome),
// formatAttemptReply(reply), enhancedStatus(reply), delayStatus(reply), isRecipientLimitReply(reply).
//   2xx                                   -> delivered
//   4xx, timeout, connection or local error -> deferred on the retry schedule, until max-queue-lifetime
//   452/552 too many recipients           -> deferred, at once when the server took other recipients of the
//                                            transaction (isRecipientLimitReply; a 552 too: RFC 5321 §4.5.3.1.10)
//   5xx under softBounce                  -> deferred (metric soft_bounced), status in class 4, until the lifetime
//   5xx, or a deferral after expiry       -> failed; a copy leg with bounces Suppress -> suppressed instead, unless
//                                            its recipient has no leg of record (a plan spooled before every plan
//                                            had one: that copy is the only mailbox, so it bounces)
// A DSN is owed for failed (never suppressed) legs of a message whose sender is not the null sender, and a delay DSN
// (Action: delayed) once per such leg still deferred --delay-warning after arrival.
import { clip, oneLine } from '../../lib/one-line.ts';
import type { LegState } from '../spool/types.ts';
import { nextAttempt } from './retry.ts';

export type AttemptReply =
  /**
   * The server answered: code and the full reply text (e.g. "550 5.1.1 <bob@x>: no such user"). recipientLimit: the
   * reply refused the recipient for the transaction's number of recipients (isRecipientLimitReply), not for itself:
   * 'now' when the server took other recipients of the same transaction (the rest go in another transaction at
   * once), 'schedule' when it took none (retried on the schedule, a 552 too).
   */
  | { kind: 'smtp'; code: number; text: string; recipientLimit?: 'now' | 'schedule' }
  /**
   * No usable answer: refused, reset, timeout, TLS or DNS failure. afterEndOfData: the connection was lost, or the
   * final reply timed out, after the message's final dot was written: the server may have taken the message, so it
   * must not go to another host in the same attempt (attempt.ts); the leg is retried on the schedule.
   */
  | { kind: 'network'; text: string; afterEndOfData?: true }
  /** The relay could not try (e.g. credentials missing, body file unreadable): retried like a 4xx. */
  | { kind: 'local'; text: string };

/**
 * The host could not be reached with the message: every reply a network failure (refused, reset, timeout, a greeting
 * other than 220, TLS required that the host cannot give: smtp-out/replies.ts), none of them after the final dot. Then the next address or MX host is tried in the same attempt
 * (attempt.ts) and the address is suspended for a while (destination.ts). A host that went silent or dropped the
 * connection after the final dot was reached and may hold the message: neither happens, and the retry goes to it
 * first (another host would deliver it a second time).
 */
export function unreachable(replies: Iterable<AttemptReply>): boolean {
  let any = false;
  for (const r of replies) {
    if (r.kind !== 'network' || r.afterEndOfData === true) return false;
    any = true;
  }
  return any;
}

export type LegOutcome =
  | { state: 'delivered'; metric: 'delivered'; reply: string }
  /**
   * delayDsn: this deferral is the one that owes the leg's delay notice (RFC 3464 Action: delayed). status: what a
   * delay notice reports (delayStatus).
   */
  | {
      state: 'deferred';
      /** soft_bounced: a 5xx retried because softBounce is in force for the leg's domain (DecideContext). */
      metric: 'deferred' | 'soft_bounced';
      reply: string;
      status: string;
      nextAttemptAt: Date;
      delayDsn: boolean;
    }
  | { state: 'failed'; metric: 'failed'; reply: string; status: string; expired: boolean; dsn: boolean }
  | { state: 'suppressed'; metric: 'suppressed'; reply: string; status: string; expired: boolean };

export interface DecideContext {
  now: Date;
  receivedAt: Date;
  retryScheduleMs: readonly number[];
  maxQueueLifetimeMs: number;
  /** The message's envelope sender was <>. */
  nullSender: boolean;
  /** --delay-warning: a leg still deferred this long after arrival owes one delay DSN; 0 or undefined: never. */
  delayWarningMs?: number;
  /**
   * The leg's recipient has a leg of record (role primary) in the message, or had one before the message was handed
   * over by a draining relay (which sends only the legs still open). Every plan made now has one; a message spooled
   * by an older version may not, and then its copy must not be suppressed. Default true.
   */
  recipientHasRecord?: boolean;
  /**
   * softBounce is in force for the leg's domain (DeliveryPolicy spec.softBounce, looked up in the table served now):
   * a 5xx is retried on the schedule like a 4xx, until the queue lifetime ends. Default false.
   */
  softBounce?: boolean;
}

/**
 * The most of a reply kept (characters): a server may answer with up to 1 MiB (smtp-out/reply.ts), and one reply is
 * kept on every leg of its transaction; a state of many legs kept whole grew past what the spool reads back (8 MiB),
 * and the next start quarantined the state file and sent the delivered legs again.
 */
export const MAX_KEPT_REPLY = 1000;

export function formatAttemptReply(r: AttemptReply): string {
  // a reply is kept in the state, logs and DSNs: one line without control characters (a NUL in a remote server's
  // reply once made the spool refuse the state it was kept in, and quarantine the message, at the next restart),
  // and at most MAX_KEPT_REPLY characters of it
  const text = clip(oneLine(r.text), MAX_KEPT_REPLY);
  switch (r.kind) {
    case 'smtp':
      return text.startsWith(String(r.code)) ? text : `${r.code} ${text}`;
    case 'network':
    case 'local':
      return text;
    default: {
      const never: never = r;
      throw new Error(`unexpected reply ${JSON.stringify(never)}`);
    }
  }
}

/** The status of a 5xx kept by softBounce: its own, in class 4 (5.1.1 -> 4.1.1), as Postfix's soft_bounce reports. */
function softStatus(r: AttemptReply): string {
  return enhancedStatus(r).replace(/^5\./, '4.');
}

/** The RFC 3463 status a delay notice reports for a temporary reply: a 4xx reply's own, else 4.4.1 (no answer). */
function delayStatus(r: AttemptReply): string {
  return r.kind === 'smtp' && r.code >= 400 && r.code < 500 ? enhancedStatus(r) : '4.4.1';
}

/** The RFC 3463 status of a reply: its enhanced code when it has one, else derived from the reply class. */
export function enhancedStatus(r: AttemptReply): string {
  if (r.kind === 'smtp') {
    const m = /^\d{3}[ -]([245])\.(\d{1,3})\.(\d{1,3})\b/.exec(formatAttemptReply(r));
    if (m) return `${m[1]}.${m[2]}.${m[3]}`;
    if (r.code >= 500) return '5.0.0';
    if (r.code >= 400) return '4.0.0';
    return '2.0.0';
  }
  return r.kind === 'network' ? '4.4.1' : '4.3.0';
}

/**
 * A RCPT reply that refuses a recipient because the transaction has enough of them (RFC 5321 §4.5.3.1.10: 452, or
 * the 552 of older servers, which a client SHOULD treat as temporary): status x.5.3 (RFC 3463: too many recipients),
 * or the words "too many recipients" in a reply without a status.
 */
export function isRecipientLimitReply(reply: AttemptReply): boolean {
  if (reply.kind !== 'smtp' || (reply.code !== 452 && reply.code !== 552)) return false;
  const text = formatAttemptReply(reply);
  const status = /^\d{3}[ -]([245]\.\d{1,3}\.\d{1,3})\b/.exec(text)?.[1];
  return status !== undefined ? /^[45]\.5\.3$/.test(status) : /too many recipients/i.test(text);
}

/**
 * Whether a leg that ends undelivered is suppressed (nobody told): a copy with bounces Suppress whose recipient has a
 * leg of record. Every other leg fails, and its sender gets a DSN (never the null sender).
 */
function isSuppressed(leg: LegState, ctx: Pick<DecideContext, 'recipientHasRecord'>): boolean {
  return leg.leg.role === 'copy' && leg.leg.bounces === 'Suppress' && ctx.recipientHasRecord !== false;
}

/** How a leg ends undelivered. */
export type EndOutcome = Extract<LegOutcome, { state: 'failed' | 'suppressed' }>;

/** The outcome of a leg that ends undelivered with this status and reply (suppressed or failed: isSuppressed). */
export function endLeg(
  leg: LegState,
  ctx: Pick<DecideContext, 'recipientHasRecord' | 'nullSender'>,
  status: string,
  expired: boolean,
  why: string,
): EndOutcome {
  return isSuppressed(leg, ctx)
    ? { state: 'suppressed', metric: 'suppressed', reply: why, status, expired }
    : { state: 'failed', metric: 'failed', reply: why, status, expired, dsn: !ctx.nullSender };
}

/**
 * Whether a stored leg is one that decideLeg kept queued only because softBounce was in force: deferred, with a 5xx
 * last reply that is not a "too many recipients" refusal (decideLeg's `permanent`). For views (queue show).
 */
export function keptBySoftBounce(leg: LegState): boolean {
  if (leg.state !== 'deferred' || leg.lastReply === undefined) return false;
  const code = /^(5\d\d)[ -]/.exec(leg.lastReply)?.[1];
  return (
    code !== undefined && !isRecipientLimitReply({ kind: 'smtp', code: Number(code), text: leg.lastReply })
  );
}

export function decideLeg(leg: LegState, reply: AttemptReply, ctx: DecideContext): LegOutcome {
  const text = formatAttemptReply(reply);
  const suppress = isSuppressed(leg, ctx);
  const final = (status: string, expired: boolean, why: string): LegOutcome =>
    endLeg(leg, ctx, status, expired, why);

  if (reply.kind === 'smtp' && reply.code >= 200 && reply.code < 300) {
    return { state: 'delivered', metric: 'delivered', reply: text };
  }
  const overLimit = reply.kind === 'smtp' ? reply.recipientLimit : undefined;
  const permanent = reply.kind === 'smtp' && reply.code >= 500 && overLimit === undefined;
  if (permanent && ctx.softBounce !== true) return final(enhancedStatus(reply), false, text);
  // Temporary: 4xx (or a nonsense code), network, local; or a 5xx under softBounce (its status as a 4.x.x).
  const next = nextAttempt({
    schedule: ctx.retryScheduleMs,
    lifetimeMs: ctx.maxQueueLifetimeMs,
    receivedAt: ctx.receivedAt,
    now: ctx.now,
    attempts: leg.attempts + 1,
  });
  if (next.kind === 'expired') {
    return final('4.4.7', true, `expired after ${leg.attempts + 1} attempts; last: ${text}`);
  }
  // One delay notice per leg, only for legs whose failure would bounce (never a suppressed copy), never to <>.
  // (a leg whose next transaction goes at once is not delayed by this reply: it owes no notice for it)
  const delayDsn =
    overLimit !== 'now' &&
    !suppress &&
    !ctx.nullSender &&
    (ctx.delayWarningMs ?? 0) > 0 &&
    leg.delayPending !== true &&
    leg.delayDsnId === undefined &&
    ctx.now.getTime() - ctx.receivedAt.getTime() >= (ctx.delayWarningMs ?? 0);
  return {
    state: 'deferred',
    metric: permanent ? 'soft_bounced' : 'deferred',
    reply: text,
    status: permanent ? softStatus(reply) : overLimit === undefined ? delayStatus(reply) : '4.5.3',
    // refused for the transaction's size while the server took others: the next transaction goes at once
    nextAttemptAt: overLimit === 'now' ? ctx.now : next.at,
    delayDsn,
  };
}

/**
 * The leg state after an attempt with this outcome (attempt counted, reply recorded with its RFC 3463 status and,
 * when final, whether it expired: a DSN reports these as they are, never parsed back from the reply). server ''
 * (nothing was contacted, e.g. the leg's server is gone from the table) keeps the previous lastServer.
 */
export function applyOutcome(leg: LegState, outcome: LegOutcome, now: Date, server: string): LegState {
  return withOutcome(
    {
      ...leg,
      attempts: leg.attempts + 1,
      lastAttemptAt: now.toISOString(),
      ...(server !== '' ? { lastServer: server } : {}),
    },
    outcome,
  );
}

/**
 * The leg in the state the outcome says, with its reply and status; no attempt counted (applyOutcome counts one; a
 * copy shed for spool space, shed.ts, was not an attempt).
 */
export function withOutcome(leg: LegState, outcome: LegOutcome): LegState {
  const base: LegState = { ...leg, lastReply: outcome.reply };
  delete base.nextAttemptAt;
  delete base.status;
  delete base.expired;
  // A delay notice not sent yet is moot once the leg is final (delivered, or reported failed).
  if (outcome.state !== 'deferred') delete base.delayPending;
  switch (outcome.state) {
    case 'delivered':
      return { ...base, state: 'delivered' };
    case 'suppressed':
      return { ...base, state: 'suppressed', ...final(outcome) };
    case 'deferred':
      return {
        ...base,
        state: 'deferred',
        status: outcome.status,
        nextAttemptAt: outcome.nextAttemptAt.toISOString(),
        ...(outcome.delayDsn ? { delayPending: true } : {}),
      };
    case 'failed':
      return { ...base, state: 'failed', ...final(outcome), ...(outcome.dsn ? { dsnPending: true } : {}) };
    default: {
      const never: never = outcome;
      throw new Error(`unexpected outcome ${JSON.stringify(never)}`);
    }
  }
}

function final(o: { status: string; expired: boolean }): Pick<LegState, 'status' | 'expired'> {
  return { status: o.status, ...(o.expired ? { expired: true } : {}) };
}
