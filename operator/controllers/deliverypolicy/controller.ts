// DeliveryPolicy status: Accepted (Conflict when a second policy targets one MailDomain), ResolvedRefs
// (DomainNotFound, UnknownServer, ...), Programmed ("N/M relays programmed"), Ready; and, for kubectl get's printer
// columns, status.domain (the referenced MailDomain's spec.domain), status.mode and status.scope (of the stage in
// force), status.stage and status.nextTransition (dated stages), status.softBounce (while in force). The reconcile is requeued at the end of the stage in
// force, so status follows the schedule without any event from the API server.

import { nextInstant, stageAt } from '../../../routing/schedule.ts';
import type { DeliveryPolicy, MailDomain } from '../../../routing/types.ts';
import { parityStatus, type ParityCounts, type ParityReport } from '../../../contract/relay-parity.ts';
import { ObjectStatusController, type StatusControllerDeps, type StatusFields } from '../object-status.ts';

/**
 * Pure: the status fields kubectl shows, at `now`. domain: spec.domain of the MailDomain that domainRef names, absent
 * while it does not exist. mode and scope: of the stage in force (routing/schedule.ts stageAt), or of the policy's own
 * fields; scope is the Dual scope with its default applied (All), absent for Direct and Split. stage: the name of the
 * stage in force, `final` after the last one, absent without stages. softBounce: true while the state in force has it.
 * nextTransition: the end of the stage in force.
 */
export function policyStatusFields(
  dp: DeliveryPolicy,
  domain: MailDomain | undefined,
  now: Date,
  parity?: ParityCounts,
): StatusFields {
  const stages = dp.spec.stages ?? [];
  const inForce = stageAt(stages, now);
  const state = stages[inForce.index] ?? dp.spec;
  return {
    domain: domain?.spec.domain,
    mode: state.mode,
    scope: state.mode === 'Dual' ? (state.dual?.scope ?? 'All') : undefined,
    stage: stages.length > 0 ? inForce.name : undefined,
    // present only while in force, so that kubectl get -o wide shows it for the policies that have it
    softBounce: state.softBounce === true ? true : undefined,
    nextTransition: nextInstant(
      stages.map((s) => s.until),
      now,
    )
      ?.toISOString()
      .replace(/\.000Z$/, 'Z'),
    // The relays' counters for this policy (contract/relay-parity.ts); absent until a relay has reported a leg.
    parity: parity === undefined ? undefined : { ...parityStatus(parity) },
  };
}

export function createDeliveryPolicyController(
  deps: Omit<StatusControllerDeps<DeliveryPolicy>, 'kind' | 'extra' | 'fields'> & {
    /** A MailDomain from the cache. */
    mailDomain: (namespace: string, name: string) => MailDomain | undefined;
    /** The parity counters summed over the fresh relays. */
    parity: () => ParityReport;
  },
): ObjectStatusController<DeliveryPolicy> {
  return new ObjectStatusController<DeliveryPolicy>({
    ...deps,
    kind: 'DeliveryPolicy',
    fields: (dp, now) =>
      policyStatusFields(
        dp,
        deps.mailDomain(dp.metadata.namespace, dp.spec.domainRef.name),
        now,
        deps.parity().policies[`${dp.metadata.namespace}/${dp.metadata.name}`],
      ),
    extra: (dp) => ({ transitions: (dp.spec.stages ?? []).map((s) => s.until) }),
  });
}
