import { describe, expect, it } from 'vitest';
import { compileGrants, patternMatches, specificity } from './grants.ts';
import { domainClaim } from './test-fixtures.ts';

describe('patternMatches', () => {
  it.each([
    ['*', 'anything.test', true],
    ['corp.test', 'corp.test', true],
    ['corp.test', 'a.corp.test', false],
    ['*.corp.test', 'a.corp.test', true],
    ['*.corp.test', 'a.b.corp.test', true],
    ['*.corp.test', 'corp.test', false],
    ['*.corp.test', 'evilcorp.test', false],
    ['*.corp.test', 'corp.test.evil', false],
  ])('%s covers %s: %s', (pattern, domain, expected) => {
    expect(patternMatches(pattern, domain)).toBe(expected);
  });

  it('orders exact > longer wildcard > shorter wildcard > *', () => {
    const ordered = ['a.corp.test', '*.a.corp.test', '*.corp.test', '*'].map(specificity);
    expect([...ordered].sort((a, b) => b - a)).toEqual(ordered);
  });
});

describe('compileGrants', () => {
  it('is open without claims', () => {
    const g = compileGrants([]);
    expect(g.open).toBe(true);
    expect(g.permits('any', 'thing.test')).toBe(true);
  });

  it('ranks namespaces by the most specific claim, then claim name, then list order', () => {
    const g = compileGrants([
      domainClaim('z-exact', ['corp.test'], ['owner', 'backup']),
      domainClaim('a-all', ['*'], ['platform', 'owner']),
    ]);
    expect(g.open).toBe(false);
    expect(['owner', 'backup', 'platform', 'other'].map((ns) => g.rank(ns, 'Corp.Test'))).toEqual([
      0,
      1,
      2,
      undefined,
    ]);
    expect(g.permits('backup', 'other.test')).toBe(false);
    expect(g.permits('owner', 'other.test')).toBe(true);
  });

  it('names the granting DomainClaim, whose destinations apply: the most specific entry first, then the claim name', () => {
    const g = compileGrants([
      domainClaim('b-wide', ['*.corp.test'], ['team-a'], { deny: ['10.0.0.0/8'] }),
      domainClaim('a-exact', ['mx.corp.test'], ['team-a'], { deny: ['192.0.2.0/24'] }),
      domainClaim('c-exact', ['mx.corp.test'], ['team-a', 'team-b']),
    ]);
    expect(g.grantingClaim('team-a', 'MX.corp.test')?.metadata.name).toBe('a-exact');
    expect(g.destinations('team-a', 'mx.corp.test')).toEqual({ deny: ['192.0.2.0/24'] });
    expect(g.grantingClaim('team-b', 'mx.corp.test')?.metadata.name).toBe('c-exact');
    expect(g.grantingClaim('team-a', 'hr.corp.test')?.metadata.name).toBe('b-wide');
    expect(g.grantingClaim('team-b', 'hr.corp.test')).toBeUndefined();
    expect(compileGrants([]).grantingClaim('any', 'thing.test')).toBeUndefined();
  });
});
