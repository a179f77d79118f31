// Pure: the two ESMTP parameters a draining relay adds when it hands queued mail to a peer (relay/cluster/drain.ts),
// and what the receiving relay does with them.
//
//   MAIL FROM:<sender> X-MAILROUTE-ORIGIN=<queue id>@<relay name>
//     the message's queue id on the relay that hands it over; stored as the new message's `origin`, logged with
//     its acceptance and shown by `mailroute queue show`, so the two relays' logs connect.
//   RCPT TO:<recipient> X-MAILROUTE-LEGS=copy            (or primary, or primary,copy)
//     the roles of the recipient's legs that are still open there. The receiving relay plans the recipient with its
//     own table, as for any client, and keeps only the legs of those roles: a leg delivered before the drain is not
//     delivered again. A role its plan does not have is refused with 451 4.3.0 (the message stays with the relay
//     that hands it over, which keeps it spooled).
//
// Only a peer relay may use them: the receiving relay honours them from a client whose address is one its own
// `--peers` setting currently resolves to, or (cluster mode) one in another relay's fresh heartbeat Lease
// (peer-trust.ts caches these, re-resolving through relay/dns.ts), and from no one without either. Any other
// client gets `555 5.5.4 Unsupported parameter X-MAILROUTE-...`, as for any parameter the relay does not support
// (RFC 5321 §4.1.1.11), so its message keeps its normal plan. Trust is needed: LEGS=copy would drop the mailbox of
// record, and a lone copy in a handed-over message may be suppressed (the relay that handed it over delivered the
// leg of record), so an untrusted LEGS would let any client get a message with no leg of record that notifies; and
// an untrusted ORIGIN would write forged entries into logs and queue show.
import type { Leg, LegRole } from '../../routing/model.ts';
import { REPLIES, type Refusal } from './verdict.ts';

export const ORIGIN_PARAM = 'X-MAILROUTE-ORIGIN';
export const LEGS_PARAM = 'X-MAILROUTE-LEGS';

export interface Origin {
  queueId: string;
  relay: string;
}

const QUEUE_ID = /^[0-9a-z]{16}$/;
const RELAY_NAME = /^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$/;
const ROLES: readonly LegRole[] = ['primary', 'copy'];

/** "0mx0qz1k20001a7f@relay-0.example" */
export function formatOrigin(o: Origin): string {
  return `${o.queueId}@${o.relay}`;
}

export function parseOrigin(value: unknown): Origin | string {
  if (typeof value !== 'string') return `${ORIGIN_PARAM} needs a value: QUEUEID@RELAY`;
  const at = value.indexOf('@');
  const queueId = value.slice(0, at);
  const relay = value.slice(at + 1);
  if (at < 0 || !QUEUE_ID.test(queueId) || !RELAY_NAME.test(relay))
    return `${ORIGIN_PARAM}: expected QUEUEID@RELAY (a 16-character queue id and a host name), got ${JSON.stringify(value.slice(0, 80))}`;
  return { queueId, relay };
}

/** "primary,copy" */
export function formatLegRoles(roles: Iterable<LegRole>): string {
  const set = new Set(roles);
  return ROLES.filter((r) => set.has(r)).join(',');
}

export function parseLegRoles(value: unknown): Set<LegRole> | string {
  const bad = `${LEGS_PARAM}: expected primary, copy or primary,copy, got ${JSON.stringify(typeof value === 'string' ? value.slice(0, 40) : value)}`;
  if (typeof value !== 'string' || value === '') return bad;
  const out = new Set<LegRole>();
  for (const part of value.toLowerCase().split(',')) {
    const role = ROLES.find((r) => r === part);
    if (role === undefined) return bad;
    out.add(role);
  }
  return out;
}

/** The legs of a plan a hand-off keeps: those of the named roles; a string says which role the plan lacks. */
export function narrowLegs(legs: readonly Leg[], roles: ReadonlySet<LegRole>): Leg[] | string {
  const kept = legs.filter((l) => roles.has(l.role));
  const missing = [...roles].filter((r) => !kept.some((l) => l.role === r));
  if (missing.length > 0) return `no ${missing.join(' or ')} leg in this relay's routing`;
  return kept;
}

/**
 * An IP address in one spelling, so a client address and a resolved peer address compare equal: an IPv4-mapped IPv6
 * address (what a dual-stack listener reports for an IPv4 client) as IPv4, IPv6 compressed and lowercase.
 */
export function canonicalAddress(ip: string): string {
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(ip);
  if (mapped?.[1] !== undefined) return mapped[1];
  if (!ip.includes(':')) return ip;
  try {
    const host = new URL(`http://[${ip}]/`).hostname.slice(1, -1);
    const v4 = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(host);
    if (v4?.[1] !== undefined && v4[2] !== undefined) {
      const hi = parseInt(v4[1], 16);
      const lo = parseInt(v4[2], 16);
      return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
    }
    return host;
  } catch {
    return ip.toLowerCase(); // a zone id (fe80::1%eth0): compared as written
  }
}

/** Pure: whether a client may use the hand-off parameters: its address is one of the peer addresses. */
export function isPeerAddress(client: string, peers: Iterable<string>): boolean {
  const c = canonicalAddress(client);
  for (const p of peers) if (canonicalAddress(p) === c) return true;
  return false;
}

/**
 * Pure: what a hand-off parameter gets. From a peer: honoured (undefined, the value is checked next); from anyone
 * else the reply to any parameter the relay does not support, naming it.
 */
export function handoffParamVerdict(param: string, fromPeer: boolean): Refusal | undefined {
  return fromPeer ? undefined : REPLIES.unsupportedParameter(param);
}
