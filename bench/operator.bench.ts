// Operator benchmark (npm run bench:operator). Two parts, printed as Markdown for docs/benchmarks.md ("Operator"):
//
// 1. Rollout latency on a real kube-apiserver: the operator (child process) and two relays. Each round changes the
//    DeliveryPolicy (a PATCH straight to the API, the moment `kubectl apply` returns) and times until its status says
//    Programmed=True "2/2 relays programmed" at the new generation. Milestones: the operator applied the new routing
//    revision; both relay Leases announce it; the status says so. Relays are real `mailroute relay --configmap`
//    processes; BENCH_SIMULATED_RELAYS=1 uses simulated ones (Lease writers that follow the ConfigMap) instead.
// 2. Reconcile at scale, in process: 1,000 MailDomains + 1,000 DeliveryPolicies + 100,000 TestRecipients from the
//    informer caches (in-memory here) -> compile -> encode (gzip shards) -> server-side apply to the real API server;
//    then the status pass over all 102,000 objects (decision + condition helper; status writes counted, not sent).
//
// 3. Real objects at moderate scale in the API server (default 20 domains x 50 TestRecipients = 1,040 objects):
//    operator start -> every status written; two relays -> every object Ready 2/2; one policy change -> Programmed.
//
// Env: BENCH_ROUNDS (20), BENCH_DOMAINS (1000), BENCH_PER_DOMAIN (100), BENCH_SIMULATED_RELAYS (0),
//      BENCH_CLUSTER_DOMAINS (20, 0 skips part 3), BENCH_CLUSTER_PER_DOMAIN (50).

import { rm } from 'node:fs/promises';
import { cpus, loadavg, totalmem } from 'node:os';
import { startControlPlane } from '../test/controlplane/harness.ts';
import { freePort } from '../test/support/net.ts';
import { applyCrds, createNamespace } from '../test/controlplane/suite.ts';
import {
  condition,
  routingRevision,
  SimulatedRelays,
  spawnClusterRelay,
  startOperator,
} from '../test/operator/support.ts';
import { tempDir, type RelayChild } from '../test/relay/relay-harness.ts';
import { createKubeRest, MERGE_PATCH, type ApiResult, type KubeRest } from '../operator/kube/rest.ts';
import { RoutingController, RoutingState } from '../operator/controllers/routing/controller.ts';
import { ObjectStatusController } from '../operator/controllers/object-status.ts';
import { readHeartbeat, relayLeaseName, type LeaseLike } from '../contract/relay-lease.ts';
import { syntheticObjects } from '../routing/test-fixtures.ts';
import type { MailrouteObject } from '../routing/types.ts';
import { cpuModel } from './machine.ts';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 20);
const DOMAINS = Number(process.env.BENCH_DOMAINS ?? 1000);
const PER_DOMAIN = Number(process.env.BENCH_PER_DOMAIN ?? 100);
const SIMULATED = process.env.BENCH_SIMULATED_RELAYS === '1';
const CLUSTER_DOMAINS = Number(process.env.BENCH_CLUSTER_DOMAINS ?? 20);
const CLUSTER_PER_DOMAIN = Number(process.env.BENCH_CLUSTER_PER_DOMAIN ?? 50);
const OP_NS = 'mailroute-system';
const NS = 'bench';

const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
};
const f0 = (n: number): string => n.toFixed(0);
const log = (s: string): boolean => process.stderr.write(`${s}\n`);

async function poll<T>(f: () => Promise<T | undefined>, timeoutMs: number, what: string): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const cp = await startControlPlane();
const load0 = loadavg()[0] ?? 0;
const out: string[] = [];
try {
  await applyCrds(cp);
  await createNamespace(cp, OP_NS);
  await createNamespace(cp, NS);
  const rest = createKubeRest(cp.kubeconfig);

  // ---------------------------------------------------------------- part 1: rollout latency
  const dest = { old: await freePort(), new: await freePort() }; // nothing listens: no mail is sent here
  const yaml = `apiVersion: mailroute.io/v1alpha1
kind: MailDomain
metadata: {name: example-com}
spec:
  domain: example.com
  servers: [{name: old, host: 127.0.0.1, port: ${dest.old}, tls: None}, {name: new, host: 127.0.0.1, port: ${dest.new}, tls: None}]
---
apiVersion: mailroute.io/v1alpha1
kind: DeliveryPolicy
metadata: {name: example-com}
spec: {domainRef: {name: example-com}, mode: Dual, primary: old, secondary: new}
`;
  const a = await cp.kubectl(['apply', '-n', NS, '-f', '-'], { stdin: yaml });
  if (a.code !== 0) throw new Error(a.stderr);
  const op = startOperator(cp, { namespace: OP_NS, identity: 'bench' });
  await poll(() => routingRevision(rest, OP_NS), 30_000, 'routing ConfigMap');
  const relays: RelayChild[] = [];
  const dirs: string[] = [];
  let simulated: SimulatedRelays | undefined;
  const pods = ['relay-0', 'relay-1'];
  if (SIMULATED) {
    simulated = new SimulatedRelays(cp, OP_NS, pods);
    simulated.start(20);
  } else {
    for (const pod of pods) {
      const dir = await tempDir(`bench-op-${pod}`);
      dirs.push(dir);
      relays.push(
        await spawnClusterRelay({
          kubeconfigPath: cp.kubeconfigPath,
          namespace: OP_NS,
          pod,
          dir,
          hostname: `${pod}.bench`,
        }),
      );
    }
  }
  const dpPath = `/apis/mailroute.io/v1alpha1/namespaces/${NS}/deliverypolicies/example-com`;
  const leaseRevision = async (pod: string): Promise<string | undefined> => {
    const r = await rest.request<LeaseLike>(
      'GET',
      `/apis/coordination.k8s.io/v1/namespaces/${OP_NS}/leases/${relayLeaseName(pod)}`,
    );
    if (!r.ok) return undefined;
    const hb = readHeartbeat(r.body, new Date());
    return hb.fresh ? hb.revision : undefined;
  };
  // warm-up: both relays programmed
  await poll(
    async () =>
      (await condition(rest, 'DeliveryPolicy', NS, 'example-com', 'Programmed'))?.message ===
      '2/2 relays programmed'
        ? true
        : undefined,
    60_000,
    'warm-up 2/2',
  );
  const total: number[] = [];
  const toConfigMap: number[] = [];
  const toLeases: number[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    const before = (await routingRevision(rest, OP_NS))?.revision;
    const body = { spec: { dual: { bounces: i % 2 === 0 ? 'Notify' : 'Suppress' } } };
    const t0 = performance.now();
    const p: ApiResult<{ metadata: { generation: number } }> = await rest.request('PATCH', dpPath, {
      body,
      contentType: MERGE_PATCH,
    });
    if (!p.ok) throw new Error(p.message);
    const gen = p.body.metadata.generation;
    let tCm = NaN;
    let tLeases = NaN;
    let rev: string | undefined;
    await poll(
      async () => {
        if (Number.isNaN(tCm)) {
          const r = await routingRevision(rest, OP_NS);
          if (r !== undefined && r.revision !== before) {
            tCm = performance.now() - t0;
            rev = r.revision;
          }
        }
        if (!Number.isNaN(tCm) && Number.isNaN(tLeases)) {
          const revs = await Promise.all(pods.map(leaseRevision));
          if (revs.every((x) => x === rev)) tLeases = performance.now() - t0;
        }
        const c = await condition(rest, 'DeliveryPolicy', NS, 'example-com', 'Programmed');
        return c?.status === 'True' && c.observedGeneration === gen && c.message === '2/2 relays programmed'
          ? true
          : undefined;
      },
      30_000,
      `round ${i}: Programmed 2/2 at generation ${gen}`,
    );
    const t = performance.now() - t0;
    total.push(t);
    toConfigMap.push(tCm);
    toLeases.push(Number.isNaN(tLeases) ? t : tLeases);
    log(`round ${i}: ${f0(t)} ms (ConfigMap ${f0(tCm)} ms, both Leases ${f0(tLeases)} ms)`);
  }
  simulated?.stop();
  for (const r of relays) {
    r.kill('SIGTERM');
    await r.exited;
  }
  await op.stop();
  for (const d of dirs) await rm(d, { recursive: true, force: true });

  out.push(
    `#### Rollout: change a DeliveryPolicy -> Programmed "2/2 relays programmed" (${ROUNDS} rounds, ${SIMULATED ? 'simulated relays (Lease writers polling the ConfigMap every 20 ms)' : 'two real `mailroute relay --configmap` processes'})`,
  );
  out.push('');
  out.push('| milestone (ms after the PATCH returned) | p50 | p90 | max |');
  out.push('|---|---:|---:|---:|');
  out.push(
    `| operator applied the new routing revision | ${f0(pct(toConfigMap, 50))} | ${f0(pct(toConfigMap, 90))} | ${f0(Math.max(...toConfigMap))} |`,
  );
  out.push(
    `| both relay Leases announce it | ${f0(pct(toLeases, 50))} | ${f0(pct(toLeases, 90))} | ${f0(Math.max(...toLeases))} |`,
  );
  out.push(
    `| **status Programmed=True 2/2 at the new generation** | **${f0(pct(total, 50))}** | ${f0(pct(total, 90))} | ${f0(Math.max(...total))} |`,
  );
  out.push('');

  // ---------------------------------------------------------------- part 2: reconcile at scale
  let t = performance.now();
  const objects: MailrouteObject[] = syntheticObjects(DOMAINS, PER_DOMAIN);
  log(`built ${objects.length} objects in ${f0(performance.now() - t)} ms`);
  const state = new RoutingState();
  const logger = {
    info: () => undefined,
    warn: (o: object, m: string) => log(`${m} ${JSON.stringify(o)}`),
    error: () => undefined,
  };
  const routing = new RoutingController({
    namespace: OP_NS,
    configMapName: 'mailroute-routing-scale',
    rest,
    logger,
    state,
    objects: () => objects,
    relayRevisions: () => new Set(),
    onCompiled: (_r, changed) => requeued.push(changed.all ? objects.length : changed.keys.size),
  });
  const requeued: number[] = [];
  const timings: { first: NonNullable<RoutingController['lastTimings']>; totalMs: number }[] = [];
  for (let i = 0; i < 6; i++) {
    if (i > 0) {
      // a change: one policy's bounces flip, so every run compiles and applies a new revision
      const dp = objects.find((o) => o.kind === 'DeliveryPolicy');
      if (dp?.kind === 'DeliveryPolicy') {
        dp.metadata.generation = (dp.metadata.generation ?? 1) + 1;
        dp.spec.dual = {
          ...(dp.spec.dual ?? { scope: 'TestRecipients', bounces: 'Suppress' }),
          bounces: i % 2 === 0 ? 'Suppress' : 'Notify',
        };
      }
    }
    routing.markDirty(); // what the manager does on an informer event
    t = performance.now();
    const r = await routing.reconcile();
    if (!r.ok) throw new Error(r.error);
    const totalMs = performance.now() - t;
    if (routing.lastTimings === undefined) throw new Error('no timings');
    timings.push({ first: routing.lastTimings, totalMs });
    log(`reconcile ${i}: ${JSON.stringify(routing.lastTimings)} total ${f0(totalMs)} ms`);
  }
  const last = timings[timings.length - 1];
  if (last === undefined) throw new Error('no runs');
  // status pass over every object (no relays: Programmed False NoRelays); writes counted, not sent
  let writes = 0;
  const fakeRest: KubeRest = {
    request: <T>() => {
      writes++;
      return Promise.resolve({ ok: true, status: 200, body: {} as T });
    },
  };
  const byKind = (kind: MailrouteObject['kind']): Map<string, MailrouteObject> =>
    new Map(
      objects.filter((o) => o.kind === kind).map((o) => [`${o.metadata.namespace}/${o.metadata.name}`, o]),
    );
  const statusPass = async (): Promise<number> => {
    const start = performance.now();
    for (const kind of ['MailDomain', 'DeliveryPolicy', 'TestRecipient'] as const) {
      const cache = byKind(kind);
      const c = new ObjectStatusController<MailrouteObject>({
        kind,
        rest: fakeRest,
        state,
        events: { event: () => Promise.resolve() },
        get: (ns, name) => cache.get(`${ns}/${name}`),
        relays: () => [],
        now: () => new Date(),
      });
      for (const key of cache.keys()) await c.reconcile(key);
    }
    return performance.now() - start;
  };
  writes = 0;
  const firstPass = await statusPass();
  const firstWrites = writes;
  writes = 0;
  const steadyPass = await statusPass();
  const steadyWrites = writes;

  out.push(
    `#### Reconcile at scale: ${DOMAINS.toLocaleString('en')} MailDomains + ${DOMAINS.toLocaleString('en')} DeliveryPolicies + ${(DOMAINS * PER_DOMAIN).toLocaleString('en')} TestRecipients`,
  );
  out.push('');
  out.push('| step | ms |');
  out.push('|---|---:|');
  out.push(`| gather from the caches (last run) | ${f0(last.first.gatherMs)} |`);
  out.push(`| compile (routing core; last run) | ${f0(last.first.compileMs)} |`);
  out.push(
    `| encode: canonical JSON ${(last.first.bytes / 1048576).toFixed(1)} MiB -> gzip -> ${last.first.shards} shard ConfigMaps (last run) | ${f0(last.first.encodeMs)} |`,
  );
  out.push(
    `| server-side apply of ${last.first.shards} shards + the index to kube-apiserver (last run) | ${f0(last.first.applyMs)} |`,
  );
  const after = timings.slice(1).map((x) => x.totalMs);
  out.push(
    `| **routing reconcile, total** (median of ${after.length} runs, each after a one-policy change: ${after.map(f0).join(', ')}) | **${f0(pct(after, 50))}** |`,
  );
  out.push(
    `| status keys the compile requeues after a one-policy change (first compile: all ${objects.length.toLocaleString('en')}) | ${requeued.slice(1).join(', ')} |`,
  );
  out.push(
    `| status pass over ${objects.length.toLocaleString('en')} objects, first (every status written: ${firstWrites.toLocaleString('en')} writes, not sent) | ${f0(firstPass)} |`,
  );
  out.push(`| status pass, steady state (nothing changed: ${steadyWrites} writes) | ${f0(steadyPass)} |`);
  out.push('');

  // ---------------------------------------------------------------- part 3: real objects in the API server
  if (CLUSTER_DOMAINS > 0) {
    const SNS = 'scale';
    await createNamespace(cp, SNS);
    const plural = {
      MailDomain: 'maildomains',
      DeliveryPolicy: 'deliverypolicies',
      TestRecipient: 'testrecipients',
    } as const;
    const real = syntheticObjects(CLUSTER_DOMAINS, CLUSTER_PER_DOMAIN);
    t = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (next < real.length) {
          const o = real[next++] as MailrouteObject;
          const body = {
            apiVersion: 'mailroute.io/v1alpha1',
            kind: o.kind,
            metadata: { name: o.metadata.name, namespace: SNS },
            spec: o.spec,
          };
          const r = await rest.request(
            'POST',
            `/apis/mailroute.io/v1alpha1/namespaces/${SNS}/${plural[o.kind]}`,
            { body },
          );
          if (!r.ok) throw new Error(`create ${o.kind} ${o.metadata.name}: ${r.message}`);
        }
      }),
    );
    const createMs = performance.now() - t;
    log(`created ${real.length} objects in ${f0(createMs)} ms`);
    type Listed = {
      items: {
        metadata: { generation?: number };
        status?: {
          observedGeneration?: number;
          conditions?: { type: string; status: string; message: string }[];
        };
      }[];
    };
    const count = async (pred: (i: Listed['items'][number]) => boolean): Promise<number> => {
      let n = 0;
      for (const kind of ['MailDomain', 'DeliveryPolicy', 'TestRecipient'] as const) {
        const r = await rest.request<Listed>(
          'GET',
          `/apis/mailroute.io/v1alpha1/namespaces/${SNS}/${plural[kind]}`,
          { timeoutMs: 120_000 },
        );
        if (!r.ok) throw new Error(r.message);
        n += r.body.items.filter(pred).length;
      }
      return n;
    };
    const waitAll = async (what: string, pred: (i: Listed['items'][number]) => boolean): Promise<number> => {
      const start = performance.now();
      for (;;) {
        const n = await count(pred);
        log(`${what}: ${n}/${real.length}`);
        if (n === real.length) return performance.now() - start;
        if (performance.now() - start > 1_200_000) throw new Error(`timed out: ${what}`);
        await new Promise((r) => setTimeout(r, 2000));
      }
    };
    const t0 = performance.now();
    const op2 = startOperator(cp, {
      namespace: OP_NS,
      identity: 'bench-scale',
      args: ['--lease-name', 'mailroute-operator-scale'],
    });
    await waitAll('status written', (i) => i.status?.observedGeneration === (i.metadata.generation ?? 1));
    const firstStatusTotal = performance.now() - t0;
    const sim = new SimulatedRelays(cp, OP_NS, ['scale-0', 'scale-1']);
    sim.start(100);
    const allReady = await waitAll(
      'Ready 2/2',
      (i) =>
        i.status?.conditions?.some(
          (c) => c.type === 'Ready' && c.status === 'True' && c.message === '2/2 relays programmed',
        ) === true,
    );
    // one policy change at this scale
    const dpName = real.find((o) => o.kind === 'DeliveryPolicy')?.metadata.name ?? '';
    const tc = performance.now();
    const p = await rest.request<{ metadata: { generation: number } }>(
      'PATCH',
      `/apis/mailroute.io/v1alpha1/namespaces/${SNS}/deliverypolicies/${dpName}`,
      {
        body: { spec: { dual: { bounces: 'Notify' } } },
        contentType: MERGE_PATCH,
      },
    );
    if (!p.ok) throw new Error(p.message);
    await poll(
      async () => {
        const c = await condition(rest, 'DeliveryPolicy', SNS, dpName, 'Programmed');
        return c?.status === 'True' &&
          c.observedGeneration === p.body.metadata.generation &&
          c.message === '2/2 relays programmed'
          ? true
          : undefined;
      },
      300_000,
      'policy change at scale',
    );
    const changeMs = performance.now() - tc;
    sim.stop();
    await op2.stop();
    out.push(
      `#### Real objects in kube-apiserver: ${CLUSTER_DOMAINS.toLocaleString('en')} MailDomains + ${CLUSTER_DOMAINS.toLocaleString('en')} DeliveryPolicies + ${(CLUSTER_DOMAINS * CLUSTER_PER_DOMAIN).toLocaleString('en')} TestRecipients (simulated relays)`,
    );
    out.push('');
    out.push('| step | s |');
    out.push('|---|---:|');
    out.push(
      `| create the ${real.length.toLocaleString('en')} objects (16 concurrent POSTs; not the operator) | ${(createMs / 1000).toFixed(1)} |`,
    );
    out.push(
      `| operator start -> every object has a status (list, compile, apply, ${real.length.toLocaleString('en')} status writes) | ${(firstStatusTotal / 1000).toFixed(1)} (${((real.length / firstStatusTotal) * 1000).toFixed(0)} objects/s) |`,
    );
    out.push(
      `| 2 relays appear -> every object Ready "2/2 relays programmed" (every status rewritten) | ${(allReady / 1000).toFixed(1)} |`,
    );
    out.push(
      `| change one DeliveryPolicy -> Programmed 2/2 at the new generation | ${(changeMs / 1000).toFixed(2)} |`,
    );
    out.push('');
  }
  out.push(
    `Machine: ${cpuModel()}, ${cpus().length} CPUs, ${(totalmem() / 2 ** 30).toFixed(1)} GiB RAM, load average ${load0.toFixed(2)} at start; kube-apiserver ${cp.binaries.dir.split('/').pop() ?? ''} + etcd 3.6 (envtest harness, --unsafe-no-fsync), node ${process.version}. ${new Date().toISOString()}.`,
  );
} finally {
  await cp.stop();
}
process.stdout.write(out.join('\n') + '\n');
