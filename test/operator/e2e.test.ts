// End to end on a real API server: the operator and two real relay processes in cluster mode
// (`mailroute relay --configmap`). Every object reaches Ready "2/2 relays programmed"; mail sent through both
// relays is delivered as the policy says; a policy change reaches both relays and changes delivery.

import { afterAll, beforeAll, expect, it } from 'vitest';
import { createNamespace, describeCluster } from '../controlplane/suite.ts';
import { createKubeRest, type KubeRest } from '../../operator/kube/rest.ts';
import { waitFor } from '../support/wait.ts';
import { startSmtpPeer, type SmtpPeer } from '../support/smtp-peer.ts';
import { dualDomain, type RelayChild, tempDir } from '../relay/relay-harness.ts';
import {
  condition,
  getObject,
  routingRevision,
  spawnTestRelay,
  startOperator,
  type OperatorProcess,
  receivedTagged,
  sendTagged,
  stopRelayRun,
} from './support.ts';

const OP_NS = 'mailroute-system';
const NS = 'mail';

describeCluster('operator + two real relays', (ctx) => {
  let op: OperatorProcess;
  let rest: KubeRest;
  let oldDest: SmtpPeer;
  let newDest: SmtpPeer;
  const relays: RelayChild[] = [];
  const dirs: string[] = [];
  const apply = async (yaml: string): Promise<void> => {
    const r = await ctx.cp.kubectl(['apply', '-n', NS, '-f', '-'], { stdin: yaml });
    if (r.code !== 0) throw new Error(r.stderr);
  };
  const got = (peer: SmtpPeer, id: string): number => receivedTagged(peer, id).length;

  beforeAll(async () => {
    await createNamespace(ctx.cp, OP_NS);
    await createNamespace(ctx.cp, NS);
    rest = createKubeRest(ctx.cp.kubeconfig);
    oldDest = await startSmtpPeer('old');
    newDest = await startSmtpPeer('new');
    await apply(dualDomain('example.com', oldDest.port, newDest.port));
    op = startOperator(ctx.cp, { namespace: OP_NS, identity: 'op-e2e' });
    await waitFor(() => routingRevision(rest, OP_NS), {
      timeoutMs: 30_000,
      what: 'the routing ConfigMap',
    }).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}\noperator log:\n${op.logs().slice(-3000)}`);
    });
    for (const pod of ['relay-0', 'relay-1']) {
      const dir = await tempDir(`e2e-${pod}`);
      dirs.push(dir);
      relays.push(await spawnTestRelay(ctx.cp, OP_NS, pod, dir));
    }
  });
  afterAll(() => stopRelayRun({ relays, op, peers: [oldDest, newDest], dirs }));

  it('every object reaches Ready "2/2 relays programmed", and mail through both relays is delivered dual', async () => {
    for (const kind of ['MailDomain', 'DeliveryPolicy'] as const) {
      await waitFor(
        async () =>
          (await condition(rest, kind, NS, 'example-com', 'Ready'))?.message === '2/2 relays programmed',
        { timeoutMs: 30_000, what: `${kind} Ready 2/2` },
      );
    }
    await sendTagged(relays[0] as RelayChild, 'alice@example.com', 'dual-0');
    await sendTagged(relays[1] as RelayChild, 'bob@example.com', 'dual-1');
    await waitFor(
      () => ['dual-0', 'dual-1'].every((id) => got(oldDest, id) === 1 && got(newDest, id) === 1),
      { timeoutMs: 20_000, what: 'both messages on old and new' },
    );
  });

  it('runs the preflight: status.servers and ServersReachable beside the main conditions', async () => {
    type Md = { status?: { servers?: { name: string; reachable?: boolean; tls?: string }[] } };
    const md = await waitFor(
      async () => {
        const r = await rest.request<Md>(
          'GET',
          `/apis/mailroute.io/v1alpha1/namespaces/${NS}/maildomains/example-com`,
        );
        return r.ok && (r.body.status?.servers?.length ?? 0) === 2 ? r.body : undefined;
      },
      { timeoutMs: 30_000, what: 'status.servers from the preflight' },
    );
    const servers = (md.status?.servers ?? []).map((s) => [s.name, s.reachable, s.tls]).sort();
    expect(servers).toEqual([
      ['new', true, 'none'],
      ['old', true, 'none'],
    ]);
    expect(await condition(rest, 'MailDomain', NS, 'example-com', 'ServersReachable')).toMatchObject({
      status: 'True',
    });
    expect(await condition(rest, 'MailDomain', NS, 'example-com', 'Ready')).toMatchObject({
      status: 'True',
      message: '2/2 relays programmed',
    });
  });

  it('a policy change reaches both relays (Programmed 2/2 at the new generation) and mail follows it', async () => {
    const t0 = Date.now();
    await apply(dualDomain('example.com', oldDest.port, newDest.port, { mode: 'Direct' }));
    const gen = (await getObject(rest, 'DeliveryPolicy', NS, 'example-com'))?.metadata.generation;
    await waitFor(
      async () => {
        const c = await condition(rest, 'DeliveryPolicy', NS, 'example-com', 'Programmed');
        return c?.status === 'True' && c.observedGeneration === gen && c.message === '2/2 relays programmed';
      },
      { timeoutMs: 30_000, intervalMs: 25, what: 'Programmed 2/2 at the new generation' },
    );
    const ms = Date.now() - t0;
    expect(ms).toBeLessThan(30_000);
    for (const [i, r] of relays.entries()) await sendTagged(r, `carol${i}@example.com`, `direct-${i}`);
    await waitFor(() => got(oldDest, 'direct-0') === 1 && got(oldDest, 'direct-1') === 1, {
      timeoutMs: 20_000,
      what: 'direct mail on old',
    });
    expect(got(newDest, 'direct-0') + got(newDest, 'direct-1')).toBe(0);
  });
});
