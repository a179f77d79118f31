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
// No trust is needed: X-MAILROUTE-LEGS can only remove legs from the plan any client would get for that recipient
// (never add a server or a rewritten recipient), and the origin is informational (syntax-checked, never used to
// route). A client that names only the copy gets what it asked for: its message without the primary.
import type { Leg, LegRole } from '../../routing/model.ts';

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
