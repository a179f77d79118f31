// The routing table cannot be written (the operator's namespace does not exist yet): every object's status says so
// (Programmed=False ApplyFailed naming the API error), also the objects that were there before the operator started,
// and the statuses go back to normal once the namespace exists and the table is written.

import { afterAll, beforeAll, expect, it } from 'vitest';
import { createNamespace, describeCluster } from '../controlplane/suite.ts';
import { createKubeRest, type KubeRest } from '../../operator/kube/rest.ts';
import { waitFor } from '../support/wait.ts';
import {
  condition,
  routingRevision,
  SimulatedRelays,
  startOperator,
  type Cond,
  type OperatorProcess,
} from './support.ts';

const OP_NS = 'mr-missing';
const NS = 'demo';
const NOT_WRITTEN = `routing table not written: 404 namespaces "${OP_NS}" not found`;

const objects = (name: string): string => `apiVersion: mailroute.io/v1alpha1
kind: MailDomain
metadata: {name: ${name}}
spec:
  domain: ${name}.example
  servers: [{name: a, host: 127.0.0.1, port: 2601, tls: None}]
---
apiVersion: mailroute.io/v1alpha1
kind: DeliveryPolicy
metadata: {name: ${name}}
spec: {domainRef: {name: ${name}}, mode: Direct, primary: a}
`;

describeCluster('operator: a routing table that cannot be written', (ctx) => {
  let op: OperatorProcess | undefined;
  let rest: KubeRest;
  let relays: SimulatedRelays;
  const apply = async (yaml: string): Promise<void> => {
    const r = await ctx.cp.kubectl(['apply', '-n', NS, '-f', '-'], { stdin: yaml });
    if (r.code !== 0) throw new Error(`kubectl apply: ${r.stderr}`);
  };
  const conditionIs = async (
    kind: 'MailDomain' | 'DeliveryPolicy',
    name: string,
    type: string,
    want: Partial<Cond>,
  ): Promise<Cond | undefined> => {
    const c = await condition(rest, kind, NS, name, type);
    return c !== undefined && Object.entries(want).every(([k, v]) => c[k as keyof Cond] === v)
      ? c
      : undefined;
  };

  beforeAll(async () => {
    await createNamespace(ctx.cp, NS);
    rest = createKubeRest(ctx.cp.kubeconfig);
    // there before the operator starts
    await apply(objects('early'));
    // a relay follows mailroute-routing in the operator's namespace (nothing to follow until it exists)
    relays = new SimulatedRelays(ctx.cp, OP_NS, ['r0']);
    relays.start();
  });
  afterAll(async () => {
    relays.stop();
    if (op !== undefined) expect(await op.stop(), op.logs()).toBe(0);
  });

  it('the namespace is missing: every object is Programmed=False ApplyFailed naming the 404; once it exists, Ready', async () => {
    op = startOperator(ctx.cp, {
      namespace: OP_NS,
      identity: 'op-apply-failure',
      args: ['--leader-elect=false', '--relay-statefulset', '', '--preflight-interval', 'off'],
    });
    const failed = { status: 'False', reason: 'ApplyFailed', message: NOT_WRITTEN };
    const notReady = { status: 'False', reason: 'ApplyFailed', message: `Programmed: ${NOT_WRITTEN}` };
    for (const kind of ['MailDomain', 'DeliveryPolicy'] as const) {
      await waitFor(() => conditionIs(kind, 'early', 'Programmed', failed), {
        timeoutMs: 30_000,
        what: `${kind} early (there before the start) Programmed=False ApplyFailed`,
      });
      expect(await conditionIs(kind, 'early', 'Ready', notReady)).toBeDefined();
      expect(await conditionIs(kind, 'early', 'Accepted', { status: 'True' })).toBeDefined();
    }
    // created while the writes fail: the policy first, then its MailDomain (as `kubectl apply -f dir/` may order them)
    await apply(objects('late').split('---\n')[1] ?? '');
    await apply(objects('late').split('---\n')[0] ?? '');
    for (const kind of ['MailDomain', 'DeliveryPolicy'] as const) {
      await waitFor(() => conditionIs(kind, 'late', 'Programmed', failed), {
        timeoutMs: 30_000,
        what: `${kind} late (created while writes fail) Programmed=False ApplyFailed`,
      });
      expect(await conditionIs(kind, 'late', 'ResolvedRefs', { status: 'True' })).toBeDefined();
    }
    expect(await routingRevision(rest, OP_NS)).toBeUndefined();

    // the cause is fixed without any event the operator watches: its retry (at most one resync, 60 s) writes the table
    await createNamespace(ctx.cp, OP_NS);
    const written = await waitFor(() => routingRevision(rest, OP_NS), {
      timeoutMs: 75_000,
      intervalMs: 250,
      what: 'the routing ConfigMap, after the namespace was created',
    });
    expect(JSON.parse(written.json)).toMatchObject({
      domains: { 'early.example': { mode: 'Direct' }, 'late.example': { mode: 'Direct' } },
    });
    // the relay serves it, and every status is as usual
    for (const name of ['early', 'late'])
      for (const kind of ['MailDomain', 'DeliveryPolicy'] as const)
        await waitFor(
          () =>
            conditionIs(kind, name, 'Ready', {
              status: 'True',
              reason: 'Ready',
              message: '1/1 relays programmed',
            }),
          { timeoutMs: 30_000, what: `${kind} ${name} Ready 1/1 after the table was written` },
        );
    expect(await conditionIs('DeliveryPolicy', 'early', 'Programmed', { status: 'True' })).toBeDefined();
  }, 240_000);
});
