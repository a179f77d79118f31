// The operator's preflight on a real kube-apiserver with the mailroute CRDs: MailDomain status.servers[] and the
// ServersReachable condition, written by server-side apply under the field manager mailroute-preflight, against
// real SMTP peers (plain, and STARTTLS with a self-signed certificate made by openssl).
import { afterAll, beforeAll, expect, it } from 'vitest';
import { CustomObjectsApi, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { describeCluster } from '../controlplane/suite.ts';
import { waitFor } from '../support/wait.ts';
import { startSmtpPeer, type SmtpPeer } from '../support/smtp-peer.ts';
import { makeSelfSigned } from '../support/tls.ts';
import { createSmtpProbe, startPreflight, type PreflightHandle } from '../../operator/preflight/index.ts';
import type { Condition, ServerStatus } from '../../operator/preflight/status.ts';
import { createKubeRest } from '../../operator/kube/rest.ts';
import { createEventRecorder } from '../../operator/kube/ssa.ts';
import { parseOperatorConfig } from '../../operator/config.ts';
import { freePort } from '../support/net.ts';

const NS = 'mail';
const G = { group: 'mailroute.io', version: 'v1alpha1', namespace: NS, plural: 'maildomains' };
const quiet = { info: () => undefined, warn: () => undefined, debug: () => undefined };

interface MdStatus {
  status?: { servers?: ServerStatus[]; conditions?: Condition[] };
  metadata?: { managedFields?: Array<{ manager?: string; subresource?: string }> };
}

describeCluster(
  'operator preflight',
  (ctx) => {
    let plain: SmtpPeer;
    let tls: SmtpPeer;
    const handles: PreflightHandle[] = [];
    beforeAll(async () => {
      plain = await startSmtpPeer('plain');
      tls = await startSmtpPeer('tls', {}, undefined, { tls: makeSelfSigned() });
    });
    afterAll(async () => {
      for (const h of handles) await h.stop();
      await plain.close();
      await tls.close();
    });

    const api = () => ctx.cp.kubeconfig.makeApiClient(CustomObjectsApi);
    const get = async (name: string): Promise<MdStatus> =>
      (await api().getNamespacedCustomObject({ ...G, name })) as MdStatus;
    const server = (s: MdStatus, name: string) => s.status?.servers?.find((x) => x.name === name);
    const cond = (s: MdStatus) => s.status?.conditions?.find((c) => c.type === 'ServersReachable');

    it('reports reachable true/false as a server goes down and up, next to the main controller fields', async () => {
      await api().createNamespacedCustomObject({
        ...G,
        body: {
          apiVersion: 'mailroute.io/v1alpha1',
          kind: 'MailDomain',
          metadata: { name: 'plain-example' },
          spec: {
            domain: 'plain.example',
            servers: [{ name: 'legacy', host: '127.0.0.1', port: plain.port, tls: 'Opportunistic' }],
          },
        },
      });
      // The main controller's condition, written with its own field manager: the preflight must leave it alone.
      await api().patchNamespacedCustomObjectStatus(
        {
          ...G,
          name: 'plain-example',
          fieldManager: 'mailroute-operator',
          force: true,
          body: {
            apiVersion: 'mailroute.io/v1alpha1',
            kind: 'MailDomain',
            metadata: { name: 'plain-example', namespace: NS },
            status: {
              observedGeneration: 1,
              conditions: [
                {
                  type: 'Accepted',
                  status: 'True',
                  reason: 'Accepted',
                  message: 'ok',
                  lastTransitionTime: '2026-01-01T00:00:00Z',
                  observedGeneration: 1,
                },
              ],
            },
          },
        },
        setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply),
      );

      const eventErrors: string[] = [];
      const pf = startPreflight({
        kube: ctx.cp.kubeconfig,
        namespaces: [NS],
        logger: quiet,
        intervalMs: 300,
        scanMs: 100,
        jitter: 0,
        events: createEventRecorder(
          createKubeRest(ctx.cp.kubeconfig),
          'mailroute-operator',
          () => new Date(),
          (e) => eventErrors.push(e),
        ),
      });
      handles.push(pf);
      const up = await waitFor(async () => {
        const s = await get('plain-example');
        return server(s, 'legacy')?.reachable === true ? s : undefined;
      }, { what: 'reachable=true in status' }); // prettier-ignore
      expect(server(up, 'legacy')).toMatchObject({ tls: 'none' });
      expect(server(up, 'legacy')?.lastProbeTime).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
      expect(cond(up)).toMatchObject({ status: 'True', reason: 'AllReachable', observedGeneration: 1 });
      expect(up.status?.conditions?.find((c) => c.type === 'Accepted')).toMatchObject({ status: 'True' });
      expect(
        up.metadata?.managedFields?.some(
          (m) => m.manager === 'mailroute-preflight' && m.subresource === 'status',
        ),
      ).toBe(true);

      await plain.down();
      try {
        const down = await waitFor(async () => {
          const s = await get('plain-example');
          return server(s, 'legacy')?.reachable === false ? s : undefined;
        }, { what: 'reachable=false in status' }); // prettier-ignore
        expect(server(down, 'legacy')?.message).toMatch(/^connect 127\.0\.0\.1:\d+: ECONNREFUSED/);
        expect(cond(down)).toMatchObject({ status: 'False', reason: 'ProbeFailed' });
        expect(down.status?.conditions?.find((c) => c.type === 'Accepted')).toMatchObject({ status: 'True' });
      } finally {
        await plain.up();
      }
      await waitFor(async () => cond(await get('plain-example'))?.status === 'True', {
        what: 'ServersReachable back to True',
      });
      await pf.stop();
      // The failure raised a Warning on the MailDomain (kubectl describe shows it), the recovery a Normal one.
      const events = await waitFor(
        async () => {
          const r = await ctx.cp.kubectl([
            'get',
            'events',
            '-n',
            NS,
            '--field-selector',
            'involvedObject.name=plain-example,involvedObject.kind=MailDomain',
            '-o',
            'jsonpath={range .items[*]}{.type} {.reason}: {.message}{"\\n"}{end}',
          ]);
          return r.stdout.includes('Normal ServersReachable') ? r.stdout : undefined;
        },
        { what: 'the preflight events' },
      );
      expect(events).toMatch(
        /^Warning ServersUnreachable: legacy: unreachable: connect 127\.0\.0\.1:\d+: ECONNREFUSED/m,
      );
      expect(events).toMatch(/^Normal ServersReachable: 1\/1 servers reachable$/m);
      expect(eventErrors).toEqual([]);
    });

    it('reports STARTTLS per TLS mode against a self-signed peer: offered / ok / failed', async () => {
      await api().createNamespacedCustomObject({
        ...G,
        body: {
          apiVersion: 'mailroute.io/v1alpha1',
          kind: 'MailDomain',
          metadata: { name: 'tls-example' },
          spec: {
            domain: 'tls.example',
            servers: [
              { name: 'opportunistic', host: '127.0.0.1', port: tls.port, tls: 'Opportunistic' },
              { name: 'required', host: '127.0.0.1', port: tls.port, tls: 'Required' },
              { name: 'verify', host: '127.0.0.1', port: tls.port, tls: 'RequiredVerify' },
              { name: 'plain-required', host: '127.0.0.1', port: plain.port, tls: 'Required' },
            ],
          },
        },
      });
      // This one goes through the operator's own REST client (operator/kube/rest.ts) instead of client-node.
      const pf = startPreflight({
        kube: createKubeRest(ctx.cp.kubeconfig),
        namespaces: [NS],
        logger: quiet,
        intervalMs: 60_000,
        scanMs: 100,
        probe: createSmtpProbe({ timeoutMs: 5000 }),
      });
      handles.push(pf);
      const s = await waitFor(async () => {
        const x = await get('tls-example');
        return (x.status?.servers?.length ?? 0) === 4 ? x : undefined;
      }, { what: 'four server results' }); // prettier-ignore
      expect(server(s, 'opportunistic')).toMatchObject({ reachable: true, tls: 'offered' });
      expect(server(s, 'required')).toMatchObject({ reachable: true, tls: 'ok' });
      expect(server(s, 'verify')).toMatchObject({ reachable: true, tls: 'failed' });
      expect(server(s, 'verify')?.message).toMatch(/self[- ]signed certificate/);
      expect(server(s, 'plain-required')).toMatchObject({ reachable: true, tls: 'failed' });
      expect(cond(s)).toMatchObject({ status: 'False', reason: 'ProbeFailed' });
      expect(cond(s)?.message).toMatch(
        /verify: tls failed: .*; plain-required: tls failed: .*STARTTLS: not offered/,
      );
      await pf.stop();
    });

    it('the default cluster destination policy: loopback servers are "not permitted", open or closed port alike, never connected to', async () => {
      const parsed = parseOperatorConfig([], {});
      if (parsed.ok !== true) throw new Error('default operator config');
      const closedPort = await freePort();
      await api().createNamespacedCustomObject({
        ...G,
        body: {
          apiVersion: 'mailroute.io/v1alpha1',
          kind: 'MailDomain',
          metadata: { name: 'denied-example' },
          spec: {
            domain: 'denied.example',
            servers: [
              { name: 'open', host: '127.0.0.1', port: plain.port, tls: 'None' },
              { name: 'closed', host: '127.0.0.1', port: closedPort, tls: 'None' },
              { name: 'decimal', host: '2130706433', port: plain.port, tls: 'None' },
              { name: 'mapped', host: '::ffff:127.0.0.1', port: plain.port, tls: 'None' },
              { name: 'name', host: 'localhost', port: plain.port, tls: 'None' },
            ],
          },
        },
      });
      const before = plain.stats.connections;
      const pf = startPreflight({
        kube: ctx.cp.kubeconfig,
        namespaces: [NS],
        logger: quiet,
        intervalMs: 60_000,
        scanMs: 100,
        probe: createSmtpProbe({ timeoutMs: 5000, destinations: parsed.config.destinations }),
      });
      handles.push(pf);
      const s = await waitFor(async () => {
        const x = await get('denied-example');
        return (x.status?.servers?.length ?? 0) === 5 ? x : undefined;
      }, { what: 'five server results' }); // prettier-ignore
      await pf.stop();
      const open = server(s, 'open');
      const closed = server(s, 'closed');
      expect(open).toMatchObject({ reachable: false, tls: 'none' });
      expect(open?.message).toBe('connect 127.0.0.1: not permitted by the destination policy');
      // the status of an open port and of a closed one cannot be told apart
      expect(closed?.reachable).toBe(open?.reachable);
      expect(closed?.tls).toBe(open?.tls);
      expect(closed?.message).toBe(open?.message);
      expect(server(s, 'decimal')?.message).toBe(
        'connect 2130706433: not permitted by the destination policy',
      );
      expect(server(s, 'mapped')?.message).toBe(
        'connect ::ffff:127.0.0.1: not permitted by the destination policy',
      );
      expect(server(s, 'name')?.message).toBe('connect localhost: not permitted by the destination policy');
      expect(plain.stats.connections).toBe(before);
      expect(cond(s)).toMatchObject({ status: 'False', reason: 'ProbeFailed' });
    });
  },
  { namespaces: [NS] },
);
