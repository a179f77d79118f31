// The relay's cluster mode with exactly the RBAC of relay/cluster/rbac.ts (a ServiceAccount token, not
// system:masters): the ConfigMap source (inline and sharded), the heartbeat Lease and peer discovery all work, and
// what the rules leave out is refused.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { stringify } from 'yaml';
import {
  CoordinationV1Api,
  CoreV1Api,
  KubeConfig,
  PatchStrategy,
  setHeaderOptions,
} from '@kubernetes/client-node';
import { describeCluster, serviceAccountIdentity } from '../controlplane/suite.ts';
import { waitFor } from '../support/wait.ts';
import { encodeRouting, type ConfigMapLike } from '../../contract/routing-configmap.ts';
import { configMapApi, startConfigMapSource, type ConfigMapSource } from '../../relay/sources/configmap.ts';
import { leaseApi, startHeartbeat } from '../../relay/cluster/heartbeat.ts';
import { relayRbacObjects } from '../../relay/cluster/rbac.ts';
import { credentialsApi, startCredentialsWatch } from '../../relay/sources/credentials.ts';
import type { Credentials } from '../../contract/credentials-secret.ts';
import { tableFor } from './tables.ts';

const NS = 'mailroute-system';
const quiet = { info: () => undefined, warn: () => undefined, debug: () => undefined };

describeCluster(
  'relay with least-privilege RBAC',
  (ctx) => {
    let sa: KubeConfig;
    const sources: ConfigMapSource[] = [];
    afterAll(() => sources.forEach((s) => s.stop()));

    const upsert = async (cm: ConfigMapLike): Promise<void> => {
      const core = ctx.cp.kubeconfig.makeApiClient(CoreV1Api);
      const name = cm.metadata?.name ?? '';
      try {
        const cur = await core.readNamespacedConfigMap({ namespace: NS, name });
        await core.replaceNamespacedConfigMap({
          namespace: NS,
          name,
          body: { ...cm, metadata: { ...cm.metadata, resourceVersion: cur.metadata?.resourceVersion } },
        });
      } catch (err) {
        if ((err as { code?: number }).code !== 404) throw err;
        await core.createNamespacedConfigMap({ namespace: NS, body: cm });
      }
    };

    beforeAll(async () => {
      const objs = relayRbacObjects({ namespace: NS, pods: ['relay-0', 'relay-1'] });
      const r = await ctx.cp.kubectl(['apply', '-n', NS, '-f', '-'], {
        stdin: objs.map((o) => stringify(o)).join('---\n'),
      });
      expect(r.code, r.stderr).toBe(0);
      sa = new KubeConfig();
      sa.loadFromFile((await serviceAccountIdentity(ctx.cp, NS, 'mailroute-relay')).kubeconfigPath);
    });

    it('watches the routing ConfigMap (inline, then sharded) with the relay ServiceAccount', async () => {
      const a = tableFor('rbac-a');
      await upsert(encodeRouting(a.json, a.revision, { namespace: NS }).index);
      const src = startConfigMapSource({
        namespace: NS,
        name: 'mailroute-routing',
        api: configMapApi(sa),
        onTable: () => undefined,
        logger: quiet,
      });
      sources.push(src);
      expect(await src.start()).toMatchObject({ revision: a.revision, from: 'api', apiReachable: true });
      await waitFor(() => src.status().watching, { what: 'watch allowed' });

      const big = tableFor('rbac-big', 300);
      const enc = encodeRouting(big.json, big.revision, {
        namespace: NS,
        inlineMaxBytes: 1024,
        shardMaxBytes: 2048,
      });
      for (const s of enc.shards) await upsert(s);
      await upsert(enc.index);
      await waitFor(() => src.status().revision === big.revision, {
        timeoutMs: 5000,
        what: 'sharded revision via the ServiceAccount',
      });

      // Not granted: listing every ConfigMap of the namespace.
      const err = await sa
        .makeApiClient(CoreV1Api)
        .listNamespacedConfigMap({ namespace: NS })
        .then(() => undefined, (e: unknown) => e as { code?: number }); // prettier-ignore
      expect(err?.code).toBe(403);
    });

    it('watches mailroute-credentials by name, and may read no other Secret', async () => {
      const core = ctx.cp.kubeconfig.makeApiClient(CoreV1Api);
      const b64 = (v: string): string => Buffer.from(v).toString('base64');
      await core.createNamespacedSecret({
        namespace: NS,
        body: {
          metadata: { name: 'mailroute-credentials' },
          data: { 'mail.a.username': b64('u'), 'mail.a.password': b64('p1') },
        },
      });
      await core.createNamespacedSecret({
        namespace: NS,
        body: { metadata: { name: 'other' }, data: { password: b64('x') } },
      });
      let seen: ReadonlyMap<string, Credentials> = new Map();
      const w = startCredentialsWatch({
        namespace: NS,
        name: 'mailroute-credentials',
        api: credentialsApi(sa),
        onCredentials: (m) => (seen = new Map(m)),
        logger: quiet,
      });
      try {
        await w.start();
        expect(seen.get('mail/a')).toEqual({ username: 'u', password: 'p1' });
        await core.patchNamespacedSecret(
          {
            namespace: NS,
            name: 'mailroute-credentials',
            body: [{ op: 'replace', path: '/data/mail.a.password', value: b64('p2') }],
          },
          setHeaderOptions('Content-Type', PatchStrategy.JsonPatch),
        );
        await waitFor(() => seen.get('mail/a')?.password === 'p2', {
          timeoutMs: 5000,
          what: 'watched update',
        });
      } finally {
        w.stop();
      }
      const saCore = sa.makeApiClient(CoreV1Api);
      // One request at a time (a second promise created up front would reject before anyone awaits it).
      const denied = [
        () => saCore.readNamespacedSecret({ namespace: NS, name: 'other' }),
        () => saCore.listNamespacedSecret({ namespace: NS }),
      ];
      for (const call of denied) {
        const err = await call().then(() => undefined, (e: unknown) => e as { code?: number }); // prettier-ignore
        expect(err?.code).toBe(403);
      }
    });

    it('keeps its heartbeat Lease, sees peers, and may not touch other Leases', async () => {
      const api = leaseApi(sa);
      const r0 = startHeartbeat({
        api,
        logger: quiet,
        initial: { pod: 'relay-0', namespace: NS, revision: 'x', ready: true, smtp: '127.0.0.1:1' },
      });
      const r1 = startHeartbeat({
        api,
        logger: quiet,
        initial: { pod: 'relay-1', namespace: NS, revision: 'x', ready: true, smtp: '127.0.0.1:2' },
      });
      await r0.update({ revision: 'y' });
      await r1.update({});
      expect(r0.lastRenewed()).toBeInstanceOf(Date);
      expect(r1.lastRenewed()).toBeInstanceOf(Date);
      expect(await r0.peers()).toEqual([{ name: 'mailroute-relay-relay-1', host: '127.0.0.1', port: 2 }]);

      // The operator's leader Lease (created by an admin) is out of reach: get/update narrowed to heartbeat Leases.
      const admin = ctx.cp.kubeconfig.makeApiClient(CoordinationV1Api);
      await admin.createNamespacedLease({
        namespace: NS,
        body: { metadata: { name: 'mailroute-operator' }, spec: { holderIdentity: 'op' } },
      });
      const denied = await sa
        .makeApiClient(CoordinationV1Api)
        .readNamespacedLease({ namespace: NS, name: 'mailroute-operator' })
        .then(() => undefined, (e: unknown) => e as { code?: number }); // prettier-ignore
      expect(denied?.code).toBe(403);

      await r0.stop({ deleteLease: true });
      await r1.stop({ deleteLease: true });
      const left = await admin.listNamespacedLease({ namespace: NS });
      expect(left.items.map((l) => l.metadata?.name)).toEqual(['mailroute-operator']);
    });
  },
  { crds: false, namespaces: [NS] },
);
