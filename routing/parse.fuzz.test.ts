// Fuzz/property tests of the manifest parser and validator: whatever text or object comes in (random text, YAML
// token soup, alias bombs, valid manifests with random fields replaced, deleted or added), parseManifestText and
// validateObject never throw; every problem is a typed ManifestError / FieldError (file, message, optional line and
// path); objects that pass validation always compile without throwing, into typed issues.
import fc from 'fast-check';
import { stringify } from 'yaml';
import { describe, expect, it } from 'vitest';
import { compile } from './compile.ts';
import { parseManifestText, type ManifestError } from './parse.ts';
import { validateObject } from './validate.ts';

const RUNS = Number(process.env['MAILROUTE_FUZZ_RUNS'] ?? 200);

function expectTypedErrors(errors: readonly ManifestError[], file: string): void {
  for (const e of errors) {
    expect(e.file).toBe(file);
    expect(typeof e.message).toBe('string');
    expect(e.message.length).toBeGreaterThan(0);
    if (e.line !== undefined) expect(Number.isInteger(e.line) && e.line >= 1).toBe(true);
    if (e.path !== undefined) expect(typeof e.path).toBe('string');
    if (e.object !== undefined) expect(typeof e.object).toBe('string');
  }
}

const VALID: Record<string, unknown>[] = [
  {
    apiVersion: 'mailroute.io/v1alpha1',
    kind: 'MailDomain',
    metadata: { name: 'example-com' },
    spec: {
      domain: 'example.com',
      servers: [
        { name: 'old', host: '10.0.0.1', port: 25, tls: 'Opportunistic' },
        { name: 'new', host: 'mx.new.example', mx: true, authSecretRef: { name: 'new-smtp' } },
      ],
      accounts: [{ server: 'new', addresses: ['alice@example.com'] }],
      recipientVerification: { server: 'old', cacheTTL: '1h' },
      rejectUnknownRecipients: false,
    },
  },
  {
    apiVersion: 'mailroute.io/v1alpha1',
    kind: 'DeliveryPolicy',
    metadata: { name: 'example-com' },
    spec: {
      domainRef: { name: 'example-com' },
      mode: 'Dual',
      primary: 'old',
      secondary: 'new',
      dual: { scope: 'All', bounces: 'Suppress', copyRecipientDomain: 'copy.example' },
      split: { unknownRecipients: 'Secondary' },
    },
  },
  {
    apiVersion: 'mailroute.io/v1alpha1',
    kind: 'TestRecipient',
    metadata: { name: 'alice' },
    spec: {
      policyRef: { name: 'example-com' },
      address: 'alice@example.com',
      forwardTo: 'alice@new.example',
      keepPrimaryCopy: true,
      expiresAt: '2026-12-31T00:00:00Z',
    },
  },
  {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: 'new-smtp' },
    stringData: { username: 'u', password: 'p' },
    data: { extra: 'eA==' },
  },
];

type Mutation = { path: number[]; op: 'replace' | 'delete' | 'add'; value: unknown; key: string };

/** Applies a mutation at the node reached by following path (indices modulo the keys at each level). */
function mutate(root: unknown, m: Mutation): unknown {
  const copy = structuredClone(root);
  let node: unknown = copy;
  for (const [depth, step] of m.path.entries()) {
    if (typeof node !== 'object' || node === null) break;
    const keys = Object.keys(node);
    if (keys.length === 0) break;
    const key = keys[step % keys.length] as string;
    const last = depth === m.path.length - 1;
    const child = (node as Record<string, unknown>)[key];
    if (last || typeof child !== 'object' || child === null) {
      const n = node as Record<string, unknown>;
      if (m.op === 'replace') n[key] = m.value;
      else if (m.op === 'delete') delete n[key];
      // a sequence gets an item: a named key on an array is not YAML (and `length` would be an invalid array length)
      else if (Array.isArray(node)) node.push(m.value);
      else n[m.key] = m.value;
      break;
    }
    node = child;
  }
  return copy;
}

const jsonish = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }),
  fc.constantFrom(
    '',
    'x'.repeat(300),
    'Example.COM',
    '-bad-',
    'a@b@c',
    '1h',
    'forever',
    '2026-13-45T99:99:99Z',
    -1,
    70000,
    1e308,
    null,
    [],
    {},
    true,
  ),
);
const mutation: fc.Arbitrary<Mutation> = fc.record({
  path: fc.array(fc.nat(), { minLength: 1, maxLength: 5 }),
  op: fc.constantFrom('replace', 'delete', 'add'),
  value: jsonish,
  key: fc.oneof(
    fc.constantFrom('unknownField', 'x-kubernetes', '__proto__', 'constructor'),
    fc.string({ maxLength: 10 }),
  ),
});

const yamlSoup = fc
  .array(
    fc.oneof(
      fc.constantFrom(
        'apiVersion: mailroute.io/v1alpha1\n',
        'kind: MailDomain\n',
        'kind: List\nitems:\n',
        'apiVersion: v1\n',
        'metadata: {name: x}\n',
        'spec:\n',
        '  domain: ',
        '  servers:\n  - ',
        '---\n',
        '...\n',
        '&a ',
        '*a ',
        '<<: *a\n',
        '!!binary ',
        '!Custom ',
        '%YAML 1.2\n',
        '{',
        '}',
        '[',
        ']',
        '"',
        "'",
        '\t',
        '  ',
        '- ',
        ': ',
        '? ',
        '|\n',
        '>-\n',
        '#',
        '\n',
        '\0',
        '\uFEFF',
        '\r',
      ),
      fc.string({ maxLength: 12 }),
    ),
    { maxLength: 60 },
  )
  .map((parts) => parts.join(''));

// Generous timeout: `npm run test:reliability` runs these with MAILROUTE_FUZZ_RUNS=3000.
describe('manifest parser (fuzz)', { timeout: 300_000 }, () => {
  it('random text never throws and gives typed errors', () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.string({ maxLength: 400 }), fc.string({ unit: 'binary', maxLength: 400 })),
        (text) => {
          const r = parseManifestText(text, 'fuzz.yaml');
          expectTypedErrors(r.errors, 'fuzz.yaml');
        },
      ),
      { numRuns: RUNS },
    );
  });

  it('YAML token soup (anchors, aliases, tags, flow, documents) never throws and gives typed errors', () => {
    fc.assert(
      fc.property(yamlSoup, (text) => {
        const r = parseManifestText(text, 'soup.yaml');
        expectTypedErrors(r.errors, 'soup.yaml');
        expect(() => compile(r.objects)).not.toThrow();
      }),
      { numRuns: RUNS * 2 },
    );
  });

  it('an alias bomb (billion laughs) is a typed error, not a hang', () => {
    const levels = ['a: &a ["x","x","x","x","x","x","x","x","x","x"]'];
    for (let i = 1; i < 10; i++) {
      const prev = String.fromCharCode(96 + i);
      const cur = String.fromCharCode(97 + i);
      levels.push(`${cur}: &${cur} [${Array(10).fill(`*${prev}`).join(',')}]`);
    }
    const t0 = Date.now();
    const r = parseManifestText(`${levels.join('\n')}\n`, 'bomb.yaml');
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(r.errors.length).toBeGreaterThan(0);
    expectTypedErrors(r.errors, 'bomb.yaml');
  });

  it('valid manifests with random fields replaced, deleted or added: never throw; what validates compiles', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat({ max: VALID.length - 1 }), fc.array(mutation, { maxLength: 4 })), {
          minLength: 1,
          maxLength: 4,
        }),
        (docs) => {
          const objects = docs.map(([i, ms]) => ms.reduce<unknown>((o, m) => mutate(o, m), VALID[i]));
          const text = objects.map((o) => stringify(o)).join('---\n');
          const r = parseManifestText(text, 'mutated.yaml');
          expectTypedErrors(r.errors, 'mutated.yaml');
          const c = compile(r.objects);
          for (const issue of c.issues) {
            expect(typeof issue.reason).toBe('string');
            expect(typeof issue.message).toBe('string');
          }
          expect(c.revision).toMatch(/^[0-9a-f]{64}$/);
        },
      ),
      { numRuns: RUNS },
    );
  });

  it('validateObject of any value never throws and gives typed field errors', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.anything({ maxDepth: 3 }),
          fc.tuple(fc.nat({ max: VALID.length - 1 }), mutation).map(([i, m]) => mutate(VALID[i], m)),
        ),
        (value) => {
          const r = validateObject(value);
          if (!r.ok) {
            expect(r.errors.length).toBeGreaterThan(0);
            for (const e of r.errors) {
              expect(typeof e.path).toBe('string');
              expect(typeof e.message).toBe('string');
            }
          }
        },
      ),
      { numRuns: RUNS },
    );
  });
});
