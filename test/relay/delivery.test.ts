// The delivery engine against real SMTP destinations (the scriptable smtp-server peer and Postfix smtp-sink), with a
// real spool in a temp dir. Messages enter through spool.accept(), as the inbound side hands them over.
import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Leg, ServerRoute } from '../../routing/model.ts';
import { startDelivery, type DeliveryEngine, type DeliveryOptions } from '../../relay/delivery/engine.ts';
import { openSpool } from '../../relay/spool/spool.ts';
import type { EnvelopeMeta, Spool } from '../../relay/spool/types.ts';
import type { RelayMetrics } from '../../relay/telemetry/metrics.ts';
import { startSmtpPeer, type SmtpPeer } from '../support/smtp-peer.ts';
import { deliveryOptions, envelope, localServer } from '../support/delivery.ts';
import { routeSenderDomainTo, startPeerEngine } from '../support/peer-engine.ts';
import { waitFor } from '../support/wait.ts';

const logger = pino({ level: process.env.TEST_LOG ?? 'silent' });

const server = (name: string, port: number, maxConnections = 2): ServerRoute =>
  localServer(name, port, maxConnections);

const MESSAGE =
  'Received: from client.example by relay.test; Sat, 28 Nov 2026 10:00:00 +0000\r\n' +
  'From: Alice <alice@sender.example>\r\nTo: bob@example.com\r\nSubject: dual\r\nMessage-ID: <m1@sender.example>\r\n' +
  'DKIM-Signature: v=1; a=rsa-sha256; d=sender.example;\r\n b=abc\r\n\r\nHello Bob.\r\n.leading dot\r\n\r\nbye\r\n';

interface Harness {
  dir: string;
  spool: Spool;
  engine: DeliveryEngine;
  metrics: RelayMetrics;
  primary: SmtpPeer;
  copy: SmtpPeer;
  senderBox: SmtpPeer;
  legs(rcpt: string): Leg[];
  accept(rcpts?: string[], mailFrom?: string, body?: string): Promise<string>;
  restart(overrides?: Partial<DeliveryOptions>): Promise<void>;
  queueFiles(): Promise<string[]>;
  counter(result: string, leg?: string): Promise<number>;
}

let h: Harness;
const cleanups: (() => Promise<void>)[] = [];

async function harness(
  overrides: Partial<DeliveryOptions> = {},
  copyBounces: Leg['bounces'] = 'Suppress',
): Promise<Harness> {
  const dir = await mkdtemp(join(tmpdir(), 'mailroute-delivery-'));
  const primary = await startSmtpPeer('legacy');
  const copy = await startSmtpPeer('zoho');
  const senderBox = await startSmtpPeer('senderbox');
  const legs = (rcpt: string): Leg[] => [
    { server: server('legacy', primary.port), recipient: rcpt, role: 'primary', bounces: 'Notify' },
    {
      server: server('zoho', copy.port),
      recipient: rcpt.replace('@', '@copy.'),
      role: 'copy',
      bounces: copyBounces,
    },
  ];
  // DSNs are routed like any mail: the sender's domain is managed here and goes to senderBox.
  const route = routeSenderDomainTo(server('senderbox', senderBox.port));

  const state = {} as Harness;
  const start = async (o: Partial<DeliveryOptions>): Promise<void> => {
    state.spool = await openSpool({ dir, logger });
    ({ engine: state.engine, metrics: state.metrics } = await startPeerEngine(state.spool, {
      logger,
      retryScheduleMs: [50],
      route,
      ...overrides,
      ...o,
    }));
  };
  await start({});
  Object.assign(state, {
    dir,
    primary,
    copy,
    senderBox,
    legs,
    async accept(rcpts = ['bob@example.com'], mailFrom = 'alice@sender.example', body = MESSAGE) {
      const meta = envelope(
        rcpts.map((r) => ({ recipient: r, legs: legs(r) })),
        { mailFrom },
      );
      const r = await state.spool.accept(meta, Readable.from([Buffer.from(body)]));
      if (!r.ok) throw r.error;
      state.engine.notify(r.id);
      return r.id;
    },
    async restart(o: Partial<DeliveryOptions> = {}) {
      await state.engine.stop();
      await start(o);
    },
    async queueFiles() {
      return (await readdir(join(dir, 'queue'))).sort();
    },
    async counter(result: string, leg?: string) {
      const m = await state.metrics.deliveries.get();
      return m.values
        .filter((v) => v.labels.result === result && (leg === undefined || v.labels.leg === leg))
        .reduce((a, v) => a + v.value, 0);
    },
  } satisfies Partial<Harness>);
  cleanups.push(async () => {
    await state.engine.stop();
    await Promise.all([primary.close(), copy.close(), senderBox.close()]);
    await rm(dir, { recursive: true, force: true });
  });
  return state;
}

beforeEach(() => {
  cleanups.length = 0;
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const drained = async (hh: Harness): Promise<void> => {
  await waitFor(async () => (await hh.queueFiles()).length === 0 && hh.engine.stats().messages === 0, {
    what: 'the spool to drain',
  });
};

describe('delivery engine', () => {
  it('delivers both legs of a dual message byte for byte and removes it from the spool', async () => {
    h = await harness();
    const id = await h.accept();
    await waitFor(
      () => h.primary.for('bob@example.com').length === 1 && h.copy.for('bob@copy.example.com').length === 1,
      {
        what: 'both legs',
      },
    );
    const [p] = h.primary.messages;
    const [c] = h.copy.messages;
    expect(p?.raw.toString()).toBe(MESSAGE);
    expect(c?.raw.toString()).toBe(MESSAGE);
    expect(p?.mailFrom).toBe('alice@sender.example');
    // the copy's bounces are suppressed: the null reverse-path, so the secondary cannot bounce it to alice either
    expect(c?.mailFrom).toBe('');
    await drained(h);
    expect(await h.counter('delivered', 'primary')).toBe(1);
    expect(await h.counter('delivered', 'copy')).toBe(1);
    expect(id).toMatch(/^[0-9a-z]{16}$/);
  });

  it('records the results of legs that finish together in one step: the message is removed without a rewrite', async () => {
    h = await harness();
    await h.engine.stop();
    const inner = h.spool;
    let writes = 0;
    let removals = 0;
    const counting: Spool = {
      ...inner,
      accept: (m, b) => inner.accept(m, b),
      update: (id, change) =>
        inner.update(id, (st) => {
          const next = change(st);
          if (next === null) removals++;
          else writes++;
          return next;
        }),
    };
    const engine = startDelivery(
      deliveryOptions(counting, {
        logger,
        retryScheduleMs: [50],
        maxQueueLifetimeMs: 60_000,
        resultCoalesceMs: 5000,
      }),
    );
    cleanups.push(() => engine.stop());
    for (let i = 0; i < 5; i++) {
      const r = await inner.accept(
        envelope([{ recipient: `u${i}@example.com`, legs: h.legs(`u${i}@example.com`) }]),
        Readable.from([MESSAGE]),
      );
      if (!r.ok) throw r.error;
      engine.notify(r.id);
    }
    await waitFor(async () => (await h.queueFiles()).length === 0 && engine.stats().messages === 0, {
      what: 'drain',
    });
    expect(h.primary.messages.length).toBe(5);
    expect(h.copy.messages.length).toBe(5);
    expect(removals).toBe(5);
    expect(writes).toBe(0);
  });

  it('groups the recipients of one message for the same server and role into one transaction', async () => {
    h = await harness();
    await h.accept(['bob@example.com', 'carol@example.com', 'dave@example.com']);
    await waitFor(() => h.primary.messages.length >= 1 && h.copy.messages.length >= 1);
    await drained(h);
    expect(h.primary.messages.length).toBe(1);
    expect(h.primary.messages[0]?.rcptTo.sort()).toEqual([
      'bob@example.com',
      'carol@example.com',
      'dave@example.com',
    ]);
    expect(h.copy.messages.length).toBe(1);
    expect(h.copy.messages[0]?.rcptTo.length).toBe(3);
  });

  it('a 5xx on a copy leg with bounces Suppress gives no DSN and counts suppressed', async () => {
    h = await harness();
    h.copy.behaviour.rcpt = () => ({ code: 550, message: '5.1.1 no such mailbox' });
    await h.accept();
    await waitFor(() => h.primary.messages.length === 1);
    await drained(h);
    expect(await h.counter('suppressed', 'copy')).toBe(1);
    expect(await h.counter('delivered', 'primary')).toBe(1);
    expect(h.senderBox.messages.length).toBe(0);
    const dsn = await h.metrics.dsnSent.get();
    expect(dsn.values.reduce((a, v) => a + v.value, 0)).toBe(0);
  });

  it('a 5xx on the primary leg sends an RFC 3464 DSN to the sender, routed like any message', async () => {
    h = await harness();
    h.primary.behaviour.rcpt = (a) =>
      a === 'carol@example.com' ? { code: 550, message: '5.1.1 no such user here' } : undefined;
    await h.accept(['bob@example.com', 'carol@example.com']);
    const dsn = await waitFor(() => h.senderBox.for('alice@sender.example')[0], { what: 'the DSN' });
    expect(dsn.mailFrom).toBe('');
    const raw = dsn.raw.toString();
    const head = raw.slice(0, raw.indexOf('\r\n\r\n'));
    expect(head).toMatch(/^From: Mail Delivery System <MAILER-DAEMON@relay\.test>$/m);
    expect(head).toMatch(/^Auto-Submitted: auto-replied$/m);
    expect(head).toMatch(/Content-Type: multipart\/report; report-type=delivery-status;/);
    const statusStart = raw.indexOf('Content-Type: message/delivery-status');
    const status = raw.slice(statusStart, raw.indexOf('Content-Type: text/rfc822-headers', statusStart));
    expect(status).toContain('Final-Recipient: rfc822; carol@example.com\r\n');
    expect(status).toMatch(/^Status: 5\.1\.1\r$/m);
    expect(status).toMatch(/^Diagnostic-Code: smtp; 550 5\.1\.1 no such user here\r$/m);
    expect(status).not.toContain('bob@example.com');
    expect(raw).toContain('Content-Type: text/rfc822-headers');
    expect(raw).toContain('Message-ID: <m1@sender.example>');
    expect(raw).not.toContain('Hello Bob.');
    // bob was delivered on both legs, carol's copy too; the message and the DSN both leave the spool
    await drained(h);
    expect(h.primary.for('bob@example.com').length).toBe(1);
    expect(await h.counter('failed', 'primary')).toBe(1);
    expect(h.senderBox.messages.length).toBe(1);
  });

  it('DSNs are rate-limited per recipient domain: over the limit they are deferred, not dropped (backscatter)', async () => {
    h = await harness({ dsnRate: { perMinute: 1, burst: 2 } });
    h.primary.behaviour.rcpt = () => ({ code: 550, message: '5.1.1 no such user here' });
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) ids.push(await h.accept([`nobody${i}@example.com`]));
    await waitFor(async () => (await h.counter('failed', 'primary')) === 4, { what: '4 primary 550s' });
    await waitFor(() => h.senderBox.messages.length === 2, { what: 'the first two DSNs' });
    const deferred = async (): Promise<number> =>
      (await h.metrics.dsnSent.get()).values.find((v) => v.labels.kind === 'deferred')?.value ?? 0;
    await waitFor(async () => (await deferred()) >= 2, { what: 'two DSNs deferred' });
    expect(h.senderBox.messages.length).toBe(2);
    // the two messages still owe their DSN: they stay queued (nothing is lost)
    const left = (await h.spool.list()).filter((id) => ids.includes(id));
    expect(left).toHaveLength(2);
  });

  it('never sends a DSN for a null sender', async () => {
    h = await harness();
    h.primary.behaviour.rcpt = () => ({ code: 550, message: '5.1.1 unknown' });
    await h.accept(['bob@example.com'], '');
    await waitFor(async () => (await h.counter('failed', 'primary')) === 1);
    await drained(h);
    expect(h.senderBox.messages.length).toBe(0);
  });

  it('a copy leg with bounces Notify keeps the sender as its reverse path (a later failure may reach the sender)', async () => {
    h = await harness({}, 'Notify');
    await h.accept();
    const c = await waitFor(() => h.copy.for('bob@copy.example.com')[0], { what: 'the copy' });
    expect(c.mailFrom).toBe('alice@sender.example');
    await drained(h);
  });

  it('a copy leg with bounces Notify does produce a DSN', async () => {
    h = await harness({}, 'Notify');
    h.copy.behaviour.data = () => ({ code: 554, message: '5.6.0 content rejected' });
    await h.accept();
    const dsn = await waitFor(() => h.senderBox.messages[0], { what: 'the DSN' });
    expect(dsn.raw.toString()).toContain('Final-Recipient: rfc822; bob@copy.example.com');
    expect(dsn.raw.toString()).toContain('Original-Recipient: rfc822; bob@example.com');
    await drained(h);
  });

  it('--delay-warning: one delay DSN (Action: delayed, 4.x.x) per notifying leg, none for a suppressed copy', async () => {
    h = await harness({ delayWarningMs: 150, retryScheduleMs: [60] });
    let busy = true;
    h.primary.behaviour.rcpt = () => (busy ? { code: 450, message: '4.2.0 mailbox busy' } : undefined);
    h.copy.behaviour.rcpt = () => ({ code: 451, message: '4.3.0 try later' }); // copy: bounces Suppress
    await h.accept();
    const dsn = await waitFor(() => h.senderBox.for('alice@sender.example')[0], { what: 'the delay DSN' });
    expect(dsn.mailFrom).toBe('');
    const raw = dsn.raw.toString();
    expect(raw).toMatch(/^Subject: Delayed Mail \(still being retried\)\r$/m);
    const status = raw.slice(raw.indexOf('Content-Type: message/delivery-status'));
    expect(status).toContain(
      'Final-Recipient: rfc822; bob@example.com\r\nAction: delayed\r\nStatus: 4.2.0\r\n',
    );
    expect(status).toMatch(/^Will-Retry-Until: /m);
    expect(status).not.toContain('copy.example.com');
    // more deferrals after it: still that one notice
    const deferred = await h.counter('deferred', 'primary');
    await waitFor(async () => (await h.counter('deferred', 'primary')) >= deferred + 3, {
      what: 'more retries',
    });
    expect(h.senderBox.messages.length).toBe(1);
    const kinds = (await h.metrics.dsnSent.get()).values.map((v) => [v.labels.kind, v.value]);
    expect(kinds).toEqual([['delayed', 1]]);
    busy = false;
    h.copy.behaviour.rcpt = undefined;
    await drained(h);
    expect(h.primary.for('bob@example.com').length).toBe(1);
    expect(h.senderBox.messages.length).toBe(1);
  });

  it('a delay DSN held back by its rate limit does not hold back the message: the backlog goes when the server is back', async () => {
    // one DSN a minute for the domain: the first message's delay notice takes it, the others' wait for a token
    h = await harness({ delayWarningMs: 150, retryScheduleMs: [60], dsnRate: { perMinute: 1, burst: 1 } });
    let busy = true;
    h.primary.behaviour.rcpt = () => (busy ? { code: 450, message: '4.2.0 mailbox busy' } : undefined);
    const ids: string[] = [];
    for (const r of ['bob@example.com', 'carol@example.com', 'dave@example.com'])
      ids.push(await h.accept([r]));
    await waitFor(() => h.senderBox.for('alice@sender.example').length === 1, {
      what: 'the first delay DSN',
    });
    const deferred = async (): Promise<number> =>
      (await h.metrics.dsnSent.get()).values.find((v) => v.labels.kind === 'deferred')?.value ?? 0;
    await waitFor(async () => (await deferred()) >= 2, { what: 'the other two delay DSNs put off' });
    busy = false;
    // every message reaches its server at its next retry (60 ms), not when a DSN token comes (a minute)
    await waitFor(
      () => ['bob', 'carol', 'dave'].every((u) => h.primary.for(`${u}@example.com`).length === 1),
      {
        what: 'all three delivered to the primary',
        timeoutMs: 5000,
      },
    );
    await drained(h);
    // a notice owed for a leg that was delivered meanwhile is moot: no late "delayed" DSN after the delivery
    expect(h.senderBox.messages.length).toBe(1);
  });

  it('--delay-warning 0 (or a leg delivered before it) sends no delay DSN', async () => {
    h = await harness({ delayWarningMs: 0, retryScheduleMs: [40] });
    let refusals = 0;
    h.primary.behaviour.rcpt = () => (refusals++ < 4 ? { code: 450, message: '4.2.0 busy' } : undefined);
    await h.accept();
    await drained(h);
    expect(refusals).toBe(5);
    expect(h.senderBox.messages.length).toBe(0);
  });

  it('retries a 4xx on the schedule and delivers when the server recovers', async () => {
    h = await harness();
    let refusals = 0;
    h.primary.behaviour.rcpt = () =>
      refusals++ < 2 ? { code: 450, message: '4.2.0 mailbox busy' } : undefined;
    const id = await h.accept();
    await waitFor(() => h.primary.messages.length === 1, { what: 'delivery after retries' });
    expect(refusals).toBe(3);
    expect(await h.counter('deferred', 'primary')).toBe(2);
    await drained(h);
    expect(h.copy.messages.length).toBe(1);
    expect(id).toBeTruthy();
  });

  it('a down secondary never delays the primary; the copy follows when it is back', async () => {
    h = await harness({ retryScheduleMs: [100] });
    await h.copy.down();
    const ids = [await h.accept(['bob@example.com']), await h.accept(['carol@example.com'])];
    await waitFor(() => h.primary.messages.length === 2, {
      what: 'primary legs while the copy server is down',
    });
    expect(h.copy.messages.length).toBe(0);
    await waitFor(
      async () =>
        (await h.counter('deferred', 'copy')) >= 2 && (await h.counter('delivered', 'primary')) === 2,
      {
        what: 'copies deferred, primaries recorded',
      },
    );
    for (const id of ids) {
      const s = await h.spool.load(id);
      expect(s.ok && s.state.legs.map((l) => `${l.leg.role} ${l.state}`)).toEqual([
        'primary delivered',
        'copy deferred',
      ]);
    }
    expect(h.engine.stats().messages).toBe(2);
    await h.copy.up();
    await waitFor(() => h.copy.messages.length === 2, { what: 'copies after the outage' });
    await drained(h);
    expect(h.primary.messages.length).toBe(2);
    expect(h.senderBox.messages.length).toBe(0);
  });

  it('after a destination fails to connect, its other transactions are deferred without new connections', async () => {
    // A server that accepts TCP and hangs up at once: every connection attempt is counted.
    let connections = 0;
    const hangup = createServer((sock) => {
      connections++;
      sock.destroy();
    });
    await new Promise<void>((resolve) => hangup.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise<void>((resolve) => hangup.close(() => resolve())));
    const port = (hangup.address() as { port: number }).port;
    h = await harness({ retryScheduleMs: [60_000] });
    const legs = (r: string): Leg[] => [
      { server: server('legacy', h.primary.port), recipient: r, role: 'primary', bounces: 'Notify' },
      { server: server('dead', port, 2), recipient: r, role: 'copy', bounces: 'Suppress' },
    ];
    for (let i = 0; i < 10; i++) {
      const r = await h.spool.accept(
        envelope([{ recipient: `d${i}@example.com`, legs: legs(`d${i}@example.com`) }]),
        Readable.from([MESSAGE]),
      );
      if (!r.ok) throw r.error;
      h.engine.notify(r.id);
    }
    // the copies and the primaries finish independently: wait for both (the primaries may land after the copies)
    await waitFor(
      async () => (await h.counter('deferred', 'copy')) === 10 && h.primary.messages.length >= 10,
      { what: 'ten deferred copies and ten primaries delivered' },
    );
    expect(h.primary.messages.length).toBe(10);
    // at most one failed transaction per connection slot (the pool may retry a dropped connection once)
    expect(connections).toBeLessThanOrEqual(4);
    const ids = await h.spool.list();
    const replies = await Promise.all(
      ids.map(async (id) => {
        const st = await h.spool.load(id);
        return st.ok ? (st.state.legs[1]?.lastReply ?? '') : '';
      }),
    );
    expect(
      replies.filter((r) => r.startsWith('delivery temporarily suspended')).length,
    ).toBeGreaterThanOrEqual(6);
  });

  it('a slow secondary does not hold back the primary', async () => {
    h = await harness();
    h.copy.behaviour.dataDelayMs = 3000;
    for (let i = 0; i < 4; i++) await h.accept([`user${i}@example.com`]);
    await waitFor(() => h.primary.messages.length === 4, { what: 'primary legs' });
    expect(h.copy.messages.length).toBe(0);
    h.copy.behaviour.dataDelayMs = 0;
    await drained(h);
  });

  it('stop() lets an attempt in flight finish and records it; past the deadline the leg stays queued', async () => {
    h = await harness({ stopTimeoutMs: 5000 });
    h.primary.behaviour.dataDelayMs = 600;
    await h.copy.down();
    const id = await h.accept();
    // In flight on the wire: the primary has the whole body and holds its reply (a job dispatched but not yet
    // connected is "stopped before anything was tried", and stays queued).
    await waitFor(() => h.primary.stats.bodies === 1 && h.primary.messages.length === 0, {
      what: 'an attempt in flight',
    });
    await h.engine.stop();
    expect(h.primary.messages.length).toBe(1);
    const s = await h.spool.load(id);
    expect(s.ok && s.state.legs[0]?.state).toBe('delivered');

    // A deadline shorter than the attempt: stop() returns, nothing is recorded, the next start tries again.
    await h.copy.up();
    await h.restart({ stopTimeoutMs: 100 });
    h.primary.behaviour.dataDelayMs = 1500;
    const id2 = await h.accept(['late@example.com']);
    // The copy went through, so the primary attempt (dispatched with it) is in flight, held 1.5 s by the server.
    await waitFor(() => h.copy.for('late@copy.example.com').length === 1, {
      what: 'the copy of the late message',
    });
    await h.engine.stop();
    const s2 = await h.spool.load(id2);
    expect(s2.ok && s2.state.legs[0]?.state).toBe('pending');
    h.primary.behaviour.dataDelayMs = 0;
    await h.restart();
    await drained(h);
    // at-least-once: the late message may arrive twice (once from the abandoned attempt), never zero times
    expect(h.primary.for('late@example.com').length).toBeGreaterThanOrEqual(1);
    expect(h.copy.for('late@copy.example.com').length).toBeGreaterThanOrEqual(1);
  });

  it('expires a leg that stays deferred past max-queue-lifetime and bounces it with 4.4.7', async () => {
    h = await harness({ maxQueueLifetimeMs: 400, retryScheduleMs: [50] });
    h.primary.behaviour.rcpt = () => ({ code: 451, message: '4.3.0 try later' });
    await h.copy.down();
    await h.accept();
    const dsn = await waitFor(() => h.senderBox.messages[0], { what: 'the expiry DSN' });
    expect(dsn.raw.toString()).toMatch(/^Status: 4\.4\.7\r$/m);
    // delivery-status fields are folded as header fields are (at 78 octets): unfolded before matching
    expect(dsn.raw.toString().replace(/\r\n(?=[ \t])/g, '')).toMatch(
      /^Diagnostic-Code: x-mailroute; expired after \d+ attempts; last: 451 4\.3\.0 try later\r$/m,
    );
    await drained(h);
    expect(await h.counter('failed', 'primary')).toBe(1);
    expect(await h.counter('suppressed', 'copy')).toBe(1);
    expect(h.senderBox.messages.length).toBe(1);
  });

  it('recovers after a restart: pending legs are delivered, delivered legs are not delivered again', async () => {
    h = await harness({ retryScheduleMs: [60_000] });
    await h.copy.down();
    await h.accept();
    await waitFor(async () => (await h.counter('deferred', 'copy')) === 1 && h.primary.messages.length === 1);
    await h.engine.stop();
    // Messages accepted while no engine runs (a crash between 250 and delivery).
    const meta = (r: string): EnvelopeMeta => envelope([{ recipient: r, legs: h.legs(r) }]);
    const offline = await h.spool.accept(meta('erin@example.com'), Readable.from([MESSAGE]));
    expect(offline.ok).toBe(true);
    await h.copy.up();
    await h.restart({ retryScheduleMs: [50] });
    expect(h.spool.recovery.messages).toBe(2);
    // flush: the copy's retry is due in a minute per the state file written before the restart
    h.engine.flush();
    await drained(h);
    expect(h.primary.for('bob@example.com').length).toBe(1);
    expect(h.copy.for('bob@copy.example.com').length).toBe(1);
    expect(h.primary.for('erin@example.com').length).toBe(1);
    expect(h.copy.for('erin@copy.example.com').length).toBe(1);
    // sent from the message file after the restart: exactly the body, none of the state behind it
    expect(h.primary.for('erin@example.com')[0]?.raw.toString()).toBe(MESSAGE);
    expect(h.copy.for('bob@copy.example.com')[0]?.raw.toString()).toBe(MESSAGE);
  });

  it('streams a body too large to keep in memory from the message file, byte for byte, on both legs', async () => {
    h = await harness();
    const body = `Subject: large\r\n\r\n${`${'q'.repeat(998)}\r\n`.repeat(400)}`; // 400 KiB > 256 KiB
    const id = await h.accept(['bob@example.com'], 'alice@sender.example', body);
    expect(Buffer.isBuffer(h.spool.body(id, Buffer.byteLength(body)))).toBe(false);
    await waitFor(
      () => h.primary.for('bob@example.com').length === 1 && h.copy.for('bob@copy.example.com').length === 1,
      { what: 'both legs' },
    );
    expect(h.primary.messages[0]?.raw.equals(Buffer.from(body))).toBe(true);
    expect(h.copy.messages[0]?.raw.equals(Buffer.from(body))).toBe(true);
    await drained(h);
  });

  it('an unreadable state file found at start is quarantined; the message is delivered from its initial state', async () => {
    h = await harness();
    await h.engine.stop();
    const meta: EnvelopeMeta = envelope([{ recipient: 'bob@example.com', legs: h.legs('bob@example.com') }], {
      mailFrom: 'a@sender.example',
    });
    const good = await h.spool.accept(meta, Readable.from([MESSAGE]));
    const bad = await h.spool.accept(meta, Readable.from([MESSAGE]));
    if (!good.ok || !bad.ok) throw new Error('accept failed');
    await writeFile(join(h.dir, 'queue', `${bad.id}.json`), '{"version":1,"legs":[{"state":"pend');
    await h.restart();
    await drained(h);
    expect(h.primary.messages.length).toBe(2);
    expect(h.copy.messages.length).toBe(2);
    const q = await readdir(join(h.dir, 'quarantine'));
    expect(q.filter((n) => n.startsWith(bad.id))).toEqual([
      expect.stringMatching(new RegExp(`^${bad.id}\\.json\\.`)),
    ]);
  });

  it('with mx: true connects to the MX hosts by preference and moves on when one is unreachable', async () => {
    const looked: string[] = [];
    h = await harness({
      resolver: {
        resolveMx: (host) => {
          looked.push(host);
          return Promise.resolve([
            { exchange: '127.0.0.1', priority: 20 },
            { exchange: '127.0.0.2', priority: 10 },
          ]);
        },
        addresses: (host) => Promise.resolve([host]),
      },
    });
    const mxLeg: Leg = {
      server: { ...server('mxdomain', h.primary.port), host: 'example.com', mx: true },
      recipient: 'mx@example.com',
      role: 'primary',
      bounces: 'Notify',
    };
    const r = await h.spool.accept(
      envelope([{ recipient: 'mx@example.com', legs: [mxLeg] }]),
      Readable.from([MESSAGE]),
    );
    if (!r.ok) throw r.error;
    h.engine.notify(r.id);
    await waitFor(() => h.primary.for('mx@example.com').length === 1, { what: 'delivery via the second MX' });
    await drained(h);
    expect(looked).toEqual(['example.com']);
    expect(await h.counter('deferred')).toBe(0);
  });

  it('delivers a burst to Postfix smtp-sink over pooled connections, with bounded dispatch', async () => {
    const sinkDir = await mkdtemp(join(tmpdir(), 'mailroute-sink-'));
    await chmod(sinkDir, 0o777);
    const port = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const a = s.address();
        s.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
      });
    });
    const args = [
      '-d',
      `${sinkDir}/%M.`,
      ...(process.getuid?.() === 0 ? ['-u', 'nobody'] : []),
      `127.0.0.1:${port}`,
      '64',
    ];
    const sink: ChildProcess = spawn('/usr/sbin/smtp-sink', args, { stdio: 'ignore' });
    cleanups.push(async () => {
      sink.kill('SIGTERM');
      await rm(sinkDir, { recursive: true, force: true });
    });
    h = await harness();
    await waitFor(
      () =>
        new Promise<boolean>((resolve) => {
          const c = createServer();
          c.once('error', () => resolve(true));
          c.listen(port, '127.0.0.1', () => c.close(() => resolve(false)));
        }),
      { what: 'smtp-sink to listen' },
    );
    const sinkLegs = (r: string): Leg[] => [
      { server: server('sink', port, 4), recipient: r, role: 'primary', bounces: 'Notify' },
    ];
    const n = 100;
    const ids: string[] = [];
    for (let i = 0; i < n; i++) {
      const r = await h.spool.accept(
        envelope([{ recipient: `u${i}@example.com`, legs: sinkLegs(`u${i}@example.com`) }]),
        Readable.from([MESSAGE]),
      );
      if (!r.ok) throw r.error;
      ids.push(r.id);
    }
    // All at once: a burst.
    for (const id of ids) h.engine.notify(id);
    // Backpressure: at most 4 x maxConnections (16) transactions are dispatched to one server at a time; the other
    // messages wait as ids, not as queued transactions.
    let peakJobs = 0;
    await waitFor(
      async () => {
        peakJobs = Math.max(peakJobs, h.engine.stats().jobs);
        return (await h.queueFiles()).length === 0 && h.engine.stats().messages === 0;
      },
      { intervalMs: 5, what: 'the burst to drain' },
    );
    expect(peakJobs).toBeGreaterThan(0);
    expect(peakJobs).toBeLessThanOrEqual(16);
    expect(await h.counter('delivered', 'primary')).toBe(n);
    const dumped = await waitFor(
      async () => {
        const files = await readdir(sinkDir);
        return files.length === n ? files : undefined;
      },
      { what: 'smtp-sink dump files' },
    );
    const one = await readFile(join(sinkDir, dumped[0]!), 'utf8');
    expect(one).toContain('Subject: dual');
  });
});
