// A delivery engine on a real spool for the suites that deliver to SMTP peers on 127.0.0.1 (delivery.test.ts,
// odd-replies.test.ts): the options they share, and the DSN route to the sender's domain. Apart from delivery.ts so
// that the spool benchmarks, which import that, do not load the engine.
import type { DeliveryPlan, ServerRoute } from '../../routing/model.ts';
import { startDelivery, type DeliveryEngine, type DeliveryOptions } from '../../relay/delivery/engine.ts';
import type { Spool } from '../../relay/spool/types.ts';
import type { RelayMetrics } from '../../relay/telemetry/metrics.ts';
import { deliveryOptions, routeNowhere } from './delivery.ts';

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
