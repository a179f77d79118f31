// The chart against a real kube-apiserver (test/controlplane): kubeconform -strict with the server's own OpenAPI
// schemas and our CRDs, `helm install` (bad values refused with the schema's message), the objects it creates, the
// RBAC it grants (kubectl auth can-i as each ServiceAccount), and the operator, run as a process with the chart's
// arguments and the chart's ServiceAccount token, programming an example. There is no kubelet, scheduler or
// controller-manager: no pod runs, the StatefulSet creates no PVCs, the LoadBalancer gets no address.
import { spawn, type ChildProcess } from 'node:child_process';
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { freePort } from '../support/net.ts';
import { describeCluster, waitEstablished } from '../controlplane/suite.ts';
import { waitFor } from '../support/wait.ts';
import { argoHealth, findLua } from './argocd-health.ts';
import { openApiPath, schemasFromCrds, schemasFromOpenApi, type OpenApiV3Document } from './kube-schemas.ts';
import {
  ALL_FEATURES_VALUES,
  CHART_DIR,
  describeWithTools,
  findKstatus,
  findTools,
  helmTemplate,
  KUBE_VERSION,
  parseObjects,
  REPO_ROOT,
  run,
  type K8sObject,
  type Tools,
} from './tools.ts';

type Json = Record<string, unknown>;
const NS = 'mailroute-system';
const RELEASE = 'mr';
// With autoscaling on (the default) the chart leaves spec.replicas to the HPA; with no controller-manager running, it
// stays at the API server's default of 1.
const NONE_REPORTED = `0/1 relays programmed; ${RELEASE}-mailroute-relay-0 has not reported`;
const MAIL_NS = 'mail';
const EXAMPLE = join(REPO_ROOT, 'examples', 'demo', 'mailroute.yaml');
const HERE = join(REPO_ROOT, 'test', 'helm');

const found = findTools();
const kstatusBin = findKstatus();
if (kstatusBin === undefined && process.env.MAILROUTE_REQUIRE_ENVTEST !== '1') {
  console.warn(
    '\n!! SKIPPING the Flux kstatus checks: the kstatus CLI is not built (bash test/helm/build-kstatus.sh; .ci/run builds it)\n',
  );
}
const tools: Tools = found.ok ? found.tools : { helm: 'helm', kubeconform: 'kubeconform' };

// Missing helm/kubeconform: a loud skip (a failure under MAILROUTE_REQUIRE_ENVTEST=1), like a missing control plane.
if (!found.ok) describeWithTools('helm chart on a real API server', () => undefined);
else
  describeCluster(
    'helm chart on a real API server',
    (ctx) => {
      let work = '';
      const procs = new Map<string, { child: ChildProcess; log: string }>();
      beforeAll(() => {
        work = mkdtempSync(join(tmpdir(), 'mailroute-helm-'));
      });
      const stopAll = async (): Promise<void> => {
        for (const { child } of procs.values()) {
          if (child.exitCode !== null || child.signalCode !== null) continue;
          const exited = new Promise((r) => child.once('exit', r));
          child.kill('SIGTERM');
          await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000).unref())]);
          if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
        }
      };
      afterAll(async () => {
        await stopAll();
        // A relay stopped with SIGTERM deletes its heartbeat Lease (with the chart's RBAC), so it stops counting at once.
        expect(procs.get('relay')?.child.exitCode, procs.get('relay')?.log.slice(-2000)).toBe(0);
        const lease = await ctx.cp.kubectl([
          'get',
          'lease',
          'mailroute-relay-mr-mailroute-relay-0',
          '-n',
          NS,
        ]);
        expect(lease.stderr).toContain('NotFound');
        if (work !== '') rmSync(work, { recursive: true, force: true });
      });

      /** A kubeconfig that authenticates with a token of the chart's ServiceAccount (TokenRequest): RBAC as in a pod. */
      const serviceAccountKubeconfig = async (sa: string): Promise<string> => {
        const token = await ctx.cp.kubectl(['create', 'token', sa, '-n', NS, '--duration=1h']);
        expect(token.code, token.stderr).toBe(0);
        const cluster = ctx.cp.kubeconfig.getCurrentCluster()!;
        const ca = cluster.caData ?? Buffer.from(readFileSync(cluster.caFile!)).toString('base64');
        const path = join(work, `${sa}.kubeconfig`);
        const doc = {
          apiVersion: 'v1',
          kind: 'Config',
          clusters: [
            { name: 'envtest', cluster: { server: ctx.cp.server, 'certificate-authority-data': ca } },
          ],
          users: [{ name: sa, user: { token: token.stdout.trim() } }],
          contexts: [{ name: sa, context: { cluster: 'envtest', user: sa, namespace: NS } }],
          'current-context': sa,
        };
        writeFileSync(path, JSON.stringify(doc), { mode: 0o600 });
        return path;
      };

      /**
       * The container of a rendered workload as a local process: its args with $(VAR) expanded from its env (the
       * downward API values given in `pod`), flags rewritten by `rewrite`, run with this checkout's bin/mailroute.js.
       */
      const runContainer = async (
        name: string,
        kind: 'Deployment' | 'StatefulSet',
        pod: Record<string, string>,
        kubeconfig: string,
        rewrite: (arg: string) => string,
        extraEnv: Record<string, string> = {},
      ): Promise<{ exited: () => string }> => {
        const w = parseObjects(await helmTemplate(tools, [], RELEASE, NS)).find(
          (o): o is K8sObject => o.kind === kind,
        )!;
        const c = ((((w.spec as Json).template as Json).spec as Json).containers as Json[])[0]!;
        const env: Record<string, string> = {};
        for (const e of c.env as Json[])
          env[String(e.name)] = typeof e.value === 'string' ? e.value : (pod[String(e.name)] ?? '');
        Object.assign(env, extraEnv);
        const args = (c.args as string[]).map((a) =>
          rewrite(a.replace(/\$\((\w+)\)/g, (_m, v: string) => env[v] ?? '')),
        );
        const child = spawn(process.execPath, [join(REPO_ROOT, 'bin', 'mailroute.js'), ...args], {
          cwd: REPO_ROOT,
          env: { ...process.env, ...env, KUBECONFIG: kubeconfig },
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        const entry = { child, log: '' };
        procs.set(name, entry);
        child.stdout.setEncoding('utf8').on('data', (d: string) => (entry.log += d));
        child.stderr.setEncoding('utf8').on('data', (d: string) => (entry.log += d));
        return {
          exited: () =>
            child.exitCode !== null
              ? `${name} exited (${String(child.exitCode)}):\n${entry.log.slice(-3000)}`
              : '',
        };
      };

      /** kstatus of the live mailroute objects in MAIL_NS, as Flux's health checks compute it: "Kind/name\tStatus\tmsg". */
      const kstatus = async (): Promise<string[]> => {
        if (kstatusBin === undefined)
          throw new Error('kstatus CLI not built: bash test/helm/build-kstatus.sh');
        const list = await ctx.cp.kubectl([
          'get',
          'maildomains,deliverypolicies',
          '-n',
          MAIL_NS,
          '-o',
          'json',
        ]);
        expect(list.code, list.stderr).toBe(0);
        const r = await run(kstatusBin, [], { stdin: list.stdout });
        expect(r.code, r.stderr).toBe(0);
        return r.stdout.trim().split('\n').sort();
      };
      const kstatusRequired = kstatusBin !== undefined || process.env.MAILROUTE_REQUIRE_ENVTEST === '1';

      /** Health of a live object per docs/gitops/argocd-health.lua (lua5.4), as Argo CD would show it. */
      const argo = async (kind: string, name: string): Promise<string> => {
        const lua = findLua('lua5.4');
        if (lua === undefined) return 'lua5.4 missing';
        const h = await argoHealth(lua, await getJson([`${kind}.mailroute.io`, name, '-n', MAIL_NS]));
        return `${h.status}: ${h.message}`;
      };

      const helm = (args: string[]): ReturnType<typeof run> =>
        run(tools.helm, [...args, '--kubeconfig', ctx.cp.kubeconfigPath]);
      /** `helm install` of the chart as RELEASE into NS, with `args`. */
      const helmInstall = (...args: string[]): ReturnType<typeof run> =>
        helm(['install', RELEASE, CHART_DIR, '-n', NS, ...args]);
      const getJson = async (args: string[]): Promise<Json> => {
        const r = await ctx.cp.kubectl(['get', ...args, '-o', 'json']);
        if (r.code !== 0) throw new Error(`kubectl get ${args.join(' ')}: ${r.stderr}`);
        return JSON.parse(r.stdout) as Json;
      };

      it('validates the rendered chart with kubeconform -strict (API server schemas + our CRDs)', async () => {
        const defaults = await helmTemplate(tools);
        const all = await helmTemplate(tools, ['-f', ALL_FEATURES_VALUES]);
        const objects = [...parseObjects(defaults), ...parseObjects(all)];
        // Schemas of every Kubernetes kind the chart renders, from the server's OpenAPI v3 documents.
        const builtin = [...new Set(objects.map((o) => o.apiVersion))].filter(
          (v) => !v.startsWith('mailroute.io/') && !v.startsWith('monitoring.coreos.com/'),
        );
        const docs: OpenApiV3Document[] = [];
        for (const v of builtin) {
          const r = await ctx.cp.kubectl(['get', '--raw', `/openapi/v3/${openApiPath(v)}`]);
          expect(r.code, r.stderr).toBe(0);
          docs.push(JSON.parse(r.stdout) as OpenApiV3Document);
        }
        const schemaDir = join(work, 'schemas');
        mkdirSync(schemaDir);
        const files = schemasFromOpenApi(docs);
        const crds = readdirSync(join(REPO_ROOT, 'crds')).flatMap((f) =>
          parseAllDocuments(readFileSync(join(REPO_ROOT, 'crds', f), 'utf8')).map((d) => d.toJS() as unknown),
        );
        for (const [name, schema] of schemasFromCrds(crds)) files.set(name, schema);
        for (const [name, schema] of files) writeFileSync(join(schemaDir, name), JSON.stringify(schema));
        // prometheus-operator's kinds: minimal hand-written strict schemas (test/helm/schemas), not the full CRDs.
        for (const f of readdirSync(join(HERE, 'schemas')))
          copyFileSync(join(HERE, 'schemas', f), join(schemaDir, f));

        const kubeconform = (paths: string[]): ReturnType<typeof run> =>
          run(tools.kubeconform, [
            '-strict',
            '-summary',
            '-output',
            'json',
            '-kubernetes-version',
            KUBE_VERSION,
            '-schema-location',
            join(schemaDir, '{{ .ResourceKind }}{{ .KindSuffix }}.json'),
            ...paths,
          ]);
        writeFileSync(join(work, 'default.yaml'), defaults);
        writeFileSync(join(work, 'all.yaml'), all);
        const ok = await kubeconform([join(work, 'default.yaml'), join(work, 'all.yaml'), EXAMPLE]);
        const summary = (JSON.parse(ok.stdout) as { summary: Record<string, number> }).summary;
        expect(ok.stdout + ok.stderr).not.toContain('could not find schema');
        expect(summary).toMatchObject({ invalid: 0, errors: 0, skipped: 0 });
        expect(summary.valid).toBe(objects.length + 2);
        expect(ok.code).toBe(0);

        // The schemas are strict: an unknown field and a wrong type are both caught.
        const bad = all
          .replace(
            'terminationGracePeriodSeconds: 180',
            'terminationGracePeriodSeconds: 180\n      hostNetwrok: true',
          )
          .replace('minReplicas: 2', 'minReplicas: "2"');
        writeFileSync(join(work, 'bad.yaml'), bad);
        const refused = await kubeconform([join(work, 'bad.yaml')]);
        expect(refused.code).not.toBe(0);
        expect(refused.stdout).toContain("additional properties 'hostNetwrok' not allowed");
        expect(refused.stdout).toContain("at '/spec/minReplicas': got string, want integer");
      });

      it('refuses bad values at helm install with the schema message, and installs nothing', async () => {
        const r = await helmInstall('--create-namespace', '--set', 'relay.sevice.type=NodePort');
        expect(r.code).not.toBe(0);
        expect(r.stderr).toContain(
          "Error: INSTALLATION FAILED: values don't meet the specifications of the schema",
        );
        expect(r.stderr).toContain("at '/relay': additional properties 'sevice' not allowed");
        const wrongType = await helmInstall('--set-json', 'relay.service={"port":"25"}');
        expect(wrongType.code).not.toBe(0);
        expect(wrongType.stderr).toContain("at '/relay/service/port': got string, want integer");
        const ls = await helm(['list', '-A', '-q']);
        expect(ls.stdout.trim()).toBe('');
      });

      it('installs the chart: CRDs established, workloads, Services, HPA, PDBs, RBAC and the NOTES', async () => {
        // The namespace enforces the "restricted" Pod Security Standard and warns about workloads that would violate
        // it: the API server's PodSecurity admission checks the pod templates of the Deployment and StatefulSet.
        const ns = await ctx.cp.kubectl(['create', 'namespace', NS]);
        expect(ns.code, ns.stderr).toBe(0);
        const labels = ['enforce', 'warn', 'audit'].map((m) => `pod-security.kubernetes.io/${m}=restricted`);
        expect((await ctx.cp.kubectl(['label', 'namespace', NS, ...labels])).code).toBe(0);
        // The admission policy is off for this release: the example delivers to the test's SMTP peers on 127.0.0.1,
        // which the policy refuses (test/helm/tenancy.test.ts); the second release below installs it.
        const r = await helmInstall('--set', 'admissionPolicy.enabled=false');
        expect(r.code, r.stderr).toBe(0);
        expect(r.stderr).not.toContain('violate PodSecurity');
        // kubectl shows the API server's warnings (helm may not): the chart's workloads, default and with every feature
        // on, draw none; one with privilege escalation allowed does (so the check can fail).
        for (const args of [[], ['-f', ALL_FEATURES_VALUES]]) {
          // (the Pod is the `helm test` pod)
          for (const w of parseObjects(await helmTemplate(tools, args, 'psa', NS)).filter((o) =>
            ['Deployment', 'StatefulSet', 'Pod'].includes(o.kind),
          )) {
            const dry = await ctx.cp.kubectl(['apply', '--dry-run=server', '-n', NS, '-f', '-'], {
              stdin: JSON.stringify(w),
            });
            expect(dry.code, dry.stderr).toBe(0);
            expect(dry.stderr, `${w.kind} ${args.join(' ')}`).not.toContain('PodSecurity');
          }
        }
        const unrestricted = parseObjects(await helmTemplate(tools, [], 'psa', NS)).find(
          (o) => o.kind === 'Deployment',
        )!;
        const container = (
          (((unrestricted.spec as Json).template as Json).spec as Json).containers as Json[]
        )[0]!;
        container.securityContext = {
          ...(container.securityContext as Json),
          allowPrivilegeEscalation: true,
        };
        const probe = await ctx.cp.kubectl(['apply', '--dry-run=server', '-n', NS, '-f', '-'], {
          stdin: JSON.stringify(unrestricted),
        });
        expect(probe.stderr).toContain('would violate PodSecurity "restricted:latest"');
        expect(r.stdout).toContain('STATUS: deployed');
        expect(r.stdout).toContain("Find the relay's address");
        expect(r.stdout).toContain('inbound gateway');
        expect(r.stdout).toContain('ClusterRoles mr-mailroute-edit and -view aggregate into the built-in');
        expect(r.stdout).not.toContain('ValidatingAdmissionPolicy');
        expect(r.stdout).toContain('The operator may read Secrets in EVERY namespace');
        await waitEstablished(
          ctx.cp,
          ['maildomains.mailroute.io', 'deliverypolicies.mailroute.io', 'testrecipients.mailroute.io'],
          30_000,
        );
        const deploy = await getJson(['deployment', 'mr-mailroute-operator', '-n', NS]);
        expect((deploy.spec as Json).replicas).toBe(2);
        const sts = await getJson(['statefulset', 'mr-mailroute-relay', '-n', NS]);
        expect(((sts.spec as Json).volumeClaimTemplates as Json[]).length).toBe(1);
        const svc = await getJson(['service', 'mr-mailroute-relay', '-n', NS]);
        const port = ((svc.spec as Json).ports as Json[])[0]!;
        expect(port).toMatchObject({ port: 25, targetPort: 'smtp' });
        expect(port.nodePort, 'a LoadBalancer Service gets a node port').toEqual(expect.any(Number));
        const peers = await getJson(['service', 'mr-mailroute-relay-peers', '-n', NS]);
        expect((peers.spec as Json).clusterIP).toBe('None');
        for (const kind of ['hpa', 'pdb', 'serviceaccount', 'role', 'rolebinding']) {
          const list = await getJson([kind, '-n', NS, '-l', `app.kubernetes.io/instance=${RELEASE}`]);
          expect((list.items as unknown[]).length, kind).toBeGreaterThan(0);
        }
      });

      it.each([
        // [serviceaccount, verb, resource, namespace, allowed]
        ['operator', 'list', 'maildomains.mailroute.io', MAIL_NS, true],
        ['operator', 'watch', 'testrecipients.mailroute.io', '', true],
        ['operator', 'patch', 'deliverypolicies.mailroute.io --subresource=status', MAIL_NS, true],
        ['operator', 'patch', 'deliverypolicies.mailroute.io', MAIL_NS, false],
        ['operator', 'update', 'deliverypolicies.mailroute.io', MAIL_NS, false],
        ['operator', 'delete', 'maildomains.mailroute.io', MAIL_NS, false],
        ['operator', 'create', 'events', MAIL_NS, true],
        ['operator', 'patch', 'configmaps', NS, true],
        ['operator', 'delete', 'configmaps', NS, true],
        ['operator', 'create', 'configmaps', MAIL_NS, false],
        ['operator', 'update', 'leases.coordination.k8s.io/mailroute-operator', NS, true],
        ['operator', 'update', 'leases.coordination.k8s.io/mailroute-relay-mr-mailroute-relay-0', NS, false],
        ['operator', 'watch', 'leases.coordination.k8s.io', NS, true],
        ['operator', 'update', 'leases.coordination.k8s.io/mailroute-operator', MAIL_NS, false],
        ['operator', 'watch', 'secrets', MAIL_NS, true],
        ['operator', 'create', 'secrets', MAIL_NS, false],
        ['operator', 'patch', 'secrets/mailroute-credentials', NS, true],
        ['operator', 'patch', 'secrets/other', NS, false],
        ['operator', 'patch', 'secrets/mailroute-credentials', MAIL_NS, false],
        ['operator', 'list', 'pods', NS, false],
        ['relay', 'watch', 'configmaps/mailroute-routing', NS, true],
        ['relay', 'get', 'configmaps/mailroute-routing-0123abcd-0', NS, true],
        ['relay', 'list', 'configmaps', NS, false],
        ['relay', 'watch', 'configmaps', NS, false],
        ['relay', 'get', 'configmaps/mr-mailroute-owner', NS, true],
        ['relay', 'get', 'configmaps/mailroute-routing-0123abcd-0', MAIL_NS, false],
        ['relay', 'delete', 'configmaps/mailroute-routing-0123abcd-0', NS, false],
        ['relay', 'patch', 'configmaps/mailroute-routing', NS, false],
        ['relay', 'get', 'configmaps/mailroute-routing', MAIL_NS, false],
        ['relay', 'create', 'leases.coordination.k8s.io', NS, true],
        // Leases: create any (RBAC cannot narrow create by name), get/update/delete only its pods' heartbeats
        ['relay', 'delete', 'leases.coordination.k8s.io', NS, false],
        ['relay', 'delete', 'leases.coordination.k8s.io/mailroute-relay-mr-mailroute-relay-0', NS, true],
        ['relay', 'update', 'leases.coordination.k8s.io/mailroute-relay-mr-mailroute-relay-5', NS, true],
        ['relay', 'get', 'leases.coordination.k8s.io/mailroute-relay-mr-mailroute-relay-5', NS, true],
        ['relay', 'update', 'leases.coordination.k8s.io/mailroute-relay-mr-mailroute-relay-6', NS, false],
        ['relay', 'get', 'leases.coordination.k8s.io/mailroute-operator', NS, false],
        ['relay', 'update', 'leases.coordination.k8s.io/mailroute-operator', NS, false],
        ['relay', 'delete', 'leases.coordination.k8s.io/mailroute-operator', NS, false],
        ['relay', 'patch', 'leases.coordination.k8s.io/mailroute-operator', NS, false],
        ['relay', 'list', 'leases.coordination.k8s.io', NS, true],
        ['relay', 'watch', 'secrets/mailroute-credentials', NS, true],
        ['relay', 'get', 'secrets/other', NS, false],
        ['relay', 'get', 'secrets', MAIL_NS, false],
        ['relay', 'list', 'secrets', MAIL_NS, false],
        ['relay', 'list', 'maildomains.mailroute.io', MAIL_NS, false],
        ['relay', 'create', 'events', NS, false],
      ] as const)('RBAC: %s may %s %s in "%s": %s', async (who, verb, resource, ns, allowed) => {
        const r = await ctx.cp.kubectl([
          'auth',
          'can-i',
          verb,
          ...resource.split(' '),
          ...(ns === '' ? ['--all-namespaces'] : ['-n', ns]),
          `--as=system:serviceaccount:${NS}:mr-mailroute-${who}`,
        ]);
        expect(r.stdout.trim(), r.stderr).toBe(allowed ? 'yes' : 'no');
      });

      it("runs the operator with the chart's args and ServiceAccount: routing ConfigMap written, statuses set", async () => {
        expect((await ctx.cp.kubectl(['create', 'namespace', MAIL_NS])).code).toBe(0);
        const applied = await ctx.cp.kubectl(['apply', '-n', MAIL_NS, '-f', EXAMPLE]);
        expect(applied.code, applied.stderr).toBe(0);

        const httpPort = await freePort();
        const operator = await runContainer(
          'operator',
          'Deployment',
          { POD_NAME: 'mr-mailroute-operator-test', POD_NAMESPACE: NS },
          await serviceAccountKubeconfig('mr-mailroute-operator'),
          (a) => (a.startsWith('--http=') ? `--http=127.0.0.1:${httpPort}` : a),
        );

        const cm = await waitFor(
          async () => {
            if (operator.exited() !== '') throw new Error(operator.exited());
            const r = await ctx.cp.kubectl(['get', 'configmap', 'mailroute-routing', '-n', NS, '-o', 'json']);
            return r.code === 0 ? (JSON.parse(r.stdout) as Json) : undefined;
          },
          { timeoutMs: 30_000, what: `ConfigMap ${NS}/mailroute-routing` },
        );
        const data = cm.data as Record<string, string>;
        const table = JSON.parse(data['routing.json'] ?? '{}') as { domains?: Record<string, unknown> };
        expect(Object.keys(table.domains ?? {})).toEqual(['example.com']);
        expect((cm.metadata as Json).annotations).toHaveProperty(['mailroute.io/revision']);
        // owned by the release's owner ConfigMap: helm uninstall deletes that one, the garbage collector this one
        const owner = await getJson(['configmap', 'mr-mailroute-owner', '-n', NS]);
        expect((cm.metadata as Json).ownerReferences).toEqual([
          {
            apiVersion: 'v1',
            kind: 'ConfigMap',
            name: 'mr-mailroute-owner',
            uid: (owner.metadata as Json).uid,
          },
        ]);

        for (const kind of ['maildomain', 'deliverypolicy']) {
          const obj = await waitFor(
            async () => {
              if (operator.exited() !== '') throw new Error(operator.exited());
              const o = await getJson([`${kind}.mailroute.io`, 'example-com', '-n', MAIL_NS]);
              const st = o.status as { observedGeneration?: number; conditions?: Json[] } | undefined;
              const gen = (o.metadata as Json).generation;
              return st?.observedGeneration === gen && (st?.conditions ?? []).some((c) => c.type === 'Ready')
                ? o
                : undefined;
            },
            { timeoutMs: 30_000, what: `${kind} example-com status` },
          );
          const conds = new Map(((obj.status as Json).conditions as Json[]).map((c) => [String(c.type), c]));
          expect(conds.get('Accepted'), kind).toMatchObject({ status: 'True' });
          expect(conds.get('ResolvedRefs'), kind).toMatchObject({ status: 'True' });
          // No relay yet: the StatefulSet wants one, it has not reported, and Argo CD shows the object as progressing.
          expect(conds.get('Programmed'), kind).toMatchObject({
            status: 'False',
            reason: 'Pending',
            message: NONE_REPORTED,
          });
          expect(await argo(kind, 'example-com')).toBe(`Progressing: Programmed (Pending): ${NONE_REPORTED}`);
        }

        const health = await fetch(`http://127.0.0.1:${httpPort}/healthz`);
        expect(health.status).toBe(200);
        const metrics = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
        expect(metrics).toMatch(/leader_election_master_status\{[^}]*\} 1/);
      });

      it.runIf(kstatusRequired)(
        'Flux (kstatus): the objects are InProgress while no relay serves them',
        async () => {
          expect(await kstatus()).toEqual([
            `DeliveryPolicy/example-com\tInProgress\tProgrammed: ${NONE_REPORTED}`,
            `MailDomain/example-com\tInProgress\tProgrammed: ${NONE_REPORTED}`,
          ]);
        },
      );

      it("runs a relay with the chart's args and ServiceAccount: heartbeat Lease, the policy becomes Ready", async () => {
        const [smtp, http, admin] = [await freePort(), await freePort(), await freePort()];
        const spool = join(work, 'spool');
        mkdirSync(spool);
        const relay = await runContainer(
          'relay',
          'StatefulSet',
          { POD_NAME: 'mr-mailroute-relay-0', POD_NAMESPACE: NS, POD_IP: '127.0.0.1' },
          await serviceAccountKubeconfig('mr-mailroute-relay'),
          (a) =>
            a.startsWith('--listen=')
              ? `--listen=127.0.0.1:${smtp}`
              : a.startsWith('--http=')
                ? `--http=127.0.0.1:${http}`
                : a.startsWith('--admin=')
                  ? `--admin=127.0.0.1:${admin}`
                  : a.startsWith('--spool=')
                    ? `--spool=${spool}`
                    : a,
          { MAILROUTE_ROUTING_FILE_FALLBACK: join(work, 'no-mounted-file', 'routing.json') },
        );
        const lease = await waitFor(
          async () => {
            if (relay.exited() !== '') throw new Error(relay.exited());
            const r = await ctx.cp.kubectl([
              'get',
              'lease',
              'mailroute-relay-mr-mailroute-relay-0',
              '-n',
              NS,
              '-o',
              'json',
            ]);
            return r.code === 0 ? (JSON.parse(r.stdout) as Json) : undefined;
          },
          { timeoutMs: 30_000, what: 'the relay heartbeat Lease' },
        );
        expect(((lease.metadata as Json).annotations as Json)['mailroute.io/revision']).toEqual(
          expect.any(String),
        );
        const dpCondition = async (type: string): Promise<Json | undefined> => {
          if (relay.exited() !== '') throw new Error(relay.exited());
          const o = await getJson(['deliverypolicy.mailroute.io', 'example-com', '-n', MAIL_NS]);
          const conds = ((o.status as Json | undefined)?.conditions as Json[] | undefined) ?? [];
          return conds.find((c) => c.type === type);
        };
        const ready = await waitFor(
          async () => {
            const c = await dpCondition('Ready');
            return c?.status === 'True' ? c : undefined;
          },
          { timeoutMs: 30_000, what: 'DeliveryPolicy Ready=True' },
        );
        expect(ready.message).toBe('1/1 relays programmed');
        expect(await argo('deliverypolicy', 'example-com')).toBe('Healthy: 1/1 relays programmed');
        const readyz = await fetch(`http://127.0.0.1:${http}/readyz`);
        expect(readyz.status).toBe(200);
        // A scale-up is not Ready until the new relay reports, and the status names it.
        const scale = async (n: number): Promise<void> => {
          const r = await ctx.cp.kubectl([
            'scale',
            'statefulset',
            `${RELEASE}-mailroute-relay`,
            '-n',
            NS,
            `--replicas=${n}`,
          ]);
          expect(r.code, r.stderr).toBe(0);
        };
        await scale(2);
        const half = await waitFor(
          async () => {
            const c = await dpCondition('Programmed');
            return typeof c?.message === 'string' && c.message.startsWith('1/2') ? c : undefined;
          },
          { timeoutMs: 30_000, what: 'DeliveryPolicy Programmed 1/2 after the scale-up' },
        );
        expect(half).toMatchObject({
          status: 'False',
          message: `1/2 relays programmed; ${RELEASE}-mailroute-relay-1 has not reported`,
        });
        expect((await dpCondition('Ready'))?.status).toBe('False');
        await scale(1);
        await waitFor(async () => (await dpCondition('Ready'))?.status === 'True', {
          timeoutMs: 30_000,
          what: 'DeliveryPolicy Ready=True again at 1 replica',
        });
      });

      it.runIf(kstatusRequired)(
        'Flux (kstatus): the objects are Current once every relay serves them',
        async () => {
          await waitFor(
            async () => {
              const md = await getJson(['maildomain.mailroute.io', 'example-com', '-n', MAIL_NS]);
              return ((md.status as Json).conditions as Json[]).some(
                (c) => c.type === 'Ready' && c.status === 'True',
              );
            },
            { timeoutMs: 30_000, what: 'MailDomain Ready=True' },
          );
          expect(await kstatus()).toEqual([
            'DeliveryPolicy/example-com\tCurrent\tResource is Ready',
            'MailDomain/example-com\tCurrent\tResource is Ready',
          ]);
        },
      );

      it("with the relay's own token: the operator's leader Lease cannot be read or deleted, ConfigMaps not listed", async () => {
        const relay = await serviceAccountKubeconfig('mr-mailroute-relay');
        const as = (args: string[]): ReturnType<typeof ctx.cp.kubectl> =>
          ctx.cp.kubectl(['--kubeconfig', relay, ...args, '-n', NS]);
        const lease = 'mailroute-operator';
        expect((await ctx.cp.kubectl(['get', 'lease', lease, '-n', NS])).code, 'leader Lease exists').toBe(0);
        for (const verb of ['get', 'delete']) {
          const r = await as([verb, 'lease', lease]);
          expect(r.code, `${verb} lease ${lease}`).not.toBe(0);
          expect(r.stderr).toContain(
            `User "system:serviceaccount:${NS}:mr-mailroute-relay" cannot ${verb} resource "leases"`,
          );
        }
        expect((await ctx.cp.kubectl(['get', 'lease', lease, '-n', NS])).code, 'still there').toBe(0);
        const list = await as(['get', 'configmaps']);
        expect(list.code).not.toBe(0);
        expect(list.stderr).toContain('cannot list resource "configmaps"');
        for (const name of ['mailroute-routing', `${RELEASE}-mailroute-owner`]) {
          const r = await as(['get', 'configmap', name, '-o', 'name']);
          expect(r.code, r.stderr).toBe(0);
        }
      });

      it('helm uninstall removes the workloads and keeps the CRDs (crds.keep)', async () => {
        await stopAll();
        const r = await helm(['uninstall', RELEASE, '-n', NS]);
        expect(r.code, r.stderr).toBe(0);
        expect(r.stdout + r.stderr).toContain('kept due to the resource policy');
        const deploy = await ctx.cp.kubectl(['get', 'deployment', 'mr-mailroute-operator', '-n', NS]);
        expect(deploy.code).not.toBe(0);
        const crd = await ctx.cp.kubectl(['get', 'crd', 'maildomains.mailroute.io']);
        expect(crd.code, crd.stderr).toBe(0);
        const md = await ctx.cp.kubectl(['get', 'maildomain', 'example-com', '-n', MAIL_NS]);
        expect(md.code, 'the custom resources survive the uninstall').toBe(0);
        // The owner of mailroute-routing and the Leases is gone: kube-controller-manager's garbage collector (not run
        // by the test control plane) deletes what references it.
        const owner = await ctx.cp.kubectl(['get', 'configmap', 'mr-mailroute-owner', '-n', NS]);
        expect(owner.stderr).toContain('NotFound');
      });

      it('installs every optional feature (but the prometheus-operator kinds) beside the CRDs the first release kept', async () => {
        for (const ns of ['mail-staging', 'monitoring'])
          expect((await ctx.cp.kubectl(['create', 'namespace', ns])).code).toBe(0);
        const r = await helm([
          'install',
          'full',
          CHART_DIR,
          '-n',
          'mailroute-full',
          '--create-namespace',
          '-f',
          ALL_FEATURES_VALUES,
          // No ServiceMonitor/PrometheusRule CRDs on this API server; the CRDs are the first release's (kept).
          '--set',
          'serviceMonitor.enabled=false,prometheusRule.enabled=false,crds.enabled=false',
        ]);
        expect(r.code, r.stderr).toBe(0);
        expect(r.stdout).toContain(
          'ValidatingAdmissionPolicy full-mailroute-destinations refuses a MailDomain whose servers[].host',
        );
        expect(r.stdout).not.toContain('read Secrets in EVERY namespace');
        const nps = await getJson(['networkpolicy', '-n', 'mailroute-full']);
        expect((nps.items as Json[]).map((o) => (o.metadata as Json).name).sort()).toEqual([
          'full-mailroute-operator',
          'full-mailroute-relay',
        ]);
        const hpa = await getJson(['hpa', 'full-mailroute-relay', '-n', 'mailroute-full']);
        expect(((hpa.spec as Json).metrics as Json[]).map((m) => m.type)).toEqual(['Resource', 'Pods']);
        for (const ns of ['mail', 'mail-staging']) {
          const rb = await getJson(['rolebinding', 'full-mailroute-operator-secrets', '-n', ns]);
          expect((rb.roleRef as Json).name).toBe('full-mailroute-operator-secrets');
        }
        // rbac.secretNamespaces: the operator may list Secrets in the listed namespaces only, not cluster-wide.
        for (const [ns, allowed] of [
          ['mail', 'yes'],
          ['mail-staging', 'yes'],
          ['kube-system', 'no'],
          ['', 'no'],
        ] as const) {
          const can = await ctx.cp.kubectl([
            'auth',
            'can-i',
            'list',
            'secrets',
            ...(ns === '' ? ['--all-namespaces'] : ['-n', ns]),
            '--as=system:serviceaccount:mailroute-full:full-mailroute-operator',
          ]);
          expect(can.stdout.trim(), `list secrets in "${ns}"`).toBe(allowed);
        }
        // the tenant roles and the admission policy, installed by helm
        for (const kind of ['clusterrole/full-mailroute-edit', 'clusterrole/full-mailroute-view']) {
          expect((await ctx.cp.kubectl(['get', kind])).code, kind).toBe(0);
        }
        for (const kind of ['validatingadmissionpolicy', 'validatingadmissionpolicybinding']) {
          expect((await ctx.cp.kubectl(['get', kind, 'full-mailroute-destinations'])).code, kind).toBe(0);
        }
        const dashboard = await getJson(['configmap', 'full-mailroute-dashboard', '-n', 'monitoring']);
        expect(Object.keys(dashboard.data as Json)).toEqual(['mailroute.json']);
        const svc = await getJson(['service', 'full-mailroute-relay', '-n', 'mailroute-full']);
        expect(svc.spec).toMatchObject({
          externalTrafficPolicy: 'Local',
          loadBalancerClass: 'service.k8s.aws/nlb',
        });
        expect((await helm(['uninstall', 'full', '-n', 'mailroute-full'])).code).toBe(0);
      });
    },
    { crds: false },
  );
