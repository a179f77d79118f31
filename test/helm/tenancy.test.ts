// The chart's tenant roles and its destinations ValidatingAdmissionPolicy on a real kube-apiserver (RBAC on).
// The rendered objects are applied as `helm template` prints them. A tenant is a ServiceAccount of its own namespace,
// authenticated with its own token (TokenRequest), bound to <fullname>-edit or -view by a RoleBinding. Aggregation
// into the built-in edit/view ClusterRoles is done by kube-controller-manager, which this control plane does not
// run: here the roles are bound directly, and their aggregation labels are checked in chart.test.ts.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CustomObjectsApi, KubeConfig, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describeCluster } from '../controlplane/suite.ts';
import { waitFor } from '../support/wait.ts';
import { describeWithTools, findTools, helmTemplate, parseObjects, type K8sObject } from './tools.ts';

type Json = Record<string, unknown>;
const NS = 'mailroute-system';
const RELEASE = 'mr';
const TEAM = 'team-a';
const OTHER = 'team-b';
const POLICY = 'mr-mailroute-destinations';

const found = findTools();

const mailDomain = (name: string, host: string): Json => ({
  apiVersion: 'mailroute.io/v1alpha1',
  kind: 'MailDomain',
  metadata: { name, namespace: TEAM },
  spec: { domain: `${name}.example`, servers: [{ name: 'legacy', host, port: 25 }] },
});

if (!found.ok) describeWithTools('tenant roles and admission policy on a real API server', () => undefined);
else
  describeCluster('tenant roles and admission policy on a real API server', (ctx) => {
    let work = '';
    let rendered: K8sObject[] = [];
    beforeAll(async () => {
      work = mkdtempSync(join(tmpdir(), 'mailroute-tenancy-'));
      rendered = parseObjects(await helmTemplate(found.tools, [], RELEASE, NS));
    });
    afterAll(() => {
      if (work !== '') rmSync(work, { recursive: true, force: true });
    });

    const apply = async (objs: unknown[], kubeconfig?: string): Promise<{ code: number; stderr: string }> =>
      ctx.cp.kubectl([...(kubeconfig ? ['--kubeconfig', kubeconfig] : []), 'apply', '-f', '-'], {
        stdin: JSON.stringify({ apiVersion: 'v1', kind: 'List', items: objs }),
      });
    const chartObject = (kind: string, name: string): K8sObject => {
      const o = rendered.find((x) => x.kind === kind && x.metadata.name === name);
      if (o === undefined) throw new Error(`the chart renders no ${kind} ${name}`);
      return o;
    };

    /** A kubeconfig authenticating with a token of ServiceAccount ns/sa: a separate identity, as a tenant has. */
    const tokenKubeconfig = async (ns: string, sa: string): Promise<string> => {
      const token = await ctx.cp.kubectl(['create', 'token', sa, '-n', ns, '--duration=1h']);
      expect(token.code, token.stderr).toBe(0);
      const cluster = ctx.cp.kubeconfig.getCurrentCluster()!;
      const ca = cluster.caData ?? Buffer.from(readFileSync(cluster.caFile!)).toString('base64');
      const path = join(work, `${ns}-${sa}.kubeconfig`);
      const doc = {
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [{ name: 'envtest', cluster: { server: ctx.cp.server, 'certificate-authority-data': ca } }],
        users: [{ name: sa, user: { token: token.stdout.trim() } }],
        contexts: [{ name: sa, context: { cluster: 'envtest', user: sa, namespace: ns } }],
        'current-context': sa,
      };
      writeFileSync(path, JSON.stringify(doc), { mode: 0o600 });
      return path;
    };

    it('applies the rendered tenant ClusterRoles and binds them in a tenant namespace', async () => {
      for (const ns of [TEAM, OTHER])
        expect((await ctx.cp.kubectl(['create', 'namespace', ns])).code).toBe(0);
      const roles = [
        chartObject('ClusterRole', 'mr-mailroute-edit'),
        chartObject('ClusterRole', 'mr-mailroute-view'),
      ];
      const binding = (sa: string, role: string): Json => ({
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'RoleBinding',
        metadata: { name: sa, namespace: TEAM },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: role },
        subjects: [{ kind: 'ServiceAccount', name: sa, namespace: TEAM }],
      });
      const sa = (name: string): Json => ({
        apiVersion: 'v1',
        kind: 'ServiceAccount',
        metadata: { name, namespace: TEAM },
      });
      const r = await apply([
        ...roles,
        sa('editor'),
        sa('viewer'),
        binding('editor', 'mr-mailroute-edit'),
        binding('viewer', 'mr-mailroute-view'),
      ]);
      expect(r.code, r.stderr).toBe(0);
    });

    it.each([
      // [who, verb, resource, namespace, allowed]
      ['editor', 'create', 'deliverypolicies.mailroute.io', TEAM, true],
      ['editor', 'patch', 'maildomains.mailroute.io', TEAM, true],
      ['editor', 'delete', 'testrecipients.mailroute.io', TEAM, true],
      ['editor', 'deletecollection', 'testrecipients.mailroute.io', TEAM, true],
      ['editor', 'patch', 'deliverypolicies.mailroute.io --subresource=status', TEAM, false],
      ['editor', 'update', 'maildomains.mailroute.io --subresource=status', TEAM, false],
      ['editor', 'create', 'deliverypolicies.mailroute.io', OTHER, false],
      ['editor', 'get', 'secrets', TEAM, false],
      ['viewer', 'list', 'maildomains.mailroute.io', TEAM, true],
      ['viewer', 'get', 'deliverypolicies.mailroute.io --subresource=status', TEAM, true],
      ['viewer', 'create', 'deliverypolicies.mailroute.io', TEAM, false],
      ['viewer', 'list', 'maildomains.mailroute.io', OTHER, false],
    ] as const)('RBAC: tenant %s may %s %s in "%s": %s', async (who, verb, resource, ns, allowed) => {
      const r = await ctx.cp.kubectl([
        'auth',
        'can-i',
        verb,
        ...resource.split(' '),
        '-n',
        ns,
        `--as=system:serviceaccount:${TEAM}:${who}`,
      ]);
      expect(r.stdout.trim(), r.stderr).toBe(allowed ? 'yes' : 'no');
    });

    it('a tenant editor (own token) creates a MailDomain and a DeliveryPolicy, and cannot write their status', async () => {
      const editor = await tokenKubeconfig(TEAM, 'editor');
      const policy = {
        apiVersion: 'mailroute.io/v1alpha1',
        kind: 'DeliveryPolicy',
        metadata: { name: 'shop', namespace: TEAM },
        spec: { domainRef: { name: 'shop' }, mode: 'Direct', primary: 'legacy' },
      };
      const created = await apply([mailDomain('shop', 'mail.legacy.example'), policy], editor);
      expect(created.code, created.stderr).toBe(0);
      // A real PATCH of the status subresource with the editor's token (kubectl patch would GET first).
      const kc = new KubeConfig();
      kc.loadFromFile(editor);
      const status = await kc
        .makeApiClient(CustomObjectsApi)
        .patchNamespacedCustomObjectStatus(
          {
            group: 'mailroute.io',
            version: 'v1alpha1',
            namespace: TEAM,
            plural: 'deliverypolicies',
            name: 'shop',
            body: { status: { observedGeneration: 1 } },
          },
          setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
        )
        .then(
          () => 'patched',
          (err: unknown) => String((err as { body?: unknown }).body ?? err),
        );
      expect(status).toContain(
        `cannot patch resource \\"deliverypolicies/status\\" in API group \\"mailroute.io\\" in the namespace \\"${TEAM}\\"`,
      );
      // ... nor create anything in another team's namespace
      const other = await apply([{ ...policy, metadata: { name: 'shop', namespace: OTHER } }], editor);
      expect(other.code).not.toBe(0);
      expect(other.stderr).toContain('forbidden');
      // a viewer reads them, status included, and cannot change them
      const viewer = await tokenKubeconfig(TEAM, 'viewer');
      const get = await ctx.cp.kubectl([
        '--kubeconfig',
        viewer,
        'get',
        'deliverypolicy.mailroute.io',
        'shop',
        '-n',
        TEAM,
      ]);
      expect(get.code, get.stderr).toBe(0);
      const del = await ctx.cp.kubectl([
        '--kubeconfig',
        viewer,
        'delete',
        'deliverypolicy.mailroute.io',
        'shop',
        '-n',
        TEAM,
      ]);
      expect(del.code).not.toBe(0);
      expect(del.stderr).toContain('forbidden');
    });

    /** Server-side dry run of a MailDomain as the tenant editor: the admission chain runs, nothing is stored. */
    const tryCreate = async (name: string, host: string): Promise<{ code: number; stderr: string }> =>
      ctx.cp.kubectl(
        ['--kubeconfig', join(work, `${TEAM}-editor.kubeconfig`), 'create', '--dry-run=server', '-f', '-'],
        { stdin: JSON.stringify(mailDomain(name, host)) },
      );

    it('installs the ValidatingAdmissionPolicy and binding; it comes into force', async () => {
      const r = await apply([
        chartObject('ValidatingAdmissionPolicy', POLICY),
        chartObject('ValidatingAdmissionPolicyBinding', POLICY),
      ]);
      expect(r.code, r.stderr).toBe(0);
      // (Its status.typeChecking is written by kube-controller-manager, which this control plane does not run: the
      // expressions are exercised by the cases below instead.)
      // The admission plugin picks the policy and binding up from its informers: wait until it refuses.
      await waitFor(async () => ((await tryCreate('probe', '127.0.0.1')).code !== 0 ? true : undefined), {
        timeoutMs: 30_000,
        what: 'the policy in force',
      });
    });

    it.each([
      ['127.0.0.1', 'loopback, unspecified, link-local and metadata addresses are not permitted'],
      ['127.9.8.7', 'loopback'],
      ['0.0.0.0', 'loopback, unspecified'],
      ['::1', 'loopback'],
      ['::', 'loopback, unspecified'],
      ['fe80::1', 'link-local'],
      ['169.254.169.254', 'metadata addresses'],
      ['100.100.100.200', 'metadata addresses'],
      ['fd00:ec2::254', 'metadata addresses'],
      ['2130706433', 'no decimal, hex, octal or short forms'],
      ['0x7f000001', 'no decimal, hex, octal or short forms'],
      ['0X7F.0.0.1', 'no decimal, hex, octal or short forms'],
      ['0177.0.0.1', 'no decimal, hex, octal or short forms'],
      ['127.1', 'no decimal, hex, octal or short forms'],
      ['0', 'no decimal, hex, octal or short forms'],
      ['::ffff:127.0.0.1', 'without an embedded IPv4 address'],
      ['::127.0.0.1', 'without an embedded IPv4 address'],
      ['localhost', 'localhost, metadata and Kubernetes API server names'],
      ['LocalHost', 'localhost'],
      ['smtp.localhost', 'localhost'],
      ['metadata.google.internal', 'metadata'],
      ['kubernetes.default.svc', 'Kubernetes API server'],
      ['kubernetes.default.svc.cluster.local', 'Kubernetes API server'],
    ])('refuses a MailDomain with host %s at admission', async (host, message) => {
      const r = await tryCreate('bad', host);
      expect(r.code, `${host} was admitted`).not.toBe(0);
      expect(r.stderr).toContain(
        `ValidatingAdmissionPolicy '${POLICY}' with binding '${POLICY}' denied request`,
      );
      expect(r.stderr).toContain(`spec.servers[].host: ${host.toLowerCase()}: `);
      expect(r.stderr).toContain(message);
    });

    it.each([
      'mail.legacy.example',
      'smtp.zoho.eu',
      'cafe.de', // hex digits only, but a name
      '0x.example', // a numeric-looking label, but a name
      '192.0.2.25',
      '10.20.30.40', // cluster ranges are the connect-time destination policy's, not admission's
      '2001:db8::25',
    ])('admits a MailDomain with host %s', async (host) => {
      const r = await tryCreate('good', host);
      expect(r.code, r.stderr).toBe(0);
    });

    it('an update that leaves spec.servers alone is admitted; one that changes a host to loopback is refused', async () => {
      // A MailDomain stored while the policy was off (binding removed), then the binding back.
      const binding = chartObject('ValidatingAdmissionPolicyBinding', POLICY);
      expect((await ctx.cp.kubectl(['delete', 'validatingadmissionpolicybinding', POLICY])).code).toBe(0);
      await waitFor(async () => ((await tryCreate('probe', '127.0.0.1')).code === 0 ? true : undefined), {
        timeoutMs: 30_000,
        what: 'the policy out of force',
      });
      expect((await apply([mailDomain('old', '127.0.0.1')])).code).toBe(0);
      expect((await apply([binding])).code).toBe(0);
      await waitFor(async () => ((await tryCreate('probe', '127.0.0.1')).code !== 0 ? true : undefined), {
        timeoutMs: 30_000,
        what: 'the policy in force again',
      });
      const label = await ctx.cp.kubectl(['label', 'maildomain.mailroute.io', 'old', '-n', TEAM, 'team=a']);
      expect(label.code, label.stderr).toBe(0);
      const patch = await ctx.cp.kubectl([
        'patch',
        'maildomain.mailroute.io',
        'old',
        '-n',
        TEAM,
        '--type=json',
        '-p',
        JSON.stringify([{ op: 'replace', path: '/spec/servers/0/host', value: '2130706433' }]),
      ]);
      expect(patch.code).not.toBe(0);
      expect(patch.stderr).toContain('spec.servers[].host: 2130706433: ');
    });
  });
