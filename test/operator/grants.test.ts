// Domain grants on a real API server with RBAC on: two tenant namespaces, each with its own ServiceAccount that may
// edit mailroute objects in its namespace only; the operator on its least-privilege ServiceAccount. With DomainClaims
// in place, team-b cannot take team-a's domain, not even after team-a re-creates its MailDomain (delete + create,
// what `kubectl replace --force`, a restore or Argo CD's Replace do), which hands the domain to the oldest object
// without grants.

import { afterAll, beforeAll, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { createNamespace, describeCluster, serviceAccountIdentity } from '../controlplane/suite.ts';
import type { KubeRest } from '../../operator/kube/rest.ts';
import { createKubeRest } from '../../operator/kube/rest.ts';
import { operatorRbacObjects } from '../../operator/rbac.ts';
import type { RoutingTable } from '../../routing/model.ts';
import { waitFor } from '../support/wait.ts';
import {
  condition,
  routingRevision,
  SimulatedRelays,
  startOperator,
  type OperatorProcess,
  tenantEditorObjects,
} from './support.ts';

const OP_NS = 'mailroute-system';
const TEAMS = ['team-a', 'team-b'] as const;
type Team = (typeof TEAMS)[number];

const mailDomain = (team: Team, name: string, domain: string) => ({
  apiVersion: 'mailroute.io/v1alpha1',
  kind: 'MailDomain',
  metadata: { name, namespace: team },
  spec: { domain, servers: [{ name: 'mx', host: `mx.${team}.test`, port: 2525, tls: 'None' }] },
});

describeCluster('domain grants (DomainClaim) with RBAC and two tenants', (ctx) => {
  let op: OperatorProcess;
  let admin: KubeRest;
  let relays: SimulatedRelays;
  const tenant = {} as Record<Team, KubeRest>;
  const kubectlApply = async (objs: object[]): Promise<void> => {
    const r = await ctx.cp.kubectl(['apply', '-f', '-'], {
      stdin: objs.map((o) => stringify(o)).join('---\n'),
    });
    if (r.code !== 0) throw new Error(r.stderr);
  };
  const mdPath = (team: Team, name = '') =>
    `/apis/mailroute.io/v1alpha1/namespaces/${team}/maildomains${name === '' ? '' : `/${name}`}`;
  const create = async (team: Team, name: string, domain: string): Promise<string> => {
    const r = await tenant[team].request<{ metadata: { creationTimestamp: string } }>('POST', mdPath(team), {
      body: mailDomain(team, name, domain),
    });
    if (!r.ok) throw new Error(`${team} create ${name}: ${r.status} ${r.message}`);
    return r.body.metadata.creationTimestamp;
  };
  /** Delete and create again, as `kubectl replace --force` does: a new object with a new creationTimestamp. */
  const recreate = async (team: Team, name: string, domain: string): Promise<string> => {
    const d = await tenant[team].request('DELETE', mdPath(team, name));
    if (!d.ok) throw new Error(`${team} delete ${name}: ${d.status} ${d.message}`);
    await waitFor(async () => !(await admin.request('GET', mdPath(team, name))).ok, {
      timeoutMs: 10_000,
      what: `${team}/${name} gone`,
    });
    return create(team, name, domain);
  };
  const routedBy = async (domain: string): Promise<string | undefined> => {
    const r = await routingRevision(admin, OP_NS);
    if (r === undefined) return undefined;
    const table = JSON.parse(r.json) as RoutingTable;
    return table.domains[domain]?.mailDomain.namespace;
  };

  beforeAll(async () => {
    admin = createKubeRest(ctx.cp.kubeconfig);
    await createNamespace(ctx.cp, OP_NS);
    const tenantRbac: object[] = [];
    for (const team of TEAMS) {
      await createNamespace(ctx.cp, team);
      tenantRbac.push(...tenantEditorObjects(team));
    }
    await kubectlApply([
      {
        apiVersion: 'v1',
        kind: 'ServiceAccount',
        metadata: { name: 'mailroute-operator', namespace: OP_NS },
      },
      ...operatorRbacObjects({ namespace: OP_NS }),
      ...tenantRbac,
      // the cluster admin's grants: corp.test (and its subdomains) is team-a's alone; shared.test may be used by
      // both, team-a first
      {
        apiVersion: 'mailroute.io/v1alpha1',
        kind: 'DomainClaim',
        metadata: { name: 'team-a' },
        spec: { domains: ['corp.test', '*.corp.test'], namespaces: { names: ['team-a'] } },
      },
      {
        apiVersion: 'mailroute.io/v1alpha1',
        kind: 'DomainClaim',
        metadata: { name: 'shared' },
        spec: { domains: ['shared.test'], namespaces: { names: ['team-a', 'team-b'] } },
      },
    ]);
    for (const team of TEAMS) tenant[team] = (await serviceAccountIdentity(ctx.cp, team, 'editor')).rest;
    const opIdentity = await serviceAccountIdentity(ctx.cp, OP_NS, 'mailroute-operator');
    op = startOperator(ctx.cp, {
      namespace: OP_NS,
      identity: 'op-grants',
      args: ['--kubeconfig', opIdentity.kubeconfigPath],
    });
    relays = new SimulatedRelays(ctx.cp, OP_NS, ['r0']);
    relays.start();
  });
  afterAll(async () => {
    relays?.stop();
    await op?.stop();
  });

  it('a tenant cannot grant itself a domain: DomainClaims are for the cluster admin', async () => {
    const r = await tenant['team-b'].request('POST', '/apis/mailroute.io/v1alpha1/domainclaims', {
      body: {
        apiVersion: 'mailroute.io/v1alpha1',
        kind: 'DomainClaim',
        metadata: { name: 'grab' },
        spec: { domains: ['corp.test'], namespaces: { names: ['team-b'] } },
      },
    });
    expect(r.ok ? 201 : r.status).toBe(403);
  });

  it("team-b cannot take team-a's domains, not even after team-a re-creates its MailDomains", async () => {
    await create('team-a', 'corp', 'corp.test');
    await create('team-a', 'shared', 'shared.test');
    const bCreated = [
      await create('team-b', 'corp', 'corp.test'),
      await create('team-b', 'shared', 'shared.test'),
      await create('team-b', 'payroll', 'payroll.corp.test'),
    ];
    await waitFor(async () => (await routedBy('corp.test')) === 'team-a' && (await routedBy('shared.test')), {
      timeoutMs: 30_000,
      what: 'the first table',
    }).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}\noperator log:\n${op.logs().slice(-3000)}`);
    });

    // creationTimestamp has one-second resolution: re-create only once team-b's objects are strictly older
    const newestB = Math.max(...bCreated.map((t) => Date.parse(t)));
    await waitFor(() => Date.now() >= newestB + 1000, { timeoutMs: 5_000, what: 'the next second' });
    for (const [name, domain] of [
      ['corp', 'corp.test'],
      ['shared', 'shared.test'],
    ] as const) {
      const aCreated = await recreate('team-a', name, domain);
      expect(Date.parse(aCreated)).toBeGreaterThan(newestB); // without grants, team-b's older object would win now
    }
    await waitFor(
      async () =>
        (await condition(admin, 'MailDomain', 'team-a', 'shared', 'Accepted'))?.status === 'True' &&
        (await condition(admin, 'MailDomain', 'team-a', 'corp', 'Accepted'))?.status === 'True',
      { timeoutMs: 30_000, what: "team-a's re-created MailDomains Accepted" },
    );
    // Accepted is written once the compile has seen the re-created object, which can be before its table is applied:
    // the table is read once it holds both (no policy routes them here, so they are never Programmed)
    await waitFor(
      async () => {
        const r = await routingRevision(admin, OP_NS);
        const sources = r === undefined ? [] : (JSON.parse(r.json) as RoutingTable).sources;
        return ['corp', 'shared'].every((n) =>
          sources.some((o) => o.kind === 'MailDomain' && o.namespace === 'team-a' && o.name === n),
        );
      },
      { timeoutMs: 30_000, what: 'a table with the re-created objects' },
    );
    expect(await routedBy('corp.test')).toBe('team-a');
    expect(await routedBy('shared.test')).toBe('team-a');
    expect(await routedBy('payroll.corp.test')).toBeUndefined();

    // team-b reads why, without learning who holds the domain
    const notPermitted = await condition(admin, 'MailDomain', 'team-b', 'corp', 'Accepted');
    expect(notPermitted).toMatchObject({ status: 'False', reason: 'NotPermitted' });
    expect(await condition(admin, 'MailDomain', 'team-b', 'payroll', 'Accepted')).toMatchObject({
      status: 'False',
      reason: 'NotPermitted',
    });
    const conflict = await waitFor(
      async () => {
        const c = await condition(admin, 'MailDomain', 'team-b', 'shared', 'Accepted');
        return c?.reason === 'DomainConflict' ? c : undefined;
      },
      { timeoutMs: 20_000, what: "team-b's shared.test DomainConflict" },
    );
    expect(conflict).toMatchObject({
      status: 'False',
      message: 'spec.domain: domain shared.test is claimed by another object you cannot see',
    });

    // ... and team-a's re-created object hears that someone else declares its domain, without learning who
    const shared = await admin.request<{ metadata: { uid: string } }>('GET', mdPath('team-a', 'shared'));
    const uid = shared.ok ? shared.body.metadata.uid : '?';
    const events = await waitFor(
      async () => {
        const r = await admin.request<{
          items: {
            reason: string;
            type: string;
            message: string;
            involvedObject: { name: string; uid?: string };
          }[];
        }>('GET', '/api/v1/namespaces/team-a/events');
        const found = r.ok
          ? r.body.items.filter((e) => e.reason === 'DomainContested' && e.involvedObject.uid === uid)
          : [];
        return found.length > 0 ? found : undefined;
      },
      { timeoutMs: 20_000, what: 'a DomainContested Warning Event on the re-created team-a/shared' },
    );
    expect(events[0]).toMatchObject({ type: 'Warning' });
    expect(events[0]?.message).not.toContain('team-b');
    expect(op.logs()).not.toMatch(/forbidden/i);
  });
});
