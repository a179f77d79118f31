// The relay's heartbeat Lease, pure parts: what the Lease says (operator/relay-heartbeat.ts is the shared contract)
// and which other relays are fresh, ready peers a draining relay may hand its queue to.
import type { OwnerReference } from '../../operator/owner.ts';
import {
  READY_ANNOTATION,
  RELAY_COMPONENT_LABELS,
  RELAY_LEASE_DURATION_SECONDS,
  REVISION_ANNOTATION,
  isRelayLease,
  readHeartbeat,
  relayLeaseName,
  type LeaseLike,
} from '../../operator/relay-heartbeat.ts';

export { READY_ANNOTATION };
export const SMTP_ANNOTATION = 'mailroute.io/smtp';
export const RELAY_LABEL_SELECTOR = Object.entries(RELAY_COMPONENT_LABELS)
  .map(([k, v]) => `${k}=${v}`)
  .join(',');

export interface HeartbeatState {
  pod: string;
  namespace: string;
  /** Revision served; undefined before the first table (annotation absent). */
  revision: string | undefined;
  ready: boolean;
  /** host:port other relays reach this one's SMTP listener on; undefined: not offered as a drain peer. */
  smtp: string | undefined;
  /** metadata.ownerReferences (the release's owner ConfigMap), kept on every write; empty or undefined: none. */
  owners?: readonly OwnerReference[];
}

/** The Lease body as written (create or replace). `resourceVersion` makes replace a compare-and-swap. */
export interface LeaseBody {
  apiVersion: 'coordination.k8s.io/v1';
  kind: 'Lease';
  metadata: {
    name: string;
    namespace: string;
    labels: Record<string, string>;
    annotations: Record<string, string>;
    resourceVersion?: string;
    ownerReferences?: OwnerReference[];
  };
  spec: {
    holderIdentity: string;
    leaseDurationSeconds: number;
    /** metav1.MicroTime: RFC 3339 with exactly 6 fractional digits (the API server refuses 3). */
    acquireTime: string;
    renewTime: string;
  };
}

/** metav1.MicroTime wire format. @kubernetes/client-node would send a Date with milliseconds, which is refused. */
export function microTime(d: Date): string {
  return d.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

/** Pure: the Lease for this relay at `now`; keeps acquireTime and resourceVersion of the existing one. */
export function buildLease(
  state: HeartbeatState,
  now: Date,
  existing?: { resourceVersion?: string | undefined; acquireTime?: Date | string | undefined },
): LeaseBody {
  const annotations: Record<string, string> = { [READY_ANNOTATION]: String(state.ready) };
  if (state.revision !== undefined) annotations[REVISION_ANNOTATION] = state.revision;
  if (state.smtp !== undefined) annotations[SMTP_ANNOTATION] = state.smtp;
  return {
    apiVersion: 'coordination.k8s.io/v1',
    kind: 'Lease',
    metadata: {
      name: relayLeaseName(state.pod),
      namespace: state.namespace,
      labels: { ...RELAY_COMPONENT_LABELS },
      annotations,
      ...(state.owners !== undefined && state.owners.length > 0
        ? { ownerReferences: state.owners.map((o) => ({ ...o })) }
        : {}),
      ...(existing?.resourceVersion !== undefined ? { resourceVersion: existing.resourceVersion } : {}),
    },
    spec: {
      holderIdentity: state.pod,
      leaseDurationSeconds: RELAY_LEASE_DURATION_SECONDS,
      acquireTime: microTime(existing?.acquireTime !== undefined ? new Date(existing.acquireTime) : now),
      renewTime: microTime(now),
    },
  };
}

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
 * Pure: the other relays a draining relay may hand mail to: relay Leases other than its own, fresh at `now`,
 * annotated ready=true and with a parseable smtp address. Sorted by name (deterministic).
 */
export function peersFromLeases(
  leases: readonly LeaseLike[],
  selfPod: string,
  now: Date,
  opts: { readyOnly?: boolean } = {},
): Peer[] {
  const self = relayLeaseName(selfPod);
  const out: Peer[] = [];
  for (const lease of leases) {
    const name = lease.metadata?.name ?? '';
    if (!isRelayLease(lease) || name === self) continue;
    if (!readHeartbeat(lease, now).fresh) continue;
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
