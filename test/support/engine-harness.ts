// The delivery engine alone, for its unit tests: a fake clock (fake-clock.ts), an in-memory spool
// (memory-spool.ts) and a fake transport at the engine's TransportFactory seam (no sockets). The transport answers
// with a reply the test chooses per server and recipient, and can hold sends in flight until the test lets them go.
import { Readable } from 'node:stream';
import { Registry } from 'prom-client';
import { createRelayMetrics, type RelayMetrics } from '../../relay/telemetry/metrics.ts';
import type { CopyLeg, DeliveryPlan, Leg, RecordLeg, ServerRoute } from '../../routing/model.ts';
import { startDelivery, type DeliveryEngine, type DeliveryOptions } from '../../relay/delivery/engine.ts';
import type { AttemptReply } from '../../relay/delivery/outcome.ts';
import type { SendRequest, ServerTarget, TransportFactory } from '../../relay/delivery/transport.ts';
import type { DnsResolver } from '../../relay/dns.ts';
import type { LegState } from '../../relay/spool/types.ts';
import { deliveryOptions, envelope } from './delivery.ts';
import { FakeClock, settle } from './fake-clock.ts';
import { MemorySpool } from './memory-spool.ts';

export const server = (name: string, over: Partial<ServerRoute> = {}): ServerRoute => ({
  name,
  host: `${name}.test`,
  port: 25,
  mx: false,
  tls: 'None',
  maxConnections: 2,
  ...over,
});

export const primaryLeg = (recipient: string, s: ServerRoute): RecordLeg => ({
  server: s,
  recipient,
  role: 'primary',
  bounces: 'Notify',
});

export const copyLeg = (
  recipient: string,
  s: ServerRoute,
  bounces: CopyLeg['bounces'] = 'Suppress',
): CopyLeg => ({
  server: s,
  recipient,
  role: 'copy',
  bounces,
});

/**
 * A dual message's legs as the spool holds them, pending: for each of `recipients` recipients (u0@example.com, ...)
 * its leg of record on server old, then its copy on server new, both named by `policy` and `testRecipient` (parity).
 */
export function dualLegStates(recipients: number, policy: string, testRecipient?: string): LegState[] {
  const old = server('old');
  const next = server('new');
  const named = { policy, ...(testRecipient !== undefined ? { testRecipient } : {}) };
  const legs: LegState[] = [];
  for (let i = 0; i < recipients; i++) {
    const recipient = `u${i}@example.com`;
    legs.push(
      { recipient, leg: { ...primaryLeg(recipient, old), ...named }, state: 'pending', attempts: 0 },
      { recipient, leg: { ...copyLeg(recipient, next), ...named }, state: 'pending', attempts: 0 },
    );
  }
  return legs;
}

export const ok: AttemptReply = { kind: 'smtp', code: 250, text: '250 2.0.0 ok' };
export const busy: AttemptReply = { kind: 'smtp', code: 451, text: '451 4.3.0 try later' };
export const refused: AttemptReply = { kind: 'network', text: 'connect ECONNREFUSED' };
export const noSuchUser: AttemptReply = { kind: 'smtp', code: 550, text: '550 5.1.1 no such user' };

/** A send seen by the fake transport. */
export interface Sent {
  /** The server host the pool was created for (its address is the host name itself: see fakeResolver). */
  host: string;
  req: SendRequest;
}

/** The fake network: every destination's pools, what they were sent, and the replies. */
export class FakeNet {
  readonly sent: Sent[] = [];
  readonly closed: string[] = [];
  pools = 0;
  /** Sends in flight now, and at most, per host. */
  readonly inFlight = new Map<string, number>();
  readonly maxInFlight = new Map<string, number>();
  /** The reply to each recipient; default 250. */
  reply: (host: string, rcpt: string) => AttemptReply = () => ok;
  private held: (() => void)[] = [];
  private holding: ReadonlySet<string> | 'all' | undefined;

  /** From now on sends (to these hosts; default all) wait until release(). */
  hold(...hosts: string[]): void {
    this.holding = hosts.length === 0 ? 'all' : new Set(hosts);
  }

  /** Lets the held sends go (and stops holding). */
  release(): void {
    const h = this.held.splice(0);
    this.holding = undefined;
    for (const go of h) go();
  }

  get waiting(): number {
    return this.held.length;
  }

  readonly factory: TransportFactory = (target: ServerTarget) => {
    this.pools++;
    const host = target.servername ?? target.host;
    return {
      send: async (req) => {
        this.sent.push({ host, req });
        const n = (this.inFlight.get(host) ?? 0) + 1;
        this.inFlight.set(host, n);
        this.maxInFlight.set(host, Math.max(this.maxInFlight.get(host) ?? 0, n));
        try {
          if (this.holding === 'all' || this.holding?.has(host) === true)
            await new Promise<void>((r) => this.held.push(r));
          return new Map(req.to.map((r) => [r, this.reply(host, r)]));
        } finally {
          this.inFlight.set(host, (this.inFlight.get(host) ?? 1) - 1);
        }
      },
      close: () => this.closed.push(host),
    };
  };

  sentTo(host: string): number {
    return this.sent.filter((s) => s.host === host).length;
  }
}

/** Every host is its own address (no DNS). */
export const fakeResolver: DnsResolver = {
  resolveMx: () => Promise.reject(Object.assign(new Error('no MX'), { code: 'ENODATA' })),
  addresses: (host) => Promise.resolve([host]),
};

export interface EngineHarness {
  clock: FakeClock;
  metrics: RelayMetrics;
  spool: MemorySpool;
  net: FakeNet;
  engine: DeliveryEngine;
  /** Spools a message (from alice@sender.example unless mailFrom) and tells the engine. */
  accept(recipients: { recipient: string; legs: Leg[] }[], mailFrom?: string): Promise<string>;
  legs(id: string): LegState[] | undefined;
  stop(): Promise<void>;
}

export async function engineHarness(over: Partial<DeliveryOptions> = {}): Promise<EngineHarness> {
  const clock = new FakeClock();
  const spool = new MemorySpool(clock.clock);
  const net = new FakeNet();
  const metrics = createRelayMetrics(new Registry(), false);
  const engine = startDelivery(
    deliveryOptions(spool, {
      metrics,
      clock: clock.clock,
      elapsed: clock.elapsed,
      timers: clock,
      transport: net.factory,
      resolver: fakeResolver,
      ...over,
    }),
  );
  await engine.ready;
  return {
    clock,
    metrics,
    spool,
    net,
    engine,
    async accept(recipients, mailFrom = 'alice@sender.example') {
      const body = 'From: alice@sender.example\r\nSubject: t\r\n\r\nhello\r\n';
      const r = await spool.accept(
        envelope(recipients, { mailFrom, receivedAt: clock.clock().toISOString() }),
        Readable.from([Buffer.from(body)]),
      );
      if (!r.ok) throw r.error;
      engine.notify(r.id);
      await settle();
      return r.id;
    },
    legs: (id) => spool.states.get(id)?.legs,
    async stop() {
      net.release();
      await engine.stop();
    },
  };
}

/** A DSN route that accepts every sender on one server. */
export const routeTo =
  (s: ServerRoute) =>
  (recipient: string): DeliveryPlan => ({
    verdict: 'accept',
    recipient,
    domain: recipient.slice(recipient.indexOf('@') + 1),
    legs: [primaryLeg(recipient, s)],
  });
