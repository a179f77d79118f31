// `mailroute diff --cluster` against a real kube-apiserver: the operator compiles applied manifests into its routing
// ConfigMap (sharded here, by lowered thresholds, so the shard path is read too), and the command compares that live
// routing with a folder through the kubeconfig, as an admin would before merging a change.
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createNamespace, describeCluster } from '../controlplane/suite.ts';
import { BIN, NODE, startOperator, type OperatorProcess } from '../operator/support.ts';
import { waitFor } from '../support/wait.ts';

const OP_NS = 'mailroute-system';
const NS = 'mail';

const manifests = (primary: 'a' | 'b', users: number): string =>
  [
    `apiVersion: mailroute.io/v1alpha1
kind: MailDomain
metadata: {name: example-com, namespace: ${NS}}
spec:
  domain: example.com
  servers: [{name: a, host: 127.0.0.1, port: 2601, tls: None}, {name: b, host: 127.0.0.1, port: 2602, tls: Required}]`,
    `apiVersion: mailroute.io/v1alpha1
kind: DeliveryPolicy
metadata: {name: example-com, namespace: ${NS}}
spec: {domainRef: {name: example-com}, mode: Dual, primary: ${primary}, secondary: ${primary === 'a' ? 'b' : 'a'}, dual: {scope: TestRecipients}}`,
    ...Array.from(
      { length: users },
      (_, i) => `apiVersion: mailroute.io/v1alpha1
kind: TestRecipient
metadata: {name: user-${i}, namespace: ${NS}}
spec: {policyRef: {name: example-com}, address: user-${i}@example.com, forwardTo: user-${i}@copy.example.com}`,
    ),
  ].join('\n---\n');

const tmp = mkdtempSync(join(tmpdir(), 'mailroute-diff-cluster-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function folder(name: string, yaml: string): string {
  const dir = join(tmp, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'mail.yaml'), yaml);
  return dir;
}

describeCluster('mailroute diff --cluster', (ctx) => {
  let op: OperatorProcess;
  const live = folder('live', manifests('a', 40));
  const next = folder('next', manifests('b', 39));

  const diff = (...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
    new Promise((resolve) => {
      execFile(
        NODE,
        [BIN, 'diff', '--cluster', '--kubeconfig', ctx.cp.kubeconfigPath, ...args],
        { timeout: 60_000, env: { ...process.env, KUBECONFIG: '/nonexistent' } },
        (err, stdout, stderr) =>
          resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr }),
      );
    });

  beforeAll(async () => {
    await createNamespace(ctx.cp, OP_NS);
    await createNamespace(ctx.cp, NS);
    const r = await ctx.cp.kubectl(['apply', '-f', join(live, 'mail.yaml')]);
    if (r.code !== 0) throw new Error(r.stderr);
    op = startOperator(ctx.cp, {
      namespace: OP_NS,
      identity: 'op-diff',
      args: ['--inline-max-bytes', '2000', '--shard-max-bytes', '1024'],
    });
  });
  afterAll(async () => {
    await op?.stop();
  });

  it('reports no change once the cluster serves the folder (exit 0), reading a sharded ConfigMap', async () => {
    const r = await waitFor(
      async () => {
        const d = await diff('-f', live);
        return d.code === 0 ? d : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 500 },
    );
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(
      /^--- cluster \S+ mailroute-system\/mailroute-routing \(revision [0-9a-f]{12}\)\n/,
    );
    expect(r.stdout.trim().split('\n').at(-1)).toBe('no routing changes (1 domain unchanged)');
    const index = await ctx.cp.kubectl([
      'get',
      'configmap',
      '-n',
      OP_NS,
      'mailroute-routing',
      '-o',
      'jsonpath={.metadata.annotations.mailroute\\.io/routing-format}',
    ]);
    expect(index.stdout).toBe('sharded');
  });

  it('shows what a folder would change (exit 1), with recipients legs', async () => {
    const r = await diff(
      '-f',
      next,
      '-o',
      'json',
      '--recipient',
      'user-39@example.com',
      '--recipient',
      'user-1@example.com',
    );
    expect(r.stderr).toBe('');
    expect(r.code).toBe(1);
    const j = JSON.parse(r.stdout) as {
      changed: boolean;
      domains: { domain: string; fields: unknown[]; testRecipients: { removed: { address: string }[] } }[];
      recipients: {
        recipient: string;
        changed: boolean;
        before: { legs: { server: string; role: string }[] };
        after: { legs: { server: string; role: string }[] };
      }[];
    };
    expect(j.changed).toBe(true);
    expect(j.domains[0]!.fields).toEqual([
      { field: 'primary', before: 'a', after: 'b' },
      { field: 'secondary', before: 'b', after: 'a' },
    ]);
    expect(j.domains[0]!.testRecipients.removed.map((t) => t.address)).toEqual(['user-39@example.com']);
    const legs = (l: { server: string; role: string }[]) => l.map((x) => `${x.role}:${x.server}`);
    expect(j.recipients.map((x) => [x.recipient, legs(x.before.legs), legs(x.after.legs)])).toEqual([
      ['user-39@example.com', ['primary:a', 'copy:b'], ['primary:b']],
      ['user-1@example.com', ['primary:a', 'copy:b'], ['primary:b', 'copy:a']],
    ]);
  });

  it('a missing ConfigMap is a clear error (exit 2)', async () => {
    const r = await diff('-f', live, '--configmap', `${OP_NS}/no-such-routing`);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(
      /^mailroute diff: ConfigMap mailroute-system\/no-such-routing not found \(context \S+\): is the mailroute operator installed there\?/,
    );
  });

  it('a ConfigMap that is not a routing table is a clear error (exit 2)', async () => {
    const cm = `apiVersion: v1
kind: ConfigMap
metadata: {name: not-routing, namespace: ${OP_NS}}
data: {routing.json: '{"kind": "Something"}'}
`;
    const applied = await ctx.cp.kubectl(['apply', '-f', '-'], { stdin: cm });
    expect(applied.code).toBe(0);
    const r = await diff('-f', live, '--configmap', `${OP_NS}/not-routing`);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(
      /^mailroute diff: ConfigMap mailroute-system\/not-routing: revision [0-9a-f]+: apiVersion: must be mailroute\.io\/v1alpha1; kind: must be RoutingTable/,
    );
  });

  it('an unknown --context is a clear error (exit 2)', async () => {
    const r = await diff('-f', live, '--context', 'prod-eu');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^mailroute diff: --context: no context "prod-eu" in the kubeconfig \(have: /);
  });

  it('an invalid folder is reported by file and field before the cluster is asked (exit 2)', async () => {
    const bad = folder('bad', manifests('a', 1).replace('mode: Dual', 'mode: Sideways'));
    const r = await diff('-f', bad, '--kubeconfig', join(tmp, 'no-kubeconfig'));
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(
      `${join(bad, 'mail.yaml')}: DeliveryPolicy/mail/example-com: spec.mode: must be one of Direct, Dual, Split`,
    );
  });
});
