import { describe, expect, it } from 'vitest';
import { compile } from '../../routing/compile.ts';
import {
  exampleDomain,
  examplePolicy,
  syntheticObjects,
  testRecipient,
} from '../../routing/test-fixtures.ts';
import { checkWarnings, okLine, TABLE_WARN_BYTES } from './check.ts';

const origins = new Map([['TestRecipient/default/alice', 'tr.yaml']]);

describe('check warnings', () => {
  it('warns when the compiled table would not fit a ConfigMap', () => {
    const small = compile(syntheticObjects(1, 10));
    expect(checkWarnings({ origins }, small, new Date())).toEqual([]);
    const big = compile(syntheticObjects(1, 4000));
    expect(big.json.length).toBeGreaterThan(TABLE_WARN_BYTES);
    const w = checkWarnings({ origins }, big, new Date());
    expect(w).toHaveLength(1);
    expect(w[0]).toMatch(/routing table is \d+ KiB: a ConfigMap holds at most 1 MiB/);
  });

  it('warns about expired TestRecipients and TestRecipients outside Dual', () => {
    const tr = testRecipient('alice', {
      policyRef: { name: 'example-com' },
      address: 'alice@example.com',
      expiresAt: '2026-01-01T00:00:00Z',
    });
    const dual = compile([exampleDomain(), examplePolicy({ mode: 'Dual', secondary: 'new' }), tr]);
    expect(checkWarnings({ origins }, dual, new Date('2025-12-31T00:00:00Z'))).toEqual([]);
    expect(checkWarnings({ origins }, dual, new Date('2026-01-02T00:00:00Z'))).toEqual([
      'tr.yaml: TestRecipient/alice: spec.expiresAt: expired at 2026-01-01T00:00:00Z; alice@example.com routes like everyone else',
    ]);
    const direct = compile([exampleDomain(), examplePolicy({ mode: 'Direct' }), tr]);
    expect(checkWarnings({ origins }, direct, new Date('2025-12-31T00:00:00Z'))).toEqual([
      "tr.yaml: TestRecipient/alice: alice@example.com has no effect while the policy's mode is Direct",
    ]);
  });
});

describe('check summary line', () => {
  it.each([
    [
      ['MailDomain', 'DeliveryPolicy'],
      'ok: 2 objects (1 MailDomain, 1 DeliveryPolicy), revision 0123456789ab',
    ],
    // Secrets count in the total as in the list (it said "2 objects (... 1 Secret)")
    [
      ['MailDomain', 'DeliveryPolicy', 'Secret'],
      'ok: 3 objects (1 MailDomain, 1 DeliveryPolicy, 1 Secret), revision 0123456789ab',
    ],
    [
      ['MailDomain', 'DeliveryPolicy', 'TestRecipient', 'TestRecipient', 'Secret', 'Secret'],
      'ok: 6 objects (1 MailDomain, 1 DeliveryPolicy, 2 TestRecipient, 2 Secret), revision 0123456789ab',
    ],
    [['MailDomain'], 'ok: 1 object (1 MailDomain), revision 0123456789ab'],
  ])('%j -> %s', (kinds, line) => {
    expect(okLine(kinds, '0123456789abcdef')).toBe(line);
  });
});
