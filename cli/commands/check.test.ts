import { describe, expect, it } from 'vitest';
import { compile } from '../../routing/compile.ts';
import {
  cutoverStage,
  exampleDomain,
  examplePolicy,
  syntheticObjects,
  testRecipient,
} from '../../routing/test-fixtures.ts';
import { checkWarnings, okLine, TABLE_WARN_BYTES } from './check.ts';

const origins = new Map([
  ['TestRecipient/default/alice', 'tr.yaml'],
  ['MailDomain/default/example-com', 'md.yaml'],
]);
/** The warnings other than backscatter (which the fixtures below, with no recipient checks, all get). */
const others = (w: string[]): string[] => w.filter((x) => !x.includes('(backscatter)'));

describe('check warnings', () => {
  it('warns when the compiled table would not fit a ConfigMap', () => {
    const small = compile(syntheticObjects(1, 10));
    expect(others(checkWarnings({ origins }, small, new Date()))).toEqual([]);
    const big = compile(syntheticObjects(1, 4000));
    expect(big.json.length).toBeGreaterThan(TABLE_WARN_BYTES);
    const w = others(checkWarnings({ origins }, big, new Date()));
    expect(w).toHaveLength(1);
    expect(w[0]).toMatch(/routing table is \d+ KiB: a ConfigMap holds at most 1 MiB/);
  });

  it('warns about expired TestRecipients and TestRecipients outside Dual', () => {
    const tr = testRecipient('alice', {
      policyRef: { name: 'example-com' },
      address: 'alice@example.com',
      expiresAt: '2026-01-01T00:00:00Z',
    });
    const dual = compile([
      exampleDomain({ rejectUnknownRecipients: true }),
      examplePolicy({ mode: 'Dual', secondary: 'new' }),
      tr,
    ]);
    expect(checkWarnings({ origins }, dual, new Date('2025-12-31T00:00:00Z'))).toEqual([]);
    expect(checkWarnings({ origins }, dual, new Date('2026-01-02T00:00:00Z'))).toEqual([
      'tr.yaml: TestRecipient/alice: spec.expiresAt: expired at 2026-01-01T00:00:00Z; alice@example.com routes like everyone else',
    ]);
    const direct = compile([
      exampleDomain({ rejectUnknownRecipients: true }),
      examplePolicy({ mode: 'Direct' }),
      tr,
    ]);
    expect(checkWarnings({ origins }, direct, new Date('2025-12-31T00:00:00Z'))).toEqual([
      "tr.yaml: TestRecipient/alice: alice@example.com has no effect while the policy's mode is Direct",
    ]);
  });
});

describe('softBounce warning', () => {
  it('warns about softBounce in the final state (no end), not in a dated stage', () => {
    const domain = exampleDomain({ rejectUnknownRecipients: true });
    const forever = compile([domain, examplePolicy({ mode: 'Direct', softBounce: true })]);
    const w = checkWarnings(
      { origins: new Map([['DeliveryPolicy/default/example-com', 'dp.yaml']]) },
      forever,
      new Date(),
    );
    expect(w).toEqual([
      'dp.yaml: DeliveryPolicy/example-com: spec.softBounce: on with no end: every 5xx for example.com is retried until the queue lifetime ends and its sender hears nothing for days; turn it off after the cutover, or set it in a dated stage instead',
    ]);
    const staged = compile([
      domain,
      examplePolicy({ mode: 'Direct', stages: [cutoverStage('2026-07-01T00:00:00Z')] }),
    ]);
    expect(checkWarnings({ origins }, staged, new Date('2026-06-01T00:00:00Z'))).toEqual([]);
  });
});

describe('backscatter warning', () => {
  it('warns about a domain with no accounts, no recipientVerification and no rejectUnknownRecipients', () => {
    const open = compile([exampleDomain(), examplePolicy({ mode: 'Direct' })]);
    expect(checkWarnings({ origins }, open, new Date())).toEqual([
      'md.yaml: MailDomain/example-com: example.com accepts mail for any local part: with no accounts, no recipientVerification and no rejectUnknownRecipients, mail to a mailbox the primary does not have is accepted, and its 550 sends a DSN to a sender that may be forged (backscatter)',
    ]);
  });
  it.each([
    ['accounts', { accounts: [{ server: 'old', addresses: ['a@example.com'] }] }],
    ['recipientVerification', { recipientVerification: { server: 'old' } }],
    ['rejectUnknownRecipients', { rejectUnknownRecipients: true }],
  ])('no warning with %s', (_name, extra) => {
    const checked = compile([exampleDomain(extra), examplePolicy({ mode: 'Direct' })]);
    expect(checkWarnings({ origins }, checked, new Date())).toEqual([]);
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
