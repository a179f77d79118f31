import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { relayRbacTable } from './rbac.ts';

const docs = readFileSync(new URL('../../docs/operations.md', import.meta.url), 'utf8');

describe('relay RBAC', () => {
  it("docs/operations.md shows exactly the rules of relay/cluster/rbac.ts for the chart's default pods (0..5) and owner ConfigMap", () => {
    // test/helm/chart.test.ts checks that the chart renders these rules for these pods
    const pods = Array.from({ length: 6 }, (_, i) => `mailroute-relay-${i}`);
    expect(docs).toContain(relayRbacTable({ pods, ownerConfigMap: 'mailroute-owner' }));
  });
});
