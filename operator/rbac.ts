// The operator's RBAC, in one place: docs/operations.md shows it as a table and as YAML, the Helm chart should
// mirror it, and test/operator/rbac.test.ts runs the operator with exactly these rules (a ServiceAccount token),
// so a missing verb fails a test instead of a production rollout.
import { CREDENTIALS_SECRET } from '../contract/credentials-secret.ts';

export interface PolicyRule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
  resourceNames?: string[];
  /** Why (shown in docs/operations.md; not part of the Kubernetes object). */
  why: string;
}

export interface RbacOptions {
  /** Name of the ServiceAccount, ClusterRole, Role and bindings. */
  name?: string;
  /** The operator's namespace (--namespace). */
  namespace: string;
  /** The leader election Lease (--lease-name). */
  leaseName?: string;
  /** --secret-namespaces; empty: Secrets readable cluster-wide. */
  secretNamespaces?: string[];
}

/** Cluster-wide: the mailroute.io objects in every namespace, their status, Events on them. */
const CLUSTER_RULES: readonly PolicyRule[] = [
  {
    apiGroups: ['mailroute.io'],
    resources: ['maildomains', 'deliverypolicies', 'testrecipients'],
    verbs: ['get', 'list', 'watch'],
    why: 'informers: compile every object',
  },
  {
    apiGroups: ['mailroute.io'],
    resources: ['domainclaims'],
    verbs: ['get', 'list', 'watch'],
    why: 'informer: the cluster-scoped domain grants (which namespace may route which domain)',
  },
  {
    apiGroups: ['mailroute.io'],
    resources: ['maildomains/status', 'deliverypolicies/status', 'testrecipients/status'],
    verbs: ['patch'],
    why: 'status conditions (server-side apply on the status subresource)',
  },
  {
    apiGroups: [''],
    resources: ['events'],
    verbs: ['create'],
    why: 'core/v1 Events on condition transitions',
  },
];

/** Secrets: cluster-wide, or (with --secret-namespaces) one RoleBinding per namespace to this ClusterRole. */
const SECRET_RULES: readonly PolicyRule[] = [
  {
    apiGroups: [''],
    resources: ['secrets'],
    verbs: ['list', 'watch'],
    why: 'the Secret informer, label selector mailroute.io/smtp-auth=true: does each authSecretRef Secret exist and opt in; read username/password for mailroute-credentials (RBAC cannot restrict by label)',
  },
];

/** In the operator's own namespace. */
export function namespaceRules(leaseName = 'mailroute-operator'): PolicyRule[] {
  return [
    {
      apiGroups: [''],
      resources: ['configmaps'],
      verbs: ['get', 'list', 'create', 'patch', 'delete'],
      why: 'mailroute-routing and its shards: server-side apply (create+patch), drift check (get), shard GC (list+delete); the owner ConfigMap of --owner-configmap (get: its uid)',
    },
    {
      apiGroups: [''],
      resources: ['secrets'],
      verbs: ['create'],
      why: `${CREDENTIALS_SECRET}: the first server-side apply creates it (Kubernetes cannot narrow create by resourceNames, so this allows creating any Secret in the operator namespace)`,
    },
    {
      apiGroups: [''],
      resources: ['secrets'],
      verbs: ['get', 'patch'],
      resourceNames: [CREDENTIALS_SECRET],
      why: `${CREDENTIALS_SECRET}: server-side apply (patch), drift check (get)`,
    },
    {
      apiGroups: ['coordination.k8s.io'],
      resources: ['leases'],
      verbs: ['list', 'watch'],
      why: 'relay heartbeat Leases mailroute-relay-*',
    },
    {
      apiGroups: ['apps'],
      resources: ['statefulsets'],
      verbs: ['get', 'list', 'watch'],
      why: 'the relay StatefulSet (--relay-statefulset): its desired replicas are the M of "N/M relays programmed"',
    },
    {
      apiGroups: ['coordination.k8s.io'],
      resources: ['leases'],
      verbs: ['create'],
      why: 'leader election: create the Lease the first time',
    },
    {
      apiGroups: ['coordination.k8s.io'],
      resources: ['leases'],
      verbs: ['get', 'update'],
      resourceNames: [leaseName],
      why: 'leader election: compare-and-swap renew (PUT with resourceVersion)',
    },
  ];
}

type K8sObject = Record<string, unknown>;

const strip = (rules: readonly PolicyRule[]): K8sObject[] =>
  rules.map((r) => ({
    apiGroups: r.apiGroups,
    resources: r.resources,
    verbs: r.verbs,
    ...(r.resourceNames ? { resourceNames: r.resourceNames } : {}),
  }));

/** The Kubernetes objects (ServiceAccount excluded) that grant the operator what it needs and nothing more. */
export function operatorRbacObjects(opts: RbacOptions): K8sObject[] {
  const name = opts.name ?? 'mailroute-operator';
  const subject = [{ kind: 'ServiceAccount', name, namespace: opts.namespace }];
  const roleRef = (kind: string, n: string): K8sObject => ({
    apiGroup: 'rbac.authorization.k8s.io',
    kind,
    name: n,
  });
  const rbac = 'rbac.authorization.k8s.io/v1';
  const objs: K8sObject[] = [
    { apiVersion: rbac, kind: 'ClusterRole', metadata: { name }, rules: strip(CLUSTER_RULES) },
    {
      apiVersion: rbac,
      kind: 'ClusterRoleBinding',
      metadata: { name },
      roleRef: roleRef('ClusterRole', name),
      subjects: subject,
    },
    {
      apiVersion: rbac,
      kind: 'ClusterRole',
      metadata: { name: `${name}-secrets` },
      rules: strip(SECRET_RULES),
    },
    {
      apiVersion: rbac,
      kind: 'Role',
      metadata: { name, namespace: opts.namespace },
      rules: strip(namespaceRules(opts.leaseName)),
    },
    {
      apiVersion: rbac,
      kind: 'RoleBinding',
      metadata: { name, namespace: opts.namespace },
      roleRef: roleRef('Role', name),
      subjects: subject,
    },
  ];
  const secretNs = opts.secretNamespaces ?? [];
  if (secretNs.length === 0) {
    objs.push({
      apiVersion: rbac,
      kind: 'ClusterRoleBinding',
      metadata: { name: `${name}-secrets` },
      roleRef: roleRef('ClusterRole', `${name}-secrets`),
      subjects: subject,
    });
  } else {
    for (const ns of secretNs) {
      objs.push({
        apiVersion: rbac,
        kind: 'RoleBinding',
        metadata: { name: `${name}-secrets`, namespace: ns },
        roleRef: roleRef('ClusterRole', `${name}-secrets`),
        subjects: subject,
      });
    }
  }
  return objs;
}

/** Markdown table of every rule (docs/operations.md). */
export function rbacTable(leaseName = 'mailroute-operator'): string {
  const row = (scope: string, r: PolicyRule): string =>
    `| ${scope} | ${r.apiGroups.map((g) => (g === '' ? 'core' : g)).join(', ')} | ${r.resources.join(', ')}${r.resourceNames ? ` (only ${r.resourceNames.join(', ')})` : ''} | ${r.verbs.join(', ')} | ${r.why} |`;
  return [
    '| scope | API group | resources | verbs | why |',
    '|---|---|---|---|---|',
    ...CLUSTER_RULES.map((r) => row('cluster', r)),
    ...SECRET_RULES.map((r) => row('cluster, or each --secret-namespaces namespace', r)),
    ...namespaceRules(leaseName).map((r) => row('operator namespace', r)),
  ].join('\n');
}
