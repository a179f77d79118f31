// The wire format of the compiled routing table in the cluster: pure encode (operator) and decode (relay) functions.
// docs/operations.md ("Routing ConfigMap format") describes the same thing in prose.
//
// Small tables (canonical JSON <= inlineMaxBytes, default 900 KiB) are INLINE:
//   ConfigMap mailroute-routing
//     annotations: mailroute.io/revision=<sha256 hex>, mailroute.io/routing-format=inline
//     data: routing.json=<canonical JSON>, revision=<sha256 hex>
//
// Big tables are SHARDED (a ConfigMap holds at most 1 MiB, docs/design.md §8):
//   ConfigMap mailroute-routing (the index)
//     annotations: mailroute.io/revision=<sha256 hex>, mailroute.io/routing-format=sharded
//     data: index.json=<ShardIndex JSON>, revision=<sha256 hex>
//   ConfigMaps mailroute-routing-<rev8>-<n>, n = 0..shards-1 (rev8 = first 8 hex digits of the revision)
//     labels: mailroute.io/routing-shard=true, mailroute.io/revision-prefix=<rev8>
//     annotations: mailroute.io/revision=<sha256 hex>, mailroute.io/shard=<n>/<count>
//     binaryData: shard=<bytes n*shardMaxBytes .. of gzip(canonical JSON)>
// The gzip stream of the whole JSON is cut into pieces; concatenating the pieces in order and gunzipping gives the
// JSON, whose sha256 is index.jsonSha256. The operator writes all shards first, then the index; a relay swaps a
// revision in only when every shard listed in the index is present with matching sha256 and the assembled JSON
// hashes to the revision. Shards of revisions that no fresh relay serves any more (and that are not the current
// one) are deleted by the operator.

import type { OwnerReference } from './owner.ts';
import { sha256Hex } from '../routing/canonical.ts';
import { gunzipSync, gzipSync } from 'node:zlib';

export const ROUTING_CONFIGMAP = 'mailroute-routing';
export const ROUTING_JSON_KEY = 'routing.json';
export const INDEX_KEY = 'index.json';
export const REVISION_KEY = 'revision';
const SHARD_KEY = 'shard';
export const REVISION_ANNOTATION = 'mailroute.io/revision';
const FORMAT_ANNOTATION = 'mailroute.io/routing-format';
const SHARD_ANNOTATION = 'mailroute.io/shard';
export const SHARD_LABEL = 'mailroute.io/routing-shard';
const REVISION_PREFIX_LABEL = 'mailroute.io/revision-prefix';
const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by';
const FIELD_MANAGER = 'mailroute-operator';
const INDEX_FORMAT = 'mailroute.io/routing-index/v1';

/** Largest canonical JSON kept inline in mailroute-routing (ConfigMaps hold at most 1 MiB). */
const DEFAULT_INLINE_MAX_BYTES = 900 * 1024;
/** Raw bytes per shard; base64 in the API request makes it ~4/3 of that, still below 1 MiB. */
const DEFAULT_SHARD_MAX_BYTES = 700 * 1024;

type RoutingFormat = 'inline' | 'sharded';

interface ShardRef {
  name: string;
  /** sha256 hex of this shard's raw bytes */
  sha256: string;
  bytes: number;
}

/** data["index.json"] of a sharded mailroute-routing ConfigMap. */
export interface ShardIndex {
  format: typeof INDEX_FORMAT;
  revision: string;
  encoding: 'gzip';
  /** Length of the canonical JSON in bytes (before gzip). */
  jsonBytes: number;
  /** sha256 hex of the canonical JSON (equals the revision when the revision is the JSON's digest). */
  jsonSha256: string;
  shards: ShardRef[];
}

/** The fields of a v1 ConfigMap this module reads and writes; a V1ConfigMap of @kubernetes/client-node fits it. */
export interface ConfigMapLike {
  apiVersion?: string;
  kind?: string;
  metadata?: {
    name?: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    resourceVersion?: string;
    ownerReferences?: OwnerReference[];
  };
  data?: Record<string, string>;
  /** base64, as the API serves it */
  binaryData?: Record<string, string>;
}

export interface EncodeOptions {
  namespace: string;
  /** metadata.ownerReferences of the index and every shard (operator/owner.ts). */
  ownerReferences?: readonly OwnerReference[];
  name?: string;
  inlineMaxBytes?: number;
  shardMaxBytes?: number;
}

export interface EncodedRouting {
  format: RoutingFormat;
  revision: string;
  /** The mailroute-routing ConfigMap (apply after all shards). */
  index: ConfigMapLike & { metadata: { name: string; namespace: string } };
  /** Shard ConfigMaps (empty when inline). */
  shards: (ConfigMapLike & { metadata: { name: string; namespace: string } })[];
}

function shardName(base: string, revision: string, n: number): string {
  return `${base}-${revision.slice(0, 8)}-${n}`;
}

/** Encodes canonical routing JSON for the cluster. Deterministic for the same input and options. */
export function encodeRouting(json: string, revision: string, opts: EncodeOptions): EncodedRouting {
  const name = opts.name ?? ROUTING_CONFIGMAP;
  const inlineMax = opts.inlineMaxBytes ?? DEFAULT_INLINE_MAX_BYTES;
  const shardMax = opts.shardMaxBytes ?? DEFAULT_SHARD_MAX_BYTES;
  const jsonBytes = Buffer.byteLength(json, 'utf8');
  const labels = { [MANAGED_BY_LABEL]: FIELD_MANAGER };
  const owners =
    opts.ownerReferences !== undefined && opts.ownerReferences.length > 0
      ? { ownerReferences: opts.ownerReferences.map((o) => ({ ...o })) }
      : {};
  const base = (format: RoutingFormat): EncodedRouting['index'] => ({
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: {
      name,
      namespace: opts.namespace,
      ...owners,
      labels,
      annotations: { [REVISION_ANNOTATION]: revision, [FORMAT_ANNOTATION]: format },
    },
  });
  if (jsonBytes <= inlineMax) {
    return {
      format: 'inline',
      revision,
      index: { ...base('inline'), data: { [ROUTING_JSON_KEY]: json, [REVISION_KEY]: revision } },
      shards: [],
    };
  }
  // mtime 0 and no file name: gzipSync output is deterministic for the same bytes and level.
  const gz = gzipSync(Buffer.from(json, 'utf8'), { level: 6 });
  const shards: EncodedRouting['shards'] = [];
  const refs: ShardRef[] = [];
  const count = Math.max(1, Math.ceil(gz.length / shardMax));
  for (let n = 0; n < count; n++) {
    const piece = gz.subarray(n * shardMax, Math.min(gz.length, (n + 1) * shardMax));
    const sname = shardName(name, revision, n);
    refs.push({ name: sname, sha256: sha256Hex(piece), bytes: piece.length });
    shards.push({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: {
        name: sname,
        namespace: opts.namespace,
        ...owners,
        labels: { ...labels, [SHARD_LABEL]: 'true', [REVISION_PREFIX_LABEL]: revision.slice(0, 8) },
        annotations: { [REVISION_ANNOTATION]: revision, [SHARD_ANNOTATION]: `${n}/${count}` },
      },
      binaryData: { [SHARD_KEY]: piece.toString('base64') },
    });
  }
  const index: ShardIndex = {
    format: INDEX_FORMAT,
    revision,
    encoding: 'gzip',
    jsonBytes,
    jsonSha256: sha256Hex(json),
    shards: refs,
  };
  return {
    format: 'sharded',
    revision,
    index: { ...base('sharded'), data: { [INDEX_KEY]: JSON.stringify(index), [REVISION_KEY]: revision } },
    shards,
  };
}

export type DecodedIndex =
  | { ok: true; format: 'inline'; revision: string; json: string }
  | { ok: true; format: 'sharded'; revision: string; index: ShardIndex }
  | { ok: false; error: string };

/** Reads mailroute-routing: either the table itself (inline) or the list of shards to fetch. */
export function decodeIndex(cm: ConfigMapLike): DecodedIndex {
  const data = cm.data ?? {};
  const annotated = cm.metadata?.annotations?.[REVISION_ANNOTATION];
  const inline = data[ROUTING_JSON_KEY];
  if (inline !== undefined) {
    const revision = data[REVISION_KEY] ?? annotated ?? sha256Hex(inline);
    return { ok: true, format: 'inline', revision, json: inline };
  }
  const raw = data[INDEX_KEY];
  if (raw === undefined)
    return { ok: false, error: `ConfigMap has neither data.${ROUTING_JSON_KEY} nor data.${INDEX_KEY}` };
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch (err) {
    return { ok: false, error: `data.${INDEX_KEY}: invalid JSON: ${(err as Error).message}` };
  }
  const idx = parsed as Partial<ShardIndex>;
  if (idx.format !== INDEX_FORMAT)
    return { ok: false, error: `data.${INDEX_KEY}.format: expected ${INDEX_FORMAT}` };
  if (typeof idx.revision !== 'string' || !/^[0-9a-f]{8,}$/.test(idx.revision)) {
    return { ok: false, error: `data.${INDEX_KEY}.revision: expected a hex digest` };
  }
  if (typeof idx.jsonSha256 !== 'string')
    return { ok: false, error: `data.${INDEX_KEY}.jsonSha256: expected a hex digest` };
  if (idx.encoding !== 'gzip') return { ok: false, error: `data.${INDEX_KEY}.encoding: expected gzip` };
  if (!Array.isArray(idx.shards) || idx.shards.length === 0) {
    return { ok: false, error: `data.${INDEX_KEY}.shards: expected a non-empty list` };
  }
  for (const [i, s] of idx.shards.entries()) {
    if (typeof s.name !== 'string' || typeof s.sha256 !== 'string' || typeof s.bytes !== 'number') {
      return { ok: false, error: `data.${INDEX_KEY}.shards[${i}]: expected {name, sha256, bytes}` };
    }
  }
  return { ok: true, format: 'sharded', revision: idx.revision, index: idx as ShardIndex };
}

export type AssembleResult =
  | { ok: true; revision: string; json: string }
  /** Some shards are not there (yet) or belong to another revision: keep serving the old table, try again. */
  | { ok: false; retry: true; missing: string[] }
  /** The shards are there but corrupt: a bug or tampering; report it. */
  | { ok: false; retry: false; error: string };

/** Joins the shards of a sharded index. `shards` maps shard name -> ConfigMap (as fetched; absent if not found). */
export function assembleShards(
  index: ShardIndex,
  shards: ReadonlyMap<string, ConfigMapLike>,
): AssembleResult {
  const missing: string[] = [];
  const pieces: Buffer[] = [];
  for (const ref of index.shards) {
    const cm = shards.get(ref.name);
    const b64 = cm?.binaryData?.[SHARD_KEY];
    if (
      cm === undefined ||
      b64 === undefined ||
      cm.metadata?.annotations?.[REVISION_ANNOTATION] !== index.revision
    ) {
      missing.push(ref.name);
      continue;
    }
    const piece = Buffer.from(b64, 'base64');
    if (piece.length !== ref.bytes || sha256Hex(piece) !== ref.sha256) {
      return { ok: false, retry: true, missing: [ref.name] };
    }
    pieces.push(piece);
  }
  if (missing.length > 0) return { ok: false, retry: true, missing };
  let json: string;
  try {
    json = gunzipSync(Buffer.concat(pieces)).toString('utf8');
  } catch (err) {
    return {
      ok: false,
      retry: false,
      error: `shards of ${index.revision}: gunzip failed: ${(err as Error).message}`,
    };
  }
  const got = sha256Hex(json);
  if (got !== index.jsonSha256) {
    return {
      ok: false,
      retry: false,
      error: `shards of ${index.revision}: assembled JSON hashes to ${got}, index says ${index.jsonSha256}`,
    };
  }
  return { ok: true, revision: index.revision, json };
}

/**
 * The table a routing ConfigMap holds now, read with `get` (a ConfigMap by name; undefined when it does not exist; it
 * throws when the API server cannot be asked): undefined when there is no index, the JSON, or why it cannot be read
 * whole (an index that does not decode, shards missing or corrupt).
 */
export async function readRouting(
  get: (name: string) => Promise<ConfigMapLike | undefined>,
  name: string = ROUTING_CONFIGMAP,
): Promise<{ ok: true; revision: string; json: string } | { ok: false; error: string } | undefined> {
  const cm = await get(name);
  if (cm === undefined) return undefined;
  const idx = decodeIndex(cm);
  if (!idx.ok) return idx;
  if (idx.format === 'inline') return { ok: true, revision: idx.revision, json: idx.json };
  const shards = new Map<string, ConfigMapLike>();
  for (const s of idx.index.shards) {
    const got = await get(s.name);
    if (got !== undefined) shards.set(s.name, got);
  }
  const a = assembleShards(idx.index, shards);
  if (a.ok) return a;
  return { ok: false, error: a.retry ? `shards missing: ${a.missing.join(', ')}` : a.error };
}
