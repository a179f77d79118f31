// The wire format of the relay credentials in the cluster: pure encode (operator) and decode (relay) functions.
// docs/operations.md ("Relay credentials Secret") describes the same thing in prose.
//
//   Secret mailroute-credentials (type Opaque) in the operator's namespace, field manager mailroute-operator
//     annotations: mailroute.io/credentials-hash=<sha256 hex of the canonical data>
//     data: <namespace>.<name>.username, <namespace>.<name>.password
//           for every Secret named by servers[].authSecretRef of a MailDomain in the routing table that opts in
//           with the label mailroute.io/smtp-auth: "true" (routing/secret-opt-in.ts)
//
// Relays read this one Secret by name (get/list/watch limited with resourceNames), so they need no access to
// Secrets in the MailDomains' namespaces, and no credential ever lands in a ConfigMap. A namespace has no dots (a
// DNS label); a Secret name may have some: a key is split at its first dot and at its last.
import { sha256Hex } from '../routing/canonical.ts';
import type { RoutingTable } from '../routing/model.ts';
import { secretOptedIn } from '../routing/secret-opt-in.ts';

export const CREDENTIALS_SECRET = 'mailroute-credentials';
export const CREDENTIALS_HASH_ANNOTATION = 'mailroute.io/credentials-hash';

export interface Credentials {
  username: string;
  password: string;
}

/** "namespace/name" of a referenced Secret (the key the relay's credentials(ref) looks up). */
export type SecretKey = string;

/** Every Secret named by an authSecretRef of a server in the routing table, as "namespace/name", sorted. */
export function referencedSecrets(table: RoutingTable): SecretKey[] {
  const out = new Set<SecretKey>();
  for (const d of Object.values(table.domains))
    for (const s of Object.values(d.servers))
      if (s.authSecretRef !== undefined) out.add(`${s.authSecretRef.namespace}/${s.authSecretRef.name}`);
  return [...out].sort();
}

/** What the Secret informer holds for one Secret: base64 data, as the API returns it. */
export interface SecretLike {
  metadata?: { labels?: Record<string, string> | undefined } | undefined;
  data?: Record<string, string> | undefined;
}

export type SecretLookup =
  | { state: 'ok'; credentials: Credentials }
  | { state: 'missing' }
  | { state: 'invalid'; reason: string }
  /** Outside the namespaces the operator may read (--secret-namespaces): cannot be resolved. */
  | { state: 'unknown' };

/**
 * Reads username/password out of a Secret (base64 data). Pure. A Secret that has not opted in
 * (routing/secret-opt-in.ts) is 'missing', whatever it holds: its keys are never looked at, nor reported.
 */
export function readCredentials(secret: SecretLike | undefined): SecretLookup {
  if (secret === undefined || !secretOptedIn({ labels: secret.metadata?.labels }))
    return { state: 'missing' };
  const get = (k: string): string | undefined => {
    const v = secret.data?.[k];
    return v === undefined ? undefined : Buffer.from(v, 'base64').toString('utf8');
  };
  const username = get('username');
  const password = get('password');
  const absent = [username === undefined ? 'username' : '', password === undefined ? 'password' : ''].filter(
    (k) => k !== '',
  );
  if (absent.length > 0) return { state: 'invalid', reason: `no key ${absent.join(', ')}` };
  if (username === '') return { state: 'invalid', reason: 'username is empty' };
  return { state: 'ok', credentials: { username: username as string, password: password as string } };
}

export interface CredentialsData {
  /** Secret data (base64 values), keys sorted. */
  data: Record<string, string>;
  /** sha256 of the canonical data: the annotation, and what decides whether to apply again. */
  hash: string;
  /** Referenced Secrets that are left out, with why (logged; the MailDomain status reports them). */
  skipped: { secret: SecretKey; reason: string }[];
}

function dataKey(secret: SecretKey, field: 'username' | 'password'): string {
  const i = secret.indexOf('/');
  return `${secret.slice(0, i)}.${secret.slice(i + 1)}.${field}`;
}

/** The data of mailroute-credentials for the referenced Secrets. Pure. */
export function buildCredentialsData(
  refs: readonly SecretKey[],
  lookup: (secret: SecretKey) => SecretLookup,
): CredentialsData {
  const entries: [string, string][] = [];
  const skipped: CredentialsData['skipped'] = [];
  for (const ref of [...new Set(refs)].sort()) {
    const r = lookup(ref);
    if (r.state === 'ok') {
      entries.push([dataKey(ref, 'username'), Buffer.from(r.credentials.username).toString('base64')]);
      entries.push([dataKey(ref, 'password'), Buffer.from(r.credentials.password).toString('base64')]);
    } else {
      skipped.push({
        secret: ref,
        reason:
          r.state === 'invalid'
            ? r.reason
            : r.state === 'missing'
              ? 'not found or not labelled mailroute.io/smtp-auth: "true"'
              : 'not readable (outside --secret-namespaces)',
      });
    }
  }
  entries.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const data = Object.fromEntries(entries);
  const hash = sha256Hex(JSON.stringify(entries));
  return { data, hash, skipped };
}

/** The object the operator server-side applies. Pure. */
export function credentialsSecret(
  namespace: string,
  built: CredentialsData,
  name = CREDENTIALS_SECRET,
): Record<string, unknown> {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: {
      name,
      namespace,
      labels: {
        'app.kubernetes.io/managed-by': 'mailroute-operator',
        'app.kubernetes.io/part-of': 'mailroute',
      },
      annotations: { [CREDENTIALS_HASH_ANNOTATION]: built.hash },
    },
    type: 'Opaque',
    data: built.data,
  };
}

/**
 * Decodes the data of mailroute-credentials (base64 values) into credentials by "namespace/name". Keys that do not
 * follow the format, and a username without a password (or the other way round), are reported in `errors`. Pure.
 */
export function parseCredentialsData(data: Record<string, string> | undefined): {
  secrets: Map<SecretKey, Credentials>;
  errors: string[];
} {
  const partial = new Map<SecretKey, { username?: string; password?: string }>();
  const errors: string[] = [];
  for (const [k, v] of Object.entries(data ?? {})) {
    const m = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?)\.(.+)\.(username|password)$/.exec(k);
    if (m === null) {
      errors.push(`${k}: not <namespace>.<name>.username|password`);
      continue;
    }
    const key = `${m[1] ?? ''}/${m[3] ?? ''}`;
    const field = m[4] as 'username' | 'password';
    const cur = partial.get(key) ?? {};
    cur[field] = Buffer.from(v, 'base64').toString('utf8');
    partial.set(key, cur);
  }
  const secrets = new Map<SecretKey, Credentials>();
  for (const [key, c] of [...partial].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
    if (c.username === undefined || c.password === undefined)
      errors.push(`${key}: ${c.username === undefined ? 'username' : 'password'} missing`);
    else secrets.set(key, { username: c.username, password: c.password });
  }
  return { secrets, errors };
}
