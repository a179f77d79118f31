// Canonical JSON: object keys sorted recursively (by UTF-16 code units), no whitespace, undefined dropped.
// Arrays keep their order: whoever builds the value sorts the arrays whose order does not matter.
import { createHash } from 'node:crypto';

export function canonicalJson(value: unknown): string {
  // Fast path: when every object already lists its keys in order (compile() builds the table that way), the native
  // JSON.stringify gives the same bytes, much faster. Checking costs one allocation-light walk.
  return inOrder(value) ? JSON.stringify(value) : compact(value);
}

/** True when JSON.stringify(value) is canonical: plain data only, keys in code-unit order, finite numbers. */
function inOrder(value: unknown): boolean {
  if (value === null) return true;
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return true;
    case 'number':
      return Number.isFinite(value);
    case 'object': {
      if (Array.isArray(value)) {
        for (const v of value as unknown[]) if (v === undefined || !inOrder(v)) return false;
        return true;
      }
      const proto: unknown = Object.getPrototypeOf(value);
      if (proto !== Object.prototype && proto !== null) return false; // Date, Map, class instances: the slow path decides
      let prev: string | undefined;
      for (const key in value) {
        if (prev !== undefined && prev > key) return false;
        prev = key;
        const v = (value as Record<string, unknown>)[key];
        if (v !== undefined && !inOrder(v)) return false;
      }
      return true;
    }
    case 'undefined':
    case 'bigint':
    case 'function':
    case 'symbol':
      return false;
  }
  return false;
}

function sortedKeys(rec: object): string[] {
  const keys = Object.keys(rec);
  for (let i = 1; i < keys.length; i++) {
    if (keys[i - 1]! > keys[i]!) return keys.sort();
  }
  return keys;
}

// The hot path (a 100,000-entry table is ~25 MiB): string concatenation, no intermediate arrays, and no sort when
// the keys are already in order.
function compact(value: unknown): string {
  if (value === null || typeof value !== 'object') return scalar(value);
  if (Array.isArray(value)) {
    let out = '[';
    for (let i = 0; i < value.length; i++) {
      const v: unknown = value[i];
      out += (i === 0 ? '' : ',') + (v === undefined ? 'null' : compact(v));
    }
    return out + ']';
  }
  const rec = value as Record<string, unknown>;
  let out = '{';
  let first = true;
  for (const key of sortedKeys(rec)) {
    const v = rec[key];
    if (v === undefined) continue;
    out += (first ? '' : ',') + JSON.stringify(key) + ':' + compact(v);
    first = false;
  }
  return out + '}';
}

function scalar(value: unknown): string {
  if (typeof value === 'number' && !Number.isFinite(value))
    throw new Error('canonicalJson: non-finite number');
  if (typeof value === 'bigint' || typeof value === 'function' || typeof value === 'symbol') {
    throw new Error(`canonicalJson: cannot encode a ${typeof value}`);
  }
  return JSON.stringify(value);
}

/** The same order as canonicalJson, indented for people (render's default output). */
export function prettyCanonicalJson(value: unknown, indent = '  '): string {
  return encode(value, indent, '\n');
}

function encode(value: unknown, indent: string, at: string): string {
  if (value === null || typeof value !== 'object') return scalar(value);
  if (Array.isArray(value)) {
    if (value.length === 0) return '[]';
    const inner = at + indent;
    const items = value.map((v: unknown) => inner + (v === undefined ? 'null' : encode(v, indent, inner)));
    return `[${items.join(',')}${at}]`;
  }
  const rec = value as Record<string, unknown>;
  const inner = at + indent;
  const colon = indent === '' ? ':' : ': ';
  const parts: string[] = [];
  for (const key of sortedKeys(rec)) {
    const v = rec[key];
    if (v === undefined) continue;
    parts.push(`${inner}${JSON.stringify(key)}${colon}${encode(v, indent, inner)}`);
  }
  return parts.length === 0 ? '{}' : `{${parts.join(',')}${at}}`;
}

/** sha256 (hex) of a string (UTF-8) or bytes, e.g. of canonical JSON: the revision of a routing table. */
export function sha256Hex(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Sorts strings by UTF-16 code units, like canonicalJson sorts keys (never locale-dependent). */
export function byCodeUnit(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
