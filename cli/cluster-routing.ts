// Reads the routing table a cluster serves: the operator's routing ConfigMap (inline or sharded, the wire format of
// contract/routing-configmap.ts) through the normal kubeconfig (KUBECONFIG or ~/.kube/config, --kubeconfig, --context).
// Used by `mailroute diff --cluster`. Expected failures (no kubeconfig, unknown context, API unreachable, the
// ConfigMap missing or unreadable) are results with one clear line, never exceptions.
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import type { RoutingTable } from '../routing/model.ts';
import {
  assembleShards,
  decodeIndex,
  ROUTING_CONFIGMAP,
  type ConfigMapLike,
} from '../contract/routing-configmap.ts';
import { parseTableJson } from '../relay/sources/configmap.ts';

const DEFAULT_ROUTING_NAMESPACE = 'mailroute-system';

export interface ClusterTarget {
  kubeconfig?: string;
  context?: string;
  namespace: string;
  name: string;
}

export type ClusterTable =
  { ok: true; table: RoutingTable; revision: string; context: string } | { ok: false; error: string };

/** "NS/NAME" or "NAME" (in the default namespace) -> where the routing ConfigMap is. */
export function parseConfigMapRef(s: string | undefined): { namespace: string; name: string } | string {
  if (s === undefined) return { namespace: DEFAULT_ROUTING_NAMESPACE, name: ROUTING_CONFIGMAP };
  const m = /^(?:([a-z0-9]([-a-z0-9]*[a-z0-9])?)\/)?([a-z0-9]([-a-z0-9.]*[a-z0-9])?)$/.exec(s);
  if (m === null) return `--configmap: expected NAMESPACE/NAME, got ${JSON.stringify(s)}`;
  return { namespace: m[1] ?? DEFAULT_ROUTING_NAMESPACE, name: m[3] ?? ROUTING_CONFIGMAP };
}

function httpCode(err: unknown): number | undefined {
  const c = (err as { code?: unknown } | null)?.code;
  return typeof c === 'number' ? c : undefined;
}

function errText(err: unknown): string {
  const body = (err as { body?: unknown } | null)?.body;
  if (typeof body === 'string') {
    try {
      const msg = (JSON.parse(body) as { message?: unknown }).message;
      if (typeof msg === 'string') return msg;
    } catch {
      // not JSON: fall through
    }
  }
  const m = err instanceof Error ? err.message : String(err);
  const line = m.split('\n')[0] ?? m;
  // fetch() says only "fetch failed"; the reason (ECONNREFUSED, a certificate error) is its cause
  const cause =
    err instanceof Error ? (err.cause as { code?: unknown; message?: unknown } | undefined) : undefined;
  const why =
    typeof cause?.code === 'string' ? cause.code : typeof cause?.message === 'string' ? cause.message : '';
  return why === '' || line.includes(why) ? line : `${line}: ${why}`;
}

/** The KubeConfig the command uses: --kubeconfig or the default chain, switched to --context. */
function loadKubeConfig(target: Pick<ClusterTarget, 'kubeconfig' | 'context'>): KubeConfig | string {
  const kc = new KubeConfig();
  try {
    if (target.kubeconfig !== undefined) kc.loadFromFile(target.kubeconfig);
    else kc.loadFromDefault();
  } catch (err) {
    return `--kubeconfig ${target.kubeconfig ?? '(default)'}: ${errText(err)}`;
  }
  if (target.context !== undefined) {
    if (kc.getContextObject(target.context) === null)
      return `--context: no context ${JSON.stringify(target.context)} in the kubeconfig (have: ${kc
        .getContexts()
        .map((c) => c.name)
        .join(', ')})`;
    kc.setCurrentContext(target.context);
  }
  if (kc.getCurrentCluster() === null) return 'no cluster in the kubeconfig (set KUBECONFIG or --kubeconfig)';
  return kc;
}

/** Decodes a fetched routing ConfigMap into its table; `getShard` fetches a shard ConfigMap (undefined: absent). */
async function tableFromConfigMap(
  cm: ConfigMapLike,
  where: string,
  getShard: (name: string) => Promise<ConfigMapLike | undefined>,
): Promise<{ ok: true; table: RoutingTable; revision: string } | { ok: false; error: string }> {
  const idx = decodeIndex(cm);
  if (!idx.ok) return { ok: false, error: `ConfigMap ${where}: ${idx.error}` };
  let json: string;
  if (idx.format === 'inline') json = idx.json;
  else {
    const shards = new Map<string, ConfigMapLike>();
    for (const ref of idx.index.shards) {
      const s = await getShard(ref.name);
      if (s !== undefined) shards.set(ref.name, s);
    }
    const joined = assembleShards(idx.index, shards);
    if (!joined.ok)
      return {
        ok: false,
        error: joined.retry
          ? `ConfigMap ${where}: revision ${idx.revision}: shards missing or being replaced (${joined.missing.join(', ')}); try again`
          : `ConfigMap ${where}: ${joined.error}`,
      };
    json = joined.json;
  }
  const table = parseTableJson(json);
  if (typeof table === 'string')
    return { ok: false, error: `ConfigMap ${where}: revision ${idx.revision}: ${table}` };
  return { ok: true, table, revision: idx.revision };
}

/** Reads the routing table the cluster serves. */
export async function readClusterTable(target: ClusterTarget): Promise<ClusterTable> {
  const kc = loadKubeConfig(target);
  if (typeof kc === 'string') return { ok: false, error: kc };
  const context = kc.getCurrentContext();
  const core = kc.makeApiClient(CoreV1Api);
  const where = `${target.namespace}/${target.name}`;
  const get = async (name: string): Promise<ConfigMapLike | undefined> => {
    try {
      return await core.readNamespacedConfigMap({ namespace: target.namespace, name });
    } catch (err) {
      if (httpCode(err) === 404) return undefined;
      throw err;
    }
  };
  let cm: ConfigMapLike | undefined;
  try {
    cm = await get(target.name);
  } catch (err) {
    return { ok: false, error: `reading ConfigMap ${where} (context ${context}): ${errText(err)}` };
  }
  if (cm === undefined)
    return {
      ok: false,
      error: `ConfigMap ${where} not found (context ${context}): is the mailroute operator installed there? Name another with --configmap NAMESPACE/NAME`,
    };
  try {
    const r = await tableFromConfigMap(cm, where, get);
    return r.ok ? { ...r, context } : r;
  } catch (err) {
    return {
      ok: false,
      error: `reading the shards of ConfigMap ${where} (context ${context}): ${errText(err)}`,
    };
  }
}
