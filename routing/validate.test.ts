import { describe, expect, it } from 'vitest';
import { CEL_PREDICATES } from './cel.ts';
import { formatManifestError, parseManifestText } from './parse.ts';
import { IDN_RULE } from './crd-schema.ts';
import type { MailDomain } from './types.ts';
import { pointerToPath, validateObject } from './validate.ts';

const md = (spec: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({
  apiVersion: 'mailroute.io/v1alpha1',
  kind: 'MailDomain',
  metadata: { name: 'example-com' },
  spec,
  ...extra,
});
const servers = [
  { name: 'old', host: 'mail.old.example' },
  { name: 'new', host: '192.0.2.10' },
];
const dp = (spec: Record<string, unknown>) => ({
  apiVersion: 'mailroute.io/v1alpha1',
  kind: 'DeliveryPolicy',
  metadata: { name: 'p' },
  spec: { domainRef: { name: 'example-com' }, mode: 'Dual', primary: 'old', secondary: 'new', ...spec },
});
const tr = (spec: Record<string, unknown>) => ({
  apiVersion: 'mailroute.io/v1alpha1',
  kind: 'TestRecipient',
  metadata: { name: 't' },
  spec: { policyRef: { name: 'p' }, address: 'alice@example.com', ...spec },
});

describe('validateObject: valid input gets defaults', () => {
  it('applies schema defaults and the default namespace', () => {
    const r = validateObject(md({ domain: 'example.com', servers }));
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    const o = r.object as MailDomain;
    expect(o.metadata.namespace).toBe('default');
    expect(o.spec.servers[0]).toEqual({
      name: 'old',
      host: 'mail.old.example',
      port: 25,
      mx: false,
      tls: 'Opportunistic',
      maxConnections: 10,
      maxRecipientsPerTransaction: 50,
    });
    expect(o.spec.rejectUnknownRecipients).toBe(false);
  });

  it('does not modify its input', () => {
    const raw = md({ domain: 'example.com', servers: [{ name: 'a', host: 'h.example' }] });
    const before = JSON.stringify(raw);
    validateObject(raw);
    expect(JSON.stringify(raw)).toBe(before);
  });

  it('a date-time the pattern and the format both refuse is one error line, in words', () => {
    const r = validateObject(tr({ expiresAt: '2026-06-05T00:00:00,5Z' }));
    expect(r.ok ? [] : r.errors).toEqual([
      {
        path: 'spec.expiresAt',
        message:
          'must be an RFC 3339 date-time such as 2026-12-31T00:00:00Z or 2026-12-31T01:00:00+01:00, got "2026-06-05T00:00:00,5Z"',
      },
    ]);
  });

  it('accepts every valid variant of the three kinds', () => {
    for (const raw of [
      dp({}),
      dp({ mode: 'Direct', secondary: undefined }),
      dp({ mode: 'Split', split: { unknownRecipients: 'Reject' } }),
      tr({ forwardTo: 'alice@zoho.example', keepPrimaryCopy: false, expiresAt: '2026-12-31T00:00:00Z' }),
      tr({ expiresAt: '2026-12-31T00:00:00.5+02:00' }),
      md({ domain: 'a-b.example.co.uk', servers: [{ name: 'x', host: '2001:db8::1', mx: true }] }),
    ]) {
      const r = validateObject(raw);
      expect(r.ok ? [] : r.errors, JSON.stringify(raw)).toEqual([]);
    }
  });
});

// One row per invalid input: the field path and a fragment of the message.
const invalid: [string, unknown, string, string][] = [
  ['not a mapping', 'hello', '', 'must be a mapping'],
  [
    'unknown kind',
    { apiVersion: 'mailroute.io/v1alpha1', kind: 'MailBox', metadata: { name: 'x' } },
    'kind',
    'unknown kind "MailBox"',
  ],
  [
    'wrong apiVersion',
    { ...md({ domain: 'example.com', servers }), apiVersion: 'mailroute.io/v1' },
    'apiVersion',
    'must be mailroute.io/v1alpha1 for MailDomain, got "mailroute.io/v1"',
  ],
  [
    'missing spec',
    { apiVersion: 'mailroute.io/v1alpha1', kind: 'MailDomain', metadata: { name: 'x' } },
    'spec',
    'required',
  ],
  ['missing name', { ...md({ domain: 'example.com', servers }), metadata: {} }, 'metadata.name', 'required'],
  [
    'bad name',
    { ...md({ domain: 'example.com', servers }), metadata: { name: 'Bad_Name' } },
    'metadata.name',
    'DNS subdomain',
  ],
  ['unknown top-level field', md({ domain: 'example.com', servers }, { extra: 1 }), 'extra', 'unknown field'],
  [
    'unknown spec field',
    md({ domain: 'example.com', servers, colour: 'red' }),
    'spec.colour',
    'unknown field',
  ],
  [
    'unknown nested field',
    md({ domain: 'example.com', servers: [{ name: 'a', host: 'h', weight: 1 }] }),
    'spec.servers[0].weight',
    'unknown field',
  ],
  ['missing domain', md({ servers }), 'spec.domain', 'required field is missing'],
  [
    'uppercase domain',
    md({ domain: 'Example.com', servers }),
    'spec.domain',
    'lowercase fully-qualified domain',
  ],
  ['single-label domain', md({ domain: 'localhost', servers }), 'spec.domain', 'domain name'],
  ['domain wrong type', md({ domain: 42, servers }), 'spec.domain', 'must be string, got 42'],
  ['no servers', md({ domain: 'example.com', servers: [] }), 'spec.servers', 'fewer than 1'],
  [
    '17 servers',
    md({
      domain: 'example.com',
      servers: Array.from({ length: 17 }, (_, i) => ({ name: `s${i}`, host: 'h' })),
    }),
    'spec.servers',
    'more than 16',
  ],
  [
    'port out of range',
    md({ domain: 'example.com', servers: [{ name: 'a', host: 'h', port: 0 }] }),
    'spec.servers[0].port',
    '>= 1',
  ],
  [
    'port not an integer',
    md({ domain: 'example.com', servers: [{ name: 'a', host: 'h', port: 25.5 }] }),
    'spec.servers[0].port',
    'must be integer',
  ],
  [
    'port as string',
    md({ domain: 'example.com', servers: [{ name: 'a', host: 'h', port: '25' }] }),
    'spec.servers[0].port',
    'must be integer, got "25"',
  ],
  [
    'bad tls',
    md({ domain: 'example.com', servers: [{ name: 'a', host: 'h', tls: 'Yes' }] }),
    'spec.servers[0].tls',
    'must be one of None, Opportunistic',
  ],
  [
    'bad server name',
    md({ domain: 'example.com', servers: [{ name: 'Old', host: 'h' }] }),
    'spec.servers[0].name',
    'DNS label',
  ],
  [
    'bad host',
    md({ domain: 'example.com', servers: [{ name: 'a', host: 'h h' }] }),
    'spec.servers[0].host',
    'hostname or an IP',
  ],
  [
    'maxConnections too high',
    md({ domain: 'example.com', servers: [{ name: 'a', host: 'h', maxConnections: 5000 }] }),
    'spec.servers[0].maxConnections',
    '<= 1000',
  ],
  [
    'maxRecipientsPerTransaction zero',
    md({ domain: 'example.com', servers: [{ name: 'a', host: 'h', maxRecipientsPerTransaction: 0 }] }),
    'spec.servers[0].maxRecipientsPerTransaction',
    '>= 1',
  ],
  [
    'maxRecipientsPerTransaction not a whole number',
    md({ domain: 'example.com', servers: [{ name: 'a', host: 'h', maxRecipientsPerTransaction: 2.5 }] }),
    'spec.servers[0].maxRecipientsPerTransaction',
    'integer',
  ],
  [
    'duplicate server names (CEL)',
    md({
      domain: 'example.com',
      servers: [
        { name: 'a', host: 'h' },
        { name: 'a', host: 'i' },
      ],
    }),
    'spec.servers',
    'server names must be unique',
  ],
  [
    'accounts for an unknown server (CEL)',
    md({ domain: 'example.com', servers, accounts: [{ server: 'zoho', addresses: ['a@example.com'] }] }),
    'spec.accounts',
    'must name one of spec.servers',
  ],
  [
    'verification of an unknown server (CEL)',
    md({ domain: 'example.com', servers, recipientVerification: { server: 'zoho' } }),
    'spec.recipientVerification.server',
    'must name one of spec.servers',
  ],
  [
    'bad account address',
    md({ domain: 'example.com', servers, accounts: [{ server: 'old', addresses: ['not-an-address'] }] }),
    'spec.accounts[0].addresses[0]',
    'email address',
  ],
  [
    'too many addresses',
    md({
      domain: 'example.com',
      servers,
      accounts: [{ server: 'old', addresses: Array.from({ length: 5001 }, (_, i) => `u${i}@example.com`) }],
    }),
    'spec.accounts[0].addresses',
    'more than 5000',
  ],
  [
    'bad cacheTTL',
    md({ domain: 'example.com', servers, recipientVerification: { server: 'old', cacheTTL: 'forever' } }),
    'spec.recipientVerification.cacheTTL',
    'duration',
  ],
  [
    'recipientDelimiter that could split a domain or a dotted name',
    md({ domain: 'example.com', servers, recipientDelimiter: '.@' }),
    'spec.recipientDelimiter',
    'characters + - _ = ~ #',
  ],
  ['bad mode', dp({ mode: 'Triple' }), 'spec.mode', 'must be one of Direct, Dual, Split'],
  [
    'Dual without secondary (CEL)',
    dp({ secondary: undefined }),
    'spec.secondary',
    'required when mode is Dual or Split',
  ],
  [
    'Split without secondary (CEL)',
    dp({ mode: 'Split', secondary: undefined }),
    'spec.secondary',
    'required when mode is Dual or Split',
  ],
  ['secondary == primary (CEL)', dp({ secondary: 'old' }), 'spec.secondary', 'must differ from primary'],
  [
    'bad scope',
    dp({ dual: { scope: 'Some' } }),
    'spec.dual.scope',
    'must be one of All, TestRecipients, Accounts',
  ],
  ['bad bounces', dp({ dual: { bounces: 'Drop' } }), 'spec.dual.bounces', 'must be one of Suppress, Notify'],
  [
    'bad copyRecipientDomain',
    dp({ dual: { copyRecipientDomain: 'not a domain' } }),
    'spec.dual.copyRecipientDomain',
    'domain name',
  ],
  [
    'bad unknownRecipients',
    dp({ mode: 'Split', split: { unknownRecipients: 'Drop' } }),
    'spec.split.unknownRecipients',
    'must be one of Secondary, Reject',
  ],
  ['missing domainRef', dp({ domainRef: undefined }), 'spec.domainRef', 'required'],
  ['domainRef without name', dp({ domainRef: {} }), 'spec.domainRef.name', 'required'],
  ['bad address', tr({ address: 'alice' }), 'spec.address', 'email address'],
  [
    'source route address',
    tr({ address: '@relay.example:alice@example.com' }),
    'spec.address',
    'email address',
  ],
  ['bad forwardTo', tr({ forwardTo: 'a b@example.com' }), 'spec.forwardTo', 'email address'],
  ['bad expiresAt', tr({ expiresAt: 'tomorrow' }), 'spec.expiresAt', 'RFC 3339'],
  ['expiresAt without zone', tr({ expiresAt: '2026-12-31T00:00:00' }), 'spec.expiresAt', 'RFC 3339'],
  // the API server's format check lets these through; the CRD's pattern (and this check) does not
  [
    'expiresAt with a comma fraction',
    tr({ expiresAt: '2026-06-05T00:00:00,5Z' }),
    'spec.expiresAt',
    'RFC 3339',
  ],
  [
    'expiresAt with offset +99:99',
    tr({ expiresAt: '2026-06-05T00:00:00+99:99' }),
    'spec.expiresAt',
    'RFC 3339',
  ],
  // Date.parse makes these March 2 and the next day (the API server's format check refuses them too)
  ['expiresAt on February 30', tr({ expiresAt: '2026-02-30T00:00:00Z' }), 'spec.expiresAt', 'RFC 3339'],
  ['expiresAt at 24:00', tr({ expiresAt: '2026-06-05T24:00:00Z' }), 'spec.expiresAt', 'RFC 3339'],
  ['keepPrimaryCopy as string', tr({ keepPrimaryCopy: 'yes' }), 'spec.keepPrimaryCopy', 'must be boolean'],
  [
    'bad status condition',
    { ...tr({}), status: { conditions: [{ type: 'Ready', status: 'Maybe' }] } },
    'status.conditions[0].status',
    'must be one of True, False, Unknown',
  ],
];

describe('validateObject: invalid input names the field', () => {
  it.each(invalid)('%s', (_name, raw, path, fragment) => {
    const r = validateObject(raw);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    const match = r.errors.find((e) => e.path === path);
    expect(match, JSON.stringify(r.errors)).toBeDefined();
    expect(match!.message).toContain(fragment);
  });
});

describe('validateObject: values that are not JSON data (found by routing/parse.fuzz.test.ts)', () => {
  it('an array with an own "constructor" property is validated as the JSON it stands for, without throwing', () => {
    const list = [
      { name: 'old', host: 'mail.old.example' },
      { name: 'new', host: '192.0.2.10' },
    ];
    Object.defineProperty(list, 'constructor', { value: 70000, enumerable: true });
    const r = validateObject(md({ domain: 'example.com', servers: list }));
    expect(r.ok).toBe(true);
  });
  it.each([
    ['a BigInt', { a: 1n }, /^not JSON data: .*BigInt/],
    ['a cycle', (() => { const o: Record<string, unknown> = {}; o.self = o; return o; })(), /^not JSON data: .*circular/], // prettier-ignore
  ])('%s is refused with a message, not thrown', (_what, extra, want) => {
    const r = validateObject(md({ domain: 'example.com', servers }, { x: extra }));
    expect(r.ok).toBe(false);
    expect(!r.ok && r.errors[0]?.message).toMatch(want);
  });
});

describe('CEL predicates', () => {
  it('domain immutability is checked only with an old object', () => {
    const old = validateObject(md({ domain: 'example.com', servers }));
    expect(old.ok).toBe(true);
    if (!old.ok) return;
    expect(validateObject(md({ domain: 'example.org', servers })).ok).toBe(true);
    const changed = validateObject(md({ domain: 'example.org', servers }), old.object);
    expect(changed.ok ? [] : changed.errors).toEqual([
      { path: 'spec.domain', message: 'domain is immutable' },
    ]);
    expect(validateObject(md({ domain: 'example.com', servers: [servers[0]] }), old.object).ok).toBe(true);
  });

  it('each predicate accepts and refuses', () => {
    const p = (rule: string) => CEL_PREDICATES[rule]!.check;
    const unique = p('self.servers.all(s, self.servers.exists_one(t, t.name == s.name))');
    expect(unique({ servers: [{ name: 'a' }, { name: 'b' }] }, undefined)).toBe(true);
    expect(unique({ servers: [{ name: 'a' }, { name: 'a' }] }, undefined)).toBe(false);
    const direct = p("self.mode == 'Direct' || has(self.secondary)");
    expect(direct({ mode: 'Direct', primary: 'a' }, undefined)).toBe(true);
    expect(direct({ mode: 'Split', primary: 'a' }, undefined)).toBe(false);
    const plaintext = p(
      "!has(self.authSecretRef) || !has(self.tls) || self.tls != 'None' || (has(self.allowPlaintextAuth) && self.allowPlaintextAuth)",
    );
    const ref = { name: 's' };
    expect(plaintext({ name: 'a', host: 'h', tls: 'None' }, undefined)).toBe(true);
    expect(plaintext({ name: 'a', host: 'h', tls: 'Opportunistic', authSecretRef: ref }, undefined)).toBe(
      true,
    );
    expect(plaintext({ name: 'a', host: 'h', tls: 'None', authSecretRef: ref }, undefined)).toBe(false);
    expect(
      plaintext(
        { name: 'a', host: 'h', tls: 'None', authSecretRef: ref, allowPlaintextAuth: false },
        undefined,
      ),
    ).toBe(false);
    expect(
      plaintext(
        { name: 'a', host: 'h', tls: 'None', authSecretRef: ref, allowPlaintextAuth: true },
        undefined,
      ),
    ).toBe(true);
    const differ = p('!has(self.secondary) || self.secondary != self.primary');
    expect(differ({ primary: 'a' }, undefined)).toBe(true);
    expect(differ({ primary: 'a', secondary: 'a' }, undefined)).toBe(false);
  });
});

describe('parseManifestText', () => {
  it('reads several documents, skips empty ones, decodes Secrets', () => {
    const text = [
      '---',
      'apiVersion: v1\nkind: Secret\ntype: mailroute.io/smtp-auth\nmetadata: {name: smtp, labels: {mailroute.io/smtp-auth: "true"}}\ndata: {username: YWxpY2U=}\nstringData: {password: s3cret}',
      '---',
      '# only a comment',
      '---',
      'apiVersion: mailroute.io/v1alpha1\nkind: MailDomain\nmetadata: {name: example-com, namespace: mail}\nspec:\n  domain: example.com\n  servers: [{name: old, host: mail.example}]',
    ].join('\n');
    const r = parseManifestText(text, 'f.yaml');
    expect(r.errors).toEqual([]);
    expect(r.secrets).toEqual([
      {
        namespace: 'default',
        name: 'smtp',
        data: { username: 'alice', password: 's3cret' },
        labels: { 'mailroute.io/smtp-auth': 'true' },
        type: 'mailroute.io/smtp-auth',
      },
    ]);
    expect(r.objects.map((o) => `${o.kind}/${o.metadata.namespace}/${o.metadata.name}`)).toEqual([
      'MailDomain/mail/example-com',
    ]);
    expect(r.origins.get('MailDomain/mail/example-com')).toBe('f.yaml');
  });

  it.each([
    ['malformed YAML', 'a: [1, 2\n', 'f.yaml: line', 'invalid YAML'],
    ['duplicate keys', 'apiVersion: v1\napiVersion: v2\n', 'f.yaml: line 2', 'invalid YAML'],
    ['a list document', '- a\n- b\n', 'f.yaml: line 1', 'must be a mapping'],
    [
      'a ConfigMap',
      'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n',
      'f.yaml: ConfigMap/c',
      'unknown kind "ConfigMap"',
    ],
    [
      'bad Secret data',
      'apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {password: "!!"}\n',
      'f.yaml: Secret/s: data.password',
      'base64',
    ],
    [
      'the same object twice',
      'apiVersion: mailroute.io/v1alpha1\nkind: TestRecipient\nmetadata: {name: t}\nspec: {policyRef: {name: p}, address: a@example.com}\n---\napiVersion: mailroute.io/v1alpha1\nkind: TestRecipient\nmetadata: {name: t}\nspec: {policyRef: {name: p}, address: a@example.com}\n',
      'f.yaml: TestRecipient/t',
      'declared twice',
    ],
  ])('%s is one clear error', (_name, text, prefix, fragment) => {
    const r = parseManifestText(text, 'f.yaml');
    expect(r.errors.length).toBeGreaterThan(0);
    const line = formatManifestError(r.errors[0]!);
    expect(line.startsWith(prefix), line).toBe(true);
    expect(line).toContain(fragment);
  });

  it('formats errors as file: Kind/name: path: message', () => {
    const r = parseManifestText(
      'apiVersion: mailroute.io/v1alpha1\nkind: DeliveryPolicy\nmetadata: {name: p}\nspec: {domainRef: {name: d}, mode: Dual, primary: a, secondary: a}\n',
      'policy.yaml',
    );
    expect(r.errors.map(formatManifestError)).toEqual([
      'policy.yaml: DeliveryPolicy/p: spec.secondary: secondary must differ from primary',
    ]);
  });
});

describe('pointerToPath', () => {
  it.each([
    ['', ''],
    ['/spec', 'spec'],
    ['/spec/servers/0/name', 'spec.servers[0].name'],
    ['/metadata/labels/a~1b', 'metadata.labels.a/b'],
  ])('%s -> %s', (p, want) => expect(pointerToPath(p)).toBe(want));
});

describe('IDN domains in a MailDomain', () => {
  const md = (domain: string) => ({
    apiVersion: 'mailroute.io/v1alpha1',
    kind: 'MailDomain',
    metadata: { name: 'idn' },
    spec: { domain, servers: [{ name: 'old', host: '10.0.0.1' }] },
  });
  it('accepts the A-label form', () => {
    expect(validateObject(md('xn--mnchen-3ya.example')).ok).toBe(true);
  });
  it.each([
    [
      'münchen.example',
      'an internationalised domain must be written in its A-label (punycode) form: use "xn--mnchen-3ya.example" for "münchen.example"',
    ],
    [
      'XN--MNCHEN-3YA.example',
      'must be a lowercase fully-qualified domain name: use "xn--mnchen-3ya.example"',
    ],
    ['Example.COM', 'must be a lowercase fully-qualified domain name: use "example.com"'],
  ])('refuses %s and says which form to use', (domain, message) => {
    const r = validateObject(md(domain));
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.errors).toEqual([{ path: 'spec.domain', message }]);
  });
  it('the CEL twin of the API server rule refuses a U-label domain too', () => {
    expect(CEL_PREDICATES[IDN_RULE]?.check('münchen.example', undefined)).toBe(false);
    expect(CEL_PREDICATES[IDN_RULE]?.check('xn--mnchen-3ya.example', undefined)).toBe(true);
  });
});

describe('DomainClaim (cluster-scoped)', () => {
  const dc = (spec: Record<string, unknown>, metadata: Record<string, unknown> = { name: 'team-a' }) => ({
    apiVersion: 'mailroute.io/v1alpha1',
    kind: 'DomainClaim',
    metadata,
    spec,
  });

  it('accepts domains, wildcards and *, and has no namespace', () => {
    const r = validateObject(
      dc(
        { domains: ['corp.test', '*.corp.test', '*'], namespaces: { names: ['team-a'] } },
        { name: 'team-a', namespace: 'ignored' },
      ),
    );
    expect(r.ok).toBe(true);
    if (r.ok) expect(r.object.metadata.namespace).toBeUndefined();
  });

  it.each([
    [{ domains: ['Corp.test'], namespaces: { names: ['a'] } }, 'spec.domains[0]'],
    [{ domains: ['*corp.test'], namespaces: { names: ['a'] } }, 'spec.domains[0]'],
    [{ domains: ['corp.*.test'], namespaces: { names: ['a'] } }, 'spec.domains[0]'],
    [{ domains: [], namespaces: { names: ['a'] } }, 'spec.domains'],
    [{ domains: ['corp.test'], namespaces: { names: ['Team_A'] } }, 'spec.namespaces.names[0]'],
    [{ domains: ['corp.test'], namespaces: {} }, 'spec.namespaces.names'],
    [{ domains: ['corp.test'] }, 'spec.namespaces'],
  ])('refuses %j at %s', (spec, path) => {
    const r = validateObject(dc(spec));
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.errors.map((e) => e.path)).toContain(path);
  });

  const g = { domains: ['corp.test'], namespaces: { names: ['a'] } };
  it('accepts destinations: CIDRs and bare addresses, IPv4 and IPv6', () => {
    const r = validateObject(
      dc({
        ...g,
        destinations: { allow: ['10.244.1.7', 'fd00::/64'], deny: ['192.0.2.0/24', '::ffff:10.0.0.0/104'] },
      }),
    );
    expect(r.ok, JSON.stringify(r)).toBe(true);
  });

  it.each([
    [{ allow: ['corp.test'] }, 'spec.destinations.allow[0]', 'must be a CIDR such as 10.0.0.0/8'],
    [
      { deny: ['10.0.0.0/8', '2130706433'] },
      'spec.destinations.deny[1]',
      'must be a CIDR such as 10.0.0.0/8',
    ],
    // the shape passes the schema pattern; the destination policy's own parser refuses the value
    [{ deny: ['999.1.1.1/8'] }, 'spec.destinations.deny[0]', 'is not an IP address or CIDR'],
    [{ allow: ['10.0.0.0/33'] }, 'spec.destinations.allow[0]', 'prefix length must be 0..32'],
    [{ allow: ['1::2::3/64'] }, 'spec.destinations.allow[0]', 'is not an IP address or CIDR'],
    [{ deny: ['010.0.0.1'] }, 'spec.destinations.deny[0]', 'is not an IP address or CIDR'],
    [{ deny: ['fd00::/129'] }, 'spec.destinations.deny[0]', 'prefix length must be 0..128'],
    [{ deny: ['10.0.0.0/08'] }, 'spec.destinations.deny[0]', 'must be a CIDR such as 10.0.0.0/8'],
  ])('refuses destinations %j at %s', (destinations, path, message) => {
    const r = validateObject(dc({ ...g, destinations }));
    expect(r.ok).toBe(false);
    if (!r.ok) {
      const e = r.errors.find((x) => x.path === path);
      expect(e?.message, JSON.stringify(r.errors)).toContain(message);
    }
  });

  it('parseManifestText puts DomainClaims apart from the routed objects', () => {
    const parsed = parseManifestText(
      [
        'apiVersion: mailroute.io/v1alpha1',
        'kind: DomainClaim',
        'metadata: {name: team-a}',
        'spec: {domains: [corp.test], namespaces: {names: [team-a]}}',
      ].join('\n'),
      'grants.yaml',
    );
    expect(parsed.errors).toEqual([]);
    expect(parsed.objects).toEqual([]);
    expect(parsed.claims.map((c) => c.metadata.name)).toEqual(['team-a']);
  });
});
