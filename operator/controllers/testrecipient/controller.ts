// TestRecipient status: the common conditions plus Active (False after spec.expiresAt). The reconcile asks to be
// requeued at expiresAt, so the flip happens at that moment without any event from the API server.

import type { TestRecipient } from '../../../routing/types.ts';
import { ObjectStatusController, type StatusControllerDeps } from '../object-status.ts';

export function createTestRecipientController(
  deps: Omit<StatusControllerDeps<TestRecipient>, 'kind' | 'extra'>,
): ObjectStatusController<TestRecipient> {
  return new ObjectStatusController<TestRecipient>({
    ...deps,
    kind: 'TestRecipient',
    extra: (tr) => ({ expiresAt: tr.spec.expiresAt }),
  });
}
