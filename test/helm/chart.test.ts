// Chart checks that need helm but no cluster: lint, the values schema (unknown keys and wrong types fail with the
// schema's message), secure defaults on every container, least-privilege RBAC, the CRDs equal to crds/, and alert and
// dashboard queries naming only metrics that exist. kubeconform and `helm install` run in cluster.test.ts.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { beforeAll, expect, it } from 'vitest';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { chartCrdTemplate, withoutChartMetadata } from '../../scripts/chart-crds.ts';
import { valuesTable, withValuesTable } from '../../scripts/chart-readme.ts';
import { createRelayMetrics } from '../../relay/telemetry/metrics.ts';
import { parseRelayConfig } from '../../relay/config.ts';
import { parseOperatorConfig } from '../../operator/config.ts';
import { checkDestination } from '../../routing/destinations.ts';
import { operatorRbacObjects } from '../../operator/rbac.ts';
import { probeTargets } from '../../cli/commands/probe.ts';
import { relayRbacObjects } from '../../relay/cluster/rbac.ts';
import { createOperatorMetrics } from '../../operator/telemetry/metrics.ts';
import { parser as promql } from '@prometheus-io/lezer-promql';
import {
  ALL_FEATURES_VALUES,
  CHART_DIR,
  describeWithTools,
  helmTemplate,
  KUBE_VERSION,
  parseObjects,
  REPO_ROOT,
  run,
  type K8sObject,
} from './tools.ts';

type Json = Record<string, unknown>;
const CRDS_DIR = join(REPO_ROOT, 'crds');

function byKind(objects: K8sObject[], kind: string): K8sObject[] {
  return objects.filter((o) => o.kind === kind);
}
function one(objects: K8sObject[], kind: string, nameSuffix = ''): K8sObject {
  const found = objects.filter((o) => o.kind === kind && o.metadata.name.endsWith(nameSuffix));
  if (found.length !== 1) throw new Error(`expected one ${kind} *${nameSuffix}, found ${found.length}`);
  return found[0]!;
}
function podSpec(o: K8sObject): Json {
  return ((o.spec as Json).template as Json).spec as Json;
}
function containers(o: K8sObject): Json[] {
  const spec = podSpec(o);
  return [...((spec.initContainers as Json[] | undefined) ?? []), ...(spec.containers as Json[])];
}

describeWithTools('helm chart (lint, schema, rendering)', (tools) => {
  let defaults: K8sObject[] = [];
  let all: K8sObject[] = [];
  beforeAll(async () => {
    defaults = parseObjects(await helmTemplate(tools));
    all = parseObjects(await helmTemplate(tools, ['-f', ALL_FEATURES_VALUES]));
  });

  it.each([
    ['default values', []],
    ['every optional feature on', ['-f', ALL_FEATURES_VALUES]],
  ])('helm lint --strict passes with %s', async (_name, args) => {
    const r = await run(tools.helm, ['lint', '--strict', CHART_DIR, '--kube-version', KUBE_VERSION, ...args]);
    expect(r.stderr + r.stdout).toContain('1 chart(s) linted, 0 chart(s) failed');
    expect(r.code).toBe(0);
  });

  it.each([
    [
      'an unknown key',
      ['--set', 'relay.replicas=3'],
      "at '/relay': additional properties 'replicas' not allowed",
    ],
    [
      'an unknown top-level key',
      ['--set', 'operatorr.replicaCount=1'],
      "additional properties 'operatorr' not allowed",
    ],
    [
      'a string for an integer',
      ['--set', 'relay.replicaCount=two'],
      "at '/relay/replicaCount': got string, want integer",
    ],
    ['a value outside an enum', ['--set', 'relay.service.type=External'], "at '/relay/service/type'"],
    ['a bad retry schedule', ['--set', 'relay.retrySchedule=often'], "at '/relay/retrySchedule'"],
    ['a number for a boolean', ['--set', 'crds.enabled=1'], "at '/crds/enabled': got number, want boolean"],
  ])('refuses %s with the schema message', async (_name, args, message) => {
    const r = await run(tools.helm, ['template', 'mr', CHART_DIR, '--kube-version', KUBE_VERSION, ...args]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("values don't meet the specifications of the schema");
    expect(r.stderr).toContain(message);
  });

  it.each([
    [['--set', 'relay.tls.enabled=true'], 'relay.tls.secretName is required'],
    [['--set', 'operator.leaderElection.enabled=false'], 'operator.leaderElection.enabled must be true'],
    [['--set', 'relay.autoscaling.minReplicas=9'], 'minReplicas must not be greater than maxReplicas'],
    [
      ['--set', 'relay.shutdown.drainTimeoutSeconds=600'],
      'relay.terminationGracePeriodSeconds (180) must be at least preStopSleepSeconds + shutdown.sessionTimeoutSeconds + shutdown.drainTimeoutSeconds + 10 = 645',
    ],
  ])('refuses inconsistent values %j', async (args, message) => {
    const r = await run(tools.helm, ['template', 'mr', CHART_DIR, '--kube-version', KUBE_VERSION, ...args]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(message);
  });

  it('describes every key of values.yaml in values.schema.json, with additionalProperties: false', () => {
    const values = parseYaml(readFileSync(join(CHART_DIR, 'values.yaml'), 'utf8')) as Json;
    const schema = JSON.parse(readFileSync(join(CHART_DIR, 'values.schema.json'), 'utf8')) as Json;
    const problems: string[] = [];
    const walk = (v: unknown, s: Json | undefined, path: string): void => {
      if (s === undefined) return void problems.push(`${path}: not in the schema`);
      if (v === null || typeof v !== 'object' || Array.isArray(v)) return;
      const props = s.properties as Record<string, Json> | undefined;
      if (props === undefined) return; // a free-form map (labels, annotations, a Kubernetes object)
      if (s.additionalProperties !== false) problems.push(`${path}: additionalProperties is not false`);
      for (const [k, child] of Object.entries(v)) walk(child, props[k], `${path}.${k}`);
    };
    walk(values, schema, '');
    expect(problems).toEqual([]);
  });

  it("versions the chart's appVersion like package.json (the image tag defaults to it)", () => {
    const chart = parseYaml(readFileSync(join(CHART_DIR, 'Chart.yaml'), 'utf8')) as { appVersion: string };
    const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string };
    expect(chart.appVersion).toBe(pkg.version);
    const [c] = containers(one(defaults, 'Deployment', '-operator'));
    expect(c!.image).toBe(`ghcr.io/mailroute/mailroute:${pkg.version}`);
    const [d] = containers(one(all, 'StatefulSet', '-relay'));
    expect(d!.image).toMatch(/^ghcr\.io\/mailroute\/mailroute@sha256:[0-9a-f]{64}$/);
  });

  it('keeps the values table of the chart README generated (run `npm run gen:chart`)', () => {
    const readme = readFileSync(join(CHART_DIR, 'README.md'), 'utf8');
    const table = valuesTable(
      readFileSync(join(CHART_DIR, 'values.yaml'), 'utf8'),
      readFileSync(join(CHART_DIR, 'values.schema.json'), 'utf8'),
    );
    expect(readme, 'charts/mailroute/README.md is stale: run npm run gen:chart').toBe(
      withValuesTable(readme, table),
    );
    expect(table).toContain('| `relay.service.externalTrafficPolicy` | string | `"Cluster"` |');
  });

  it('puts secure defaults on every container (non-root, read-only root, no capabilities, seccomp, no escalation)', () => {
    for (const objects of [defaults, all]) {
      const workloads = objects.filter((o) => ['Deployment', 'StatefulSet'].includes(o.kind));
      expect(workloads.map((o) => o.kind).sort()).toEqual(['Deployment', 'StatefulSet']);
      for (const w of workloads) {
        const pod = podSpec(w).securityContext as Json;
        expect(pod.runAsNonRoot, w.metadata.name).toBe(true);
        expect((pod.seccompProfile as Json).type).toBe('RuntimeDefault');
        for (const c of containers(w)) {
          const sc = c.securityContext as Json;
          expect(sc, `${w.metadata.name}/${String(c.name)}`).toMatchObject({
            allowPrivilegeEscalation: false,
            readOnlyRootFilesystem: true,
            runAsNonRoot: true,
            capabilities: { drop: ['ALL'] },
            seccompProfile: { type: 'RuntimeDefault' },
          });
          expect(c.resources).toHaveProperty('requests');
        }
      }
    }
  });

  it.each([
    ['the HPA (minReplicas 2)', [], 2],
    [
      'no HPA, replicaCount 3',
      ['--set', 'relay.autoscaling.enabled=false', '--set', 'relay.replicaCount=3'],
      3,
    ],
  ] as const)(
    'has a `helm test` pod that probes /readyz on every relay through the headless peer Service, with %s',
    async (_name, args, min) => {
      const objects = parseObjects(await helmTemplate(tools, [...args]));
      const pods = byKind(objects, 'Pod');
      expect(pods.map((p) => p.metadata.name)).toEqual(['mr-mailroute-test-relays-ready']);
      const pod = pods[0]!;
      expect(pod.metadata.annotations?.['helm.sh/hook']).toBe('test');
      // not hook-succeeded: `helm test --logs` reads the pod's logs after it succeeded (test/node/chart.test.ts)
      expect(pod.metadata.annotations?.['helm.sh/hook-delete-policy']).toBe('before-hook-creation');
      const spec = pod.spec as Json;
      expect(spec.restartPolicy).toBe('Never');
      expect(spec.automountServiceAccountToken).toBe(false);
      const [c] = spec.containers as Json[];
      // the relay's image, running the image's own `mailroute probe`
      expect(c!.image).toBe(containers(one(objects, 'StatefulSet'))[0]!.image);
      expect(c!.securityContext).toMatchObject({ readOnlyRootFilesystem: true, runAsNonRoot: true });
      const argv = c!.args as string[];
      expect(argv[0]).toBe('probe');
      expect(argv).toContain('--all-addresses');
      expect(argv).toContain(`--min-addresses=${min}`);
      const url = argv.find((a) => a.startsWith('--url='))!.slice('--url='.length);
      const peers = one(objects, 'Service', '-relay-peers');
      expect((peers.spec as Json).publishNotReadyAddresses, 'every relay, ready or not, has an address').toBe(
        true,
      );
      const httpPort = ((peers.spec as Json).ports as Json[]).find((p) => p.name === 'http')!.port;
      expect(probeTargets(url)).toEqual([
        {
          label: url,
          host: 'mr-mailroute-relay-peers.mailroute-system.svc',
          port: httpPort,
          path: '/readyz',
          hostHeader: `mr-mailroute-relay-peers.mailroute-system.svc:${String(httpPort)}`,
        },
      ]);
    },
  );

  it('runs the operator as 2 replicas with leader election, probes and POD_NAMESPACE', () => {
    const d = one(defaults, 'Deployment', '-operator');
    expect((d.spec as Json).replicas).toBe(2);
    const [c] = containers(d);
    expect(c!.args).toEqual(
      expect.arrayContaining(['operator', '--leader-elect=true', '--namespace=$(POD_NAMESPACE)']),
    );
    expect(c!.args).toContain('--lease-name=mailroute-operator');
    expect(c!.livenessProbe).toMatchObject({ httpGet: { path: '/healthz', port: 'http' } });
    expect(c!.readinessProbe).toMatchObject({ httpGet: { path: '/readyz', port: 'http' } });
    const env = (c!.env as Json[]).map((e) => e.name);
    expect(env).toEqual(expect.arrayContaining(['POD_NAME', 'POD_NAMESPACE']));
    const pdb = one(defaults, 'PodDisruptionBudget', '-operator');
    expect((pdb.spec as Json).minAvailable).toBe(1);
  });

  it('prepares the spool for volumes that ignore fsGroup only when asked (relay.spool.volumePermissions)', async () => {
    expect(podSpec(one(defaults, 'StatefulSet')).initContainers).toBeUndefined();
    const on = parseObjects(
      await helmTemplate(tools, [
        '--set',
        'relay.spool.volumePermissions.enabled=true',
        '--set',
        'podSecurityContext.runAsUser=1234',
      ]),
    );
    const sts = one(on, 'StatefulSet');
    const [init, ...more] = podSpec(sts).initContainers as Json[];
    expect(more).toEqual([]);
    const relay = (podSpec(sts).containers as Json[])[0]!;
    expect(init!.image).toBe(relay.image);
    // root, but only the two capabilities chown needs, and nothing else widened
    expect(init!.securityContext).toEqual({
      runAsUser: 0,
      runAsGroup: 0,
      runAsNonRoot: false,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'], add: ['CHOWN', 'FOWNER'] },
      seccompProfile: { type: 'RuntimeDefault' },
    });
    expect((init!.command as string[]).at(-1)).toBe(
      'chown 1234:1000 /var/spool/mailroute && chmod 0750 /var/spool/mailroute',
    );
    expect(init!.volumeMounts).toEqual([{ name: 'spool', mountPath: '/var/spool/mailroute' }]);
    // the relay container itself is unchanged: non-root
    expect(relay.securityContext).toMatchObject({
      runAsNonRoot: true,
      readOnlyRootFilesystem: true,
    });
  });

  it('runs the relay as a StatefulSet with a spool PVC, the downward API, the routing file and a long grace period', () => {
    const s = one(defaults, 'StatefulSet', '-relay');
    const spec = s.spec as Json;
    expect(spec.replicas, 'the HPA owns replicas').toBeUndefined();
    expect(spec.serviceName).toBe('mr-mailroute-relay-peers');
    const vct = spec.volumeClaimTemplates as Json[];
    expect(vct.map((v) => (v.metadata as Json).name)).toEqual(['spool']);
    const pod = podSpec(s);
    expect(pod.terminationGracePeriodSeconds as number).toBeGreaterThanOrEqual(60);
    const [c] = containers(s);
    const env = new Map((c!.env as Json[]).map((e) => [String(e.name), e]));
    for (const [name, path] of [
      ['POD_NAME', 'metadata.name'],
      ['POD_NAMESPACE', 'metadata.namespace'],
      ['POD_IP', 'status.podIP'],
    ] as const) {
      expect(env.get(name), name).toMatchObject({ valueFrom: { fieldRef: { fieldPath: path } } });
    }
    expect(c!.args).toEqual(
      expect.arrayContaining([
        'relay',
        '--configmap=$(POD_NAMESPACE)/mailroute-routing',
        '--listen=0.0.0.0:2525',
        '--spool=/var/spool/mailroute',
      ]),
    );
    expect(env.get('MAILROUTE_ROUTING_FILE_FALLBACK')).toMatchObject({
      value: '/etc/mailroute/routing/routing.json',
    });
    const volumes = new Map((pod.volumes as Json[]).map((v) => [String(v.name), v]));
    expect(volumes.get('routing')).toEqual({
      name: 'routing',
      configMap: { name: 'mailroute-routing', optional: true },
    });
    const mounts = (c!.volumeMounts as Json[]).map((m) => m.mountPath);
    expect(mounts).toEqual(
      expect.arrayContaining(['/var/spool/mailroute', '/etc/mailroute/routing', '/tmp']),
    );
    // With persistence off the spool is an emptyDir and there is no claim template.
    expect(c!.livenessProbe).toMatchObject({ httpGet: { path: '/healthz' } });
    expect(c!.readinessProbe).toMatchObject({ httpGet: { path: '/readyz' } });
  });

  it.each([
    ['default values', () => defaults],
    ['every optional feature on', () => all],
  ])("passes the relay arguments and env the relay's own parser accepts (%s)", (_name, objects) => {
    const [c] = containers(one(objects(), 'StatefulSet', '-relay'));
    const podEnv: Record<string, string> = {
      POD_NAME: 'mr-mailroute-relay-0',
      POD_NAMESPACE: 'mailroute-system',
    };
    const env: Record<string, string> = {};
    for (const e of c!.env as Json[])
      env[String(e.name)] = typeof e.value === 'string' ? e.value : (podEnv[String(e.name)] ?? '');
    const args = (c!.args as string[]).map((a) => a.replace(/\$\((\w+)\)/g, (_m, v: string) => env[v] ?? ''));
    expect(args[0]).toBe('relay');
    const parsed = parseRelayConfig(args.slice(1), env);
    if (parsed.ok !== true)
      throw new Error(`relay refuses the chart's args: ${parsed.ok === false ? parsed.error : 'help'}`);
    expect(parsed.config).toMatchObject({
      shutdownTimeoutMs: 30_000,
      drainOnShutdown: 'auto',
      drainTimeoutMs: 120_000,
    });
    expect(parsed.config.source).toEqual({
      kind: 'configmap',
      namespace: 'mailroute-system',
      name: 'mailroute-routing',
    }); // the chart's destination policy: the built-in cluster defaults plus destinations.deny (pod and service ranges)
    for (const a of ['127.0.0.1', '169.254.169.254', '10.96.0.1', '10.244.1.2']) {
      expect(checkDestination(parsed.config.destinations, a).permitted, a).toBe(false);
    }
    expect(checkDestination(parsed.config.destinations, '192.0.2.25').permitted).toBe(true);
  });

  it.each([
    ['default values', () => defaults],
    ['every optional feature on', () => all],
  ])("passes the operator arguments and env the operator's own parser accepts (%s)", (_name, objects) => {
    const [c] = containers(one(objects(), 'Deployment', '-operator'));
    const podEnv: Record<string, string> = {
      POD_NAME: 'mr-mailroute-operator-0',
      POD_NAMESPACE: 'mailroute-system',
    };
    const env: Record<string, string> = {};
    for (const e of c!.env as Json[])
      env[String(e.name)] = typeof e.value === 'string' ? e.value : (podEnv[String(e.name)] ?? '');
    const args = (c!.args as string[]).map((a) => a.replace(/\$\((\w+)\)/g, (_m, v: string) => env[v] ?? ''));
    expect(args[0]).toBe('operator');
    const parsed = parseOperatorConfig(args.slice(1), env);
    if (parsed.ok !== true)
      throw new Error(`operator refuses the chart's args: ${parsed.ok === false ? parsed.error : 'help'}`);
    expect(parsed.config).toMatchObject({
      namespace: 'mailroute-system',
      leaderElect: true,
      leaseName: 'mailroute-operator',
      configMapName: 'mailroute-routing',
      http: { host: '0.0.0.0', port: 8080 },
    });
    for (const a of ['127.0.0.1', '169.254.169.254', '10.96.0.1', '10.244.1.2']) {
      expect(checkDestination(parsed.config.destinations, a).permitted, a).toBe(false);
    }
  });

  it('exposes SMTP on a LoadBalancer port 25 -> 2525, a headless peer Service, an HPA and a PDB', async () => {
    const svc = one(defaults, 'Service', '-relay');
    expect(svc.spec).toMatchObject({
      type: 'LoadBalancer',
      externalTrafficPolicy: 'Cluster',
      ports: [{ name: 'smtp', port: 25, targetPort: 'smtp', protocol: 'TCP' }],
    });
    expect(one(all, 'Service', '-relay').spec).toMatchObject({ externalTrafficPolicy: 'Local' });
    const peers = one(defaults, 'Service', '-relay-peers');
    expect((peers.spec as Json).clusterIP).toBe('None');
    const hpa = one(defaults, 'HorizontalPodAutoscaler');
    expect(hpa.spec).toMatchObject({
      scaleTargetRef: { kind: 'StatefulSet', name: 'mr-mailroute-relay' },
      metrics: [{ type: 'Resource', resource: { name: 'cpu' } }],
    });
    const hpaAll = one(all, 'HorizontalPodAutoscaler');
    expect((hpaAll.spec as Json).metrics).toContainEqual(
      expect.objectContaining({
        type: 'Pods',
        pods: {
          metric: { name: 'mailroute_queue_messages' },
          target: { type: 'AverageValue', averageValue: '500' },
        },
      }) as unknown,
    );
    expect(one(defaults, 'PodDisruptionBudget', '-relay').spec).toMatchObject({ maxUnavailable: 1 });
    const fixed = parseObjects(
      await helmTemplate(tools, [
        '--set',
        'relay.autoscaling.enabled=false',
        '--set',
        'relay.replicaCount=3',
      ]),
    );
    expect(byKind(fixed, 'HorizontalPodAutoscaler')).toEqual([]);
    expect((one(fixed, 'StatefulSet').spec as Json).replicas).toBe(3);
    const ephemeral = parseObjects(
      await helmTemplate(tools, ['--set', 'relay.spool.persistence.enabled=false']),
    );
    const eps = one(ephemeral, 'StatefulSet');
    expect((eps.spec as Json).volumeClaimTemplates).toBeUndefined();
    expect(podSpec(eps).volumes).toContainEqual({ name: 'spool', emptyDir: { sizeLimit: '2Gi' } });
  });

  it('grants least privilege: no wildcards, secrets read-only but mailroute-credentials, the relay limited to its ConfigMap and Secret', () => {
    for (const objects of [defaults, all]) {
      for (const role of objects.filter((o) => o.kind === 'Role' || o.kind === 'ClusterRole')) {
        for (const rule of role.rules as Json[]) {
          const where = `${role.kind} ${role.metadata.name}`;
          expect(rule.verbs, where).not.toContain('*');
          expect(rule.resources, where).not.toContain('*');
          expect(rule.apiGroups, where).not.toContain('*');
          // Secrets are read-only, except the operator's own mailroute-credentials in its namespace: patch by name,
          // and create (which Kubernetes cannot narrow by resourceNames) only in the operator's namespaced Role.
          if ((rule.resources as string[]).includes('secrets')) {
            const writes = (rule.verbs as string[]).filter((v) => !['get', 'list', 'watch'].includes(v));
            if (writes.length > 0) {
              expect(`${role.kind} ${role.metadata.name}`, where).toBe('Role mr-mailroute-operator');
              if (writes.includes('patch'))
                expect(rule.resourceNames, where).toEqual(['mailroute-credentials']);
              expect(
                writes.every((v) => ['create', 'patch'].includes(v)),
                where,
              ).toBe(true);
            }
          }
          for (const v of ['escalate', 'bind', 'impersonate']) expect(rule.verbs, where).not.toContain(v);
        }
      }
    }
    const relayRole = one(defaults, 'Role', '-relay');
    const cm = (relayRole.rules as Json[]).filter((r) => (r.resources as string[]).includes('configmaps'));
    // list/watch only by name; the owner ConfigMap by name; get of any ConfigMap in the release namespace (the
    // shards of a large table), unless rbac.relayShardAccess=false
    expect(cm).toEqual([
      expect.objectContaining({ resourceNames: ['mailroute-routing'], verbs: ['get', 'list', 'watch'] }),
      expect.objectContaining({ resourceNames: ['mr-mailroute-owner'], verbs: ['get'] }),
      expect.objectContaining({ verbs: ['get'] }),
    ]);
    expect(cm[2]!.resourceNames).toBeUndefined();
    // The relay reads one Secret by name in its own namespace (mailroute-credentials, written by the operator).
    const secrets = (relayRole.rules as Json[]).filter((r) => (r.resources as string[]).includes('secrets'));
    expect(secrets).toEqual([
      expect.objectContaining({ resourceNames: ['mailroute-credentials'], verbs: ['get', 'list', 'watch'] }),
    ]);
    // The relay cannot write status or read any mailroute.io object; only the operator's ClusterRole touches them.
    expect(JSON.stringify(relayRole.rules)).not.toContain('mailroute.io');
    // secretNamespaces turns the operator's cluster-wide grant into RoleBindings in the listed namespaces; the
    // relay has no grant on Secrets outside its namespace at all.
    const bindings = byKind(all, 'RoleBinding').filter((b) => b.metadata.name.endsWith('-secrets'));
    expect(bindings.map((b) => `${b.metadata.namespace}/${b.metadata.name}`).sort()).toEqual([
      'mail-staging/mr-mailroute-operator-secrets',
      'mail/mr-mailroute-operator-secrets',
    ]);
    expect(
      [...byKind(defaults, 'ClusterRoleBinding'), ...byKind(defaults, 'ClusterRole')].map(
        (b) => b.metadata.name,
      ),
    ).not.toContain('mr-mailroute-secrets-relay');
    expect(byKind(all, 'ClusterRoleBinding').map((b) => b.metadata.name)).toEqual(['mr-mailroute-operator']);
  });

  it('ships tenant ClusterRoles like cert-manager: edit without status, view with it, labelled for aggregation', async () => {
    const kinds = ['maildomains', 'deliverypolicies', 'testrecipients'];
    const agg = (...roles: string[]): Record<string, string> =>
      Object.fromEntries(roles.map((r) => [`rbac.authorization.k8s.io/aggregate-to-${r}`, 'true']));
    const view = one(defaults, 'ClusterRole', '-mailroute-view');
    expect(view.metadata.name).toBe('mr-mailroute-view');
    expect(view.metadata.labels).toMatchObject(agg('view', 'edit', 'admin'));
    expect(view.rules).toEqual([
      {
        apiGroups: ['mailroute.io'],
        resources: kinds.flatMap((k) => [k, `${k}/status`]),
        verbs: ['get', 'list', 'watch'],
      },
    ]);
    const edit = one(defaults, 'ClusterRole', '-mailroute-edit');
    expect(edit.metadata.name).toBe('mr-mailroute-edit');
    expect(edit.metadata.labels).toMatchObject(agg('edit', 'admin'));
    expect(edit.metadata.labels).not.toHaveProperty(['rbac.authorization.k8s.io/aggregate-to-view']);
    expect(edit.rules).toEqual([
      {
        apiGroups: ['mailroute.io'],
        resources: kinds,
        verbs: ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete', 'deletecollection'],
      },
    ]);
    expect(JSON.stringify(edit.rules)).not.toContain('/status');
    // rbac.tenantRoles=false (or rbac.create=false) leaves them out
    for (const off of ['rbac.tenantRoles=false', 'rbac.create=false']) {
      const objs = parseObjects(await helmTemplate(tools, ['--set', off]));
      expect(
        objs.filter((o) => o.metadata.name.endsWith('-edit') || o.metadata.name.endsWith('-view')),
        off,
      ).toEqual([]);
    }
  });

  it('ships the destinations ValidatingAdmissionPolicy and its binding, toggled by admissionPolicy.*', async () => {
    const vap = one(defaults, 'ValidatingAdmissionPolicy');
    expect(vap.apiVersion).toBe('admissionregistration.k8s.io/v1');
    expect(vap.metadata.name).toBe('mr-mailroute-destinations');
    expect((vap.spec as Json).failurePolicy).toBe('Fail');
    const binding = one(defaults, 'ValidatingAdmissionPolicyBinding');
    expect(binding.spec).toEqual({ policyName: 'mr-mailroute-destinations', validationActions: ['Deny'] });
    const warn = parseObjects(
      await helmTemplate(tools, ['--set-json', 'admissionPolicy.validationActions=["Warn"]']),
    );
    expect(one(warn, 'ValidatingAdmissionPolicyBinding').spec).toMatchObject({ validationActions: ['Warn'] });
    const off = parseObjects(await helmTemplate(tools, ['--set', 'admissionPolicy.enabled=false']));
    expect(off.filter((o) => o.kind.startsWith('ValidatingAdmissionPolicy'))).toEqual([]);
  });

  it("grants the operator exactly the rules of operator/rbac.ts (the operator's canonical, tested RBAC)", () => {
    const canonical = operatorRbacObjects({ namespace: 'mailroute-system', leaseName: 'mailroute-operator' });
    const rulesOf = (objects: Json[], kind: string, pred: (name: string) => boolean): unknown =>
      objects.filter((o) => o.kind === kind && pred(String((o.metadata as Json).name))).map((o) => o.rules);
    expect(rulesOf(defaults, 'ClusterRole', (n) => n === 'mr-mailroute-operator')).toEqual(
      rulesOf(canonical, 'ClusterRole', (n) => n === 'mailroute-operator'),
    );
    expect(rulesOf(defaults, 'ClusterRole', (n) => n === 'mr-mailroute-operator-secrets')).toEqual(
      rulesOf(canonical, 'ClusterRole', (n) => n === 'mailroute-operator-secrets'),
    );
    expect(rulesOf(defaults, 'Role', (n) => n === 'mr-mailroute-operator')).toEqual(
      rulesOf(canonical, 'Role', (n) => n === 'mailroute-operator'),
    );
    // one name for each object: the chart's are operator/rbac.ts's with the release prefix (docs/operations.md
    // names them)
    const names = (objects: Json[], prefix: string): string[] =>
      objects
        .filter((o) => ['ClusterRole', 'ClusterRoleBinding', 'Role', 'RoleBinding'].includes(String(o.kind)))
        .map((o) => `${String(o.kind)} ${prefix}${String((o.metadata as Json).name)}`)
        .filter((n) => n.includes('-operator'))
        .sort();
    expect(names(defaults, '')).toEqual(names(canonical, 'mr-'));
    // rbac.secretNamespaces also narrows what the operator watches (--secret-namespaces), or its informer is refused.
    const [c] = containers(one(all, 'Deployment', '-operator'));
    expect(c!.args).toContain('--secret-namespaces=mail,mail-staging');
  });

  it.each([
    ['the HPA (maxReplicas 6)', [], 6],
    ['the HPA with maxReplicas 3', ['--set', 'relay.autoscaling.maxReplicas=3'], 3],
    [
      'no HPA, replicaCount 4',
      ['--set', 'relay.autoscaling.enabled=false', '--set', 'relay.replicaCount=4'],
      4,
    ],
  ] as const)(
    'grants the relay exactly the rules of relay/cluster/rbac.ts for its pods, with %s: Leases by name',
    async (_name, args, pods) => {
      const objects = parseObjects(await helmTemplate(tools, [...args]));
      const names = Array.from({ length: pods }, (_, i) => `mr-mailroute-relay-${i}`);
      const [, canonical] = relayRbacObjects({
        namespace: 'mailroute-system',
        pods: names,
        ownerConfigMap: 'mr-mailroute-owner',
      });
      expect(one(objects, 'Role', '-relay').rules).toEqual((canonical as Json).rules);
      const leaseRules = (one(objects, 'Role', '-relay').rules as Json[]).filter((r) =>
        (r.resources as string[]).includes('leases'),
      );
      // get/update/delete only by name; create and list cannot be narrowed by name (create) or are needed
      // unnarrowed (list of the peers' Leases by label)
      for (const r of leaseRules) {
        if ((r.verbs as string[]).some((v) => ['get', 'update', 'delete', 'patch'].includes(v)))
          expect(r.resourceNames).toEqual(names.map((n) => `mailroute-relay-${n}`));
      }
    },
  );

  it('with rbac.relayShardAccess=false the relay reads ConfigMaps only by name (relay/cluster/rbac.ts shards: false)', async () => {
    const objects = parseObjects(await helmTemplate(tools, ['--set', 'rbac.relayShardAccess=false']));
    const pods = Array.from({ length: 6 }, (_, i) => `mr-mailroute-relay-${i}`);
    const [, canonical] = relayRbacObjects({
      namespace: 'mailroute-system',
      pods,
      ownerConfigMap: 'mr-mailroute-owner',
      shards: false,
    });
    const rules = one(objects, 'Role', '-relay').rules as Json[];
    expect(rules).toEqual((canonical as Json).rules);
    for (const r of rules.filter((x) => (x.resources as string[]).includes('configmaps')))
      expect(r.resourceNames, JSON.stringify(r)).toBeDefined();
  });

  it('keeps the chart templates of the CRDs generated from crds/ (run `npm run gen:chart` after `npm run gen`)', () => {
    const files = readdirSync(CRDS_DIR)
      .filter((f) => f.endsWith('.yaml'))
      .sort();
    expect(files.length).toBeGreaterThan(0);
    expect(readdirSync(join(CHART_DIR, 'templates', 'crds')).sort()).toEqual(files);
    for (const f of files) {
      const expected = chartCrdTemplate(f, readFileSync(join(CRDS_DIR, f), 'utf8'));
      const actual = readFileSync(join(CHART_DIR, 'templates', 'crds', f), 'utf8');
      expect(
        actual,
        `charts/mailroute/templates/crds/${f} differs from crds/${f}: run npm run gen:chart`,
      ).toBe(expected);
    }
  });

  it('renders CRDs identical to crds/ apart from the Helm labels and the keep annotation', async () => {
    const expected = readdirSync(CRDS_DIR)
      .filter((f) => f.endsWith('.yaml'))
      .flatMap((f) => parseAllDocuments(readFileSync(join(CRDS_DIR, f), 'utf8')).map((d) => d.toJS() as Json))
      .filter((o) => o.kind === 'CustomResourceDefinition')
      .sort((a, b) => String((a.metadata as Json).name).localeCompare(String((b.metadata as Json).name)));
    for (const objects of [defaults, all]) {
      const rendered = byKind(objects, 'CustomResourceDefinition')
        .map((o) => withoutChartMetadata(o, ['team']))
        .sort((a, b) => String((a.metadata as Json).name).localeCompare(String((b.metadata as Json).name)));
      expect(rendered).toEqual(expected);
    }
    for (const crd of byKind(defaults, 'CustomResourceDefinition')) {
      expect(crd.metadata.annotations).toEqual({ 'helm.sh/resource-policy': 'keep' });
    }
    const notKept = parseObjects(await helmTemplate(tools, ['--set', 'crds.keep=false']));
    for (const crd of byKind(notKept, 'CustomResourceDefinition'))
      expect(crd.metadata.annotations).toBeUndefined();
    const none = parseObjects(await helmTemplate(tools, ['--set', 'crds.enabled=false']));
    expect(byKind(none, 'CustomResourceDefinition')).toEqual([]);
  });

  it("parses every alert and dashboard query with Prometheus' own PromQL grammar (@prometheus-io/lezer-promql)", () => {
    const rule = one(all, 'PrometheusRule');
    const dashboard = one(all, 'ConfigMap', '-dashboard');
    const json = JSON.parse(String((dashboard.data as Json)['mailroute.json'])) as {
      panels: { title: string; targets: { expr: string }[] }[];
    };
    const queries: [string, string][] = [
      ...((rule.spec as Json).groups as Json[]).flatMap((g) =>
        (g.rules as Json[]).map((r): [string, string] => [String(r.alert), String(r.expr)]),
      ),
      ...json.panels.flatMap((p) => p.targets.map((t): [string, string] => [p.title, t.expr])),
    ];
    expect(queries.length).toBeGreaterThan(15);
    const broken: string[] = [];
    for (const [where, expr] of queries) {
      let errors = 0;
      promql.parse(expr).iterate({
        enter: (n) => {
          if (n.type.isError) errors++;
        },
      });
      if (errors > 0) broken.push(`${where}: ${expr}`);
    }
    expect(broken).toEqual([]);
    // The grammar does find mistakes (a dangling operator, an unclosed group).
    for (const bad of ['sum by (leg) (rate(x[5m]) >', 'max(up{job="a"}']) {
      let errors = 0;
      promql.parse(bad).iterate({ enter: (n) => void (n.type.isError && errors++) });
      expect(errors, bad).toBeGreaterThan(0);
    }
  });

  it('names only metrics that exist in alerts and the dashboard', () => {
    const registry = new Registry();
    createRelayMetrics(registry, true);
    const known = new Set(registry.getMetricsAsArray().map((m) => m.name));
    for (const m of createOperatorMetrics({ defaultMetrics: false }).registry.getMetricsAsArray())
      known.add(m.name);
    const used = (text: string): string[] =>
      [
        ...text.matchAll(
          /\b(mailroute_[a-z_]+|leader_election_[a-z_]+|controller_runtime_[a-z_]+|workqueue_[a-z_]+)\b/g,
        ),
      ]
        .map((m) => m[1]!.replace(/_(bucket|sum|count)$/, ''))
        .filter((n, i, a) => a.indexOf(n) === i);
    const rule = one(all, 'PrometheusRule');
    const exprs = ((rule.spec as Json).groups as Json[]).flatMap((g) =>
      (g.rules as Json[]).map((r) => String(r.expr)),
    );
    const alerts = ((rule.spec as Json).groups as Json[]).flatMap((g) =>
      (g.rules as Json[]).map((r) => r.alert),
    );
    expect(alerts).toEqual(
      expect.arrayContaining([
        'MailrouteQueueStuck',
        'MailrouteDeliveryFailing',
        'MailrouteRelaysNotProgrammed',
        'MailrouteOperatorNotLeader',
        'MailrouteRelayHeartbeatMissing',
        'MailrouteCopiesFallingBehind',
        'MailrouteTlsCertificateExpiring',
        'MailrouteRelayOutOfDescriptors',
        'MailrouteCopiesShed',
        'MailrouteDeliveryPaused',
        'MailrouteDomainRemoved',
        'MailrouteSoftBounced',
        'MailrouteVerificationCatchAll',
      ]),
    );
    const dashboard = one(all, 'ConfigMap', '-dashboard');
    const json = JSON.parse(String((dashboard.data as Json)['mailroute.json'])) as {
      panels: { targets: { expr: string }[] }[];
    };
    const dashExprs = json.panels.flatMap((p) => p.targets.map((t) => t.expr));
    expect(dashExprs.length).toBeGreaterThan(5);
    const usedNames = used([...exprs, ...dashExprs].join('\n'));
    expect(usedNames.filter((n) => !known.has(n))).toEqual([]);
    for (const n of [
      'mailroute_queue_messages',
      'mailroute_queue_oldest_seconds',
      'mailroute_deliveries_total',
      'mailroute_parity_copies_pending',
      'mailroute_parity_copy_lag_seconds',
      'mailroute_parity_legs_total',
    ]) {
      expect(usedNames).toContain(n);
    }
    expect(dashboard.metadata.labels).toMatchObject({ grafana_dashboard: '1' });
  });

  it('creates the owner ConfigMap and names it to the operator (--owner-configmap) and the relays (env)', () => {
    for (const objects of [defaults, all]) {
      expect(byKind(objects, 'ConfigMap').map((c) => c.metadata.name)).toContain('mr-mailroute-owner');
      const [op] = containers(one(objects, 'Deployment', '-operator'));
      expect(op!.args).toContain('--owner-configmap=mr-mailroute-owner');
      const [relay] = containers(one(objects, 'StatefulSet'));
      expect(relay!.env).toContainEqual({ name: 'MAILROUTE_OWNER_CONFIGMAP', value: 'mr-mailroute-owner' });
    }
  });

  it('renders optional objects only when asked: NetworkPolicy, ServiceMonitor, PrometheusRule, dashboard', () => {
    const optional = ['NetworkPolicy', 'ServiceMonitor', 'PrometheusRule', 'ConfigMap'];
    // the owner ConfigMap (ownerReferences of what the operator and relays create) is always there
    const notOwner = (objects: K8sObject[]): K8sObject[] =>
      objects.filter((o) => o.metadata.name !== 'mr-mailroute-owner');
    for (const kind of optional) {
      expect(byKind(notOwner(defaults), kind), kind).toEqual([]);
      expect(byKind(notOwner(all), kind).length, kind).toBeGreaterThan(0);
    }
    const relayNp = one(all, 'NetworkPolicy', '-relay');
    expect(JSON.stringify(relayNp.spec)).toContain('"port":25');
  });
});
