// Idle watches on a real kube-apiserver: the relay's ConfigMap and Secret watches and an operator informer stay on
// one open watch each through a quiet spell longer than client-node's 30 s watch timeout (which tore every idle
// watch down), and the server's own close (timeoutSeconds) is followed by a re-watch, never a list. Lists and
// watches are counted by the API server: its audit log (per namespace) and its apiserver_request_total metric.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { CoordinationV1Api, CoreV1Api, type V1Lease } from '@kubernetes/client-node';
import { describeCluster } from '../controlplane/suite.ts';
import { auditFlags, auditOf, readAudit, type AuditEvent } from '../controlplane/audit.ts';
import { waitFor } from '../support/wait.ts';
import { tableFor } from './tables.ts';
import { encodeRouting, ROUTING_CONFIGMAP } from '../../contract/routing-configmap.ts';
import { CREDENTIALS_SECRET, type Credentials } from '../../contract/credentials-secret.ts';
import { makeWatchInformer, type WatchTimingOptions } from '../../lib/kube-watch.ts';
import { InformerSupervisor } from '../../operator/kube/supervisor.ts';
import { configMapApi, startConfigMapSource } from '../../relay/sources/configmap.ts';
import { credentialsApi, startCredentialsWatch } from '../../relay/sources/credentials.ts';

const IDLE = 'idle-watch';
const CLOSING = 'closing-watch';
const RESOURCES = ['configmaps', 'secrets', 'leases'] as const;
type Resource = (typeof RESOURCES)[number];

const auditDir = mkdtempSync(join(tmpdir(), 'mailroute-audit-'));
afterAll(() => rmSync(auditDir, { recursive: true, force: true }));

const b64 = (s: string): string => Buffer.from(s).toString('base64');

describeCluster(
  'idle watches (relay sources, operator informer)',
  (ctx) => {
    const stops: Array<() => Promise<void> | void> = [];
    afterAll(async () => {
      for (const s of stops) await s();
    });

    /** The three objects watched: the routing ConfigMap, the credentials Secret, a relay heartbeat Lease. */
    const seed = async (ns: string): Promise<void> => {
      const core = ctx.cp.kubeconfig.makeApiClient(CoreV1Api);
      const t = tableFor(`${ns}-0`);
      await core.createNamespacedConfigMap({
        namespace: ns,
        body: encodeRouting(t.json, t.revision, { namespace: ns }).index,
      });
      await core.createNamespacedSecret({
        namespace: ns,
        body: {
          metadata: { name: CREDENTIALS_SECRET },
          data: { 'mail.a.username': b64('u'), 'mail.a.password': b64('p0') },
        },
      });
      await ctx.cp.kubeconfig.makeApiClient(CoordinationV1Api).createNamespacedLease({
        namespace: ns,
        body: { metadata: { name: 'relay-0' }, spec: { holderIdentity: 'relay-0' } },
      });
    };

    /** Changes each object once: what a watch that is still alive must deliver. */
    const touch = async (ns: string, tag: string): Promise<string> => {
      const core = ctx.cp.kubeconfig.makeApiClient(CoreV1Api);
      const t = tableFor(`${ns}-${tag}`);
      await core.replaceNamespacedConfigMap({
        namespace: ns,
        name: ROUTING_CONFIGMAP,
        body: encodeRouting(t.json, t.revision, { namespace: ns }).index,
      });
      await core.patchNamespacedSecret({
        namespace: ns,
        name: CREDENTIALS_SECRET,
        body: [{ op: 'replace', path: '/data/mail.a.password', value: b64(tag) }],
      });
      await ctx.cp.kubeconfig.makeApiClient(CoordinationV1Api).patchNamespacedLease({
        namespace: ns,
        name: 'relay-0',
        body: [{ op: 'replace', path: '/spec/holderIdentity', value: tag }],
      });
      return t.revision;
    };

    /** The relay's two sources and the operator's Lease informer (as operator/manager.ts wires it). */
    const startWatchers = async (ns: string, timing: WatchTimingOptions) => {
      const kc = ctx.cp.kubeconfig;
      const warnings: string[] = [];
      const warn = (o: object, msg?: string): void => {
        warnings.push(`${msg ?? ''} ${JSON.stringify(o)}`);
      };
      const logger = { info: () => undefined, debug: () => undefined, warn, error: warn };
      const revisions: string[] = [];
      const src = startConfigMapSource({
        namespace: ns,
        name: ROUTING_CONFIGMAP,
        api: configMapApi(kc, timing),
        onTable: (_t, revision) => revisions.push(revision),
        logger,
      });
      const credentials: ReadonlyMap<string, Credentials>[] = [];
      const creds = startCredentialsWatch({
        namespace: ns,
        name: CREDENTIALS_SECRET,
        api: credentialsApi(kc, timing),
        onCredentials: (m) => credentials.push(m),
        logger,
      });
      const coord = kc.makeApiClient(CoordinationV1Api);
      const leaseEvents: string[] = [];
      const leases = new InformerSupervisor<V1Lease>({
        name: 'Lease',
        make: () =>
          makeWatchInformer<V1Lease>(
            kc,
            `/apis/coordination.k8s.io/v1/namespaces/${ns}/leases`,
            () => coord.listNamespacedLease({ namespace: ns }),
            undefined,
            timing,
          ),
        onEvent: (type, l) => leaseEvents.push(`${type} ${l.spec?.holderIdentity ?? ''}`),
        onResync: () => undefined,
        logger,
      });
      stops.push(
        () => src.stop(),
        () => creds.stop(),
        () => leases.stop(),
      );
      await src.start();
      await creds.start();
      await leases.start();
      return { src, revisions, credentials, leases, leaseEvents, warnings };
    };

    /** What the API server logged for `ns`: lists, watches opened, watches ended, per resource. */
    const seen = (ns: string, resource: Resource) => {
      const events = readAudit(auditDir);
      const q = { resource, namespace: ns };
      return {
        lists: auditOf(events, { ...q, verb: 'list', stage: 'ResponseComplete' }),
        watches: auditOf(events, { ...q, verb: 'watch', stage: 'ResponseStarted' }),
        closes: auditOf(events, { ...q, verb: 'watch', stage: 'ResponseComplete' }),
      };
    };
    const counts = (ns: string) =>
      Object.fromEntries(
        RESOURCES.map((r) => {
          const s = seen(ns, r);
          return [r, { lists: s.lists.length, watches: s.watches.length, closes: s.closes.length }];
        }),
      );

    /** apiserver_request_total{verb="LIST",resource=R} summed over codes and scopes: the server's own count. */
    const serverLists = async (): Promise<Record<Resource, number>> => {
      const r = await ctx.cp.kubectl(['get', '--raw', '/metrics']);
      expect(r.code, r.stderr).toBe(0);
      const out = { configmaps: 0, secrets: 0, leases: 0 };
      for (const line of r.stdout.split('\n')) {
        if (!line.startsWith('apiserver_request_total{') || !line.includes('verb="LIST"')) continue;
        const res = /resource="([^"]+)"/.exec(line)?.[1];
        if (res === 'configmaps' || res === 'secrets' || res === 'leases')
          out[res] += Number(line.slice(line.lastIndexOf(' ') + 1));
      }
      return out;
    };

    const query = (e: AuditEvent): URLSearchParams => new URL(e.requestURI, 'https://x').searchParams;

    it("holds idle watches past client-node's 30 s timeout: one list and one open watch per object, no error (40 s)", async () => {
      await seed(IDLE);
      const w = await startWatchers(IDLE, {});
      await waitFor(() => RESOURCES.every((r) => seen(IDLE, r).watches.length === 1), {
        what: 'one watch open per object',
      });
      const before = await serverLists();

      // The point of this test is a duration: the watches stay idle past client-node's 30 s watch timeout, which
      // tore them down (and made the relay re-list) every ~30 s on a real cluster. Bounded: 40 s.
      await new Promise((r) => setTimeout(r, 40_000));

      const after = await serverLists();
      const one = { lists: 1, watches: 1, closes: 0 };
      expect(counts(IDLE)).toEqual({ configmaps: one, secrets: one, leases: one });
      expect(after).toEqual(before); // no list of any of the three resources, anywhere, while idle
      expect(w.warnings).toEqual([]);
      expect(w.leases.health().restarts).toBe(0);
      expect(w.src.status().watching).toBe(true);
      for (const r of RESOURCES) {
        const q = query(seen(IDLE, r).watches[0]!);
        expect(q.get('allowWatchBookmarks')).toBe('true');
        const timeout = Number(q.get('timeoutSeconds'));
        expect(timeout).toBeGreaterThanOrEqual(300);
        expect(timeout).toBeLessThan(600);
      }

      // The same watches, still open, deliver a change of each object.
      const revision = await touch(IDLE, 'after-idle');
      await waitFor(() => w.revisions.includes(revision), { what: 'the new routing revision' });
      await waitFor(() => w.credentials.at(-1)?.get('mail/a')?.password === 'after-idle', {
        what: 'the new password',
      });
      await waitFor(() => w.leaseEvents.includes('update after-idle'), { what: 'the Lease update' });
      const moved = { lists: 1, watches: 1, closes: 0 };
      expect(counts(IDLE)).toEqual({ configmaps: moved, secrets: moved, leases: moved });
    }, 90_000);

    it('re-watches from the last resourceVersion when the server ends a watch (timeoutSeconds), with no list', async () => {
      await seed(CLOSING);
      // Watches of 2-3 s instead of 5-10 min: the same code, a shorter server-side duration.
      const w = await startWatchers(CLOSING, { minTimeoutSeconds: 2 });
      await waitFor(() => RESOURCES.every((r) => seen(CLOSING, r).closes.length >= 3), {
        timeoutMs: 45_000,
        what: 'three server-side closes per watch',
      });
      const revision = await touch(CLOSING, 'after-closes');
      await waitFor(() => w.revisions.includes(revision), { what: 'the new routing revision' });
      await waitFor(() => w.credentials.at(-1)?.get('mail/a')?.password === 'after-closes', {
        what: 'the new password',
      });
      await waitFor(() => w.leaseEvents.includes('update after-closes'), { what: 'the Lease update' });

      const gaps: number[] = [];
      for (const r of RESOURCES) {
        const s = seen(CLOSING, r);
        expect(s.lists, `${r}: lists`).toHaveLength(1);
        expect(s.closes.every((c) => c.responseStatus?.code === 200)).toBe(true);
        for (const watch of s.watches) {
          const q = query(watch);
          expect(q.get('resourceVersion'), `${r}: ${watch.requestURI}`).toMatch(/^\d+$/);
          expect(['2', '3']).toContain(q.get('timeoutSeconds'));
        }
        // From each close to the next watch. client-node's informer alone waits 1 s, 2 s, 4 s ... before
        // re-watching after closes without an event in between; a watch the server ended on time is replaced at once.
        const starts = s.watches.map((e) => Date.parse(e.requestReceivedTimestamp)).sort((a, b) => a - b);
        const ends = s.closes.map((e) => Date.parse(e.stageTimestamp)).sort((a, b) => a - b);
        ends.forEach((end, i) => {
          const next = starts[i + 1];
          if (next !== undefined) gaps.push(next - end);
        });
      }
      console.log(
        `[idle-watch] server close -> re-watch: max ${Math.max(...gaps)} ms, median ${[...gaps].sort((a, b) => a - b)[Math.floor(gaps.length / 2)]} ms (n=${gaps.length})`,
      );
      expect(Math.max(...gaps)).toBeLessThan(1000);
      expect(w.warnings).toEqual([]);
      expect(w.leases.health().restarts).toBe(0);
    }, 90_000);
  },
  { crds: false, namespaces: [IDLE, CLOSING], apiServerFlags: auditFlags(auditDir, [IDLE, CLOSING]) },
);
