// The Argo CD health check (docs/gitops/argocd-health.lua) against sample statuses: hand-written edge cases, and the
// conditions the operator's own status decision (operator/controllers/status.ts) produces for each situation.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { decideStatus, type StatusFacts } from '../../operator/controllers/status.ts';
import { argoHealth, findLua, HEALTH_LUA, toLua } from './argocd-health.ts';
import { REPO_ROOT } from './tools.ts';

const interpreters = ['lua5.4', 'lua5.1']
  .map((name) => ({ name, path: findLua(name) }))
  .filter((i): i is { name: string; path: string } => i.path !== undefined);
for (const name of ['lua5.4', 'lua5.1']) {
  if (interpreters.some((i) => i.name === name)) continue;
  const msg = `${name} is not installed (apt-get install ${name}; .ci/run installs it)`;
  if (process.env.MAILROUTE_REQUIRE_ENVTEST === '1') {
    describe('Argo CD health check', () => it(`has ${name}`, () => expect.fail(msg)));
  } else {
    console.warn(
      `\n${'!'.repeat(100)}\n!! SKIPPING the Argo CD health check with ${msg}\n${'!'.repeat(100)}\n`,
    );
  }
}

type Cond = { type: string; status: 'True' | 'False' | 'Unknown'; reason: string; message: string };
const cond = (type: string, status: Cond['status'], reason = type, message = ''): Cond => ({
  type,
  status,
  reason,
  message,
});
const object = (kind: string, generation: number, status?: unknown): Record<string, unknown> => ({
  apiVersion: 'mailroute.io/v1alpha1',
  kind,
  metadata: { name: 'example-com', namespace: 'mail', generation },
  ...(status === undefined ? {} : { status }),
});

/** The status the operator writes for these facts (lastTransitionTime and observedGeneration as its helper sets). */
function operatorStatus(f: Partial<StatusFacts> & { kind: StatusFacts['kind'] }): Record<string, unknown> {
  const facts: StatusFacts = {
    generation: 3,
    issues: [],
    missingSecrets: [],
    compiledGeneration: 3,
    compiled: true,
    relays: [],
    generationIn: () => 3,
    now: new Date('2026-06-01T00:00:00Z'),
    ...f,
  };
  const conditions = decideStatus(facts).conditions.map((c) => ({
    ...c,
    observedGeneration: facts.generation,
    lastTransitionTime: '2026-06-01T00:00:00Z',
  }));
  return object(facts.kind, facts.generation, { observedGeneration: facts.generation, conditions });
}

const relays = (n: number, programmed: number): StatusFacts['relays'] =>
  Array.from({ length: n }, (_, i) => ({ name: `relay-${i}`, revision: i < programmed ? 'new' : 'old' }));
const generationIn = (rev: string): number | undefined => (rev === 'new' ? 3 : 2);

const cases: [string, Record<string, unknown>, string, RegExp][] = [
  ['no status yet', object('MailDomain', 1), 'Progressing', /Waiting for the mailroute operator/],
  ['empty conditions', object('MailDomain', 1, { conditions: [] }), 'Progressing', /Waiting/],
  [
    'a generation the operator has not seen',
    object('DeliveryPolicy', 4, { observedGeneration: 3, conditions: [cond('Ready', 'True')] }),
    'Progressing',
    /generation 4/,
  ],
  [
    'ready on every relay (operator)',
    operatorStatus({ kind: 'DeliveryPolicy', relays: relays(3, 3), generationIn }),
    'Healthy',
    /^3\/3 relays programmed$/,
  ],
  [
    'rolling out (operator)',
    operatorStatus({ kind: 'DeliveryPolicy', relays: relays(3, 1), generationIn }),
    'Progressing',
    /Programmed \(Pending\): 1\/3 relays programmed/,
  ],
  [
    'no relay running (operator)',
    operatorStatus({ kind: 'MailDomain', relays: [] }),
    'Progressing',
    /Programmed \(NoRelays\): 0\/0 relays programmed/,
  ],
  [
    'a second policy for the same domain (operator)',
    operatorStatus({
      kind: 'DeliveryPolicy',
      compiledGeneration: undefined,
      relays: relays(2, 2),
      issues: [
        {
          kind: 'DeliveryPolicy',
          namespace: 'mail',
          name: 'example-com',
          condition: 'Accepted',
          reason: 'Conflict',
          field: 'spec.domainRef',
          message: 'domain example.com already has DeliveryPolicy mail/other',
        },
      ],
    }),
    'Degraded',
    /Accepted \(Conflict\): .*already has DeliveryPolicy/,
  ],
  [
    'a dangling policyRef (operator)',
    operatorStatus({
      kind: 'TestRecipient',
      compiledGeneration: undefined,
      issues: [
        {
          kind: 'TestRecipient',
          namespace: 'mail',
          name: 'example-com',
          condition: 'ResolvedRefs',
          reason: 'PolicyNotFound',
          field: 'spec.policyRef.name',
          message: 'DeliveryPolicy mail/missing not found',
        },
      ],
    }),
    'Degraded',
    /ResolvedRefs \(PolicyNotFound\)/,
  ],
  [
    'a missing auth Secret (operator)',
    operatorStatus({
      kind: 'MailDomain',
      relays: relays(1, 1),
      generationIn,
      missingSecrets: ['legacy-smtp'],
    }),
    'Degraded',
    /ResolvedRefs \(SecretNotFound\)/,
  ],
  [
    'an expired TestRecipient (operator)',
    operatorStatus({
      kind: 'TestRecipient',
      relays: relays(1, 1),
      generationIn,
      expiresAt: '2026-01-01T00:00:00Z',
    }),
    'Suspended',
    /Active \(Expired\): expired at 2026-01-01/,
  ],
  [
    'an active TestRecipient (operator)',
    operatorStatus({
      kind: 'TestRecipient',
      relays: relays(2, 2),
      generationIn,
      expiresAt: '2026-12-31T00:00:00Z',
    }),
    'Healthy',
    /2\/2 relays programmed/,
  ],
  [
    'Ready False for another reason',
    object('MailDomain', 2, {
      observedGeneration: 2,
      conditions: [
        cond('Accepted', 'True'),
        cond('Programmed', 'True'),
        cond('Ready', 'False', 'Preflight', 'server legacy unreachable'),
      ],
    }),
    'Degraded',
    /Ready \(Preflight\): server legacy unreachable/,
  ],
  [
    'non-ASCII and quotes in a message',
    object('MailDomain', 1, {
      observedGeneration: 1,
      conditions: [cond('Accepted', 'False', 'Invalid', 'spec.domain "exämple.com" is not an FQDN')],
    }),
    'Degraded',
    /Accepted \(Invalid\): spec\.domain "exämple\.com" is not an FQDN/,
  ],
];

for (const lua of interpreters) {
  describe(`Argo CD health check with ${lua.name}`, () => {
    it.each(cases)('%s', async (_name, obj, status, message) => {
      const health = await argoHealth(lua.path, obj);
      expect(health.status).toBe(status);
      expect(health.message).toMatch(message);
    });
  });
}

describe('Argo CD configuration snippet', () => {
  it('embeds exactly docs/gitops/argocd-health.lua for each mailroute.io kind', () => {
    const cm = parseYaml(readFileSync(`${REPO_ROOT}docs/gitops/argocd-cm.yaml`, 'utf8')) as {
      data: Record<string, string>;
    };
    const lua = readFileSync(HEALTH_LUA, 'utf8');
    for (const kind of ['MailDomain', 'DeliveryPolicy', 'TestRecipient']) {
      expect(cm.data[`resource.customizations.health.mailroute.io_${kind}`], kind).toBe(lua);
    }
  });

  it('converts objects to Lua literals that survive escapes', () => {
    expect(toLua({ a: [1, 'x"\\y'], b: true, c: null })).toBe(
      '{["a"] = {1, "x\\"\\\\y"}, ["b"] = true, ["c"] = nil}',
    );
  });
});
