// Parity on a real kube-apiserver: the operator sums the parity reports of the relays' heartbeat
// Leases (annotation mailroute.io/parity) into DeliveryPolicy and TestRecipient status.parity, and kubectl get
// testrecipients shows COPIES and LAG. A Lease that goes stale stops counting.

import { afterAll, beforeAll, expect, it } from 'vitest';
import { createNamespace, describeCluster } from '../controlplane/suite.ts';
import { createKubeRest, type KubeRest } from '../../operator/kube/rest.ts';
import {
  emptyCounts,
  encodeParity,
  PARITY_ANNOTATION,
  type ParityCounts,
} from '../../contract/relay-parity.ts';
import { waitFor } from '../support/wait.ts';
import {
  getObject,
  heartbeat,
  MIGRATION_DOMAIN,
  MIGRATION_POLICY,
  routingRevision,
  startOperator,
  type OperatorProcess,
} from './support.ts';

const OP_NS = 'mailroute-system';
const NS = 'parity';

const manifests = `${MIGRATION_DOMAIN}---
${MIGRATION_POLICY}---
apiVersion: mailroute.io/v1alpha1
kind: TestRecipient
metadata: {name: alice}
spec: {policyRef: {name: migration}, address: alice@example.com}
`;

const counts = (over: Partial<ParityCounts>): ParityCounts => ({ ...emptyCounts(), ...over });
/** 19 pairs within 5 s and one within 15 m: p95 is the 5 s bucket. */
const lag = (fast: number, slow: number): number[] => [0, fast, slow, 0, 0, 0, 0, 0, 0, 0];

interface Parity {
  primaryDelivered: number;
  copiesDelivered: number;
  copiesSuppressed: number;
  copiesPending: number;
  lagP95?: string;
}

describeCluster(
  'parity on a real API server',
  (ctx) => {
    let op: OperatorProcess;
    let rest: KubeRest;
    const parityOf = async (
      kind: 'DeliveryPolicy' | 'TestRecipient',
      name: string,
    ): Promise<Parity | undefined> =>
      ((await getObject(rest, kind, NS, name)) as { status?: { parity?: Parity } } | undefined)?.status
        ?.parity;

    beforeAll(async () => {
      await createNamespace(ctx.cp, OP_NS);
      await createNamespace(ctx.cp, NS);
      rest = createKubeRest(ctx.cp.kubeconfig);
      const r = await ctx.cp.kubectl(['apply', '-n', NS, '-f', '-'], { stdin: manifests });
      if (r.code !== 0) throw new Error(`kubectl apply: ${r.stderr}`);
      op = startOperator(ctx.cp, { namespace: OP_NS, identity: 'op-parity' });
    });
    afterAll(async () => {
      const code = await op?.stop();
      expect(code, op?.logs()).toBe(0);
    });

    it('sums the relays into status.parity; kubectl get testrecipients shows COPIES and LAG', async () => {
      const revision = await waitFor(async () => (await routingRevision(rest, OP_NS))?.revision, {
        timeoutMs: 30_000,
        what: 'the routing revision',
      });
      const report = (policy: ParityCounts, alice: ParityCounts) =>
        encodeParity({
          policies: { [`${NS}/migration`]: policy },
          testRecipients: { [`${NS}/alice`]: alice },
          dropped: 0,
        });
      await heartbeat(rest, OP_NS, 'relay-0', revision, new Date(), {
        [PARITY_ANNOTATION]: report(
          counts({ primary: 12, copies: 10, suppressed: { rejected: 1 }, pending: 1, lag: lag(9, 1) }),
          counts({ primary: 3, copies: 3, lag: lag(3, 0) }),
        ),
      });
      await heartbeat(rest, OP_NS, 'relay-1', revision, new Date(), {
        [PARITY_ANNOTATION]: report(
          counts({ primary: 8, copies: 7, suppressed: { expired: 1 }, pending: 0, lag: lag(10, 0) }),
          counts({ primary: 1, copies: 0, pending: 1 }),
        ),
      });
      const policy = await waitFor(
        async () => {
          const p = await parityOf('DeliveryPolicy', 'migration');
          return p?.primaryDelivered === 20 ? p : undefined;
        },
        { timeoutMs: 30_000, what: 'DeliveryPolicy status.parity summed over two relays' },
      );
      expect(policy).toEqual({
        primaryDelivered: 20,
        copiesDelivered: 17,
        copiesSuppressed: 2,
        copiesPending: 1,
        lagP95: '<= 5s', // 19 of 20 pairs within 5 s
      });
      // Each object's status is written on its own: alice's may still hold a sum over relay-0 alone (primary 3)
      // when the policy's already covers both, so wait for her sum over both as well.
      const alice = await waitFor(
        async () => {
          const p = await parityOf('TestRecipient', 'alice');
          return p?.primaryDelivered === 4 ? p : undefined;
        },
        { timeoutMs: 30_000, what: 'TestRecipient status.parity summed over two relays' },
      );
      expect(alice).toEqual({
        primaryDelivered: 4,
        copiesDelivered: 3,
        copiesSuppressed: 0,
        copiesPending: 1,
        lagP95: '<= 5s',
      });

      const get = await ctx.cp.kubectl(['get', 'testrecipients', '-n', NS]);
      expect(get.code, get.stderr).toBe(0);
      const [header = '', row = ''] = get.stdout.trimEnd().split('\n');
      expect(header).toMatch(/^NAME\s+ADDRESS\s+POLICY\s+ACTIVE\s+COPIES\s+LAG\s+READY\s+AGE$/);
      expect(row).toMatch(/^alice\s+alice@example\.com\s+migration\s+True\s+3\s+<= 5s\s/);
    });

    it('a relay whose Lease is stale no longer counts', async () => {
      const revision = (await routingRevision(rest, OP_NS))?.revision;
      // relay-1 renews with a time 10 minutes ago: stale at once
      await heartbeat(rest, OP_NS, 'relay-1', revision, new Date(Date.now() - 600_000), {
        [PARITY_ANNOTATION]: '{"v":1,"policies":{},"testRecipients":{},"dropped":0}',
      });
      const p = await waitFor(
        async () => {
          const x = await parityOf('DeliveryPolicy', 'migration');
          return x?.primaryDelivered === 12 ? x : undefined;
        },
        { timeoutMs: 30_000, what: "status.parity without relay-1's counts" },
      );
      expect(p).toMatchObject({ copiesDelivered: 10, copiesSuppressed: 1, copiesPending: 1 });
    });
  },
  { crds: true },
);
