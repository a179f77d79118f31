// IDN: routing works on A-labels. U-labels become A-labels; A-labels are only lowercased, never
// decoded; an invalid U-label domain does not parse.
import { describe, expect, it } from 'vitest';
import { asciiDomain, parseAddress, splitExtension, withExtension } from './address.ts';
import { compile } from './compile.ts';
import { buildIndex, resolve } from './resolve.ts';
import { deliveryPolicy, mailDomain } from './test-fixtures.ts';

describe('asciiDomain', () => {
  it.each([
    ['example.com', 'example.com'],
    ['EXAMPLE.Com', 'example.com'],
    ['xn--mnchen-3ya.test', 'xn--mnchen-3ya.test'],
    ['XN--MNCHEN-3YA.TEST', 'xn--mnchen-3ya.test'],
    ['Xn--mnchen-3ya.test', 'xn--mnchen-3ya.test'],
    ['münchen.test', 'xn--mnchen-3ya.test'],
    ['MÜNCHEN.test', 'xn--mnchen-3ya.test'],
    ['sub.bücher.example', 'sub.xn--bcher-kva.example'],
    ['пример.рф', 'xn--e1afmkfd.xn--p1ai'],
    // an ASCII domain is never decoded or validated as punycode: it does not match a managed domain anyway
    ['xn--zz.test', 'xn--zz.test'],
    ['[127.0.0.1]', '[127.0.0.1]'],
  ])('%s -> %s', (input, want) => {
    expect(asciiDomain(input)).toBe(want);
  });
  it.each(['a\u0000ü.test', 'ü b.test'])('%j is not a valid IDN', (input) => {
    expect(asciiDomain(input)).toBeUndefined();
  });
});

describe('parseAddress with internationalised domains', () => {
  it.each([
    ['carol@xn--mnchen-3ya.test', 'carol@xn--mnchen-3ya.test'],
    ['Carol@XN--MNCHEN-3YA.test', 'Carol@xn--mnchen-3ya.test'],
    ['carol@münchen.test', 'carol@xn--mnchen-3ya.test'],
    ['ü@MÜNCHEN.TEST', 'ü@xn--mnchen-3ya.test'],
  ])('%s -> %s', (input, address) => {
    const p = parseAddress(input);
    expect(p.ok && p.address).toBe(address);
  });
  it('refuses a Unicode domain IDNA cannot convert', () => {
    expect(parseAddress('a@ü\u00adb.test\u0000')).toMatchObject({ ok: false });
  });
});

describe('resolve: a managed xn-- domain', () => {
  const table = compile([
    mailDomain('muenchen', {
      domain: 'xn--mnchen-3ya.test',
      servers: [{ name: 'old', host: '10.0.0.1' }],
    }),
    deliveryPolicy('muenchen', { domainRef: { name: 'muenchen' }, mode: 'Direct', primary: 'old' }),
  ]);
  const index = buildIndex(table.table);
  const now = new Date('2026-06-01T00:00:00Z');
  it.each([
    ['a@xn--mnchen-3ya.test', 'accept a@xn--mnchen-3ya.test'],
    ['a@XN--MNCHEN-3YA.TEST', 'accept a@xn--mnchen-3ya.test'],
    ['a@Xn--Mnchen-3ya.test', 'accept a@xn--mnchen-3ya.test'],
    ['a@münchen.test', 'accept a@xn--mnchen-3ya.test'],
    ['a@MÜNCHEN.test', 'accept a@xn--mnchen-3ya.test'],
    ['a@xn--bcher-kva.test', 'reject 554'],
    ['a@bücher.test', 'reject 554'],
  ])('%s -> %s', (to, want) => {
    expect(table.issues).toEqual([]);
    const plan = resolve(index, to, { now });
    const got =
      plan.verdict === 'accept'
        ? `accept ${plan.legs.map((l) => l.recipient).join(' ')}`
        : `${plan.verdict} ${plan.reply.code}`;
    expect(got).toBe(want);
  });
});

describe('splitExtension (subaddressing, RFC 5233)', () => {
  it.each([
    ['alice+news', '+', { base: 'alice', delimiter: '+', extension: 'news' }],
    ['alice+news+daily', '+', { base: 'alice', delimiter: '+', extension: 'news+daily' }],
    ['alice+', '+', { base: 'alice', delimiter: '+', extension: '' }],
    ['alice-news+x', '+-', { base: 'alice', delimiter: '-', extension: 'news+x' }],
    ['first.last+tag', '+', { base: 'first.last', delimiter: '+', extension: 'tag' }],
    ['alice', '+', undefined],
    ['alice+news', '', undefined],
    ['+alice', '+', undefined],
    ['+a+b', '+', undefined],
    ['+++', '+', undefined],
    ['', '+', undefined],
    ['"alice+news"', '+', undefined],
    ['alice-news', '+', undefined],
  ])('%j with %j', (local, delimiters, want) => {
    expect(splitExtension(local, delimiters)).toEqual(want);
  });
});

describe('withExtension', () => {
  const ext = { base: 'alice', delimiter: '+', extension: 'news' };
  it.each([
    ['alice@new.example', 'alice+news@new.example'],
    ['a.b@new.example', 'a.b+news@new.example'],
    ['alice+moved@new.example', 'alice+moved@new.example'],
    ['"a b"@new.example', '"a b"@new.example'],
    [`${'a'.repeat(59)}@new.example`, `${'a'.repeat(59)}+news@new.example`],
    [`${'a'.repeat(60)}@new.example`, `${'a'.repeat(60)}@new.example`],
  ])('%s -> %s', (to, want) => {
    expect(withExtension(to, ext, '+')).toBe(want);
    expect(parseAddress(want).ok).toBe(true);
  });
});
