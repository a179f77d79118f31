// `--owner-configmap`: everything the operator creates in its namespace (the routing ConfigMap and its shards, Secret
// mailroute-credentials, the leader Lease) carries an ownerReference to that ConfigMap, which the Helm chart creates,
// so `helm uninstall` lets the garbage collector delete them. The test control plane runs no kube-controller-manager
// (no garbage collector): this checks the references, which is what the collector acts on.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createNamespace, describeCluster } from '../controlplane/suite.ts';
import { createKubeRest, type KubeRest } from '../../operator/kube/rest.ts';
import { CREDENTIALS_SECRET } from '../../contract/credentials-secret.ts';
import { SHARD_LABEL } from '../../contract/routing-configmap.ts';
import { waitFor } from '../support/wait.ts';
import { startOperator, type OperatorProcess } from './support.ts';

const OP_NS = 'mailroute-system';
const NS = 'owned';
const OWNER = 'mailroute-owner';

const manifests = `apiVersion: v1
kind: Secret
metadata: {name: smtp, labels: {mailroute.io/smtp-auth: "true"}}
stringData: {username: u, password: p}
---
apiVersion: mailroute.io/v1alpha1
kind: MailDomain
metadata: {name: owned}
spec:
  domain: owned.example
  servers:
    - {name: a, host: 127.0.0.1, port: 2601, tls: None, allowPlaintextAuth: true, authSecretRef: {name: smtp}}
    - {name: b, host: 127.0.0.1, port: 2602, tls: None}
---
apiVersion: mailroute.io/v1alpha1
kind: DeliveryPolicy
metadata: {name: owned}
spec: {domainRef: {name: owned}, mode: Dual, primary: a, secondary: b}
`;

interface Meta {
  metadata?: { ownerReferences?: { apiVersion: string; kind: string; name: string; uid: string }[] };
}

describeCluster('operator --owner-configmap: ownerReferences on what it creates', (ctx) => {
  let op: OperatorProcess | undefined;
  let rest: KubeRest;
  let uid = '';
  const get = async (path: string): Promise<Meta | undefined> => {
    const r = await rest.request<Meta>('GET', path);
    return r.ok ? r.body : undefined;
  };

  beforeAll(async () => {
    await createNamespace(ctx.cp, OP_NS);
    await createNamespace(ctx.cp, NS);
    rest = createKubeRest(ctx.cp.kubeconfig);
    const owner = await rest.request<{ metadata: { uid: string } }>(
      'POST',
      `/api/v1/namespaces/${OP_NS}/configmaps`,
      { body: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: OWNER } } },
    );
    if (!owner.ok) throw new Error(owner.message);
    uid = owner.body.metadata.uid;
    const applied = await ctx.cp.kubectl(['apply', '-n', NS, '-f', '-'], { stdin: manifests });
    expect(applied.code, applied.stderr).toBe(0);
  });
  afterAll(async () => {
    await op?.stop();
  });

  it('refuses to start when the owner ConfigMap does not exist, naming the flag', async () => {
    const bad = startOperator(ctx.cp, {
      namespace: OP_NS,
      identity: 'op-no-owner',
      args: ['--owner-configmap', 'no-such-owner', '--leader-elect=false'],
    });
    const code = await bad.exited;
    expect(code, bad.logs()).not.toBe(0);
    expect(bad.logs()).toContain('--owner-configmap mailroute-system/no-such-owner');
  });

  it('sets the reference on the routing ConfigMap, its shards, mailroute-credentials and the leader Lease', async () => {
    op = startOperator(ctx.cp, {
      namespace: OP_NS,
      identity: 'op-owner',
      // a tiny inline limit: the table is sharded, so the shards are checked too
      args: ['--owner-configmap', OWNER, '--inline-max-bytes', '200', '--shard-max-bytes', '1024'],
    });
    const want = [{ apiVersion: 'v1', kind: 'ConfigMap', name: OWNER, uid }];
    const paths = {
      index: `/api/v1/namespaces/${OP_NS}/configmaps/mailroute-routing`,
      credentials: `/api/v1/namespaces/${OP_NS}/secrets/${CREDENTIALS_SECRET}`,
      lease: `/apis/coordination.k8s.io/v1/namespaces/${OP_NS}/leases/mailroute-operator`,
    };
    for (const [what, path] of Object.entries(paths)) {
      await waitFor(async () => (await get(path)) !== undefined, {
        timeoutMs: 30_000,
        what: `${what} (operator log: ${op.logs().slice(-2000)})`,
      });
      expect((await get(path))?.metadata?.ownerReferences, what).toEqual(want);
    }
    const shards = await rest.request<{ items: Meta[] }>('GET', `/api/v1/namespaces/${OP_NS}/configmaps`, {
      query: { labelSelector: `${SHARD_LABEL}=true` },
    });
    if (!shards.ok) throw new Error(shards.message);
    expect(shards.body.items.length).toBeGreaterThan(0);
    for (const s of shards.body.items) expect(s.metadata?.ownerReferences).toEqual(want);
  });
});
