// The operator's periodic preflight with the acceptance step (spec.servers[].probe.address), end to end: the real
// `mailroute operator` on a real kube-apiserver with the generated CRDs (the API server keeps `probe` in the spec and
// `acceptance`/`localAddress` in the status only if the schemas have them), a Secret opted in for AUTH, and real
// smtp-server peers: one requiring STARTTLS and AUTH, one refusing the probe address with 550 until "allowlisted".
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createNamespace, describeCluster } from '../controlplane/suite.ts';
import { createKubeRest, type KubeRest } from '../../operator/kube/rest.ts';
import type { Condition, ServerStatus } from '../../operator/preflight/status.ts';
import { startAcceptancePeers, type AcceptancePeers } from '../support/acceptance-peers.ts';
import type { SmtpPeer } from '../support/smtp-peer.ts';
import { makeSelfSigned } from '../support/tls.ts';
import { waitFor } from '../support/wait.ts';
import { startOperator, type OperatorProcess } from './support.ts';

const OP_NS = 'mailroute-system';
const NS = 'mail';

interface Md {
  spec?: { servers?: { name: string; probe?: { address: string } }[] };
  status?: { servers?: ServerStatus[]; conditions?: Condition[] };
}

describeCluster('operator preflight: the acceptance step', (ctx) => {
  let op: OperatorProcess;
  let rest: KubeRest;
  let google: SmtpPeer;
  let zoho: SmtpPeer;
  let peers: AcceptancePeers;

  const get = async (): Promise<Md | undefined> => {
    const r = await rest.request<Md>(
      'GET',
      `/apis/mailroute.io/v1alpha1/namespaces/${NS}/maildomains/example-com`,
    );
    return r.ok ? r.body : undefined;
  };
  const server = (md: Md | undefined, name: string) => md?.status?.servers?.find((s) => s.name === name);
  const cond = (md: Md | undefined) => md?.status?.conditions?.find((c) => c.type === 'ServersReachable');

  beforeAll(async () => {
    await createNamespace(ctx.cp, OP_NS);
    await createNamespace(ctx.cp, NS);
    rest = createKubeRest(ctx.cp.kubeconfig);
    const cert = makeSelfSigned();
    peers = await startAcceptancePeers(cert);
    ({ google, zoho } = peers);
    const yaml = `apiVersion: v1
kind: Secret
metadata: {name: google-relay, labels: {mailroute.io/smtp-auth: "true"}}
stringData: {username: relay, password: s3cret}
---
apiVersion: mailroute.io/v1alpha1
kind: MailDomain
metadata: {name: example-com}
spec:
  domain: example.com
  servers:
    - {name: google, host: 127.0.0.1, port: ${google.port}, tls: Required, authSecretRef: {name: google-relay}, probe: {address: pilot@example.com}}
    - {name: zoho, host: 127.0.0.1, port: ${zoho.port}, tls: Required, probe: {address: pilot@example.com}}
    - {name: plain, host: 127.0.0.1, port: ${zoho.port}, tls: Required}
`;
    const r = await ctx.cp.kubectl(['apply', '-n', NS, '-f', '-'], { stdin: yaml });
    if (r.code !== 0) throw new Error(r.stderr);
    op = startOperator(ctx.cp, {
      namespace: OP_NS,
      identity: 'op-accept',
      args: ['--preflight-interval', '1s'],
    });
  });
  afterAll(async () => {
    await op?.stop();
    await peers?.close();
  });

  it('the API server keeps spec.servers[].probe', async () => {
    const md = await get();
    expect(md?.spec?.servers?.map((s) => s.probe?.address)).toEqual([
      'pilot@example.com',
      'pilot@example.com',
      undefined,
    ]);
  });

  it('reports AUTH + accepted on one server, the 550 and the address to allowlist on the other; ServersReachable False', async () => {
    const md = await waitFor(
      async () => {
        const m = await get();
        return server(m, 'zoho')?.acceptance !== undefined && server(m, 'google')?.acceptance !== undefined
          ? m
          : undefined;
      },
      { timeoutMs: 60_000, what: 'acceptance results in status.servers' },
    ).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}\noperator log:\n${op.logs().slice(-3000)}`);
    });
    expect(server(md, 'google')).toMatchObject({
      reachable: true,
      tls: 'ok',
      localAddress: '127.0.0.1',
      acceptance: { address: 'pilot@example.com', result: 'accepted' },
    });
    expect(server(md, 'google')?.message).toMatch(/; AUTH as relay ok$/);
    expect(server(md, 'zoho')).toMatchObject({
      reachable: true,
      tls: 'ok',
      localAddress: '127.0.0.1',
      acceptance: {
        address: 'pilot@example.com',
        result: 'refused',
        reply: '550 5.7.1 relay not allowlisted',
      },
    });
    // a server without probe.address: reachability and TLS only
    expect(server(md, 'plain')?.acceptance).toBeUndefined();
    expect(cond(md)).toMatchObject({ status: 'False', reason: 'ProbeFailed' });
    expect(cond(md)?.message).toBe(
      'zoho: probe RCPT TO:<pilot@example.com> refused (from 127.0.0.1): 550 5.7.1 relay not allowlisted',
    );
    // the peer saw the probe over TLS, authenticated with the Secret's credentials, and no message
    expect(
      google.rcpts.some((r) => r.address === 'pilot@example.com' && r.secure && r.user === 'relay'),
    ).toBe(true);
    expect(google.messages).toHaveLength(0);
    expect(zoho.messages).toHaveLength(0);
  });

  it('once the server allowlists the relay, the next probe turns ServersReachable True', async () => {
    peers.allowlisted = true;
    const md = await waitFor(
      async () => {
        const m = await get();
        return cond(m)?.status === 'True' ? m : undefined;
      },
      { timeoutMs: 60_000, what: 'ServersReachable True' },
    );
    expect(server(md, 'zoho')?.acceptance).toMatchObject({ result: 'accepted' });
    expect(cond(md)?.message).toBe('3/3 servers reachable');
  });
});
