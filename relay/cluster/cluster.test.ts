import { chmod, mkdtemp, open, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Leg } from '../../routing/model.ts';
import { openSpool } from '../spool/spool.ts';
import type { EnvelopeMeta, LegState, Spool, SpoolState } from '../spool/types.ts';
import { handoffTransportFactory } from './handoff-transport.ts';
import { startSmtpPeer, type SmtpPeer } from '../../test/support/smtp-peer.ts';
import { drainQueue, handoffPlan, markHandedOff, type WorkInFlight } from './drain.ts';
import { startHeartbeat, type LeaseApi, type LeaseRef } from './heartbeat.ts';
import { parsePeerAddress, parseStaticPeers, peersFromLeases, type Peer } from './peers.ts';
import { buildLease, readHeartbeat, type LeaseBody, type LeaseLike } from '../../contract/relay-lease.ts';
import { clusterSettings, expandPeers, startClusterMode, type ClusterSettings } from './index.ts';
import { waitFor, withDeadline } from '../../test/support/wait.ts';

const NOW = new Date('2026-11-28T12:00:00Z');
const quiet = { info: () => undefined, warn: () => undefined, debug: () => undefined };

/** A one-look judgement at NOW (the observer's judgement is tested with startHeartbeat below). */
const freshAtNow = (l: LeaseLike): boolean => readHeartbeat(l, NOW).fresh;

describe('lease contents and peers', () => {
  it('builds the heartbeat Lease with revision, ready and smtp annotations', () => {
    const l = buildLease(
      { pod: 'relay-0', namespace: 'ms', revision: 'abc', ready: true, smtp: '10.0.0.5:2525' },
      NOW,
    );
    expect(l.metadata).toMatchObject({
      name: 'mailroute-relay-relay-0',
      namespace: 'ms',
      annotations: {
        'mailroute.io/revision': 'abc',
        'mailroute.io/ready': 'true',
        'mailroute.io/smtp': '10.0.0.5:2525',
      },
      labels: { 'app.kubernetes.io/name': 'mailroute', 'app.kubernetes.io/component': 'relay' },
    });
    expect(l.spec).toMatchObject({
      holderIdentity: 'relay-0',
      leaseDurationSeconds: 30,
      renewTime: '2026-11-28T12:00:00.000000Z',
      acquireTime: '2026-11-28T12:00:00.000000Z',
    });
    const again = buildLease(
      { pod: 'relay-0', namespace: 'ms', revision: undefined, ready: false, smtp: undefined },
      NOW,
      {
        resourceVersion: '7',
        acquireTime: '2026-01-01T00:00:00Z',
      },
    );
    expect(again.metadata.resourceVersion).toBe('7');
    expect(again.metadata.annotations).toEqual({ 'mailroute.io/ready': 'false' });
    expect(again.spec.acquireTime).toBe('2026-01-01T00:00:00.000000Z');
  });

  it.each([
    ['10.0.0.1:2525', { host: '10.0.0.1', port: 2525 }],
    ['[fd00::1]:25', { host: 'fd00::1', port: 25 }],
    ['relay.ms.svc.cluster.local:2525', { host: 'relay.ms.svc.cluster.local', port: 2525 }],
    ['nohost', undefined],
    ['h:0', undefined],
    ['h:70000', undefined],
  ])('parsePeerAddress(%j)', (input, want) => {
    expect(parsePeerAddress(input)).toEqual(want);
  });

  it('keeps fresh, ready, other relays with an smtp address, sorted by name', () => {
    const lease = (pod: string, ageS: number, ann: Record<string, string>) => ({
      metadata: { name: `mailroute-relay-${pod}`, annotations: ann },
      spec: { renewTime: new Date(NOW.getTime() - ageS * 1000), leaseDurationSeconds: 30 },
    });
    const ok = { 'mailroute.io/ready': 'true', 'mailroute.io/smtp': '10.0.0.2:2525' };
    const peers = peersFromLeases(
      [
        lease('c', 1, { ...ok, 'mailroute.io/smtp': '10.0.0.3:2525' }),
        lease('b', 5, ok),
        lease('self', 1, ok),
        lease('stale', 31, ok),
        lease('notready', 1, { ...ok, 'mailroute.io/ready': 'false' }),
        lease('noaddr', 1, { 'mailroute.io/ready': 'true' }),
        { metadata: { name: 'mailroute-operator-leader' }, spec: { renewTime: NOW } },
      ],
      'self',
      freshAtNow,
    );
    expect(peers).toEqual([
      { name: 'mailroute-relay-b', host: '10.0.0.2', port: 2525 },
      { name: 'mailroute-relay-c', host: '10.0.0.3', port: 2525 },
    ]);
    // the relays whose hand-offs this one takes: a draining relay is not ready, and still a relay
    expect(
      peersFromLeases(
        [
          lease('b', 5, ok),
          lease('self', 1, ok),
          lease('stale', 31, ok),
          lease('draining', 1, {
            ...ok,
            'mailroute.io/ready': 'false',
            'mailroute.io/smtp': '10.0.0.4:2525',
          }),
        ],
        'self',
        freshAtNow,
        { readyOnly: false },
      ).map((p) => p.host),
    ).toEqual(['10.0.0.2', '10.0.0.4']);
    expect(parseStaticPeers('a:1, b:2')).toEqual([
      { name: 'static', host: 'a', port: 1 },
      { name: 'static', host: 'b', port: 2 },
    ]);
    expect(parseStaticPeers('a:1,bad')).toBe('not HOST:PORT: "bad"');
  });

  it('derives cluster settings from flags and the downward API', () => {
    const env = { POD_NAME: 'r-0', POD_NAMESPACE: 'ms', POD_IP: '10.1.1.1' };
    const flags = {
      sourceKind: 'configmap',
      peers: undefined,
      drainOnShutdown: 'auto' as const,
      drainTimeoutMs: 60_000,
    };
    expect(clusterSettings(flags, env, { host: '0.0.0.0', port: 2525 })).toMatchObject({
      pod: 'r-0',
      namespace: 'ms',
      smtp: '10.1.1.1:2525',
      drainOnShutdown: true,
    });
    expect(
      clusterSettings({ ...flags, sourceKind: 'manifests' }, env, { host: '0.0.0.0', port: 2525 }),
    ).toMatchObject({
      pod: undefined,
      drainOnShutdown: false,
    });
    expect(
      clusterSettings(
        { ...flags, sourceKind: 'manifests', peers: 'p:25' },
        {},
        { host: '127.0.0.1', port: 2 },
      ),
    ).toMatchObject({
      drainOnShutdown: true,
      smtp: '127.0.0.1:2',
    });
    expect(
      clusterSettings({ ...flags, drainOnShutdown: 'false' }, env, { host: '0.0.0.0', port: 1 }),
    ).toMatchObject({
      drainOnShutdown: false,
    });
    expect(clusterSettings({ ...flags, peers: 'x' }, env, { host: '0.0.0.0', port: 1 })).toBe(
      '--peers: not HOST:PORT: "x"',
    );
  });
});

describe('expandPeers', () => {
  it('turns a headless Service name into one peer per address; IPs and unresolvable names pass through', async () => {
    const lookup = (h: string) =>
      h === 'relay.ms.svc'
        ? Promise.resolve(['10.0.0.1', '10.0.0.2'])
        : Promise.reject(new Error('ENOTFOUND'));
    expect(
      await expandPeers(
        [
          { name: 'static', host: 'relay.ms.svc', port: 2525 },
          { name: 'static', host: '10.0.0.9', port: 25 },
          { name: 'static', host: 'gone.ms.svc', port: 25 },
        ],
        lookup,
      ),
    ).toEqual([
      { name: 'relay.ms.svc', host: '10.0.0.1', port: 2525 },
      { name: 'relay.ms.svc', host: '10.0.0.2', port: 2525 },
      { name: 'static', host: '10.0.0.9', port: 25 },
      { name: 'static', host: 'gone.ms.svc', port: 25 },
    ]);
  });
});

describe('heartbeat with an injected Lease API', () => {
  it('creates, renews with compare-and-swap, renews at once on a revision change, and deletes on stop', async () => {
    const calls: string[] = [];
    let rv = 0;
    let stored: { rv: string; body: unknown } | undefined;
    let conflictOnce = true;
    const api: LeaseApi = {
      read: () => Promise.resolve(stored ? ({ resourceVersion: stored.rv } satisfies LeaseRef) : undefined),
      create: (_ns, body) => {
        calls.push('create');
        stored = { rv: String(++rv), body };
        return Promise.resolve({ resourceVersion: stored.rv });
      },
      replace: (_ns, _n, body) => {
        calls.push(`replace:${body.metadata.annotations['mailroute.io/revision'] ?? '-'}`);
        if (conflictOnce && calls.length === 2) {
          conflictOnce = false;
          stored = { rv: String(++rv), body };
          return Promise.reject(Object.assign(new Error('conflict'), { code: 409 }));
        }
        if (body.metadata.resourceVersion !== stored?.rv)
          return Promise.reject(Object.assign(new Error('conflict'), { code: 409 }));
        stored = { rv: String(++rv), body };
        return Promise.resolve({ resourceVersion: stored.rv });
      },
      delete: () => {
        calls.push('delete');
        stored = undefined;
        return Promise.resolve();
      },
      list: () => Promise.resolve([]),
    };
    const hb = startHeartbeat({
      api,
      logger: quiet,
      renewMs: 3_600_000,
      initial: { pod: 'p', namespace: 'ns', revision: 'r1', ready: true, smtp: '127.0.0.1:1' },
    });
    await hb.update({});
    expect(calls).toEqual(['create']);
    await hb.update({ revision: 'r2' });
    // first replace conflicts (someone else wrote), the heartbeat reads again and retries
    expect(calls).toEqual(['create', 'replace:r2', 'replace:r2']);
    expect(
      (stored?.body as { metadata: { annotations: Record<string, string> } }).metadata.annotations[
        'mailroute.io/revision'
      ],
    ).toBe('r2');
    await hb.update({ revision: 'r2' }); // unchanged: no write
    expect(calls.length).toBe(3);
    expect(hb.lastRenewed()).toBeInstanceOf(Date);
    await hb.stop({ deleteLease: true });
    expect(calls.at(-1)).toBe('delete');
  });
});

describe('drain peers and trusted relays: writer and reader on different clocks', () => {
  // Another relay's Lease as its own heartbeat writes it (buildLease at the writer's wall clock); this relay lists the
  // Leases through peers() / relayAddresses() at its own wall clock and monotonic clock.
  const setup = () => {
    const clock = { wall: NOW.getTime(), mono: 1_000_000 };
    const leases = new Map<string, LeaseLike>();
    const write = (pod: string, writerWall: number, smtp: string): void => {
      leases.set(
        pod,
        buildLease({ pod, namespace: 'ns', revision: 'r1', ready: true, smtp }, new Date(writerWall)),
      );
    };
    const warnings: object[] = [];
    const api: LeaseApi = {
      read: () => Promise.resolve(undefined),
      create: () => Promise.resolve({ resourceVersion: '1' }),
      replace: () => Promise.resolve({ resourceVersion: '1' }),
      delete: () => Promise.resolve(),
      list: () => Promise.resolve([...leases.values()]),
    };
    const hb = startHeartbeat({
      api,
      logger: { ...quiet, warn: (o: object) => warnings.push(o) },
      renewMs: 3_600_000,
      now: () => new Date(clock.wall),
      monotonic: () => clock.mono,
      initial: { pod: 'self', namespace: 'ns', revision: 'r1', ready: true, smtp: '10.0.0.1:2525' },
    });
    const advance = (ms: number): void => {
      clock.wall += ms;
      clock.mono += ms;
    };
    return { clock, write, hb, advance, warnings };
  };

  it('finds a relay whose node clock is 45 s behind as a drain peer, just renewed and for as long as it renews', async () => {
    const { clock, write, hb, advance, warnings } = setup();
    write('behind', clock.wall - 45_000, '10.0.0.2:2525');
    write('normal', clock.wall, '10.0.0.3:2525');
    expect((await hb.peers()).map((p) => p.name)).toEqual([
      'mailroute-relay-behind',
      'mailroute-relay-normal',
    ]);
    expect(await hb.relayAddresses()).toEqual(['10.0.0.2', '10.0.0.3']);
    for (let i = 0; i < 6; i++) {
      advance(10_000);
      write('behind', clock.wall - 45_000, '10.0.0.2:2525');
      write('normal', clock.wall, '10.0.0.3:2525');
      expect(await hb.relayAddresses()).toEqual(['10.0.0.2', '10.0.0.3']);
    }
    // the skew is reported once, naming the Lease
    expect(warnings).toEqual([{ lease: 'mailroute-relay-behind', skewSeconds: -35 }]);
    await hb.stop();
  });

  it('drops a relay whose clock ran a day ahead within the lease duration after its last renewal was seen', async () => {
    const { clock, write, hb, advance, warnings } = setup();
    // first sight of a renewTime a day ahead: not trusted until it is seen to change
    write('ahead', clock.wall + 86_400_000, '10.0.0.4:2525');
    expect(await hb.peers()).toEqual([]);
    expect(warnings).toEqual([{ lease: 'mailroute-relay-ahead', skewSeconds: 86_400 }]);
    advance(10_000);
    write('ahead', clock.wall + 86_400_000, '10.0.0.4:2525'); // alive: renewed
    expect(await hb.relayAddresses()).toEqual(['10.0.0.4']);
    // killed: its Lease stays, renewTime a day in our future
    advance(30_000);
    expect(await hb.relayAddresses()).toEqual(['10.0.0.4']);
    advance(1);
    expect(await hb.relayAddresses()).toEqual([]);
    expect(await hb.peers()).toEqual([]);
    await hb.stop();
  });

  it('with one clock: fresh while renewed, stale 30 s after the last renewal was seen, and not a wall-clock step', async () => {
    const { clock, write, hb, advance } = setup();
    write('a', clock.wall, '10.0.0.5:2525');
    expect(await hb.relayAddresses()).toEqual(['10.0.0.5']);
    advance(20_000);
    write('a', clock.wall, '10.0.0.5:2525');
    clock.wall += 3_600_000; // this node's wall clock steps an hour ahead: the Lease was still just renewed
    expect(await hb.relayAddresses()).toEqual(['10.0.0.5']);
    clock.mono += 30_000;
    expect(await hb.relayAddresses()).toEqual(['10.0.0.5']);
    clock.mono += 1;
    expect(await hb.relayAddresses()).toEqual([]);
    // a Lease abandoned long ago is not trusted at first sight (its address may belong to another pod now)
    write('old', clock.wall - 3_600_000, '10.0.0.6:2525');
    expect(await hb.relayAddresses()).toEqual([]);
    await hb.stop();
  });
});

describe('handoffPlan', () => {
  const server = {
    name: 's',
    host: '127.0.0.1',
    port: 25,
    mx: false,
    tls: 'None' as const,
    maxConnections: 1,
  };
  const leg = (recipient: string, role: 'primary' | 'copy'): Leg =>
    role === 'primary'
      ? { server, recipient, role, bounces: 'Notify' }
      : { server, recipient, role, bounces: 'Suppress' };
  const st = (legs: Array<[string, LegState['state'], boolean?]>): SpoolState => ({
    version: 1,
    id: 'x',
    size: 1,
    meta: {
      mailFrom: 'a@b',
      clientAddress: '',
      clientHostname: '',
      helo: '',
      receivedAt: NOW.toISOString(),
      revision: 'r',
      smtputf8: false,
      body8bit: false,
    },
    legs: legs.map(([r, state, dsn]) => ({
      recipient: r,
      leg: leg(r, 'primary'),
      state,
      attempts: 0,
      ...(dsn ? { dsnPending: true } : {}),
    })),
  });
  it.each([
    [
      'all open',
      [
        ['a@x', 'pending'],
        ['b@x', 'deferred'],
      ],
      {
        kind: 'handoff',
        recipients: ['a@x', 'b@x'],
        roles: new Map([
          ['a@x', ['primary']],
          ['b@x', ['primary']],
        ]),
        partial: [],
        keepAfter: false,
      },
    ],
    [
      'partly done',
      [
        ['a@x', 'delivered'],
        ['a@x', 'deferred'],
        ['b@x', 'delivered'],
      ],
      {
        kind: 'handoff',
        recipients: ['a@x'],
        roles: new Map([['a@x', ['primary']]]),
        partial: ['a@x'],
        keepAfter: false,
      },
    ],
    [
      'dsn owed',
      [
        ['a@x', 'failed', true],
        ['b@x', 'pending'],
      ],
      {
        kind: 'handoff',
        recipients: ['b@x'],
        roles: new Map([['b@x', ['primary']]]),
        partial: [],
        keepAfter: true,
      },
    ],
    [
      'nothing open',
      [
        ['a@x', 'delivered'],
        ['b@x', 'suppressed'],
      ],
      { kind: 'nothing', reason: 'no open legs' },
    ],
  ] as const)('%s', (_n, legs, want) => {
    expect(handoffPlan(st(legs.map((l) => [...l] as [string, LegState['state'], boolean?])))).toEqual(want);
  });
  it('marks only the open legs of handed-off recipients', () => {
    const s = markHandedOff(
      st([
        ['a@x', 'deferred'],
        ['a@x', 'delivered'],
        ['b@x', 'pending'],
      ]),
      new Set(['a@x']),
      'p:1',
      '250 ok',
      NOW,
    );
    expect(s.legs.map((l) => l.state)).toEqual(['delivered', 'delivered', 'pending']);
    expect(s.legs[0]?.lastReply).toBe('handed off to relay p:1: 250 ok');
  });
});

describe('drainQueue with a real spool and real SMTP peers', () => {
  let dir: string;
  let spool: Spool;
  let peerA: SmtpPeer;
  let peerB: SmtpPeer;
  const logger = pino({ level: 'silent' });
  const server = {
    name: 'dest',
    host: '127.0.0.1',
    port: 9,
    mx: false,
    tls: 'None' as const,
    maxConnections: 1,
  };
  const meta = (rcpts: string[], from = 'alice@sender.example'): EnvelopeMeta => ({
    mailFrom: from,
    recipients: rcpts.map((r) => ({
      recipient: r,
      legs: [
        { server, recipient: r, role: 'primary', bounces: 'Notify' },
        { server, recipient: r.replace('@', '@copy.'), role: 'copy', bounces: 'Suppress' },
      ],
    })),
    clientAddress: '127.0.0.1',
    clientHostname: 'localhost',
    helo: 'c',
    receivedAt: NOW.toISOString(),
    revision: 'r1',
    smtputf8: false,
    body8bit: false,
  });
  const BODY = 'Subject: drain me\r\nFrom: a@b\r\n\r\nline\r\n.dot\r\n';

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mailroute-drain-'));
    spool = await openSpool({ dir, logger });
    peerA = await startSmtpPeer('a');
    peerB = await startSmtpPeer('b');
  });
  afterEach(async () => {
    await peerA.close();
    await peerB.close();
    await rm(dir, { recursive: true, force: true });
  });

  const transport = handoffTransportFactory({
    hostname: 'draining.test',
    timeouts: { connectionMs: 2000, greetingMs: 2000, socketMs: 5000 },
  });
  /** drainQueue of this suite's spool to `peers`, through the handoff transport. */
  const drain = (peers: Peer[], deadlineMs = 10_000, work?: WorkInFlight) =>
    drainQueue({
      spool,
      peers: () => Promise.resolve(peers),
      transport,
      relayName: 'draining.test',
      logger: quiet,
      deadlineMs,
      ...(work !== undefined ? { work } : {}),
    });

  /** The delivery engine's work in flight as the drain sees it: `done(id)` is its result recorded. */
  const engineWork = (
    busy: string[],
  ): { work: WorkInFlight; done: (id: string) => void; waited: () => boolean } => {
    const inFlight = new Set(busy);
    let wake: (() => void) | undefined;
    return {
      work: {
        inFlight: () => inFlight,
        progress: () => new Promise<void>((r) => (wake = r)),
      },
      done(id) {
        inFlight.delete(id);
        wake?.();
      },
      waited: () => wake !== undefined,
    };
  };
  const accept = async (rcpts: string[]): Promise<string> => {
    const r = await spool.accept(meta(rcpts), Readable.from([BODY]));
    if (!r.ok) throw r.error;
    return r.id;
  };

  it('hands every message to peers byte for byte, with the original sender, and empties the spool', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) {
      const r = await spool.accept(
        meta([`u${i}@example.com`, `v${i}@example.com`], i === 0 ? '' : 'alice@sender.example'),
        Readable.from([BODY]),
      );
      if (!r.ok) throw r.error;
      ids.push(r.id);
    }
    const report = await drain([
      { name: 'a', host: '127.0.0.1', port: peerA.port },
      { name: 'b', host: '127.0.0.1', port: peerB.port },
    ]);
    expect(report).toMatchObject({ messages: 6, handedOff: 6, left: 0 });
    expect(await spool.list()).toEqual([]);
    const all = [...peerA.messages, ...peerB.messages];
    expect(all).toHaveLength(6);
    expect(peerA.messages.length).toBeGreaterThan(0);
    expect(peerB.messages.length).toBeGreaterThan(0);
    expect(all.every((m) => m.raw.toString() === BODY)).toBe(true);
    expect(all.filter((m) => m.mailFrom === '')).toHaveLength(1);
    expect(all.flatMap((m) => m.rcptTo).sort()).toEqual(
      Array.from({ length: 6 }, (_, i) => [`u${i}@example.com`, `v${i}@example.com`])
        .flat()
        .sort(),
    );
  });

  it('a large body a power cut damaged (found at start: mode 0700, size and footer kept, a range of zeros) is quarantined, never handed to a peer; the intact message is', async () => {
    const big = Buffer.from(
      'Subject: big\r\n\r\n' +
        Array.from({ length: 6000 }, (_, i) => `line ${i} of a large body\r\n`).join(''),
    );
    expect(big.length).toBeGreaterThan(128 * 1024); // its own file, written in batches, then fsynced
    const damaged = await spool.accept(meta(['big@example.com']), Readable.from([big]));
    if (!damaged.ok) throw damaged.error;
    const intact = await accept(['small@example.com']);
    await spool.close();
    const path = join(dir, 'queue', `${damaged.id}.msg`);
    const fh = await open(path, 'r+');
    await fh.write(Buffer.alloc(40_000), 0, 40_000, 20_000);
    await fh.close();
    await chmod(path, 0o700);
    spool = await openSpool({ dir, logger });

    const report = await drain([{ name: 'a', host: '127.0.0.1', port: peerA.port }]);
    expect(report).toMatchObject({ messages: 2, handedOff: 1, left: 1 });
    expect(peerA.messages.flatMap((m) => m.rcptTo)).toEqual(['small@example.com']);
    expect(await spool.list()).toEqual([]);
    expect((await readdir(join(dir, 'quarantine'))).some((f) => f.startsWith(`${damaged.id}.msg`))).toBe(
      true,
    );
    expect(intact).not.toBe(damaged.id);
  });

  it('hands only recipients with open legs; keeps what no peer took; fails over between peers', async () => {
    const r = await spool.accept(
      meta(['done@example.com', 'open@example.com', 'refused@example.com']),
      Readable.from([BODY]),
    );
    if (!r.ok) throw r.error;
    await spool.update(r.id, (s) => ({
      ...s,
      legs: s.legs.map((l) => (l.recipient === 'done@example.com' ? { ...l, state: 'delivered' } : l)),
    }));
    peerB.behaviour.rcpt = (a) =>
      a === 'refused@example.com' ? { code: 554, message: '5.7.1 relay access denied' } : undefined;
    await peerA.down();
    const report = await drain([
      { name: 'a', host: '127.0.0.1', port: peerA.port },
      { name: 'b', host: '127.0.0.1', port: peerB.port },
    ]);
    expect(report).toMatchObject({ messages: 1, handedOff: 0, left: 1 });
    expect(peerB.messages.map((m) => m.rcptTo)).toEqual([['open@example.com']]);
    const left = await spool.load(r.id);
    if (!left.ok) throw new Error('message should stay');
    const byRcpt = (rc: string) => left.state.legs.filter((l) => l.recipient === rc).map((l) => l.state);
    expect(byRcpt('open@example.com')).toEqual(['delivered', 'delivered']);
    expect(byRcpt('refused@example.com')).toEqual(['pending', 'pending']);
  });

  it('hands a message with a transaction in flight over only once its result is recorded, with its open legs only', async () => {
    await accept(['settled@example.com']);
    const busy = await accept(['busy@example.com']);
    const e = engineWork([busy]);
    const report = drain([{ name: 'a', host: '127.0.0.1', port: peerA.port }], 10_000, e.work);
    // the settled message goes at once; the other one waits for its transaction
    await waitFor(() => peerA.messages.length === 1 && e.waited(), {
      what: 'the settled message handed over',
    });
    expect(peerA.messages[0]?.rcptTo).toEqual(['settled@example.com']);
    // the engine records the result: the primary delivered, the copy deferred
    await spool.update(busy, (st) => ({
      ...st,
      legs: st.legs.map((l) => (l.leg.role === 'primary' ? { ...l, state: 'delivered' } : l)),
    }));
    e.done(busy);
    expect(await report).toMatchObject({ messages: 2, handedOff: 2, left: 0, waitedFor: 1, inFlight: 0 });
    expect(peerA.messages.map((m) => m.rcptTo)).toEqual([['settled@example.com'], ['busy@example.com']]);
    expect(peerA.rcpts.map((r) => r.address)).toEqual(['settled@example.com', 'busy@example.com']);
    expect(await spool.list()).toEqual([]);
  });

  it('a message whose transaction completes it here is not handed over, and no peer is looked up', async () => {
    const id = await accept(['done@example.com']);
    const e = engineWork([id]);
    let asked = 0;
    const report = drainQueue({
      spool,
      peers: () => {
        asked++;
        return Promise.resolve([{ name: 'a', host: '127.0.0.1', port: peerA.port }]);
      },
      transport,
      relayName: 'draining.test',
      logger: quiet,
      deadlineMs: 10_000,
      work: e.work,
    });
    await waitFor(() => e.waited(), { what: 'the drain waiting for the transaction' });
    await spool.remove(id); // delivered on both legs: the engine removed it
    e.done(id);
    expect(await report).toMatchObject({ messages: 1, handedOff: 0, left: 0, waitedFor: 1 });
    expect(asked).toBe(0);
    expect(peerA.messages).toHaveLength(0);
  });

  it('a message still in flight at the deadline stays in the spool and is not handed over', async () => {
    await accept(['settled@example.com']);
    const busy = await accept(['busy@example.com']);
    const e = engineWork([busy]);
    const report = await drain([{ name: 'a', host: '127.0.0.1', port: peerA.port }], 300, e.work);
    expect(report).toMatchObject({ messages: 2, handedOff: 1, left: 1, waitedFor: 1, inFlight: 1 });
    expect(peerA.messages.map((m) => m.rcptTo)).toEqual([['settled@example.com']]);
    expect(await spool.list()).toEqual([busy]);
  });

  it('a peer lookup that never answers ends at the deadline: the queue stays in the spool', async () => {
    const id = await accept(['x@example.com']);
    const report = await withDeadline(
      5_000,
      drainQueue({
        spool,
        peers: () => new Promise<Peer[]>(() => undefined),
        transport,
        relayName: 'draining.test',
        logger: quiet,
        deadlineMs: 300,
      }),
      'the drain',
    );
    expect(report).toMatchObject({ messages: 1, handedOff: 0, left: 1, peers: [] });
    expect(await spool.list()).toEqual([id]);
  });

  it('leaves the queue alone when there is no peer', async () => {
    const r = await spool.accept(meta(['x@example.com']), Readable.from([BODY]));
    if (!r.ok) throw r.error;
    const report = await drain([], 1000);
    expect(report).toMatchObject({ messages: 1, handedOff: 0, left: 1 });
    expect(await spool.list()).toEqual([r.id]);
  });
});

describe('startClusterMode', () => {
  /**
   * An SMTP peer, a spool in a temp folder holding one message (for x@example.com) and the settings of pod r-0 that
   * drain to that peer (--peers) within drainTimeoutMs: `test` runs with them, then the peer and the folder go.
   */
  async function withQueuedMessage(
    drainTimeoutMs: number,
    test: (o: { peer: SmtpPeer; spool: Spool; settings: ClusterSettings }) => Promise<void>,
  ): Promise<void> {
    const peer = await startSmtpPeer('peer');
    const dir = await mkdtemp(join(tmpdir(), 'mailroute-cm-'));
    try {
      const spool = await openSpool({ dir, logger: pino({ level: 'silent' }) });
      const server = {
        name: 'd',
        host: '127.0.0.1',
        port: 9,
        mx: false,
        tls: 'None' as const,
        maxConnections: 1,
      };
      const r = await spool.accept(
        {
          mailFrom: 'a@b.example',
          recipients: [
            {
              recipient: 'x@example.com',
              legs: [{ server, recipient: 'x@example.com', role: 'primary', bounces: 'Notify' }],
            },
          ],
          clientAddress: '127.0.0.1',
          clientHostname: 'l',
          helo: 'h',
          receivedAt: NOW.toISOString(),
          revision: 'r1',
          smtputf8: false,
          body8bit: false,
        },
        Readable.from(['Subject: x\r\n\r\nbody\r\n']),
      );
      if (!r.ok) throw r.error;
      const settings = clusterSettings(
        {
          sourceKind: 'configmap',
          peers: `127.0.0.1:${peer.port}`,
          drainOnShutdown: 'auto',
          drainTimeoutMs,
        },
        { POD_NAME: 'r-0', POD_NAMESPACE: 'ms', POD_IP: '127.0.0.1' },
        { host: '0.0.0.0', port: 1 },
      );
      if (typeof settings === 'string') throw new Error(settings);
      await test({ peer, spool, settings });
    } finally {
      await peer.close();
      await rm(dir, { recursive: true, force: true });
    }
  }

  it('advertises the revision, stays not-ready once shutdown began, drains to --peers, deletes the Lease', async () => {
    const writes: LeaseBody[] = [];
    let deleted = false;
    const api: LeaseApi = {
      read: () => Promise.resolve(writes.length ? { resourceVersion: String(writes.length) } : undefined),
      create: (_ns, body) => {
        writes.push(body);
        return Promise.resolve({ resourceVersion: String(writes.length) });
      },
      replace: (_ns, _n, body) => {
        writes.push(body);
        return Promise.resolve({ resourceVersion: String(writes.length) });
      },
      delete: () => {
        deleted = true;
        return Promise.resolve();
      },
      list: () => Promise.resolve([]),
    };
    await withQueuedMessage(10_000, async ({ peer, spool, settings }) => {
      const cm = startClusterMode({
        settings,
        logger: quiet,
        hostname: 'r-0.test',
        revision: undefined,
        leases: api,
      });
      await cm.heartbeat?.update({});
      expect(writes.at(-1)?.metadata.annotations).toEqual({
        'mailroute.io/ready': 'false',
        'mailroute.io/smtp': '127.0.0.1:1',
      });
      cm.setRevision('rev1');
      await cm.heartbeat?.update({});
      expect(writes.at(-1)?.metadata.annotations).toMatchObject({
        'mailroute.io/ready': 'true',
        'mailroute.io/revision': 'rev1',
      });
      await cm.beginShutdown();
      cm.setRevision('rev2');
      await cm.heartbeat?.update({});
      expect(writes.at(-1)?.metadata.annotations).toMatchObject({
        'mailroute.io/ready': 'false',
        'mailroute.io/revision': 'rev2',
      });
      const report = await cm.drain(spool);
      expect(report).toMatchObject({ messages: 1, handedOff: 1, left: 0, peers: [`127.0.0.1:${peer.port}`] });
      expect(peer.for('x@example.com')).toHaveLength(1);
      expect(await spool.list()).toEqual([]);
      await cm.stop();
      expect(deleted).toBe(true);
    });
  });

  it('a Lease list that never answers: the drain goes on with --peers after the lookup bound', async () => {
    const api: LeaseApi = {
      read: () => Promise.resolve(undefined),
      create: () => Promise.resolve({ resourceVersion: '1' }),
      replace: () => Promise.resolve({ resourceVersion: '2' }),
      delete: () => Promise.resolve(),
      // the API server unreachable, its packets dropped: the list call never returns
      list: () => new Promise<never>(() => undefined),
    };
    await withQueuedMessage(60_000, async ({ peer, spool, settings }) => {
      const warnings: string[] = [];
      const cm = startClusterMode({
        settings,
        logger: { ...quiet, warn: (_o: object, msg?: string) => void warnings.push(msg ?? '') },
        hostname: 'r-0.test',
        revision: 'rev1',
        leases: api,
        peerLookupMs: 200,
      });
      await cm.beginShutdown();
      // before, the drain waited on the list call until the pod's grace period ran out
      const report = await withDeadline(5_000, cm.drain(spool), 'the drain');
      expect(cm.drains).toBe(true);
      expect(report).toMatchObject({ messages: 1, handedOff: 1, left: 0, peers: [`127.0.0.1:${peer.port}`] });
      expect(peer.for('x@example.com')).toHaveLength(1);
      expect(warnings).toContain('cluster: listing relay leases failed; draining to --peers only');
      await cm.stop();
    });
  });
});
