// Owner references for what the operator (and the relays) create at run time in the release namespace: the routing
// ConfigMap and its shards, Secret mailroute-credentials and the leader Lease. They name a ConfigMap the Helm chart
// creates (`--owner-configmap`, <fullname>-owner), so `helm uninstall`, which deletes that ConfigMap, lets the
// garbage collector of kube-controller-manager delete them too: no routing table, copied SMTP password or Lease is
// left behind to keep reporting Ready. Without the flag nothing is owned (as before).
import { describeFailure, type KubeRest } from './kube/rest.ts';

export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
}

/** The reference to a ConfigMap. Not a controller reference and no blockOwnerDeletion: deletion is not held up. Pure. */
export function configMapOwner(name: string, uid: string): OwnerReference {
  return { apiVersion: 'v1', kind: 'ConfigMap', name, uid };
}

/** `obj` with metadata.ownerReferences set (or untouched when there is no owner). Pure. */
export function withOwners<T extends { metadata?: object }>(obj: T, owners: readonly OwnerReference[]): T {
  if (owners.length === 0) return obj;
  return { ...obj, metadata: { ...obj.metadata, ownerReferences: owners.map((o) => ({ ...o })) } };
}

/** Reads the owner ConfigMap's uid. A missing ConfigMap or a refused read is an error naming the flag. */
export async function resolveOwnerConfigMap(
  rest: KubeRest,
  namespace: string,
  name: string,
): Promise<{ ok: true; owners: OwnerReference[] } | { ok: false; error: string }> {
  const r = await rest.request<{ metadata?: { uid?: string } }>(
    'GET',
    `/api/v1/namespaces/${namespace}/configmaps/${name}`,
  );
  if (!r.ok) return { ok: false, error: `--owner-configmap ${namespace}/${name}: ${describeFailure(r)}` };
  const uid = r.body.metadata?.uid;
  if (uid === undefined || uid === '')
    return { ok: false, error: `--owner-configmap ${namespace}/${name}: no metadata.uid` };
  return { ok: true, owners: [configMapOwner(name, uid)] };
}
