import { describe, expect, it } from 'vitest';
import type { ObjectRef } from '../../../routing/model.ts';
import { domainClaim, mailDomain, syntheticObjects } from '../../../routing/test-fixtures.ts';
import type { CompileNotice } from '../../../routing/compile.ts';
import type { DomainClaim } from '../../../routing/types.ts';
import {
  RevisionHistory,
  RoutingController,
  RoutingState,
  type RoutingControllerDeps,
} from './controller.ts';
import { objectKey } from '../../../routing/parse.ts';

const ref = (kind: ObjectRef['kind'], name: string, generation: number): ObjectRef => ({
  kind,
  namespace: 'ns',
  name,
  generation,
});

describe('RevisionHistory', () => {
  const h = new RevisionHistory(3);
  h.add('r1', [ref('MailDomain', 'd', 1), ref('DeliveryPolicy', 'p', 1), ref('TestRecipient', 't', 1)]);
  h.add('r2', [ref('MailDomain', 'd', 1), ref('DeliveryPolicy', 'p', 2), ref('TestRecipient', 'u', 1)]);

  it('knows the generation of each object in each revision', () => {
    expect(h.generationIn('r1', objectKey('DeliveryPolicy', 'ns', 'p'))).toBe(1);
    expect(h.generationIn('r2', objectKey('DeliveryPolicy', 'ns', 'p'))).toBe(2);
    expect(h.generationIn('r2', objectKey('TestRecipient', 'ns', 't'))).toBeUndefined();
    expect(h.generationIn('nope', objectKey('MailDomain', 'ns', 'd'))).toBeUndefined();
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

  it('keeps only the most recent revisions', () => {
    h.add('r3', []);
    h.add('r1', []); // re-adding refreshes recency
    h.add('r4', []);
    expect([h.has('r1'), h.has('r2'), h.has('r3'), h.has('r4')]).toEqual([true, false, true, true]);
  });
});

describe('RoutingController', () => {
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

  it('compiles with the DomainClaims of the cache, and reports the notices of every fresh compile', async () => {
    const rest = {
      request: <T>(method: string, path: string) =>
        Promise.resolve({
          ok: true as const,
          status: 200,
          body: (method === 'GET' && path.endsWith('/configmaps') ? { items: [] } : {}) as T,
        }),
    };
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
