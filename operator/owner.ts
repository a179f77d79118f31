// The operator's side of owner references (contract/owner.ts): reads the uid of the owner ConfigMap the chart
// creates (`--owner-configmap`).
import { configMapOwner, type OwnerReference } from '../contract/owner.ts';
import { describeFailure, type KubeRest } from './kube/rest.ts';

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
