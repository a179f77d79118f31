import { describe, expect, it } from 'vitest';
import type { ObjectRef } from '../../../routing/model.ts';
import {
  domainClaim,
  exampleDomain,
  examplePolicy,
  mailDomain,
  syntheticObjects,
  testRecipient,
} from '../../../routing/test-fixtures.ts';
import type { CompileNotice } from '../../../routing/compile.ts';
import type { DomainClaim, MailrouteObject } from '../../../routing/types.ts';
import { SHARD_LABEL, type ConfigMapLike } from '../../../contract/routing-configmap.ts';
import {
  RevisionHistory,
  RoutingController,
  RoutingState,
  type RoutingControllerDeps,
} from './controller.ts';
import { objectKey } from '../../../routing/parse.ts';
import type { ApiResult } from '../../kube/rest.ts';

const ref = (kind: ObjectRef['kind'], name: string, generation: number): ObjectRef => ({
  kind,
  namespace: 'ns',
  name,
  generation,
});

/** A controller for namespace ns and ConfigMap mailroute-routing, silent, with no relays; `deps` has the rest. */
const controller = (
  deps: Pick<RoutingControllerDeps, 'rest' | 'state' | 'objects'> & Partial<RoutingControllerDeps>,
): RoutingController =>
  new RoutingController({
    namespace: 'ns',
    configMapName: 'mailroute-routing',
    logger: { info: () => undefined, warn: () => undefined, error: () => undefined },
    relayRevisions: () => new Set(),
    onCompiled: () => undefined,
    ...deps,
  });

/**
 * A controller on `api` over `objects` (with `extra` deps) that records what each compile requeues: ['all'], or the
 * sorted keys.
 */
function recording(
  api: { rest: RoutingControllerDeps['rest'] },
  objects: () => MailrouteObject[],
  extra: Partial<RoutingControllerDeps> = {},
): { c: RoutingController; state: RoutingState; requeued: string[][] } {
  const state = new RoutingState();
  const requeued: string[][] = [];
  const c = controller({
    onCompiled: (_r, ch) => requeued.push(ch.all ? ['all'] : [...ch.keys].sort()),
    rest: api.rest,
    state,
    objects,
    ...extra,
  });
  return { c, state, requeued };
}

describe('RevisionHistory', () => {
  const h = new RevisionHistory(3);
  h.add('r1', [ref('MailDomain', 'd', 1), ref('DeliveryPolicy', 'p', 1), ref('TestRecipient', 't', 1)]);
  h.add('r2', [ref('MailDomain', 'd', 1), ref('DeliveryPolicy', 'p', 2), ref('TestRecipient', 'u', 1)]);

  it('knows the generation of each object in each revision', () => {
    expect(h.generationIn('r1', objectKey('DeliveryPolicy', 'ns', 'p'), '')).toBe(1);
    expect(h.generationIn('r2', objectKey('DeliveryPolicy', 'ns', 'p'), '')).toBe(2);
    expect(h.generationIn('r2', objectKey('TestRecipient', 'ns', 't'), '')).toBeUndefined();
    expect(h.generationIn('nope', objectKey('MailDomain', 'ns', 'd'), '')).toBeUndefined();
  });

  it('diffs two revisions by object generation (objects in one of them only count)', () => {
    expect([...(h.diff('r1', 'r2') ?? [])].sort()).toEqual([
      'DeliveryPolicy/ns/p',
      'TestRecipient/ns/t',
      'TestRecipient/ns/u',
    ]);
    expect(h.diff('r1', 'r1')?.size).toBe(0);
    expect(h.diff('r1', 'unknown')).toBeUndefined();
  });

  it('tells a re-created object from the one it replaced: same name and generation, another uid', () => {
    const r = new RevisionHistory(4);
    const d = objectKey('MailDomain', 'ns', 'd');
    const uids = (uid: string) => (k: string) => (k === d ? uid : '');
    r.add('old-spec', [ref('MailDomain', 'd', 1)], uids('u1'));
    // `kubectl replace --force` with another spec: a new object at generation 1, in a new revision
    r.add('new-spec', [ref('MailDomain', 'd', 1)], uids('u2'));
    expect(r.generationIn('old-spec', d, 'u1')).toBe(1);
    expect(r.generationIn('old-spec', d, 'u2')).toBeUndefined(); // a relay serving it does not route by the new one
    expect(r.generationIn('new-spec', d, 'u2')).toBe(1);
    expect([...(r.diff('old-spec', 'new-spec') ?? [])]).toEqual([d]);
    // re-created with the same spec: the same table and revision, which now holds the new object
    r.add('old-spec', [ref('MailDomain', 'd', 1)], uids('u2'));
    expect(r.generationIn('old-spec', d, 'u2')).toBe(1);
    expect(r.generationIn('old-spec', d, 'u1')).toBeUndefined();
  });

  it('keeps only the most recent revisions', () => {
    h.add('r3', []);
    h.add('r1', []); // re-adding refreshes recency
    h.add('r4', []);
    expect([h.has('r1'), h.has('r2'), h.has('r3'), h.has('r4')]).toEqual([true, false, true, true]);
  });
});

describe('RoutingController', () => {
  /** A rest stub that answers every request with 200: no ConfigMaps listed, an empty body otherwise. */
  const answeringRest = {
    request: <T>(method: string, path: string) =>
      Promise.resolve({
        ok: true as const,
        status: 200,
        body: (method === 'GET' && path.endsWith('/configmaps') ? { items: [] } : {}) as T,
      }),
  };

  it('compiles only when marked dirty; a periodic resync reuses the last result', async () => {
    const objects = syntheticObjects(2, 2);
    let gathered = 0;
    const applied: string[] = [];
    const rest = {
      request: <T>(method: string, path: string) => {
        if (method === 'PATCH') applied.push(path);
        if (method === 'GET' && path.endsWith('/configmaps'))
          return Promise.resolve({ ok: true as const, status: 200, body: { items: [] } as T });
        // drift check: report the revision we last applied
        if (method === 'GET')
          return Promise.resolve({
            ok: true as const,
            status: 200,
            body: { metadata: { annotations: { 'mailroute.io/revision': state.appliedRevision } } } as T,
          });
        return Promise.resolve({ ok: true as const, status: 200, body: {} as T });
      },
    };
    const state = new RoutingState();
    const compiled: number[] = [];
    const c = controller({
      rest,
      state,
      objects: () => {
        gathered++;
        return objects;
      },
      onCompiled: (_r, changed) => compiled.push(changed.all ? -1 : changed.keys.size),
    });
    expect(await c.reconcile()).toMatchObject({ ok: true, requeueAfterMs: 60_000 });
    expect([gathered, applied.length, compiled]).toEqual([1, 1, [-1]]);
    await c.reconcile(); // periodic: nothing changed
    expect([gathered, applied.length]).toEqual([1, 1]);
    const dp = objects.find((o) => o.kind === 'DeliveryPolicy');
    if (dp?.kind !== 'DeliveryPolicy') throw new Error('no policy');
    dp.metadata.generation = 2;
    c.markDirty();
    await c.reconcile();
    expect([gathered, applied.length, compiled]).toEqual([2, 2, [-1, 1]]);
    expect(applied[1]).toBe('/api/v1/namespaces/ns/configmaps/mailroute-routing');
  });

  it('a re-created object (same name, spec and generation, another uid) is not compiled until the next compile', async () => {
    const rest = answeringRest;
    const md = (uid: string) => {
      const o = mailDomain(
        { name: 'corp', namespace: 'ns' },
        { domain: 'corp.test', servers: [{ name: 'mx', host: 'mx.test' }] },
      );
      o.metadata.generation = 1;
      o.metadata['uid'] = uid;
      return o;
    };
    let objects = [md('u1')];
    const state = new RoutingState();
    const changed: string[][] = [];
    const c = controller({
      rest,
      state,
      objects: () => objects,
      onCompiled: (_r, ch) => changed.push(ch.all ? ['all'] : [...ch.keys]),
    });
    await c.reconcile();
    const key = 'MailDomain/ns/corp';
    const revision = state.revision;
    expect([state.compiledSpec(key, 1, 'u1'), state.currentGeneration(key, 'u1')]).toEqual([true, 1]);
    objects = [md('u2')]; // deleted and created again with the same spec
    // before the compile: its issues are the old object's, so its status waits
    expect(state.compiledSpec(key, 1, 'u2')).toBe(false);
    c.markDirty();
    await c.reconcile();
    expect(state.revision).toBe(revision); // the same table
    expect([state.compiledSpec(key, 1, 'u2'), state.currentGeneration(key, 'u2')]).toEqual([true, 1]);
    expect(state.currentGeneration(key, 'u1')).toBeUndefined();
    expect(changed).toEqual([['all'], [key]]); // its status is requeued
  });

  it('compiles with the DomainClaims of the cache, and reports the notices of every fresh compile', async () => {
    const rest = answeringRest;
    const md = (ns: string) =>
      mailDomain(
        { name: 'corp', namespace: ns },
        { domain: 'corp.test', servers: [{ name: 'mx', host: `mx.${ns}.test` }] },
      );
    let claims: DomainClaim[] = [];
    const notices: CompileNotice[][] = [];
    const state = new RoutingState();
    const c = controller({
      rest,
      state,
      objects: () => [md('team-a'), md('team-b')],
      claims: () => claims,
      onNotices: (n) => notices.push([...n]),
    });
    await c.reconcile();
    // no claims: open, the two tie on age and team-a wins by name
    expect(state.issuesByKey.get('MailDomain/team-b/corp')?.map((i) => i.reason)).toEqual(['DomainConflict']);
    claims = [domainClaim('corp', ['corp.test'], ['team-b'])];
    c.markDirty();
    await c.reconcile();
    expect(state.issuesByKey.get('MailDomain/team-a/corp')?.map((i) => i.reason)).toEqual(['NotPermitted']);
    expect(state.issuesByKey.get('MailDomain/team-b/corp')).toBeUndefined();
    expect(notices.map((n) => n.map((x) => `${x.namespace}/${x.name} ${x.reason}`))).toEqual([
      ['team-a/corp DomainContested'],
      [],
    ]);
  });
});

describe('RoutingController: the removed domains the applied table carries', () => {
  const NOW = Date.parse('2026-12-07T00:00:00Z');
  type Answer = { ok: true; body: unknown } | { ok: false; status: number };
  /** A rest stub whose routing ConfigMap GET answers `applied()`, and that records each applied ConfigMap's table. */
  const restWith = (applied: () => Answer) => {
    const tables: { removedDomains?: Record<string, string> }[] = [];
    const rest = {
      request: <T>(method: string, path: string, opts?: { body?: unknown }): Promise<ApiResult<T>> => {
        if (method === 'PATCH') {
          const data = (opts?.body as { data?: Record<string, string> } | undefined)?.data;
          tables.push(
            JSON.parse(data?.['routing.json'] ?? '{}') as { removedDomains?: Record<string, string> },
          );
        }
        if (method === 'GET' && path.endsWith('/configmaps'))
          return Promise.resolve({ ok: true as const, status: 200, body: { items: [] } as T });
        if (method === 'GET') {
          const a = applied();
          return Promise.resolve(
            a.ok
              ? { ok: true as const, status: 200, body: a.body as T }
              : {
                  ok: false as const,
                  status: a.status,
                  reason: 'ServiceUnavailable',
                  message: `HTTP ${a.status}`,
                },
          );
        }
        return Promise.resolve({ ok: true as const, status: 200, body: {} as T });
      },
    };
    return { rest, tables };
  };
  const make = (rest: ReturnType<typeof restWith>['rest'], warned: string[] = []): RoutingController =>
    new RoutingController({
      namespace: 'ns',
      configMapName: 'mailroute-routing',
      logger: {
        info: () => undefined,
        warn: (_o: unknown, msg: string) => warned.push(msg),
        error: () => undefined,
      },
      relayRevisions: () => new Set(),
      onCompiled: () => undefined,
      rest,
      state: new RoutingState(),
      objects: () => [
        mailDomain('keep', { domain: 'keep.test', servers: [{ name: 'mx', host: 'mx.keep.test' }] }),
      ],
      now: () => NOW,
    });
  const appliedTable = (json: string): Answer => ({
    ok: true,
    body: { data: { 'routing.json': json, revision: 'abc' } },
  });

  it('a domain the applied table had and the objects no longer have is carried, with the time it left', async () => {
    const before = JSON.stringify({
      apiVersion: 'mailroute.io/v1alpha1',
      kind: 'RoutingTable',
      domains: { 'keep.test': {}, 'gone.test': {} },
      sources: [],
      removedDomains: {
        'older.test': '2026-12-06T12:00:00.000Z',
        'soon.test': '2026-12-06T00:00:30.000Z',
        'expired.test': '2026-12-05T00:00:00.000Z',
      },
    });
    const { rest, tables } = restWith(() => appliedTable(before));
    const out = await make(rest).reconcile();
    expect(tables[0]?.removedDomains).toEqual({
      'gone.test': '2026-12-07T00:00:00.000Z',
      'older.test': '2026-12-06T12:00:00.000Z',
      'soon.test': '2026-12-06T00:00:30.000Z',
    });
    // soon.test's grace ends in 30 s, before the 60 s resync: the reconcile comes back then to drop it
    expect(out).toMatchObject({ ok: true, requeueAfterMs: 30_001 });
  });

  it.each([
    ['not JSON', 'not json'],
    ['JSON without domains', '{"kind": "RoutingTable"}'],
    ['domains of the wrong type', '{"domains": "gone.test"}'],
  ])(
    'an applied table that is %s seeds nothing, and the reconcile goes on (a warning)',
    async (_name, json) => {
      const warned: string[] = [];
      const { rest, tables } = restWith(() => appliedTable(json));
      expect(await make(rest, warned).reconcile()).toMatchObject({ ok: true });
      expect(tables[0]?.removedDomains).toBeUndefined();
      expect(warned.some((m) => m.includes('the applied routing table could not be read'))).toBe(true);
    },
  );

  it('an API server that cannot be asked fails the reconcile before anything is applied; the retry seeds', async () => {
    let down = true;
    const before = JSON.stringify({ domains: { 'keep.test': {}, 'gone.test': {} } });
    const { rest, tables } = restWith(() => (down ? { ok: false, status: 503 } : appliedTable(before)));
    const c = make(rest);
    const failed = await c.reconcile();
    expect(failed.ok).toBe(false);
    expect(failed.ok === false && failed.error).toMatch(/mailroute-routing/);
    expect(tables).toHaveLength(0);
    down = false;
    expect(await c.reconcile()).toMatchObject({ ok: true });
    expect(tables[0]?.removedDomains).toEqual({ 'gone.test': '2026-12-07T00:00:00.000Z' });
  });
});

/**
 * ConfigMaps of namespace ns as an API server keeps them: server-side apply (a new resourceVersion only when the
 * object changed), GET (404 when absent), LIST by the shard label (metadata), DELETE. `fail` makes the next request
 * that matches answer an error; `calls` records every request as "METHOD name" ("list" for a LIST).
 */
function configMapApi() {
  const base = '/api/v1/namespaces/ns/configmaps';
  const objects = new Map<string, { body: ConfigMapLike; rv: string }>();
  let rv = 100;
  const faults: { method: string; name: string | undefined; status: number }[] = [];
  const calls: string[] = [];
  const withRv = (o: { body: ConfigMapLike; rv: string }): ConfigMapLike => ({
    ...o.body,
    metadata: { ...o.body.metadata, resourceVersion: o.rv },
  });
  const answer = <T>(status: number, body?: unknown): Promise<ApiResult<T>> =>
    Promise.resolve(
      status < 300
        ? { ok: true as const, status, body: body as T }
        : {
            ok: false as const,
            status,
            reason: status === 404 ? 'NotFound' : 'Failed',
            message: `HTTP ${status}`,
          },
    );
  const rest = {
    request: <T>(method: string, path: string, opts?: { body?: unknown }): Promise<ApiResult<T>> => {
      const name = path.startsWith(`${base}/`) ? path.slice(base.length + 1) : undefined;
      calls.push(`${method} ${name ?? 'list'}`);
      const f = faults.findIndex((x) => x.method === method && (x.name === undefined || x.name === name));
      if (f >= 0) return answer<T>(faults.splice(f, 1)[0]?.status ?? 500);
      if (name === undefined) {
        const items = [...objects.values()]
          .filter((o) => o.body.metadata?.labels?.[SHARD_LABEL] === 'true')
          .map((o) => ({ metadata: withRv(o).metadata }));
        return answer<T>(200, { items });
      }
      const have = objects.get(name);
      if (method === 'GET') return have === undefined ? answer<T>(404) : answer<T>(200, withRv(have));
      if (method === 'DELETE') {
        objects.delete(name);
        return answer<T>(have === undefined ? 404 : 200, {});
      }
      if (method === 'PATCH') {
        const body = opts?.body as ConfigMapLike;
        const same = have !== undefined && JSON.stringify(have.body) === JSON.stringify(body);
        const o = same ? have : { body, rv: String(++rv) };
        objects.set(name, o);
        return answer<T>(200, withRv(o));
      }
      return answer<T>(405);
    },
  };
  return {
    rest,
    calls,
    objects,
    fail: (method: string, name: string | undefined, status = 503) => faults.push({ method, name, status }),
    /** Someone else changes it (kubectl edit, another writer): a new resourceVersion. */
    touch: (name: string) => {
      const o = objects.get(name);
      if (o !== undefined) objects.set(name, { body: o.body, rv: String(++rv) });
    },
  };
}

describe('RoutingController: a failed reconcile keeps what it owes the statuses', () => {
  const withUid = <O extends MailrouteObject>(o: O, uid: string): O => {
    o.metadata.generation = 1;
    o.metadata['uid'] = uid;
    return o;
  };
  const domain = () => withUid(exampleDomain({}, { name: 'example-com', namespace: 'ns' }), 'md-uid');
  const policy = () =>
    withUid(examplePolicy({ mode: 'Direct' }, { name: 'example-com', namespace: 'ns' }), 'dp-uid');
  const recipients = (n: number) =>
    Array.from({ length: n }, (_, i) =>
      withUid(
        testRecipient(
          { name: `t${i}`, namespace: 'ns' },
          { policyRef: { name: 'example-com' }, address: `user${i}@example.com` },
        ),
        `tr-${i}`,
      ),
    );
  const make = (api: ReturnType<typeof configMapApi>, objects: () => MailrouteObject[], sharded = false) =>
    recording(api, objects, sharded ? { inlineMaxBytes: 200, shardMaxBytes: 1024 } : {});

  it('the applied table unreadable at start: nothing is compiled, and the retry compiles what the statuses need', async () => {
    const api = configMapApi();
    api.fail('GET', 'mailroute-routing'); // a new leader's first read of the applied table: 503
    const { c, state, requeued } = make(api, () => [domain(), policy()]);
    expect((await c.reconcile()).ok).toBe(false);
    expect(await c.reconcile()).toMatchObject({ ok: true });
    const key = objectKey('DeliveryPolicy', 'ns', 'example-com');
    expect([state.compiledSpec(key, 1, 'dp-uid'), state.currentGeneration(key, 'dp-uid')]).toEqual([true, 1]);
    expect(requeued).toEqual([['all']]);
  });

  it.each([
    ['the index', false, 'mailroute-routing'],
    ['a shard', true, undefined],
  ])(
    'a policy deleted, and the apply of %s fails once: the retry requeues its MailDomain (NoPolicy)',
    async (_what, sharded, failing) => {
      const api = configMapApi();
      let objects: MailrouteObject[] = [domain(), policy(), ...recipients(sharded ? 60 : 0)];
      const { c, state, requeued } = make(api, () => objects, sharded);
      expect(await c.reconcile()).toMatchObject({ ok: true });
      expect(requeued).toEqual([['all']]);
      if (sharded)
        expect([...api.objects.keys()].filter((n) => n !== 'mailroute-routing').length).toBeGreaterThan(1);
      objects = objects.filter((o) => o.kind !== 'DeliveryPolicy');
      c.markDirty();
      // the first PATCH of the new table fails (a 5xx, an etcd leader change, a timeout)
      api.fail('PATCH', failing);
      expect((await c.reconcile()).ok).toBe(false);
      const md = objectKey('MailDomain', 'ns', 'example-com');
      // the write began failing: every status is requeued, and the MailDomain's says why its change is not out
      expect(requeued).toEqual([['all'], ['all']]);
      expect(state.applyFailure(md)).toBe('routing table not written: 503 HTTP 503');
      expect(await c.reconcile()).toMatchObject({ ok: true });
      expect(state.unroutedMailDomains.has(md)).toBe(true);
      expect(state.applyFailure(md)).toBeUndefined();
      // written: every status again (what the failure owed, and the ApplyFailed ones)
      expect(requeued).toEqual([['all'], ['all'], ['all']]);
    },
  );
});

describe('RoutingController: the resync finds the shards of the current revision as written', () => {
  const make = (api: ReturnType<typeof configMapApi>) =>
    controller({
      rest: api.rest,
      state: new RoutingState(),
      objects: () => syntheticObjects(2, 40),
      inlineMaxBytes: 200,
      shardMaxBytes: 1024,
    });
  const shards = (api: ReturnType<typeof configMapApi>) =>
    [...api.objects.keys()].filter((n) => n !== 'mailroute-routing').sort();

  it('costs one GET of the index and one LIST of the shards when nothing changed', async () => {
    const api = configMapApi();
    const c = make(api);
    await c.reconcile();
    expect(shards(api).length).toBeGreaterThan(1);
    api.calls.length = 0;
    expect(await c.reconcile()).toMatchObject({ ok: true });
    expect(api.calls).toEqual(['GET mailroute-routing', 'GET list']);
  });

  it('writes again a shard someone deleted, and one someone changed, and nothing else', async () => {
    const api = configMapApi();
    const c = make(api);
    await c.reconcile();
    const [first, second] = shards(api);
    if (first === undefined || second === undefined) throw new Error('not sharded');
    const before = api.objects.get(first)?.body;
    api.objects.delete(first);
    api.touch(second);
    api.calls.length = 0;
    expect(await c.reconcile()).toMatchObject({ ok: true });
    expect(api.calls.filter((x) => x.startsWith('PATCH')).sort()).toEqual([
      `PATCH ${first}`,
      `PATCH ${second}`,
    ]);
    expect(api.objects.get(first)?.body).toEqual(before);
    // written as the operator wrote them: the next resync writes nothing
    api.calls.length = 0;
    await c.reconcile();
    expect(api.calls.filter((x) => x.startsWith('PATCH'))).toEqual([]);
  });
});

describe('RoutingController: a table that cannot be written is in every status it concerns', () => {
  const withUid = <O extends MailrouteObject>(o: O, uid: string, generation = 1): O => {
    o.metadata.generation = generation;
    o.metadata['uid'] = uid;
    return o;
  };
  const md = objectKey('MailDomain', 'ns', 'example-com');
  const dp = objectKey('DeliveryPolicy', 'ns', 'example-com');
  const tr = objectKey('TestRecipient', 'ns', 't0');
  const make = (api: ReturnType<typeof configMapApi>, objects: () => MailrouteObject[]) =>
    recording(api, objects, { resyncMs: 20_000 });

  it('says why for the objects whose change is not out, requeues all when it starts and stops failing, and caps the retry at the resync', async () => {
    const api = configMapApi();
    const domain = withUid(exampleDomain({}, { name: 'example-com', namespace: 'ns' }), 'md-uid');
    let policy = withUid(
      examplePolicy({ mode: 'Direct' }, { name: 'example-com', namespace: 'ns' }),
      'dp-uid',
    );
    const recipient = withUid(
      testRecipient(
        { name: 't0', namespace: 'ns' },
        { policyRef: { name: 'example-com' }, address: 'a@example.com' },
      ),
      'tr-uid',
    );
    let objects: MailrouteObject[] = [domain, policy];
    const { c, state, requeued } = make(api, () => objects);
    // the operator's namespace does not exist: every write of the index is refused
    api.fail('PATCH', 'mailroute-routing', 404);
    api.fail('PATCH', 'mailroute-routing', 404);
    // the retry waits at most one resync, whatever the queue's backoff has grown to
    expect(await c.reconcile()).toEqual({
      ok: false,
      error: 'apply ConfigMap mailroute-routing: 404 NotFound: HTTP 404',
      maxBackoffMs: 20_000,
    });
    // the statuses of the objects there before the first write are not dropped: all of them are requeued now
    expect(requeued).toEqual([['all']]);
    expect([state.applyFailure(md), state.applyFailure(dp)]).toEqual([
      'routing table not written: 404 HTTP 404',
      'routing table not written: 404 HTTP 404',
    ]);
    // an object created meanwhile: the next compile requeues its status alone (the failure is the same)
    objects = [domain, policy, recipient];
    c.markDirty();
    expect(await c.reconcile()).toMatchObject({ ok: false, maxBackoffMs: 20_000 });
    expect(requeued).toEqual([['all'], [tr]]);
    expect(state.applyFailure(tr)).toBe('routing table not written: 404 HTTP 404');
    // the namespace is there now: written, the failure is gone, and every status is requeued
    expect(await c.reconcile()).toMatchObject({ ok: true });
    expect(requeued).toEqual([['all'], [tr], ['all']]);
    expect([state.tableFailure, state.applyFailure(md), state.applyFailure(tr)]).toEqual([
      undefined,
      undefined,
      undefined,
    ]);
    // a later change the API server refuses (a webhook, 403): only the changed object is concerned; the others are
    // routed as the table in the cluster says
    policy = withUid(
      examplePolicy({ mode: 'Direct', primary: 'new' }, { name: 'example-com', namespace: 'ns' }),
      'dp-uid',
      2,
    );
    objects = [domain, policy, recipient];
    c.markDirty();
    api.fail('PATCH', 'mailroute-routing', 403);
    expect((await c.reconcile()).ok).toBe(false);
    expect(requeued.at(-1)).toEqual(['all']);
    expect(state.applyFailure(dp)).toBe('routing table not written: 403 HTTP 403');
    expect([state.applyFailure(md), state.applyFailure(tr)]).toEqual([undefined, undefined]);
  });

  it('a table the cluster held before this start is no failure for the objects in it', async () => {
    const api = configMapApi();
    const objects = () => [
      withUid(exampleDomain({}, { name: 'example-com', namespace: 'ns' }), 'md-uid'),
      withUid(examplePolicy({ mode: 'Direct' }, { name: 'example-com', namespace: 'ns' }), 'dp-uid'),
    ];
    expect((await make(api, objects).c.reconcile()).ok).toBe(true); // an earlier process wrote it
    // this process may not write it (RBAC changed), but reads the same table it compiles
    const { c, state } = make(api, objects);
    api.fail('PATCH', 'mailroute-routing', 403);
    expect((await c.reconcile()).ok).toBe(false);
    expect(state.tableFailure?.error).toBe('403 HTTP 403');
    expect([state.applyFailure(md), state.applyFailure(dp)]).toEqual([undefined, undefined]);
  });

  it('a credentials Secret that cannot be written concerns the domains whose servers authenticate', async () => {
    const api = configMapApi();
    const auth = withUid(
      mailDomain(
        { name: 'corp', namespace: 'ns' },
        { domain: 'corp.test', servers: [{ name: 'mx', host: 'mx.test', authSecretRef: { name: 'smtp' } }] },
      ),
      'corp-uid',
    );
    const plain = withUid(exampleDomain({}, { name: 'example-com', namespace: 'ns' }), 'md-uid');
    let secretFails = true;
    const state = new RoutingState();
    const requeued: string[][] = [];
    const c = controller({
      onCompiled: (_r, ch) => requeued.push(ch.all ? ['all'] : [...ch.keys].sort()),
      rest: api.rest,
      state,
      objects: () => [auth, plain],
      beforeApply: () =>
        Promise.resolve(
          secretFails
            ? { ok: false, error: 'apply Secret mailroute-credentials: 403 Forbidden: no', brief: '403 no' }
            : { ok: true },
        ),
    });
    expect(await c.reconcile()).toMatchObject({ ok: false, maxBackoffMs: 60_000 });
    expect(state.appliedRevision).toBe(state.revision); // the table is written all the same
    expect([state.applyFailure(objectKey('MailDomain', 'ns', 'corp')), state.applyFailure(md)]).toEqual([
      'credentials Secret not written: 403 no',
      undefined,
    ]);
    secretFails = false;
    expect(await c.reconcile()).toMatchObject({ ok: true });
    expect(state.credentialsFailure).toBeUndefined();
    expect(requeued).toEqual([['all'], ['all']]);
  });
});
