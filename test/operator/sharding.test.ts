// Big routing tables are sharded (gzip'd binaryData ConfigMaps + an index); relays assemble a revision only when all
// of its shards are there; shards of revisions no relay serves any more are garbage-collected.
// The thresholds are lowered by flags so a few dozen TestRecipients exercise the same code as 100,000. A shard of the
// current revision that someone deletes is written again by the next resync (--routing-resync, shortened here).

import { createHash } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createNamespace, describeCluster } from '../controlplane/suite.ts';
import { createKubeRest, type KubeRest } from '../../operator/kube/rest.ts';
import {
  INDEX_KEY,
  REVISION_ANNOTATION,
  ROUTING_JSON_KEY,
  SHARD_LABEL,
  type ConfigMapLike,
} from '../../contract/routing-configmap.ts';
import { relayLeaseName } from '../../contract/relay-lease.ts';
import { waitFor } from '../support/wait.ts';
import { tempDir, type RelayChild } from '../relay/relay-harness.ts';
import {
  condition,
  routingRevision,
  SimulatedRelays,
  spawnTestRelay,
  startOperator,
  type OperatorProcess,
} from './support.ts';

const OP_NS = 'mailroute-system';
const NS = 'big';

const objects = (recipients: number, primary: string): string =>
  [
    `apiVersion: mailroute.io/v1alpha1
kind: MailDomain
metadata: {name: big}
spec:
  domain: big.example
  servers: [{name: a, host: 127.0.0.1, port: 2601, tls: None}, {name: b, host: 127.0.0.1, port: 2602, tls: None}]`,
    `apiVersion: mailroute.io/v1alpha1
kind: DeliveryPolicy
metadata: {name: big}
spec: {domainRef: {name: big}, mode: Dual, primary: ${primary}, secondary: ${primary === 'a' ? 'b' : 'a'}, dual: {scope: TestRecipients}}`,
    // forwardTo: 64 octets of local part (the most an address may have), incompressible, to make the table large
    ...Array.from(
      { length: recipients },
      (_, i) => `apiVersion: mailroute.io/v1alpha1
kind: TestRecipient
metadata: {name: user-${i}}
spec: {policyRef: {name: big}, address: user-${i}@big.example, forwardTo: u${createHash('sha256').update(String(i)).digest('hex').slice(0, 63)}@copy.big.example}`,
    ),
  ].join('\n---\n');

describeCluster('routing ConfigMap sharding', (ctx) => {
  let op: OperatorProcess;
  let rest: KubeRest;
  let relays: SimulatedRelays;
  let relay: RelayChild | undefined;
  let dir = '';
  const shardNames = async (): Promise<string[]> => {
    const r = await rest.request<{ items: ConfigMapLike[] }>(
      'GET',
      `/api/v1/namespaces/${OP_NS}/configmaps`,
      { query: { labelSelector: `${SHARD_LABEL}=true` } },
    );
    if (!r.ok) throw new Error(r.message);
    return r.body.items.map((i) => i.metadata?.name ?? '').sort();
  };
  const configMap = async (name: string): Promise<ConfigMapLike | undefined> => {
    const r = await rest.request<ConfigMapLike>('GET', `/api/v1/namespaces/${OP_NS}/configmaps/${name}`);
    return r.ok ? r.body : undefined;
  };
  const index = (): Promise<ConfigMapLike | undefined> => configMap('mailroute-routing');
  const apply = async (yaml: string): Promise<void> => {
    const r = await ctx.cp.kubectl(['apply', '-n', NS, '-f', '-'], { stdin: yaml });
    if (r.code !== 0) throw new Error(r.stderr);
  };

  beforeAll(async () => {
    await createNamespace(ctx.cp, OP_NS);
    await createNamespace(ctx.cp, NS);
    rest = createKubeRest(ctx.cp.kubeconfig);
    await apply(objects(80, 'a'));
    op = startOperator(ctx.cp, {
      namespace: OP_NS,
      identity: 'op-shard',
      args: ['--inline-max-bytes', '4000', '--shard-max-bytes', '1024', '--routing-resync', '2s'],
    });
    relays = new SimulatedRelays(ctx.cp, OP_NS, ['r0', 'r1']);
    relays.start();
  });
  afterAll(async () => {
    relays.stop();
    if (relay !== undefined && relay.proc.exitCode === null) {
      relay.kill('SIGTERM');
      await relay.exited;
    }
    await op.stop();
    if (dir !== '') await rm(dir, { recursive: true, force: true });
  });

  it('writes shards and an index, and relays assembling them make every object Ready', async () => {
    await waitFor(
      async () =>
        (await condition(rest, 'DeliveryPolicy', NS, 'big', 'Ready'))?.message === '2/2 relays programmed',
      {
        timeoutMs: 30_000,
        what: 'policy Ready 2/2',
      },
    );
    const cm = await index();
    expect(cm?.data?.[ROUTING_JSON_KEY]).toBeUndefined();
    const idx = JSON.parse(cm?.data?.[INDEX_KEY] ?? '{}') as { shards: { name: string }[]; revision: string };
    expect(idx.shards.length).toBeGreaterThan(1);
    expect(await shardNames()).toEqual(idx.shards.map((s) => s.name).sort());
    const table = JSON.parse((await routingRevision(rest, OP_NS))?.json ?? '{}') as {
      domains: Record<string, { testRecipients: object }>;
    };
    expect(Object.keys(table.domains['big.example']?.testRecipients ?? {})).toHaveLength(80);
    await waitFor(
      async () => (await condition(rest, 'TestRecipient', NS, 'user-79', 'Ready'))?.status === 'True',
      { timeoutMs: 30_000, what: 'recipient Ready' },
    );
  });

  it('writes again a shard of the current revision that someone deleted; a relay started then loads the table', async () => {
    const idx = JSON.parse((await index())?.data?.[INDEX_KEY] ?? '{}') as {
      shards: { name: string }[];
      revision: string;
    };
    const victim = idx.shards[1]?.name ?? '';
    const written = await configMap(victim);
    expect(written?.metadata?.annotations?.[REVISION_ANNOTATION]).toBe(idx.revision);
    // a manual clean-up, or an older operator's garbage collection during a hand-over
    const del = await ctx.cp.kubectl(['delete', 'configmap', '-n', OP_NS, victim]);
    expect(del.code, del.stderr).toBe(0);
    const back = await waitFor(() => configMap(victim), {
      timeoutMs: 15_000,
      intervalMs: 100,
      what: `shard ${victim} written again by the resync`,
    }).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}\noperator log:\n${op.logs().slice(-3000)}`);
    });
    expect(back.binaryData).toEqual(written?.binaryData);
    expect(back.metadata?.annotations?.[REVISION_ANNOTATION]).toBe(idx.revision);
    expect(op.logs()).toContain('shards of the routing table missing or changed');
    expect(await shardNames()).toEqual(idx.shards.map((s) => s.name).sort());

    // a relay that starts now assembles the revision and reports it in its heartbeat Lease
    dir = await tempDir('shard-relay');
    relay = await spawnTestRelay(ctx.cp, OP_NS, 'r2', dir);
    const started = relay;
    await waitFor(
      async () => {
        const r = await rest.request<{ metadata?: { annotations?: Record<string, string> } }>(
          'GET',
          `/apis/coordination.k8s.io/v1/namespaces/${OP_NS}/leases/${relayLeaseName('r2')}`,
        );
        return r.ok && r.body.metadata?.annotations?.[REVISION_ANNOTATION] === idx.revision;
      },
      { timeoutMs: 20_000, what: 'the new relay serving the revision' },
    ).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}\nrelay log:\n${started.logs.slice(-30).join('\n')}`);
    });
    // stopped, it deletes its Lease: r0 and r1 are the relays again for the tests below
    relay.kill('SIGTERM');
    await relay.exited;
    relay = undefined;
  });

  it('rolls out a new sharded revision and deletes the old shards once no relay serves them', async () => {
    const before = await shardNames();
    await apply(objects(80, 'b'));
    await waitFor(
      async () => {
        const names = await shardNames();
        return names.length > 0 && names.every((n) => !before.includes(n));
      },
      { timeoutMs: 30_000, what: 'old shards garbage-collected' },
    );
    await waitFor(
      async () => {
        const c = await condition(rest, 'DeliveryPolicy', NS, 'big', 'Ready');
        return c?.observedGeneration === 2 && c.message === '2/2 relays programmed';
      },
      { timeoutMs: 30_000, what: 'generation 2 Ready on 2 relays' },
    );
  });

  it('goes back to inline when the table shrinks, dropping index.json and every shard', async () => {
    const r = await ctx.cp.kubectl(['delete', 'testrecipients', '-n', NS, '--all']);
    expect(r.code, r.stderr).toBe(0);
    await waitFor(async () => (await index())?.data?.[ROUTING_JSON_KEY] !== undefined, {
      timeoutMs: 30_000,
      what: 'inline routing.json',
    });
    expect((await index())?.data?.[INDEX_KEY]).toBeUndefined();
    await waitFor(async () => (await shardNames()).length === 0, {
      timeoutMs: 30_000,
      what: 'all shards deleted after relays moved to the inline revision',
    });
  });
});
