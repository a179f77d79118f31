// The relay's RBAC in cluster mode, in one place: docs/operations.md shows it as a table, the Helm chart should
// mirror it, and test/cluster/relay-rbac.test.ts runs the ConfigMap source, the heartbeat and peer discovery with
// exactly these rules (a ServiceAccount token), so a missing verb fails a test.
import { ROUTING_CONFIGMAP } from '../../contract/routing-configmap.ts';
import { relayLeaseName } from '../../contract/relay-lease.ts';
import { CREDENTIALS_SECRET } from '../../contract/credentials-secret.ts';

interface RelayPolicyRule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
  resourceNames?: string[];
  /** Why (docs only; not part of the Kubernetes object). */
  why: string;
}

export interface RelayRbacOptions {
  /** ServiceAccount, Role and RoleBinding name. Default mailroute-relay. */
  name?: string;
  /** The namespace of the relays, the routing ConfigMap and the heartbeat Leases. */
  namespace: string;
  /** The routing ConfigMap (--configmap NS/NAME). Default mailroute-routing. */
  configMap?: string;
  /**
   * The relay pod names when they are known in advance (a StatefulSet: <sts>-0 .. <sts>-<maxReplicas-1>): narrows
   * get/update/delete of Leases to their heartbeat Leases. Undefined: any Lease in the namespace.
   */
  pods?: string[];
  /** The release's owner ConfigMap (MAILROUTE_OWNER_CONFIGMAP), read by name. Undefined: no such rule. */
  ownerConfigMap?: string;
  /**
   * Read shard ConfigMaps of a sharded table: `get` of any ConfigMap in the namespace, since shard names carry the
   * revision (docs/design.md §8). Default true. false: a table too large to be inline never reaches the relays.
   */
  shards?: boolean;
}

/** Rules of the relay's Role, in its namespace. */
function relayRules(opts: Omit<RelayRbacOptions, 'name' | 'namespace'> = {}): RelayPolicyRule[] {
  const cm = opts.configMap ?? ROUTING_CONFIGMAP;
  const leaseNames = opts.pods?.map(relayLeaseName);
  const rules: RelayPolicyRule[] = [
    {
      apiGroups: [''],
      resources: ['configmaps'],
      verbs: ['get', 'list', 'watch'],
      resourceNames: [cm],
      why: 'the routing table: list + watch with fieldSelector metadata.name',
    },
  ];
  if (opts.ownerConfigMap !== undefined) {
    rules.push({
      apiGroups: [''],
      resources: ['configmaps'],
      verbs: ['get'],
      resourceNames: [opts.ownerConfigMap],
      why: "the release's owner ConfigMap (MAILROUTE_OWNER_CONFIGMAP): its uid for the heartbeat Lease's ownerReferences",
    });
  }
  if (opts.shards !== false) {
    rules.push({
      apiGroups: [''],
      resources: ['configmaps'],
      verbs: ['get'],
      why: `shards of a sharded table (${cm}-<rev8>-<n>), only those its index lists; their names carry the revision, so no resourceNames (this reads any ConfigMap of the namespace by name)`,
    });
  }
  rules.push(
    {
      apiGroups: [''],
      resources: ['secrets'],
      verbs: ['get', 'list', 'watch'],
      resourceNames: [CREDENTIALS_SECRET],
      why: 'server credentials (authSecretRef) the operator collects: list + watch with fieldSelector metadata.name; no other Secret',
    },
    {
      apiGroups: ['coordination.k8s.io'],
      resources: ['leases'],
      verbs: ['create'],
      why: 'heartbeat Lease mailroute-relay-<pod>, first start (create cannot be narrowed by name)',
    },
    {
      apiGroups: ['coordination.k8s.io'],
      resources: ['leases'],
      verbs: ['get', 'update', 'delete'],
      ...(leaseNames ? { resourceNames: leaseNames } : {}),
      why: 'heartbeat: compare-and-swap renew every 10 s, delete on graceful shutdown',
    },
    {
      apiGroups: ['coordination.k8s.io'],
      resources: ['leases'],
      verbs: ['list'],
      why: "drain peers: the other relays' fresh heartbeat Leases (label selector app.kubernetes.io/component=relay)",
    },
  );
  return rules;
}

type K8sObject = Record<string, unknown>;

/** ServiceAccount, Role and RoleBinding granting the relay what cluster mode needs and nothing more. */
export function relayRbacObjects(opts: RelayRbacOptions): K8sObject[] {
  const name = opts.name ?? 'mailroute-relay';
  const rbac = 'rbac.authorization.k8s.io/v1';
  return [
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name, namespace: opts.namespace } },
    {
      apiVersion: rbac,
      kind: 'Role',
      metadata: { name, namespace: opts.namespace },
      rules: relayRules(opts).map((r) => ({
        apiGroups: r.apiGroups,
        resources: r.resources,
        verbs: r.verbs,
        ...(r.resourceNames ? { resourceNames: r.resourceNames } : {}),
      })),
    },
    {
      apiVersion: rbac,
      kind: 'RoleBinding',
      metadata: { name, namespace: opts.namespace },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name },
      subjects: [{ kind: 'ServiceAccount', name, namespace: opts.namespace }],
    },
  ];
}

/** Markdown table of the relay's rules (docs/operations.md). */
export function relayRbacTable(opts: Omit<RelayRbacOptions, 'name' | 'namespace'> = {}): string {
  // markdown: placeholders like <pod> would otherwise read as HTML tags
  const md = (s: string): string => s.replaceAll('<', '&lt;').replaceAll('>', '&gt;');
  const rows = relayRules(opts).map(
    (r) =>
      `| ${r.apiGroups.map((g) => (g === '' ? 'core' : g)).join(', ')} | ${r.resources.join(', ')}${r.resourceNames ? ` (only ${r.resourceNames.join(', ')})` : ''} | ${r.verbs.join(', ')} | ${md(r.why)} |`,
  );
  return ['| API group | resources | verbs | why |', '|---|---|---|---|', ...rows].join('\n');
}
