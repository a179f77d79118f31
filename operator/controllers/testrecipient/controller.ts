// TestRecipient status: the common conditions plus Active (False after spec.expiresAt), and status.parity (the
// relays' counters of this test user's legs: kubectl get's COPIES and LAG). The reconcile asks to be requeued at
// expiresAt, so the flip happens at that moment without any event from the API server.

import type { TestRecipient } from '../../../routing/types.ts';
import { parityStatus, type ParityReport } from '../../../contract/relay-parity.ts';
import { ObjectStatusController, type StatusControllerDeps } from '../object-status.ts';

export function createTestRecipientController(
  deps: Omit<StatusControllerDeps<TestRecipient>, 'kind' | 'extra' | 'fields'> & {
    /** The parity counters summed over the fresh relays. */
    parity: () => ParityReport;
  },
): ObjectStatusController<TestRecipient> {
  return new ObjectStatusController<TestRecipient>({
    ...deps,
    kind: 'TestRecipient',
    extra: (tr) => ({ expiresAt: tr.spec.expiresAt }),
    fields: (tr) => {
      const c = deps.parity().testRecipients[`${tr.metadata.namespace}/${tr.metadata.name}`];
      return { parity: c === undefined ? undefined : { ...parityStatus(c) } };
    },
  });
}
