// Multi-document YAML text -> validated mailroute objects, Secrets and errors. Pure (the caller reads files).
import { LineCounter, parseAllDocuments } from 'yaml';
import type { DomainClaim, MailrouteObject, SecretObject } from './types.ts';
import { DEFAULT_NAMESPACE, objectName, validateObject } from './validate.ts';

/** One problem in a manifest file. Printed as `file: Kind/name: path: message` (parts omitted when unknown). */
export interface ManifestError {
  file: string;
  line?: number;
  /** "Kind/name" (or "Kind/namespace/name") when the document got that far. */
  object?: string;
  path?: string;
  message: string;
  /**
   * A read that failed for a reason a retry may cure (EACCES, EMFILE, ...), not for what the file says: the relay's
   * watcher loads again at its next poll even when the files look the same.
   */
  transient?: true;
}

export interface ParsedManifests {
  objects: MailrouteObject[];
  /** Cluster-scoped DomainClaims (routing/grants.ts); none at all: every namespace may use any domain. */
  claims: DomainClaim[];
  secrets: SecretObject[];
  errors: ManifestError[];
  /** objectKey(...) -> the file that declared it, so that compile issues can name the file. */
  origins: Map<string, string>;
}

export function formatManifestError(e: ManifestError): string {
  const where = e.object ?? (e.line !== undefined ? `line ${e.line}` : undefined);
  return [e.file, where, e.path, e.message].filter((p) => p !== undefined && p !== '').join(': ');
}

/** Identity of an object: kind, namespace and name. */
export function objectKey(kind: string, namespace: string, name: string): string {
  return `${kind}/${namespace}/${name}`;
}

/** How deep a manifest may nest collections; a MailDomain needs 5 levels. */
const MAX_NESTING = 64;

function nestingTooDeep(): string {
  return `nesting too deep: a manifest may nest at most ${MAX_NESTING} levels of lists and mappings`;
}

function isStackOverflow(err: unknown): boolean {
  return (
    (err instanceof RangeError || err instanceof Error) &&
    /Maximum call stack size exceeded/.test(err.message)
  );
}

/**
 * The first line where flow collections ([ ] { }) nest deeper than MAX_NESTING, found by one linear scan that skips
 * quoted strings and comments (the YAML parser recurses per level and would overflow the stack first). Block
 * nesting needs a line per level and is caught by the parser's own error (isStackOverflow) if ever that deep.
 */
function tooDeep(text: string): { line: number } | undefined {
  let depth = 0;
  let line = 1;
  let quote: '"' | "'" | undefined;
  let comment = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '\n') {
      line++;
      comment = false;
      continue;
    }
    if (comment) continue;
    if (quote !== undefined) {
      if (c === '\\' && quote === '"') i++;
      else if (c === quote) quote = undefined;
      continue;
    }
    if (c === '"' || c === "'") {
      // a quote opens a string only where a scalar can start (after space, [ { , : or at a line start)
      const prev = i === 0 ? ' ' : text[i - 1];
      if (
        prev === ' ' ||
        prev === '\t' ||
        prev === '[' ||
        prev === '{' ||
        prev === ',' ||
        prev === ':' ||
        prev === '\n'
      )
        quote = c;
    } else if (c === '#') {
      const prev = i === 0 ? ' ' : text[i - 1];
      if (prev === ' ' || prev === '\t' || prev === '\n') comment = true;
    } else if (c === '[' || c === '{') {
      if (++depth > MAX_NESTING) return { line };
    } else if ((c === ']' || c === '}') && depth > 0) depth--;
  }
  return undefined;
}

/** Whether a decoded value nests lists and mappings deeper than max (iterative: no recursion to overflow). */
function deeperThan(value: unknown, max: number): boolean {
  const stack: [unknown, number][] = [[value, 0]];
  for (let item = stack.pop(); item !== undefined; item = stack.pop()) {
    const [v, depth] = item;
    if (typeof v !== 'object' || v === null) continue;
    if (depth >= max) return true;
    for (const child of Object.values(v)) stack.push([child, depth + 1]);
  }
  return false;
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

function parseSecret(
  doc: Record<string, unknown>,
  file: string,
  errors: ManifestError[],
): SecretObject | undefined {
  const meta = (doc['metadata'] ?? {}) as Record<string, unknown>;
  const name = str(meta['name']);
  const namespace = str(meta['namespace']) ?? DEFAULT_NAMESPACE;
  const object = objectName('Secret', namespace, name);
  if (name === undefined) {
    errors.push({ file, object, path: 'metadata.name', message: 'required field is missing' });
    return undefined;
  }
  const data: Record<string, string> = {};
  const enc = doc['data'];
  if (enc !== undefined && enc !== null) {
    if (typeof enc !== 'object' || Array.isArray(enc)) {
      errors.push({ file, object, path: 'data', message: 'must be a mapping of base64 strings' });
      return undefined;
    }
    for (const [k, v] of Object.entries(enc)) {
      if (typeof v !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(v)) {
        errors.push({ file, object, path: `data.${k}`, message: 'must be a base64 string' });
        return undefined;
      }
      data[k] = Buffer.from(v, 'base64').toString('utf8');
    }
  }
  const plain = doc['stringData'];
  if (plain !== undefined && plain !== null) {
    if (typeof plain !== 'object' || Array.isArray(plain)) {
      errors.push({ file, object, path: 'stringData', message: 'must be a mapping of strings' });
      return undefined;
    }
    for (const [k, v] of Object.entries(plain)) {
      if (typeof v !== 'string') {
        errors.push({ file, object, path: `stringData.${k}`, message: 'must be a string' });
        return undefined;
      }
      data[k] = v;
    }
  }
  const labels: Record<string, string> = {};
  const rawLabels = meta['labels'];
  if (rawLabels !== undefined && rawLabels !== null) {
    if (typeof rawLabels !== 'object' || Array.isArray(rawLabels)) {
      errors.push({ file, object, path: 'metadata.labels', message: 'must be a mapping of strings' });
      return undefined;
    }
    for (const [k, v] of Object.entries(rawLabels)) {
      if (typeof v !== 'string') {
        errors.push({
          file,
          object,
          path: `metadata.labels.${k}`,
          message: 'must be a string (quote "true")',
        });
        return undefined;
      }
      labels[k] = v;
    }
  }
  const type = str(doc['type']);
  return { namespace, name, data, labels, ...(type !== undefined ? { type } : {}) };
}

/**
 * Parses the text of one file (any number of YAML documents, `---` separated; a v1 List is expanded).
 * mailroute objects are validated against the CRD schemas and CEL rules; v1 Secrets are decoded; anything else
 * is an error ("unknown kind").
 */
export function parseManifestText(text: string, file: string): ParsedManifests {
  const out: ParsedManifests = { objects: [], claims: [], secrets: [], errors: [], origins: new Map() };
  const deep = tooDeep(text);
  if (deep !== undefined) {
    out.errors.push({ file, line: deep.line, message: nestingTooDeep() });
    return out;
  }
  const lineCounter = new LineCounter();
  const docs = parseAllDocuments(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const list = Array.isArray(docs) ? docs : [docs];
  for (const doc of list) {
    const line = lineCounter.linePos(doc.range[0]).line;
    if (doc.errors.length > 0) {
      const overflow = doc.errors.find(isStackOverflow);
      if (overflow !== undefined) {
        // the parser gave up in the middle: what follows the overflow is noise
        out.errors.push({ file, line: lineCounter.linePos(overflow.pos[0]).line, message: nestingTooDeep() });
        continue;
      }
      for (const err of doc.errors) {
        const at = lineCounter.linePos(err.pos[0]).line;
        out.errors.push({
          file,
          line: at,
          message: isStackOverflow(err)
            ? nestingTooDeep()
            : `invalid YAML: ${err.message.split('\n')[0] ?? err.code}`,
        });
      }
      continue;
    }
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount: 100 });
    } catch (err) {
      out.errors.push({
        file,
        line,
        message: isStackOverflow(err)
          ? nestingTooDeep()
          : `invalid YAML: ${err instanceof Error ? err.message : String(err)}`,
      });
      continue;
    }
    if (value === null || value === undefined) continue; // an empty document
    if (deeperThan(value, MAX_NESTING)) {
      out.errors.push({ file, line, message: nestingTooDeep() });
      continue;
    }
    addDocument(value, file, line, out);
  }
  return out;
}

function addDocument(value: unknown, file: string, line: number, out: ParsedManifests): void {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    out.errors.push({ file, line, message: `a manifest must be a mapping with apiVersion and kind` });
    return;
  }
  const doc = value as Record<string, unknown>;
  const meta = (
    typeof doc['metadata'] === 'object' && doc['metadata'] !== null ? doc['metadata'] : {}
  ) as Record<string, unknown>;
  const kind = str(doc['kind']);
  if (doc['apiVersion'] === 'v1' && (kind === 'List' || kind === 'SecretList')) {
    const items = doc['items'];
    if (!Array.isArray(items)) {
      out.errors.push({ file, line, object: kind, path: 'items', message: 'must be a list' });
      return;
    }
    for (const item of items) addDocument(item, file, line, out);
    return;
  }
  if (doc['apiVersion'] === 'v1' && kind === 'Secret') {
    const secret = parseSecret(doc, file, out.errors);
    if (secret === undefined) return;
    const key = objectKey('Secret', secret.namespace, secret.name);
    if (out.origins.has(key)) {
      out.errors.push({
        file,
        line,
        object: objectName('Secret', secret.namespace, secret.name),
        message: 'declared twice in this file',
      });
      return;
    }
    out.secrets.push(secret);
    out.origins.set(key, file);
    return;
  }
  const result = validateObject(doc);
  const object = objectName(kind ?? '?', str(meta['namespace']), str(meta['name']));
  if (!result.ok) {
    for (const e of result.errors) {
      if (e.path === 'kind') out.errors.push({ file, line, object, message: e.message });
      else out.errors.push({ file, object, path: e.path, message: e.message });
    }
    return;
  }
  const o = result.object;
  const key = objectKey(o.kind, o.metadata.namespace ?? '', o.metadata.name);
  if (out.origins.has(key)) {
    out.errors.push({ file, line, object, message: 'declared twice in this file' });
    return;
  }
  if (o.kind === 'DomainClaim') out.claims.push(o);
  else out.objects.push(o);
  out.origins.set(key, file);
}

/**
 * Merges the results of several files. An object declared twice (same kind, namespace and name) is an error
 * naming both files; the first one is kept. Secrets too: a Secret left in `auth.bak.yaml` after a password rotation
 * in `auth.yaml` used to win silently (sorted first).
 */
export function mergeParsed(parts: readonly ParsedManifests[]): ParsedManifests {
  const out: ParsedManifests = { objects: [], claims: [], secrets: [], errors: [], origins: new Map() };
  for (const part of parts) {
    out.errors.push(...part.errors);
    for (const o of part.objects) {
      const key = objectKey(o.kind, o.metadata.namespace, o.metadata.name);
      const file = part.origins.get(key) ?? '?';
      const first = out.origins.get(key);
      if (first !== undefined) {
        out.errors.push({
          file,
          object: objectName(o.kind, o.metadata.namespace, o.metadata.name),
          message: `declared twice (also in ${first})`,
        });
        continue;
      }
      out.origins.set(key, file);
      out.objects.push(o);
    }
    for (const c of part.claims) {
      const key = objectKey(c.kind, '', c.metadata.name);
      const file = part.origins.get(key) ?? '?';
      const first = out.origins.get(key);
      if (first !== undefined) {
        out.errors.push({
          file,
          object: `DomainClaim/${c.metadata.name}`,
          message: `declared twice (also in ${first})`,
        });
        continue;
      }
      out.origins.set(key, file);
      out.claims.push(c);
    }
    for (const s of part.secrets) {
      const key = objectKey('Secret', s.namespace, s.name);
      const file = part.origins.get(key) ?? '?';
      const first = out.origins.get(key);
      if (first !== undefined) {
        out.errors.push({
          file,
          object: objectName('Secret', s.namespace, s.name),
          message: `declared twice (also in ${first})`,
        });
        continue;
      }
      out.origins.set(key, file);
      out.secrets.push(s);
    }
  }
  return out;
}
