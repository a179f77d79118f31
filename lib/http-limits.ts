// What a client may hold on the HTTP listeners: /metrics /healthz /readyz of the relay and the operator, and the
// relay's admin API. The SMTP port bounds its sessions (--max-connections, per address); these listeners bounded
// nothing, and the relay's one listens on every address of the pod, reachable from any pod of the cluster unless a
// NetworkPolicy says otherwise. Measured on the relay before this (docs/relay.md, "HTTP listeners"): 20,000
// connections that sent half a request and then nothing held 20,000 descriptors, the process's whole limit, and
// 218 MiB more RSS, for a minute each (Node's default headersTimeout, checked every 30 s); meanwhile an SMTP client's
// connection was closed at once without a greeting, and /healthz could not be reached, so the kubelet would have
// restarted the pod. Now:
// - at most HTTP_LIMITS.maxConnections at once (Node closes a connection over it as soon as it is accepted), and at
//   most perAddress from one address (an IPv6 client: from its /64), so one client cannot take them all from
//   Prometheus and the kubelet; 64 in all
//   stays within the descriptors the relay keeps beside its SMTP sessions (relay/fd-limit.ts DESCRIPTOR_HEADROOM);
// - a request's headers must arrive within headersTimeoutMs and the whole request within requestTimeoutMs (checked
//   every second, not every 30 s); an idle kept-alive connection is closed after keepAliveTimeoutMs.
//
// Exports: HTTP_LIMITS, httpServerOptions(limits) (for createServer), limitConnections(server, limits).
import type { Server, ServerOptions } from 'node:http';
import type { Socket } from 'node:net';
import { clientNetwork } from './client-network.ts';

export interface HttpLimits {
  readonly maxConnections: number;
  readonly perAddress: number;
  readonly headersTimeoutMs: number;
  readonly requestTimeoutMs: number;
  readonly keepAliveTimeoutMs: number;
}

export const HTTP_LIMITS: HttpLimits = Object.freeze({
  maxConnections: 64,
  perAddress: 8,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  keepAliveTimeoutMs: 5_000,
});

/** The createServer options that carry the limits on time. */
export function httpServerOptions(limits: HttpLimits = HTTP_LIMITS): ServerOptions {
  return {
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    // how often the two timeouts above are checked (Node's default is 30 s)
    connectionsCheckingInterval: 1000,
  };
}

/** Caps the server's connections in all and per client address. */
export function limitConnections(server: Server, limits: HttpLimits = HTTP_LIMITS): void {
  server.maxConnections = limits.maxConnections;
  const perAddress = new Map<string, number>();
  server.on('connection', (socket: Socket) => {
    // an IPv6 client counts by its /64 network (lib/client-network.ts): one host holds all of its addresses
    const address = clientNetwork(socket.remoteAddress ?? '');
    const n = (perAddress.get(address) ?? 0) + 1;
    if (n > limits.perAddress) {
      socket.destroy();
      return;
    }
    perAddress.set(address, n);
    socket.once('close', () => {
      const left = (perAddress.get(address) ?? 1) - 1;
      if (left <= 0) perAddress.delete(address);
      else perAddress.set(address, left);
    });
  });
}
