// Canonical JSON: object keys sorted recursively (by UTF-16 code units), no whitespace, undefined dropped.
// Arrays keep their order: whoever builds the value sorts the arrays whose order does not matter.
import { createHash } from 'node:crypto';

export function canonicalJson(value: unknown): string {
  return encode(value, '', '');
}

/** The same order as canonicalJson, indented for people (render's default output). */
export function prettyCanonicalJson(value: unknown, indent = '  '): string {
  return encode(value, indent, '\n');
}

function encode(value: unknown, indent: string, at: string): string {
  if (value === null || typeof value !== 'object') {
    if (typeof value === 'number' && !Number.isFinite(value))
      throw new Error('canonicalJson: non-finite number');
    if (typeof value === 'bigint' || typeof value === 'function' || typeof value === 'symbol') {
      throw new Error(`canonicalJson: cannot encode a ${typeof value}`);
    }
    return JSON.stringify(value);
  }
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
  for (const key of Object.keys(rec).sort()) {
    const v = rec[key];
    if (v === undefined) continue;
    parts.push(`${inner}${JSON.stringify(key)}${colon}${encode(v, indent, inner)}`);
  }
  return parts.length === 0 ? '{}' : `{${parts.join(',')}${at}}`;
}

/** sha256 (hex) of a string, e.g. of canonical JSON: the revision of a routing table. */
export function sha256Hex(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

/** Sorts strings by UTF-16 code units, like canonicalJson sorts keys (never locale-dependent). */
export function byCodeUnit(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
