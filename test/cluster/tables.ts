// Test-only routing tables for the cluster suites.
import { canonicalJson, sha256Hex } from '../../routing/canonical.ts';
import { API_VERSION, type RoutingTable } from '../../routing/model.ts';

/** A small valid table whose revision differs per tag; `pad` grows it (to force sharding). */
export function tableFor(tag: string, pad = 0): { table: RoutingTable; json: string; revision: string } {
  const table: RoutingTable = {
    apiVersion: API_VERSION,
    kind: 'RoutingTable',
    domains: {},
    sources: Array.from({ length: pad + 1 }, (_, i) => ({
      kind: 'MailDomain' as const,
      namespace: 'mail',
      name: `${tag}-${i}-${'x'.repeat(40)}`,
      generation: i + 1,
    })),
  };
  const json = canonicalJson(table);
  return { table, json, revision: sha256Hex(json) };
}
