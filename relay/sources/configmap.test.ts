import { describe, expect, it } from 'vitest';
import { API_VERSION } from '../../routing/model.ts';
import { parseTableJson } from './configmap.ts';

describe('parseTableJson', () => {
  const base = { apiVersion: API_VERSION, kind: 'RoutingTable', domains: {}, sources: [] };
  it.each([
    ['{', /^invalid JSON/],
    ['[]', /^not a JSON object/],
    [JSON.stringify({ ...base, kind: 'X' }), /^kind: must be RoutingTable/],
    [JSON.stringify({ ...base, domains: [] }), /^domains: must be an object/],
    [JSON.stringify({ ...base, sources: undefined }), /^sources: must be an array/],
  ])('%s -> error', (json, msg) => {
    const r = parseTableJson(json);
    expect(typeof r).toBe('string');
    expect(r).toMatch(msg);
  });
  it('accepts a table', () => {
    const t = { apiVersion: API_VERSION, kind: 'RoutingTable', domains: {}, sources: [] };
    expect(parseTableJson(JSON.stringify(t))).toEqual(t);
  });
});
