// Builders for tests and benchmarks: manifests as a user would write them, validated (defaults applied).
import type { DeliveryPolicy, DomainClaim, MailDomain, MailrouteObject, TestRecipient } from './types.ts';
import { validateObject } from './validate.ts';

type Meta = { name: string; namespace?: string; creationTimestamp?: string; generation?: number };

function validated<T extends MailrouteObject | DomainClaim>(raw: unknown): T {
  const r = validateObject(raw);
  if (!r.ok)
    throw new Error(`fixture is invalid: ${r.errors.map((e) => `${e.path}: ${e.message}`).join('; ')}`);
  return r.object as T;
}

export function mailDomain(meta: Meta | string, spec: Record<string, unknown>): MailDomain {
  return validated<MailDomain>({
    apiVersion: 'mailroute.io/v1alpha1',
    kind: 'MailDomain',
    metadata: typeof meta === 'string' ? { name: meta } : meta,
    spec,
  });
}

export function deliveryPolicy(meta: Meta | string, spec: Record<string, unknown>): DeliveryPolicy {
  return validated<DeliveryPolicy>({
    apiVersion: 'mailroute.io/v1alpha1',
    kind: 'DeliveryPolicy',
    metadata: typeof meta === 'string' ? { name: meta } : meta,
    spec,
  });
}

export function testRecipient(meta: Meta | string, spec: Record<string, unknown>): TestRecipient {
  return validated<TestRecipient>({
    apiVersion: 'mailroute.io/v1alpha1',
    kind: 'TestRecipient',
    metadata: typeof meta === 'string' ? { name: meta } : meta,
    spec,
  });
}

/** A cluster-scoped grant of `domains` to the namespaces `names` (in order of precedence). */
export function domainClaim(
  name: string,
  domains: string[],
  names: string[],
  destinations?: { allow?: string[]; deny?: string[] },
): DomainClaim {
  return validated<DomainClaim>({
    apiVersion: 'mailroute.io/v1alpha1',
    kind: 'DomainClaim',
    metadata: { name },
    spec: { domains, namespaces: { names }, ...(destinations ? { destinations } : {}) },
  });
}

/** example.com with servers old (10.0.0.1) and new (10.0.0.2); extra spec fields merged in. */
export function exampleDomain(
  extra: Record<string, unknown> = {},
  meta: Meta | string = 'example-com',
): MailDomain {
  return mailDomain(meta, {
    domain: 'example.com',
    servers: [
      { name: 'old', host: '10.0.0.1' },
      { name: 'new', host: '10.0.0.2', port: 2525 },
    ],
    ...extra,
  });
}

export function examplePolicy(
  spec: Record<string, unknown>,
  meta: Meta | string = 'example-com',
): DeliveryPolicy {
  return deliveryPolicy(meta, { domainRef: { name: 'example-com' }, primary: 'old', ...spec });
}

/** A dated stage `cutover` of example.com's policy: Direct to new until `until`, softBounce on; `extra` merged in. */
export function cutoverStage(until: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { name: 'cutover', until, mode: 'Direct', primary: 'new', softBounce: true, ...extra };
}

/** n domains d<i>.example, each Dual scope TestRecipients, with `perDomain` TestRecipients each. */
export function syntheticObjects(domains: number, perDomain: number): MailrouteObject[] {
  const out: MailrouteObject[] = [];
  for (let i = 0; i < domains; i++) {
    const domain = `d${i}.example`;
    out.push(
      mailDomain(`d${i}`, {
        domain,
        servers: [
          { name: 'old', host: `old.${domain}` },
          { name: 'new', host: `new.${domain}` },
        ],
      }),
      deliveryPolicy(`d${i}`, {
        domainRef: { name: `d${i}` },
        mode: 'Dual',
        primary: 'old',
        secondary: 'new',
        dual: { scope: 'TestRecipients', copyRecipientDomain: `${domain}.new.example` },
      }),
    );
    for (let j = 0; j < perDomain; j++) {
      out.push(testRecipient(`d${i}-u${j}`, { policyRef: { name: `d${i}` }, address: `user${j}@${domain}` }));
    }
  }
  return out;
}
