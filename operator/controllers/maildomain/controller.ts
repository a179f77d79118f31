// MailDomain status: Accepted, ResolvedRefs (incl. every servers[].authSecretRef Secret exists), Programmed, Ready.

import type { MailDomain } from '../../../routing/types.ts';
import { ObjectStatusController, type StatusControllerDeps } from '../object-status.ts';

/** Secrets referenced by a MailDomain that are not in the cache, as "namespace/name". */
export function missingSecrets(
  md: MailDomain,
  secretExists: (namespace: string, name: string) => boolean,
): string[] {
  const ns = md.metadata.namespace;
  const names = new Set<string>();
  for (const s of md.spec.servers) if (s.authSecretRef !== undefined) names.add(s.authSecretRef.name);
  return [...names].filter((n) => !secretExists(ns, n)).map((n) => `${ns}/${n}`);
}

export function createMailDomainController(
  deps: Omit<StatusControllerDeps<MailDomain>, 'kind' | 'extra'> & {
    secretExists: (namespace: string, name: string) => boolean;
  },
): ObjectStatusController<MailDomain> {
  return new ObjectStatusController<MailDomain>({
    ...deps,
    kind: 'MailDomain',
    extra: (md) => ({ missingSecrets: missingSecrets(md, deps.secretExists) }),
  });
}
