import { describe, expect, it } from 'vitest';
import { compile } from '../../routing/compile.ts';
import { exampleDomain, examplePolicy } from '../../routing/test-fixtures.ts';
import { createRouter } from './router.ts';

describe('createRouter: a recipient at a domain that left the routing table', () => {
  const { table } = compile([exampleDomain(), examplePolicy({ mode: 'Direct' })]);
  // münchen.test left the table 2 minutes ago; the relay keeps domains in their A-label form, as the table does
  const router = createRouter(table, 'r1', (d) => (d === 'xn--mnchen-3ya.test' ? 120_000 : undefined));
  const now = new Date('2026-12-07T00:00:00Z');

  it.each([
    ['ann@münchen.test', 'a U-label (SMTPUTF8) domain'],
    ['ann@xn--mnchen-3ya.test', 'its A-label'],
    ['ann@XN--MNCHEN-3YA.TEST', 'its A-label in capitals'],
  ])('%s (%s) gets 451 4.3.0 naming the domain', (to) => {
    const plan = router.resolve(to, { now });
    expect(plan.verdict).toBe('tempfail');
    if (plan.verdict !== 'tempfail') return;
    expect(plan.reason).toBe('DomainRemoved');
    expect(`${plan.reply.code} ${plan.reply.enhanced} ${plan.reply.text}`).toBe(
      '451 4.3.0 xn--mnchen-3ya.test left the routing table 2 minutes ago; try again later',
    );
  });

  it('a domain never served is refused (554), and a served one routed, as before', () => {
    const other = router.resolve('ann@other.test', { now });
    expect(other.verdict === 'reject' && other.reason).toBe('RelayDenied');
    expect(router.resolve('ann@example.com', { now }).verdict).toBe('accept');
  });

  it('without the grace (no removedFor) a removed domain is refused (554)', () => {
    const plan = createRouter(table, 'r1').resolve('ann@xn--mnchen-3ya.test', { now });
    expect(plan.verdict === 'reject' && plan.reason).toBe('RelayDenied');
  });
});

describe('createRouter: verificationFor a subaddress names its mailbox', () => {
  const now = new Date('2026-12-07T00:00:00Z');
  const router = (delimiter?: string) =>
    createRouter(
      compile([
        exampleDomain({
          recipientVerification: { server: 'old' },
          ...(delimiter !== undefined ? { recipientDelimiter: delimiter } : {}),
        }),
        examplePolicy({ mode: 'Split', secondary: 'new' }),
      ]).table,
      'r1',
    );

  it.each([
    ['alice+news@example.com', '+', 'alice+news@example.com', 'alice@example.com'],
    ['Alice+News@example.com', '+', 'Alice+News@example.com', 'Alice@example.com'],
    ['alice@example.com', '+', 'alice@example.com', undefined],
    ['alice+news@example.com', '', 'alice+news@example.com', undefined],
    ['+news@example.com', '+', '+news@example.com', undefined],
  ])('%s with delimiter %j: asks %s, mailbox %s', (to, delimiter, address, mailbox) => {
    const v = router(delimiter).verificationFor(to, now);
    expect(v?.address).toBe(address);
    expect(v?.mailbox).toBe(mailbox);
  });

  it('the copy address asked about (scope Accounts at copyRecipientDomain): the mailbox is at that domain too', () => {
    const r = createRouter(
      compile([
        exampleDomain({ recipientVerification: { server: 'new' } }),
        examplePolicy({
          mode: 'Dual',
          secondary: 'new',
          dual: { scope: 'Accounts', copyRecipientDomain: 'copy.example' },
        }),
      ]).table,
      'r1',
    );
    const v = r.verificationFor('alice+news@example.com', now);
    expect(v?.address).toBe('alice+news@copy.example');
    expect(v?.mailbox).toBe('alice@copy.example');
  });
});
