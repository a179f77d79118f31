import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSmtpPeer, type SmtpPeer } from '../../test/support/smtp-peer.ts';
import { waitFor } from '../../test/support/wait.ts';
import { clusterDefaultDeny, destinationPolicy, grantFromTexts } from '../../routing/destinations.ts';
import { createSmtpProbe, startPreflight, type PreflightKube } from './index.ts';
import {
  decideCondition,
  isDue,
  nextDue,
  serversFingerprint,
  viewMailDomain,
  type Condition,
  type ServerStatus,
  reachabilityEvent,
} from './status.ts';

const T0 = new Date('2026-01-01T00:00:00Z');
const srv = (name: string, reachable: boolean, tls: ServerStatus['tls'] = 'none'): ServerStatus => ({
  name,
  reachable,
  tls,
  message: reachable ? 'ok' : 'connect refused',
  lastProbeTime: T0.toISOString(),
});

describe('decideCondition', () => {
  const prevTrue: Condition = {
    type: 'ServersReachable',
    status: 'True',
    reason: 'AllReachable',
    message: '',
    lastTransitionTime: '2025-01-01T00:00:00.000Z',
  };
  it.each([
    [
      'all reachable',
      [srv('a', true), srv('b', true, 'offered')],
      'True',
      'AllReachable',
      /^2\/2 servers reachable$/,
    ],
    [
      'one down',
      [srv('a', true), srv('b', false)],
      'False',
      'ProbeFailed',
      /^b: unreachable: connect refused$/,
    ],
    ['tls failed', [srv('a', true, 'failed')], 'False', 'ProbeFailed', /^a: tls failed: ok$/],
  ] as const)('%s', (_n, servers, status, reason, message) => {
    const c = decideCondition([...servers], 7, undefined, T0);
    expect(c).toMatchObject({ type: 'ServersReachable', status, reason, observedGeneration: 7 });
    expect(c.message).toMatch(message);
    expect(c.lastTransitionTime).toBe('2026-01-01T00:00:00Z');
  });
  it('keeps lastTransitionTime when the status does not change, and moves it when it does', () => {
    expect(decideCondition([srv('a', true)], 1, prevTrue, T0).lastTransitionTime).toBe(
      prevTrue.lastTransitionTime,
    );
    expect(decideCondition([srv('a', false)], 1, prevTrue, T0).lastTransitionTime).toBe(
      '2026-01-01T00:00:00Z',
    );
  });
});

describe('viewMailDomain and isDue', () => {
  const md = (status?: object): unknown => ({
    metadata: { name: 'example-com', namespace: 'mail', generation: 3 },
    spec: {
      domain: 'example.com',
      servers: [{ name: 'legacy', host: 'mx.legacy', tls: 'Required' }, { name: 'bad' }],
    },
    ...(status ? { status } : {}),
  });
  it('reads servers with defaults and skips malformed ones', () => {
    expect(viewMailDomain(md())).toMatchObject({
      namespace: 'mail',
      name: 'example-com',
      generation: 3,
      servers: [{ name: 'legacy', host: 'mx.legacy', port: 25, mx: false, tls: 'Required' }],
    });
    expect(viewMailDomain({ metadata: {} })).toBeUndefined();
  });
  it('is due when never probed, when stale, when servers change; not when a fresh status exists', () => {
    const now = T0.getTime();
    const cond = (generation: number) => ({
      type: 'ServersReachable',
      status: 'True',
      reason: 'AllReachable',
      message: '',
      lastTransitionTime: '',
      observedGeneration: generation,
    });
    const fresh = viewMailDomain(md({ servers: [srv('legacy', true)], conditions: [cond(3)] }));
    const oldGeneration = viewMailDomain(md({ servers: [srv('legacy', true)], conditions: [cond(2)] }));
    const never = viewMailDomain(md());
    if (!fresh || !never || !oldGeneration) throw new Error('view');
    expect(isDue(never, undefined, now, 60_000)).toBe(true);
    expect(isDue(fresh, undefined, now + 1000, 60_000)).toBe(false);
    expect(isDue(oldGeneration, undefined, now + 1000, 60_000)).toBe(true);
    expect(isDue(fresh, undefined, now + 60_000, 60_000)).toBe(true);
    expect(isDue(fresh, { fingerprint: 'other', nextDue: now + 1e9 }, now, 60_000)).toBe(true);
    expect(isDue(fresh, { fingerprint: serversFingerprint(fresh), nextDue: now + 1e9 }, now, 60_000)).toBe(
      false,
    );
    expect(
      isDue(
        fresh,
        { fingerprint: serversFingerprint({ ...fresh, generation: 2 }), nextDue: now + 1e9 },
        now,
        60_000,
      ),
    ).toBe(true);
  });
  it('jitters the next due time within ±jitter', () => {
    expect(nextDue(0, 1000, 0.1, () => 0)).toBe(900);
    expect(nextDue(0, 1000, 0.1, () => 1)).toBe(1100);
    expect(nextDue(0, 1000, 0.1, () => 0.5)).toBe(1000);
  });
});

describe('startPreflight with an injected API and a real SMTP peer', () => {
  let peer: SmtpPeer;
  beforeAll(async () => {
    peer = await startSmtpPeer('dest');
  });
  afterAll(async () => {
    await peer.close();
  });

  it('writes reachable true, then false after the server goes down, then true again', async () => {
    const applied: Array<{
      ns: string;
      name: string;
      body: { status: { servers: ServerStatus[]; conditions: Condition[] } };
    }> = [];
    const objects = [
      {
        metadata: { name: 'example-com', namespace: 'mail', generation: 1 },
        spec: { servers: [{ name: 'legacy', host: '127.0.0.1', port: peer.port, tls: 'Opportunistic' }] },
      },
    ];
    const kube: PreflightKube = {
      listMailDomains: (ns) => Promise.resolve(ns === undefined ? objects : []),
      applyStatus: (ns, name, body) => {
        applied.push({ ns, name, body: body as (typeof applied)[number]['body'] });
        return Promise.resolve(true);
      },
    };
    const logs: string[] = [];
    const logger = {
      info: (_o: object, m?: string) => logs.push(m ?? ''),
      warn: () => undefined,
      debug: () => undefined,
    };
    const pf = startPreflight({ kube, logger, intervalMs: 50, jitter: 0, scanMs: 20 });
    try {
      const first = await waitFor(() => applied[0], { what: 'first status apply' });
      expect(first.ns).toBe('mail');
      expect(first.body.status.servers[0]).toMatchObject({ name: 'legacy', reachable: true, tls: 'none' });
      expect(first.body.status.conditions[0]).toMatchObject({
        type: 'ServersReachable',
        status: 'True',
        reason: 'AllReachable',
      });
      await peer.down();
      const down = await waitFor(() => applied.find((a) => a.body.status.servers[0]?.reachable === false), {
        what: 'reachable=false',
      });
      expect(down.body.status.conditions[0]).toMatchObject({ status: 'False', reason: 'ProbeFailed' });
      await peer.up();
      const n = applied.length;
      await waitFor(() => applied.slice(n).find((a) => a.body.status.servers[0]?.reachable === true), {
        what: 'reachable again',
      });
      expect(logs).toContain('preflight: probed MailDomain servers');
    } finally {
      await pf.stop();
    }
  });

  it("probes each MailDomain's servers under its domain's DomainClaim destinations (grantFor)", async () => {
    const applied = new Map<string, ServerStatus | undefined>();
    const md = (name: string, domain: string) => ({
      metadata: { name, namespace: 'team-a', generation: 1 },
      spec: { domain, servers: [{ name: 'onprem', host: '127.0.0.1', port: peer.port, tls: 'None' }] },
    });
    const kube: PreflightKube = {
      listMailDomains: () => Promise.resolve([md('granted', 'Granted.test'), md('plain', 'plain.test')]),
      applyStatus: (_ns, name, body) => {
        applied.set(name, (body as { status: { servers: ServerStatus[] } }).status.servers[0]);
        return Promise.resolve(true);
      },
    };
    const asked: string[] = [];
    const logger = { info: () => undefined, warn: () => undefined, debug: () => undefined };
    const pf = startPreflight({
      kube,
      logger,
      intervalMs: 60_000,
      probe: createSmtpProbe({
        timeoutMs: 3000,
        destinations: destinationPolicy({ deny: clusterDefaultDeny() }),
      }),
      grantFor: (namespace, domain) => {
        asked.push(`${namespace}/${domain}`);
        return domain === 'granted.test' ? grantFromTexts({ allow: ['127.0.0.1/32'] }) : undefined;
      },
    });
    try {
      await waitFor(() => (applied.size === 2 ? true : undefined), { what: 'both MailDomains probed' });
      expect(applied.get('granted')).toMatchObject({ reachable: true });
      expect(applied.get('plain')).toMatchObject({
        reachable: false,
        message: 'connect 127.0.0.1: not permitted by the destination policy',
      });
      expect(asked.sort()).toEqual(['team-a/granted.test', 'team-a/plain.test']);
    } finally {
      await pf.stop();
    }
  });

  it('writes nothing when not the leader', async () => {
    let applies = 0;
    let lists = 0;
    const kube: PreflightKube = {
      listMailDomains: () => {
        lists++;
        return Promise.resolve([]);
      },
      applyStatus: () => {
        applies++;
        return Promise.resolve(true);
      },
    };
    const logger = { info: () => undefined, warn: () => undefined, debug: () => undefined };
    const pf = startPreflight({ kube, logger, intervalMs: 10, isLeader: () => false });
    await pf.scanNow();
    await pf.stop();
    expect(lists).toBe(0);
    expect(applies).toBe(0);
  });
});

describe('reachabilityEvent', () => {
  it.each<[string | undefined, 'True' | 'False', string | undefined]>([
    [undefined, 'True', undefined],
    [undefined, 'False', 'Warning ServersUnreachable'],
    ['True', 'False', 'Warning ServersUnreachable'],
    ['False', 'False', undefined],
    ['False', 'True', 'Normal ServersReachable'],
    ['True', 'True', undefined],
  ])('%s -> %s: %s', (previous, status, want) => {
    const e = reachabilityEvent(previous, { status, message: 'm' });
    expect(e === undefined ? undefined : `${e.type} ${e.reason}`).toBe(want);
  });
});
