// Where a DSN goes (docs/design.md §4: "routed like any other message"). Pure: the routing table's answer and the managed-domain
// check are injected.
//   - sender on a managed domain: that domain's policy (route(sender)), like any inbound recipient;
//   - sender elsewhere: one leg of record (role primary, bounces Notify like every leg of record) to the sender's
//     domain via MX, or to the --dsn-relay smarthost when set. A DSN still never bounces: its sender is <>, and no
//     DSN is owed for a message from the null sender (outcome.ts);
//   - sender whose domain is not a valid host name (or an address literal): the reject plan, so the engine counts the
//     DSN as unroutable and does not send it.
import { asciiDomain } from '../../routing/address.ts';
import type { DeliveryPlan, ServerRoute } from '../../routing/model.ts';

export interface DsnRouteDeps {
  /** The routing table's plan for a recipient (the relay's route function). */
  route: (recipient: string) => DeliveryPlan | Promise<DeliveryPlan>;
  /** True when the (lowercase) domain is declared by a MailDomain in the current table. */
  isManaged: (domain: string) => boolean;
  /** --dsn-relay: smarthost for DSNs to senders outside the managed domains. */
  dsnRelay?: { host: string; port: number };
}

const LABEL = /^(?!-)[A-Za-z0-9\u0080-\uffff-]{1,63}(?<!-)$/u;

/** A domain a DSN can be sent to: dot-separated labels, at least two, 253 characters at most, no address literal. */
export function isDeliverableDomain(domain: string): boolean {
  if (domain.length === 0 || domain.length > 253) return false;
  const labels = domain.split('.');
  if (labels.length < 2) return false;
  return labels.every((l) => LABEL.test(l)) && !/^\d+$/.test(labels[labels.length - 1] ?? '');
}

export async function dsnRoute(sender: string, deps: DsnRouteDeps): Promise<DeliveryPlan> {
  const at = sender.lastIndexOf('@');
  // the A-label, as the table's keys and DNS have it: a sender at `bücher.example` (SMTPUTF8) whose domain is managed
  // was sent by MX to the relay itself, refused there as a loop, and the DSN (from <>) was lost
  const domain = at > 0 ? (asciiDomain(sender.slice(at + 1)) ?? '') : '';
  if (domain !== '' && deps.isManaged(domain)) return await deps.route(sender);
  if (at <= 0 || !isDeliverableDomain(domain)) {
    return {
      verdict: 'reject',
      recipient: sender,
      reply: {
        code: 553,
        enhanced: '5.1.3',
        text: `DSN sender ${JSON.stringify(sender)} has no deliverable domain`,
      },
      reason: 'BadSyntax',
      legs: [],
    };
  }
  const server: ServerRoute = deps.dsnRelay
    ? {
        name: 'dsn-relay',
        host: deps.dsnRelay.host,
        port: deps.dsnRelay.port,
        mx: false,
        tls: 'Opportunistic',
        maxConnections: 4,
      }
    : { name: 'mx', host: domain, port: 25, mx: true, tls: 'Opportunistic', maxConnections: 4 };
  return {
    verdict: 'accept',
    recipient: sender,
    domain,
    legs: [{ server, recipient: sender, role: 'primary', bounces: 'Notify' }],
  };
}
