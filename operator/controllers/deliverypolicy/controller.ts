// DeliveryPolicy status: Accepted (Conflict when a second policy targets one MailDomain), ResolvedRefs
// (DomainNotFound, UnknownServer, ...), Programmed ("N/M relays programmed"), Ready; and, for kubectl get's printer
// columns, status.domain (the referenced MailDomain's spec.domain) and status.scope (who gets a copy).

import type { DeliveryPolicy, MailDomain } from '../../../routing/types.ts';
import { ObjectStatusController, type StatusControllerDeps, type StatusFields } from '../object-status.ts';

/**
 * Pure: the status fields kubectl shows. domain: spec.domain of the MailDomain that domainRef names, absent while
 * it does not exist. scope: the Dual scope with its default applied (All), absent for Direct and Split.
 */
export function policyStatusFields(dp: DeliveryPolicy, domain: MailDomain | undefined): StatusFields {
  return {
    domain: domain?.spec.domain,
    scope: dp.spec.mode === 'Dual' ? (dp.spec.dual?.scope ?? 'All') : undefined,
  };
}

export function createDeliveryPolicyController(
  deps: Omit<StatusControllerDeps<DeliveryPolicy>, 'kind' | 'extra' | 'fields'> & {
    /** A MailDomain from the cache. */
    mailDomain: (namespace: string, name: string) => MailDomain | undefined;
  },
): ObjectStatusController<DeliveryPolicy> {
  return new ObjectStatusController<DeliveryPolicy>({
    ...deps,
    kind: 'DeliveryPolicy',
    fields: (dp) => policyStatusFields(dp, deps.mailDomain(dp.metadata.namespace, dp.spec.domainRef.name)),
  });
}
