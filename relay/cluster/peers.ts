// The relay's drain peers: which other relays are fresh, ready peers a draining relay may hand its queue to
// (read from their heartbeat Leases, contract/relay-lease.ts, or given with --peers). Pure.
import {
  READY_ANNOTATION,
  SMTP_ANNOTATION,
  isRelayLease,
  relayLeaseName,
  type LeaseLike,
} from '../../contract/relay-lease.ts';

export interface Peer {
  /** Lease name or "static" */
  name: string;
  host: string;
  port: number;
}

/** "10.1.2.3:2525", "[fd00::1]:2525", "relay-0.relay.ns.svc:2525" */
export function parsePeerAddress(value: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(value.trim());
  const host = m?.[1] ?? m?.[2];
  const port = Number(m?.[3]);
  if (host === undefined || !Number.isInteger(port) || port < 1 || port > 65535) return undefined;
  return { host, port };
}

/**
 * Pure: the other relays a draining relay may hand mail to: relay Leases other than its own that `fresh` judges fresh
 * (HeartbeatObserver: by when this relay saw them renewed, not by their writer's clock), annotated ready=true and with
 * a parseable smtp address. Sorted by name (deterministic).
 */
export function peersFromLeases(
  leases: readonly LeaseLike[],
  selfPod: string,
  fresh: (lease: LeaseLike) => boolean,
  opts: { readyOnly?: boolean } = {},
): Peer[] {
  const self = relayLeaseName(selfPod);
  const out: Peer[] = [];
  for (const lease of leases) {
    const name = lease.metadata?.name ?? '';
    if (!isRelayLease(lease) || name === self) continue;
    if (!fresh(lease)) continue;
    const ann = lease.metadata?.annotations ?? {};
    if (opts.readyOnly !== false && ann[READY_ANNOTATION] !== 'true') continue;
    const addr = parsePeerAddress(ann[SMTP_ANNOTATION] ?? '');
    if (addr === undefined) continue;
    out.push({ name, ...addr });
  }
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** Pure: --peers HOST:PORT,... ; a string names the bad entry. */
export function parseStaticPeers(value: string): Peer[] | string {
  const out: Peer[] = [];
  for (const part of value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')) {
    const addr = parsePeerAddress(part);
    if (addr === undefined) return `not HOST:PORT: ${JSON.stringify(part)}`;
    out.push({ name: 'static', ...addr });
  }
  return out;
}
