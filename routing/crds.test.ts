// Drift checks between the one source of truth (crd-schema.ts) and everything derived from it:
// crds/*.yaml, the TypeScript types, the model's enums and the CEL predicates.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, expectTypeOf, it } from 'vitest';
import { parse } from 'yaml';
import { CEL_PREDICATES } from './cel.ts';
import { CRD_DEFINITIONS } from './crd-schema.ts';
import { buildCrd, crdFileName, renderCrdYaml } from './crds.ts';
import {
  BOUNCES,
  CRD_KINDS,
  DUAL_SCOPES,
  KINDS,
  MODES,
  TLS_MODES,
  UNKNOWN_RECIPIENTS,
  type Bounces,
  type DualScope,
  type Mode,
  type TlsMode,
  type UnknownRecipients,
} from './model.ts';
import type { DeliveryPolicySpec, MailDomainSpec, TestRecipientSpec } from './types.ts';
import { validateObject } from './validate.ts';

const crdDir = join(import.meta.dirname, '..', 'crds');

describe('crds/*.yaml', () => {
  it.each(CRD_KINDS)(
    '%s is exactly what `npm run gen` writes (run it after changing routing/crd-schema.ts)',
    (kind) => {
      const onDisk = readFileSync(join(crdDir, crdFileName(kind)), 'utf8');
      expect(onDisk).toBe(renderCrdYaml(kind));
    },
  );

  it.each(KINDS)(
    '%s has the names, columns, status subresource and category docs/design.md §2 asks for',
    (kind) => {
      const crd = parse(renderCrdYaml(kind)) as ReturnType<typeof buildCrd> & {
        spec: {
          scope: string;
          names: { shortNames: string[]; categories: string[] };
          versions: {
            name: string;
            subresources: unknown;
            additionalPrinterColumns: { name: string; priority?: number }[];
          }[];
        };
      };
      expect(crd.spec.scope).toBe('Namespaced');
      expect(crd.spec.names.categories).toEqual(['mailroute']);
      expect(crd.spec.names.shortNames).toEqual(
        { MailDomain: ['md'], DeliveryPolicy: ['dp'], TestRecipient: ['tr'] }[kind],
      );
      const v = crd.spec.versions[0]!;
      expect(v.name).toBe('v1alpha1');
      expect(v.subresources).toEqual({ status: {} });
      // the default view ends with Ready and Age; -o wide (priority 1) columns follow, as kubectl's own do
      const cols = v.additionalPrinterColumns.filter((c) => (c.priority ?? 0) === 0).map((c) => c.name);
      expect(cols.slice(-2)).toEqual(['Ready', 'Age']);
      expect(cols[0]).toBe(
        { MailDomain: 'Domain', DeliveryPolicy: 'Domain', TestRecipient: 'Address' }[kind],
      );
      const wide = v.additionalPrinterColumns.filter((c) => c.priority === 1).map((c) => c.name);
      expect(wide).toEqual(
        {
          MailDomain: ['Servers', 'Verification'],
          DeliveryPolicy: ['Primary', 'Secondary', 'MailDomain', 'Next', 'SoftBounce'],
          TestRecipient: ['ForwardTo', 'KeepPrimaryCopy', 'Expires'],
        }[kind],
      );
      expect(v.additionalPrinterColumns.findIndex((c) => c.priority === 1)).toBe(cols.length);
    },
  );

  it('DomainClaim is cluster-scoped, has no status, and shows its domains and namespaces', () => {
    const crd = parse(renderCrdYaml('DomainClaim')) as {
      spec: {
        scope: string;
        names: { shortNames: string[]; categories: string[] };
        versions: { subresources?: unknown; additionalPrinterColumns: { name: string }[] }[];
      };
    };
    expect(crd.spec.scope).toBe('Cluster');
    expect(crd.spec.names.shortNames).toEqual(['dc']);
    expect(crd.spec.names.categories).toEqual(['mailroute']);
    expect(crd.spec.versions[0]!.subresources).toBeUndefined();
    expect(crd.spec.versions[0]!.additionalPrinterColumns.map((c) => c.name)).toEqual([
      'Domains',
      'Namespaces',
      'Age',
    ]);
  });
});

/** Every x-kubernetes-validations rule in a schema, recursively. */
function rulesOf(schema: unknown, out: string[] = []): string[] {
  if (Array.isArray(schema)) schema.forEach((s) => rulesOf(s, out));
  else if (typeof schema === 'object' && schema !== null) {
    for (const [k, v] of Object.entries(schema)) {
      if (k === 'x-kubernetes-validations') out.push(...(v as { rule: string }[]).map((r) => r.rule));
      else rulesOf(v, out);
    }
  }
  return out;
}

/** Every property path of a schema ("servers[].name"), recursively. */
function propertyPaths(schema: Record<string, unknown>, prefix = ''): string[] {
  const out: string[] = [];
  const props = schema['properties'] as Record<string, Record<string, unknown>> | undefined;
  for (const [k, sub] of Object.entries(props ?? {})) {
    const p = prefix === '' ? k : `${prefix}.${k}`;
    out.push(p);
    out.push(...propertyPaths(sub, p));
    const items = sub['items'] as Record<string, unknown> | undefined;
    if (items !== undefined) out.push(...propertyPaths(items, `${p}[]`));
  }
  return out;
}

function valuePaths(value: unknown, prefix = ''): string[] {
  const out: string[] = [];
  if (Array.isArray(value)) {
    for (const v of value) out.push(...valuePaths(v, `${prefix}[]`));
  } else if (typeof value === 'object' && value !== null) {
    for (const [k, v] of Object.entries(value)) {
      const p = prefix === '' ? k : `${prefix}.${k}`;
      out.push(p, ...valuePaths(v, p));
    }
  }
  return [...new Set(out)];
}

// Fully populated specs, typed with the derived types: adding a field to a type without the schema (or the other
// way round) breaks either the type check (excess or missing property) or the runtime comparison below.
const fullMailDomain: Required<MailDomainSpec> = {
  domain: 'example.com',
  servers: [
    {
      name: 'old',
      host: 'mail.example.net',
      port: 587,
      mx: false,
      tls: 'RequiredVerify',
      authSecretRef: { name: 'old-smtp' },
      allowPlaintextAuth: false,
      maxConnections: 5,
      maxRecipientsPerTransaction: 100,
      probe: { address: 'postmaster@example.net' },
    },
  ],
  accounts: [{ server: 'old', addresses: ['alice@example.com'] }],
  recipientDelimiter: '+-',
  recipientVerification: { server: 'old', cacheTTL: '15m' },
  rejectUnknownRecipients: true,
};
const fullPolicy: Required<DeliveryPolicySpec> = {
  domainRef: { name: 'example-com' },
  mode: 'Dual',
  primary: 'old',
  secondary: 'new',
  dual: { scope: 'Accounts', copyRecipientDomain: 'example.com.new.example', bounces: 'Notify' },
  split: { unknownRecipients: 'Reject' },
  softBounce: true,
  stages: [
    {
      name: 'trial',
      until: '2026-12-05T02:00:00Z',
      mode: 'Dual',
      primary: 'old',
      secondary: 'new',
      dual: { scope: 'All', copyRecipientDomain: 'example.com.new.example', bounces: 'Suppress' },
      split: { unknownRecipients: 'Secondary' },
      softBounce: true,
    },
  ],
};
const fullRecipient: Required<TestRecipientSpec> = {
  policyRef: { name: 'example-com' },
  address: 'alice@example.com',
  forwardTo: 'alice@example.new.example',
  keepPrimaryCopy: false,
  expiresAt: '2026-12-31T00:00:00Z',
};

describe('types and schema', () => {
  it('enums come from the model constants', () => {
    expectTypeOf<DeliveryPolicySpec['mode']>().toEqualTypeOf<Mode>();
    expectTypeOf<NonNullable<DeliveryPolicySpec['dual']>['scope']>().toEqualTypeOf<DualScope>();
    expectTypeOf<NonNullable<DeliveryPolicySpec['dual']>['bounces']>().toEqualTypeOf<Bounces>();
    expectTypeOf<
      NonNullable<DeliveryPolicySpec['split']>['unknownRecipients']
    >().toEqualTypeOf<UnknownRecipients>();
    expectTypeOf<MailDomainSpec['servers'][number]['tls']>().toEqualTypeOf<TlsMode>();
    const policy = CRD_DEFINITIONS.DeliveryPolicy.spec.properties;
    expect(policy.mode.enum).toEqual(MODES);
    expect(policy.dual.properties.scope.enum).toEqual(DUAL_SCOPES);
    expect(policy.dual.properties.bounces.enum).toEqual(BOUNCES);
    expect(policy.split.properties.unknownRecipients.enum).toEqual(UNKNOWN_RECIPIENTS);
    expect(CRD_DEFINITIONS.MailDomain.spec.properties.servers.items.properties.tls.enum).toEqual(TLS_MODES);
  });

  it('defaulted fields are required, others optional', () => {
    expectTypeOf<MailDomainSpec['servers'][number]['port']>().toEqualTypeOf<number>();
    expectTypeOf<MailDomainSpec['rejectUnknownRecipients']>().toEqualTypeOf<boolean>();
    expectTypeOf<TestRecipientSpec['keepPrimaryCopy']>().toEqualTypeOf<boolean>();
    expectTypeOf<TestRecipientSpec['expiresAt']>().toEqualTypeOf<string | undefined>();
    expectTypeOf<DeliveryPolicySpec['secondary']>().toEqualTypeOf<string | undefined>();
  });

  it.each([
    ['MailDomain', fullMailDomain],
    ['DeliveryPolicy', fullPolicy],
    ['TestRecipient', fullRecipient],
  ] as const)('a fully populated %s spec covers every schema property and validates', (kind, spec) => {
    expect(valuePaths(spec).sort()).toEqual(propertyPaths(CRD_DEFINITIONS[kind].spec).sort());
    const r = validateObject({ apiVersion: 'mailroute.io/v1alpha1', kind, metadata: { name: 'x' }, spec });
    expect(r.ok ? [] : r.errors).toEqual([]);
  });
});

describe('CEL rules', () => {
  it('every rule in the schemas has a TypeScript predicate, and every predicate a rule', () => {
    const rules = CRD_KINDS.flatMap((k) => rulesOf(CRD_DEFINITIONS[k].spec));
    expect(new Set(rules)).toEqual(new Set(Object.keys(CEL_PREDICATES)));
  });

  it('transition rules are exactly the ones that mention oldSelf', () => {
    for (const [rule, p] of Object.entries(CEL_PREDICATES))
      expect(p.transition, rule).toBe(rule.includes('oldSelf'));
  });
});
