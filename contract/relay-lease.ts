// The relay heartbeat Lease: what a relay writes (buildLease) and what the operator and the other relays read
// (readHeartbeat). Pure.
//
//   coordination.k8s.io/v1 Lease mailroute-relay-<pod name>, in the operator namespace
//     metadata.annotations: mailroute.io/revision=<revision the relay serves>,
//                           mailroute.io/parity=<the relay's parity counters; contract/relay-parity.ts>,
//                           mailroute.io/ready=true|false (false: starting or draining; not counted),
//                           mailroute.io/smtp=<host:port other relays reach its SMTP listener on; drain peers>
//     metadata.labels: app.kubernetes.io/name=mailroute, app.kubernetes.io/component=relay
//     spec.holderIdentity=<pod name>, spec.leaseDurationSeconds=30, spec.renewTime=<now, renewed every 10 s>
//
// A Lease is fresh while now - renewTime <= leaseDurationSeconds (30 s when unset); stale ones count as gone.
// The operator counts relays that are fresh and not marked ready=false (a Lease without the annotation counts).

import { PARITY_ANNOTATION } from './relay-parity.ts';
import type { OwnerReference } from './owner.ts';
import { REVISION_ANNOTATION } from './routing-configmap.ts';

const RELAY_LEASE_PREFIX = 'mailroute-relay-';
const RELAY_LEASE_DURATION_SECONDS = 30;
export const READY_ANNOTATION = 'mailroute.io/ready';
export const SMTP_ANNOTATION = 'mailroute.io/smtp';
export const RELAY_RENEW_INTERVAL_SECONDS = 10;
export const RELAY_COMPONENT_LABELS = {
  'app.kubernetes.io/name': 'mailroute',
  'app.kubernetes.io/component': 'relay',
} as const;
export const RELAY_LABEL_SELECTOR = Object.entries(RELAY_COMPONENT_LABELS)
  .map(([k, v]) => `${k}=${v}`)
  .join(',');
export { REVISION_ANNOTATION };

export function relayLeaseName(pod: string): string {
  return `${RELAY_LEASE_PREFIX}${pod}`;
}

/** The subset of a V1Lease read here (renewTime is a Date in @kubernetes/client-node, a string on the wire). */
export interface LeaseLike {
  metadata?: { name?: string; annotations?: Record<string, string> };
  spec?: { holderIdentity?: string; leaseDurationSeconds?: number; renewTime?: Date | string };
}

export interface RelayHeartbeat {
  name: string;
  revision: string | undefined;
  renewTime: Date | undefined;
  fresh: boolean;
  /** false only when annotated mailroute.io/ready=false */
  ready: boolean;
}

export function isRelayLease(lease: LeaseLike): boolean {
  return (lease.metadata?.name ?? '').startsWith(RELAY_LEASE_PREFIX);
}

export function readHeartbeat(lease: LeaseLike, now: Date): RelayHeartbeat {
  const raw = lease.spec?.renewTime;
  const renewTime = raw === undefined ? undefined : new Date(raw);
  const duration = lease.spec?.leaseDurationSeconds ?? RELAY_LEASE_DURATION_SECONDS;
  const age = renewTime === undefined ? Infinity : (now.getTime() - renewTime.getTime()) / 1000;
  return {
    name: lease.metadata?.name ?? '',
    revision: lease.metadata?.annotations?.[REVISION_ANNOTATION],
    renewTime,
    fresh: Number.isFinite(age) && age <= duration,
    ready: lease.metadata?.annotations?.[READY_ANNOTATION] !== 'false',
  };
}

/** Milliseconds until the first fresh heartbeat goes stale (to requeue then), or undefined. */
export function nextStaleIn(leases: readonly LeaseLike[], now: Date): number | undefined {
  let min: number | undefined;
  for (const l of leases) {
    const hb = readHeartbeat(l, now);
    if (!hb.fresh || hb.renewTime === undefined) continue;
    const duration = l.spec?.leaseDurationSeconds ?? RELAY_LEASE_DURATION_SECONDS;
    const ms = hb.renewTime.getTime() + duration * 1000 - now.getTime() + 1;
    if (min === undefined || ms < min) min = ms;
  }
  return min;
}

/** The pods of a StatefulSet with `replicas` desired (unset: 1, as Kubernetes defaults it): name-0 .. name-(n-1). */
export function expectedRelayPods(statefulSet: string, replicas: number | undefined): string[] {
  const n = replicas ?? 1;
  return Array.from({ length: Math.max(0, n) }, (_, i) => `${statefulSet}-${i}`);
}

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
  /** The parity report (contract/relay-parity.ts encodeParity), annotation mailroute.io/parity; undefined: none. */
  parity?: string;
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
function microTime(d: Date): string {
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
  if (state.parity !== undefined) annotations[PARITY_ANNOTATION] = state.parity;
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
