// The status fields the operator writes for kubectl get's printer columns (which are JSONPaths on the object
// itself): DeliveryPolicy status.domain / status.scope, MailDomain status.serverNames, and when they need a write.
import { describe, expect, it } from 'vitest';
import { deliveryPolicy, mailDomain } from '../../routing/test-fixtures.ts';
import { policyStatusFields } from './deliverypolicy/controller.ts';
import { domainStatusFields } from './maildomain/controller.ts';
import { statusFieldsUpdate } from './object-status.ts';

const md = mailDomain('example-com', {
  domain: 'example.com',
  servers: [
    { name: 'legacy', host: 'mail.legacy.example' },
    { name: 'zoho', host: 'smtp.zoho.example' },
  ],
});
const dp = (spec: Record<string, unknown>) =>
  deliveryPolicy('p', { domainRef: { name: 'example-com' }, primary: 'legacy', ...spec });

describe('policyStatusFields', () => {
  it.each([
    ['Dual without dual: the default scope', { mode: 'Dual', secondary: 'zoho' }, 'All'],
    ['Dual scope Accounts', { mode: 'Dual', secondary: 'zoho', dual: { scope: 'Accounts' } }, 'Accounts'],
    ['Direct: no scope', { mode: 'Direct' }, undefined],
    ['Split: no scope (even with a dual block)', { mode: 'Split', secondary: 'zoho', dual: {} }, undefined],
  ])('%s', (_name, spec, scope) => {
    expect(policyStatusFields(dp(spec), md)).toEqual({ domain: 'example.com', scope });
  });

  it('the domain is the MailDomain spec.domain, not its name; absent while it does not exist', () => {
    expect(policyStatusFields(dp({ mode: 'Direct' }), md).domain).toBe('example.com');
    const f = policyStatusFields(dp({ mode: 'Direct' }), undefined);
    expect(f).toEqual({ domain: undefined, scope: undefined });
    expect(Object.keys(f)).toEqual(['domain', 'scope']); // listed, so that a write removes them
  });
});

describe('domainStatusFields', () => {
  it('lists the server names in spec order', () => {
    expect(domainStatusFields(md)).toEqual({ serverNames: 'legacy,zoho' });
  });
});

describe('statusFieldsUpdate', () => {
  it.each([
    ['no status yet', undefined, { domain: 'a.example' }, { domain: 'a.example' }, true],
    ['same value', { domain: 'a.example' }, { domain: 'a.example' }, { domain: 'a.example' }, false],
    ['new value', { domain: 'a.example' }, { domain: 'b.example' }, { domain: 'b.example' }, true],
    [
      'removed',
      { domain: 'a.example', scope: 'All' },
      { domain: undefined, scope: 'All' },
      { scope: 'All' },
      true,
    ],
    ['absent and still absent', { conditions: [] }, { domain: undefined }, {}, false],
  ])('%s', (_name, status, fields, want, changed) => {
    expect(statusFieldsUpdate(status, fields)).toEqual({ fields: want, changed });
  });
});
