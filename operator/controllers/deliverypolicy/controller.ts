// DeliveryPolicy status: Accepted (Conflict when a second policy targets one MailDomain), ResolvedRefs
// (DomainNotFound, UnknownServer, ...), Programmed ("N/M relays programmed"), Ready.

import type { DeliveryPolicy } from '../../../routing/types.ts';
import { ObjectStatusController, type StatusControllerDeps } from '../object-status.ts';

export function createDeliveryPolicyController(
  deps: Omit<StatusControllerDeps<DeliveryPolicy>, 'kind' | 'extra'>,
): ObjectStatusController<DeliveryPolicy> {
  return new ObjectStatusController<DeliveryPolicy>({ ...deps, kind: 'DeliveryPolicy' });
}
