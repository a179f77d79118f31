// The operator runs with exactly the RBAC of operator/rbac.ts (a ServiceAccount token, no system:masters) and still
// does everything: compile, apply (inline and sharded) and garbage-collect the routing ConfigMaps, leader election,
// status, Events, Secret checks.

import { afterAll, beforeAll, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { createNamespace, describeCluster, serviceAccountIdentity } from '../controlplane/suite.ts';
import { createKubeRest, type KubeRest } from '../../operator/kube/rest.ts';
import { operatorRbacObjects } from '../../operator/rbac.ts';
import { waitFor } from '../support/wait.ts';
import { condition, SimulatedRelays, startOperator, type OperatorProcess } from './support.ts';

const OP_NS = 'mailroute-system';
const NS = 'tenant';

describeCluster('operator with least-privilege RBAC', (ctx) => {
  let op: OperatorProcess;
  let rest: KubeRest;
  let relays: SimulatedRelays;
  const apply = async (yaml: string, ns = NS): Promise<void> => {
    const r = await ctx.cp.kubectl(['apply', '-n', ns, '-f', '-'], { stdin: yaml });
    if (r.code !== 0) throw new Error(r.stderr);
  };

  beforeAll(async () => {
    await createNamespace(ctx.cp, OP_NS);
    await createNamespace(ctx.cp, NS);
    rest = createKubeRest(ctx.cp.kubeconfig);
    const objs = [
      {
        apiVersion: 'v1',
        kind: 'ServiceAccount',
        metadata: { name: 'mailroute-operator', namespace: OP_NS },
      },
      ...operatorRbacObjects({ namespace: OP_NS }),
    ];
    await apply(objs.map((o) => stringify(o)).join('---\n'), OP_NS);
    const { kubeconfigPath: kubeconfig } = await serviceAccountIdentity(ctx.cp, OP_NS, 'mailroute-operator');
    await apply(`apiVersion: mailroute.io/v1alpha1
kind: MailDomain
metadata: {name: t}
spec:
  domain: tenant.example
  servers: [{name: a, host: 127.0.0.1, port: 2601, tls: None, allowPlaintextAuth: true, authSecretRef: {name: smtp-auth}}, {name: b, host: 127.0.0.1, port: 2602, tls: None}]
---
apiVersion: mailroute.io/v1alpha1
kind: DeliveryPolicy
metadata: {name: t}
spec: {domainRef: {name: t}, mode: Dual, primary: a, secondary: b}
`);
    op = startOperator(ctx.cp, {
      namespace: OP_NS,
      identity: 'op-sa',
      args: ['--kubeconfig', kubeconfig, '--inline-max-bytes', '600', '--shard-max-bytes', '1024'],
    });
    relays = new SimulatedRelays(ctx.cp, OP_NS, ['r0', 'r1']);
    relays.start();
  });
  afterAll(async () => {
    relays.stop();
    await op.stop();
  });

  it('reaches Ready 2/2 on a sharded table, and reports the missing Secret until it exists', async () => {
    await waitFor(
      async () =>
        (await condition(rest, 'DeliveryPolicy', NS, 't', 'Ready'))?.message === '2/2 relays programmed',
      { timeoutMs: 30_000, what: 'policy Ready 2/2' },
    );
    const refs = await condition(rest, 'MailDomain', NS, 't', 'ResolvedRefs');
    expect(refs).toMatchObject({ status: 'False', reason: 'SecretNotFound' });
    expect(refs?.message).toContain('tenant/smtp-auth');
    await apply(`apiVersion: v1
kind: Secret
metadata: {name: smtp-auth, labels: {mailroute.io/smtp-auth: "true"}}
stringData: {username: u, password: p}
`);
    await waitFor(async () => (await condition(rest, 'MailDomain', NS, 't', 'Ready'))?.status === 'True', {
      timeoutMs: 20_000,
      what: 'MailDomain Ready once the Secret exists',
    });
    // ... and copies it into mailroute-credentials in its own namespace (create, then patch by name).
    await waitFor(
      async () => {
        const r = await rest.request<{ data?: Record<string, string> }>(
          'GET',
          `/api/v1/namespaces/${OP_NS}/secrets/mailroute-credentials`,
        );
        return r.ok && r.body.data?.['tenant.smtp-auth.password'] === Buffer.from('p').toString('base64');
      },
      { timeoutMs: 20_000, what: 'mailroute-credentials written with the ServiceAccount' },
    );
  });

  it('garbage-collects shards and renews its leader Lease without a single Forbidden', async () => {
    await apply(`apiVersion: mailroute.io/v1alpha1
kind: DeliveryPolicy
metadata: {name: t}
spec: {domainRef: {name: t}, mode: Dual, primary: b, secondary: a}
`);
    await waitFor(
      async () => (await condition(rest, 'DeliveryPolicy', NS, 't', 'Ready'))?.observedGeneration === 2,
      { timeoutMs: 20_000, what: 'generation 2 Ready' },
    );
    await waitFor(() => op.logs().includes('deleted routing shard of an old revision'), {
      timeoutMs: 20_000,
      what: 'shard GC',
    });
    expect(op.logs()).not.toMatch(/forbidden/i);
    const lease = await rest.request<{ spec: { holderIdentity?: string } }>(
      'GET',
      `/apis/coordination.k8s.io/v1/namespaces/${OP_NS}/leases/mailroute-operator`,
    );
    expect(lease.ok && lease.body.spec.holderIdentity).toBe('op-sa');
  });
});
