// Two operator replicas: one leader (the only writer); SIGKILL it and the other takes over within the lease time.

import { afterAll, beforeAll, expect, it } from 'vitest';
import { createNamespace, describeCluster } from '../controlplane/suite.ts';
import pino from 'pino';
import { LeaderElector } from '../../operator/kube/leader.ts';
import { createKubeRest, type KubeRest } from '../../operator/kube/rest.ts';
import { fakeWallClock, restoreWallClock, stepWallClock } from '../support/clock.ts';
import { waitFor } from '../support/wait.ts';
import { condition, getObject, startOperator, type OperatorProcess } from './support.ts';

const OP_NS = 'mailroute-system';
const NS = 'team';
const LEASE = `/apis/coordination.k8s.io/v1/namespaces/${OP_NS}/leases/mailroute-operator`;

describeCluster('operator leader election', (ctx) => {
  let rest: KubeRest;
  const ops = new Map<string, OperatorProcess>();
  const holder = async (): Promise<string | undefined> => {
    const r = await rest.request<{ spec: { holderIdentity?: string } }>('GET', LEASE);
    return r.ok ? r.body.spec.holderIdentity : undefined;
  };
  const apply = async (yaml: string): Promise<void> => {
    const r = await ctx.cp.kubectl(['apply', '-n', NS, '-f', '-'], { stdin: yaml });
    if (r.code !== 0) throw new Error(r.stderr);
  };
  const domain = (gen: string): string => `apiVersion: mailroute.io/v1alpha1
kind: MailDomain
metadata: {name: shop}
spec:
  domain: shop.example
  servers: [{name: a, host: 127.0.0.1, port: 2525, tls: None, maxConnections: ${gen}}]
`;

  beforeAll(async () => {
    await createNamespace(ctx.cp, OP_NS);
    await createNamespace(ctx.cp, NS);
    rest = createKubeRest(ctx.cp.kubeconfig);
    await apply(domain('5'));
    for (const id of ['replica-a', 'replica-b'])
      ops.set(id, startOperator(ctx.cp, { namespace: OP_NS, identity: id }));
  });
  afterAll(async () => {
    for (const op of ops.values()) await op.stop();
  });

  it('elects exactly one leader, which alone writes status', async () => {
    const leader = await waitFor(holder, { timeoutMs: 30_000, what: 'a lease holder' });
    expect(['replica-a', 'replica-b']).toContain(leader);
    await waitFor(() => condition(rest, 'MailDomain', NS, 'shop', 'Programmed'), {
      timeoutMs: 20_000,
      what: 'status written',
    });
    const md = await getObject(rest, 'MailDomain', NS, 'shop');
    const r = await ctx.cp.kubectl([
      'get',
      'maildomain',
      'shop',
      '-n',
      NS,
      '--show-managed-fields',
      '-o',
      'jsonpath={.metadata.managedFields[*].manager}',
    ]);
    expect(r.stdout.split(' ')).toContain('mailroute-operator');
    expect(md?.status?.observedGeneration).toBe(1);
    const standby = leader === 'replica-a' ? 'replica-b' : 'replica-a';
    expect(ops.get(standby)?.logs()).not.toContain('routing table applied');
    expect(ops.get(leader)?.logs()).toContain('routing table applied');
  });

  it('after SIGKILL of the leader, the other replica takes over within the lease time and reconciles', async () => {
    const leader = (await holder()) ?? '';
    const standby = leader === 'replica-a' ? 'replica-b' : 'replica-a';
    const acceptedBefore = await condition(rest, 'MailDomain', NS, 'shop', 'Accepted');
    const killedAt = Date.now();
    await ops.get(leader)?.stop('SIGKILL');
    await waitFor(async () => (await holder()) === standby, {
      timeoutMs: 25_000,
      intervalMs: 100,
      what: `${standby} to take the lease`,
    });
    const tookMs = Date.now() - killedAt;
    // 15 s lease duration + one 2 s retry period (+ scheduling slack on a busy 2-core machine)
    expect(tookMs).toBeLessThan(15_000 + 2_000 + 3_000);
    await apply(domain('7'));
    await waitFor(
      async () => (await condition(rest, 'MailDomain', NS, 'shop', 'Programmed'))?.observedGeneration === 2,
      { timeoutMs: 20_000, what: 'the new leader reconciles generation 2' },
    );
    expect(ops.get(standby)?.logs()).toContain('became leader');
    // no status flapping on failover: Accepted stayed True, its transition time is the original one
    expect(await condition(rest, 'MailDomain', NS, 'shop', 'Accepted')).toMatchObject({
      status: 'True',
      lastTransitionTime: acceptedBefore?.lastTransitionTime,
    });
  });

  it('a graceful stop (SIGTERM) releases the lease at once', async () => {
    const leader = (await holder()) ?? '';
    ops.set('replica-c', startOperator(ctx.cp, { namespace: OP_NS, identity: 'replica-c' }));
    await waitFor(() => /informers synced/.test(ops.get('replica-c')?.logs() ?? ''), {
      timeoutMs: 20_000,
      what: 'replica-c synced',
    });
    const t = Date.now();
    expect(await ops.get(leader)?.stop('SIGTERM')).toBe(0);
    await waitFor(async () => (await holder()) === 'replica-c', {
      timeoutMs: 10_000,
      intervalMs: 100,
      what: 'replica-c to take the released lease',
    });
    expect(Date.now() - t).toBeLessThan(6_000);
  });

  /** Two electors in this process on a lease of their own; `failing` makes the first one's API calls fail. */
  const electors = (lease: string, o: { leaseDurationMs: number; renewDeadlineMs: number }) => {
    const link = { failing: false };
    const common = {
      namespace: OP_NS,
      name: lease,
      ...o,
      retryPeriodMs: 100,
      logger: pino({ level: 'silent' }),
      onStartedLeading: () => undefined,
      onStoppedLeading: () => undefined,
    };
    const flaky: KubeRest = {
      request: (method, path, opts) =>
        link.failing
          ? Promise.resolve({ ok: false, status: 0, reason: 'Unreachable', message: 'cut off in the test' })
          : rest.request(method, path, opts),
    };
    const a = new LeaderElector({ ...common, rest: flaky, identity: `${lease}-a` });
    const b = new LeaderElector({ ...common, rest, identity: `${lease}-b` });
    return { a, b, link };
  };

  it('a step of the wall clock (an hour forward) does not hand a held lease to a follower: its age is monotonic', async () => {
    fakeWallClock();
    try {
      const { a, b } = electors('clock-forward', { leaseDurationMs: 30_000, renewDeadlineMs: 20_000 });
      expect(await a.tryAcquireOrRenew()).toBe(true);
      expect(await b.tryAcquireOrRenew()).toBe(false); // b has seen a's lease now
      stepWallClock(3600_000);
      // by the wall clock b saw a's lease an hour ago; a renewed it a moment ago and leads: two leaders if b took it
      expect(await b.tryAcquireOrRenew()).toBe(false);
      expect(a.isLeader).toBe(true);
      expect(await a.tryAcquireOrRenew()).toBe(true);
    } finally {
      restoreWallClock();
    }
  });

  it('a step of the wall clock (an hour back) does not keep a leader that cannot renew leading past its deadline', async () => {
    fakeWallClock();
    try {
      const { a, link } = electors('clock-back', { leaseDurationMs: 2_000, renewDeadlineMs: 300 });
      expect(await a.tryAcquireOrRenew()).toBe(true);
      link.failing = true;
      stepWallClock(-3600_000);
      // a must stop leading once 300 ms pass without a renewal (its lease expires for the others at 2 s); by the
      // wall clock its last renewal is an hour in the future
      await waitFor(async () => !(await a.tryAcquireOrRenew()), {
        timeoutMs: 5_000,
        intervalMs: 50,
        what: 'the leader to give up after its renew deadline',
      });
      expect(a.isLeader).toBe(false);
    } finally {
      restoreWallClock();
    }
  });
});
