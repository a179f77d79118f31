// Pure: `mailroute queue reroute`: the open legs of a queued message re-planned with the current routing table.
//
// For every open (pending or deferred) leg, the recipient it was accepted for is resolved again and the leg is
// replaced by the new plan's leg of the same role (primary for primary, copy for copy): its server, domain, rewritten
// recipient and bounce behaviour. A replaced leg becomes pending (tried at once), keeping its attempt count. Final
// legs (delivered, failed, suppressed) are never touched, so a delivered primary is not delivered again; legs the new
// plan has and the message did not have are not added. A leg stays as it is (and is listed as unchanged, with why)
// when the new plan refuses the recipient, has no leg of its role, or is the same leg.
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
  return (
    a.domain === b.domain &&
    a.recipient === b.recipient &&
    a.role === b.role &&
    a.bounces === b.bounces &&
    JSON.stringify(a.server) === JSON.stringify(b.server)
  );
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
  const legs = state.legs.map((l, index): LegState => {
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
    changed.push({ ...base, from: describe(l.leg), to: describe(next) });
    const { nextAttemptAt: _drop, ...rest } = l;
    return { ...rest, leg: next, state: 'pending' };
  });
  return { state: changed.length > 0 ? { ...state, legs } : state, changed, unchanged };
}
