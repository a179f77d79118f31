// authSecretRef in cluster mode, on a real API server: the operator collects the username/password of every Secret
// named by a MailDomain server into Secret mailroute-credentials (its namespace), follows changes of the Secret
// and of the references, and a real relay process (`mailroute relay --configmap`) authenticates to a destination
// that requires AUTH with them, picking up a changed password without a new routing revision (and trying the mail
// deferred for the old password at once, not at its next retry an hour later).

import { afterAll, beforeAll, expect, it } from 'vitest';
import { createNamespace, describeCluster } from '../controlplane/suite.ts';
import { createKubeRest, type KubeRest } from '../../operator/kube/rest.ts';
import { CREDENTIALS_SECRET, parseCredentialsData } from '../../contract/credentials-secret.ts';
import { waitFor } from '../support/wait.ts';
import { startSmtpPeer, type SmtpPeer } from '../support/smtp-peer.ts';
import { type RelayChild, tempDir } from '../relay/relay-harness.ts';
import {
  condition,
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

const domain = (port: number, withAuth: boolean): string => `apiVersion: mailroute.io/v1alpha1
kind: MailDomain
metadata: {name: auth-example}
spec:
  domain: auth.example
  servers:
    - {name: legacy, host: 127.0.0.1, port: ${port}, tls: None${withAuth ? ', allowPlaintextAuth: true, authSecretRef: {name: smtp-auth}' : ''}}
---
apiVersion: mailroute.io/v1alpha1
kind: DeliveryPolicy
metadata: {name: auth-example}
spec: {domainRef: {name: auth-example}, mode: Direct, primary: legacy}
`;

const secret = (username: string, password: string): string => `apiVersion: v1
kind: Secret
metadata: {name: smtp-auth, labels: {mailroute.io/smtp-auth: "true"}}
stringData: {username: ${username}, password: ${password}}
`;

describeCluster('authSecretRef in cluster mode: operator credentials Secret + real relay', (ctx) => {
  let op: OperatorProcess;
  let rest: KubeRest;
  let peer: SmtpPeer;
  let relay: RelayChild | undefined;
  let dir = '';
  const apply = async (yaml: string): Promise<void> => {
    const r = await ctx.cp.kubectl(['apply', '-n', NS, '-f', '-'], { stdin: yaml });
    if (r.code !== 0) throw new Error(r.stderr);
  };
  /** The decoded data of mailroute-credentials, or undefined when it does not exist. */
  const credentials = async (): Promise<Map<string, { username: string; password: string }> | undefined> => {
    const r = await rest.request<{ type?: string; data?: Record<string, string> }>(
      'GET',
      `/api/v1/namespaces/${OP_NS}/secrets/${CREDENTIALS_SECRET}`,
    );
    if (!r.ok) return undefined;
    expect(r.body.type).toBe('Opaque');
    const p = parseCredentialsData(r.body.data);
    expect(p.errors).toEqual([]);
    return p.secrets;
  };
  const send = (to: string, id: string): Promise<void> => sendTagged(relay as RelayChild, to, id);
  const got = (id: string): { user?: string }[] => receivedTagged(peer, id);

  beforeAll(async () => {
    await createNamespace(ctx.cp, OP_NS);
    await createNamespace(ctx.cp, NS);
    rest = createKubeRest(ctx.cp.kubeconfig);
    peer = await startSmtpPeer('legacy', {}, undefined, { auth: { user: 'relay-user', pass: 's3cret' } });
    await apply(secret('relay-user', 's3cret'));
    await apply(domain(peer.port, true));
    op = startOperator(ctx.cp, { namespace: OP_NS, identity: 'op-creds' });
    await waitFor(() => routingRevision(rest, OP_NS), {
      timeoutMs: 30_000,
      what: 'the routing ConfigMap',
    }).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}\noperator log:\n${op.logs().slice(-3000)}`);
    });
  });
  afterAll(() => stopRelayRun({ relays: [relay], op, peers: [peer], dirs: [dir] }));

  it('writes mailroute-credentials from the referenced Secret (and nothing else)', async () => {
    const c = await waitFor(async () => (await credentials())?.get('mail/smtp-auth'), {
      timeoutMs: 30_000,
      what: 'mailroute-credentials with mail/smtp-auth',
    });
    expect(c).toEqual({ username: 'relay-user', password: 's3cret' });
    expect([...((await credentials()) ?? new Map()).keys()]).toEqual(['mail/smtp-auth']);
    const managers = await rest.request<{ metadata: { managedFields?: { manager?: string }[] } }>(
      'GET',
      `/api/v1/namespaces/${OP_NS}/secrets/${CREDENTIALS_SECRET}`,
    );
    expect(managers.ok && managers.body.metadata.managedFields?.map((f) => f.manager)).toEqual([
      'mailroute-operator',
    ]);
    // The routing ConfigMap carries the reference, never the credentials.
    expect((await routingRevision(rest, OP_NS))?.json).not.toContain('s3cret');
    await waitFor(
      async () =>
        (await condition(rest, 'MailDomain', NS, 'auth-example', 'ResolvedRefs'))?.status === 'True',
      { timeoutMs: 20_000, what: 'ResolvedRefs True' },
    );
  });

  it('a relay in cluster mode authenticates with them to a server that requires AUTH', async () => {
    dir = await tempDir('creds-relay');
    // an hour between attempts: mail deferred for a wrong password must go when the Secret changes, not at a retry
    relay = await spawnTestRelay(ctx.cp, OP_NS, 'relay-0', dir, ['--retry-schedule', '1h']);
    const r = relay;
    await waitFor(
      () => r.logs.some((l) => l.includes('credentials: loaded') && l.includes('mail/smtp-auth')),
      {
        timeoutMs: 15_000,
        what: 'relay loaded the credentials',
      },
    );
    await send('alice@auth.example', 'auth-1');
    await waitFor(() => got('auth-1').length === 1, {
      timeoutMs: 20_000,
      what: `auth-1 delivered\n${r.logs.slice(-20).join('\n')}`,
    });
    expect(got('auth-1')[0]?.user).toBe('relay-user');
  });

  it('follows a changed Secret: new password in mailroute-credentials and in the relay, same routing revision, and the mail deferred for the old one goes at once', async () => {
    const revision = (await routingRevision(rest, OP_NS))?.revision;
    // The destination's password was changed first: it now only takes the new one, and refuses the relay's.
    const port = peer.port;
    await peer.close();
    peer = await startSmtpPeer('legacy', {}, port, { auth: { user: 'relay-user', pass: 'n3w-pass' } });
    const r = relay as RelayChild;
    await send('bob@auth.example', 'auth-2');
    await waitFor(
      () => r.logs.some((l) => l.includes('"result":"deferred"') && l.includes('bob@auth.example')),
      {
        timeoutMs: 20_000,
        what: `auth-2 deferred for the old password\n${r.logs.slice(-10).join('\n')}`,
      },
    );
    // Then the Secret: the relay's next attempt is an hour away, but the new credentials make it due now.
    await apply(secret('relay-user', 'n3w-pass'));
    await waitFor(async () => (await credentials())?.get('mail/smtp-auth')?.password === 'n3w-pass', {
      timeoutMs: 20_000,
      what: 'mailroute-credentials updated',
    });
    await waitFor(
      () =>
        r.logs.filter((l) => l.includes('credentials: loaded') && l.includes('mail/smtp-auth')).length >= 2,
      { timeoutMs: 15_000, what: 'relay reloaded the credentials' },
    );
    await waitFor(() => got('auth-2').length === 1, { timeoutMs: 20_000, what: 'auth-2 delivered' }).catch(
      (err: unknown) => {
        throw new Error(`${(err as Error).message}\nrelay log:\n${r.logs.slice(-15).join('\n')}`);
      },
    );
    expect(got('auth-2')[0]?.user).toBe('relay-user');
    await send('carol@auth.example', 'auth-3');
    await waitFor(() => got('auth-3').length === 1, { timeoutMs: 20_000, what: 'auth-3 delivered' });
    expect((await routingRevision(rest, OP_NS))?.revision).toBe(revision);
  });

  it('removing the reference removes the keys', async () => {
    await apply(domain(peer.port, false));
    await waitFor(async () => (await credentials())?.size === 0, {
      timeoutMs: 20_000,
      what: 'mailroute-credentials emptied',
    });
    expect(op.logs()).not.toContain('n3w-pass');
    expect((relay as RelayChild).logs.join('\n')).not.toContain('n3w-pass');
  });
  it('a referenced Secret without a password: ResolvedRefs False/InvalidSecret, left out of mailroute-credentials', async () => {
    await apply(`apiVersion: v1
kind: Secret
metadata: {name: half, labels: {mailroute.io/smtp-auth: "true"}}
stringData: {username: only-user}
---
apiVersion: mailroute.io/v1alpha1
kind: MailDomain
metadata: {name: half-example}
spec:
  domain: half.example
  servers:
    - {name: s, host: 127.0.0.1, port: ${peer.port}, tls: None, allowPlaintextAuth: true, authSecretRef: {name: half}}
`);
    const c = await waitFor(
      async () => {
        const r = await condition(rest, 'MailDomain', NS, 'half-example', 'ResolvedRefs');
        return r?.status === 'False' ? r : undefined;
      },
      { timeoutMs: 20_000, what: 'ResolvedRefs False' },
    );
    expect(c).toMatchObject({ reason: 'InvalidSecret' });
    expect(c.message).toContain('mail/half: no key password');
    await waitFor(() => op.logs().includes('referenced Secrets left out of mailroute-credentials'), {
      timeoutMs: 20_000,
      what: 'operator reports the Secret left out',
    });
    expect((await credentials())?.has('mail/half')).toBe(false);
  });
});
