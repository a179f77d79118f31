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

const NOW = new Date('2026-12-01T00:00:00Z');

describe('policyStatusFields', () => {
  it.each([
    ['Dual without dual: the default scope', { mode: 'Dual', secondary: 'zoho' }, 'All'],
    ['Dual scope Accounts', { mode: 'Dual', secondary: 'zoho', dual: { scope: 'Accounts' } }, 'Accounts'],
    ['Direct: no scope', { mode: 'Direct' }, undefined],
    ['Split: no scope (even with a dual block)', { mode: 'Split', secondary: 'zoho', dual: {} }, undefined],
  ])('%s', (_name, spec, scope) => {
    expect(policyStatusFields(dp(spec), md, NOW)).toEqual({
      domain: 'example.com',
      mode: spec.mode,
      scope,
      stage: undefined,
      nextTransition: undefined,
      parity: undefined,
    });
  });

  it('the domain is the MailDomain spec.domain, not its name; absent while it does not exist', () => {
    expect(policyStatusFields(dp({ mode: 'Direct' }), md, NOW).domain).toBe('example.com');
    const f = policyStatusFields(dp({ mode: 'Direct' }), undefined, NOW);
    expect(f).toEqual({
      domain: undefined,
      mode: 'Direct',
      scope: undefined,
      stage: undefined,
      nextTransition: undefined,
    });
    // listed, so that a write removes them
    expect(Object.keys(f)).toEqual([
      'domain',
      'mode',
      'scope',
      'stage',
      'softBounce',
      'nextTransition',
      'parity',
    ]);
  });

  const staged = dp({
    mode: 'Direct',
    primary: 'zoho',
    stages: [
      {
        name: 'dual',
        until: '2026-12-05T02:00:00Z',
        mode: 'Dual',
        primary: 'legacy',
        secondary: 'zoho',
        dual: { scope: 'Accounts' },
      },
      {
        name: 'reverse',
        until: '2026-12-19T03:00:00+01:00',
        mode: 'Dual',
        primary: 'zoho',
        secondary: 'legacy',
      },
    ],
  });
  it.each([
    ['2026-12-01T00:00:00Z', 'dual', 'Dual', 'Accounts', '2026-12-05T02:00:00Z'],
    ['2026-12-05T02:00:00Z', 'reverse', 'Dual', 'All', '2026-12-19T02:00:00Z'],
    ['2026-12-19T02:00:00Z', 'final', 'Direct', undefined, undefined],
  ])(
    'with stages, at %s: stage %s, mode %s, scope %s, next transition %s (UTC)',
    (at, stage, mode, scope, next) => {
      expect(policyStatusFields(staged, md, new Date(at))).toEqual({
        domain: 'example.com',
        mode,
        scope,
        stage,
        nextTransition: next,
      });
    },
  );
});

describe('policyStatusFields: softBounce', () => {
  const cutover = (own: boolean) =>
    dp({
      mode: 'Direct',
      primary: 'zoho',
      ...(own ? { softBounce: true } : {}),
      stages: [
        { name: 'cutover', until: '2026-12-05T02:00:00Z', mode: 'Direct', primary: 'zoho', softBounce: true },
      ],
    });
  it.each([
    ['the stage in force has it', cutover(false), '2026-12-01T00:00:00Z', true],
    ['the stage has ended, the policy has none', cutover(false), '2026-12-05T02:00:00Z', undefined],
    ["the policy's own fields have it, after the stages", cutover(true), '2026-12-05T02:00:00Z', true],
    ['a policy without it', dp({ mode: 'Direct' }), '2026-12-01T00:00:00Z', undefined],
    ['softBounce: false', dp({ mode: 'Direct', softBounce: false }), '2026-12-01T00:00:00Z', undefined],
  ])('%s: %s', (_name, policy, at, want) => {
    expect(policyStatusFields(policy, md, new Date(at)).softBounce).toBe(want);
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
