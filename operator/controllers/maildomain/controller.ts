// MailDomain status: Accepted, ResolvedRefs (incl. every servers[].authSecretRef Secret exists, opts in with the
// label mailroute.io/smtp-auth: "true", and has the keys username and password; a Secret that does not opt in is
// reported exactly like a missing one, nothing about its keys), Programmed, Ready, and BackscatterRisk (True: the
// domain accepts any local part); and status.serverNames for kubectl get -o wide.

import { backscatterRisk } from '../../../routing/backscatter.ts';
import type { MailDomain } from '../../../routing/types.ts';
import type { SecretLookup } from '../../../contract/credentials-secret.ts';
import { ObjectStatusController, type StatusControllerDeps, type StatusFields } from '../object-status.ts';

function referenced(md: MailDomain): string[] {
  const names = new Set<string>();
  for (const s of md.spec.servers) if (s.authSecretRef !== undefined) names.add(s.authSecretRef.name);
  return [...names];
}

/** Secrets referenced by a MailDomain that are not in the cache or have not opted in, as "namespace/name". */
function missingSecrets(
  md: MailDomain,
  secretExists: (namespace: string, name: string) => boolean,
): string[] {
  const ns = md.metadata.namespace;
  return referenced(md)
    .filter((n) => !secretExists(ns, n))
    .map((n) => `${ns}/${n}`);
}

/** Referenced opted-in Secrets that hold no usable username/password, as "namespace/name: why". */
function invalidSecrets(md: MailDomain, lookup: (key: string) => SecretLookup): string[] {
  const ns = md.metadata.namespace;
  const out: string[] = [];
  for (const n of referenced(md)) {
    const r = lookup(`${ns}/${n}`);
    if (r.state === 'invalid') out.push(`${ns}/${n}: ${r.reason}`);
  }
  return out;
}

/** Pure: the status fields kubectl shows (a printer column prints only the first value of a list). */
export function domainStatusFields(md: MailDomain): StatusFields {
  return { serverNames: md.spec.servers.map((s) => s.name).join(',') };
}

export function createMailDomainController(
  deps: Omit<StatusControllerDeps<MailDomain>, 'kind' | 'extra' | 'fields'> & {
    secretExists: (namespace: string, name: string) => boolean;
    /** The cached Secret's credentials (contract/credentials-secret.ts); absent: keys are not checked. */
    secretLookup?: (key: string) => SecretLookup;
  },
): ObjectStatusController<MailDomain> {
  return new ObjectStatusController<MailDomain>({
    ...deps,
    kind: 'MailDomain',
    extra: (md) => ({
      missingSecrets: missingSecrets(md, deps.secretExists),
      backscatterRisk: backscatterRisk(md.spec) ?? '',
      ...(deps.secretLookup ? { invalidSecrets: invalidSecrets(md, deps.secretLookup) } : {}),
    }),
    fields: domainStatusFields,
  });
}
