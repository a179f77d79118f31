// Owner references for what the operator (and the relays) create at run time in the release namespace: the routing
// ConfigMap and its shards, Secret mailroute-credentials, the leader Lease and the relays' heartbeat Leases. They
// name a ConfigMap the Helm chart creates (`--owner-configmap`, <fullname>-owner), so `helm uninstall`, which deletes
// that ConfigMap, lets the garbage collector of kube-controller-manager delete them too: no routing table, copied
// SMTP password or Lease is left behind to keep reporting Ready. Without the flag nothing is owned. Pure.

export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
}

/** The reference to a ConfigMap. Not a controller reference and no blockOwnerDeletion: deletion is not held up. */
export function configMapOwner(name: string, uid: string): OwnerReference {
  return { apiVersion: 'v1', kind: 'ConfigMap', name, uid };
}

/** `obj` with metadata.ownerReferences set (or untouched when there is no owner). */
export function withOwners<T extends { metadata?: object }>(obj: T, owners: readonly OwnerReference[]): T {
  if (owners.length === 0) return obj;
  return { ...obj, metadata: { ...obj.metadata, ownerReferences: owners.map((o) => ({ ...o })) } };
}
