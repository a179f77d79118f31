// RCPT TO phase: each recipient is resolved with the routing core when it arrives; the delivery plan it gets is the
// one it keeps (docs/design.md §2). A recipient verification callout (cached) runs first when the MailDomain asks for it.
import type {
  DeliveryPlan,
  DomainRoute,
  Leg,
  MailboxFact,
  ResolveContext,
  ServerRoute,
} from '../../routing/model.ts';
import type { AcceptedRecipient } from '../spool/types.ts';
import { REPLIES, reject, tempfail, type Refusal } from './verdict.ts';
import { asciiDomain, domainOf, isNonAscii, parseAddress } from '../../routing/address.ts';
import type { Verifier } from './verify.ts';

/** What the RCPT phase needs from the routing core, bound to one routing revision. */
export interface RecipientRouter {
  readonly revision: string;
  /**
   * The server to ask whether a mailbox exists, and the address to ask about (the one a leg to that server would
   * carry: after copyRecipientDomain), when the recipient's MailDomain asks for verification.
   */
  verificationFor(
    address: string,
    now: Date,
  ):
    | {
        server: ServerRoute;
        address: string;
        cacheTtlMs: number;
        /** The domain's DomainClaim destinations, for the destination policy of the callout. */
        destinations?: DomainRoute['destinations'];
        /** For a subaddress: the address its mailbox would be asked about (Verifier.check's cache by mailbox). */
        mailbox?: string;
      }
    | undefined;
  resolve(address: string, ctx: ResolveContext): DeliveryPlan;
  /** Whether softBounce is in force at `now` for the domain of an accepted recipient (routing/resolve.ts). */
  softBounce(recipient: string, now: Date): boolean;
}

export type { Verifier };

export type RcptDecision = { verdict: 'accept'; accepted: AcceptedRecipient; revision: string } | Refusal;

/** The reason label (the rejection metric's) of a refusal that came from the routing core. */
export function reasonOf(plan: Exclude<DeliveryPlan, { verdict: 'accept' }>): string {
  if (plan.reason === 'RelayDenied' || plan.reason === 'UnknownRecipient' || plan.reason === 'DomainRemoved')
    return plan.reason;
  return plan.verdict === 'reject' ? 'RecipientRejected' : 'RecipientDeferred';
}

/**
 * The recipient the relay routes and relays: the domain in lowercase A-label form (a U-label domain, sent with
 * SMTPUTF8, becomes xn--...; an A-label stays as it is), the local part as sent (case-sensitive in principle).
 * undefined when the domain is not a valid internationalised domain name.
 */
export function normalizeRecipient(address: string): string | undefined {
  const at = address.lastIndexOf('@');
  if (at < 0) return address;
  const domain = asciiDomain(address.slice(at + 1));
  return domain === undefined ? undefined : `${address.slice(0, at)}@${domain}`;
}

/**
 * The local part carries routing of its own: %, ! or @ (the last only in a quoted local part). The percent hack
 * (user%other.org@here) and bang paths (other.org!user@here) make a server that honours them send the mail on to
 * other.org; the relay never does, but the managed server behind it may, and it trusts the relay.
 */
export function senderSpecifiedRouting(address: string): boolean {
  const local = address.slice(0, address.lastIndexOf('@'));
  return /[%!@]/.test(local);
}

export async function decideRcpt(
  rawAddress: string,
  deps: {
    router: RecipientRouter | undefined;
    verifier: Verifier;
    now: () => Date;
    /** The transaction's MAIL FROM carried SMTPUTF8; without it a non-ASCII recipient gets 553 5.6.7 (RFC 6531). */
    smtputf8?: boolean;
  },
): Promise<RcptDecision> {
  if (deps.smtputf8 !== true && isNonAscii(rawAddress)) return REPLIES.nonAsciiAddress();
  const router = deps.router;
  if (router === undefined) return REPLIES.noRoutingTable();
  const address = normalizeRecipient(rawAddress);
  if (address === undefined) return REPLIES.badIdnDomain();
  // "postmaster" without a domain (RFC 5321 §4.1.1.3) has no route through a relay without local mailboxes.
  if (domainOf(address) === '') return REPLIES.relayDenied();
  if (senderSpecifiedRouting(address)) return REPLIES.senderRouting();
  const plan = await planRecipient(address, { router, verifier: deps.verifier, now: deps.now() });
  switch (plan.verdict) {
    case 'accept': {
      // Every leg's address is one the spool will read back (relay/spool/check.ts parses each with parseAddress): a
      // TestRecipient's forwardTo with a local part over 64 octets, or a copy address made too long by its alias
      // domain, was accepted and spooled, and the next start quarantined the message. Deferred here instead, as
      // Postfix defers mail whose table lookup fails, until the object is fixed.
      // (a leg to the recipient itself: resolve() parsed it already)
      for (const l of plan.legs) {
        if (l.recipient === address) continue;
        const p = parseAddress(l.recipient);
        if (!p.ok) return REPLIES.invalidLegAddress(p.reason);
      }
      return {
        verdict: 'accept',
        accepted: { recipient: address, legs: plan.legs.map(freezeLeg) },
        revision: router.revision,
      };
    }
    case 'reject':
      return reject(reasonOf(plan), plan.reply.code, plan.reply.enhanced, plan.reply.text);
    case 'tempfail':
      return tempfail(reasonOf(plan), plan.reply.code, plan.reply.enhanced, plan.reply.text);
  }
}

/**
 * The plan of a normalized recipient address: its MailDomain's recipient verification first (a cached callout) when
 * the domain asks for it, then the routing core with the answer. The RCPT phase, and the DSN to a sender whose domain
 * is managed here (relay.ts), route with it.
 */
export async function planRecipient(
  address: string,
  deps: { router: RecipientRouter; verifier: Verifier; now: Date },
): Promise<DeliveryPlan> {
  const { router, now } = deps;
  let fact: MailboxFact | undefined;
  const ask = router.verificationFor(address, now);
  if (ask !== undefined)
    fact = (await deps.verifier.check(ask.server, ask.address, ask.cacheTtlMs, ask.destinations, ask.mailbox))
      .fact;
  const ctx: ResolveContext = {
    now,
    ...(fact !== undefined && ask !== undefined
      ? {
          verified: (server: string, a: string): MailboxFact =>
            server === ask.server.name && a.toLowerCase() === ask.address.toLowerCase() ? fact : 'unknown',
        }
      : {}),
  };
  return router.resolve(address, ctx);
}

function freezeLeg(leg: Leg): Leg {
  return { ...leg, server: { ...leg.server } };
}
