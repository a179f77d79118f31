// Pure: how to reach the server of a queued leg, looked up in the routing table the relay serves now.
//
// The legs of a message and their recipients are fixed at accept (docs/design.md §2); the server definition (host, port, mx,
// TLS mode, authSecretRef, maxConnections) is not: a corrected port, TLS mode or Secret reaches mail already queued.
//   leg.domain set (spool files written since legs name their domain):
//     domain and server in the current table -> the current definition;
//     either is gone                        -> unroutable: the leg is held (deferred, never bounced for it) with the
//                                              reason as its last reply, until the server is back or
//                                              `mailroute queue reroute` re-plans it;
//   leg.domain absent:
//     an older spool file: the domain of the accepted recipient is tried; when it still has a server of that name,
//     its current definition is used, else the stored copy (such a file cannot tell a removed server from a
//     server outside the table);
//     a server outside the table (a DSN to an outside sender: its MX or --dsn-relay): the stored copy.
//   No table loaded at all: the stored copy (there is nothing newer to prefer).
import { domainOf } from '../../routing/address.ts';
import type { DomainRoute, RoutingTable, ServerRoute } from '../../routing/model.ts';
import type { LegState } from '../spool/types.ts';

export type ServerLookup =
  | {
      ok: true;
      server: ServerRoute;
      from: 'table' | 'stored';
      /** The domain's DomainClaim destinations (DomainRoute.destinations), for the destination policy. */
      destinations?: DomainRoute['destinations'];
    }
  | { ok: false; server: ServerRoute; reason: string };

/** The prefix of the last reply of a leg held because its server is gone (queue show, logs). */
const UNROUTABLE_PREFIX = 'unroutable:';

export function lookupServer(
  table: RoutingTable | undefined,
  leg: Pick<LegState, 'recipient' | 'leg'>,
): ServerLookup {
  const stored = leg.leg.server;
  if (table === undefined) return { ok: true, server: stored, from: 'stored' };
  const name = stored.name;
  const domain = leg.leg.domain;
  if (domain === undefined) {
    const byRecipient = table.domains[domainOf(leg.recipient)];
    const current = byRecipient?.servers[name];
    return current === undefined
      ? { ok: true, server: stored, from: 'stored' }
      : { ok: true, server: current, from: 'table', ...withDestinations(byRecipient) };
  }
  const route = table.domains[domain];
  if (route === undefined) {
    return {
      ok: false,
      server: stored,
      reason: `${UNROUTABLE_PREFIX} domain ${domain} is no longer in the routing table (server ${name}); held until it is back or the message is rerouted`,
    };
  }
  const current = route.servers[name];
  if (current === undefined) {
    return {
      ok: false,
      server: stored,
      reason: `${UNROUTABLE_PREFIX} server ${name} is no longer declared by the MailDomain of ${domain}; held until it is back or the message is rerouted`,
    };
  }
  return { ok: true, server: current, from: 'table', ...withDestinations(route) };
}

function withDestinations(route: DomainRoute | undefined): { destinations?: DomainRoute['destinations'] } {
  return route?.destinations === undefined ? {} : { destinations: route.destinations };
}
