import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeRouting, type ConfigMapLike } from '../../contract/routing-configmap.ts';
import { tableRevision } from '../../routing/compile.ts';
import { API_VERSION, type RoutingTable } from '../../routing/model.ts';
import { tableFor } from '../../test/cluster/tables.ts';
import { waitFor } from '../../test/support/wait.ts';
import {
  parseTableJson,
  resourceVersionOlder,
  startConfigMapSource,
  type ConfigMapApi,
  type ConfigMapSource,
} from './configmap.ts';

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

describe('resourceVersionOlder', () => {
  it.each([
    ['5', '7', true],
    ['7', '5', false],
    ['7', '7', false],
    ['99', '100', true],
    ['12345678901234567890', '1', false], // more digits than an etcd revision: not compared
    [undefined, '5', false],
    ['5', undefined, false],
    ['abc', '5', false],
  ])('%s older than %s: %s', (a, b, want) => {
    expect(resourceVersionOlder(a, b)).toBe(want);
  });
});

/**
 * The source against an API it is told about at its seam (ConfigMapApi): its list answers what the test says, its
 * watch delivers the events the test sends, and `down()` makes it unreachable. The mounted file is a real folder.
 */
function harness(dir: string) {
  let listed: ConfigMapLike | undefined;
  let reachable = true;
  let events: ((type: string, cm: ConfigMapLike) => void) | undefined;
  let done: ((err: unknown) => void) | undefined;
  let lists = 0;
  const api: ConfigMapApi = {
    list: () =>
      ++lists > 0 && reachable
        ? Promise.resolve({ cm: listed, resourceVersion: listed?.metadata?.resourceVersion })
        : Promise.reject(new Error('connect ECONNREFUSED')),
    get: () => Promise.resolve(undefined),
    watch: (_ns, _name, _rv, onEvent, onDone) => {
      if (!reachable) return Promise.reject(new Error('connect ECONNREFUSED'));
      events = onEvent;
      done = onDone;
      return Promise.resolve(() => undefined);
    },
  };
  const served: { revision: string; from: string; table: RoutingTable }[] = [];
  const cm = (t: { json: string; revision: string }, rv: string): ConfigMapLike => {
    const index = encodeRouting(t.json, t.revision, { namespace: 'ns', name: 'routing' }).index;
    return { ...index, metadata: { ...index.metadata, resourceVersion: rv } };
  };
  const mount = (t: { json: string; revision: string }, revision = t.revision): void => {
    writeFileSync(join(dir, 'routing.json'), t.json);
    writeFileSync(join(dir, 'revision'), revision);
  };
  const start = () => {
    const src = startConfigMapSource({
      namespace: 'ns',
      name: 'routing',
      api,
      fallbackFile: join(dir, 'routing.json'),
      onTable: (table, revision, from) => served.push({ table, revision, from }),
      logger: { info: () => undefined, warn: () => undefined, debug: () => undefined },
      filePollMs: 10,
      backoffMinMs: 5,
      backoffMaxMs: 20,
    });
    return src;
  };
  return {
    served,
    cm,
    mount,
    start,
    setList: (c: ConfigMapLike | undefined) => (listed = c),
    listed: () => lists,
    event: (type: string, c: ConfigMapLike) => events?.(type, c),
    /** The watch ends with an error (410 Gone: the source lists again). */
    gone: () => done?.(Object.assign(new Error('Gone'), { code: 410 })),
    down: () => {
      reachable = false;
      done?.(new Error('connection reset'));
    },
  };
}

describe('startConfigMapSource: order and the mounted file', () => {
  const dirs: string[] = [];
  const sources: ConfigMapSource[] = [];
  afterEach(() => {
    for (const s of sources.splice(0)) s.stop();
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  const tmp = (): string => {
    const d = mkdtempSync(join(tmpdir(), 'mailroute-cm-'));
    dirs.push(d);
    return d;
  };
  /** Tables A, B and C, and a source started while both the mounted file and the API (resourceVersion 10) show A. */
  const startedOnA = async () => {
    const h = harness(tmp());
    const [a, b, c] = [tableFor('a'), tableFor('b'), tableFor('c')];
    h.mount(a);
    h.setList(h.cm(a, '10'));
    const src = h.start();
    sources.push(src);
    return { h, src, a, b, c, started: await src.start() };
  };

  it('never serves a mounted table under another revision (a read that straddles the volume update)', async () => {
    const h = harness(tmp());
    const a = tableFor('a');
    const b = tableFor('b');
    h.down(); // the API is unreachable: the file is the source
    h.mount(a, b.revision); // what two reads around a kubelet swap see: A's table, B's revision
    const src = h.start();
    sources.push(src);
    const st = await src.start();
    expect(st.revision).toBeUndefined();
    expect(st.lastError).toMatch(/not its table's/);
    h.mount(b); // the next read sees the volume as it is
    await waitFor(() => src.status().revision === b.revision, { what: 'B served from the file' });
    for (const s of h.served) expect(tableRevision(s.table)).toBe(s.revision);
    expect(h.served.map((s) => s.revision)).toEqual([b.revision]);
  });

  it('does not roll back to what the file showed while the API served newer revisions, when the API goes', async () => {
    const { h, src, a, b, c, started } = await startedOnA();
    expect(started.revision).toBe(a.revision);
    h.event('MODIFIED', h.cm(b, '11'));
    await waitFor(() => src.status().revision === b.revision, { what: 'B from the API' });
    h.mount(b); // the kubelet catches up with B
    h.event('MODIFIED', h.cm(c, '12'));
    await waitFor(() => src.status().revision === c.revision, { what: 'C from the API' });
    await waitFor(() => src.status().fileRevision === b.revision, { what: 'the file showing B noted' });
    h.down(); // the API goes before the kubelet writes C
    await waitFor(() => !src.status().apiReachable, { what: 'the API noticed gone' });
    const polls = src.status().filePolls;
    await waitFor(() => src.status().filePolls >= polls + 2, { what: 'the file polled with the API gone' });
    // the file still shows B: C stays served (it used to go back to B here, for the whole outage)
    expect(src.status().revision).toBe(c.revision);
    h.mount(c); // the kubelet writes C
    await waitFor(() => src.status().fileRevision === c.revision, { what: 'the file showing C noted' });
    expect(h.served.map((x) => x.revision)).toEqual([a.revision, b.revision, c.revision]);
  });

  it('does not apply a re-list answered with an older ConfigMap than the newest event applied', async () => {
    const { h, src, a, b, c } = await startedOnA();
    h.event('MODIFIED', h.cm(c, '12'));
    await waitFor(() => src.status().revision === c.revision, { what: 'C from the watch' });
    // the watch ends (410 Gone) and the re-list is answered with B, older than C
    h.setList(h.cm(b, '11'));
    h.gone();
    await waitFor(() => src.status().watching && h.listed() >= 2, { what: 'listed again and watching' });
    expect(src.status().revision).toBe(c.revision);
    // a newer one still goes in
    const d = tableFor('d');
    h.event('MODIFIED', h.cm(d, '13'));
    await waitFor(() => src.status().revision === d.revision, { what: 'D from the watch' });
    expect(h.served.map((x) => x.revision)).toEqual([a.revision, c.revision, d.revision]);
  });
});
