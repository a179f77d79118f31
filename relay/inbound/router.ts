// Binds one routing snapshot to the RCPT phase: the routing core's index is built once per revision, so a swap is
// one assignment of a new RecipientRouter.
import { domainOf } from '../../routing/address.ts';
import { buildIndex, mailboxOf, resolve, softBounceFor, verificationNeeded } from '../../routing/resolve.ts';
import type { RoutingTable } from '../../routing/model.ts';
import type { RecipientRouter } from './rcpt.ts';
import { removedDomainText } from './removed-domains.ts';

/**
 * `removedFor(domain)`: how long ago (ms) a domain the table does not have left it, while that is within the grace
 * (removed-domains.ts); its recipients then get 451 4.3.0 instead of 554 5.7.1 relay access denied.
 */
export function createRouter(
  table: RoutingTable,
  revision: string,
  removedFor?: (domain: string) => number | undefined,
): RecipientRouter {
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
      // a subaddress: its mailbox at the domain asked about (alice@ for alice+news@, at copyRecipientDomain when the
      // copy's address is asked), for the verification cache; no second dry run of resolve() on the RCPT path
      const base = mailboxOf(index, address);
      const mailbox =
        base === undefined
          ? undefined
          : `${base.slice(0, base.lastIndexOf('@'))}${v.address.slice(v.address.lastIndexOf('@'))}`;
      return {
        server,
        address: v.address,
        cacheTtlMs: v.cacheTTLSeconds * 1000,
        ...(destinations !== undefined ? { destinations } : {}),
        ...(mailbox !== undefined ? { mailbox } : {}),
      };
    },
    softBounce: (recipient, now) => softBounceFor(index, recipient, now),
    resolve: (address, ctx) => {
      const plan = resolve(index, address, ctx);
      if (plan.verdict !== 'reject' || plan.reason !== 'RelayDenied' || removedFor === undefined) return plan;
      const domain = domainOf(plan.recipient);
      const ago = removedFor(domain);
      if (ago === undefined) return plan;
      return {
        verdict: 'tempfail',
        recipient: plan.recipient,
        reply: { code: 451, enhanced: '4.3.0', text: removedDomainText(domain, ago) },
        reason: 'DomainRemoved',
        legs: [],
      };
    },
  };
}
