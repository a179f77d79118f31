import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { namespaceRules, operatorRbacObjects, rbacTable } from './rbac.ts';

const docs = readFileSync(new URL('../docs/operations.md', import.meta.url), 'utf8');

describe('operator RBAC', () => {
  it('docs/operations.md shows exactly the rules of operator/rbac.ts (table and YAML)', () => {
    expect(docs).toContain(rbacTable());
    const yaml = operatorRbacObjects({ namespace: 'mailroute-system' })
      .map((o) => stringify(o, { flowCollectionPadding: false }))
      .join('---\n')
      .trimEnd();
    expect(docs).toContain(yaml);
  });

  it('binds the Secret ClusterRole per namespace with --secret-namespaces, cluster-wide without', () => {
    const kinds = (ns: string[]): string[] =>
      operatorRbacObjects({ namespace: 'm', secretNamespaces: ns }).map(
        (o) => `${String(o.kind)}:${JSON.stringify((o.metadata as { namespace?: string }).namespace ?? '')}`,
      );
    expect(kinds([]).filter((k) => k.startsWith('ClusterRoleBinding'))).toHaveLength(2);
    expect(kinds(['a', 'b']).filter((k) => k.startsWith('RoleBinding'))).toEqual([
      'RoleBinding:"m"',
      'RoleBinding:"a"',
      'RoleBinding:"b"',
    ]);
  });

  it('limits get/update of Leases to the leader Lease', () => {
    const r = namespaceRules('my-lease').find((x) => x.verbs.includes('update'));
    expect(r?.resourceNames).toEqual(['my-lease']);
    expect(namespaceRules().every((x) => !x.verbs.includes('*'))).toBe(true);
  });
});
