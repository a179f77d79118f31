// Binds one routing snapshot to the RCPT phase: the routing core's index is built once per revision, so a swap is
// one assignment of a new RecipientRouter.
import { domainOf } from '../../routing/address.ts';
import { buildIndex, resolve, verificationNeeded } from '../../routing/resolve.ts';
import type { RoutingTable } from '../../routing/model.ts';
import type { RecipientRouter } from './rcpt.ts';

export function createRouter(table: RoutingTable, revision: string): RecipientRouter {
  const index = buildIndex(table);
  return {
    revision,
    verificationFor(address, now) {
      const v = verificationNeeded(index, address, { now });
      if (v === undefined) return undefined;
      // the server belongs to the recipient's domain (the asked address may be at copyRecipientDomain)
      const server = table.domains[domainOf(address).toLowerCase()]?.servers[v.server];
      if (server === undefined) return undefined;
      const destinations = table.domains[domainOf(address).toLowerCase()]?.destinations;
      return {
        server,
        address: v.address,
        cacheTtlMs: v.cacheTTLSeconds * 1000,
        ...(destinations !== undefined ? { destinations } : {}),
      };
    },
    resolve: (address, ctx) => resolve(index, address, ctx),
  };
}
