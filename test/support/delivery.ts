// A delivery engine and spooled envelopes outside the relay wiring, for the delivery suites and the delivery
// benchmarks: the defaults they all used, in one place.
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import pino from 'pino';
import { Registry } from 'prom-client';
import type { DeliveryPlan, Leg, ServerRoute } from '../../routing/model.ts';
import type { DeliveryOptions } from '../../relay/delivery/engine.ts';
import { encodeMessageFile, messageFile } from '../../relay/spool/format.ts';
import { initialState, newQueueIdGenerator, openSpool } from '../../relay/spool/spool.ts';
import type { EnvelopeMeta, Spool, SpoolState } from '../../relay/spool/types.ts';
import { createRelayMetrics } from '../../relay/telemetry/metrics.ts';

/** Routes nothing: a DSN (or anything else the engine routes) is refused as to an unmanaged domain. */
export function routeNowhere(recipient: string): DeliveryPlan {
  return {
    verdict: 'reject',
    recipient,
    reply: { code: 554, enhanced: '5.7.1', text: 'relay access denied' },
    reason: 'RelayDenied',
    legs: [],
  };
}

/**
 * startDelivery() options with test defaults: a silent logger, fresh metrics, a 1 s retry step, one hour of queue
 * lifetime, no credentials, nothing routable for DSNs. `over` replaces any of them.
 */
export function deliveryOptions(spool: Spool, over: Partial<DeliveryOptions> = {}): DeliveryOptions {
  return {
    spool,
    logger: pino({ level: 'silent' }),
    metrics: createRelayMetrics(new Registry(), false),
    retryScheduleMs: [1000],
    maxQueueLifetimeMs: 3_600_000,
    hostname: 'relay.test',
    credentials: () => Promise.resolve(undefined),
    route: routeNowhere,
    ...over,
  };
}

/** A plain-SMTP destination server on 127.0.0.1 (no MX lookup, no TLS): how the delivery suites and benchmarks reach their peers. */
export function localServer(name: string, port: number, maxConnections = 10): ServerRoute {
  return { name, host: '127.0.0.1', port, mx: false, tls: 'None', maxConnections };
}

/**
 * Two MX hosts on one port, as MX hosts are: `mx1.example.com` (preference 10) at `first`, then (unless `second` is
 * null) the host `second` (preference 20) at 127.0.0.1. Only the addresses differ (127.0.0.2 or ::1 for the first).
 */
export function twoMx(first: string, second: string | null = 'mx2.example.com'): DeliveryOptions['resolver'] {
  return {
    resolveMx: () =>
      Promise.resolve([
        ...(second !== null ? [{ exchange: second, priority: 20 }] : []),
        { exchange: 'mx1.example.com', priority: 10 },
      ]),
    addresses: (host) => Promise.resolve([host === 'mx1.example.com' ? first : '127.0.0.1']),
  };
}

/** An accepted envelope as the inbound side hands it to spool.accept(): each recipient with its legs. */
export function envelope(
  recipients: { recipient: string; legs: Leg[] }[],
  over: Partial<EnvelopeMeta> = {},
): EnvelopeMeta {
  return {
    mailFrom: 'alice@sender.example',
    recipients,
    clientAddress: '127.0.0.1',
    clientHostname: 'localhost',
    helo: 'client.example',
    receivedAt: new Date().toISOString(),
    revision: 'test',
    smtputf8: false,
    body8bit: false,
    ...over,
  };
}

/**
 * The spool suites' envelope: bob@example.com with a primary leg and a Suppress copy to bob@copy.example.com, both
 * to server legacy (127.0.0.1:25), received 2026-11-28T10:00:00Z under revision rev1.
 */
export function spoolEnvelope(): EnvelopeMeta {
  const server = localServer('legacy', 25, 2);
  return envelope(
    [
      {
        recipient: 'bob@example.com',
        legs: [
          { server, recipient: 'bob@example.com', role: 'primary', bounces: 'Notify' },
          { server, recipient: 'bob@copy.example.com', role: 'copy', bounces: 'Suppress' },
        ],
      },
    ],
    { receivedAt: '2026-11-28T10:00:00.000Z', revision: 'rev1' },
  );
}

/** bob@example.com with a primary leg and a Suppress copy to bob@copy.example (the spool benchmarks' envelope). */
export function dualEnvelope(primary = 'legacy', copy = 'zoho'): EnvelopeMeta {
  const server = localServer(primary, 25);
  return envelope(
    [
      {
        recipient: 'bob@example.com',
        legs: [
          { server, recipient: 'bob@example.com', role: 'primary', bounces: 'Notify' },
          {
            server: { ...server, name: copy },
            recipient: 'bob@copy.example',
            role: 'copy',
            bounces: 'Suppress',
          },
        ],
      },
    ],
    { clientHostname: 'client', helo: 'client', revision: 'bench' },
  );
}

/**
 * How a long outage of the secondary leaves a dual message (for writeQueuedDualMessages' `state`): its leg of record
 * delivered, its copy deferred until `until` after a few refused attempts.
 */
export function waitingOnCopy(until: Date): (s: SpoolState) => SpoolState {
  const next = until.toISOString();
  return (s) => ({
    ...s,
    legs: s.legs.map((l) =>
      l.leg.role === 'primary'
        ? { ...l, state: 'delivered', attempts: 1 }
        : { ...l, state: 'deferred', attempts: 3, nextAttemptAt: next, lastReply: 'connection refused' },
    ),
  });
}

/**
 * Writes n queued dual messages (a 4 KiB body) straight into dir's spool, as a relay leaves them: recipient u<i>@domain
 * with a primary leg to server old on ports[0] and a Suppress copy to server new on ports[1]. For the benchmarks that
 * start an engine or a relay on a full spool. `legDomain`: the MailDomain the legs name (their servers are then looked
 * up in the routing table a relay serves).
 */
export async function writeQueuedDualMessages(
  dir: string,
  n: number,
  ports: readonly [number, number],
  opts: {
    domain?: string;
    legDomain?: string;
    subject?: string;
    /** How the message stands (default: as accepted, both legs pending). */
    state?: (s: SpoolState) => SpoolState;
  } = {},
): Promise<void> {
  await mkdir(dir, { recursive: true });
  await chmod(dir, 0o755);
  await openSpool({ dir, logger: pino({ level: 'warn' }) });
  const gen = newQueueIdGenerator(() => new Date());
  const body = Buffer.concat([
    Buffer.from(`Subject: ${opts.subject ?? 'queued'}\r\n\r\n`),
    Buffer.alloc(4096, 'x'),
  ]);
  const domain = opts.domain ?? 'example.com';
  const legDomain = opts.legDomain !== undefined ? { domain: opts.legDomain } : {};
  for (let i = 0; i < n; i += 500) {
    await Promise.all(
      Array.from({ length: Math.min(500, n - i) }, async (_, k) => {
        const id = gen();
        const r = `u${i + k}@${domain}`;
        const legs: Leg[] = [
          {
            server: localServer('old', ports[0]),
            recipient: r,
            role: 'primary',
            bounces: 'Notify',
            ...legDomain,
          },
          {
            server: localServer('new', ports[1]),
            recipient: r,
            role: 'copy',
            bounces: 'Suppress',
            ...legDomain,
          },
        ];
        const state = initialState(
          id,
          envelope([{ recipient: r, legs }], { mailFrom: 'bench@sender.example' }),
          body.length,
        );
        await writeFile(
          join(dir, 'queue', messageFile(id)),
          encodeMessageFile(body, opts.state ? opts.state(state) : state),
        );
      }),
    );
  }
}
