// The confused deputy, on a real API server with RBAC on: a tenant who may create mailroute objects in its namespace
// but may not read its Secrets names a kubernetes.io/basic-auth Secret holding a database password in
// authSecretRef, and points the server at an SMTP host of its own that takes AUTH in plain text. The operator runs on
// its least-privilege ServiceAccount, a real relay (`mailroute relay --configmap`) delivers. The password must never
// reach the tenant's server, and status must say only "not found or not permitted". Once the Secret's owner opts it
// in (the label), the same setup does authenticate: the label is the only thing that kept the password back.

import { afterAll, beforeAll, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { createNamespace, describeCluster, serviceAccountIdentity } from '../controlplane/suite.ts';
import { createKubeRest, type KubeRest } from '../../operator/kube/rest.ts';
import { CREDENTIALS_SECRET, parseCredentialsData } from '../../contract/credentials-secret.ts';
import { operatorRbacObjects } from '../../operator/rbac.ts';
import { waitFor } from '../support/wait.ts';
import { startSmtpPeer, type SmtpPeer } from '../support/smtp-peer.ts';
import { type RelayChild, tempDir } from '../relay/relay-harness.ts';
import {
  condition,
  routingRevision,
  spawnTestRelay,
  startOperator,
  type OperatorProcess,
  tenantEditorObjects,
  sendTagged,
  stopRelayRun,
} from './support.ts';

const OP_NS = 'mailroute-system';
const NS = 'team-a';
const PASSWORD = 'database-password-7f3a';

describeCluster('Secret opt-in: a tenant cannot make the operator send a Secret it may not read', (ctx) => {
  let op: OperatorProcess;
  let admin: KubeRest;
  let tenant: KubeRest;
  let peer: SmtpPeer;
  let relay: RelayChild | undefined;
  let dir = '';
  const kubectlApply = async (objs: object[]): Promise<void> => {
    const r = await ctx.cp.kubectl(['apply', '-f', '-'], {
      stdin: objs.map((o) => stringify(o)).join('---\n'),
    });
    if (r.code !== 0) throw new Error(r.stderr);
  };
  const credentialKeys = async (): Promise<string[]> => {
    const r = await admin.request<{ data?: Record<string, string> }>(
      'GET',
      `/api/v1/namespaces/${OP_NS}/secrets/${CREDENTIALS_SECRET}`,
    );
    return r.ok ? [...parseCredentialsData(r.body.data).secrets.keys()] : [];
  };
  const send = (to: string, id: string): Promise<void> => sendTagged(relay as RelayChild, to, id);

  beforeAll(async () => {
    admin = createKubeRest(ctx.cp.kubeconfig);
    await createNamespace(ctx.cp, OP_NS);
    await createNamespace(ctx.cp, NS);
    // The tenant's server: takes AUTH in plain text with exactly the database credentials (so it would accept them).
    peer = await startSmtpPeer('tenant-server', {}, undefined, { auth: { user: 'app', pass: PASSWORD } });
    await kubectlApply([
      {
        apiVersion: 'v1',
        kind: 'ServiceAccount',
        metadata: { name: 'mailroute-operator', namespace: OP_NS },
      },
      ...operatorRbacObjects({ namespace: OP_NS }),
      ...tenantEditorObjects(NS),
      // Someone else's Secret in the tenant's namespace: the application's database login, no opt-in.
      {
        apiVersion: 'v1',
        kind: 'Secret',
        type: 'kubernetes.io/basic-auth',
        metadata: { name: 'db-password', namespace: NS },
        stringData: { username: 'app', password: PASSWORD },
      },
    ]);
    tenant = (await serviceAccountIdentity(ctx.cp, NS, 'editor')).rest;
    const opIdentity = await serviceAccountIdentity(ctx.cp, OP_NS, 'mailroute-operator');
    op = startOperator(ctx.cp, {
      namespace: OP_NS,
      identity: 'op-secret-opt-in',
      args: ['--kubeconfig', opIdentity.kubeconfigPath],
    });
    dir = await tempDir('secret-opt-in');
    relay = await spawnTestRelay(ctx.cp, OP_NS, 'relay-0', dir);
  });
  afterAll(() => stopRelayRun({ relays: [relay], op, peers: [peer], dirs: [dir] }));

  it('the tenant may create MailDomains but may not read the Secret', async () => {
    const r = await tenant.request('GET', `/api/v1/namespaces/${NS}/secrets/db-password`);
    expect(r.ok ? 200 : r.status).toBe(403);
  });

  it('referenced in authSecretRef, the Secret is never sent: status says only "not found or not permitted"', async () => {
    for (const body of [
      {
        apiVersion: 'mailroute.io/v1alpha1',
        kind: 'MailDomain',
        metadata: { name: 'exfil', namespace: NS },
        spec: {
          domain: 'exfil.test',
          servers: [
            {
              name: 'mine',
              host: '127.0.0.1',
              port: peer.port,
              // the worst case for the opt-in: the tenant also allows plain-text AUTH
              tls: 'None',
              allowPlaintextAuth: true,
              authSecretRef: { name: 'db-password' },
            },
          ],
        },
      },
      {
        apiVersion: 'mailroute.io/v1alpha1',
        kind: 'DeliveryPolicy',
        metadata: { name: 'exfil', namespace: NS },
        spec: { domainRef: { name: 'exfil' }, mode: 'Direct', primary: 'mine' },
      },
    ]) {
      const plural = body.kind === 'MailDomain' ? 'maildomains' : 'deliverypolicies';
      const r = await tenant.request('POST', `/apis/mailroute.io/v1alpha1/namespaces/${NS}/${plural}`, {
        body,
      });
      if (!r.ok) throw new Error(`tenant create ${body.kind}: ${r.status} ${r.message}`);
    }
    const refs = await waitFor(
      async () => {
        const c = await condition(tenant, 'MailDomain', NS, 'exfil', 'ResolvedRefs');
        return c?.status === 'False' ? c : undefined;
      },
      { timeoutMs: 30_000, what: 'ResolvedRefs False' },
    ).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}\noperator log:\n${op.logs().slice(-3000)}`);
    });
    expect(refs.reason).toBe('SecretNotFound');
    expect(refs.message).toBe(
      `spec.servers[].authSecretRef: Secret ${NS}/db-password not found or not permitted (a Secret is used for SMTP AUTH only with the label mailroute.io/smtp-auth: "true")`,
    );

    // The table routes the domain (with the reference), so the relay tries, and has no credentials to send.
    await waitFor(async () => (await routingRevision(admin, OP_NS))?.json.includes('exfil.test'), {
      timeoutMs: 20_000,
      what: 'the routing table with exfil.test',
    });
    expect(await credentialKeys()).not.toContain(`${NS}/db-password`);
    const r = relay as RelayChild;
    // accepted once the relay serves a table with the domain (until then: 554 relay access denied)
    await waitFor(
      () =>
        send('someone@exfil.test', 'exfil-1').then(
          () => true,
          () => false,
        ),
      { timeoutMs: 20_000, what: 'the relay accepts mail for exfil.test' },
    );
    await waitFor(
      () => r.logs.some((l) => l.includes(`credentials ${NS}/db-password for server mine not available`)),
      { timeoutMs: 30_000, what: 'a deferred attempt' },
    ).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}\nrelay log:\n${r.logs.slice(-10).join('\n')}`);
    });
    expect(peer.auths.map((a) => a.password)).not.toContain(PASSWORD);
    expect(peer.messages).toEqual([]);
    expect(op.logs()).not.toContain(PASSWORD);
    expect(r.logs.join('\n')).not.toContain(PASSWORD);
  });

  it('control: once the Secret opts in (the label), the same setup authenticates with it', async () => {
    const l = await ctx.cp.kubectl([
      'label',
      'secret',
      'db-password',
      '-n',
      NS,
      'mailroute.io/smtp-auth=true',
    ]);
    if (l.code !== 0) throw new Error(l.stderr);
    await waitFor(async () => (await credentialKeys()).includes(`${NS}/db-password`), {
      timeoutMs: 20_000,
      what: 'mailroute-credentials with the opted-in Secret',
    });
    await waitFor(
      async () => (await condition(tenant, 'MailDomain', NS, 'exfil', 'ResolvedRefs'))?.status === 'True',
      { timeoutMs: 20_000, what: 'ResolvedRefs True' },
    );
    await waitFor(() => peer.auths.some((a) => a.password === PASSWORD), {
      timeoutMs: 30_000,
      what: 'the queued message delivered with AUTH',
    });
  });
});
