// One SMTP transaction: which due legs of a message go together (groupJobs, pure), and trying them once (attempt).
// Postfix's smtp agent: it resolves the destination's hosts, connects through the destination's pools in MX order and
// returns one reply per leg. It writes nothing; the engine hands the replies to results.ts.
//
// Exports:
//   Job: one transaction (legs of one message with the same server, role, reverse path and destination rules).
//   groupJobs(id, state, due, serverFor): the jobs for the due legs of a message; legs whose server is gone from the
//     table form jobs with `unroutable` set (nothing is sent for them).
//   attempt(job, destination, deps): the replies per leg index; undefined when the engine stopped before anything
//     was tried (the state stays as it is); `gone` when the message left the spool before its body was sent (it
//     failed its check against its recorded CRC-32 and was quarantined, or its file is gone).
import { createHash } from 'node:crypto';
import {
  DEFAULT_RECIPIENTS_PER_TRANSACTION,
  type DomainRoute,
  type LegRole,
  type ServerRoute,
} from '../../routing/model.ts';
import type { DnsResolver } from '../dns.ts';
import { isDestinationDenied } from '../destinations.ts';
import {
  isFinalLeg,
  type BodyCheck,
  type LegState,
  type MessageBody,
  type SpoolState,
} from '../spool/types.ts';
import type { Destination } from './destination.ts';
import { destinationKey } from './destination.ts';
import { hostPortLabel } from './dsn.ts';
import { isRecipientLimitReply, unreachable, type AttemptReply } from './outcome.ts';
import type { ServerLookup } from './server-lookup.ts';
import { plaintextAuthRefusal } from '../../lib/smtp-client.ts';
import { dueAt } from './retry.ts';
import { resolveTargets, type ServerTarget } from './transport.ts';

export interface Job {
  id: string;
  indexes: number[];
  /** The server as looked up for this attempt (the stored copy when unroutable). */
  server: ServerRoute;
  /** The DomainClaim destinations of the leg's domain (server-lookup.ts): which addresses the server may resolve to. */
  destinations?: DomainRoute['destinations'];
  /** Set when the server is gone from the routing table: nothing is sent, the legs are deferred with this reason. */
  unroutable?: string;
  role: LegRole;
  from: string;
  size: number;
  /** The message was received with BODY=8BITMIME (sent on with it where the server offers 8BITMIME). */
  body8bit: boolean;
  /** leg index -> envelope recipient */
  recipients: Map<number, string>;
}

/**
 * Deferred legs made due regardless of their retry time: every one (flush, reroute, a new table: 'all'), or those to
 * these destinations (destinationKey: a server that answered again after an outage, or that was changed).
 */
export type Forced = 'all' | ReadonlySet<string>;

/** Whether legs to the destination (undefined: a leg whose server is gone) are forced. */
export function isForced(forced: Forced | undefined, dest: string | undefined): boolean {
  return forced === 'all' || (dest !== undefined && forced?.has(dest) === true);
}

/** forced with keys added ('all' absorbs everything). */
export function addForced(forced: Forced | undefined, keys: 'all' | Iterable<string>): Forced {
  if (forced === 'all' || keys === 'all') return 'all';
  return new Set([...(forced ?? []), ...keys]);
}

/** Which legs of the message to try now. */
export interface DueLegs {
  /** Leg indexes with a transaction in flight: skipped. */
  inflight: ReadonlySet<number>;
  /** Destinations (destinationKey) the message waits on for a dispatch slot: their legs are skipped. */
  blockedOn: ReadonlySet<string>;
  /** Deferred legs due regardless of nextAttemptAt (Forced). */
  forced?: Forced;
  now: number;
}

/**
 * The MAIL FROM of a leg: the client's, but the null reverse-path for a copy whose bounces are suppressed. A server
 * that accepts a message and fails it later must notify the reverse-path (RFC 5321 §6.1), and nothing is sent to a
 * null one (§4.5.5): so neither the relay nor the secondary ever bounces a failed copy to the original sender.
 */
function reversePath(state: SpoolState, l: LegState): string {
  return l.leg.role === 'copy' && l.leg.bounces === 'Suppress' ? '' : state.meta.mailFrom;
}

/**
 * Groups the due open legs of a message into transactions: same server, role, reverse path and destination rules -> one
 * transaction (one MAIL FROM, several RCPT TO), of at most the server's maxRecipientsPerTransaction distinct
 * recipients (more make further transactions, in leg order). held: open legs whose server is gone from the table (in
 * flight or not).
 */
export function groupJobs(
  id: string,
  state: SpoolState,
  due: DueLegs,
  serverFor: (leg: LegState) => ServerLookup,
): { jobs: Job[]; held: number } {
  /** The transaction being filled per key, every transaction in order, and the distinct recipients of each. */
  const groups = new Map<string, Job>();
  const jobs: Job[] = [];
  const tos = new Map<Job, Set<string>>();
  let held = 0;
  for (const [i, l] of state.legs.entries()) {
    if (isFinalLeg(l)) continue;
    // How to reach the server is looked up now, not taken from the state (server-lookup.ts).
    const found = serverFor(l);
    if (!found.ok) held++;
    if (due.inflight.has(i)) continue;
    const dest = found.ok ? destinationKey(found.server) : undefined;
    if (l.state === 'deferred' && !isForced(due.forced, dest)) {
      if (dueAt(l, due.now) > due.now) continue;
    }
    if (dest !== undefined && due.blockedOn.has(dest)) continue;
    const from = reversePath(state, l);
    const k = found.ok
      ? `${dest}|${l.leg.role}|${from}|${found.destinations === undefined ? '' : JSON.stringify(found.destinations)}`
      : `unroutable|${found.reason}|${l.leg.role}|${from}`;
    let job = groups.get(k);
    let to = job && tos.get(job);
    const limit = found.server.maxRecipientsPerTransaction ?? DEFAULT_RECIPIENTS_PER_TRANSACTION;
    if (to && to.size >= limit && !to.has(l.leg.recipient)) job = undefined; // full: the next transaction
    if (!job || !to) {
      job = {
        id,
        indexes: [],
        server: found.server,
        ...(found.ok && found.destinations !== undefined ? { destinations: found.destinations } : {}),
        ...(found.ok ? {} : { unroutable: found.reason }),
        role: l.leg.role,
        from,
        size: state.size,
        body8bit: state.meta.body8bit,
        recipients: new Map(),
      };
      to = new Set();
      groups.set(k, job);
      jobs.push(job);
      tos.set(job, to);
    }
    job.indexes.push(i);
    job.recipients.set(i, l.leg.recipient);
    to.add(l.leg.recipient);
  }
  return { jobs, held };
}

export interface AttemptDeps {
  /** Monotonic ms (the engine's elapsed clock): the attempt's duration. */
  now: () => number;
  credentials: (ref: {
    namespace: string;
    name: string;
  }) => Promise<{ user: string; pass: string } | undefined>;
  resolver: DnsResolver;
  body: (id: string, size: number) => MessageBody;
  /**
   * Asked before each send, just before the body is handed to the transport (spool.checkBody): a body read from a
   * file an earlier process wrote is first compared with its recorded CRC-32, once; a mismatch is never sent.
   */
  checkBody: (id: string) => Promise<BodyCheck>;
  stopped: () => boolean;
  /** Credentials lookups that failed (logged by the engine). */
  onCredentialsError: (err: unknown, server: ServerRoute) => void;
}

export interface AttemptResult {
  replies: Map<number, AttemptReply>;
  /** host:port of the last host tried ('' when nothing was contacted). */
  serverLabel: string;
  durationMs: number;
  /**
   * The message left the spool before its body was sent: it failed its body check (quarantined: corrupt) or its file
   * is gone (missing). Nothing was sent; replies is empty.
   */
  gone?: Extract<BodyCheck, { ok: false }>;
}

/** The replies of a job whose server is gone from the table: each leg is deferred with the reason. */
export function unroutableResult(job: Job, reason: string): AttemptResult {
  const reply: AttemptReply = { kind: 'local', text: reason };
  return { replies: new Map(job.indexes.map((i) => [i, reply])), serverLabel: '', durationMs: 0 };
}

/** Tries the job once through its destination. undefined: stopped before anything was tried. */
export async function attempt(
  job: Job,
  destination: Destination,
  deps: AttemptDeps,
): Promise<AttemptResult | undefined> {
  const { server } = job;
  const all = (reply: AttemptReply): Map<number, AttemptReply> => new Map(job.indexes.map((i) => [i, reply]));
  let replies: Map<number, AttemptReply>;
  let serverLabel = hostPortLabel(server.host, server.port);
  const started = deps.now();
  const done = (): AttemptResult => ({ replies, serverLabel, durationMs: deps.now() - started });

  let auth: { user: string; pass: string } | undefined;
  let authFailed = false;
  if (server.authSecretRef) {
    try {
      auth = await deps.credentials(server.authSecretRef);
    } catch (err) {
      deps.onCredentialsError(err, server);
    }
    authFailed = auth === undefined;
  }
  const targets = await resolveTargets(server, deps.resolver);
  if (deps.stopped()) return undefined;
  const plaintextRefused = plaintextAuthRefusal(server, server.authSecretRef !== undefined);
  if (authFailed) {
    const ref = server.authSecretRef!;
    replies = all({
      kind: 'local',
      text: `credentials ${ref.namespace}/${ref.name} for server ${server.name} not available`,
    });
    return done();
  }
  if (plaintextRefused !== undefined) {
    replies = all({ kind: 'local', text: plaintextRefused });
    return done();
  }
  if (!targets.ok) {
    replies = all(targets.reply);
    return done();
  }
  replies = all({ kind: 'network', text: 'no host to connect to' });
  const to = [...new Set(job.recipients.values())];
  // Each host (MX hosts by preference) is resolved through the DNS seam (relay/dns.ts) and its addresses are tried
  // in turn; the host name stays the TLS server name.
  const addressesOf = async (host: string): Promise<string[]> => {
    try {
      return await deps.resolver.addresses(host);
    } catch (err) {
      const code = (err as { code?: string }).code ?? String(err);
      // A destination the policy denies (relay/destinations.ts) is deferred like a 4xx, never connected to: a
      // corrected policy reaches the queued mail at its next attempt.
      replies = all(
        isDestinationDenied(err)
          ? { kind: 'local', text: err.message }
          : { kind: 'network', text: `address lookup for ${host} failed: ${code}` },
      );
      serverLabel = hostPortLabel(host, server.port);
      return [];
    }
  };
  for (const host of targets.hosts) {
    for (const address of await addressesOf(host)) {
      if (deps.stopped() || !(await destination.acquire(deps.stopped))) return undefined;
      serverLabel = hostPortLabel(host, server.port);
      let byRecipient: Map<string, AttemptReply>;
      const suspended = destination.suspension(address);
      if (suspended !== undefined) {
        // The address failed to connect moments ago: defer without another connection attempt (Postfix: "delivery
        // temporarily suspended"), so a dead server costs one timeout, not one per queued message.
        destination.release();
        const reply: AttemptReply = { kind: 'network', text: `delivery temporarily suspended: ${suspended}` };
        byRecipient = new Map(to.map((r) => [r, reply]));
      } else {
        let checked: BodyCheck;
        try {
          // the body as accepted, or nothing is sent (the first time a file an earlier process wrote is read)
          checked = await deps.checkBody(job.id);
          byRecipient = checked.ok
            ? await destination.send(targetOf(server, host, address, auth), (t) =>
                t.send({
                  from: job.from,
                  to,
                  raw: deps.body(job.id, job.size),
                  size: job.size,
                  ...(job.body8bit ? { body8bit: true } : {}),
                }),
              )
            : new Map<string, AttemptReply>();
        } finally {
          destination.release();
        }
        if (!checked.ok)
          return { replies: new Map(), serverLabel: '', durationMs: deps.now() - started, gone: checked };
        destination.record(address, [...byRecipient.values()]);
        byRecipient = markRecipientLimit(byRecipient);
      }
      replies = new Map(
        job.indexes.map((i) => [
          i,
          byRecipient.get(job.recipients.get(i) ?? '') ?? {
            kind: 'local',
            text: 'no reply for this recipient',
          },
        ]),
      );
      // Try the next address or MX host only when this one could not be reached at all, or would not talk: a greeting
      // other than 220 (a 554 or 421 banner) is a 'network' reply too (smtp-out/replies.ts failureReply), as
      // Postfix skips a host that greets with a 5xx. A host that answered anything else keeps its answers; so does
      // one that went silent or dropped the connection after the final dot (outcome.ts unreachable).
      if (!unreachable(replies.values())) return done();
    }
  }
  return done();
}

/**
 * The replies of one transaction, with the refusals for its number of recipients marked (outcome.ts
 * isRecipientLimitReply): 'now' when the server delivered the message to other recipients of it, so each next
 * transaction makes progress; 'schedule' when it took none.
 */
export function markRecipientLimit(byRecipient: Map<string, AttemptReply>): Map<string, AttemptReply> {
  const replies = [...byRecipient.values()];
  if (!replies.some(isRecipientLimitReply)) return byRecipient; // the usual case: nothing to mark, nothing copied
  const progress = replies.some((r) => r.kind === 'smtp' && r.code >= 200 && r.code < 300);
  return new Map(
    [...byRecipient].map(([rcpt, r]) => [
      rcpt,
      r.kind === 'smtp' && isRecipientLimitReply(r)
        ? { ...r, recipientLimit: progress ? ('now' as const) : ('schedule' as const) }
        : r,
    ]),
  );
}

function targetOf(
  server: ServerRoute,
  host: string,
  address: string,
  auth: { user: string; pass: string } | undefined,
): ServerTarget {
  return {
    host: address,
    ...(address !== host ? { servername: host } : {}),
    port: server.port,
    tls: server.tls,
    maxConnections: server.maxConnections,
    ...(auth ? { auth } : {}),
    ...(server.allowPlaintextAuth === true ? { allowPlaintextAuth: true } : {}),
    ...(server.authSecretRef
      ? {
          // A changed password (cluster mode: mailroute-credentials follows the Secret) must not reuse a pooled
          // connection set up with the old one: the key carries a digest, never the password.
          authKey: `${server.authSecretRef.namespace}/${server.authSecretRef.name}#${auth ? createHash('sha256').update(`${auth.user}\0${auth.pass}`).digest('hex').slice(0, 16) : ''}`,
        }
      : {}),
  };
}
