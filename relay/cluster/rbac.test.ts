import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { relayRbacTable } from './rbac.ts';

const docs = readFileSync(new URL('../../docs/operations.md', import.meta.url), 'utf8');

describe('relay RBAC', () => {
  it('docs/operations.md shows exactly the rules of relay/cluster/rbac.ts (a StatefulSet of at most 3 replicas)', () => {
    expect(docs).toContain(
      relayRbacTable({ pods: ['mailroute-relay-0', 'mailroute-relay-1', 'mailroute-relay-2'] }),
    );
  });
});
