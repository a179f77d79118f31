// The operator against a real kube-apiserver: status conditions, rollout counting by relay heartbeat Leases,
// cross-object problems, expiry, and recovery from an API server restart.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createNamespace, describeCluster, REPO_ROOT } from '../controlplane/suite.ts';
import { createKubeRest, type KubeRest } from '../../operator/kube/rest.ts';
import { waitFor } from '../support/wait.ts';
import {
  condition,
  getObject,
  heartbeat,
  routingRevision,
  SimulatedRelays,
  startOperator,
  type OperatorProcess,
} from './support.ts';

const OP_NS = 'mailroute-system';
const NS = 'demo';

describeCluster(
  'operator on a real API server',
  (ctx) => {
    let op: OperatorProcess;
    let rest: KubeRest;
    let relays: SimulatedRelays;
    const apply = async (yaml: string): Promise<void> => {
      const r = await ctx.cp.kubectl(['apply', '-n', NS, '-f', '-'], { stdin: yaml });
      if (r.code !== 0) throw new Error(`kubectl apply: ${r.stderr}`);
    };
    /** `kubectl wait --for=condition=Ready` on `objects` in NS, for up to 20 s. */
    const kubectlWaitReady = (...objects: string[]) =>
      ctx.cp.kubectl(['wait', '-n', NS, '--for=condition=Ready', ...objects, '--timeout=20s']);
    const readyMessage = async (
      kind: 'MailDomain' | 'DeliveryPolicy' | 'TestRecipient',
      name: string,
    ): Promise<string | undefined> => {
      const c = await condition(rest, kind, NS, name, 'Ready');
      return c?.status === 'True' ? c.message : undefined;
    };

    beforeAll(async () => {
      await createNamespace(ctx.cp, OP_NS);
      await createNamespace(ctx.cp, NS);
      rest = createKubeRest(ctx.cp.kubeconfig);
      await apply(readFileSync(join(REPO_ROOT, 'examples/demo/mailroute.yaml'), 'utf8'));
      op = startOperator(ctx.cp, { namespace: OP_NS, identity: 'op-main' });
      relays = new SimulatedRelays(ctx.cp, OP_NS, ['relay-0', 'relay-1']);
    });
    afterAll(async () => {
      relays.stop();
      const code = await op.stop();
      expect(code, op.logs()).toBe(0);
    });

    it('with zero relays: Programmed=False NoRelays "0/0 relays programmed"', async () => {
      const c = await waitFor(
        async () => {
          const c = await condition(rest, 'DeliveryPolicy', NS, 'example-com', 'Programmed');
          return c?.reason === 'NoRelays' ? c : undefined;
        },
        { timeoutMs: 30_000, what: 'Programmed NoRelays' },
      );
      expect(c).toMatchObject({ status: 'False', message: '0/0 relays programmed', observedGeneration: 1 });
      expect(await condition(rest, 'DeliveryPolicy', NS, 'example-com', 'Accepted')).toMatchObject({
        status: 'True',
      });
      const routing = await routingRevision(rest, OP_NS);
      expect(JSON.parse(routing?.json ?? '{}')).toMatchObject({
        kind: 'RoutingTable',
        domains: { 'example.com': { mode: 'Dual' } },
      });
    });

    it('every object reaches Ready with "2/2 relays programmed", and kubectl wait works', async () => {
      relays.start();
      for (const [kind, name] of [
        ['MailDomain', 'example-com'],
        ['DeliveryPolicy', 'example-com'],
      ] as const) {
        // (1/1 can show up on the way, while the second relay's Lease is being created)
        await waitFor(async () => (await readyMessage(kind, name)) === '2/2 relays programmed', {
          timeoutMs: 20_000,
          what: `${kind} Ready 2/2`,
        });
      }
      const w = await kubectlWaitReady('deliverypolicy/example-com', 'maildomain/example-com');
      expect(w.code, w.stderr).toBe(0);
      expect(w.stdout).toContain('condition met');
      const get = await ctx.cp.kubectl(['get', 'dp', '-n', NS]);
      // DOMAIN is the domain (status.domain, written by the operator), not the MailDomain's name
      expect(get.stdout).toMatch(/example-com\s+example\.com\s+Dual\s+All\s+True/);
    });

    it('a changed policy becomes Programmed on both relays at its new generation; a lagging relay shows 1/2 and is named', async () => {
      relays.paused = true;
      try {
        const before = (await routingRevision(rest, OP_NS))?.revision;
        await apply(`apiVersion: mailroute.io/v1alpha1
kind: DeliveryPolicy
metadata: {name: example-com}
spec: {domainRef: {name: example-com}, mode: Direct, primary: old}
`);
        const rev = await waitFor(
          async () => {
            const r = await routingRevision(rest, OP_NS);
            return r !== undefined && r.revision !== before ? r.revision : undefined;
          },
          { timeoutMs: 20_000, what: 'a new routing revision' },
        );
        await heartbeat(rest, OP_NS, 'relay-0', rev);
        const pending = await waitFor(
          async () => {
            const c = await condition(rest, 'DeliveryPolicy', NS, 'example-com', 'Programmed');
            return c?.observedGeneration === 2 && c.message.startsWith('1/2 ') ? c : undefined;
          },
          { timeoutMs: 20_000, what: 'Programmed 1/2 at generation 2' },
        );
        // relay-1's Lease is fresh but still names the revision before the change: the message says which relay
        // and what it serves (the first 12 hex digits of its revision), not only the count.
        const lagging = relays.served.get('relay-1');
        expect(lagging).toBe(before);
        expect(pending).toMatchObject({
          status: 'False',
          reason: 'Pending',
          message: `1/2 relays programmed; serving an older revision: relay-1 (${String(before).slice(0, 12)})`,
        });
      } finally {
        relays.paused = false; // a failure above must not leave the relays paused for the tests after it
      }
      await waitFor(
        async () => {
          const c = await condition(rest, 'DeliveryPolicy', NS, 'example-com', 'Ready');
          return c?.status === 'True' && c.observedGeneration === 2 && c.message === '2/2 relays programmed';
        },
        { timeoutMs: 20_000, what: 'Ready 2/2 at generation 2' },
      );
      // the MailDomain did not change: it stayed programmed on both relays through the rollout
      expect(await readyMessage('MailDomain', 'example-com')).toBe('2/2 relays programmed');
    });

    it('an object re-created with another spec (kubectl replace --force) is Programmed only where relays route by the new one', async () => {
      // Deleted and created again, the object starts at generation 1 again: a relay still serving the table of the
      // one it replaced (also generation 1) does not route by it. Before, the name and generation alone counted it.
      const tester = (address: string) => `apiVersion: mailroute.io/v1alpha1
kind: TestRecipient
metadata: {name: carol}
spec: {policyRef: {name: example-com}, address: ${address}}
`;
      const carolReady = async (): Promise<boolean> =>
        (await condition(rest, 'TestRecipient', NS, 'carol', 'Ready'))?.message === '2/2 relays programmed';
      await apply(tester('carol@example.com'));
      await waitFor(carolReady, { timeoutMs: 20_000, what: 'carol Ready on both relays' });
      const first = await getObject(rest, 'TestRecipient', NS, 'carol');
      relays.paused = true;
      try {
        const before = (await routingRevision(rest, OP_NS))?.revision;
        const r = await ctx.cp.kubectl(['replace', '--force', '-n', NS, '-f', '-'], {
          stdin: tester('carol.test@example.com'),
        });
        expect(r.code, r.stderr).toBe(0);
        const rev = await waitFor(
          async () => {
            const x = await routingRevision(rest, OP_NS);
            return x !== undefined && x.revision !== before && x.json.includes('carol.test@example.com')
              ? x.revision
              : undefined;
          },
          { timeoutMs: 20_000, what: 'the revision with the new address' },
        );
        const second = await getObject(rest, 'TestRecipient', NS, 'carol');
        expect(second?.metadata.uid).not.toBe(first?.metadata.uid);
        expect(second?.metadata.generation).toBe(1);
        const old = relays.served.get('relay-1');
        await heartbeat(rest, OP_NS, 'relay-0', rev); // relay-1 still routes by the old object
        const pending = await waitFor(
          async () => {
            const c = await condition(rest, 'TestRecipient', NS, 'carol', 'Programmed');
            return c?.message.startsWith('1/2') === true ? c : undefined;
          },
          { timeoutMs: 20_000, what: 'the new carol Programmed 1/2' },
        );
        expect(pending).toMatchObject({
          status: 'False',
          reason: 'Pending',
          message: `1/2 relays programmed; serving an older revision: relay-1 (${String(old).slice(0, 12)})`,
        });
      } finally {
        relays.paused = false; // a failure above must not leave the relays paused for the tests after it
      }
      await waitFor(carolReady, { timeoutMs: 20_000, what: 'the new carol Ready on both relays' });
      const d = await ctx.cp.kubectl(['delete', '-n', NS, 'testrecipient/carol']);
      expect(d.code, d.stderr).toBe(0);
    });

    it('a dangling policyRef gives ResolvedRefs=False; a second policy for one domain gives Accepted=False Conflict', async () => {
      await apply(`apiVersion: mailroute.io/v1alpha1
kind: TestRecipient
metadata: {name: dangling}
spec: {policyRef: {name: no-such-policy}, address: alice@example.com}
---
apiVersion: mailroute.io/v1alpha1
kind: DeliveryPolicy
metadata: {name: example-com-second}
spec: {domainRef: {name: example-com}, mode: Direct, primary: new}
`);
      const refs = await waitFor(() => condition(rest, 'TestRecipient', NS, 'dangling', 'ResolvedRefs'), {
        timeoutMs: 20_000,
        what: 'ResolvedRefs on dangling',
      });
      expect(refs).toMatchObject({ status: 'False', reason: 'PolicyNotFound' });
      expect(refs.message).toContain('spec.policyRef');
      const ready = await condition(rest, 'TestRecipient', NS, 'dangling', 'Ready');
      expect(ready).toMatchObject({ status: 'False', reason: 'PolicyNotFound' });
      const acc = await waitFor(
        () => condition(rest, 'DeliveryPolicy', NS, 'example-com-second', 'Accepted'),
        { timeoutMs: 20_000, what: 'Accepted on the second policy' },
      );
      expect(acc).toMatchObject({ status: 'False', reason: 'Conflict' });
      // the older policy keeps working
      // (the conflict changes the table; the relays need a moment to serve the new revision)
      await waitFor(
        async () => (await readyMessage('DeliveryPolicy', 'example-com')) === '2/2 relays programmed',
        {
          timeoutMs: 20_000,
          what: 'the older policy Ready 2/2',
        },
      );
      const ev = await ctx.cp.kubectl([
        'get',
        'events',
        '-n',
        NS,
        '--field-selector',
        'involvedObject.name=example-com-second',
        '-o',
        'jsonpath={.items[*].reason}',
      ]);
      expect(ev.stdout).toContain('Conflict');
    });

    it('expiry flips Active to False at expiresAt', async () => {
      await apply(`apiVersion: mailroute.io/v1alpha1
kind: DeliveryPolicy
metadata: {name: example-com}
spec: {domainRef: {name: example-com}, mode: Dual, primary: old, secondary: new, dual: {scope: TestRecipients}}
`);
      const expiresAt = new Date(Date.now() + 4000).toISOString().replace(/\.\d{3}Z$/, 'Z');
      await apply(`apiVersion: mailroute.io/v1alpha1
kind: TestRecipient
metadata: {name: alice}
spec: {policyRef: {name: example-com}, address: alice@example.com, expiresAt: "${expiresAt}"}
`);
      const active = await waitFor(() => condition(rest, 'TestRecipient', NS, 'alice', 'Active'), {
        timeoutMs: 20_000,
        what: 'Active',
      });
      expect(active).toMatchObject({ status: 'True', reason: 'Active' });
      const expired = await waitFor(
        async () => {
          const c = await condition(rest, 'TestRecipient', NS, 'alice', 'Active');
          return c?.status === 'False' ? c : undefined;
        },
        { timeoutMs: 20_000, what: 'Active=False after expiresAt' },
      );
      expect(expired.reason).toBe('Expired');
      expect(Date.now()).toBeGreaterThanOrEqual(Date.parse(expiresAt));
    });

    it('a TestRecipient expiring 60 days out leaves the operator idle (no 1 ms requeue storm)', async () => {
      // Node's setTimeout holds at most 2^31-1 ms (24.8 days); a longer requeueAfter used to fire after 1 ms.
      const port = /"http":\{"host":"[^"]+","port":(\d+)\}/.exec(op.logs())?.[1];
      expect(port, op.logs().slice(0, 2000)).toBeDefined();
      const reconciles = async (): Promise<number> => {
        const text = await (await fetch(`http://127.0.0.1:${port ?? ''}/metrics`)).text();
        let n = 0;
        for (const m of text.matchAll(
          /^controller_runtime_reconcile_total\{controller="testrecipient",[^}]*\} (\d+)$/gm,
        ))
          n += Number(m[1]);
        return n;
      };
      const expiresAt = new Date(Date.now() + 60 * 86_400_000).toISOString().replace(/\.\d{3}Z$/, 'Z');
      await apply(`apiVersion: mailroute.io/v1alpha1
kind: TestRecipient
metadata: {name: bob}
spec: {policyRef: {name: example-com}, address: bob@example.com, expiresAt: "${expiresAt}"}
`);
      await waitFor(
        async () => (await condition(rest, 'TestRecipient', NS, 'bob', 'Ready'))?.status === 'True',
        { timeoutMs: 20_000, what: 'TestRecipient bob Ready' },
      );
      const before = await reconciles();
      // An observation window, not a synchronization: the old code reconciled ~400 times a second here.
      await new Promise((r) => setTimeout(r, 3000));
      const during = (await reconciles()) - before;
      expect(during, 'testrecipient reconciles in 3 s').toBeLessThan(10);
      expect(await condition(rest, 'TestRecipient', NS, 'bob', 'Active')).toMatchObject({ status: 'True' });
      expect(op.logs()).not.toContain('TimeoutOverflowWarning');
    });

    it('recovers by itself from an API server restart: a change after it still reconciles', async () => {
      await ctx.cp.restartApiServer();
      await apply(`apiVersion: mailroute.io/v1alpha1
kind: DeliveryPolicy
metadata: {name: example-com}
spec: {domainRef: {name: example-com}, mode: Split, primary: old, secondary: new, split: {unknownRecipients: Secondary}}
---
apiVersion: mailroute.io/v1alpha1
kind: MailDomain
metadata: {name: example-com}
spec:
  domain: example.com
  servers:
  - {name: old, host: 127.0.0.1, port: 2601, tls: None}
  - {name: new, host: 127.0.0.1, port: 2602, tls: None}
  recipientVerification: {server: old, cacheTTL: 1h}
`);
      const gen = (await getObject(rest, 'DeliveryPolicy', NS, 'example-com'))?.metadata.generation;
      await waitFor(
        async () => {
          const c = await condition(rest, 'DeliveryPolicy', NS, 'example-com', 'Ready');
          return c?.status === 'True' && c.observedGeneration === gen;
        },
        { timeoutMs: 60_000, what: `Ready at generation ${String(gen)} after the restart` },
      );
      const table = JSON.parse((await routingRevision(rest, OP_NS))?.json ?? '{}') as {
        domains: Record<string, { mode?: string }>;
      };
      expect(table.domains['example.com']?.mode).toBe('Split');
      expect(op.proc.exitCode).toBeNull();
    });

    it('serves controller-runtime style metrics', async () => {
      const m = /"http":\{"host":"([^"]+)","port":(\d+)\}/.exec(op.logs());
      expect(m, op.logs().slice(0, 2000)).not.toBeNull();
      const text = await (await fetch(`http://127.0.0.1:${m?.[2] ?? ''}/metrics`)).text();
      for (const name of [
        'controller_runtime_reconcile_total{controller="routing",result="requeue_after"}',
        'controller_runtime_reconcile_time_seconds_bucket',
        'workqueue_depth{name="deliverypolicy"',
        'workqueue_adds_total',
        'workqueue_queue_duration_seconds_bucket',
        'workqueue_work_duration_seconds_bucket',
        'workqueue_retries_total',
        'leader_election_master_status{name="mailroute-operator"} 1',
        'mailroute_operator_routing_revision_info{revision="',
      ]) {
        expect(text).toContain(name);
      }
      const ready = await fetch(`http://127.0.0.1:${m?.[2] ?? ''}/readyz`);
      expect(ready.status).toBe(200);
    });

    it('a MailDomain no policy routes is not Ready (NoPolicy); a new policy gets a single event, for its first Ready', async () => {
      const events = async (kind: string, name: string): Promise<string[]> => {
        const r = await ctx.cp.kubectl(['get', 'events', '-n', NS, '-o', 'json']);
        const items = (
          JSON.parse(r.stdout) as {
            items: {
              involvedObject: { kind: string; name: string };
              type: string;
              reason: string;
              message: string;
              firstTimestamp?: string;
              eventTime?: string;
              metadata: { creationTimestamp: string };
            }[];
          }
        ).items.filter((e) => e.involvedObject.kind === kind && e.involvedObject.name === name);
        items.sort((x, y) => (x.metadata.creationTimestamp < y.metadata.creationTimestamp ? -1 : 1));
        return items.map((e) => `${e.type} ${e.reason} ${e.message}`);
      };
      await apply(`apiVersion: mailroute.io/v1alpha1
kind: MailDomain
metadata: {name: lonely}
spec:
  domain: lonely.example
  servers: [{name: only, host: 127.0.0.1, port: 2603, tls: None}]
`);
      const nopolicy = await waitFor(
        async () => {
          const c = await condition(rest, 'MailDomain', NS, 'lonely', 'Programmed');
          return c?.reason === 'NoPolicy' ? c : undefined;
        },
        { timeoutMs: 20_000, what: 'MailDomain lonely Programmed NoPolicy' },
      );
      expect(nopolicy).toMatchObject({
        status: 'False',
        message: 'no accepted DeliveryPolicy routes lonely.example: mail for it is deferred (451 4.3.5)',
      });
      expect(await condition(rest, 'MailDomain', NS, 'lonely', 'Ready')).toMatchObject({
        status: 'False',
        reason: 'NoPolicy',
      });
      await apply(`apiVersion: mailroute.io/v1alpha1
kind: DeliveryPolicy
metadata: {name: lonely}
spec: {domainRef: {name: lonely}, mode: Direct, primary: only}
`);
      for (const kind of ['MailDomain', 'DeliveryPolicy'] as const)
        await waitFor(async () => (await readyMessage(kind, 'lonely')) === '2/2 relays programmed', {
          timeoutMs: 20_000,
          what: `${kind} lonely Ready 2/2`,
        });
      const dp = await waitFor(
        async () => {
          const e = await events('DeliveryPolicy', 'lonely');
          return e.length > 0 ? e : undefined;
        },
        { timeoutMs: 10_000, what: 'the new policy’s event' },
      );
      expect(dp).toEqual(['Normal Ready Ready=True: 2/2 relays programmed']);
      const md = await waitFor(
        async () => {
          const e = await events('MailDomain', 'lonely');
          return e.length >= 2 ? e : undefined;
        },
        { timeoutMs: 10_000, what: 'the MailDomain’s events' },
      );
      expect(md).toEqual([
        'Warning NoPolicy Ready=False: Programmed: no accepted DeliveryPolicy routes lonely.example: mail for it is deferred (451 4.3.5)',
        'Normal Ready Ready=True: 2/2 relays programmed',
      ]);
    });

    it('with a relay StatefulSet of 2 replicas, Programmed waits for both and names the one that has not reported', async () => {
      // The object alone (no kubelet runs its pods): its desired replicas are the relays meant to exist.
      const sts = `apiVersion: apps/v1
kind: StatefulSet
metadata: {name: mailroute-relay}
spec:
  replicas: 2
  serviceName: mailroute-relay-peers
  selector: {matchLabels: {app: relay}}
  template:
    metadata: {labels: {app: relay}}
    spec: {containers: [{name: relay, image: mailroute:test}]}
`;
      const r = await ctx.cp.kubectl(['apply', '-n', OP_NS, '-f', '-'], { stdin: sts });
      expect(r.code, r.stderr).toBe(0);
      const programmed = (want: (m: string, status: string) => boolean, what: string) =>
        waitFor(
          async () => {
            const c = await condition(rest, 'DeliveryPolicy', NS, 'example-com', 'Programmed');
            return c !== undefined && want(c.message, c.status) ? c : undefined;
          },
          { timeoutMs: 30_000, what },
        );
      // relay-0 and relay-1 (the simulated relays so far) are not pods of the StatefulSet: they are not counted.
      const none = await programmed(
        (m) => m.startsWith('0/2 relays programmed'),
        'Programmed 0/2 against the StatefulSet',
      );
      expect(none).toMatchObject({
        status: 'False',
        reason: 'Pending',
        message: '0/2 relays programmed; mailroute-relay-0, mailroute-relay-1 have not reported',
      });
      const first = new SimulatedRelays(ctx.cp, OP_NS, ['mailroute-relay-0']);
      first.start();
      try {
        const one = await programmed((m) => m.startsWith('1/2'), 'Programmed 1/2 with one pod reporting');
        expect(one).toMatchObject({
          status: 'False',
          reason: 'Pending',
          message: '1/2 relays programmed; mailroute-relay-1 has not reported',
        });
        const ready = await condition(rest, 'DeliveryPolicy', NS, 'example-com', 'Ready');
        expect(ready?.status).toBe('False');
        const second = new SimulatedRelays(ctx.cp, OP_NS, ['mailroute-relay-1']);
        second.start();
        try {
          const both = await programmed(
            (_m, st) => st === 'True',
            'Programmed True with both pods reporting',
          );
          expect(both.message).toBe('2/2 relays programmed');
          const w = await kubectlWaitReady('deliverypolicy/example-com');
          expect(w.code, w.stderr).toBe(0);
        } finally {
          second.stop();
        }
      } finally {
        first.stop();
      }
    });
  },
  { crds: true },
);
