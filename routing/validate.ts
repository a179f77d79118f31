// Offline validation of one object: the CRD's OpenAPI schema (ajv, with defaults applied and unknown fields
// refused), then the TypeScript twin of every CEL rule. Pure: no I/O.
import { domainToASCII, domainToUnicode } from 'node:url';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { asciiDomain } from './address.ts';
import { CEL_PREDICATES, firstUnorderedStage } from './cel.ts';
import {
  ADDRESS,
  ASCII_ADDRESS,
  CRD_DEFINITIONS,
  DNS_LABEL,
  DNS_SUBDOMAIN,
  CIDR_PATTERN,
  DATE_TIME,
  DOMAIN,
  DOMAIN_PATTERN,
  DURATION,
  HOST,
  RECIPIENT_DELIMITER,
  STAGES_ORDER_MESSAGE,
} from './crd-schema.ts';
import { parseCidr } from './destinations.ts';
import { API_VERSION, CRD_KINDS, type CrdKind } from './model.ts';
import { parseInstant } from './schedule.ts';
import type { ManifestObject } from './types.ts';

/** One problem with one field of one object. path is like spec.servers[0].name. */
interface FieldError {
  path: string;
  message: string;
}

export type ValidateResult = { ok: true; object: ManifestObject } | { ok: false; errors: FieldError[] };

export const DEFAULT_NAMESPACE = 'default';

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type Schema = { readonly [key: string]: unknown };

/** The shape of an IPv4 or IPv6 address or CIDR, whatever its numbers (CIDR_PATTERN also checks their ranges). */
const CIDR_SHAPE = /^([0-9]{1,3}(\.[0-9]{1,3}){3}|[0-9a-fA-F:.]*:[0-9a-fA-F:.]*)(\/[0-9]{1,3})?$/;

/** What a date-time field must hold; the same words for its format and its pattern (one error line, not two). */
const DATE_TIME_WORDS =
  'must be an RFC 3339 date-time such as 2026-12-31T00:00:00Z or 2026-12-31T01:00:00+01:00';

const metadataSchema = {
  type: 'object',
  required: ['name'],
  properties: {
    name: { type: 'string', minLength: 1, maxLength: 253, pattern: DNS_SUBDOMAIN },
    namespace: { type: 'string', minLength: 1, maxLength: 63, pattern: DNS_LABEL },
    generation: { type: 'integer', minimum: 0 },
    creationTimestamp: { type: 'string', format: 'date-time' },
  },
};

/** The patterns of the fields that hold a domain (or an address's): their A-labels are checked (A_LABELS). */
const DOMAIN_PATTERNS: ReadonlySet<unknown> = new Set([DOMAIN, DOMAIN_PATTERN, ADDRESS, ASCII_ADDRESS]);
/** A keyword of the offline schema only (strictSchema): every xn-- label of the field's domain is a real A-label. */
const A_LABELS = 'aLabels';

/**
 * The CRD schema made strict for offline use: no x-kubernetes-* keywords, unknown fields refused, and the A-labels of
 * domains checked (RFC 5890 §2.3.2.1, which neither the API server's pattern nor CEL can check).
 */
function strictSchema(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(strictSchema);
  if (typeof schema !== 'object' || schema === null) return schema;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(schema)) {
    if (k.startsWith('x-kubernetes-')) continue;
    out[k] = k === 'enum' || k === 'required' ? v : strictSchema(v);
  }
  if ('properties' in out) out['additionalProperties'] = false;
  if (DOMAIN_PATTERNS.has(out['pattern'])) out[A_LABELS] = out['pattern'];
  return out;
}

/**
 * The first label of `domain` that looks like an A-label (xn--, any case) and is not one: RFC 5890 §2.3.2.1, an A-label
 * decodes (punycode) to a valid U-label whose A-label is itself. `xn--zz` does not decode; `xn--bucher-xyd` decodes to
 * bücher in NFD, which is no U-label (the A-label of bücher is xn--bcher-kva, and a U-label RCPT, normalised by IDNA,
 * could never reach it). undefined when every label is fine, ASCII ones included.
 */
function fakeALabel(domain: string): string | undefined {
  for (const label of domain.toLowerCase().split('.')) {
    if (!label.startsWith('xn--')) continue;
    // domainToUnicode gives the input back when it cannot decode it to a valid U-label (UTS #46 with NFC checked)
    const unicode = domainToUnicode(label);
    if (unicode === '' || unicode === label || domainToASCII(unicode) !== label) return label;
  }
  return undefined;
}

/** The domain a DOMAIN_PATTERNS field names: after the last @ of an address, without the `*.` of a wildcard. */
function domainPart(value: string): string {
  const at = value.lastIndexOf('@');
  const domain = at < 0 ? value : value.slice(at + 1);
  return domain.startsWith('*.') ? domain.slice(2) : domain;
}

function documentSchema(kind: CrdKind): unknown {
  const def = CRD_DEFINITIONS[kind];
  return {
    type: 'object',
    required: ['apiVersion', 'kind', 'metadata', 'spec'],
    additionalProperties: false,
    properties: {
      apiVersion: { type: 'string' },
      kind: { type: 'string' },
      metadata: metadataSchema,
      spec: strictSchema(def.spec),
      ...(def.status !== undefined ? { status: strictSchema(def.status) } : {}),
    },
  };
}

function makeAjv(): Ajv {
  const ajv = new Ajv({ allErrors: true, useDefaults: true, verbose: true, strict: true });
  // routing/schedule.ts parseInstant: the CRD's DATE_TIME pattern, the one definition of a time
  ajv.addFormat('date-time', { type: 'string', validate: (s: string) => parseInstant(s) !== undefined });
  ajv.addFormat('int64', { type: 'number', validate: (n: number) => Number.isSafeInteger(n) });
  // the keyword's value is the field's pattern: a value that does not match it has its error already
  const patterns = new Map<string, RegExp>();
  ajv.addKeyword({
    keyword: A_LABELS,
    type: 'string',
    schemaType: 'string',
    errors: false,
    validate: (pattern: string, value: string) => {
      let re = patterns.get(pattern);
      if (re === undefined) patterns.set(pattern, (re = new RegExp(pattern, 'u')));
      return !re.test(value) || fakeALabel(domainPart(value)) === undefined;
    },
  });
  return ajv;
}

// Compiled on first use, per kind (compiling all three costs ~0.1 s of CLI start-up). Memoization of pure code.
let ajv: Ajv | undefined;
const validators = new Map<CrdKind, ValidateFunction>();
function validatorFor(kind: CrdKind): ValidateFunction {
  let v = validators.get(kind);
  if (v === undefined) {
    ajv ??= makeAjv();
    v = ajv.compile(documentSchema(kind) as object);
    validators.set(kind, v);
  }
  return v;
}

const PATTERN_WORDS: Record<string, string> = {
  [DNS_LABEL]: 'must be a DNS label (lowercase letters, digits and -, at most 63 characters)',
  [DNS_SUBDOMAIN]: 'must be a DNS subdomain name (lowercase letters, digits, - and .)',
  [DOMAIN]: 'must be a lowercase fully-qualified domain name such as example.com',
  [HOST]: 'must be a hostname or an IP address',
  [ADDRESS]: 'must be an email address like local@example.com',
  [ASCII_ADDRESS]:
    'must be an ASCII email address like local@example.com (the acceptance step sends no SMTPUTF8)',
  [DURATION]: 'must be a duration such as 90s, 15m or 1h',
  [RECIPIENT_DELIMITER]: 'must be made of the characters + - _ = ~ # (each one a delimiter), or empty',
  [CIDR_PATTERN]: 'must be a CIDR such as 10.0.0.0/8 or fd00::/64, or an IP address',
  [DATE_TIME]: DATE_TIME_WORDS,
  [DOMAIN_PATTERN]: 'must be a lowercase domain such as corp.test, a wildcard such as *.corp.test, or *',
};

function show(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  if (typeof v === 'string') return JSON.stringify(v.length > 60 ? `${v.slice(0, 57)}...` : v);
  return JSON.stringify(v) ?? typeof v;
}

/** "/spec/servers/0/name" -> "spec.servers[0].name" */
export function pointerToPath(pointer: string): string {
  let out = '';
  for (const raw of pointer.split('/').slice(1)) {
    const seg = raw.replaceAll('~1', '/').replaceAll('~0', '~');
    out += /^\d+$/.test(seg) ? `[${seg}]` : out === '' ? seg : `.${seg}`;
  }
  return out;
}

function join(path: string, key: string): string {
  return path === '' ? key : `${path}.${key}`;
}

/**
 * Which form to write a value of a DOMAIN_PATTERNS field in, when it is valid with its domain in another form: Unicode
 * (U-labels) -> its A-label (punycode) form; upper case -> lower case. undefined when the other form does not help.
 */
function domainHint(value: string, pattern: string): string | undefined {
  const domain = domainPart(value);
  const ascii = asciiDomain(domain);
  if (ascii === undefined || ascii === domain || fakeALabel(ascii) !== undefined) return undefined;
  const fixed = value.slice(0, value.length - domain.length) + ascii;
  if (!new RegExp(pattern, 'u').test(fixed)) return undefined;
  // eslint-disable-next-line no-control-regex
  if (/[^\x00-\x7f]/.test(domain))
    return `an internationalised domain must be written in its A-label (punycode) form: use ${JSON.stringify(fixed)} for ${JSON.stringify(value)}`;
  return pattern === DOMAIN
    ? `must be a lowercase fully-qualified domain name: use ${JSON.stringify(fixed)}`
    : `${PATTERN_WORDS[pattern] ?? 'must be lowercase'}: use ${JSON.stringify(fixed)}`;
}

function describeError(e: ErrorObject): FieldError {
  const path = pointerToPath(e.instancePath);
  const got = `, got ${show(e.data)}`;
  const p = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'required':
      return { path: join(path, String(p['missingProperty'])), message: 'required field is missing' };
    case 'additionalProperties':
      if (/^spec\.stages\[\d+\]$/.test(path) && p['additionalProperty'] === 'domainRef') {
        return {
          path: join(path, 'domainRef'),
          message:
            "a stage cannot change the domain: spec.domainRef is the policy's, for every stage (use another DeliveryPolicy for another MailDomain)",
        };
      }
      return { path: join(path, String(p['additionalProperty'])), message: 'unknown field' };
    case 'type':
      return { path, message: `must be ${String(p['type'])}${got}` };
    case 'enum':
      return { path, message: `must be one of ${(p['allowedValues'] as unknown[]).join(', ')}${got}` };
    case 'pattern':
      if (DOMAIN_PATTERNS.has(p['pattern']) && typeof e.data === 'string') {
        const hint = domainHint(e.data, String(p['pattern']));
        if (hint !== undefined) return { path, message: hint };
      }
      if (p['pattern'] === CIDR_PATTERN && typeof e.data === 'string' && CIDR_SHAPE.test(e.data)) {
        // an address or CIDR in shape with a number out of range: the destination policy's own parser says which
        const c = parseCidr(e.data);
        if (typeof c === 'string') return { path, message: c };
      }
      return {
        path,
        message: `${PATTERN_WORDS[String(p['pattern'])] ?? `must match ${String(p['pattern'])}`}${got}`,
      };
    case 'format':
      return {
        path,
        message: `${p['format'] === 'date-time' ? DATE_TIME_WORDS : `must be a valid ${String(p['format'])}`}${got}`,
      };
    case A_LABELS: {
      const domain = domainPart(String(e.data));
      return {
        path,
        message: `${JSON.stringify(domain)} is not a valid A-label (${fakeALabel(domain) ?? domain} does not decode to an internationalised domain name whose A-label it is; write the domain in Unicode and \`mailroute check\` says which A-label to use)`,
      };
    }
    case 'maxLength':
    case 'minLength':
    case 'maximum':
    case 'minimum':
      return { path, message: `${e.message ?? 'is out of range'}${got}` };
    case 'maxItems':
    case 'minItems':
      return {
        path,
        message: `${e.message ?? 'has a wrong number of items'}, got ${(e.data as unknown[]).length}`,
      };
    default:
      return { path, message: e.message ?? `fails ${e.keyword}` };
  }
}

function runCel(schema: Schema, self: unknown, old: unknown, path: string, errors: FieldError[]): void {
  const rules = schema['x-kubernetes-validations'] as
    readonly { rule: string; message: string; fieldPath?: string }[] | undefined;
  for (const r of rules ?? []) {
    const pred = CEL_PREDICATES[r.rule];
    if (pred === undefined) throw new Error(`CEL rule without a TypeScript predicate: ${r.rule}`);
    if (pred.transition && old === undefined) continue;
    if (!pred.check(self, old)) errors.push({ path: path + (r.fieldPath ?? ''), message: r.message });
  }
  const props = schema['properties'] as Record<string, Schema> | undefined;
  if (props !== undefined && typeof self === 'object' && self !== null && !Array.isArray(self)) {
    const rec = self as Record<string, unknown>;
    const oldRec = typeof old === 'object' && old !== null ? (old as Record<string, unknown>) : undefined;
    for (const [key, sub] of Object.entries(props)) {
      if (rec[key] !== undefined) runCel(sub, rec[key], oldRec?.[key], join(path, key), errors);
    }
  }
  const items = schema['items'] as Schema | undefined;
  if (items !== undefined && Array.isArray(self)) {
    self.forEach((v, i) => runCel(items, v, undefined, `${path}[${i}]`, errors));
  }
}

/** DomainClaim destinations: the schema checks the shape, the destination policy's own parser the value. */
function checkGrantCidrs(spec: Json | undefined, errors: FieldError[]): void {
  const d = (spec as { destinations?: { allow?: string[]; deny?: string[] } } | undefined)?.destinations;
  for (const list of ['allow', 'deny'] as const) {
    d?.[list]?.forEach((text, i) => {
      const c = parseCidr(text);
      if (typeof c === 'string') errors.push({ path: `spec.destinations.${list}[${i}]`, message: c });
    });
  }
}

/**
 * The stage-order CEL rule can only point at spec.stages; offline, the error names the first stage that does not end
 * after the one before it.
 */
function nameUnorderedStage(spec: Json | undefined, errors: FieldError[]): void {
  const stages = (spec as { stages?: { until: string }[] } | undefined)?.stages ?? [];
  const i = firstUnorderedStage(stages);
  const at = errors.findIndex((e) => e.path === 'spec.stages' && e.message === STAGES_ORDER_MESSAGE);
  if (i < 0 || at < 0) return;
  const [prev, cur] = [stages[i - 1]!.until, stages[i]!.until];
  errors[at] = {
    path: `spec.stages[${i}].until`,
    message: `${cur} must be after spec.stages[${i - 1}].until (${prev}): ${
      Date.parse(cur) === Date.parse(prev)
        ? 'two stages cannot end at the same instant'
        : STAGES_ORDER_MESSAGE
    }`,
  };
}

function isKind(k: unknown): k is CrdKind {
  return typeof k === 'string' && (CRD_KINDS as readonly string[]).includes(k);
}

/**
 * Validates one decoded document as a mailroute object. Applies schema defaults (on a copy) and defaults
 * metadata.namespace to "default". With `old`, transition rules (domain immutability) are checked too.
 */
export function validateObject(raw: unknown, old?: ManifestObject): ValidateResult {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    return { ok: false, errors: [{ path: '', message: `a manifest must be a mapping, got ${show(raw)}` }] };
  }
  // A JSON copy, not structuredClone: only what JSON can carry survives (array indices, own enumerable keys), so
  // an array with extra own properties (say a "constructor" key, which breaks Array.prototype.map) or a value JSON
  // cannot hold is refused or dropped here instead of throwing later. YAML and the API server only give JSON data.
  let doc: Record<string, Json>;
  try {
    doc = JSON.parse(JSON.stringify(raw)) as Record<string, Json>;
  } catch (err) {
    return { ok: false, errors: [{ path: '', message: `not JSON data: ${(err as Error).message}` }] };
  }
  const { apiVersion, kind } = doc;
  if (isKind(kind) && apiVersion !== API_VERSION) {
    return {
      ok: false,
      errors: [
        { path: 'apiVersion', message: `must be ${API_VERSION} for ${kind}, got ${show(apiVersion)}` },
      ],
    };
  }
  if (!isKind(kind)) {
    return {
      ok: false,
      errors: [{ path: 'kind', message: `unknown kind ${show(kind)} (apiVersion ${show(apiVersion)})` }],
    };
  }
  const validate = validatorFor(kind);
  const errors: FieldError[] = [];
  if (!validate(doc)) {
    const seen = new Set<string>();
    for (const e of validate.errors ?? []) {
      const fe = describeError(e);
      const key = `${fe.path}\0${fe.message}`;
      if (seen.has(key)) continue;
      seen.add(key);
      errors.push(fe);
    }
    return { ok: false, errors };
  }
  runCel(CRD_DEFINITIONS[kind].spec, doc['spec'], old?.spec, 'spec', errors);
  if (kind === 'DomainClaim') checkGrantCidrs(doc['spec'], errors);
  if (kind === 'DeliveryPolicy') nameUnorderedStage(doc['spec'], errors);
  if (errors.length > 0) return { ok: false, errors };
  const meta = doc['metadata'] as Record<string, Json>;
  // A cluster-scoped object has no namespace (the API server ignores one given, and so do we).
  if (CRD_DEFINITIONS[kind].scope === 'Cluster') delete meta['namespace'];
  else meta['namespace'] ??= DEFAULT_NAMESPACE;
  return { ok: true, object: doc as unknown as ManifestObject };
}

/** "MailDomain/example-com", or "MailDomain/ns/example-com" outside the default namespace. */
export function objectName(kind: string, namespace: string | undefined, name: string | undefined): string {
  const n = name ?? '?';
  return namespace === undefined || namespace === DEFAULT_NAMESPACE
    ? `${kind}/${n}`
    : `${kind}/${namespace}/${n}`;
}
