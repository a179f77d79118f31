// Pure: `mailroute queue reroute`: the open legs of a queued message re-planned with the current routing table.
//
// For every open (pending or deferred) leg, the recipient it was accepted for is resolved again and the leg is
// replaced by the new plan's leg of the same role (primary for primary, copy for copy): its server, domain, rewritten
// recipient and bounce behaviour. A replaced leg becomes pending (tried at once), keeping its attempt count. Final
// legs (delivered, failed, suppressed) are never touched, so a delivered primary is not delivered again; legs the new
// plan has and the message did not have are not added. A leg stays as it is (and is listed as unchanged, with why)
// when the new plan refuses the recipient, has no leg of its role, or is the same leg. A replacement never sends the
// message twice to one mailbox: when another leg of the same recipient already goes to that server and envelope
// recipient (a TestRecipient switched to keepPrimaryCopy: false moves its primary to the copy's mailbox), the leg
// becomes delivered if that leg was delivered, and stays as it is while that leg is still open.
import type { DeliveryPlan, Leg } from '../../routing/model.ts';
import { isOpenLeg, type LegState, type SpoolState } from '../spool/types.ts';

interface RerouteChange {
  index: number;
  recipient: string;
  role: Leg['role'];
  /** "server <envelope recipient>" before and after */
  from: string;
  to: string;
}

export interface RerouteResult {
  state: SpoolState;
  changed: RerouteChange[];
  unchanged: { index: number; recipient: string; role: Leg['role']; reason: string }[];
}

const describe = (l: Leg): string => `${l.server.name} <${l.recipient}>`;

function sameLeg(a: Leg, b: Leg): boolean {
  return sameMailbox(a, b) && a.domain === b.domain && a.role === b.role && a.bounces === b.bounces;
}

/** Both legs put the message in one mailbox: the same server and envelope recipient. */
function sameMailbox(a: Leg, b: Leg): boolean {
  return a.recipient === b.recipient && JSON.stringify(a.server) === JSON.stringify(b.server);
}

/**
 * The state with its open legs re-planned by `replan` (the relay's route function: the current table, now).
 * `skip` names leg indexes not to touch (attempts in flight).
 */
export function rerouteState(
  state: SpoolState,
  replan: (recipient: string) => DeliveryPlan,
  skip: ReadonlySet<number> = new Set(),
): RerouteResult {
  const plans = new Map<string, DeliveryPlan>();
  const planFor = (recipient: string): DeliveryPlan => {
    let p = plans.get(recipient);
    if (p === undefined) {
      p = replan(recipient);
      plans.set(recipient, p);
    }
    return p;
  };
  const changed: RerouteChange[] = [];
  const unchanged: RerouteResult['unchanged'] = [];
  // the legs as they stand, replacements included, to find another leg of the same recipient to the same mailbox
  const legs = [...state.legs];
  const twinOf = (index: number, next: Leg): number =>
    legs.findIndex(
      (o, j) =>
        j !== index &&
        o.recipient === legs[index]?.recipient &&
        o.state !== 'failed' &&
        o.state !== 'suppressed' &&
        sameMailbox(o.leg, next),
    );
  for (const [index, l] of state.legs.entries()) legs[index] = replace(l, index);
  return { state: changed.length > 0 ? { ...state, legs } : state, changed, unchanged };

  function replace(l: LegState, index: number): LegState {
    if (!isOpenLeg(l)) return l;
    const base = { index, recipient: l.recipient, role: l.leg.role };
    if (skip.has(index)) {
      unchanged.push({ ...base, reason: 'an attempt is in flight' });
      return l;
    }
    const plan = planFor(l.recipient);
    if (plan.verdict !== 'accept') {
      unchanged.push({
        ...base,
        reason: `the current routing does not accept ${l.recipient}: ${plan.reply.code} ${plan.reply.enhanced} ${plan.reply.text}`,
      });
      return l;
    }
    const next = plan.legs.find((n) => n.role === l.leg.role);
    if (next === undefined) {
      unchanged.push({ ...base, reason: `the current plan of ${l.recipient} has no ${l.leg.role} leg` });
      return l;
    }
    if (sameLeg(next, l.leg)) {
      unchanged.push({ ...base, reason: 'already on the current plan' });
      return l;
    }
    const twin = twinOf(index, next);
    if (twin >= 0 && legs[twin]?.state !== 'delivered') {
      unchanged.push({ ...base, reason: `leg ${twin} of ${l.recipient} already goes to ${describe(next)}` });
      return l;
    }
    const { nextAttemptAt: _drop, ...rest } = l;
    if (twin >= 0) {
      // delivered: a delay notice still owed for the waiting leg is owed no more
      delete rest.delayPending;
      // that mailbox has the message already: sending it again would deliver it twice
      changed.push({
        ...base,
        from: describe(l.leg),
        to: `${describe(next)} (delivered already by leg ${twin})`,
      });
      return { ...rest, leg: next, state: 'delivered', lastReply: `delivered already by leg ${twin}` };
    }
    changed.push({ ...base, from: describe(l.leg), to: describe(next) });
    return { ...rest, leg: next, state: 'pending' };
  }
}
