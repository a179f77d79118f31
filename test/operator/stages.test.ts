// Dated stages on a real kube-apiserver: the operator shows the stage in force and the next transition
// in DeliveryPolicy status and moves them at the stage's end with no change to the object; reverting the manifest
// is a new generation whose rollout the Programmed condition counts relay by relay ("N/M relays programmed").

import { afterAll, beforeAll, expect, it } from 'vitest';
import { createNamespace, describeCluster } from '../controlplane/suite.ts';
import { createKubeRest, type KubeRest } from '../../operator/kube/rest.ts';
import { waitFor } from '../support/wait.ts';
import {
  condition,
  getObject,
  MIGRATION_DOMAIN,
  MIGRATION_POLICY,
  routingRevision,
  SimulatedRelays,
  startOperator,
  type OperatorProcess,
} from './support.ts';

const OP_NS = 'mailroute-system';
const NS = 'stages';

const domain = MIGRATION_DOMAIN;
const plainPolicy = MIGRATION_POLICY;
const stagedPolicy = (until: string) => `apiVersion: mailroute.io/v1alpha1
kind: DeliveryPolicy
metadata: {name: migration}
spec:
  domainRef: {name: example-com}
  mode: Direct
  primary: zoho
  stages:
  - {name: dual, until: "${until}", mode: Dual, primary: legacy, secondary: zoho, dual: {scope: Accounts}, softBounce: true}
`;

interface PolicyStatus {
  observedGeneration?: number;
  mode?: string;
  scope?: string;
  stage?: string;
  softBounce?: boolean;
  nextTransition?: string;
}

describeCluster(
  'dated stages on a real API server',
  (ctx) => {
    let op: OperatorProcess;
    let rest: KubeRest;
    let relays: SimulatedRelays;
    const apply = async (yaml: string): Promise<void> => {
      const r = await ctx.cp.kubectl(['apply', '-n', NS, '-f', '-'], { stdin: yaml });
      if (r.code !== 0) throw new Error(`kubectl apply: ${r.stderr}`);
    };
    const policy = async (): Promise<{ metadata: { generation: number }; status?: PolicyStatus }> =>
      (await getObject(rest, 'DeliveryPolicy', NS, 'migration')) as {
        metadata: { generation: number };
        status?: PolicyStatus;
      };

    beforeAll(async () => {
      await createNamespace(ctx.cp, OP_NS);
      await createNamespace(ctx.cp, NS);
      rest = createKubeRest(ctx.cp.kubeconfig);
      await apply(`${domain}---\n${plainPolicy}`);
      op = startOperator(ctx.cp, { namespace: OP_NS, identity: 'op-stages' });
      relays = new SimulatedRelays(ctx.cp, OP_NS, ['relay-0', 'relay-1']);
      relays.start();
      await waitFor(
        async () => (await condition(rest, 'DeliveryPolicy', NS, 'migration', 'Ready'))?.status === 'True',
        { timeoutMs: 30_000, what: 'the plain policy Ready' },
      );
    });
    afterAll(async () => {
      relays?.stop();
      const code = await op?.stop();
      expect(code, op?.logs()).toBe(0);
    });

    it('status shows the stage in force and the next transition, and moves to final at until by itself', async () => {
      // scope Accounts needs an account source on zoho: verification on zoho, so the stage compiles.
      await apply(`${domain}  recipientVerification: {server: zoho}\n`);
      const until = new Date(Date.now() + 6000).toISOString().replace(/\.\d{3}Z$/, 'Z');
      const untilMs = Date.parse(until);
      await apply(stagedPolicy(until));
      const during = await waitFor(
        async () => {
          const p = await policy();
          return p.status?.stage === 'dual' && p.status.observedGeneration === p.metadata.generation
            ? p
            : undefined;
        },
        { timeoutMs: 20_000, what: 'status.stage dual' },
      );
      if (Date.now() < Date.parse(until)) {
        expect(during.status).toMatchObject({
          mode: 'Dual',
          scope: 'Accounts',
          softBounce: true,
          nextTransition: until,
        });
      }
      // status follows the compile, and the table is applied after it (asynchronously): wait for the table to
      // carry the stage rather than read it once.
      const table = await waitFor(
        async () => {
          const t = JSON.parse((await routingRevision(rest, OP_NS))?.json ?? '{}') as {
            domains?: Record<string, { mode: string; stages?: { name: string; until: string }[] }>;
          };
          return t.domains?.['example.com']?.stages !== undefined ? t : undefined;
        },
        { timeoutMs: 10_000, what: 'the routing table with the dual stage' },
      );
      expect(table.domains?.['example.com']).toMatchObject({
        mode: 'Direct',
        stages: [{ name: 'dual', until }],
      });

      // kubectl get shows the stage; -o wide the next transition
      const get = await ctx.cp.kubectl(['get', 'dp', 'migration', '-n', NS, '-o', 'wide']);
      expect(get.stdout).toMatch(
        /NAME\s+DOMAIN\s+MODE\s+SCOPE\s+STAGE\s+READY\s+AGE\s+PRIMARY\s+SECONDARY\s+MAILDOMAIN\s+NEXT\s+SOFTBOUNCE/,
      );

      // No change to the object: the operator requeues itself at until.
      const after = await waitFor(
        async () => {
          const p = await policy();
          return p.status?.stage === 'final' ? p : undefined;
        },
        { timeoutMs: 20_000, what: 'status.stage final after until' },
      );
      expect(Date.now()).toBeGreaterThanOrEqual(untilMs);
      expect(after.status).toMatchObject({ mode: 'Direct', stage: 'final' });
      expect(after.status?.scope).toBeUndefined();
      expect(after.status?.nextTransition).toBeUndefined();
      expect(after.status?.softBounce).toBeUndefined();
      expect(after.status?.observedGeneration).toBe(after.metadata.generation);
    });

    it('reverting the manifest is a rollout: Programmed counts the relays that route by it, then Ready', async () => {
      const generation = (await policy()).metadata.generation;
      relays.paused = true; // the relays have not picked up the revert yet
      try {
        await apply(plainPolicy);
        const pending = await waitFor(
          async () => {
            const c = await condition(rest, 'DeliveryPolicy', NS, 'migration', 'Programmed');
            return c?.observedGeneration === generation + 1 ? c : undefined;
          },
          { timeoutMs: 20_000, what: 'Programmed for the reverted generation' },
        );
        // both relays are named with the revision they still serve (its first 12 hex digits)
        const old = (pod: string): string => (relays.served.get(pod) ?? '').slice(0, 12);
        expect(pending).toMatchObject({
          status: 'False',
          reason: 'Pending',
          message: `0/2 relays programmed; serving an older revision: relay-0 (${old('relay-0')}), relay-1 (${old('relay-1')})`,
        });
        // Programmed is written from the compile; the table is applied right after it.
        const table = await waitFor(
          async () => {
            const t = JSON.parse((await routingRevision(rest, OP_NS))?.json ?? '{}') as {
              domains?: Record<string, { mode: string; primary: string; stages?: unknown }>;
            };
            return t.domains?.['example.com']?.mode === 'Dual' ? t : undefined;
          },
          { timeoutMs: 10_000, what: 'the reverted routing table' },
        );
        expect(table.domains?.['example.com']).toMatchObject({ mode: 'Dual', primary: 'legacy' });
        expect(table.domains?.['example.com']?.stages).toBeUndefined();
      } finally {
        relays.paused = false;
      }
      const ready = await waitFor(
        async () => {
          const c = await condition(rest, 'DeliveryPolicy', NS, 'migration', 'Ready');
          return c?.status === 'True' && c.observedGeneration === generation + 1 ? c : undefined;
        },
        { timeoutMs: 20_000, what: 'Ready for the reverted generation' },
      );
      expect(ready.message).toBe('2/2 relays programmed');
      const p = await policy();
      expect(p.status).toMatchObject({ mode: 'Dual', scope: 'All' });
      expect(p.status?.stage).toBeUndefined();
      expect(p.status?.nextTransition).toBeUndefined();
      const wait = await ctx.cp.kubectl([
        'wait',
        '-n',
        NS,
        '--for=condition=Ready',
        'dp/migration',
        '--timeout=5s',
      ]);
      expect(wait.code, wait.stderr).toBe(0);
    });
  },
  { crds: true },
);
