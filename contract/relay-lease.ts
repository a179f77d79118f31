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
// A process that watches or re-reads the Leases (the operator, a relay looking for drain peers or trusting a hand-off)
// judges freshness the client-go way (HeartbeatObserver): a Lease is fresh while this process saw its renewTime change
// within leaseDurationSeconds (30 s when unset) of its own monotonic clock, so the writer's wall clock is never compared
// with the reader's (a relay node 45 s behind is fresh; one a day ahead that died goes stale 30 s after its last
// renewal was seen). First sight counts as a change, within a skew bound: a renewTime more than the lease duration
// ahead of the reader's clock, or more than the lease duration plus 2 minutes behind it, is not trusted until it is
// seen to change. Stale ones count as gone. The operator counts relays that are fresh and not marked ready=false (a
// Lease without the annotation counts).

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

/**
 * What a Lease says, judged by one look at the writer's renewTime against the reader's wall clock `now`: for a reader
 * that sees it once (a test, a benchmark). A process that reads Leases over time judges them with HeartbeatObserver.
 */
export function readHeartbeat(lease: LeaseLike, now: Date): RelayHeartbeat {
  const renewTime = renewTimeOf(lease);
  const age = renewTime === undefined ? Infinity : (now.getTime() - renewTime.getTime()) / 1000;
  return {
    name: lease.metadata?.name ?? '',
    revision: lease.metadata?.annotations?.[REVISION_ANNOTATION],
    renewTime,
    fresh: Number.isFinite(age) && age <= durationOf(lease),
    ready: lease.metadata?.annotations?.[READY_ANNOTATION] !== 'false',
  };
}

function renewTimeOf(lease: LeaseLike): Date | undefined {
  const raw = lease.spec?.renewTime;
  const d = raw === undefined ? undefined : new Date(raw);
  return d === undefined || Number.isNaN(d.getTime()) ? undefined : d;
}

function durationOf(lease: LeaseLike): number {
  return lease.spec?.leaseDurationSeconds ?? RELAY_LEASE_DURATION_SECONDS;
}

/** At first sight, a renewTime further behind the reader's clock than the lease duration plus this is not trusted. */
const FIRST_SIGHT_SKEW_SECONDS = 120;
/** A renewTime at least this far from the reader's clock when it changes is reported (once per Lease) as clock skew. */
const SKEW_WARN_SECONDS = 10;

export interface ObservedHeartbeat extends RelayHeartbeat {
  /**
   * Set once per Lease, the first time its renewTime is found at least 10 s from the reader's wall clock: a lower
   * bound of the writer's clock skew in seconds (positive: the writer's clock is ahead). The caller logs it.
   */
  skewSeconds?: number;
}

interface Sighting {
  /** The last few renewTimes seen (so that a cache lagging behind a fresher read is not taken for a change). */
  recent: string[];
  /** Monotonic ms when the renewTime was last seen to change (first sight counts). */
  changedAt: number;
  /** false: first seen outside the skew bound and not seen to change since. */
  trusted: boolean;
  /** Reader's wall clock (ms) at the previous sighting. */
  seenWall: number;
  durationMs: number;
  warned: boolean;
}

/**
 * Judges relay Leases the client-go way (leaderelection's observedTime): by when this process saw each Lease's
 * renewTime change, on its monotonic clock. Feed it every look at a Lease (a watch event, a list); looking again at an
 * unchanged Lease changes nothing. Pure: both clocks are passed in.
 */
export class HeartbeatObserver {
  private readonly seen = new Map<string, Sighting>();

  /** Records this look at `lease` (at monotonic `monoMs`, reader's wall clock `wall`) and judges it. */
  observe(lease: LeaseLike, monoMs: number, wall: Date): ObservedHeartbeat {
    const hb: ObservedHeartbeat = { ...readHeartbeat(lease, wall), fresh: false };
    const renewTime = hb.renewTime;
    if (renewTime === undefined) {
      this.seen.delete(hb.name);
      return hb;
    }
    const durationMs = durationOf(lease) * 1000;
    const key = `${renewTime.toISOString()} ${lease.spec?.holderIdentity ?? ''}`;
    const wallMs = wall.getTime();
    const ahead = renewTime.getTime() - wallMs;
    let s = this.seen.get(hb.name);
    let skewMs: number | undefined;
    if (s === undefined) {
      const trusted = ahead <= durationMs && -ahead <= durationMs + FIRST_SIGHT_SKEW_SECONDS * 1000;
      s = { recent: [key], changedAt: monoMs, trusted, seenWall: wallMs, durationMs, warned: false };
      this.seen.set(hb.name, s);
      // ahead of our clock: skew for certain; behind it may be age (a dead relay), so not judged at first sight
      if (ahead > 0) skewMs = ahead;
    } else if (!s.recent.includes(key)) {
      // renewed after our previous look: a renewTime before that look, or after now, is the writer's clock
      const behind = s.seenWall - renewTime.getTime();
      skewMs = ahead > 0 ? ahead : behind > 0 ? -behind : undefined;
      s.recent = [key, ...s.recent].slice(0, 4);
      s.changedAt = monoMs;
      s.trusted = true;
    }
    s.seenWall = wallMs;
    s.durationMs = durationMs;
    hb.fresh = s.trusted && monoMs - s.changedAt <= durationMs;
    if (skewMs !== undefined && Math.abs(skewMs) >= SKEW_WARN_SECONDS * 1000 && !s.warned) {
      s.warned = true;
      hb.skewSeconds = Math.round(skewMs / 1000);
    }
    return hb;
  }

  /** Monotonic ms at which the Lease named so goes (or went) stale; undefined when unknown or not trusted. */
  staleAt(name: string): number | undefined {
    const s = this.seen.get(name);
    return s === undefined || !s.trusted ? undefined : s.changedAt + s.durationMs + 1;
  }

  /** Milliseconds until the first Lease that is fresh at `monoMs` goes stale (to look again then), or undefined. */
  nextStaleIn(monoMs: number): number | undefined {
    let min: number | undefined;
    for (const name of this.seen.keys()) {
      const at = this.staleAt(name);
      if (at === undefined || at <= monoMs) continue;
      if (min === undefined || at - monoMs < min) min = at - monoMs;
    }
    return min;
  }

  /** Forgets a Lease (deleted). */
  forget(name: string): void {
    this.seen.delete(name);
  }

  /** Forgets every Lease not named (after a full list). */
  retain(names: Iterable<string>): void {
    const keep = new Set(names);
    for (const name of [...this.seen.keys()]) if (!keep.has(name)) this.seen.delete(name);
  }
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
