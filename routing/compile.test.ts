import { describe, expect, it } from 'vitest';
import { canonicalJson, prettyCanonicalJson, sha256Hex } from './canonical.ts';
import { compile, durationSeconds, Reasons, tableRevision } from './compile.ts';
import type { CompileIssue } from './model.ts';
import {
  deliveryPolicy,
  domainClaim,
  exampleDomain,
  examplePolicy,
  mailDomain,
  syntheticObjects,
  testRecipient,
} from './test-fixtures.ts';
import type { MailrouteObject } from './types.ts';

const at = (t: string) => ({ creationTimestamp: t });
const brief = (issues: CompileIssue[]) => issues.map((i) => `${i.kind}/${i.name} ${i.field} ${i.reason}`);

describe('compile: the table', () => {
  it('compiles a Dual domain with test recipients', () => {
    const { table, issues, revision, json } = compile([
      exampleDomain({
        accounts: [
          { server: 'new', addresses: ['Bob@Example.com', 'alice@example.com'] },
          { server: 'new', addresses: ['alice@example.com', 'carol@example.com'] },
        ],
        recipientVerification: { server: 'old', cacheTTL: '1h30m' },
        servers: [
          { name: 'old', host: '10.0.0.1', authSecretRef: { name: 'old-smtp' } },
          { name: 'new', host: '10.0.0.2' },
        ],
      }),
      examplePolicy({
        mode: 'Dual',
        secondary: 'new',
        dual: { scope: 'TestRecipients', copyRecipientDomain: 'zoho.example' },
      }),
      testRecipient('alice', { policyRef: { name: 'example-com' }, address: 'Alice@example.com' }),
      testRecipient('bob', {
        policyRef: { name: 'example-com' },
        address: 'bob@example.com',
        forwardTo: 'robert@elsewhere.example',
        keepPrimaryCopy: false,
        expiresAt: '2026-12-31T00:00:00Z',
      }),
    ]);
    expect(issues).toEqual([]);
    const d = table.domains['example.com']!;
    expect(d.mode).toBe('Dual');
    expect(d.primary).toBe('old');
    expect(d.secondary).toBe('new');
    expect(d.dual).toEqual({
      scope: 'TestRecipients',
      bounces: 'Suppress',
      copyRecipientDomain: 'zoho.example',
    });
    expect(d.split).toBeUndefined();
    expect(d.accounts).toEqual({ new: ['alice@example.com', 'bob@example.com', 'carol@example.com'] });
    expect(d.recipientVerification).toEqual({ server: 'old', cacheTTLSeconds: 5400 });
    expect(d.servers['old']).toEqual({
      name: 'old',
      host: '10.0.0.1',
      port: 25,
      mx: false,
      tls: 'Opportunistic',
      maxConnections: 10,
      maxRecipientsPerTransaction: 50,
      authSecretRef: { namespace: 'default', name: 'old-smtp' },
    });
    expect(d.testRecipients['alice@example.com']).toMatchObject({
      forwardTo: 'Alice@zoho.example',
      keepPrimaryCopy: true,
    });
    expect(d.testRecipients['bob@example.com']).toMatchObject({
      forwardTo: 'robert@elsewhere.example',
      keepPrimaryCopy: false,
      expiresAt: '2026-12-31T00:00:00Z',
    });
    expect(table.sources.map((s) => `${s.kind}/${s.name}`)).toEqual([
      'MailDomain/example-com',
      'DeliveryPolicy/example-com',
      'TestRecipient/alice',
      'TestRecipient/bob',
    ]);
    expect(json).toBe(canonicalJson(table));
    expect(revision).toBe(sha256Hex(json));
    expect(tableRevision(table)).toBe(revision);
    expect(revision).toMatch(/^[0-9a-f]{64}$/);
  });

  it('keeps a domain without a policy, with no policy fields', () => {
    const { table, issues } = compile([exampleDomain()]);
    expect(issues).toEqual([]);
    const d = table.domains['example.com']!;
    expect(d.policy).toBeUndefined();
    expect(d.mode).toBeUndefined();
    expect(d.primary).toBeUndefined();
  });

  it('only keeps the settings of the policy mode', () => {
    const { table } = compile([
      exampleDomain({ accounts: [{ server: 'old', addresses: ['a@example.com'] }] }),
      examplePolicy({ mode: 'Split', secondary: 'new', dual: { scope: 'All' } }),
    ]);
    const d = table.domains['example.com']!;
    expect(d.split).toEqual({ unknownRecipients: 'Secondary' });
    expect(d.dual).toBeUndefined();
  });

  it('softBounce reaches the route and each stage only when true (a table without it keeps its revision)', () => {
    const stage = { name: 'cutover', until: '2026-07-01T00:00:00Z', mode: 'Direct', primary: 'new' };
    const on = compile([
      exampleDomain(),
      examplePolicy({ mode: 'Direct', softBounce: true, stages: [{ ...stage, softBounce: true }] }),
    ]).table.domains['example.com']!;
    expect(on.softBounce).toBe(true);
    expect(on.stages?.[0]?.softBounce).toBe(true);
    const off = compile([
      exampleDomain(),
      examplePolicy({ mode: 'Direct', softBounce: false, stages: [{ ...stage, softBounce: false }] }),
    ]);
    expect(off.json).not.toContain('softBounce');
    const absent = compile([exampleDomain(), examplePolicy({ mode: 'Direct', stages: [stage] })]);
    expect(off.revision).toBe(absent.revision);
  });

  it('is deterministic: input order and duplicates of the same object do not change a byte', () => {
    const objects = syntheticObjects(5, 4);
    const a = compile(objects);
    const b = compile([...objects].reverse().concat(objects.slice(0, 3)));
    expect(b.json).toBe(a.json);
    expect(b.revision).toBe(a.revision);
    expect(b.issues).toEqual([]);
  });

  it('a changed generation changes the revision', () => {
    const a = compile([exampleDomain({}, { name: 'example-com', generation: 1 })]);
    const b = compile([exampleDomain({}, { name: 'example-com', generation: 2 })]);
    expect(a.revision).not.toBe(b.revision);
  });
});

/** Server old authenticating over plain SMTP: tls None, allowPlaintextAuth, authSecretRef old-smtp (a fresh object). */
const plainAuthOld = () => ({
  name: 'old',
  host: '10.0.0.1',
  tls: 'None',
  allowPlaintextAuth: true,
  authSecretRef: { name: 'old-smtp' },
});

// Every cross-object issue: the objects, then the issues expected (Kind/name field Reason), then what is routed.
const cases: { name: string; objects: () => MailrouteObject[]; issues: string[]; domains?: string[] }[] = [
  {
    name: 'dangling domainRef',
    objects: () => [
      exampleDomain(),
      deliveryPolicy('p', { domainRef: { name: 'nope' }, mode: 'Direct', primary: 'old' }),
    ],
    issues: ['DeliveryPolicy/p spec.domainRef.name DomainNotFound'],
  },
  {
    name: 'domainRef in another namespace does not resolve',
    objects: () => [
      exampleDomain({}, { name: 'example-com', namespace: 'mail' }),
      examplePolicy({ mode: 'Direct' }, { name: 'p', namespace: 'other' }),
    ],
    issues: ['DeliveryPolicy/p spec.domainRef.name DomainNotFound'],
  },
  {
    name: 'dangling policyRef',
    objects: () => [
      exampleDomain(),
      examplePolicy({ mode: 'Direct' }),
      testRecipient('t', { policyRef: { name: 'nope' }, address: 'a@example.com' }),
    ],
    issues: ['TestRecipient/t spec.policyRef.name PolicyNotFound'],
  },
  {
    name: 'unknown primary server',
    objects: () => [exampleDomain(), examplePolicy({ mode: 'Direct', primary: 'zoho' })],
    issues: ['DeliveryPolicy/example-com spec.primary UnknownServer'],
  },
  {
    name: 'unknown secondary server',
    objects: () => [exampleDomain(), examplePolicy({ mode: 'Dual', secondary: 'zoho' })],
    issues: ['DeliveryPolicy/example-com spec.secondary UnknownServer'],
  },
  {
    name: 'two policies for one domain: the older wins',
    objects: () => [
      exampleDomain(),
      examplePolicy({ mode: 'Direct' }, { name: 'b-newer', ...at('2026-01-02T00:00:00Z') }),
      examplePolicy({ mode: 'Dual', secondary: 'new' }, { name: 'a-older', ...at('2026-01-01T00:00:00Z') }),
    ],
    issues: ['DeliveryPolicy/b-newer spec.domainRef.name Conflict'],
  },
  {
    name: 'two policies with the same age: ties broken by name',
    objects: () => [
      exampleDomain(),
      examplePolicy({ mode: 'Direct' }, { name: 'b', ...at('2026-01-01T00:00:00Z') }),
      examplePolicy({ mode: 'Direct' }, { name: 'a', ...at('2026-01-01T00:00:00Z') }),
    ],
    issues: ['DeliveryPolicy/b spec.domainRef.name Conflict'],
  },
  {
    name: 'a policy without creationTimestamp loses to one with',
    objects: () => [
      exampleDomain(),
      examplePolicy({ mode: 'Direct' }, { name: 'a' }),
      examplePolicy({ mode: 'Direct' }, { name: 'b', ...at('2026-01-01T00:00:00Z') }),
    ],
    issues: ['DeliveryPolicy/a spec.domainRef.name Conflict'],
  },
  {
    name: 'a test recipient outside the domain',
    objects: () => [
      exampleDomain(),
      examplePolicy({ mode: 'Dual', secondary: 'new' }),
      testRecipient('t', { policyRef: { name: 'example-com' }, address: 'a@example.org' }),
    ],
    issues: ['TestRecipient/t spec.address AddressOutsideDomain'],
  },
  {
    name: 'an account outside the domain',
    objects: () => [
      exampleDomain({ accounts: [{ server: 'new', addresses: ['a@example.com', 'b@example.org'] }] }),
    ],
    issues: ['MailDomain/example-com spec.accounts[0].addresses[1] AddressOutsideDomain'],
    domains: [],
  },
  {
    // The CRD's CEL rule refuses this at admission; an object stored before the rule existed still gets here.
    name: 'authSecretRef with tls None, without allowPlaintextAuth (stored before the CEL rule)',
    objects: () => {
      const d = exampleDomain({
        servers: [plainAuthOld(), { name: 'new', host: '10.0.0.2', tls: 'None' }],
      });
      delete d.spec.servers[0]!.allowPlaintextAuth;
      return [d];
    },
    issues: ['MailDomain/example-com spec.servers[0].allowPlaintextAuth PlaintextAuth'],
    domains: [],
  },
  {
    name: 'authSecretRef with tls None and allowPlaintextAuth: true, or with TLS',
    objects: () => [
      exampleDomain({
        servers: [
          plainAuthOld(),
          { name: 'new', host: '10.0.0.2', tls: 'Opportunistic', authSecretRef: { name: 'new-smtp' } },
        ],
      }),
    ],
    issues: [],
    domains: ['example.com'],
  },
  {
    name: 'Split without a way to know the primary mailboxes',
    objects: () => [
      exampleDomain({ accounts: [{ server: 'new', addresses: ['a@example.com'] }] }),
      examplePolicy({ mode: 'Split', secondary: 'new' }),
    ],
    issues: ['DeliveryPolicy/example-com spec.mode NoAccountSource'],
  },
  {
    name: 'Split with verification on the primary is fine',
    objects: () => [
      exampleDomain({ recipientVerification: { server: 'old' } }),
      examplePolicy({ mode: 'Split', secondary: 'new' }),
    ],
    issues: [],
  },
  {
    name: 'Dual scope Accounts without a way to know the secondary mailboxes',
    objects: () => [
      exampleDomain({ accounts: [{ server: 'old', addresses: ['a@example.com'] }] }),
      examplePolicy({ mode: 'Dual', secondary: 'new', dual: { scope: 'Accounts' } }),
    ],
    issues: ['DeliveryPolicy/example-com spec.dual.scope NoAccountSource'],
  },
  {
    name: 'a domain declared twice (across namespaces): the older wins',
    objects: () => [
      exampleDomain({}, { name: 'example-com', namespace: 'b', ...at('2026-01-01T00:00:00Z') }),
      exampleDomain({}, { name: 'example-com', namespace: 'a', ...at('2026-01-02T00:00:00Z') }),
    ],
    issues: ['MailDomain/example-com spec.domain DomainConflict'],
    domains: ['example.com'],
  },
  {
    name: 'a policy of a losing MailDomain',
    objects: () => [
      exampleDomain({}, { name: 'example-com', ...at('2026-01-02T00:00:00Z') }),
      exampleDomain({}, { name: 'first', ...at('2026-01-01T00:00:00Z') }),
      examplePolicy({ mode: 'Direct' }),
    ],
    issues: [
      'MailDomain/example-com spec.domain DomainConflict',
      'DeliveryPolicy/example-com spec.domainRef.name DomainNotAccepted',
    ],
  },
  {
    name: 'test recipients of a losing policy',
    objects: () => [
      exampleDomain(),
      examplePolicy({ mode: 'Dual', secondary: 'new' }, { name: 'a', ...at('2026-01-01T00:00:00Z') }),
      examplePolicy({ mode: 'Dual', secondary: 'new' }, { name: 'b', ...at('2026-01-02T00:00:00Z') }),
      testRecipient('t', { policyRef: { name: 'b' }, address: 'x@example.com' }),
    ],
    issues: [
      'DeliveryPolicy/b spec.domainRef.name Conflict',
      'TestRecipient/t spec.policyRef.name PolicyNotAccepted',
    ],
  },
  {
    name: 'two test recipients for one address: the older wins',
    objects: () => [
      exampleDomain(),
      examplePolicy({ mode: 'Dual', secondary: 'new' }),
      testRecipient(
        { name: 'a', ...at('2026-01-02T00:00:00Z') },
        { policyRef: { name: 'example-com' }, address: 'x@example.com' },
      ),
      testRecipient(
        { name: 'b', ...at('2026-01-01T00:00:00Z') },
        { policyRef: { name: 'example-com' }, address: 'X@example.com' },
      ),
    ],
    issues: ['TestRecipient/a spec.address Conflict'],
  },
  {
    // The API server's format check let this through; Date.parse gives NaN, which used to mean "never expires".
    name: 'a TestRecipient whose expiresAt cannot be read (a comma before the fraction)',
    objects: () => {
      const t = testRecipient('t', {
        policyRef: { name: 'example-com' },
        address: 'a@example.com',
        expiresAt: '2026-06-05T00:00:00Z',
      });
      t.spec.expiresAt = '2026-06-05T00:00:00,5Z';
      return [exampleDomain(), examplePolicy({ mode: 'Dual', secondary: 'new' }), t];
    },
    issues: ['TestRecipient/t spec.expiresAt InvalidTime'],
  },
  {
    name: 'a stage whose until cannot be read (an offset of +99:99)',
    objects: () => {
      const p = examplePolicy({
        mode: 'Direct',
        stages: [
          { name: 'a', until: '2026-06-05T00:00:00Z', mode: 'Dual', primary: 'old', secondary: 'new' },
          { name: 'b', until: '2026-07-05T00:00:00Z', mode: 'Direct', primary: 'new' },
        ],
      });
      p.spec.stages![1]!.until = '2026-07-05T00:00:00+99:99';
      return [exampleDomain(), p];
    },
    issues: ['DeliveryPolicy/example-com spec.stages[1].until InvalidTime'],
    domains: ['example.com'],
  },
  {
    name: 'the same object twice with different content',
    objects: () => [exampleDomain(), exampleDomain({ rejectUnknownRecipients: true })],
    issues: ['MailDomain/example-com metadata.name Duplicate'],
    domains: ['example.com'],
  },
];

describe('compile: cross-object issues', () => {
  it.each(cases)('$name', ({ objects, issues, domains }) => {
    const input = objects();
    const r = compile(input);
    expect(brief(r.issues)).toEqual(issues);
    for (const i of r.issues) {
      expect(Object.values(Reasons)).toContain(i.reason);
      expect(i.message.length).toBeGreaterThan(10);
    }
    // Objects with issues are left out of the table.
    const bad = new Set(
      r.issues.filter((i) => i.reason !== Reasons.Duplicate).map((i) => `${i.kind}/${i.namespace}/${i.name}`),
    );
    for (const s of r.table.sources) expect(bad.has(`${s.kind}/${s.namespace}/${s.name}`)).toBe(false);
    if (domains !== undefined) expect(Object.keys(r.table.domains)).toEqual(domains);
    // and reversing the input changes nothing
    expect(compile([...input].reverse()).json).toBe(r.json);
  });

  it('allowPlaintextAuth reaches the table only when true and with an authSecretRef', () => {
    const r = compile(cases.find((c) => c.name.startsWith('authSecretRef with tls None and'))!.objects());
    expect(r.table.domains['example.com']!.servers['old']).toMatchObject({
      allowPlaintextAuth: true,
      tls: 'None',
    });
    expect(r.table.domains['example.com']!.servers['new']).not.toHaveProperty('allowPlaintextAuth');
  });

  it('the winner of a policy conflict is the one in the table', () => {
    const r = compile(cases.find((c) => c.name.startsWith('two policies for one'))!.objects());
    expect(r.table.domains['example.com']!.policy?.name).toBe('a-older');
    expect(r.table.domains['example.com']!.mode).toBe('Dual');
  });

  it('conditions: dangling refs are ResolvedRefs, conflicts are Accepted', () => {
    const conditions = cases
      .flatMap((c) => compile(c.objects()).issues)
      .map((i) => `${i.reason}:${i.condition}`);
    expect(new Set(conditions)).toEqual(
      new Set([
        'DomainNotFound:ResolvedRefs',
        'PolicyNotFound:ResolvedRefs',
        'UnknownServer:ResolvedRefs',
        'DomainNotAccepted:ResolvedRefs',
        'PolicyNotAccepted:ResolvedRefs',
        'Conflict:Accepted',
        'DomainConflict:Accepted',
        'AddressOutsideDomain:Accepted',
        'NoAccountSource:Accepted',
        'PlaintextAuth:Accepted',
        'Duplicate:Accepted',
        'InvalidTime:Accepted',
      ]),
    );
  });
});

describe('compile: a forwardTo the relay could not read back', () => {
  it('a local part over 64 octets (the CRD pattern lets it through) is an InvalidAddress issue; the TestRecipient is left out', () => {
    const long = `${'l'.repeat(65)}@fwd.example`;
    const { table, issues } = compile([
      exampleDomain(),
      examplePolicy({ mode: 'Dual', secondary: 'new', dual: { scope: 'TestRecipients' } }),
      testRecipient('alice', {
        policyRef: { name: 'example-com' },
        address: 'alice@example.com',
        forwardTo: long,
        keepPrimaryCopy: false,
      }),
    ]);
    expect(brief(issues)).toEqual(['TestRecipient/alice spec.forwardTo InvalidAddress']);
    expect(issues[0]?.message).toMatch(/local part longer than 64 octets/);
    expect(table.domains['example.com']!.testRecipients).toEqual({});
  });
});

describe('canonical JSON', () => {
  it('sorts keys recursively by code unit, keeps array order, drops undefined', () => {
    expect(canonicalJson({ b: 1, a: [3, { d: undefined, c: 'x' }], '10': 0, '9': 0, B: null })).toBe(
      '{"10":0,"9":0,"B":null,"a":[3,{"c":"x"}],"b":1}',
    );
  });
  it('pretty output has the same order and parses to the same value', () => {
    const v = { b: { y: [1, {}], x: [] }, a: 'é' };
    const pretty = prettyCanonicalJson(v);
    expect(pretty).toBe(
      '{\n  "a": "é",\n  "b": {\n    "x": [],\n    "y": [\n      1,\n      {}\n    ]\n  }\n}',
    );
    expect(canonicalJson(JSON.parse(pretty))).toBe(canonicalJson(v));
  });
  it('refuses values JSON cannot carry', () => {
    expect(() => canonicalJson({ a: Number.NaN })).toThrow(/non-finite/);
  });
});

describe('durationSeconds', () => {
  it.each([
    ['90s', 90],
    ['15m', 900],
    ['1h', 3600],
    ['1h30m', 5400],
  ])('%s = %d s', (d, s) => expect(durationSeconds(d)).toBe(s));
});

describe('mailDomain fixture sanity', () => {
  it('namespaces are kept', () => {
    expect(
      mailDomain(
        { name: 'x', namespace: 'mail' },
        { domain: 'x.example', servers: [{ name: 'a', host: 'h' }] },
      ).metadata.namespace,
    ).toBe('mail');
  });
});

describe('compile: domain grants (DomainClaim)', () => {
  // Two teams on one cluster: team-a owns corp.test and its subdomains; team-b owns b.test. bigbank.test belongs to
  // nobody on this cluster. The admin also grants the providers' test domains used as copy targets.
  const claims = [
    domainClaim('team-a', ['corp.test', '*.corp.test', 'corp.test.zoho-test.example'], ['team-a']),
    domainClaim('team-b', ['b.test'], ['team-b']),
  ];
  const md = (ns: string, name: string, domain: string, created = '2026-01-01T00:00:00Z') =>
    mailDomain(
      { name, namespace: ns, creationTimestamp: created },
      {
        domain,
        servers: [
          { name: 'old', host: `${ns}.mx.test` },
          { name: 'new', host: `${ns}.new.test` },
        ],
      },
    );
  const dual = (ns: string, domainRef: string, copyRecipientDomain?: string) =>
    deliveryPolicy(
      { name: domainRef, namespace: ns },
      {
        domainRef: { name: domainRef },
        mode: 'Dual',
        primary: 'old',
        secondary: 'new',
        dual: copyRecipientDomain === undefined ? {} : { copyRecipientDomain },
      },
    );
  const full = (issues: CompileIssue[]) =>
    issues.map((i) => `${i.kind}/${i.namespace}/${i.name} ${i.field} ${i.reason}: ${i.message}`);

  it("re-create hijack: team-a re-creates its MailDomain (newer than team-b's) and still routes corp.test", () => {
    const objects = [
      md('team-a', 'corp', 'corp.test', '2026-06-01T12:00:00Z'), // kubectl replace --force: a new creationTimestamp
      md('team-b', 'corp', 'corp.test', '2026-01-01T00:00:00Z'),
    ];
    // without grants the older object (team-b's) takes the domain: the observed hijack
    expect(compile(objects).table.domains['corp.test']!.servers['old']!.host).toBe('team-b.mx.test');
    const { table, issues, notices } = compile(objects, claims);
    expect(table.domains['corp.test']!.mailDomain.namespace).toBe('team-a');
    expect(table.domains['corp.test']!.servers['old']!.host).toBe('team-a.mx.test');
    expect(full(issues)).toEqual([
      'MailDomain/team-b/corp spec.domain NotPermitted: no DomainClaim grants domain corp.test to namespace team-b; ask the cluster admin',
    ]);
    expect(notices).toEqual([]);
  });

  it('two granted namespaces: the one named first in the grant wins, whatever the age; neither side is named', () => {
    const shared = [domainClaim('shared', ['corp.test'], ['team-a', 'team-b'])];
    for (const [aCreated, bCreated] of [
      ['2026-06-01T00:00:00Z', '2026-01-01T00:00:00Z'],
      ['2026-01-01T00:00:00Z', '2026-06-01T00:00:00Z'],
    ] as const) {
      const objects = [
        md('team-a', 'corp', 'corp.test', aCreated),
        md('team-b', 'corp', 'corp.test', bCreated),
      ];
      const { table, issues, notices } = compile(objects, shared);
      expect(table.domains['corp.test']!.mailDomain.namespace).toBe('team-a');
      expect(full(issues)).toEqual([
        'MailDomain/team-b/corp spec.domain DomainConflict: domain corp.test is claimed by another object you cannot see',
      ]);
      expect(notices).toEqual([
        {
          kind: 'MailDomain',
          namespace: 'team-a',
          name: 'corp',
          reason: 'DomainContested',
          message: 'domain corp.test is also declared by an object in another namespace; this one routes it',
        },
      ]);
      for (const m of [...issues, ...notices].map((x) => x.message)) expect(m).not.toMatch(/team-/);
    }
  });

  it('0-squatter: a namespace sorting first does not win a same-second tie it is not granted', () => {
    const objects = [
      md('team-a', 'corp', 'corp.test', '2026-01-01T00:00:00Z'),
      md('0-squatter', 'corp', 'corp.test', '2026-01-01T00:00:00Z'),
    ];
    expect(compile(objects).table.domains['corp.test']!.mailDomain.namespace).toBe('0-squatter');
    const { table, issues } = compile(objects, claims);
    expect(table.domains['corp.test']!.mailDomain.namespace).toBe('team-a');
    expect(brief(issues)).toEqual(['MailDomain/corp spec.domain NotPermitted']);
  });

  it("a subdomain of another team's domain is refused; the owner may use it", () => {
    const objects = [md('team-b', 'payroll', 'payroll.corp.test'), md('team-a', 'hr', 'hr.corp.test')];
    const { table, issues } = compile(objects, claims);
    expect(Object.keys(table.domains)).toEqual(['hr.corp.test']);
    expect(full(issues)).toEqual([
      'MailDomain/team-b/payroll spec.domain NotPermitted: no DomainClaim grants domain payroll.corp.test to namespace team-b; ask the cluster admin',
    ]);
    // a wildcard covers subdomains only, not the parent itself
    expect(
      compile([md('team-x', 'corp', 'corp.test')], [domainClaim('x', ['*.corp.test'], ['team-x'])]).issues,
    ).toHaveLength(1);
  });

  it('a foreign sender domain declared by a tenant does not enter the table (so it attracts no DSN routing)', () => {
    // the relay routes a DSN through the table only when the sender's domain is in it (relay/delivery/dsn-route.ts)
    const objects = [md('team-b', 'bigbank', 'bigbank.test'), dual('team-b', 'bigbank')];
    expect(Object.keys(compile(objects).table.domains)).toEqual(['bigbank.test']);
    const { table, issues } = compile(objects, claims);
    expect(table.domains).toEqual({});
    expect(brief(issues)).toEqual([
      'MailDomain/bigbank spec.domain NotPermitted',
      'DeliveryPolicy/bigbank spec.domainRef.name DomainNotAccepted',
    ]);
  });

  it("copyRecipientDomain into another team's domain is refused; a granted copy domain is accepted", () => {
    const objects = [
      md('team-b', 'b', 'b.test'),
      dual('team-b', 'b', 'corp.test'),
      md('team-a', 'corp', 'corp.test'),
      dual('team-a', 'corp', 'corp.test.zoho-test.example'),
    ];
    const { table, issues } = compile(objects, claims);
    expect(full(issues)).toEqual([
      'DeliveryPolicy/team-b/b spec.dual.copyRecipientDomain NotPermitted: no DomainClaim grants domain corp.test to namespace team-b; ask the cluster admin',
    ]);
    expect(table.domains['b.test']!.policy).toBeUndefined(); // no policy: mail is deferred, never copied
    expect(table.domains['corp.test']!.dual!.copyRecipientDomain).toBe('corp.test.zoho-test.example');
  });

  it("a TestRecipient forwardTo into another team's domain is refused", () => {
    const objects = [
      md('team-b', 'b', 'b.test'),
      dual('team-b', 'b'),
      testRecipient(
        { name: 'eve', namespace: 'team-b' },
        { policyRef: { name: 'b' }, address: 'eve@b.test', forwardTo: 'ceo@Corp.test' },
      ),
      testRecipient(
        { name: 'bob', namespace: 'team-b' },
        { policyRef: { name: 'b' }, address: 'bob@b.test', forwardTo: 'bob2@b.test' },
      ),
    ];
    const { table, issues } = compile(objects, claims);
    expect(full(issues)).toEqual([
      'TestRecipient/team-b/eve spec.forwardTo NotPermitted: no DomainClaim grants domain corp.test to namespace team-b; ask the cluster admin',
    ]);
    expect(Object.keys(table.domains['b.test']!.testRecipients)).toEqual(['bob@b.test']);
  });

  it('precedence: an exact grant beats a wildcard, a longer wildcard beats a shorter one, * comes last', () => {
    const layered = [
      domainClaim('everything', ['*'], ['platform']),
      domainClaim('corp-wide', ['*.corp.test'], ['team-a']),
      domainClaim('payroll', ['payroll.corp.test'], ['payroll']),
    ];
    const winner = (domain: string, namespaces: string[]) =>
      compile(
        namespaces.map((ns) => md(ns, 'd', domain)),
        layered,
      ).table.domains[domain]?.mailDomain.namespace;
    expect(winner('payroll.corp.test', ['platform', 'team-a', 'payroll'])).toBe('payroll');
    expect(winner('hr.corp.test', ['platform', 'team-a'])).toBe('team-a');
    expect(winner('other.test', ['platform', 'team-a'])).toBe('platform');
  });

  it('no DomainClaim: every namespace may use any domain (single-tenant default), and the result is order-free', () => {
    const objects = [md('x', 'corp', 'corp.test'), dual('x', 'corp', 'corp.test.zoho-test.example')];
    expect(compile(objects, []).issues).toEqual([]);
    const withClaims = compile([...objects].reverse(), [...claims].reverse());
    expect(withClaims.json).toBe(compile(objects, claims).json);
  });
});

describe('compile: DomainClaim destinations travel on the route', () => {
  const md = (ns: string, domain: string) =>
    mailDomain(
      { name: domain.replaceAll('.', '-'), namespace: ns },
      { domain, servers: [{ name: 'old', host: `mx.${domain}` }] },
    );

  it('the granting claim of the winning namespace: canonical CIDRs, sorted, deduplicated', () => {
    const claims = [
      domainClaim('a-wide', ['*.corp.test'], ['team-a'], { deny: ['10.0.0.0/8'] }),
      domainClaim('b-exact', ['mx.corp.test'], ['team-a'], {
        allow: ['10.244.1.7', '10.244.0.0/16', '::ffff:10.244.0.0/112', '10.244.0.9/16'],
        deny: ['192.0.2.0/24'],
      }),
      domainClaim('plain', ['plain.test'], ['team-a']),
    ];
    const { table, issues } = compile(
      [md('team-a', 'mx.corp.test'), md('team-a', 'x.corp.test'), md('team-a', 'plain.test')],
      claims,
    );
    expect(issues).toEqual([]);
    // the exact grant is the more specific one: its rules, not the wildcard's
    expect(table.domains['mx.corp.test']!.destinations).toEqual({
      allow: ['10.244.0.0/16', '10.244.1.7/32'],
      deny: ['192.0.2.0/24'],
    });
    expect(table.domains['x.corp.test']!.destinations).toEqual({ allow: [], deny: ['10.0.0.0/8'] });
    expect(table.domains['plain.test']!.destinations).toBeUndefined();
    expect(Object.keys(table.domains['mx.corp.test']!)).toEqual(
      [...Object.keys(table.domains['mx.corp.test']!)].sort(),
    );
  });

  it('no DomainClaim at all: no destinations on any route', () => {
    expect(compile([md('team-a', 'corp.test')]).table.domains['corp.test']!.destinations).toBeUndefined();
  });
});

describe('compile: a time that cannot be read is an issue, never "never"', () => {
  // The API server's `format: date-time` let these through before the CRD's pattern; Date.parse gives NaN for them.
  const unreadable = ['2026-06-05T00:00:00,5Z', '2026-06-05T00:00:00+99:99', '2026-02-30T00:00:00Z'];

  it.each(unreadable)('TestRecipient expiresAt %s: left out with an issue naming the field', (expiresAt) => {
    const bob = testRecipient('bob', {
      policyRef: { name: 'example-com' },
      address: 'bob@example.com',
      keepPrimaryCopy: false,
      expiresAt: '2026-06-05T00:00:00Z',
    });
    bob.spec.expiresAt = expiresAt;
    const { table, issues } = compile([
      exampleDomain(),
      examplePolicy({ mode: 'Dual', secondary: 'new', dual: { scope: 'TestRecipients' } }),
      bob,
    ]);
    expect(issues).toEqual([
      {
        kind: 'TestRecipient',
        namespace: 'default',
        name: 'bob',
        condition: 'Accepted',
        reason: Reasons.InvalidTime,
        field: 'spec.expiresAt',
        message: `${JSON.stringify(expiresAt)} is not an RFC 3339 date-time such as 2026-12-31T00:00:00Z or 2026-12-31T01:00:00+01:00 (a time that cannot be read is never taken as "never"); TestRecipient default/bob is left out of the routing table until it is fixed`,
      },
    ]);
    // not in the table: bob routes like everyone else, at any time
    expect(table.domains['example.com']!.testRecipients).toEqual({});
    expect(table.sources.map((s) => s.kind)).toEqual(['MailDomain', 'DeliveryPolicy']);
  });

  it.each(unreadable)(
    'a stage until %s: the policy is left out (mail is deferred, not routed by a stage forever)',
    (until) => {
      const p = examplePolicy({
        mode: 'Direct',
        primary: 'new',
        stages: [
          { name: 'dual', until: '2026-06-05T00:00:00Z', mode: 'Dual', primary: 'old', secondary: 'new' },
        ],
      });
      p.spec.stages![0]!.until = until;
      const { table, issues } = compile([
        exampleDomain(),
        p,
        testRecipient('t', { policyRef: { name: 'example-com' }, address: 't@example.com' }),
      ]);
      expect(brief(issues)).toEqual([
        'DeliveryPolicy/example-com spec.stages[0].until InvalidTime',
        'TestRecipient/t spec.policyRef.name PolicyNotAccepted',
      ]);
      expect(issues[0]!.message).toContain(JSON.stringify(until));
      expect(table.domains['example.com']!.policy).toBeUndefined();
      expect(table.domains['example.com']!.stages).toBeUndefined();
    },
  );
});

describe('compile: a conflict is decided among all claimants, valid or not, and every notice is true', () => {
  const md = (
    ns: string,
    name: string,
    created: string,
    extra: Record<string, unknown> = {},
    domain = 'shared.test',
  ) =>
    mailDomain(
      { name, namespace: ns, creationTimestamp: created },
      { domain, servers: [{ name: 'mx', host: `mx.${ns}.test` }], ...extra },
    );
  /** team-a's MailDomain with a typo in accounts, which the CRD accepts (a valid address, another domain). */
  const typo = { accounts: [{ server: 'mx', addresses: ['alice@shared.test', 'bob@shraed.test'] }] };
  const shared = [domainClaim('shared', ['shared.test'], ['team-a', 'team-b'])];
  const full = (issues: CompileIssue[]) =>
    issues.map((i) => `${i.kind}/${i.namespace}/${i.name} ${i.field} ${i.reason}: ${i.message}`);

  it('grants: team-a (first in the grant) has a typo: the domain has no route (not handed to team-b), and team-a is told so', () => {
    const objects = [
      md('team-a', 'shared', '2026-01-01T00:00:00Z', typo),
      md('team-b', 'shared', '2026-01-01T00:00:00Z'),
    ];
    const { table, issues, notices } = compile(objects, shared);
    // a typo in one tenant's object never sends its domain's mail to another tenant's servers: deferred, not guessed
    expect(table.domains['shared.test']).toBeUndefined();
    expect(full(issues)).toEqual([
      'MailDomain/team-a/shared spec.accounts[0].addresses[1] AddressOutsideDomain: bob@shraed.test is not in domain shared.test',
      'MailDomain/team-b/shared spec.domain DomainConflict: domain shared.test is claimed by another object you cannot see',
    ]);
    // before, team-a was told "this one routes it", which was false
    expect(notices).toEqual([
      {
        kind: 'MailDomain',
        namespace: 'team-a',
        name: 'shared',
        reason: 'DomainContested',
        message:
          'domain shared.test is also declared by an object in another namespace; this one takes precedence but is not accepted (its own issue), so shared.test has no route and its mail is deferred until this one is fixed or deleted',
      },
    ]);
    for (const m of [...issues, ...notices].map((x) => x.message)) expect(m).not.toMatch(/team-/);
    // fixed: team-a routes it, and hears that another namespace declares it too
    const fixed = compile([md('team-a', 'shared', '2026-01-01T00:00:00Z'), objects[1]!], shared);
    expect(fixed.table.domains['shared.test']!.mailDomain.namespace).toBe('team-a');
    expect(brief(fixed.issues)).toEqual(['MailDomain/shared spec.domain DomainConflict']);
    expect(fixed.notices.map((n) => n.message)).toEqual([
      'domain shared.test is also declared by an object in another namespace; this one routes it',
    ]);
  });

  it('open mode, one namespace: the older MailDomain with a typo keeps the domain unrouted; the newer is told which one', () => {
    const { table, issues, notices } = compile([
      md('mail', 'old', '2026-01-01T00:00:00Z', typo),
      md('mail', 'new', '2026-06-01T00:00:00Z'),
    ]);
    expect(table.domains['shared.test']).toBeUndefined();
    expect(full(issues)).toEqual([
      'MailDomain/mail/new spec.domain DomainConflict: domain shared.test is already declared by MailDomain mail/old',
      'MailDomain/mail/old spec.accounts[0].addresses[1] AddressOutsideDomain: bob@shraed.test is not in domain shared.test',
    ]);
    expect(notices.map((n) => `${n.name} ${n.reason}: ${n.message}`)).toEqual([
      'old DomainContested: domain shared.test is also declared by another object; this one takes precedence but is not accepted (its own issue), so shared.test has no route and its mail is deferred until this one is fixed or deleted',
    ]);
  });

  it('a valid winner with an invalid loser: the winner routes, the loser gets both issues, no notice in one namespace', () => {
    const { table, issues, notices } = compile([
      md('mail', 'old', '2026-01-01T00:00:00Z'),
      md('mail', 'new', '2026-06-01T00:00:00Z', typo),
    ]);
    expect(table.domains['shared.test']!.mailDomain.name).toBe('old');
    expect(brief(issues)).toEqual([
      'MailDomain/new spec.accounts[0].addresses[1] AddressOutsideDomain',
      'MailDomain/new spec.domain DomainConflict',
    ]);
    expect(notices).toEqual([]);
  });

  const policy = (name: string, created: string, spec: Record<string, unknown>, ns = 'default') =>
    deliveryPolicy(
      { name, namespace: ns, creationTimestamp: created },
      { domainRef: { name: 'example-com' }, primary: 'old', ...spec },
    );

  it.each([
    ['an unknown server', { mode: 'Direct', primary: 'gone' }, 'spec.primary UnknownServer'],
    ['Split without a source of accounts', { mode: 'Split', secondary: 'new' }, 'spec.mode NoAccountSource'],
  ])(
    'DeliveryPolicies: the older one has %s: the MailDomain has no policy (the newer does not take effect), and the older is told so',
    (_what, spec, issue) => {
      const { table, issues, notices } = compile([
        exampleDomain(),
        policy('older', '2026-01-01T00:00:00Z', spec),
        policy('newer', '2026-06-01T00:00:00Z', { mode: 'Direct', primary: 'new' }),
      ]);
      // a cut-over prepared next to the policy in force never takes effect through a typo in that policy
      expect(table.domains['example.com']!.policy).toBeUndefined();
      expect(brief(issues)).toEqual([
        'DeliveryPolicy/newer spec.domainRef.name Conflict',
        `DeliveryPolicy/older ${issue}`,
      ]);
      expect(notices).toEqual([
        {
          kind: 'DeliveryPolicy',
          namespace: 'default',
          name: 'older',
          reason: 'PolicyContested',
          message:
            'MailDomain default/example-com has a newer DeliveryPolicy; this one, the oldest, takes precedence but is not accepted (its own issue), so MailDomain default/example-com has no policy and its mail is deferred (451 4.3.5) until this one is fixed or deleted',
        },
      ]);
    },
  );

  it('DeliveryPolicies: the older one has a stage until that cannot be read: InvalidTime, and no policy', () => {
    const older = policy('older', '2026-01-01T00:00:00Z', {
      mode: 'Direct',
      stages: [{ name: 's', until: '2026-06-05T00:00:00Z', mode: 'Direct', primary: 'new' }],
    });
    older.spec.stages![0]!.until = '2026-06-05T00:00:00,5Z';
    const { table, issues } = compile([
      exampleDomain(),
      older,
      policy('newer', '2026-06-01T00:00:00Z', { mode: 'Direct' }),
    ]);
    expect(table.domains['example.com']!.policy).toBeUndefined();
    expect(brief(issues)).toEqual([
      'DeliveryPolicy/newer spec.domainRef.name Conflict',
      'DeliveryPolicy/older spec.stages[0].until InvalidTime',
    ]);
  });

  it('DeliveryPolicies: a valid older one wins; the invalid newer one gets its own issue and the Conflict, no notice', () => {
    const { table, issues, notices } = compile([
      exampleDomain(),
      policy('older', '2026-01-01T00:00:00Z', { mode: 'Direct' }),
      policy('newer', '2026-06-01T00:00:00Z', { mode: 'Direct', primary: 'gone' }),
    ]);
    expect(table.domains['example.com']!.policy?.name).toBe('older');
    expect(brief(issues)).toEqual([
      'DeliveryPolicy/newer spec.domainRef.name Conflict',
      'DeliveryPolicy/newer spec.primary UnknownServer',
    ]);
    expect(notices).toEqual([]);
  });
});

describe('compile: DomainClaim destinations that cannot be read are reported, and still fail closed', () => {
  const md = (ns: string, name: string, domain: string) =>
    mailDomain({ name, namespace: ns }, { domain, servers: [{ name: 'mx', host: `mx.${domain}` }] });
  const dp = (ns: string, name: string) =>
    deliveryPolicy({ name, namespace: ns }, { domainRef: { name }, mode: 'Direct', primary: 'mx' });
  /** A claim stored before the CRD's pattern refused these entries (the API server checked only their shape). */
  const claimWith = (destinations: { allow?: string[]; deny?: string[] }) => {
    const c = domainClaim('shared', ['shared.test'], ['team-a', 'team-b'], { deny: ['192.0.2.0/24'] });
    c.spec.destinations = destinations;
    return c;
  };

  it('a bad deny entry: an issue on the MailDomain routed under the claim; the domain stays routed, denying every address', () => {
    const claims = [
      claimWith({ deny: ['192.0.2.0/24', '10.0.0.0/33'] }),
      domainClaim('other', ['other.test'], ['team-a']),
    ];
    const { table, issues } = compile(
      [
        md('team-a', 'shared', 'shared.test'),
        dp('team-a', 'shared'),
        md('team-b', 'shared', 'shared.test'),
        md('team-a', 'other', 'other.test'),
      ],
      claims,
    );
    const field = 'DomainClaim/shared spec.destinations.deny[1]';
    expect(issues.map((i) => `${i.namespace}/${i.name} ${i.condition} ${i.field} ${i.reason}`)).toEqual([
      `team-a/shared Accepted ${field} InvalidDestinations`,
      // the loser is not routed under the claim: it shows why it is not
      'team-b/shared Accepted spec.domain DomainConflict',
    ]);
    expect(issues[0]!.message).toBe(
      '"10.0.0.0/33": prefix length must be 0..32; a deny entry that cannot be read denies every address, so no server of shared.test is connected to (its mail waits in the queue) until the cluster admin fixes the DomainClaim',
    );
    // fail closed, as before: every address denied for shared.test's servers; the route and its policy stay
    const route = table.domains['shared.test']!;
    expect(route.destinations).toEqual({ allow: [], deny: ['0.0.0.0/0', '::/0'] });
    expect(route.policy?.name).toBe('shared');
    expect(table.sources.map((s) => `${s.kind}/${s.namespace}/${s.name}`)).toContain(
      'MailDomain/team-a/shared',
    );
    // another claim's domain is not touched
    expect(table.domains['other.test']!.destinations).toBeUndefined();
  });

  it('a bad allow entry: reported, and left out (it permits nothing); the other entries apply', () => {
    const { table, issues } = compile(
      [md('team-a', 'shared', 'shared.test')],
      [claimWith({ allow: ['10.244.0.0/16', '300.1.1.1'], deny: ['192.0.2.0/24'] })],
    );
    expect(full(issues)).toEqual([
      'MailDomain/team-a/shared DomainClaim/shared spec.destinations.allow[1] InvalidDestinations: "300.1.1.1" is not an IP address or CIDR (IPv4 a.b.c.d/n or IPv6 x:y::z/n); an allow entry that cannot be read is left out (it permits nothing) until the cluster admin fixes the DomainClaim',
    ]);
    expect(table.domains['shared.test']!.destinations).toEqual({
      allow: ['10.244.0.0/16'],
      deny: ['192.0.2.0/24'],
    });
  });

  it('entries that parse give no issue', () => {
    const { issues } = compile(
      [md('team-a', 'shared', 'shared.test')],
      [claimWith({ allow: ['10.244.1.7', 'fd00::/64'], deny: ['::ffff:10.0.0.0/104', '0.0.0.0/0'] })],
    );
    expect(issues).toEqual([]);
  });

  const full = (issues: CompileIssue[]) =>
    issues.map((i) => `${i.kind}/${i.namespace}/${i.name} ${i.field} ${i.reason}: ${i.message}`);
});
