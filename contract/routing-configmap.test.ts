import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  assembleShards,
  decodeIndex,
  encodeRouting,
  INDEX_KEY,
  REVISION_ANNOTATION,
  ROUTING_JSON_KEY,
  type ConfigMapLike,
} from './routing-configmap.ts';
import { sha256Hex } from '../routing/canonical.ts';

const bigJson = (n: number): string =>
  JSON.stringify({
    entries: Array.from({ length: n }, (_, i) => ({ i, noise: randomBytes(24).toString('hex') })),
  });

describe('encodeRouting / decodeIndex / assembleShards', () => {
  it('keeps a small table inline with the revision annotation', () => {
    const json = '{"a":1}';
    const rev = sha256Hex(json);
    const enc = encodeRouting(json, rev, { namespace: 'ns' });
    expect(enc.format).toBe('inline');
    expect(enc.shards).toEqual([]);
    expect(enc.index.metadata.name).toBe('mailroute-routing');
    expect(enc.index.metadata.annotations?.[REVISION_ANNOTATION]).toBe(rev);
    expect(enc.index.data?.[ROUTING_JSON_KEY]).toBe(json);
    expect(decodeIndex(enc.index)).toEqual({ ok: true, format: 'inline', revision: rev, json });
  });

  it('shards a big table, and assembles it only when every shard of the revision is present', () => {
    const json = bigJson(3000);
    const rev = sha256Hex(json);
    const enc = encodeRouting(json, rev, { namespace: 'ns', inlineMaxBytes: 1024, shardMaxBytes: 20_000 });
    expect(enc.format).toBe('sharded');
    expect(enc.shards.length).toBeGreaterThan(2);
    expect(enc.index.data?.[ROUTING_JSON_KEY]).toBeUndefined();
    expect(enc.shards[0]?.metadata.name).toBe(`mailroute-routing-${rev.slice(0, 8)}-0`);
    const idx = decodeIndex(enc.index);
    if (!idx.ok || idx.format !== 'sharded') throw new Error('expected sharded index');
    const all = new Map<string, ConfigMapLike>(enc.shards.map((s) => [s.metadata.name, s]));
    expect(assembleShards(idx.index, all)).toEqual({ ok: true, revision: rev, json });

    const partial = new Map(all);
    const last = enc.shards.at(-1)?.metadata.name ?? '';
    partial.delete(last);
    expect(assembleShards(idx.index, partial)).toEqual({ ok: false, retry: true, missing: [last] });

    // a shard of another revision under the same name is not accepted
    const stale = new Map(all);
    const first = enc.shards[0];
    if (first === undefined) throw new Error('no shard');
    stale.set(first.metadata.name, {
      ...first,
      metadata: { ...first.metadata, annotations: { [REVISION_ANNOTATION]: 'f'.repeat(64) } },
    });
    expect(assembleShards(idx.index, stale)).toMatchObject({ ok: false, retry: true });
  });

  it('is deterministic and never exceeds the shard size', () => {
    const json = bigJson(2000);
    const a = encodeRouting(json, sha256Hex(json), {
      namespace: 'n',
      inlineMaxBytes: 10,
      shardMaxBytes: 9000,
    });
    const b = encodeRouting(json, sha256Hex(json), {
      namespace: 'n',
      inlineMaxBytes: 10,
      shardMaxBytes: 9000,
    });
    expect(a).toEqual(b);
    for (const s of a.shards)
      expect(Buffer.from(s.binaryData?.shard ?? '', 'base64').length).toBeLessThanOrEqual(9000);
  });

  it.each([
    [{}, /neither data.routing.json nor data.index.json/],
    [{ data: { [INDEX_KEY]: '{' } }, /index.json: invalid JSON/],
    [{ data: { [INDEX_KEY]: '{"format":"x"}' } }, /index.json.format/],
    [
      {
        data: {
          [INDEX_KEY]: JSON.stringify({
            format: 'mailroute.io/routing-index/v1',
            revision: 'abcdef12',
            jsonSha256: 'a',
            encoding: 'gzip',
            shards: [],
          }),
        },
      },
      /shards: expected a non-empty list/,
    ],
  ] as [ConfigMapLike, RegExp][])('refuses a malformed index %#', (cm, re) => {
    const r = decodeIndex(cm);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toMatch(re);
  });
});
