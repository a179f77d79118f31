// vitest helpers for suites that need a real kube-apiserver. One control plane per test file (started in
// beforeAll, stopped in afterAll). Without binaries the suite is skipped with a loud warning naming how to get
// them, unless MAILROUTE_REQUIRE_ENVTEST=1 (CI), which turns the missing control plane into a failing test.

import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { parseAllDocuments, stringify } from 'yaml';
import { ApiextensionsV1Api, CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { createKubeRest, type KubeRest } from '../../operator/kube/rest.ts';
import {
  findBinaries,
  HOW_TO_GET_BINARIES,
  startControlPlane,
  type ControlPlane,
  type ControlPlaneOptions,
} from './harness.ts';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CRDS_DIR = join(REPO_ROOT, 'crds');

export interface ClusterContext {
  /** The running control plane; only valid inside hooks and tests (throws at collection time). */
  readonly cp: ControlPlane;
}

type ClusterAvailability = { available: true; build: boolean } | { available: false; reason: string };

function clusterAvailability(): ClusterAvailability {
  const found = findBinaries();
  if (found.ok) return { available: true, build: false };
  if (found.canBuild) return { available: true, build: true };
  return { available: false, reason: found.reason };
}

export interface DescribeClusterOptions extends ControlPlaneOptions {
  /** Apply crds/*.yaml and wait for Established before the tests. Default true. */
  crds?: boolean;
  /** Namespaces to create before the tests. */
  namespaces?: string[];
}

/**
 * describe() for cluster suites. `fn` receives a context whose `cp` is the control plane of this file.
 * Build-on-demand (binaries missing, `go` present) happens in beforeAll with a long hook timeout.
 */
export function describeCluster(
  name: string,
  fn: (ctx: ClusterContext) => void,
  opts: DescribeClusterOptions = {},
): void {
  const availability = clusterAvailability();
  let current: ControlPlane | undefined;
  const ctx: ClusterContext = {
    get cp(): ControlPlane {
      if (current === undefined)
        throw new Error('control plane not started (use ctx.cp inside hooks and tests)');
      return current;
    },
  };
  if (!availability.available) {
    if (process.env.MAILROUTE_REQUIRE_ENVTEST === '1') {
      describe(name, () => {
        it('has a control plane (MAILROUTE_REQUIRE_ENVTEST=1)', () => {
          throw new Error(`MAILROUTE_REQUIRE_ENVTEST=1 but ${availability.reason}`);
        });
      });
      return;
    }
    console.warn(
      `\n${'!'.repeat(100)}\n!! SKIPPING cluster suite "${name}": ${availability.reason}\n` +
        `!! To run it: ${HOW_TO_GET_BINARIES}.\n!! Set MAILROUTE_REQUIRE_ENVTEST=1 to make this a failure.\n${'!'.repeat(100)}\n`,
    );
    describe.skip(name, () => fn(ctx));
    return;
  }
  describe(name, () => {
    beforeAll(
      async () => {
        current = await startControlPlane(opts);
        if (opts.crds !== false) await applyCrds(current);
        for (const ns of opts.namespaces ?? []) await createNamespace(current, ns);
      },
      availability.build ? 60 * 60_000 : 120_000,
    );
    afterAll(async () => {
      await current?.stop();
      current = undefined;
    });
    fn(ctx);
  });
}

/** Names of the CustomResourceDefinitions in a directory of YAML files. */
function crdNames(dir = CRDS_DIR): string[] {
  const names: string[] = [];
  for (const f of readdirSync(dir)
    .filter((n) => n.endsWith('.yaml') || n.endsWith('.yml'))
    .sort()) {
    for (const doc of parseAllDocuments(readFileSync(join(dir, f), 'utf8'))) {
      const o = doc.toJS() as { kind?: unknown; metadata?: { name?: unknown } } | null;
      if (o?.kind === 'CustomResourceDefinition' && typeof o.metadata?.name === 'string')
        names.push(o.metadata.name);
    }
  }
  return names;
}

/** kubectl apply --server-side of every CRD in `dir`, then waits until each is Established (and NamesAccepted). */
export async function applyCrds(cp: ControlPlane, dir = CRDS_DIR, timeoutMs = 30_000): Promise<string[]> {
  const names = crdNames(dir);
  if (names.length === 0) throw new Error(`no CustomResourceDefinition found in ${dir}`);
  const r = await cp.kubectl(['apply', '--server-side', '--force-conflicts', '-f', dir]);
  if (r.code !== 0) throw new Error(`kubectl apply -f ${dir} failed: ${r.stderr}`);
  await waitEstablished(cp, names, timeoutMs);
  return names;
}

export async function waitEstablished(cp: ControlPlane, names: string[], timeoutMs = 30_000): Promise<void> {
  const api = cp.kubeconfig.makeApiClient(ApiextensionsV1Api);
  const deadline = Date.now() + timeoutMs;
  for (const name of names) {
    for (;;) {
      const crd = await api.readCustomResourceDefinition({ name }).catch(() => undefined);
      const conds = crd?.status?.conditions ?? [];
      const ok = (t: string): boolean => conds.some((c) => c.type === t && c.status === 'True');
      if (ok('Established') && ok('NamesAccepted')) break;
      if (Date.now() > deadline) throw new Error(`CRD ${name} not Established within ${timeoutMs} ms`);
      await new Promise((res) => setTimeout(res, 50));
    }
  }
}

/** Creates a namespace (idempotent). */
export async function createNamespace(cp: ControlPlane, name: string): Promise<void> {
  const api = cp.kubeconfig.makeApiClient(CoreV1Api);
  try {
    await api.createNamespace({ body: { metadata: { name } } });
  } catch (err) {
    if ((err as { code?: unknown }).code === 409) return;
    throw err;
  }
}

/**
 * A kubeconfig file (and a KubeRest) that authenticates as ServiceAccount `namespace/name` with a fresh token, so
 * that RBAC applies to what it does (the harness's own identity is in system:masters).
 */
export async function serviceAccountIdentity(
  cp: ControlPlane,
  namespace: string,
  name: string,
): Promise<{ kubeconfigPath: string; rest: KubeRest }> {
  const tok = await cp.kubectl(['create', 'token', name, '-n', namespace, '--duration=1h']);
  if (tok.code !== 0) throw new Error(`kubectl create token ${namespace}/${name}: ${tok.stderr}`);
  const cluster = cp.kubeconfig.getCurrentCluster();
  const kubeconfigPath = join(cp.dir, `${namespace}.${name}.kubeconfig`);
  writeFileSync(
    kubeconfigPath,
    stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [
        { name: 'c', cluster: { server: cluster?.server, 'certificate-authority-data': cluster?.caData } },
      ],
      users: [{ name: 'sa', user: { token: tok.stdout.trim() } }],
      contexts: [{ name: 'c', context: { cluster: 'c', user: 'sa' } }],
      'current-context': 'c',
    }),
  );
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfigPath);
  return { kubeconfigPath, rest: createKubeRest(kc) };
}
