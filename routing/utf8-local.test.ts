// UTF-8 local parts (SMTPUTF8, RFC 6531) in manifests: accounts entries and TestRecipient address/forwardTo may name
// josé@xn--mnchen-3ya.example, and a RCPT in either Unicode spelling (NFC é, or NFD e + U+0301), in any case and with
// the domain in U-labels, finds the entry (the lookup key is cacheSpelling: lowercase, NFC). Legs carry the address as
// the client wrote it. Domains in these fields stay A-labels (a U-label domain gets the A-label hint), and an xn-- label
// that is no A-label (RFC 5890 §2.3.2.1) is refused offline.
import { describe, expect, it } from 'vitest';
import { cacheSpelling } from './address.ts';
import { compile } from './compile.ts';
import { buildIndex, resolve } from './resolve.ts';
import { deliveryPolicy, mailDomain, testRecipient } from './test-fixtures.ts';
import { validateObject } from './validate.ts';

const D = 'xn--mnchen-3ya.example'; // münchen.example
const NFC = 'jos\u00e9';
const NFD = 'jose\u0301';
const now = new Date('2026-06-01T00:00:00Z');
const servers = [
  { name: 'old', host: '10.0.0.1' },
  { name: 'new', host: '10.0.0.2' },
];

describe('cacheSpelling: one key for every spelling of a mailbox', () => {
  it.each([
    [`${NFD}@${D}`, `${NFC}@${D}`],
    [`JOS\u00c9@${D}`, `${NFC}@${D}`],
    [`JOSE\u0301@${D}`, `${NFC}@${D}`],
    ['Alice@Example.COM', 'alice@example.com'],
  ])('%s -> %s', (input, key) => {
    expect(cacheSpelling(input)).toBe(key);
  });
});

/** A Split domain: the accounts of old name josé (written NFC) and zoë (written NFD), unknown recipients per `unknown`. */
function splitIndex(unknown: 'Reject' | 'Secondary') {
  const table = compile([
    mailDomain('muenchen', {
      domain: D,
      servers,
      accounts: [{ server: 'old', addresses: [`alice@${D}`, `${NFC}@${D}`, `zoe\u0308@${D}`] }],
    }),
    deliveryPolicy('muenchen', {
      domainRef: { name: 'muenchen' },
      mode: 'Split',
      primary: 'old',
      secondary: 'new',
      split: { unknownRecipients: unknown },
    }),
  ]);
  expect(table.issues).toEqual([]);
  return buildIndex(table.table);
}

const summary = (plan: ReturnType<typeof resolve>): string =>
  plan.verdict === 'accept'
    ? plan.legs.map((l) => `${l.server.name} ${l.recipient}`).join(', ')
    : `${plan.verdict} ${plan.reply.code}`;

describe('resolve: accounts entries with a UTF-8 local part (Split)', () => {
  const reject = splitIndex('Reject');
  const secondary = splitIndex('Secondary');
  it.each([
    // the RCPT as a client sends it -> the leg (the address as written, the domain as A-label)
    [`${NFC}@münchen.example`, `old ${NFC}@${D}`],
    [`${NFD}@münchen.example`, `old ${NFD}@${D}`],
    [`${NFC}@${D}`, `old ${NFC}@${D}`],
    [`JOS\u00c9@MÜNCHEN.example`, `old JOS\u00c9@${D}`],
    [`${NFD}+news@münchen.example`, `old ${NFD}+news@${D}`],
    // listed in NFD, sent in NFC
    [`zo\u00eb@münchen.example`, `old zo\u00eb@${D}`],
    [`alice@${D}`, `old alice@${D}`],
  ])('%s -> %s, under Reject and under Secondary', (to, want) => {
    expect(summary(resolve(reject, to, { now }))).toBe(want);
    expect(summary(resolve(secondary, to, { now }))).toBe(want);
  });
  it('a mailbox not listed is refused under Reject and goes to the secondary under Secondary', () => {
    expect(summary(resolve(reject, `jos\u00e8@münchen.example`, { now }))).toBe('reject 550');
    expect(summary(resolve(secondary, `jos\u00e8@münchen.example`, { now }))).toBe(`new jos\u00e8@${D}`);
  });
  it('the compiled table lists the key spelling (lowercase, NFC)', () => {
    const table = compile([
      mailDomain('muenchen', {
        domain: D,
        servers,
        accounts: [{ server: 'old', addresses: [`JOSE\u0301@${D}`, `${NFC}@${D}`] }],
      }),
    ]);
    expect(table.table.domains[D]?.accounts).toEqual({ old: [`${NFC}@${D}`] });
  });
});

describe('TestRecipients with a UTF-8 local part (Dual)', () => {
  const objects = (address: string, forwardTo?: string) => [
    mailDomain('muenchen', { domain: D, servers }),
    deliveryPolicy('muenchen', {
      domainRef: { name: 'muenchen' },
      mode: 'Dual',
      primary: 'old',
      secondary: 'new',
      dual: { scope: 'TestRecipients' },
    }),
    testRecipient('t', {
      policyRef: { name: 'muenchen' },
      address,
      ...(forwardTo === undefined ? {} : { forwardTo }),
    }),
  ];
  it.each([
    // the record leg carries the RCPT as sent, the copy the TestRecipient's address as written (its default forwardTo)
    [`${NFC}@${D}`, `${NFD}@münchen.example`, `old ${NFD}@${D}, new ${NFC}@${D}`],
    [`${NFD}@${D}`, `${NFC}@münchen.example`, `old ${NFC}@${D}, new ${NFD}@${D}`],
    [`${NFD}@${D}`, `JOS\u00c9@${D}`, `old JOS\u00c9@${D}, new ${NFD}@${D}`],
  ])('TestRecipient %s is found for RCPT %s: %s', (address, to, want) => {
    const table = compile(objects(address));
    expect(table.issues).toEqual([]);
    expect(summary(resolve(buildIndex(table.table), to, { now }))).toBe(want);
  });
  it('forwardTo with a UTF-8 local part is carried as written', () => {
    const table = compile(objects(`${NFC}@${D}`, `${NFD}@new.example`));
    expect(table.issues).toEqual([]);
    expect(summary(resolve(buildIndex(table.table), `${NFC}@${D}`, { now }))).toBe(
      `old ${NFC}@${D}, new ${NFD}@new.example`,
    );
  });
  it('two TestRecipients for the NFC and the NFD spelling of one mailbox conflict', () => {
    const table = compile([
      ...objects(`${NFC}@${D}`),
      testRecipient(
        { name: 'u', creationTimestamp: '2026-05-02T00:00:00Z' },
        { policyRef: { name: 'muenchen' }, address: `${NFD}@${D}` },
      ),
    ]);
    expect(table.issues).toEqual([expect.objectContaining({ reason: 'Conflict', field: 'spec.address' })]);
  });
});

const md = (spec: Record<string, unknown>) => ({
  apiVersion: 'mailroute.io/v1alpha1',
  kind: 'MailDomain',
  metadata: { name: 'm' },
  spec: { domain: D, servers, ...spec },
});
const tr = (spec: Record<string, unknown>) => ({
  apiVersion: 'mailroute.io/v1alpha1',
  kind: 'TestRecipient',
  metadata: { name: 't' },
  spec: { policyRef: { name: 'p' }, address: `alice@${D}`, ...spec },
});
const dp = (spec: Record<string, unknown>) => ({
  apiVersion: 'mailroute.io/v1alpha1',
  kind: 'DeliveryPolicy',
  metadata: { name: 'p' },
  spec: { domainRef: { name: 'm' }, mode: 'Dual', primary: 'old', secondary: 'new', ...spec },
});
const dc = (domains: string[]) => ({
  apiVersion: 'mailroute.io/v1alpha1',
  kind: 'DomainClaim',
  metadata: { name: 'g' },
  spec: { domains, namespaces: { names: ['a'] } },
});
const errorsOf = (raw: unknown) => {
  const r = validateObject(raw);
  return r.ok ? [] : r.errors;
};
const A_LABEL_HINT = (value: string, ascii: string) =>
  `an internationalised domain must be written in its A-label (punycode) form: use ${JSON.stringify(ascii)} for ${JSON.stringify(value)}`;
const NOT_A_LABEL = (domain: string, label = domain.split('.')[0]) =>
  `${JSON.stringify(domain)} is not a valid A-label (${label} does not decode to an internationalised domain name whose A-label it is; write the domain in Unicode and \`mailroute check\` says which A-label to use)`;

describe('validate: addresses with a UTF-8 local part', () => {
  it.each([
    ['accounts (NFC)', md({ accounts: [{ server: 'old', addresses: [`${NFC}@${D}`] }] })],
    ['accounts (NFD)', md({ accounts: [{ server: 'old', addresses: [`${NFD}@${D}`] }] })],
    ['accounts (CJK)', md({ accounts: [{ server: 'old', addresses: [`用户@${D}`] }] })],
    ['TestRecipient address', tr({ address: `${NFC}@${D}` })],
    ['TestRecipient forwardTo', tr({ forwardTo: `${NFD}.g\u00fcnther@new.example` })],
  ])('accepts %s', (_what, raw) => {
    expect(errorsOf(raw)).toEqual([]);
  });
  it.each([
    ['a dot at the start of the local part', `.${NFC}@${D}`],
    ['two dots', `jo..s\u00e9@${D}`],
    ['a space', `jos\u00e9 x@${D}`],
  ])('still refuses %s', (_what, address) => {
    expect(errorsOf(tr({ address }))).toEqual([
      {
        path: 'spec.address',
        message: `must be an email address like local@example.com, got ${JSON.stringify(address)}`,
      },
    ]);
  });
  it('the acceptance probe address stays ASCII (the probe sends no SMTPUTF8)', () => {
    expect(errorsOf(md({ servers: [{ ...servers[0], probe: { address: `${NFC}@${D}` } }] }))).toEqual([
      {
        path: 'spec.servers[0].probe.address',
        message: `must be an ASCII email address like local@example.com (the acceptance step sends no SMTPUTF8), got ${JSON.stringify(`${NFC}@${D}`)}`,
      },
    ]);
  });
});

describe('validate: a U-label domain gets the A-label hint in every field that holds a domain', () => {
  it.each([
    [
      'accounts',
      md({ accounts: [{ server: 'old', addresses: [`alice@${D}`, `${NFC}@münchen.example`] }] }),
      'spec.accounts[0].addresses[1]',
      A_LABEL_HINT(`${NFC}@münchen.example`, `${NFC}@${D}`),
    ],
    [
      'TestRecipient address',
      tr({ address: 'a@münchen.example' }),
      'spec.address',
      A_LABEL_HINT('a@münchen.example', `a@${D}`),
    ],
    [
      'TestRecipient forwardTo',
      tr({ forwardTo: `${NFC}@bücher.example` }),
      'spec.forwardTo',
      A_LABEL_HINT(`${NFC}@bücher.example`, `${NFC}@xn--bcher-kva.example`),
    ],
    ['DomainClaim domain', dc(['münchen.example']), 'spec.domains[0]', A_LABEL_HINT('münchen.example', D)],
    [
      'DomainClaim wildcard',
      dc(['*.münchen.example']),
      'spec.domains[0]',
      A_LABEL_HINT('*.münchen.example', `*.${D}`),
    ],
  ])('%s', (_what, raw, path, message) => {
    expect(errorsOf(raw)).toEqual([{ path, message }]);
  });
});

describe('validate: an xn-- label must be an A-label (RFC 5890 §2.3.2.1)', () => {
  it.each([
    ['MailDomain', md({ domain: 'xn--zz.example' }), 'spec.domain', NOT_A_LABEL('xn--zz.example')],
    [
      'MailDomain, the NFD spelling of bücher',
      md({ domain: 'xn--bucher-xyd.example' }),
      'spec.domain',
      NOT_A_LABEL('xn--bucher-xyd.example'),
    ],
    [
      'MailDomain, a subdomain',
      md({ domain: 'mail.xn--zz.example' }),
      'spec.domain',
      NOT_A_LABEL('mail.xn--zz.example', 'xn--zz'),
    ],
    [
      'accounts',
      md({ accounts: [{ server: 'old', addresses: [`a@xn--zz.${D}`] }] }),
      'spec.accounts[0].addresses[0]',
      NOT_A_LABEL(`xn--zz.${D}`, 'xn--zz'),
    ],
    [
      'TestRecipient forwardTo',
      tr({ forwardTo: 'a@xn--zz.example' }),
      'spec.forwardTo',
      NOT_A_LABEL('xn--zz.example'),
    ],
    [
      'copyRecipientDomain',
      dp({ dual: { copyRecipientDomain: 'xn--bucher-xyd.example' } }),
      'spec.dual.copyRecipientDomain',
      NOT_A_LABEL('xn--bucher-xyd.example'),
    ],
    ['DomainClaim wildcard', dc(['*.xn--zz.example']), 'spec.domains[0]', NOT_A_LABEL('xn--zz.example')],
  ])('%s', (_what, raw, path, message) => {
    expect(errorsOf(raw)).toEqual([{ path, message }]);
  });
  it.each(['xn--bcher-kva.example', D, 'example.com', 'mail.xn--fiq228c.example', 'ab--cd.example'])(
    'accepts %s',
    (domain) => {
      expect(errorsOf(md({ domain }))).toEqual([]);
    },
  );
  it('an upper-case fake A-label gets no lowercase hint naming another fake one', () => {
    expect(errorsOf(md({ domain: 'XN--ZZ.example' }))).toEqual([
      {
        path: 'spec.domain',
        message: 'must be a lowercase fully-qualified domain name such as example.com, got "XN--ZZ.example"',
      },
    ]);
  });
});
