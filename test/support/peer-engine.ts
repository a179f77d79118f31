// A delivery engine on a real spool for the suites that deliver to SMTP peers on 127.0.0.1 (delivery.test.ts,
// odd-replies.test.ts): the options they share, and the DSN route to the sender's domain. Apart from delivery.ts so
// that the spool benchmarks, which import that, do not load the engine.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import pino from 'pino';
import type { DeliveryPlan, Leg, ServerRoute } from '../../routing/model.ts';
import { startDelivery, type DeliveryEngine, type DeliveryOptions } from '../../relay/delivery/engine.ts';
import { openSpool } from '../../relay/spool/spool.ts';
import type { Spool } from '../../relay/spool/types.ts';
import type { RelayMetrics } from '../../relay/telemetry/metrics.ts';
import { deliveryOptions, envelope, localServer, routeNowhere } from './delivery.ts';
import { startSmtpPeer, type SmtpPeer } from './smtp-peer.ts';

/**
 * DSNs are routed like any mail: the sender's domain, sender.example, is managed and goes to `senderBox`; any other
 * recipient is refused as to an unmanaged domain.
 */
export function routeSenderDomainTo(senderBox: ServerRoute): (recipient: string) => DeliveryPlan {
  return (recipient) =>
    recipient.endsWith('@sender.example')
      ? {
          verdict: 'accept',
          recipient,
          domain: 'sender.example',
          legs: [{ server: senderBox, recipient, role: 'primary', bounces: 'Notify' }],
        }
      : routeNowhere(recipient);
}

/**
 * A delivery engine on `spool` for the suites against SMTP peers on 127.0.0.1, started and ready: fresh metrics, a
 * minute of queue lifetime, 2 s to connect and to be greeted, 5 s of socket inactivity, 2 s to stop; `over` replaces
 * any of them (and of deliveryOptions' defaults).
 */
export async function startPeerEngine(
  spool: Spool,
  over: Partial<DeliveryOptions> = {},
): Promise<{ engine: DeliveryEngine; metrics: RelayMetrics }> {
  const options = deliveryOptions(spool, {
    maxQueueLifetimeMs: 60_000,
    timeouts: { connectionMs: 2000, greetingMs: 2000, socketMs: 5000 },
    stopTimeoutMs: 2000,
    ...over,
  });
  const engine = startDelivery(options);
  await engine.ready;
  return { engine, metrics: options.metrics };
}

/** One "delivery attempt" log line of the engine, the fields the outbound suites check. */
interface AttemptLine {
  recipient: string;
  result: string;
  reply: string;
  host: string;
}

export interface AttemptHarness {
  spool: Spool;
  engine: DeliveryEngine;
  metrics: RelayMetrics;
  /** Where DSNs to alice@sender.example go (routeSenderDomainTo). */
  senderBox: SmtpPeer;
  /** The engine's "delivery attempt" lines of the recipients `keep` names, in order. */
  attempts: AttemptLine[];
  /** Spools a message from alice@sender.example, each leg the one leg of record of its recipient. */
  accept(legs: Leg[], body?: Buffer): Promise<string>;
}

/**
 * A real spool in a temp folder, a senderBox peer for the DSNs, and startPeerEngine with its "delivery attempt" log
 * lines recorded (odd-replies.test.ts, after-data-failover.test.ts). Everything is closed by the cleanup it pushes.
 */
export async function startAttemptHarness(o: {
  name: string;
  message: Buffer;
  keep: (recipient: string) => boolean;
  cleanups: (() => unknown)[];
  overrides?: Partial<DeliveryOptions>;
}): Promise<AttemptHarness> {
  const dir = await mkdtemp(join(tmpdir(), `mailroute-${o.name}-`));
  const senderBox = await startSmtpPeer('senderbox');
  const attempts: AttemptLine[] = [];
  const logger = pino(
    { level: 'info' },
    {
      write(line: string) {
        const l = JSON.parse(line) as Partial<AttemptLine> & { msg?: string };
        if (l.msg === 'delivery attempt' && l.recipient !== undefined && o.keep(l.recipient))
          attempts.push({
            recipient: l.recipient,
            result: l.result ?? '',
            reply: l.reply ?? '',
            host: l.host ?? '',
          });
      },
    },
  );
  const spool = await openSpool({ dir, logger: pino({ level: 'silent' }) });
  const { engine, metrics } = await startPeerEngine(spool, {
    logger,
    retryScheduleMs: [100],
    // DSNs are routed like any mail: the sender's domain goes to senderBox
    route: routeSenderDomainTo(localServer('senderbox', senderBox.port, 2)),
    ...o.overrides,
  });
  o.cleanups.push(async () => {
    await engine.stop();
    await senderBox.close();
    await rm(dir, { recursive: true, force: true });
  });
  return {
    spool,
    engine,
    metrics,
    senderBox,
    attempts,
    async accept(legs, body = o.message) {
      const meta = envelope(legs.map((leg) => ({ recipient: leg.recipient, legs: [leg] })));
      const r = await spool.accept(meta, Readable.from([body]));
      if (!r.ok) throw r.error;
      engine.notify(r.id);
      return r.id;
    },
  };
}
