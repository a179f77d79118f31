// The SMTP client a draining relay hands messages to a peer with (drain.ts): the relay's own client
// (relay/delivery/smtp-out/), one pool of connections per peer, STARTTLS when offered (opportunistic, no certificate
// check, as for any peer relay), and the hand-off parameters of relay/inbound/handoff.ts as the envelope's own ESMTP
// parameters: ORIGIN_PARAM on MAIL FROM, and on each recipient's RCPT TO the LEGS_PARAM of that recipient's roles.
//
// A pool per peer rather than a connection per message: the drain already keeps one transport per peer for the whole
// drain and closes them all when it ends, and its workers send several messages to the same peer at once, so
// connections are set up (TCP, EHLO, STARTTLS, EHLO) once per peer and worker instead of once per message, within the
// drain's deadline. The pool also sends a message again on a fresh connection when the peer dropped a reused one
// before a byte of it went out, and never when its bytes (partly) went: the drain decides then (the next peer).
//
// A recipient is never sent without its parameter (the peer would plan all of its legs): one without roles is answered
// locally and left out. Two recipients the client writes as the same envelope address (e.g. "bob@Example.COM" and
// "bob@example.com") with different roles go in separate transactions (handoffBatches), as one RCPT TO can carry one
// LEGS value only.
//
// Exports:
//   HandoffTransport, HandoffTransportFactory, HandoffTransportOptions, handoffTransportFactory(opts).
//   handoffBatches(recipients, params, addressesOf): the transactions a hand-off needs (pure).
import type { LegRole } from '../../routing/model.ts';
import type { AttemptReply } from '../delivery/outcome.ts';
import { envelopeAddresses, smtpOutTransportFactory } from '../delivery/smtp-out/pool.ts';
import type { SendRequest } from '../delivery/transport.ts';
import { LEGS_PARAM, ORIGIN_PARAM, formatLegRoles, formatOrigin, type Origin } from '../inbound/handoff.ts';

interface HandoffRequest extends SendRequest {
  origin: Origin;
  /** recipient (as in `to`) -> roles of its legs still open here */
  roles: ReadonlyMap<string, readonly LegRole[]>;
}

export interface HandoffTransport {
  /**
   * The message to the peer: one SMTP transaction (more only when handoffBatches must split it). Never rejects: every
   * recipient of req.to gets a reply.
   */
  send(req: HandoffRequest): Promise<Map<string, AttemptReply>>;
  /** Closes the peer's connections (QUIT; one in a transaction first finishes it); later sends are refused. */
  close(): void;
}

export type HandoffTransportFactory = (peer: { host: string; port: number }) => HandoffTransport;

export interface HandoffTransportOptions {
  /** EHLO name. */
  hostname: string;
  /** Defaults: 5 s to connect, 10 s for the greeting, 30 s of silence. */
  timeouts?: { connectionMs?: number; greetingMs?: number; socketMs?: number };
  /** Connections to one peer at most; default 4, the drain's default concurrency. */
  maxConnections?: number;
}

const DEFAULT_MAX_CONNECTIONS = 4;

const NO_ROLES: AttemptReply = {
  kind: 'local',
  text: `hand-off: no open leg roles for this recipient, not sent (without ${LEGS_PARAM} the peer would plan all of its legs)`,
};
const NO_REPLY: AttemptReply = { kind: 'local', text: 'hand-off: no reply for this recipient' };

/**
 * Pure: the recipients in transactions such that no envelope address (addressesOf: what the client writes for a
 * recipient) is given two different parameter values in one of them; recipients keep their order, and a hand-off
 * without such a clash is one transaction.
 */
export function handoffBatches(
  recipients: readonly string[],
  params: ReadonlyMap<string, string>,
  addressesOf: (recipient: string) => readonly string[],
): string[][] {
  const batches: { to: string[]; value: Map<string, string> }[] = [];
  for (const r of recipients) {
    const p = params.get(r) ?? '';
    const addresses = addressesOf(r);
    let batch = batches.find((b) => addresses.every((a) => (b.value.get(a) ?? p) === p));
    if (batch === undefined) {
      batch = { to: [], value: new Map() };
      batches.push(batch);
    }
    batch.to.push(r);
    for (const a of addresses) batch.value.set(a, p);
  }
  return batches.map((b) => b.to);
}

export function handoffTransportFactory(opts: HandoffTransportOptions): HandoffTransportFactory {
  const pools = smtpOutTransportFactory({
    hostname: opts.hostname,
    timeouts: {
      connectionMs: opts.timeouts?.connectionMs ?? 5_000,
      greetingMs: opts.timeouts?.greetingMs ?? 10_000,
      socketMs: opts.timeouts?.socketMs ?? 30_000,
      // a peer relay answers the final dot once the message is on its disk: no delivery to wait for, and a drain
      // has a deadline
      finalReplyMs: 0,
    },
  });
  const maxConnections = opts.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
  return (peer) => {
    // Opportunistic without credentials: STARTTLS when offered, no certificate check, plain text if it fails.
    const pool = pools({ host: peer.host, port: peer.port, tls: 'Opportunistic', maxConnections });
    return {
      async send(req) {
        const out = new Map<string, AttemptReply>();
        try {
          const legs = new Map<string, string>();
          for (const r of req.to) {
            const roles = formatLegRoles(req.roles.get(r) ?? []);
            if (roles === '') out.set(r, NO_ROLES);
            else legs.set(r, roles);
          }
          const rcptParams = new Map([...legs].map(([r, roles]) => [r, [`${LEGS_PARAM}=${roles}`]]));
          const mailParams = [`${ORIGIN_PARAM}=${formatOrigin(req.origin)}`];
          const to = req.to.filter((r) => legs.has(r));
          for (const batch of to.length === 0 ? [] : handoffBatches(to, legs, envelopeAddresses)) {
            const replies = await pool.send({
              from: req.from,
              to: batch,
              raw: req.raw,
              ...(req.size !== undefined ? { size: req.size } : {}),
              ...(req.body8bit === true ? { body8bit: true } : {}),
              mailParams,
              rcptParams,
            });
            for (const r of batch) out.set(r, replies.get(r) ?? NO_REPLY);
          }
        } catch (err) {
          // nothing above is expected to throw; should it, the recipients not answered yet are told, never a rejection
          const text = `hand-off: ${err instanceof Error ? err.message : String(err)}`;
          for (const r of req.to) if (!out.has(r)) out.set(r, { kind: 'local', text });
        }
        return new Map(req.to.map((r) => [r, out.get(r) ?? NO_REPLY]));
      },
      close() {
        pool.close();
      },
    };
  };
}
