import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { CoreV1Api, CustomObjectsApi } from '@kubernetes/client-node';
import { applyCrds, createNamespace, describeCluster } from './suite.ts';
import { ControlPlaneUnavailableError, findBinaries } from './harness.ts';

const widgetCrd = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.harness.mailroute.io}
spec:
  group: harness.mailroute.io
  names: {kind: Widget, plural: widgets, singular: widget, listKind: WidgetList}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer, minimum: 1}
`;

const tmp = mkdtempSync(join(tmpdir(), 'mailroute-harness-test-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

it('findBinaries names how to get binaries when KUBEBUILDER_ASSETS points nowhere', () => {
  const before = process.env.KUBEBUILDER_ASSETS;
  process.env.KUBEBUILDER_ASSETS = join(tmp, 'nothing-here');
  try {
    const r = findBinaries();
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.reason).toContain('npm run envtest');
      expect(r.reason).toContain('KUBEBUILDER_ASSETS');
      expect(r.canBuild).toBe(false);
    }
    expect(new ControlPlaneUnavailableError('x').unavailable).toBe(true);
  } finally {
    if (before === undefined) delete process.env.KUBEBUILDER_ASSETS;
    else process.env.KUBEBUILDER_ASSETS = before;
  }
});

describeCluster(
  'control plane harness',
  (ctx) => {
    it('serves the API with a system:masters client and a working kubectl', async () => {
      await createNamespace(ctx.cp, 'harness-a');
      await createNamespace(ctx.cp, 'harness-a'); // idempotent
      const core = ctx.cp.kubeconfig.makeApiClient(CoreV1Api);
      const ns = await core.readNamespace({ name: 'harness-a' });
      expect(ns.metadata?.name).toBe('harness-a');
      const r = await ctx.cp.kubectl(['auth', 'can-i', '*', '*', '--all-namespaces']);
      expect(r.stdout.trim()).toBe('yes');
    });

    it('applies CRDs and waits for Established; the schema is enforced', async () => {
      writeFileSync(join(tmp, 'widget.yaml'), widgetCrd);
      const names = await applyCrds(ctx.cp, tmp);
      expect(names).toEqual(['widgets.harness.mailroute.io']);
      const custom = ctx.cp.kubeconfig.makeApiClient(CustomObjectsApi);
      const body = {
        apiVersion: 'harness.mailroute.io/v1',
        kind: 'Widget',
        metadata: { name: 'w' },
        spec: { size: 0 },
      };
      await expect(
        custom.createNamespacedCustomObject({
          group: 'harness.mailroute.io',
          version: 'v1',
          namespace: 'harness-a',
          plural: 'widgets',
          body,
        }),
      ).rejects.toThrow(/spec\.size/);
    });

    it('keeps its data across an API server restart', async () => {
      await ctx.cp.restartApiServer();
      const core = ctx.cp.kubeconfig.makeApiClient(CoreV1Api);
      expect((await core.readNamespace({ name: 'harness-a' })).metadata?.name).toBe('harness-a');
      await createNamespace(ctx.cp, 'harness-b');
      const list = await ctx.cp.kubectl(['get', 'ns', '-o', 'name']);
      expect(list.stdout).toContain('namespace/harness-b');
    });
  },
  { crds: false },
);
