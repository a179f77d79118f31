// The relay heartbeat Lease on a real kube-apiserver: created with the revision, renewed at once on a new revision,
// seen as a peer by another relay, deleted on graceful shutdown.
import { afterAll, expect, it } from 'vitest';
import { CoordinationV1Api, CoreV1Api } from '@kubernetes/client-node';
import { configMapOwner } from '../../contract/owner.ts';
import { describeCluster } from '../controlplane/suite.ts';
import { waitFor } from '../support/wait.ts';
import { readHeartbeat } from '../../contract/relay-lease.ts';
import { createPeerTrust } from '../../relay/inbound/peer-trust.ts';
import { leaseApi, startHeartbeat, type Heartbeat } from '../../relay/cluster/heartbeat.ts';

const NS = 'mailroute-system';
const quiet = { info: () => undefined, warn: () => undefined, debug: () => undefined };

describeCluster(
  'relay heartbeat Lease',
  (ctx) => {
    const beats: Heartbeat[] = [];
    afterAll(async () => {
      for (const b of beats) await b.stop();
    });
    const read = (name: string) =>
      ctx.cp.kubeconfig
        .makeApiClient(CoordinationV1Api)
        .readNamespacedLease({ namespace: NS, name })
        .catch((err: unknown) => {
          if ((err as { code?: number }).code === 404) return undefined;
          throw err;
        });

    it("is owned by the release's owner ConfigMap (MAILROUTE_OWNER_CONFIGMAP), through every renewal", async () => {
      const api = leaseApi(ctx.cp.kubeconfig);
      const cm = await ctx.cp.kubeconfig.makeApiClient(CoreV1Api).createNamespacedConfigMap({
        namespace: NS,
        body: { metadata: { name: 'mailroute-owner' } },
      });
      expect(await api.configMapUid!(NS, 'no-such-owner')).toBeUndefined();
      const uid = await api.configMapUid!(NS, 'mailroute-owner');
      expect(uid).toBe(cm.metadata?.uid);
      const c = startHeartbeat({
        api,
        logger: quiet,
        initial: { pod: 'relay-c', namespace: NS, revision: 'rev1', ready: true, smtp: undefined },
        owners: () => Promise.resolve([configMapOwner('mailroute-owner', uid!)]),
      });
      beats.push(c);
      const want = [{ apiVersion: 'v1', kind: 'ConfigMap', name: 'mailroute-owner', uid }];
      const lease = await waitFor(() => read('mailroute-relay-relay-c'), { what: 'lease created' });
      expect(lease.metadata?.ownerReferences).toEqual(want);
      await c.update({ revision: 'rev2' }); // a replace (PUT) must keep them
      const renewed = await read('mailroute-relay-relay-c');
      expect(renewed?.metadata?.annotations?.['mailroute.io/revision']).toBe('rev2');
      expect(renewed?.metadata?.ownerReferences).toEqual(want);
      await c.stop({ deleteLease: true });
    });

    it('appears with the revision, follows a new revision within 1 s, lists peers, and is deleted on shutdown', async () => {
      const api = leaseApi(ctx.cp.kubeconfig);
      const a = startHeartbeat({
        api,
        logger: quiet,
        initial: { pod: 'relay-a', namespace: NS, revision: 'rev1', ready: true, smtp: '127.0.0.1:2601' },
      });
      beats.push(a);
      const lease = await waitFor(() => read('mailroute-relay-relay-a'), { what: 'lease created' });
      expect(lease.spec?.holderIdentity).toBe('relay-a');
      expect(lease.spec?.leaseDurationSeconds).toBe(30);
      expect(lease.metadata?.annotations).toMatchObject({
        'mailroute.io/revision': 'rev1',
        'mailroute.io/ready': 'true',
        'mailroute.io/smtp': '127.0.0.1:2601',
      });
      expect(readHeartbeat(lease, new Date()).fresh).toBe(true);

      const t0 = performance.now();
      await a.update({ revision: 'rev2' });
      await waitFor(
        async () =>
          (await read('mailroute-relay-relay-a'))?.metadata?.annotations?.['mailroute.io/revision'] ===
          'rev2',
        {
          timeoutMs: 1000,
          what: 'revision rev2 on the lease',
        },
      );
      console.log(
        `[heartbeat] revision change -> lease annotated: ${(performance.now() - t0).toFixed(1)} ms`,
      );

      const b = startHeartbeat({
        api,
        logger: quiet,
        initial: { pod: 'relay-b', namespace: NS, revision: 'rev2', ready: true, smtp: '127.0.0.1:2602' },
      });
      beats.push(b);
      const peers = await waitFor(async () => ((await b.peers()).length === 1 ? b.peers() : undefined), {
        what: 'peer a seen by b',
      });
      expect(peers).toEqual([{ name: 'mailroute-relay-relay-a', host: '127.0.0.1', port: 2601 }]);
      await a.update({ ready: false });
      expect(await b.peers()).toEqual([]);

      await a.stop({ deleteLease: true });
      expect(await read('mailroute-relay-relay-a')).toBeUndefined();
      await b.stop({ deleteLease: true });
      expect(await read('mailroute-relay-relay-b')).toBeUndefined();
    });

    it('finds a relay whose node clock is 45 s behind as a drain peer and trusts its hand-offs', async () => {
      const api = leaseApi(ctx.cp.kubeconfig);
      const warnings: object[] = [];
      // relay-behind writes every renewTime from a node clock 45 s behind relay-ok's
      const behind = startHeartbeat({
        api,
        logger: quiet,
        renewMs: 1_000,
        now: () => new Date(Date.now() - 45_000),
        initial: {
          pod: 'relay-behind',
          namespace: NS,
          revision: 'rev1',
          ready: true,
          smtp: '127.0.0.1:2611',
        },
      });
      beats.push(behind);
      await waitFor(() => read('mailroute-relay-relay-behind'), { what: 'lease created' });
      const ok = startHeartbeat({
        api,
        logger: { ...quiet, warn: (o: object) => warnings.push(o) },
        initial: { pod: 'relay-ok', namespace: NS, revision: 'rev1', ready: true, smtp: '127.0.0.1:2612' },
      });
      beats.push(ok);
      // at first sight (a drain looks its peers up once) and on every later look, as long as it renews
      expect(await ok.peers()).toEqual([
        { name: 'mailroute-relay-relay-behind', host: '127.0.0.1', port: 2611 },
      ]);
      expect(await ok.relayAddresses()).toEqual(['127.0.0.1']);
      // the hand-off parameters relay-ok honours: from the addresses of the relays' fresh Leases (peer-trust.ts)
      const trust = createPeerTrust({
        hosts: [],
        resolve: () => Promise.resolve([]),
        more: () => ok.relayAddresses(),
      });
      expect(await trust.isPeer('127.0.0.1')).toBe(true);
      const renewed = async (): Promise<string> =>
        String((await read('mailroute-relay-relay-behind'))?.spec?.renewTime);
      const first = await renewed();
      await waitFor(async () => (await renewed()) !== first, { what: 'relay-behind renewed' });
      expect((await ok.peers()).map((p) => p.name)).toEqual(['mailroute-relay-relay-behind']);
      // the skew is logged, naming the Lease: at least 40 s behind (a lower bound: renewed within 1 s of our look)
      const skew = warnings as { lease?: string; skewSeconds?: number }[];
      expect(skew.map((w) => w.lease)).toEqual(['mailroute-relay-relay-behind']);
      expect(skew[0]?.skewSeconds).toBeLessThanOrEqual(-40);
      await behind.stop({ deleteLease: true });
      await ok.stop({ deleteLease: true });
    });
  },
  { crds: false, namespaces: [NS] },
);
